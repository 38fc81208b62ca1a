"""Bitget v2 public websocket and REST wire messages (msgspec Structs listing only the fields used).

Prices, sizes and the ``ts`` of data entries stay as sent: the book checksum needs the
original price/size text, and the protocol converts each value once. ``seq``/``pseq`` are JSON
integers and decode to exact Python ints (they can exceed 2^53; never through a float).

Only data definitions here: no I/O, no conversion logic.
"""

from __future__ import annotations

import msgspec

from core.codec import Price, Seq, Size, TsMs
from core.funding import FundingRate


class Arg(msgspec.Struct):
    """A channel argument: ``{"instType":"USDT-FUTURES","channel":"books","instId":"BTCUSDT"}``."""

    channel: str = ""
    instId: str = ""
    instType: str = ""


class Envelope(msgspec.Struct):
    """Every JSON frame: a push (``action``/``arg``/``data``) or an event (acks and errors)."""

    action: str | None = None
    arg: Arg | None = None
    data: msgspec.Raw = msgspec.Raw(b"")  # empty when absent
    event: str | None = None
    code: int | str | None = None
    msg: str | None = None
    op: str | None = None


class BookData(msgspec.Struct):
    """A ``books``/``books1`` entry; ``asks``/``bids`` are ``[price, size]`` strings, best first."""

    asks: list[tuple[str, str]]
    bids: list[tuple[str, str]]
    ts: str | int  # ms; a string as documented, a number accepted
    checksum: int = 0
    seq: Seq | None = None
    pseq: Seq | None = None


class BooksFrame(msgspec.Struct):
    """A whole ``books``/``books1`` push in one pass (the hot path); anything else, or a push
    that does not fit, goes through :class:`Envelope`."""

    action: str
    arg: Arg
    data: list[BookData]


class TradeData(msgspec.Struct):
    """A ``trade`` entry: ``side`` is the taker's side, ``size`` in base coin."""

    ts: str | int  # ms; a string as documented, a number accepted
    price: str
    size: str
    side: str
    tradeId: str


class TickerData(msgspec.Struct):
    """A ``ticker`` entry (every push is a whole ticker), the fields the ``funding`` channel
    uses; numbers are decimal strings, decoded with ``strict=False`` into checked types.
    ``holdingAmount`` is the open interest in base coin."""

    instId: str
    ts: TsMs | None = None
    fundingRate: FundingRate | None = None
    nextFundingTime: TsMs | None = None
    markPrice: Price | None = None
    indexPrice: Price | None = None
    holdingAmount: Size | None = None


class ServerTime(msgspec.Struct):
    serverTime: int


class ServerTimeReply(msgspec.Struct):
    """``GET /api/v2/public/time``: ``data.serverTime`` in ms (a string)."""

    data: ServerTime


class ContractItem(msgspec.Struct):
    """One entry of ``GET /api/v2/mix/market/contracts``."""

    symbol: str
    baseCoin: str
    quoteCoin: str
    pricePlace: str
    priceEndStep: str = "1"
    sizeMultiplier: str | None = None
    symbolType: str = "perpetual"
    symbolStatus: str = "normal"
    fundInterval: str | None = None  # hours between fundings


class ContractsReply(msgspec.Struct):
    code: str
    msg: str = ""
    data: list[ContractItem] | None = None
