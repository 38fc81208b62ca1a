"""Bybit v5 public websocket wire messages (msgspec Structs listing only the fields we use).

Prices and sizes stay strings as sent; the protocol converts them once.
"""

from __future__ import annotations

import msgspec


class Envelope(msgspec.Struct):
    """Every frame: a topic push (``topic``/``type``/``data``) or an op reply (acks, pong)."""

    topic: str | None = None
    type: str | None = None
    ts: int | None = None
    cts: int | None = None
    data: msgspec.Raw = msgspec.Raw(b"")  # empty when absent
    op: str | None = None
    success: bool | None = None
    ret_msg: str | None = None
    req_id: str | None = None
    args: list[str] | None = None


class BookData(msgspec.Struct):
    """``orderbook.{depth}.{symbol}`` payload; ``b``/``a`` are ``[price, size]`` strings."""

    s: str
    b: list[tuple[str, str]]
    a: list[tuple[str, str]]
    u: int
    seq: int | None = None


class TradeData(msgspec.Struct):
    """One ``publicTrade`` entry: ``T`` trade time ms, ``S`` taker side, ``v`` size, ``p`` price."""

    T: int
    s: str
    S: str
    v: str
    p: str
    i: str


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


class InstrumentList(msgspec.Struct):
    items: list[InstrumentInfo] = msgspec.field(name="list")


class InstrumentsReply(msgspec.Struct):
    result: InstrumentList
