"""OKX order-book checksum: CRC32 of the top 25 levels of each side, interleaved, in wire text.

The string is built from the local book after a frame is applied, best levels first:
``bid1px:bid1sz:ask1px:ask1sz:bid2px:...``; when one side has fewer than 25 levels, the other
side's remaining levels follow alone. Prices and sizes are the venue's own text (``"8476.98"``
and ``"8476.980"`` hash differently), so the book keeps it (``BookKeeper(keep_text=True)``).
The CRC32 (zlib) of the UTF-8 string, read as a signed 32-bit integer, must equal the frame's
``checksum``.

Pure functions over an :class:`~core.book.OrderBook`; no I/O, no clocks.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

from core.book import OrderBook

DEPTH = 25


def checksum_string(bids: Sequence[tuple[str, str]], asks: Sequence[tuple[str, str]],
                    depth: int = DEPTH) -> str:
    """The text the venue hashes, from best-first ``(price, size)`` wire texts of each side."""
    fields: list[str] = []
    for i in range(depth):
        if i < len(bids):
            fields += bids[i]
        if i < len(asks):
            fields += asks[i]
    return ":".join(fields)


def crc32_signed(text: str) -> int:
    """zlib's CRC32 of ``text`` (UTF-8) as a signed 32-bit integer."""
    value = zlib.crc32(text.encode())
    return value - (1 << 32) if value & (1 << 31) else value


def book_checksum(book: OrderBook, depth: int = DEPTH) -> int:
    """The checksum of ``book``, which must keep wire text (``keep_text=True``)."""
    if book.bid_text is None or book.ask_text is None:
        raise ValueError("the book keeps no wire text (create it with keep_text=True)")
    bids = [book.bid_text[p] for p, _ in book.top_bids(depth)]
    asks = [book.ask_text[p] for p, _ in book.top_asks(depth)]
    return crc32_signed(checksum_string(bids, asks, depth))
