"""The book checksum several venues share: CRC32 of the best levels of both sides, interleaved,
in the venue's own wire text (Bitget ``books``, OKX ``books``).

The string is built from a local book after a frame is applied, best levels first:
``bid1px:bid1sz:ask1px:ask1sz:bid2px:...``; once one side runs out, only the other side's levels
follow. Prices and sizes are the venue's text (``"0.01030"`` and ``"0.0103"`` hash differently),
so the book keeps it (``OrderBook(keep_text=True)``, levels as ``"price:size"``). The CRC32
(zlib) of the UTF-8 string is read as a signed 32-bit integer.

Pure functions over an :class:`~core.book.OrderBook`; no I/O, no clocks.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

from core.book import OrderBook


def interleaved_text(bids: Sequence[str], asks: Sequence[str], depth: int) -> str:
    """The hashed string, from best-first ``"price:size"`` wire texts per side."""
    b = bids if type(bids) is list and len(bids) <= depth else list(bids[:depth])
    a = asks if type(asks) is list and len(asks) <= depth else list(asks[:depth])
    nb, na = len(b), len(a)
    if nb == na:  # (both sides as deep as the checksum: no slices to copy)
        parts: list[str] = [""] * (2 * nb)
        parts[::2] = b  # interleaved with C-level slice assignments, not a Python loop
        parts[1::2] = a
        return ":".join(parts)
    n = min(nb, na)
    parts = [""] * (2 * n)
    parts[::2] = b[:n]
    parts[1::2] = a[:n]
    parts += b[n:] or a[n:]
    return ":".join(parts)


def signed_crc32(text: str) -> int:
    """zlib CRC32 of ``text`` (UTF-8) as a signed 32-bit integer."""
    crc = zlib.crc32(text.encode())
    return crc - (1 << 32) if crc >= 1 << 31 else crc


def book_checksum(book: OrderBook, depth: int) -> int:
    """The checksum of the best ``depth`` levels of ``book`` (which keeps wire text)."""
    bids, asks = book.top_text(depth)
    crc = zlib.crc32(interleaved_text(bids, asks, depth).encode())  # (signed_crc32, inline)
    return crc - (1 << 32) if crc >= 1 << 31 else crc
