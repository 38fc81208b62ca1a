"""Kraken's book checksum (websocket v2 ``book`` channel): CRC32 of the best 10 levels.

The venue's rule ("Book checksum (WebSocket v2)" in Kraken's documentation): take the top 10
asks from low to high, then the top 10 bids from high to low; for each level write the price and
the quantity *as sent* (full precision, trailing zeros kept), remove the decimal point and the
leading zeros, and append price then quantity; the CRC32 of the whole string, as an unsigned
32-bit integer, must equal the frame's ``checksum``. ``45285.2`` with ``0.00100000`` gives
``452852100000``; the float ``0.001`` would give ``1`` and the wrong checksum, which is why the
book keeps every level's wire text.

Pure functions; no I/O, no clocks.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

from core.book import OrderBook

DEPTH = 10


def level_text(price: str, qty: str) -> str:
    """One level's part of the checksummed string."""
    return price.replace(".", "").lstrip("0") + qty.replace(".", "").lstrip("0")


def checksum_of(bids: Sequence[tuple[str, str]], asks: Sequence[tuple[str, str]]) -> int:
    """The checksum of best-first wire-text levels ``(price, qty)`` of each side."""
    text = "".join(level_text(p, q) for p, q in asks[:DEPTH])
    text += "".join(level_text(p, q) for p, q in bids[:DEPTH])
    return zlib.crc32(text.encode())


def book_checksum(book: OrderBook) -> int:
    """The checksum of a book that keeps wire text (``keep_text=True``)."""
    bids, asks = book.top_text(DEPTH)
    return checksum_of([_pair(t) for t in bids], [_pair(t) for t in asks])


def _pair(text: str) -> tuple[str, str]:
    price, _, qty = text.partition(":")
    return price, qty
