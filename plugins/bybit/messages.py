"""Bybit v5 public websocket wire messages (msgspec Structs listing only the fields we use).

Prices and sizes are decimal strings on the wire; the protocol decodes the book and trade payloads
with ``strict=False`` decoders, so msgspec turns them into checked floats (:mod:`core.codec`
types) in one pass.
"""

from __future__ import annotations

import msgspec

from core.codec import Price, Seq, Size, TsMs, WireLevel
from core.funding import FundingRate, IntervalHours


class Envelope(msgspec.Struct):
    """Every frame: a topic push (``topic``/``type``/``data``) or an op reply (acks, pong)."""

    topic: str | None = None
    type: str | None = None
    ts: TsMs | None = None
    cts: TsMs | None = None
    data: msgspec.Raw = msgspec.Raw(b"")  # empty when absent
    op: str | None = None
    success: bool | None = None
    ret_msg: str | None = None
    req_id: str | None = None
    args: list[str] | None = None


class BookData(msgspec.Struct):
    """``orderbook.{depth}.{symbol}`` payload; ``b``/``a`` are ``[price, size]`` levels."""

    s: str
    b: tuple[WireLevel, ...]
    a: tuple[WireLevel, ...]
    u: Seq
    seq: Seq | None = None


class BookFrame(msgspec.Struct):
    """A whole ``orderbook.*`` push in one pass (the hot path); anything else, or a book push
    that does not fit, goes through :class:`Envelope`."""

    topic: str
    type: str
    data: BookData
    ts: TsMs | None = None
    cts: TsMs | None = None


class TradeData(msgspec.Struct):
    """One ``publicTrade`` entry: ``T`` trade time ms, ``S`` taker side, ``v`` size, ``p`` price."""

    T: TsMs
    s: str
    S: str
    v: Size
    p: Price
    i: str


class TickerData(msgspec.Struct):
    """``tickers.{symbol}`` payload, the fields the ``funding`` channel uses. A ``snapshot``
    carries every field; a ``delta`` only those that changed (the others are ``UNSET``)."""

    symbol: str
    markPrice: Price | msgspec.UnsetType = msgspec.UNSET
    indexPrice: Price | msgspec.UnsetType = msgspec.UNSET
    fundingRate: FundingRate | msgspec.UnsetType = msgspec.UNSET
    nextFundingTime: TsMs | msgspec.UnsetType = msgspec.UNSET
    openInterest: Size | msgspec.UnsetType = msgspec.UNSET  # base coin on linear contracts
    fundingIntervalHour: IntervalHours | msgspec.UnsetType = msgspec.UNSET


class ServerTime(msgspec.Struct):
    timeNano: int


class ServerTimeReply(msgspec.Struct):
    """``GET /v5/market/time``: ``result.timeNano`` is the server time in ns (a string)."""

    result: ServerTime


class PriceFilter(msgspec.Struct):
    tickSize: str


class LotSizeFilter(msgspec.Struct):
    qtyStep: str


class InstrumentInfo(msgspec.Struct):
    """One entry of ``/v5/market/instruments-info?category=linear``."""

    symbol: str
    baseCoin: str
    quoteCoin: str
    status: str
    priceFilter: PriceFilter
    lotSizeFilter: LotSizeFilter
    contractType: str = "LinearPerpetual"
    fundingInterval: int | None = None  # minutes


class InstrumentList(msgspec.Struct):
    items: list[InstrumentInfo] = msgspec.field(name="list")


class InstrumentsReply(msgspec.Struct):
    result: InstrumentList
