"""HTX (Huobi) USDT-margined swap websocket wire messages and REST contract info.

msgspec Structs that list only the fields the protocol uses. Book and trade numbers are JSON
numbers on this API, so they decode straight to floats; a level is ``[price, contracts]``.
Decoding through these types is what turns a badly shaped frame into a msgspec error (counted by
the protocol base class as ``decode_error``) instead of a ``KeyError`` deep in a handler.

Data only: no I/O, no clocks, no trio.
"""

from __future__ import annotations

import msgspec

from core.codec import Price, Seq, Size, TsMs
from core.codec import WireLevel as WireLevel  # ``[price, contracts]``, checked
from core.funding import FundingRate


class Envelope(msgspec.Struct):
    """Every inflated server frame.

    One of: a server heartbeat ``{"ping": n}``; a push ``{"ch", "ts", "tick"}``; a reply to a
    ``sub``/``unsub`` (``id``, ``status``, ``subbed``/``unsubbed``, or ``err-code``/``err-msg``).
    """

    ping: int | None = None
    ch: str | None = None
    ts: int | None = None
    tick: msgspec.Raw = msgspec.Raw(b"")  # empty when absent
    id: str | int | None = None
    status: str | None = None
    subbed: str | None = None
    unsubbed: str | None = None
    err_code: str | None = msgspec.field(default=None, name="err-code")
    err_msg: str | None = msgspec.field(default=None, name="err-msg")


class DepthTick(msgspec.Struct):
    """``depth.step0`` and ``depth.size_{20,150}.high_freq`` payload.

    ``event`` is ``snapshot`` or ``update`` on the incremental channels and absent on step0.
    ``version`` counts +1 per message of an incremental stream (per connection); on step0 it is
    the push time in seconds. A side may be ``null`` in an incremental snapshot of a thin book.
    """

    version: Seq
    ts: TsMs
    bids: list[WireLevel] | None = None
    asks: list[WireLevel] | None = None
    event: str | None = None
    mrid: Seq | None = None


class BboTick(msgspec.Struct):
    """``bbo`` payload: best bid and ask as ``[price, contracts]``; a side may be missing."""

    ts: TsMs
    version: Seq | None = None
    bid: tuple[Price, Size] | None = None
    ask: tuple[Price, Size] | None = None


class TradeItem(msgspec.Struct):
    """One trade of a ``trade.detail`` push: ``amount`` contracts, ``quantity`` coins,
    ``direction`` the taker's side."""

    id: int
    ts: TsMs
    price: Price
    amount: Size
    direction: str
    quantity: float | None = None


class TradeTick(msgspec.Struct):
    """``trade.detail`` payload."""

    ts: TsMs
    data: list[TradeItem]


class ContractInfo(msgspec.Struct):
    """One row of ``/linear-swap-api/v1/swap_contract_info``."""

    symbol: str
    contract_code: str
    contract_size: float
    price_tick: float
    contract_status: int
    business_type: str | None = None
    contract_type: str | None = None
    pair: str | None = None


class ContractInfoReply(msgspec.Struct):
    status: str
    data: list[ContractInfo] = msgspec.field(default_factory=list)
    err_code: str | int | None = None
    err_msg: str | None = None


# -- REST answers polled for the ``funding`` channel ----------------------------------------------


class RestReply(msgspec.Struct):
    """The envelope of every REST answer: ``status`` ``ok`` (with ``data``) or ``error``."""

    status: str = ""
    data: msgspec.Raw = msgspec.Raw(b"null")
    ts: TsMs | None = None
    err_code: int | str | None = None
    err_msg: str | None = None


class FundingRateData(msgspec.Struct):
    """``swap_funding_rate``: the rate for the funding at ``funding_time`` (ms strings); after
    it ``next_funding_time`` when the venue gives it (it may be null)."""

    contract_code: str
    funding_rate: FundingRate | None = None
    funding_time: TsMs | None = None
    next_funding_time: TsMs | None = None


class OpenInterestData(msgspec.Struct):
    """One entry of ``swap_open_interest``: ``volume`` in contracts, ``amount`` in coin."""

    contract_code: str
    volume: Size


class IndexData(msgspec.Struct):
    """One entry of ``swap_index``."""

    contract_code: str
    index_price: Price
    index_ts: TsMs | None = None


class Candle(msgspec.Struct):
    """One ``mark_price_kline`` candle; ``close`` is the latest mark price while it is open."""

    id: int
    close: Price


class ServerTime(msgspec.Struct):
    """``GET /api/v1/timestamp``: ``ts`` in ms."""

    status: str
    ts: TsMs
