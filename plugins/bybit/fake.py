"""A fake Bybit v5 public linear venue: the speaker ``--simulate`` and the fault kit serve.

What it says, as Bybit does (``wss://stream.bybit.com/v5/public/linear``):

* ``{"op":"subscribe","args":[topics],"req_id"}`` is answered by one op reply per request
  (``success`` true, or false with the reason in ``ret_msg`` for a symbol it does not list);
  ``unsubscribe`` likewise; ``{"op":"ping"}`` gets the linear pong (``ret_msg: "pong"``).
* ``orderbook.{50,200,1000}.{SYMBOL}``: a ``snapshot`` of that many levels, then ``delta``
  frames with absolute sizes (``"0"`` deletes; levels leaving the depth window are deleted),
  ``u`` growing by one per frame of the stream and ``cts`` (engine time) at the top level.
* ``orderbook.1.{SYMBOL}``: a ``snapshot`` of the best level whenever it changes, and the same
  snapshot again after 3 s without change.
* ``publicTrade.{SYMBOL}``: one frame per trade print, ``S`` the taker's side.
* ``tickers.{SYMBOL}``: a ``snapshot`` with every field when subscribed, then ``delta`` frames
  with only the fields that changed: funding rate, next funding time, mark and index prices and
  open interest from the simulated perpetual context (:mod:`core.sim.perp`), best bid and ask
  (and their sizes) whenever the book's top changes.
* REST ``/v5/market/instruments-info``: the listings of the market (``fundingInterval`` in
  minutes); ``/v5/market/time``: the server time (``timeNano``).

The builders :func:`book_msg` and :func:`trade_msg` write single frames in the same format for
protocol tests. Sans-IO like the plugin: no trio, no sockets, no clock reads.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from core.codec import S_NS
from core.sim.market import Listing, MarketEvent, PerpUpdate, TradePrint
from core.sim.simulator import power_of_ten
from core.sim.speaker import (
    PERMANENT,
    TRANSIENT_TEXT,
    Out,
    SpeakerSession,
    VenueSpeaker,
    ms,
)

TOB_REPEAT_NS = 3 * S_NS
DEPTHS = {"1": 1, "50": 50, "200": 200, "1000": 1000}
INSTRUMENTS_PATH = "/v5/market/instruments-info"

Message = dict[str, Any]


def _text(obj: Message) -> str:
    return json.dumps(obj, separators=(",", ":"))


#: scripted times below this are milliseconds after it (2026-08-09T21:26:58Z); real venue times
#: are never that small, and decoders reject them
EPOCH_MS = 1_786_310_818_000


def at(ms: int) -> int:
    """A scripted time in ms since the Unix epoch: ``ms`` itself, or ``EPOCH_MS + ms``."""
    return ms if ms >= EPOCH_MS else EPOCH_MS + ms


def book_msg(symbol: str, kind: str, bids: list[list[str]], asks: list[list[str]], u: int,
             ts_ms: int, depth: int = 50, seq: int = 0) -> Message:
    """An ``orderbook.{depth}.{symbol}`` push exactly as Bybit sends it (``cts`` top-level);
    ``ts_ms`` goes through :func:`at`."""
    return {"topic": f"orderbook.{depth}.{symbol}", "type": kind, "ts": at(ts_ms),
            "data": {"s": symbol, "b": bids, "a": asks, "u": u, "seq": seq or u * 10},
            "cts": at(ts_ms) - 1}


def trade_msg(symbol: str, trades: list[tuple[int, str, str, str, str]], ts_ms: int) -> Message:
    """A ``publicTrade.{symbol}`` push; each trade is (T ms, side Buy/Sell, size, price, id);
    times go through :func:`at`."""
    return {"topic": f"publicTrade.{symbol}", "type": "snapshot", "ts": at(ts_ms),
            "data": [{"T": at(t), "s": symbol, "S": side, "v": v, "p": p, "L": "PlusTick",
                      "i": i, "BT": False, "seq": 1} for t, side, v, p, i in trades]}


@dataclass
class _Topic:
    name: str
    kind: str  # "book", "trade" or "ticker"
    symbol: str
    native: str
    depth: int = 0
    last_ns: int = 0  # orderbook.1: when the best level was last sent


def _channel(t: _Topic) -> str:
    return "tob" if t.depth == 1 else "l2"


class BybitSession(SpeakerSession):
    speaker: BybitSpeaker

    def __init__(self, speaker: VenueSpeaker, conn_id: int, now_ns: int) -> None:
        super().__init__(speaker, conn_id, now_ns)
        self.topics: dict[str, _Topic] = {}
        self._u: dict[str, int] = {}  # per topic, per connection
        self._told: dict[str, dict[str, str]] = {}  # ticker topic -> the fields sent so far

    def next_u(self, topic: str, repeat: bool = False) -> int:
        """``u`` of the next frame of ``topic`` (a repeated best level keeps its ``u``)."""
        u = self._u.get(topic, 10_000)
        if not repeat or topic not in self._u:
            u += 1
        self._u[topic] = u
        return u

    # -- client frames ---------------------------------------------------------------------------

    def receive(self, frame: str | bytes, now_ns: int) -> list[Out]:
        try:
            msg = json.loads(frame)
            op = msg.get("op")
        except (ValueError, AttributeError):
            return [Out(_text({"success": False, "ret_msg": "error:invalid json",
                               "conn_id": self._conn(), "op": ""}), "error")]
        req_id = str(msg.get("req_id", ""))
        if op == "ping":
            return [Out(_text({"success": True, "ret_msg": "pong", "conn_id": self._conn(),
                               "req_id": req_id, "op": "ping"}), "pong")]
        if op == "unsubscribe":
            for name in msg.get("args") or []:
                self.topics.pop(name, None)
            return [self._reply(op, req_id, True, "")]
        if op != "subscribe":
            return [self._reply(str(op), req_id, False, f"error:unknown op {op}")]
        wanted = [self._topic(name) for name in msg.get("args") or []]
        bad = [name for name, t in zip(msg.get("args") or [], wanted, strict=True) if t is None]
        if bad:
            return [self._reply(op, req_id, False, f"Invalid symbol :[{','.join(bad)}]")]
        topics = [t for t in wanted if t is not None]
        for t in topics:
            refusal = self.refusal(t.symbol)
            if refusal is not None:
                reason = f"Invalid symbol :[{t.name}]" if refusal == PERMANENT else \
                    f"Too many visits! {TRANSIENT_TEXT}"
                return [self._reply(op, req_id, False, reason, t.symbol)]
        outs = [self._reply(op, req_id, True, "")]
        for t in topics:
            self.topics[t.name] = t
            if t.kind == "book":
                outs.append(self._snapshot(t, now_ns))
            elif t.kind == "ticker":
                outs.extend(self._ticker(t, now_ns, snapshot=True))
        return outs

    def _topic(self, name: str) -> _Topic | None:
        parts = str(name).split(".")
        native = parts[-1]
        symbol = self.speaker.by_native.get(native)
        if symbol is None:
            return None
        if parts[0] == "orderbook" and len(parts) == 3 and parts[1] in DEPTHS:
            return _Topic(name, "book", symbol, native, DEPTHS[parts[1]])
        if parts[0] == "publicTrade" and len(parts) == 2:
            return _Topic(name, "trade", symbol, native)
        if parts[0] == "tickers" and len(parts) == 2:
            return _Topic(name, "ticker", symbol, native)
        return None

    def _reply(self, op: str, req_id: str, ok: bool, reason: str,
               symbol: str | None = None) -> Out:
        return Out(_text({"success": ok, "ret_msg": reason, "conn_id": self._conn(),
                          "req_id": req_id, "op": op}), "ack" if ok else "error", symbol)

    def _conn(self) -> str:
        return f"fake-{self.conn_id}"

    # -- market ---------------------------------------------------------------------------------

    def market(self, event: MarketEvent, now_ns: int) -> list[Out]:
        outs: list[Out] = []
        for t in list(self.topics.values()):
            if t.symbol != event.symbol:
                continue
            if t.kind == "ticker":
                outs.extend(self._ticker(t, event.ts_ns))
                continue
            if isinstance(event, PerpUpdate):
                continue
            if isinstance(event, TradePrint):
                if t.kind == "trade":
                    outs.append(self._trade(t, event))
            elif t.kind == "book":
                view = self.views[(t.symbol, _channel(t))]
                bids, asks = view.diff(self.speaker.market.book("bybit", t.symbol))
                if not bids and not asks:
                    continue
                if t.depth == 1:  # orderbook.1 sends snapshots only
                    outs.append(self._book(t, "snapshot", *view.ladders(), event.ts_ns))
                else:
                    outs.append(self._book(t, "delta", bids, asks, event.ts_ns))
        return outs

    def _snapshot(self, t: _Topic, ts_ns: int) -> Out:
        view = self.view(t.symbol, _channel(t), t.depth)
        bids, asks = view.snapshot(self.speaker.market.book("bybit", t.symbol))
        return self._book(t, "snapshot", bids, asks, ts_ns)

    def _book(self, t: _Topic, kind: str, bids: list[tuple[int, int]],
              asks: list[tuple[int, int]], ts_ns: int, repeat: bool = False) -> Out:
        listing = self.speaker.market.listing("bybit", t.symbol)
        u = self.next_u(t.name, repeat)
        msg = {"topic": t.name, "type": kind, "ts": ms(ts_ns) + 1,
               "data": {"s": t.native,
                        "b": [[listing.price_text(p), listing.size_text(q)] for p, q in bids],
                        "a": [[listing.price_text(p), listing.size_text(q)] for p, q in asks],
                        "u": u, "seq": self.speaker.next_seq()},
               "cts": ms(ts_ns)}
        t.last_ns = ts_ns
        return Out(_text(msg), "snapshot" if kind == "snapshot" else "delta", t.symbol)

    def _trade(self, t: _Topic, trade: TradePrint) -> Out:
        listing = self.speaker.market.listing("bybit", t.symbol)
        ts = ms(trade.ts_ns)
        return Out(_text({"topic": t.name, "type": "snapshot", "ts": ts + 1, "data": [{
            "T": ts, "s": t.native, "S": "Buy" if trade.taker == "buy" else "Sell",
            "v": listing.size_text(trade.lots), "p": listing.price_text(trade.ticks),
            "L": "PlusTick", "i": str(trade.trade_id), "BT": False,
            "seq": self.speaker.next_seq()}]}), "trade", t.symbol)

    def _ticker(self, t: _Topic, ts_ns: int, snapshot: bool = False) -> list[Out]:
        """The ticker's fields now; a snapshot sends them all, a delta only the changed ones."""
        fields = self.speaker.ticker_fields(t.symbol)
        told = self._told.setdefault(t.name, {})
        changed = fields if snapshot else {k: v for k, v in fields.items() if told.get(k) != v}
        if not changed:
            return []
        told.update(changed)
        msg = {"topic": t.name, "type": "snapshot" if snapshot else "delta",
               "data": {"symbol": t.native, **changed}, "cs": self.speaker.next_seq(),
               "ts": ms(ts_ns)}
        return [Out(_text(msg), "snapshot" if snapshot else "delta", t.symbol)]

    # -- timers: orderbook.1 repeats an unchanged best level every 3 s ---------------------------

    def next_deadline(self) -> int | None:
        due = [t.last_ns + TOB_REPEAT_NS for t in self.topics.values() if t.depth == 1]
        return min(due) if due else None

    def on_deadline(self, now_ns: int) -> list[Out]:
        outs = []
        for t in self.topics.values():
            if t.depth == 1 and t.last_ns + TOB_REPEAT_NS <= now_ns:
                view = self.views[(t.symbol, "tob")]
                outs.append(self._book(t, "snapshot", *view.ladders(), now_ns, repeat=True))
        return outs


