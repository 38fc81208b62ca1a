"""Coinbase Advanced Trade public websocket wire messages (msgspec Structs, only the fields used).

Every frame is an envelope ``{"channel", "client_id", "timestamp", "sequence_num", "events"}``;
``events`` is kept raw and decoded by the channel's own decoder, so a frame is validated once and
the multi-megabyte ``l2_data`` snapshots never pass through generic Python objects. An ``l2_data``
frame, the bulk of the stream, is first tried whole in one pass (:class:`L2Frame`). Error frames
are ``{"type": "error", "message": ...}`` without a channel.

Prices and sizes are decimal strings on the wire; the ``l2_data`` and ``market_trades`` decoders
run with ``strict=False`` so msgspec parses them straight into floats (correctly rounded, the same
value ``float(text)`` gives) instead of building a string per level first.

Data only: no I/O, no clocks.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from core.codec import Price, Seq, Size, TsMs


class Envelope(msgspec.Struct):
    """Any frame. ``events`` is empty for error frames."""

    channel: str | None = None
    timestamp: str | None = None
    sequence_num: Seq | None = None
    events: msgspec.Raw = msgspec.Raw(b"")
    type: str | None = None
    message: str | None = None


class L2Level(msgspec.Struct, gc=False):
    """One ``l2_data`` level: ``new_quantity`` is absolute, ``0`` removes the level."""

    side: Literal["bid", "offer"]
    event_time: str
    price_level: Price
    new_quantity: Size


class L2Event(msgspec.Struct):
    """``type`` is ``snapshot`` (the whole book) or ``update``."""

    type: str
    product_id: str
    updates: list[L2Level]


class L2Frame(msgspec.Struct):
    """A whole ``l2_data`` frame in one pass (the hot path), decoded with ``strict=False`` for
    the levels' numbers. ``strict=False`` would also read ``"17"``, ``17.0`` or ``1e3`` as the
    integer ``sequence_num``; with ``float`` and ``str`` in its type they stay what they are, so
    the frame fits only when it is an ``int``, exactly as :class:`Envelope` reads it. Anything
    that does not fit goes through :class:`Envelope`, which reports exactly what is wrong."""

    channel: Literal["l2_data"]
    sequence_num: Seq | float | str
    events: list[L2Event]
    timestamp: str | None = None


class MarketTrade(msgspec.Struct, gc=False):
    """One ``market_trades`` entry; ``side`` is the **maker's** side."""

    product_id: str
    trade_id: str
    price: Price
    size: Size
    time: str
    side: Literal["BUY", "SELL"]


class TradesEvent(msgspec.Struct):
    """``snapshot`` (recent trades from before the subscription) or ``update``."""

    type: str
    trades: list[MarketTrade]


class SubscriptionsEvent(msgspec.Struct):
    """The connection's current subscriptions: channel -> product ids (``heartbeats`` lists
    ``["heartbeats"]``)."""

    subscriptions: dict[str, list[str]]


class _Product(msgspec.Struct):
    product_id: str
    base_increment: str
    quote_increment: str
    status: str = "online"
    trading_disabled: bool = False
    product_type: str = "SPOT"


class ProductsReply(msgspec.Struct):
    """``GET /api/v3/brokerage/market/products``."""

    products: list[_Product]


L2_EVENTS = list[L2Event]
TRADES_EVENTS = list[TradesEvent]
SUBSCRIPTIONS_EVENTS = list[SubscriptionsEvent]


class ServerTime(msgspec.Struct):
    """``GET /api/v3/brokerage/time``: ``epochMillis`` is the server time in ms (a string)."""

    epochMillis: TsMs
