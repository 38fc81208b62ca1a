"""Kraken spot websocket v2 wire messages (msgspec Structs listing only the fields used).

Every frame is a JSON object: pushes name their ``channel`` (``book``, ``ticker``, ``trade``,
``heartbeat``, ``status``) and ``type`` (``snapshot`` or ``update``) and carry ``data``, a list;
replies to requests name their ``method`` (``subscribe``, ``unsubscribe``, ``pong``). Prices
and quantities are JSON numbers written with the instrument's full precision; book levels keep
them as raw text (:class:`msgspec.Raw`), because the book checksum hashes that text.

Data only: no I/O, no clocks.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from core.codec import Price, Size

UInt32 = Annotated[int, msgspec.Meta(ge=0, le=2**32 - 1)]


class Head(msgspec.Struct):
    """What a frame is: a push (``channel``) or a reply (``method``); the rest is skipped."""

    channel: str | None = None
    method: str | None = None
    type: str | None = None


class Level(msgspec.Struct):
    """A book level, its numbers as the venue wrote them."""

    price: msgspec.Raw
    qty: msgspec.Raw


class BookData(msgspec.Struct):
    symbol: str
    bids: list[Level]
    asks: list[Level]
    checksum: UInt32
    timestamp: str | None = None


class BookMsg(msgspec.Struct):
    type: str
    data: list[BookData]


class Named(msgspec.Struct):
    """Just the symbol of a data entry (read when the full entry does not decode)."""

    symbol: str = ""


class NamedMsg(msgspec.Struct):
    data: list[Named] = msgspec.field(default_factory=list)


class TickerData(msgspec.Struct):
    """A ``ticker`` entry: the best bid and ask (and daily statistics, not used)."""

    symbol: str
    bid: Price
    bid_qty: Size
    ask: Price
    ask_qty: Size
    timestamp: str | None = None


class TickerMsg(msgspec.Struct):
    type: str
    data: list[TickerData]


class TradeData(msgspec.Struct):
    """A ``trade`` entry; ``side`` is the taker's side."""

    symbol: str
    side: str
    price: Price
    qty: Size
    trade_id: int
    timestamp: str


class TradeMsg(msgspec.Struct):
    type: str
    data: list[TradeData]


class StatusData(msgspec.Struct):
    system: str = ""
    version: str = ""


class StatusMsg(msgspec.Struct):
    data: list[StatusData] = msgspec.field(default_factory=list)


class AckResult(msgspec.Struct):
    channel: str = ""
    symbol: str = ""


class Reply(msgspec.Struct):
    """A reply: ``success`` with ``result`` (the subscription, one reply per symbol), or
    ``error`` with the ``symbol`` it is about."""

    method: str
    success: bool = False
    result: AckResult | None = None
    error: str | None = None
    symbol: str | None = None
    req_id: int | None = None
