"""OKX v5 public websocket and REST wire messages (msgspec Structs listing only the fields used).

Book levels are ``[price, size, "0", orders]`` strings and stay text: the book checksum hashes
the venue's own text, and the protocol converts each value once. ``seqId``/``prevSeqId`` are JSON
integers (``prevSeqId`` is -1 on a snapshot).

Data only: no I/O, no conversion logic.
"""

from __future__ import annotations

import msgspec

from core.codec import Price, Seq, Size, TsMs
from core.funding import FundingRate


class Arg(msgspec.Struct):
    """A channel argument: ``{"channel": "books", "instId": "BTC-USDT-SWAP"}``."""

    channel: str = ""
    instId: str = ""


class Envelope(msgspec.Struct):
    """Every JSON frame: a push (``arg``/``data``, ``action`` on books) or an event (acks,
    errors, notices; ``id`` echoes the request's ``id`` where the request had one)."""

    event: str | None = None
    id: str | None = None
    arg: Arg | None = None
    action: str | None = None
    data: msgspec.Raw = msgspec.Raw(b"")  # empty when absent
    code: str | None = None
    msg: str | None = None


class BookData(msgspec.Struct):
    """A ``books`` entry: levels best first; ``checksum`` 0 when the venue sends none."""

    asks: list[list[str]]
    bids: list[list[str]]
    ts: str
    checksum: int = 0
    seqId: Seq | None = None
    prevSeqId: Seq | None = None


class BooksFrame(msgspec.Struct):
    """A whole ``books`` push in one pass (the hot path). ``event`` may only be absent or null,
    so an event frame never fits; anything that does not fit goes through :class:`Envelope`,
    which reports exactly what is wrong."""

    arg: Arg
    action: str
    data: list[BookData]
    event: None = None


class BboData(msgspec.Struct):
    """A ``bbo-tbt`` entry: the best level of each side."""

    asks: list[list[str]]
    bids: list[list[str]]
    ts: str
    seqId: Seq | None = None


class TradeData(msgspec.Struct):
    """A ``trades`` entry: ``side`` is the taker's side, ``sz`` in contracts for swaps."""

    instId: str
    tradeId: str
    px: str
    sz: str
    side: str
    ts: str


class FundingRateData(msgspec.Struct):
    """A ``funding-rate`` entry: ``fundingRate`` for the funding at ``fundingTime``, the one
    after at ``nextFundingTime`` (ms strings; decoded with ``strict=False``)."""

    instId: str
    fundingRate: FundingRate
    fundingTime: TsMs
    nextFundingTime: TsMs | None = None
    ts: TsMs | None = None


class MarkPriceData(msgspec.Struct):
    """A ``mark-price`` entry."""

    instId: str
    markPx: Price
    ts: TsMs | None = None


class OpenInterestData(msgspec.Struct):
    """An ``open-interest`` entry: ``oi`` in contracts (``oiCcy`` in coin)."""

    instId: str
    oi: Size
    ts: TsMs | None = None


class IndexTickerData(msgspec.Struct):
    """An ``index-tickers`` entry (``instId`` is the index, ``BTC-USDT``)."""

    instId: str
    idxPx: Price
    ts: TsMs | None = None


class ServerTime(msgspec.Struct):
    ts: TsMs


class ServerTimeReply(msgspec.Struct):
    """``GET /api/v5/public/time``: ``data[0].ts`` in ms (a string)."""

    code: str
    data: list[ServerTime]


class InstrumentData(msgspec.Struct):
    """One entry of ``GET /api/v5/public/instruments?instType=SWAP``."""

    instId: str
    instType: str = ""
    instFamily: str = ""
    uly: str = ""
    ctVal: str = ""
    ctValCcy: str = ""
    ctType: str = ""
    settleCcy: str = ""
    tickSz: str = ""
    lotSz: str = ""
    state: str = ""


class InstrumentsReply(msgspec.Struct):
    code: str
    msg: str = ""
    data: list[InstrumentData] | None = None
