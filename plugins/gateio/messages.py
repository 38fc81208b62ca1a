"""Gate.io futures v4 wire messages (msgspec Structs listing only the fields bookwire uses).

Numbers arrive as decimal strings (prices, ``futures.obu`` sizes, fractional sizes) or JSON
numbers (most contract counts); fields typed ``float`` are decoded with ``strict=False`` so both
become floats inside msgspec, and a value that is not a number is a ``ValidationError`` like any
other malformed frame. Sizes are still contract counts here; the protocol scales them.

Data only: no I/O, no clocks.
"""

from __future__ import annotations

import msgspec

from core.codec import Finite, Price, Seq, Size, TsMs, TsS, WireLevel
from core.funding import FundingRate


class Error(msgspec.Struct):
    """The ``error`` object of a rejected request."""

    code: int | str | None = None
    message: str = ""


class Envelope(msgspec.Struct):
    """Every frame: request replies (``subscribe``/``unsubscribe``), pushes (``update``), pongs.

    ``result`` is kept raw and decoded per channel; it is empty when absent and ``null`` on pongs.
    ``id`` and ``payload`` are echoes of the request that newer servers add to replies.
    """

    channel: str = ""
    event: str = ""
    time: int | None = None
    time_ms: int | None = None  # 0 in some replies: checked where it is used as a time
    id: int | None = None
    payload: list[str] | None = None
    error: Error | None = None
    result: msgspec.Raw = msgspec.Raw(b"")


class Status(msgspec.Struct):
    """The ``result`` of a request reply: ``{"status": "success"}``."""

    status: str = ""


class StreamName(msgspec.Struct):
    """Just the stream or contract name of a push, read when the full payload does not decode."""

    s: str = ""


class System(msgspec.Struct):
    """``futures.system`` push, e.g. ``{"type": "upgrade", "msg": ...}``."""

    type: str = ""
    msg: str = ""


class BookTicker(msgspec.Struct):
    """``futures.book_ticker`` result: best bid/ask; an empty price string means an empty side.

    ``u`` is the order-book id the values belong to, ``t`` the engine time in ms.
    """

    s: str
    u: Seq
    b: str = ""
    B: Size = 0.0
    a: str = ""
    A: Size = 0.0
    t: TsMs | None = None


class ObuData(msgspec.Struct):
    """``futures.obu`` result. ``s`` is the stream name (``ob.BTC_USDT.50``).

    ``full: true`` marks a snapshot (with ``u`` only); a delta carries ``U`` (first id) and ``u``
    (last id). ``b``/``a`` are ``[price, size]`` pairs, absent when a delta only advances the id.
    """

    s: str
    u: Seq
    U: Seq | None = None
    full: bool = False
    t: TsMs | None = None
    b: list[WireLevel] = []
    a: list[WireLevel] = []


class ObuFrame(msgspec.Struct):
    """A whole ``futures.obu`` push in one pass (the hot path); anything else, or a push that
    does not fit, goes through :class:`Envelope`."""

    channel: str
    event: str
    result: ObuData
    time_ms: int | None = None


class PriceSize(msgspec.Struct):
    """One ``{"p": price, "s": size}`` level of the REST book and ``futures.order_book_update``."""

    p: Price
    s: Size


class OrderBookUpdate(msgspec.Struct):
    """``futures.order_book_update`` result: a delta covering ids ``U..u`` of contract ``s``."""

    s: str
    U: Seq
    u: Seq
    t: TsMs | None = None
    b: list[PriceSize] = []
    a: list[PriceSize] = []


class RestOrderBook(msgspec.Struct):
    """``GET /api/v4/futures/{settle}/order_book?contract=X&with_id=true`` body."""

    id: Seq
    asks: list[PriceSize]
    bids: list[PriceSize]
    current: float | None = None
    update: float | None = None


class TradeData(msgspec.Struct):
    """One ``futures.trades`` entry: ``size`` is signed (negative: the taker sold)."""

    id: int | str
    contract: str
    size: Finite
    price: Price
    create_time: TsS | None = None
    create_time_ms: TsMs | None = None
    is_internal: bool = False


class Ticker(msgspec.Struct):
    """One ``futures.tickers`` entry, the fields the ``funding`` channel uses: ``total_size`` is
    the open interest in contracts. Decimal strings, decoded with ``strict=False``."""

    contract: str
    funding_rate: FundingRate | None = None
    mark_price: Price | None = None
    index_price: Price | None = None
    total_size: Size | None = None


class ServerTime(msgspec.Struct):
    """``GET /api/v4/spot/time``: ``server_time`` in ms."""

    server_time: TsMs


class Contract(msgspec.Struct):
    """One entry of ``GET /api/v4/futures/usdt/contracts``."""

    name: str
    quanto_multiplier: float
    order_price_round: float
    in_delisting: bool = False
    enable_decimal: bool = False
    status: str | None = None
    funding_interval: int | None = None  # seconds
    funding_next_apply: float | None = None  # the next funding time, s since the epoch
