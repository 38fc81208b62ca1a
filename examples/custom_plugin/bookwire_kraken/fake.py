"""A fake Kraken spot venue (websocket v2), built with bookwire's kit: what ``--simulate`` and
the fault kit serve for this plugin.

What it says, as Kraken does (``wss://ws.kraken.com/v2``):

* a ``status`` push when a connection opens (``system: "online"``); a ``heartbeat`` push about
  every second while the connection has subscriptions and nothing else to send;
* ``{"method":"subscribe","params":{"channel","symbol":[...],...},"req_id"}`` is answered per
  symbol: ``{"method":"subscribe","result":{"channel",...,"symbol"},"success":true,...}``, or
  ``{"error":"Currency pair not supported X/Y","method":"subscribe","success":false,"symbol"}``
  for a pair it does not list (a permanent refusal of the fault kit is exactly that); a refusal
  for load says ``Exceeded msg rate``; ``unsubscribe`` likewise; ``{"method":"ping"}`` gets
  ``{"method":"pong"}``; a frame that is not a request gets ``Malformed request``;
* ``book`` (``depth`` 10, 25, 100, 500 or 1000): a snapshot of that many levels a side, then
  updates of the levels that changed inside the window, including the level that enters it when
  one inside is removed, but no removal for a level pushed out of it (the client cuts its book to
  the depth); every frame's ``checksum`` is the CRC32 of the top 10 levels of each side, computed
  here from the venue's own book over the wire text;
* ``ticker`` with ``event_trigger: "bbo"``: the best bid and ask (and the day's statistics) at
  subscription and on every change of the best levels;
* ``trade``: one update per trade print, ``side`` the taker's; with ``snapshot: true`` the last
  50 trades first;
* prices and quantities are JSON numbers written with the pair's full precision (a quantity of
  one lot is ``0.00000001``, one of a tenth of a coin ``0.10000000``; a removed level's is
  ``0``).

Sans-IO like the plugin: no trio, no sockets, no clock reads.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import msgspec

from bookwire_kraken.checksum import checksum_of
from core.codec import S_NS
from core.sim.market import BookChange, Ladder, Listing, Market, MarketEvent, TradePrint
from core.sim.simulator import power_of_ten
from core.sim.speaker import PERMANENT, Out, SpeakerSession, VenueSpeaker

HEARTBEAT_NS = S_NS
TRADE_SNAPSHOT = 50
DEPTHS = (10, 25, 100, 500, 1000)
CHANNELS = ("book", "ticker", "trade")
LOT = Decimal("0.00000001")
_encode = msgspec.json.Encoder().encode


def number(value: str | Decimal) -> msgspec.Raw:
    """A JSON number written exactly as given (``0.10000000`` keeps its zeros)."""
    return msgspec.Raw((value if isinstance(value, str) else f"{value:f}").encode())


def rfc3339(ns: int) -> str:
    """``2026-08-09T21:05:48.483587Z``: Kraken's timestamps (microseconds, UTC)."""
    head = datetime.fromtimestamp(ns // S_NS, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{head}.{ns % S_NS // 1000:06d}Z"


def text(obj: Any) -> str:
    return _encode(obj).decode()


@dataclass
class _Sub:
    channel: str
    symbol: str
    native: str
    depth: int = 0


@dataclass
class _Day:
    """A pair's trading statistics since the market started (for the ticker)."""

    first: Decimal | None = None
    last: Decimal | None = None
    low: Decimal | None = None
    high: Decimal | None = None
    volume: Decimal = Decimal(0)
    turnover: Decimal = Decimal(0)


class KrakenSession(SpeakerSession):
    speaker: KrakenSpeaker

    def __init__(self, speaker: VenueSpeaker, conn_id: int, now_ns: int) -> None:
        super().__init__(speaker, conn_id, now_ns)
        self.subs: dict[tuple[str, str], _Sub] = {}
        self.last_sent_ns = now_ns

    def opened(self, now_ns: int) -> list[Out]:
        return [Out(text({"channel": "status", "type": "update", "data": [{
            "api_version": "v2", "connection_id": 4_200_000 + self.conn_id, "system": "online",
            "version": "2.0.10"}]}), "info")]

    # -- client frames ---------------------------------------------------------------------------

    def receive(self, frame: str | bytes, now_ns: int) -> list[Out]:
        self.last_sent_ns = now_ns
        try:
            msg = json.loads(frame)
            method = msg.get("method")
        except (ValueError, AttributeError):
            return [self._reply({"error": "Malformed request", "method": "error",
                                 "success": False}, now_ns)]
        req: dict[str, Any] = {"req_id": msg["req_id"]} if "req_id" in msg else {}
        if method == "ping":
            return [self._reply({"method": "pong", **req}, now_ns, "pong")]
        params = msg.get("params")
        if method not in ("subscribe", "unsubscribe") or not isinstance(params, dict):
            return [self._reply({"error": "Malformed request", "method": str(method),
                                 "success": False, **req}, now_ns)]
        channel, symbols = params.get("channel"), params.get("symbol")
        if channel not in CHANNELS or not isinstance(symbols, list):
            return [self._reply({"error": f"Channel {channel} not supported",
                                 "method": method, "success": False, **req}, now_ns)]
        depth = params.get("depth", 10) if channel == "book" else 0
        if depth not in (*DEPTHS, 0):
            return [self._reply({"error": f"Invalid depth {depth}", "method": method,
                                 "success": False, **req}, now_ns)]
        outs: list[Out] = []
        for native in symbols:
            outs += self._one(method, str(channel), str(native), depth,
                              bool(params.get("snapshot", True)), params, req, now_ns)
        return outs

    def _one(self, method: str, channel: str, native: str, depth: int, snapshot: bool,
             params: dict[str, Any], req: dict[str, Any], now_ns: int) -> list[Out]:
        symbol = self.speaker.by_native.get(native)
        if symbol is None or (method == "subscribe" and symbol in self.speaker.unlisted):
            if symbol is not None:
                self.refusal(symbol)  # counted
            return [self._reply({"error": f"Currency pair not supported {native}",
                                 "method": method, "success": False, "symbol": native, **req},
                                now_ns, "error", symbol)]
        result: dict[str, Any] = {"channel": channel, "symbol": native}
        if channel == "book":
            result["depth"] = depth
        if method == "unsubscribe":
            self.subs.pop((channel, symbol), None)
            return [self._reply({"method": method, "result": result, "success": True, **req},
                                now_ns, "ack", symbol)]
        if self.refusal(symbol) is not None:
            return [self._reply({"error": "Exceeded msg rate", "method": method,
                                 "success": False, "symbol": native, **req},
                                now_ns, "error", symbol)]
        if channel == "ticker":
            result["event_trigger"] = params.get("event_trigger", "trades")
        result["snapshot"] = snapshot
        outs = [self._reply({"method": method, "result": result, "success": True, **req},
                            now_ns, "ack", symbol)]
        sub = self.subs[(channel, symbol)] = _Sub(channel, symbol, native, depth)
        book = self.speaker.market.book(self.speaker.name, symbol)
        if channel == "book":
            bids, asks = self.view(symbol, "l2", depth).snapshot(book)
            outs.append(self._book(sub, "snapshot", bids, asks, now_ns))
        elif channel == "ticker":
            self.view(symbol, "tob", 1).snapshot(book)
            if snapshot:
                outs.append(self._ticker(sub, "snapshot"))
        elif snapshot:
            recent = list(self.speaker.market.recent_trades[(self.speaker.name, symbol)])
            rows = [self.speaker.trade_row(t) for t in recent[-TRADE_SNAPSHOT:]]
            outs.append(Out(text({"channel": "trade", "type": "snapshot", "data": rows}),
                            "snapshot", symbol))
        return outs

    def _reply(self, body: dict[str, Any], now_ns: int, kind: str = "error",
               symbol: str | None = None) -> Out:
        stamp = rfc3339(now_ns)
        return Out(text({**body, "time_in": stamp, "time_out": stamp}), kind, symbol)

    # -- market ---------------------------------------------------------------------------------

    def market(self, event: MarketEvent, now_ns: int) -> list[Out]:
        outs: list[Out] = []
        for sub in self.subs.values():
            if sub.symbol != event.symbol:
                continue
            if isinstance(event, TradePrint):
                if sub.channel == "trade":
                    outs.append(Out(text({"channel": "trade", "type": "update",
                                          "data": [self.speaker.trade_row(event)]}),
                                    "trade", sub.symbol))
                continue
            book = self.speaker.market.book(self.speaker.name, sub.symbol)
            if sub.channel == "book":
                bids, asks = self.views[(sub.symbol, "l2")].diff(book)
                # a level pushed out of the window is not sent; one that left the book is
                bids = [(p, q) for p, q in bids if q or p not in book.bids]
                asks = [(p, q) for p, q in asks if q or p not in book.asks]
                if bids or asks:
                    outs.append(self._book(sub, "update", bids, asks, event.ts_ns))
            elif sub.channel == "ticker":
                bids, asks = self.views[(sub.symbol, "tob")].diff(book)
                if bids or asks:
                    outs.append(self._ticker(sub, "update"))
        if outs:
            self.last_sent_ns = max(self.last_sent_ns, now_ns)
        return outs

    def _book(self, sub: _Sub, kind: str, bids: Ladder, asks: Ladder, ts_ns: int) -> Out:
        listing = self.speaker.listing_of(sub.symbol)
        view_bids, view_asks = self.views[(sub.symbol, "l2")].ladders()
        checksum = checksum_of(_wire(listing, view_bids[:10]), _wire(listing, view_asks[:10]))
        entry = {"symbol": sub.native, "bids": _levels(listing, bids),
                 "asks": _levels(listing, asks), "checksum": checksum,
                 "timestamp": rfc3339(ts_ns)}
        return Out(text({"channel": "book", "type": kind, "data": [entry]}),
                   "snapshot" if kind == "snapshot" else "delta", sub.symbol)

    def _ticker(self, sub: _Sub, kind: str) -> Out:
        listing = self.speaker.listing_of(sub.symbol)
        bids, asks = self.views[(sub.symbol, "tob")].ladders()
        (bp, bq), (ap, aq) = (bids or [(0, 0)])[0], (asks or [(0, 0)])[0]
        bid, ask = Decimal(listing.price_text(bp)), Decimal(listing.price_text(ap))
        day = self.speaker.day[sub.symbol]
        mid = (bid + ask) / 2
        last = day.last if day.last is not None else mid
        first = day.first if day.first is not None else last
        vwap = day.turnover / day.volume if day.volume else last
        change_pct = (last - first) / first * 100 if first else Decimal(0)
        entry = {"symbol": sub.native, "bid": number(bid),
                 "bid_qty": number(listing.size_text(bq)), "ask": number(ask),
                 "ask_qty": number(listing.size_text(aq)), "last": number(last),
                 "volume": number(day.volume), "vwap": number(vwap.quantize(listing.tick)),
                 "low": number(day.low if day.low is not None else last),
                 "high": number(day.high if day.high is not None else last),
                 "change": number(last - first),
                 "change_pct": number(change_pct.quantize(Decimal("0.01")))}
        return Out(text({"channel": "ticker", "type": kind, "data": [entry]}), "snapshot",
                   sub.symbol)

    # -- timers: the heartbeat ------------------------------------------------------------------

    def next_deadline(self) -> int | None:
        return self.last_sent_ns + HEARTBEAT_NS if self.subs else None

    def on_deadline(self, now_ns: int) -> list[Out]:
        if not self.subs or now_ns < self.last_sent_ns + HEARTBEAT_NS:
            return []
        self.last_sent_ns = now_ns
        return [Out(text({"channel": "heartbeat"}), "heartbeat")]

    # -- fault kit: a wrong checksum ------------------------------------------------------------

    def mutate(self, out: Out, how: str) -> Out | None:
        if how != "checksum":
            return super().mutate(out, how)
        if not isinstance(out.frame, str):
            return None
        doc = json.loads(out.frame, parse_float=number)  # numbers keep their text
        if doc.get("channel") != "book" or not doc.get("data"):
            return None
        entry = doc["data"][0]
        entry["checksum"] = (entry["checksum"] ^ 0x5A5A5A5A) or 1
        return Out(text(doc), out.kind, out.symbol)


class KrakenSpeaker(VenueSpeaker):
    name = "kraken"
    path = "/v2"
    session_class = KrakenSession

    def __init__(self, market: Market) -> None:
        super().__init__(market)
        self.by_native = {s.replace("-", "/"): s for s in self.symbols()}
        self.day = {s: _Day() for s in self.symbols()}
        #: pairs answered as not supported (a permanent refusal)
        self.unlisted: set[str] = set()

    @classmethod
    def listing(cls, symbol: str, price: float) -> Listing:
        return Listing("kraken", symbol, tick=power_of_ten(price / 100_000), lot=LOT)

    def refuse(self, symbol: str, kind: str = PERMANENT, times: int | None = None) -> None:
        super().refuse(symbol, kind, times)
        if kind == PERMANENT:
            self.unlisted.add(symbol)

    def listing_of(self, symbol: str) -> Listing:
        return self.market.listing(self.name, symbol)

    def observe(self, event: MarketEvent) -> None:
        if isinstance(event, BookChange) or event.symbol not in self.day:
            return
        listing = self.listing_of(event.symbol)
        price, qty = listing.price(event.ticks), listing.size(event.lots)
        day = self.day[event.symbol]
        day.first = day.first if day.first is not None else price
        day.last = price
        day.low = price if day.low is None else min(day.low, price)
        day.high = price if day.high is None else max(day.high, price)
        day.volume += qty
        day.turnover += qty * price

    def trade_row(self, trade: TradePrint) -> dict[str, Any]:
        listing = self.listing_of(trade.symbol)
        return {"symbol": trade.symbol.replace("-", "/"), "side": trade.taker,
                "price": number(listing.price_text(trade.ticks)),
                "qty": number(listing.size_text(trade.lots)), "ord_type": "market",
                "trade_id": trade.trade_id, "timestamp": rfc3339(trade.ts_ns)}


def _wire(listing: Listing, ladder: Ladder) -> list[tuple[str, str]]:
    return [(listing.price_text(p), listing.size_text(q)) for p, q in ladder]


def _levels(listing: Listing, ladder: Ladder) -> list[dict[str, msgspec.Raw]]:
    """Levels as Kraken writes them: full precision, and ``0`` for a level removed."""
    return [{"price": number(listing.price_text(p)),
             "qty": number(listing.size_text(q) if q else "0")} for p, q in ladder]


__all__ = ["KrakenSession", "KrakenSpeaker", "rfc3339"]