class BybitSpeaker(VenueSpeaker):
    name = "bybit"
    path = "/v5/public/linear"
    session_class = BybitSession
    perpetual = True
    server_time_path = "/v5/market/time"

    def __init__(self, market: Any) -> None:
        super().__init__(market)
        self.by_native = {s.replace("-", ""): s for s in self.symbols()}
        self._seq = 700_000_000

    @classmethod
    def listing(cls, symbol: str, price: float) -> Listing:
        return Listing("bybit", symbol, tick=power_of_ten(price / 100_000),
                       lot=power_of_ten(100 / price))

    def next_seq(self) -> int:
        self._seq += 7
        return self._seq

    def server_time(self, venue_ns: int) -> bytes:
        return json.dumps({"retCode": 0, "retMsg": "OK", "result": {
            "timeSecond": str(venue_ns // S_NS), "timeNano": str(venue_ns)},
            "retExtInfo": {}, "time": venue_ns // 1_000_000}).encode()

    def ticker_fields(self, symbol: str) -> dict[str, str]:
        """The ``tickers`` fields of ``symbol`` now (funding ones only for a perpetual)."""
        listing = self.market.listing(self.name, symbol)
        book = self.market.book(self.name, symbol)
        out: dict[str, str] = {}
        for side, best in (("bid1", book.best_bid()), ("ask1", book.best_ask())):
            if best is not None:
                sizes = book.bids if side == "bid1" else book.asks
                out[f"{side}Price"] = listing.price_text(best)
                out[f"{side}Size"] = listing.size_text(sizes[best])
        perp = self.market.perps.get((self.name, symbol))
        if perp is not None:
            out |= {"markPrice": listing.price_text(perp.mark_ticks),
                    "indexPrice": listing.price_text(perp.index_ticks),
                    "fundingRate": format(perp.funding_rate, "f"),
                    "nextFundingTime": str(perp.next_funding_ns // 1_000_000),
                    "openInterest": listing.size_text(perp.open_interest_lots)}
            if perp.interval_s % 3600 == 0:
                out["fundingIntervalHour"] = str(perp.interval_s // 3600)
        return out

    def rest(self, target: str) -> bytes | None:
        if target.split("?", 1)[0] != INSTRUMENTS_PATH:
            return None
        items = []
        for sym in self.symbols():
            listing = self.market.listing(self.name, sym)
            base, quote = sym.split("-", 1)
            perp = self.market.perps.get((self.name, sym))
            items.append({"symbol": sym.replace("-", ""), "contractType": "LinearPerpetual",
                          "status": "Trading", "baseCoin": base, "quoteCoin": quote,
                          "priceFilter": {"tickSize": str(listing.tick)},
                          "lotSizeFilter": {"qtyStep": str(listing.lot)},
                          "fundingInterval": perp.interval_s // 60 if perp else 480})
        return json.dumps({"retCode": 0, "retMsg": "OK", "result": {
            "category": "linear", "list": items}}).encode()


__all__ = ["BybitSession", "BybitSpeaker", "book_msg", "trade_msg"]
