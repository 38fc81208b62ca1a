"""A fake Bitget v2 public venue (``USDT-FUTURES``): the speaker ``--simulate`` and the fault kit
serve.

What it says, as Bitget does (``wss://ws.bitget.com/v2/ws/public``):

* ``{"op":"subscribe","args":[...]}``: every argument is acknowledged on its own
  (``{"event":"subscribe","arg":{...}}``) or refused with ``{"event":"error","arg":{...},
  "code":30001,"msg":"... doesn't exist","op":"subscribe"}``; ``unsubscribe`` likewise;
* the text ``ping`` is answered with the text ``pong``; a connection that sends no ``ping`` for
  ``PING_TIMEOUT_NS`` is closed, as Bitget does;
* ``books``: a snapshot of the whole book, then updates; ``seq`` grows by one per change of the
  book (the same numbers on every connection) and every update's ``pseq`` is the ``seq`` of the
  previous frame of that subscription; ``checksum`` is the CRC32 of the top 25 levels in
  wire text, interleaved bid/ask, as a signed 32-bit integer (computed here from the venue's own
  book, independently of the plugin);
* ``books1``: a one-level snapshot whenever the best level changes;
* ``trade``: a snapshot of the latest trades (newest first), then one update per trade;
* ``ticker``: a whole ticker (``action`` ``snapshot``) when subscribed and at every update of
  the simulated perpetual context (:mod:`core.sim.perp`): funding rate and next funding time,
  mark and index prices, open interest (``holdingAmount``, base coin), best bid and ask;
* REST ``/api/v2/mix/market/contracts``: the listings (``fundInterval`` in hours);
  ``/api/v2/public/time``: the server time.

Sans-IO like the plugin: no trio, no sockets, no clock reads.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from typing import Any

from core.codec import S_NS
from core.sim.market import (
    BookChange,
    Ladder,
    Listing,
    Market,
    MarketEvent,
    PerpUpdate,
    TradePrint,
)
from core.sim.simulator import power_of_ten
from core.sim.speaker import PERMANENT, TRANSIENT_TEXT, Out, SpeakerSession, VenueSpeaker, ms

INST_TYPE = "USDT-FUTURES"
PING_TIMEOUT_NS = 120 * S_NS
FIRST_SEQ = 2**53 + 1000  # above 2^53: clients must keep it an exact integer
TRADE_SNAPSHOT = 50
CONTRACTS_PATH = "/api/v2/mix/market/contracts"
Wire = list[tuple[str, str]]


def venue_checksum(bids: Wire, asks: Wire) -> int:
    """Bitget's checksum of best-first sides: top 25 interleaved, CRC32, signed 32-bit."""
    fields: list[str] = []
    for i in range(25):
        for side in (bids, asks):
            if i < len(side):
                fields += [side[i][0], side[i][1]]
    crc = zlib.crc32(":".join(fields).encode())
    return crc - (1 << 32) if crc & (1 << 31) else crc


def push(action: str, channel: str, inst: str, data: list[Any], ts_ms: int) -> str:
    return json.dumps({"action": action, "arg": {"instType": INST_TYPE, "channel": channel,
                                                 "instId": inst}, "data": data, "ts": ts_ms},
                      separators=(",", ":"))


@dataclass
class _Sub:
    channel: str  # books, books1, trade, ticker
    symbol: str
    inst: str
    last_seq: int = 0  # seq of the last frame sent on this subscription


