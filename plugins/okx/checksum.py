"""OKX order-book checksum: CRC32 of the top 25 levels of each side, interleaved, in wire text
(:mod:`core.checksums`), read as a signed 32-bit integer; it must equal the frame's
``checksum``. Prices and sizes are the venue's own text (``"8476.98"`` and ``"8476.980"`` hash
differently), so the book keeps it (``BookKeeper(keep_text=True)``).

Pure functions over an :class:`~core.book.OrderBook`; no I/O, no clocks.
"""

from __future__ import annotations

from core import checksums
from core.book import OrderBook

DEPTH = 25


def book_checksum(book: OrderBook, depth: int = DEPTH) -> int:
    """The checksum of ``book``, which must keep wire text (``keep_text=True``)."""
    return checksums.book_checksum(book, depth)
