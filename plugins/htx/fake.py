"""A fake HTX USDT-swap venue (``linear-swap-ws``): the speaker ``--simulate`` and the fault kit
serve.

What it says, as HTX does:

* every server frame is one gzip member (binary); client frames are JSON text;
* ``{"sub": topic, "id"}`` is acknowledged ``{"id", "status": "ok", "subbed", "ts"}``; a topic
  of a contract it does not list gets ``{"status": "error", "err-code": "bad-request",
  "err-msg": "invalid topic ..."}``; ``unsub`` likewise;
* ``market.$code.depth.size_{20,150}.high_freq`` with ``"data_type": "incremental"``: a
  ``snapshot`` tick, then ``update`` ticks holding the changed levels (a level leaving the window
  comes with size 0), ``version`` +1 per frame, counted per connection and topic;
  ``depth.step0``: the whole 150-level book in every push; ``bbo``: the best bid and ask when
  they change; ``trade.detail``: one tick per trade print (``direction`` is the taker's side);
  sizes are contracts, prices JSON numbers;
* ``{"ping": n}`` every 5 s (``ping_interval_ns``); once ``MAX_MISSED_PINGS`` pings are
  unanswered when the next is due, the socket is closed with 1003 ``ping check expired``;
* contracts in ``silent`` are acknowledged and never pushed (a suspended contract);
* REST ``/linear-swap-api/v1/swap_contract_info``: the listings (contract sizes);
  ``swap_funding_rate``, ``swap_open_interest``, ``swap_index`` and
  ``/linear-swap-ex/market/history/mark_price_kline`` (``contract_code=...``): the simulated
  perpetual context (:mod:`core.sim.perp`) at the time of the request, numbers as HTX writes
  them (rates and funding times as strings, open interest in contracts and coin, the mark as
  the close of the current 1-minute candle); ``/api/v1/timestamp``: the server time.

Sans-IO like the plugin: no trio, no sockets, no clock reads.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit

from core.codec import S_NS
from core.sim.market import Ladder, Listing, Market, MarketEvent, PerpUpdate, TradePrint
from core.sim.simulator import power_of_ten
from core.sim.speaker import (
    PERMANENT,
    TRANSIENT_TEXT,
    Out,
    RestReply,
    SpeakerSession,
    VenueSpeaker,
    ms,
)

PING_INTERVAL_NS = 5 * S_NS
MAX_MISSED_PINGS = 4
PING_EXPIRED_CODE = 1003
PING_EXPIRED_REASON = "ping check expired"
FIRST_VERSION = 1000
CONTRACT_INFO_PATH = "/linear-swap-api/v1/swap_contract_info"
DEPTHS = {"depth.size_20.high_freq": 20, "depth.size_150.high_freq": 150, "depth.step0": 150}

Payload = dict[str, Any]


def gz(obj: Any) -> bytes:
    return gzip.compress(json.dumps(obj, separators=(",", ":")).encode(), mtime=0)


def depth_tick(event: str | None, bids: list[list[float]], asks: list[list[float]],
               **extra: Any) -> Payload:
    """A depth tick (without ``version`` unless given) for protocol tests."""
    tick: Payload = {"bids": bids, "asks": asks}
    if event is not None:
        tick["event"] = event
    tick.update(extra)
    return tick


def trade_tick(trades: list[tuple[int, float, float, str]], contract_size: float) -> Payload:
    """A ``trade.detail`` tick; each trade is (id, price, contracts, taker direction)."""
    return {"data": [{"amount": amount, "quantity": amount * contract_size,
                      "trade_turnover": amount * contract_size * price, "id": trade_id,
                      "price": price, "direction": direction}
                     for trade_id, price, amount, direction in trades]}


@dataclass
class _Topic:
    name: str
    kind: str  # "book", "bbo", "trade"
    symbol: str
    depth: int = 0
    incremental: bool = False
    step0: bool = False


def _number(value: Decimal) -> int | float:
    return int(value) if value == value.to_integral_value() else float(value)


class HtxSession(SpeakerSession):
    speaker: HtxSpeaker

    def __init__(self, speaker: VenueSpeaker, conn_id: int, now_ns: int) -> None:
        super().__init__(speaker, conn_id, now_ns)
        self.topics: dict[str, _Topic] = {}
        self.versions: dict[str, int] = {}
        self.pings: list[int] = []  # sent, not yet answered
        self.next_ping_ns = now_ns + self.speaker.ping_interval_ns
        self.pongs_ok = 0
        self.pongs_bad: list[Any] = []

    # -- client frames ---------------------------------------------------------------------------

    def receive(self, frame: str | bytes, now_ns: int) -> list[Out]:
        try:
            msg = json.loads(frame)
            if not isinstance(msg, dict):
                raise ValueError
        except ValueError:
            return [self._error(now_ns, "", "bad-request", "not json, is not json string")]
        if "pong" in msg:
            number = msg["pong"]
            if number in self.pings:
                self.pongs_ok += 1
                self.pings = [p for p in self.pings if p > number]
            else:
                self.pongs_bad.append(number)
            return []
        if "sub" in msg:
            return self._sub(msg, now_ns)
        if "unsub" in msg:
            name = str(msg["unsub"])
            self.topics.pop(name, None)
            return [Out(gz({"id": msg.get("id", ""), "status": "ok", "unsubbed": name,
                            "ts": ms(now_ns)}), "ack")]
        return [self._error(now_ns, msg.get("id", ""), "bad-request", "unknown request")]

    def _sub(self, msg: Payload, now_ns: int) -> list[Out]:
        name = str(msg["sub"])
        req_id = msg.get("id", "")
        topic = self._topic(name, msg.get("data_type") == "incremental")
        if topic is None:
            return [self._error(now_ns, req_id, "bad-request", f"invalid topic {name}")]
        refusal = self.refusal(topic.symbol)
        if refusal == PERMANENT:
            return [self._error(now_ns, req_id, "bad-request", f"invalid topic {name}",
                                topic.symbol)]
        if refusal is not None:
            return [self._error(now_ns, req_id, "too-many-request", TRANSIENT_TEXT,
                                topic.symbol)]
        ack: Payload = {"id": req_id, "status": "ok", "subbed": name, "ts": ms(now_ns)}
        if "data_type" in msg:
            ack["data_type"] = msg["data_type"]
        outs = [Out(gz(ack), "ack", topic.symbol)]
        self.topics[name] = topic
        if topic.symbol in self.speaker.silent:
            return outs
        if topic.kind == "book":
            view = self.view(topic.symbol, "l2", topic.depth)
            bids, asks = view.snapshot(self._book(topic.symbol))
            outs.append(self._depth(topic, "snapshot", bids, asks, now_ns))
        elif topic.kind == "bbo":
            view = self.view(topic.symbol, "tob", 1)
            bids, asks = view.snapshot(self._book(topic.symbol))
            outs.append(self._bbo(topic, bids, asks, now_ns))
        return outs

    def _topic(self, name: str, incremental: bool) -> _Topic | None:
        parts = name.split(".")
        if len(parts) < 3 or parts[0] != "market":
            return None
        symbol = parts[1].upper()
        if not self.speaker.listed(symbol):
            return None
        rest = ".".join(parts[2:])
        if rest in DEPTHS:
            step0 = rest == "depth.step0"
            if not step0 and not incremental:
                return None  # snapshot-mode high_freq is not served by this fake
            return _Topic(name, "book", symbol, DEPTHS[rest], not step0, step0)
        if rest == "bbo":
            return _Topic(name, "bbo", symbol, 1)
        if rest == "trade.detail":
            return _Topic(name, "trade", symbol)
        return None

    def _error(self, now_ns: int, req_id: Any, code: str, text: str,
               symbol: str | None = None) -> Out:
        return Out(gz({"status": "error", "ts": ms(now_ns), "id": req_id, "err-code": code,
                       "err-msg": text}), "error", symbol)

    # -- market ---------------------------------------------------------------------------------

    def market(self, event: MarketEvent, now_ns: int) -> list[Out]:
        outs: list[Out] = []
        for t in self.topics.values():
            if t.symbol != event.symbol or t.symbol in self.speaker.silent or \
                    isinstance(event, PerpUpdate):  # (funding is served over REST)
                continue
            if isinstance(event, TradePrint):
                if t.kind == "trade":
                    outs.append(self._trade(t, event))
                continue
            if t.kind == "trade":
                continue
            view = self.views[(t.symbol, "l2" if t.kind == "book" else "tob")]
            bids, asks = view.diff(self._book(t.symbol))
            if not bids and not asks:
                continue
            if t.kind == "bbo":
                outs.append(self._bbo(t, *view.ladders(), event.ts_ns))
            elif t.step0:
                outs.append(self._depth(t, "snapshot", *view.ladders(), event.ts_ns))
            else:
                outs.append(self._depth(t, "update", bids, asks, event.ts_ns))
        return outs

    def _book(self, symbol: str) -> Any:
        return self.speaker.market.book("htx", symbol)

    def _levels(self, listing: Listing, ladder: Ladder) -> list[list[int | float]]:
        return [[_number(listing.price(p)), _number(listing.contracts(q))] for p, q in ladder]

    def _depth(self, t: _Topic, event: str, bids: Ladder, asks: Ladder, ts_ns: int) -> Out:
        listing = self.speaker.market.listing("htx", t.symbol)
        ts = ms(ts_ns)
        tick: Payload = {"asks": self._levels(listing, asks), "bids": self._levels(listing, bids),
                         "ch": t.name, "id": ts, "mrid": self.speaker.mrid(t.symbol), "ts": ts}
        if t.incremental:
            tick["event"] = event
            version = self.versions.get(t.name, FIRST_VERSION - 1) + 1
            self.versions[t.name] = version
            tick["version"] = version
        else:
            tick["version"] = ts // 1000
        kind = "snapshot" if event == "snapshot" else "delta"
        return Out(gz({"ch": t.name, "ts": ts + 1, "tick": tick}), kind, t.symbol)

    def _bbo(self, t: _Topic, bids: Ladder, asks: Ladder, ts_ns: int) -> Out:
        listing = self.speaker.market.listing("htx", t.symbol)
        ts = ms(ts_ns)
        tick: Payload = {"ch": t.name, "id": ts // 1000, "mrid": self.speaker.mrid(t.symbol),
                         "ts": ts, "version": self.speaker.mrid(t.symbol)}
        if bids:
            tick["bid"] = self._levels(listing, bids[:1])[0]
        if asks:
            tick["ask"] = self._levels(listing, asks[:1])[0]
        return Out(gz({"ch": t.name, "ts": ts + 1, "tick": tick}), "snapshot", t.symbol)

    def _trade(self, t: _Topic, trade: TradePrint) -> Out:
        listing = self.speaker.market.listing("htx", t.symbol)
        ts = ms(trade.ts_ns)
        price = listing.price(trade.ticks)
        amount = listing.contracts(trade.lots)
        quantity = listing.size(trade.lots)
        return Out(gz({"ch": t.name, "ts": ts + 1, "tick": {"id": trade.trade_id, "ts": ts,
                       "data": [{"amount": _number(amount), "quantity": _number(quantity),
                                 "trade_turnover": float(quantity * price), "ts": ts,
                                 "id": trade.trade_id * 10000, "price": _number(price),
                                 "direction": trade.taker}]}}), "trade", t.symbol)

    # -- server pings ---------------------------------------------------------------------------

    def next_deadline(self) -> int | None:
        return self.next_ping_ns

    def on_deadline(self, now_ns: int) -> list[Out]:
        if now_ns < self.next_ping_ns:
            return []
        if len(self.pings) >= MAX_MISSED_PINGS:
            self.next_ping_ns = now_ns + 3600 * S_NS
            return [Out(close=(PING_EXPIRED_CODE, PING_EXPIRED_REASON), kind="close")]
        number = ms(self.next_ping_ns)
        self.next_ping_ns += self.speaker.ping_interval_ns
        self.pings.append(number)
        return [Out(gz({"ping": number}), "ping")]


class HtxSpeaker(VenueSpeaker):
    name = "htx"
    path = "/linear-swap-ws"
    session_class = HtxSession
    perpetual = True
    server_time_path = "/api/v1/timestamp"

    def __init__(self, market: Market) -> None:
        super().__init__(market)
        #: contracts acknowledged and never pushed (suspended)
        self.silent: set[str] = set()
        self.ping_interval_ns = PING_INTERVAL_NS
        self._mrid: dict[str, int] = {}

    @classmethod
    def listing(cls, symbol: str, price: float) -> Listing:
        contract = power_of_ten(100 / price)
        return Listing("htx", symbol, tick=power_of_ten(price / 100_000), lot=contract,
                       contract_size=contract)

    def mrid(self, symbol: str) -> int:
        """The last match id of ``symbol`` (grows with its trades)."""
        return 100_000_000 + self.market.trade_ids.get((self.name, symbol), 0)

    def server_time(self, venue_ns: int) -> bytes:
        return json.dumps({"status": "ok", "ts": venue_ns // 1_000_000}).encode()

    def rest_at(self, target: str, now_ns: int) -> bytes | RestReply | None:
        parts = urlsplit(target)
        if parts.path in FUNDING_PATHS:
            code = (parse_qs(parts.query).get("contract_code") or [""])[0]
            perp = self.market.perps.get((self.name, code))
            if perp is None:
                return json.dumps({"status": "error", "err_code": 1014,
                                   "err_msg": "This contract doesnt exist.",
                                   "ts": ms(now_ns)}).encode()
            data = self._funding_data(parts.path, perp, now_ns)
            return json.dumps({"status": "ok", "data": data, "ts": ms(now_ns)}).encode()
        return super().rest_at(target, now_ns)

    def _funding_data(self, path: str, perp: PerpUpdate, now_ns: int) -> Any:
        listing = self.market.listing(self.name, perp.symbol)
        code = perp.symbol
        base = code.split("-", 1)[0]
        if path == FUNDING_RATE_PATH:
            nxt = perp.next_funding_ns // 1_000_000
            return {"symbol": base, "contract_code": code, "fee_asset": "USDT",
                    "funding_time": str(nxt), "funding_rate": format(perp.funding_rate, "f"),
                    "estimated_rate": None,
                    "next_funding_time": str(nxt + perp.interval_s * 1000)}
        if path == OPEN_INTEREST_PATH:
            contracts = listing.contracts(perp.open_interest_lots)
            return [{"volume": _number(contracts),
                     "amount": _number(listing.size(perp.open_interest_lots)), "symbol": base,
                     "value": 0, "contract_code": code, "trade_amount": 0, "trade_volume": 0,
                     "trade_turnover": 0, "business_type": "swap", "pair": code,
                     "contract_type": "swap"}]
        if path == INDEX_PATH:
            return [{"index_price": _number(listing.price(perp.index_ticks)),
                     "index_ts": ms(perp.ts_ns), "contract_code": code}]
        mark = listing.price_text(perp.mark_ticks)
        minute = now_ns // (60 * S_NS) * 60
        return [{"id": minute, "open": mark, "close": mark, "low": mark, "high": mark,
                 "amount": "0", "vol": "0", "count": "0", "trade_turnover": "0"}]

    def rest(self, target: str) -> bytes | None:
        if target.split("?", 1)[0] != CONTRACT_INFO_PATH:
            return None
        data = []
        for sym in self.symbols():
            listing = self.market.listing(self.name, sym)
            base = sym.split("-", 1)[0]
            data.append({"symbol": base, "contract_code": sym,
                         "contract_size": _number(listing.contract_size),
                         "price_tick": _number(listing.tick), "contract_status": 1,
                         "business_type": "swap", "contract_type": "swap", "pair": sym})
        return json.dumps({"status": "ok", "data": data, "ts": 1_700_000_000_000}).encode()


FUNDING_RATE_PATH = "/linear-swap-api/v1/swap_funding_rate"
OPEN_INTEREST_PATH = "/linear-swap-api/v1/swap_open_interest"
INDEX_PATH = "/linear-swap-api/v1/swap_index"
MARK_KLINE_PATH = "/linear-swap-ex/market/history/mark_price_kline"
FUNDING_PATHS = frozenset({FUNDING_RATE_PATH, OPEN_INTEREST_PATH, INDEX_PATH, MARK_KLINE_PATH})

__all__ = ["HtxSession", "HtxSpeaker", "depth_tick", "gz", "trade_tick"]
