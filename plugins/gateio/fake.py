"""A fake Gate.io USDT futures v4 venue (``/v4/ws/usdt``): the speaker ``--simulate`` and the
fault kit serve.

What it says, as Gate does:

* every request ``{"time","id","channel","event","payload"}`` gets a reply on its channel with
  ``result: {"status": "success"}`` (echoing ``id`` and ``payload``, as today's servers do, or
  neither with ``echo=False``, as the 2023 ones did), or ``"error": {"code", "message"}``; a
  second subscription of a live ``futures.obu`` stream is refused (``Alert sub``); contracts it
  does not list are acknowledged ``success`` and stay silent;
* ``futures.ping`` is answered with ``futures.pong``;
* ``futures.book_ticker``: the best bid and ask (prices as strings, sizes in contracts) whenever
  they change, with the order-book id ``u``;
* ``futures.obu`` (``ob.{contract}.{50|400}``): a ``full: true`` snapshot, then deltas whose
  ``U..u`` cover every order-book id since the previous frame of the stream (an id whose change is
  outside the window is covered by the next visible delta), levels as ``[price, size]`` strings;
* ``futures.trades``: one entry per trade, ``size`` in contracts, negative when the taker sold;
* ``futures.tickers``: a whole ticker at every update of the simulated perpetual context
  (:mod:`core.sim.perp`): ``funding_rate``, ``mark_price``, ``index_price``, ``total_size`` (the
  open interest in contracts), as strings; no funding time, as on Gate;
* REST ``/api/v4/futures/usdt/contracts``: the listings (``quanto_multiplier``, and the funding
  schedule ``funding_interval`` / ``funding_next_apply``); ``/api/v4/spot/time``: the server
  time.

Sans-IO like the plugin: no trio, no sockets, no clock reads.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
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

FIRST_ID = 1000
CONTRACTS_PATH = "/api/v4/futures/usdt/contracts"
OBU_DEPTHS = {"50": 50, "400": 400}


def _text(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


def _number(value: Decimal) -> int | float:
    return int(value) if value == value.to_integral_value() else float(value)


def _plain(value: Decimal) -> str:
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


@dataclass
class _Stream:
    channel: str
    symbol: str
    native: str
    name: str  # the payload entry: contract, or ob.{contract}.{depth}
    depth: int = 0
    last_u: int = 0


class GateSession(SpeakerSession):
    speaker: GateSpeaker

    def __init__(self, speaker: VenueSpeaker, conn_id: int, now_ns: int) -> None:
        super().__init__(speaker, conn_id, now_ns)
        self.streams: dict[tuple[str, str], _Stream] = {}

    def frame(self, channel: str, event: str, result: Any, now_ns: int, **extra: Any) -> str:
        return _text({"time": now_ns // S_NS, "time_ms": ms(now_ns), "channel": channel,
                      "event": event, **extra, "result": result})

    def reply(self, req: dict[str, Any], now_ns: int, error: tuple[int, str] | None = None,
              ) -> str:
        extra: dict[str, Any] = {}
        if self.speaker.echo:
            if "id" in req:
                extra["id"] = req["id"]
            extra["conn_id"] = f"fake{self.conn_id:04d}"
            extra["payload"] = req.get("payload", [])
        if error is not None:
            extra["error"] = {"code": error[0], "message": error[1]}
        return self.frame(req.get("channel", ""), req.get("event", ""),
                          {"status": "fail" if error else "success"}, now_ns, **extra)

    # -- client frames ---------------------------------------------------------------------------

    def receive(self, frame: str | bytes, now_ns: int) -> list[Out]:
        try:
            req = json.loads(frame)
            channel, event = req.get("channel", ""), req.get("event", "")
        except (ValueError, AttributeError):
            return [Out(self.frame("", "", None, now_ns, error={"code": 1, "message":
                                                                "invalid json"}), "error")]
        if channel == "futures.ping":
            return [Out(self.frame("futures.pong", "", None, now_ns,
                                   conn_id=f"fake{self.conn_id:04d}"), "pong")]
        payload = req.get("payload") or []
        name = str(payload[0]) if payload else ""
        key = (channel, name)
        if event == "unsubscribe":
            self.streams.pop(key, None)
            return [Out(self.reply(req, now_ns), "ack")]
        if event != "subscribe":
            return [Out(self.reply(req, now_ns, (2, f"unknown event {event!r}")), "error")]
        if key in self.streams:
            return [Out(self.reply(req, now_ns, (2, f"Alert sub {name}")), "error")]
        native = name.split(".")[1] if channel == "futures.obu" and "." in name else name
        symbol = self.speaker.by_native.get(native)
        if symbol is not None:
            refusal = self.refusal(symbol)
            if refusal == PERMANENT:
                return [Out(self.reply(req, now_ns, (2, f"unknown contract {native}")), "error",
                            symbol)]
            if refusal is not None:
                return [Out(self.reply(req, now_ns, (2, TRANSIENT_TEXT)), "error", symbol)]
        outs = [Out(self.reply(req, now_ns), "ack", symbol)]
        if symbol is None or channel not in ("futures.book_ticker", "futures.obu",
                                             "futures.trades", "futures.tickers"):
            return outs  # acked, and silent from now on
        stream = _Stream(channel, symbol, native, name)
        self.streams[key] = stream
        if channel == "futures.obu":
            stream.depth = OBU_DEPTHS.get(name.rsplit(".", 1)[-1], 50)
            view = self.view(symbol, "l2", stream.depth)
            bids, asks = view.snapshot(self._book(symbol))
            outs.append(self._obu(stream, bids, asks, now_ns, full=True))
        elif channel == "futures.book_ticker":
            view = self.view(symbol, "tob", 1)
            view.snapshot(self._book(symbol))
            outs.append(self._ticker(stream, now_ns))
        return outs

    # -- market ---------------------------------------------------------------------------------

    def market(self, event: MarketEvent, now_ns: int) -> list[Out]:
        outs: list[Out] = []
        for s in self.streams.values():
            if s.symbol != event.symbol:
                continue
            if s.channel == "futures.tickers":
                if isinstance(event, PerpUpdate):
                    outs.append(self._tickers(s, event))
                continue
            if isinstance(event, PerpUpdate):
                continue
            if isinstance(event, TradePrint):
                if s.channel == "futures.trades":
                    outs.append(self._trade(s, event, now_ns))
                continue
            if s.channel == "futures.trades":
                continue
            if s.channel == "futures.obu":
                bids, asks = self.views[(s.symbol, "l2")].diff(self._book(s.symbol))
                if bids or asks:
                    outs.append(self._obu(s, bids, asks, event.ts_ns, full=False))
            else:
                bids, asks = self.views[(s.symbol, "tob")].diff(self._book(s.symbol))
                if bids or asks:
                    outs.append(self._ticker(s, event.ts_ns))
        return outs

    def _id(self, symbol: str) -> int:
        return self.speaker.book_ids.get(symbol, FIRST_ID)

    def _book(self, symbol: str) -> Any:
        return self.speaker.market.book("gateio", symbol)

    def _levels(self, listing: Listing, ladder: Ladder) -> list[list[str]]:
        return [[listing.price_text(p), _plain(listing.contracts(q))] for p, q in ladder]

    def _obu(self, s: _Stream, bids: Ladder, asks: Ladder, ts_ns: int, full: bool) -> Out:
        listing = self.speaker.market.listing("gateio", s.symbol)
        u = self._id(s.symbol)
        result: dict[str, Any] = {"t": ms(ts_ns), "s": s.name}
        if full:
            result.update(full=True, u=u)
        else:
            result.update(U=s.last_u + 1, u=u)
        s.last_u = u
        if bids or full:
            result["b"] = self._levels(listing, bids)
        if asks or full:
            result["a"] = self._levels(listing, asks)
        return Out(self.frame("futures.obu", "update", result, ts_ns),
                   "snapshot" if full else "delta", s.symbol)

    def _ticker(self, s: _Stream, ts_ns: int) -> Out:
        listing = self.speaker.market.listing("gateio", s.symbol)
        bids, asks = self.views[(s.symbol, "tob")].ladders()
        result: dict[str, Any] = {"t": ms(ts_ns), "u": self._id(s.symbol), "s": s.native,
                                  "b": "", "B": 0, "a": "", "A": 0}
        if bids:
            result.update(b=listing.price_text(bids[0][0]),
                          B=_number(listing.contracts(bids[0][1])))
        if asks:
            result.update(a=listing.price_text(asks[0][0]),
                          A=_number(listing.contracts(asks[0][1])))
        return Out(self.frame("futures.book_ticker", "update", result, ts_ns), "snapshot",
                   s.symbol)

    def _tickers(self, s: _Stream, perp: PerpUpdate) -> Out:
        listing = self.speaker.market.listing("gateio", s.symbol)
        mark = listing.price_text(perp.mark_ticks)
        return Out(self.frame("futures.tickers", "update", [{
            "contract": s.native, "last": mark, "change_percentage": "0",
            "funding_rate": format(perp.funding_rate, "f"),
            "funding_rate_indicative": format(perp.funding_rate, "f"), "mark_price": mark,
            "index_price": listing.price_text(perp.index_ticks),
            "total_size": _plain(listing.contracts(perp.open_interest_lots)),
            "volume_24h": "0", "quanto_base_rate": "", "low_24h": mark, "high_24h": mark}],
            perp.ts_ns), "snapshot", s.symbol)

    def _trade(self, s: _Stream, trade: TradePrint, now_ns: int) -> Out:
        listing = self.speaker.market.listing("gateio", s.symbol)
        size = listing.contracts(trade.lots)
        signed = _number(size if trade.taker == "buy" else -size)
        return Out(self.frame("futures.trades", "update", [{
            "id": trade.trade_id, "create_time": trade.ts_ns // S_NS,
            "create_time_ms": ms(trade.ts_ns), "contract": s.native, "size": signed,
            "price": listing.price_text(trade.ticks)}], trade.ts_ns), "trade", s.symbol)


class GateSpeaker(VenueSpeaker):
    name = "gateio"
    path = "/v4/ws/usdt"
    session_class = GateSession
    perpetual = True
    server_time_path = "/api/v4/spot/time"

    def __init__(self, market: Market) -> None:
        super().__init__(market)
        self.by_native = {s.replace("-", "_"): s for s in self.symbols()}
        #: echo ``id`` and ``payload`` in replies (today's servers); False: the 2023 servers
        self.echo = True
        #: the order-book id of each symbol: +1 per book change
        self.book_ids: dict[str, int] = {}

    def observe(self, event: MarketEvent) -> None:
        if isinstance(event, BookChange):
            self.book_ids[event.symbol] = self.book_ids.get(event.symbol, FIRST_ID) + 1

    @classmethod
    def listing(cls, symbol: str, price: float) -> Listing:
        contract = power_of_ten(10 / price)
        return Listing("gateio", symbol, tick=power_of_ten(price / 100_000), lot=contract,
                       contract_size=contract)

    def server_time(self, venue_ns: int) -> bytes:
        return json.dumps({"server_time": venue_ns // 1_000_000}).encode()

    def rest(self, target: str) -> bytes | None:
        if target.split("?", 1)[0] != CONTRACTS_PATH:
            return None
        rows = []
        for sym in self.symbols():
            listing = self.market.listing(self.name, sym)
            row: dict[str, Any] = {"name": sym.replace("-", "_"), "type": "direct",
                                   "quanto_multiplier": str(listing.contract_size),
                                   "order_price_round": str(listing.tick), "order_size_min": 1,
                                   "in_delisting": False, "enable_decimal": False}
            perp = self.market.perps.get((self.name, sym))
            if perp is not None:
                row |= {"funding_interval": perp.interval_s,
                        "funding_next_apply": perp.next_funding_ns / S_NS,
                        "funding_rate": format(perp.funding_rate, "f")}
            rows.append(row)
        return json.dumps(rows).encode()


__all__ = ["GateSession", "GateSpeaker"]
