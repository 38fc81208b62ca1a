"""Coinbase Exchange (legacy ``ws-feed``) wire messages (msgspec Structs, only the fields used).

Every frame is one flat JSON object told apart by ``type``: ``snapshot``, ``l2update``, ``match``,
``last_match``, ``ticker``, ``heartbeat``, ``subscriptions``, ``error``. One flat Struct decodes
them all (absent fields stay ``None``), so a type this plugin does not know decodes fine and is
ignored instead of failing.

Prices and sizes are decimal strings on the wire; the decoder runs with ``strict=False`` so
msgspec parses them straight into floats (the value ``float(text)`` gives).

Data only: no I/O, no clocks.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from core.codec import Price, Seq, Size, WireLevel


class ChannelSub(msgspec.Struct):
    """One entry of a ``subscriptions`` frame."""

    name: str
    product_ids: list[str] = msgspec.field(default_factory=list)


class Message(msgspec.Struct, gc=False):
    """Any frame of the feed."""

    type: str
    product_id: str | None = None
    time: str | None = None
    # snapshot: [price, size]; l2update: [side ("buy"|"sell"), price, new absolute size]
    bids: list[WireLevel] | None = None
    asks: list[WireLevel] | None = None
    changes: list[tuple[Literal["buy", "sell"], Price, Size]] | None = None
    # match / last_match (side: the maker's), ticker, heartbeat
    trade_id: Seq | None = None
    sequence: Seq | None = None
    price: Price | None = None
    size: Size | None = None
    side: str | None = None
    best_bid: Price | None = None
    best_bid_size: Size | None = None
    best_ask: Price | None = None
    best_ask_size: Size | None = None
    last_trade_id: Seq | None = None
    # subscriptions / error
    channels: list[ChannelSub] | None = None
    message: str | None = None
    reason: str | None = None


class Head(msgspec.Struct):
    """Just the type and product of a frame, read when the whole frame does not decode."""

    type: str = ""
    product_id: str | None = None


class Product(msgspec.Struct):
    """One entry of ``GET /products``."""

    id: str
    quote_increment: str
    base_increment: str | None = None
    status: str = "online"
    trading_disabled: bool = False


PRODUCTS = list[Product]


class ServerTime(msgspec.Struct):
    """``GET /time``: ``iso`` is the server time (RFC 3339, ms)."""

    iso: str
