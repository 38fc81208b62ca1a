"""Binance USD-M futures wire messages (msgspec Structs listing only the fields bookwire uses).

Pushes on ``/ws`` endpoints are flat objects tagged by ``e`` (``bookTicker``, ``depthUpdate``,
``aggTrade``); replies to requests carry the request's ``id``. Prices and quantities are decimal
strings, decoded with ``strict=False`` into the checked number types of :mod:`core.codec`.

Data only: no I/O, no clocks.
"""

from __future__ import annotations

import msgspec

from core.codec import Price, Seq, Size, TsMs, WireLevel
from core.funding import FundingRate


class Head(msgspec.Struct):
    """What kind of frame this is: a push (``e``) or a reply (``id``); the rest is skipped."""

    e: str | None = None
    id: int | str | None = None


class Symbol(msgspec.Struct):
    """Just the symbol of a push, read when the full payload does not decode."""

    s: str = ""


class BookTicker(msgspec.Struct):
    """``<symbol>@bookTicker``: best bid ``b``/``B`` and ask ``a``/``A``, update id ``u``.

    A price of 0 (with size 0) is an empty side."""

    s: str
    u: Seq
    b: Size
    B: Size
    a: Size
    A: Size
    T: TsMs | None = None  # transaction time
    E: TsMs | None = None  # event time


class DepthUpdate(msgspec.Struct):
    """``<symbol>@depth@100ms``: the levels changed between update ids ``U`` and ``u``; ``pu``
    is the ``u`` of the previous event of the stream. Sizes are absolute; 0 removes."""

    s: str
    U: Seq
    u: Seq
    pu: Seq
    b: list[WireLevel]
    a: list[WireLevel]
    T: TsMs | None = None
    E: TsMs | None = None
    e: str = ""  # the event type: read when the frame is decoded without its Head first


class AggTrade(msgspec.Struct):
    """``<symbol>@aggTrade``: one taker order's fills at one price; ``m``: the buyer was the
    maker (so the taker sold)."""

    s: str
    a: Seq  # aggregate trade id
    p: Price
    q: Size
    T: TsMs
    m: bool


class MarkPrice(msgspec.Struct):
    """``<symbol>@markPrice@1s``: mark price ``p``, index price ``i``, funding rate ``r`` for the
    funding at ``T`` (ms), event time ``E``."""

    s: str
    p: Price
    E: TsMs | None = None
    i: Price | None = None
    r: FundingRate | None = None
    T: TsMs | None = None


class OpenInterest(msgspec.Struct):
    """``GET /fapi/v1/openInterest``: open interest in base units at ``time`` (ms)."""

    symbol: str
    openInterest: Size
    time: TsMs | None = None


class ServerTime(msgspec.Struct):
    """``GET /fapi/v1/time``."""

    serverTime: TsMs


class ErrorInfo(msgspec.Struct):
    code: int | str | None = None
    msg: str = ""


class Reply(msgspec.Struct):
    """A reply to ``SUBSCRIBE``/``UNSUBSCRIBE``/``LIST_SUBSCRIPTIONS``: ``result`` (null on
    success) or an error, as ``error: {code, msg}`` or flat ``code``/``msg``."""

    id: int | str | None = None
    result: msgspec.Raw = msgspec.Raw(b"null")
    error: ErrorInfo | None = None
    code: int | str | None = None
    msg: str | None = None


class RestDepth(msgspec.Struct):
    """``GET /fapi/v1/depth``: the book at update id ``lastUpdateId``, best levels first."""

    lastUpdateId: Seq
    bids: list[WireLevel]
    asks: list[WireLevel]
    T: TsMs | None = None
    E: TsMs | None = None


class RestError(msgspec.Struct):
    """A REST error body: ``{"code": -1121, "msg": "Invalid symbol."}``."""

    code: int = 0
    msg: str = ""


class Filter(msgspec.Struct):
    filterType: str
    tickSize: str | None = None
    stepSize: str | None = None


class SymbolInfo(msgspec.Struct):
    """One entry of ``GET /fapi/v1/exchangeInfo``."""

    symbol: str
    baseAsset: str
    quoteAsset: str
    contractType: str = ""
    status: str = ""
    filters: list[Filter] = msgspec.field(default_factory=list)


class ExchangeInfo(msgspec.Struct):
    symbols: list[SymbolInfo]
