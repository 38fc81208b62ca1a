"""Bitget order-book checksum: CRC32 of the top 25 levels in their original wire text, both
sides interleaved (:mod:`core.checksums`), read as a signed 32-bit integer and compared with the
frame's ``checksum``.

Pure functions over an :class:`~core.book.OrderBook`; no I/O, no clocks.
"""

from __future__ import annotations

from core import checksums
from core.book import OrderBook

CHECKSUM_DEPTH = 25


def book_checksum(book: OrderBook, depth: int = CHECKSUM_DEPTH) -> int:
    """The checksum of ``book``, which must have been created with ``keep_text=True``."""
    return checksums.book_checksum(book, depth)