class BitgetSession(SpeakerSession):
    speaker: BitgetSpeaker

    def __init__(self, speaker: VenueSpeaker, conn_id: int, now_ns: int) -> None:
        super().__init__(speaker, conn_id, now_ns)
        self.subs: dict[tuple[str, str], _Sub] = {}
        self.last_ping_ns = now_ns

    # -- client frames ---------------------------------------------------------------------------

    def receive(self, frame: str | bytes, now_ns: int) -> list[Out]:
        if frame == "ping":
            self.last_ping_ns = now_ns
            return [Out("pong", "pong")]
        try:
            msg = json.loads(frame)
            op, args = msg.get("op"), msg.get("args")
        except (ValueError, AttributeError):
            return [Out(_text({"event": "error", "code": 30012, "msg": "param error"}), "error")]
        if op not in ("subscribe", "unsubscribe") or not isinstance(args, list):
            return [Out(_text({"event": "error", "code": 30016, "msg": "Param error"}), "error")]
        outs: list[Out] = []
        for arg in args:
            outs.extend(self._arg(op, arg, now_ns))
        return outs

    def _arg(self, op: str, arg: dict[str, Any], now_ns: int) -> list[Out]:
        channel, inst = arg.get("channel"), str(arg.get("instId"))
        symbol = self.speaker.by_native.get(inst)
        if arg.get("instType") != INST_TYPE or symbol is None or channel not in (
                "books", "books1", "trade", "ticker"):
            return [self._error(op, arg, 30001, f"instType:{arg.get('instType')},channel:"
                                f"{channel},instId:{inst} doesn't exist", symbol)]
        key = (str(channel), inst)
        if op == "unsubscribe":
            self.subs.pop(key, None)
            return [Out(_text({"event": "unsubscribe", "arg": arg}), "ack", symbol)]
        refusal = self.refusal(symbol)
        if refusal == PERMANENT:
            return [self._error(op, arg, 30001, f"instType:{INST_TYPE},channel:{channel},"
                                f"instId:{inst} doesn't exist", symbol)]
        if refusal is not None:
            return [self._error(op, arg, 30006, f"request too many: {TRANSIENT_TEXT}", symbol)]
        outs = [Out(_text({"event": "subscribe", "arg": arg}), "ack", symbol)]
        if key in self.subs:
            return outs
        sub = self.subs[key] = _Sub(str(channel), symbol, inst)
        if sub.channel == "ticker":
            outs.extend(self._ticker(sub, now_ns))
        elif sub.channel == "trade":
            recent = list(self.speaker.market.recent_trades[("bitget", symbol)])[-TRADE_SNAPSHOT:]
            rows = [self._trade_row(t) for t in reversed(recent)]
            ts = ms(recent[-1].ts_ns) if recent else ms(now_ns)
            outs.append(Out(push("snapshot", "trade", inst, rows, ts), "snapshot", symbol))
        else:
            depth = 1 if sub.channel == "books1" else None
            view = self.view(symbol, "tob" if depth else "l2", depth)
            bids, asks = view.snapshot(self._book(symbol))
            outs.append(self._books(sub, "snapshot", bids, asks, now_ns,
                                    self.speaker.seq.get(symbol, FIRST_SEQ)))
        return outs

    def _error(self, op: str, arg: dict[str, Any], code: int, text: str,
               symbol: str | None) -> Out:
        return Out(_text({"event": "error", "arg": arg, "code": code, "msg": text, "op": op}),
                   "error", symbol)

    # -- market ---------------------------------------------------------------------------------

    def market(self, event: MarketEvent, now_ns: int) -> list[Out]:
        outs: list[Out] = []
        for sub in self.subs.values():
            if sub.symbol != event.symbol:
                continue
            if sub.channel == "ticker":
                if isinstance(event, PerpUpdate):
                    outs.extend(self._ticker(sub, event.ts_ns))
                continue
            if isinstance(event, PerpUpdate):
                continue
            if isinstance(event, TradePrint):
                if sub.channel == "trade":
                    outs.append(Out(push("update", "trade", sub.inst, [self._trade_row(event)],
                                         ms(event.ts_ns)), "trade", sub.symbol))
                continue
            if sub.channel == "trade":
                continue
            view = self.views[(sub.symbol, "tob" if sub.channel == "books1" else "l2")]
            bids, asks = view.diff(self._book(sub.symbol))
            if not bids and not asks:
                continue
            seq = self.speaker.seq.get(sub.symbol, FIRST_SEQ)
            if sub.channel == "books1":
                outs.append(self._books(sub, "snapshot", *view.ladders(), event.ts_ns, seq))
            else:
                outs.append(self._books(sub, "update", bids, asks, event.ts_ns, seq))
        return outs

    def _ticker(self, sub: _Sub, ts_ns: int) -> list[Out]:
        """A whole ticker, as Bitget pushes it (numbers as strings, times in ms)."""
        market = self.speaker.market
        perp = market.perps.get(("bitget", sub.symbol))
        if perp is None:
            return []
        listing = market.listing("bitget", sub.symbol)
        book = self._book(sub.symbol)
        bb, ba = book.best_bid(), book.best_ask()
        entry = {"instId": sub.inst, "symbol": sub.inst,
                 "lastPr": listing.price_text(perp.mark_ticks),
                 "bidPr": listing.price_text(bb) if bb is not None else "",
                 "askPr": listing.price_text(ba) if ba is not None else "",
                 "bidSz": listing.size_text(book.bids[bb]) if bb is not None else "",
                 "askSz": listing.size_text(book.asks[ba]) if ba is not None else "",
                 "fundingRate": format(perp.funding_rate, "f"),
                 "nextFundingTime": str(perp.next_funding_ns // 1_000_000),
                 "markPrice": listing.price_text(perp.mark_ticks),
                 "indexPrice": listing.price_text(perp.index_ticks),
                 "holdingAmount": listing.size_text(perp.open_interest_lots),
                 "symbolType": 1, "deliveryPrice": "0", "ts": str(ms(ts_ns))}
        return [Out(push("snapshot", "ticker", sub.inst, [entry], ms(ts_ns)), "snapshot",
                    sub.symbol)]

    def _book(self, symbol: str) -> Any:
        return self.speaker.market.book("bitget", symbol)

    def _books(self, sub: _Sub, action: str, bids: Ladder, asks: Ladder, ts_ns: int,
               seq: int) -> Out:
        listing = self.speaker.market.listing("bitget", sub.symbol)
        wire_bids = [(listing.price_text(p), listing.size_text(q)) for p, q in bids]
        wire_asks = [(listing.price_text(p), listing.size_text(q)) for p, q in asks]
        view = self.views[(sub.symbol, "tob" if sub.channel == "books1" else "l2")]
        book_bids, book_asks = view.ladders()
        checksum = venue_checksum(
            [(listing.price_text(p), listing.size_text(q)) for p, q in book_bids],
            [(listing.price_text(p), listing.size_text(q)) for p, q in book_asks])
        pseq = sub.last_seq if action == "update" or sub.channel == "books1" else 0
        sub.last_seq = seq
        ts = ms(ts_ns)
        entry = {"asks": [list(x) for x in wire_asks], "bids": [list(x) for x in wire_bids],
                 "checksum": checksum if sub.channel == "books" else 0,
                 "ts": str(ts), "seq": seq, "pseq": pseq}
        kind = "delta" if action == "update" else "snapshot"
        return Out(push(action, sub.channel, sub.inst, [entry], ts), kind, sub.symbol)

    def _trade_row(self, trade: TradePrint) -> dict[str, str]:
        listing = self.speaker.market.listing("bitget", trade.symbol)
        return {"ts": str(ms(trade.ts_ns)), "price": listing.price_text(trade.ticks),
                "size": listing.size_text(trade.lots), "side": trade.taker,
                "tradeId": str(trade.trade_id)}

    # -- timers: no ping for two minutes closes the connection ----------------------------------

    def next_deadline(self) -> int | None:
        return self.last_ping_ns + PING_TIMEOUT_NS

    def on_deadline(self, now_ns: int) -> list[Out]:
        if now_ns < self.last_ping_ns + PING_TIMEOUT_NS:
            return []
        self.last_ping_ns = now_ns + 3600 * S_NS
        self.speaker.closed_for_no_ping.append(self.conn_id)
        return [Out(close=(1000, "no ping received"), kind="close")]

    # -- fault kit: a wrong checksum ------------------------------------------------------------

    def mutate(self, out: Out, how: str) -> Out | None:
        if how != "checksum":
            return super().mutate(out, how)
        if not isinstance(out.frame, str):
            return None
        doc = json.loads(out.frame)
        entries = doc.get("data") or []
        if doc.get("arg", {}).get("channel") != "books" or not entries:
            return None
        entries[0]["checksum"] = (entries[0]["checksum"] ^ 0x5A5A5A5A) or 1
        return Out(_text(doc), out.kind, out.symbol)


def _text(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


class BitgetSpeaker(VenueSpeaker):
    name = "bitget"
    path = "/v2/ws/public"
    session_class = BitgetSession
    perpetual = True
    server_time_path = "/api/v2/public/time"

    def __init__(self, market: Market) -> None:
        super().__init__(market)
        self.by_native = {s.replace("-", ""): s for s in self.symbols()}
        self.closed_for_no_ping: list[int] = []
        #: the book sequence of each symbol: +1 per book change, the same on every connection
        self.seq: dict[str, int] = {}

    def observe(self, event: MarketEvent) -> None:
        if isinstance(event, BookChange):
            self.seq[event.symbol] = self.seq.get(event.symbol, FIRST_SEQ) + 1

    @classmethod
    def listing(cls, symbol: str, price: float) -> Listing:
        return Listing("bitget", symbol, tick=power_of_ten(price / 100_000),
                       lot=power_of_ten(100 / price))

    def server_time(self, venue_ns: int) -> bytes:
        now_ms = venue_ns // 1_000_000
        return json.dumps({"code": "00000", "msg": "success", "requestTime": now_ms,
                           "data": {"serverTime": str(now_ms)}}).encode()

    def rest(self, target: str) -> bytes | None:
        if target.split("?", 1)[0] != CONTRACTS_PATH:
            return None
        data = []
        for sym in self.symbols():
            listing = self.market.listing(self.name, sym)
            base, quote = sym.split("-", 1)
            data.append({"symbol": sym.replace("-", ""), "baseCoin": base, "quoteCoin": quote,
                         "pricePlace": str(listing.price_decimals), "priceEndStep": "1",
                         "volumePlace": str(listing.size_decimals),
                         "sizeMultiplier": str(listing.lot), "symbolType": "perpetual",
                         "symbolStatus": "normal", **self._fund_interval(sym)})
        return json.dumps({"code": "00000", "msg": "success", "requestTime": 1_700_000_000_000,
                           "data": data}).encode()


    def _fund_interval(self, symbol: str) -> dict[str, str]:
        perp = self.market.perps.get((self.name, symbol))
        if perp is None or perp.interval_s % 3600:
            return {}
        return {"fundInterval": str(perp.interval_s // 3600)}


__all__ = ["BitgetSession", "BitgetSpeaker", "push", "venue_checksum"]
