"""A fake Binance USD-M futures venue: the speaker ``--simulate`` and the fault kit serve.

What it says, as Binance does (``wss://fstream.binance.com``, ``https://fapi.binance.com``):

* two routed websocket endpoints on one host: ``/public/ws`` pushes ``<symbol>@bookTicker`` and
  ``<symbol>@depth@100ms``, ``/market/ws`` pushes ``<symbol>@aggTrade`` and
  ``<symbol>@markPrice@1s`` (or ``@markPrice``); a stream subscribed on the other endpoint (or on
  the unrouted ``/ws``) is acknowledged and never pushes; other paths get HTTP 404;
* ``{"method":"SUBSCRIBE","params":[streams],"id":n}`` is answered ``{"result":null,"id":n}``;
  ``UNSUBSCRIBE`` likewise; ``LIST_SUBSCRIPTIONS`` gets ``{"result":[streams],"id":n}``; a frame
  that is not JSON, an unknown method, a request id that is not an unsigned integer or an
  unknown stream get ``{"error":{"code":..,"msg":..},"id":..}`` with Binance's codes (3 invalid
  JSON, 2 invalid request, 1 invalid value type);
* a symbol the venue does not list is acknowledged and silent, as Binance does; its REST depth
  snapshot answers HTTP 400 ``{"code":-1121,"msg":"Invalid symbol."}`` (a permanent refusal of
  the fault kit is exactly that); a transient refusal is what Binance does to a client above its
  message rate: the connection is closed (1008);
* ``depthUpdate``: the levels one book event changed (absolute sizes, 0 removes), with the
  venue-wide update ids: ``U`` the first, ``u`` the last, ``pu`` the previous event's ``u`` (the
  same numbers on every connection, and the REST snapshot's ``lastUpdateId`` is the latest
  ``u``); ``bookTicker``: the best bid and ask whenever they change, ``u`` the book's update id;
  ``aggTrade``: one push per trade print, ``a`` the trade id, ``m`` true when the taker sold;
* ``markPriceUpdate``: the simulated perpetual context (:mod:`core.sim.perp`) at each of its
  updates (every second by default; ``@markPrice`` at most every 3 s): mark price ``p``, index
  ``i`` and estimated settle price ``P`` with 8 decimals, funding rate ``r`` for the funding at
  ``T`` (ms), event time ``E``; no interval and no open interest, as on Binance;
* websocket-level pings every ``ping_interval_ns`` (3 minutes); connections are closed when they
  are ``max_age_ns`` old (the venue's 24-hour cut);
* REST ``/fapi/v1/depth?symbol=&limit=`` (the market's book at this moment, best first, at most
  ``limit`` levels a side), ``/fapi/v1/openInterest?symbol=`` (the simulated open interest at
  this moment, base units, with the time of the request; ``-1121`` for a symbol it does not
  list), ``/fapi/v1/exchangeInfo`` (the listings) and ``/fapi/v1/time`` (the server time,
  ``serverTime`` in ms).

Sans-IO like the plugin: no trio, no sockets, no clock reads.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

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
from core.sim.speaker import (
    PERMANENT,
    WS_PING,
    Out,
    RestReply,
    SpeakerSession,
    VenueSpeaker,
    ms,
)

PUBLIC = "/public/ws"
MARKET = "/market/ws"
LEGACY = "/ws"  # the unrouted endpoint: subscriptions are acknowledged, nothing is pushed
ROUTE = {"bookTicker": PUBLIC, "depth@100ms": PUBLIC, "aggTrade": MARKET,
         "markPrice@1s": MARKET, "markPrice": MARKET}
#: the slowest push interval of each mark price stream
MARK_EVERY_NS = {"markPrice@1s": 0, "markPrice": 3 * S_NS}
PING_INTERVAL_NS = 180 * S_NS
MAX_AGE_NS = 24 * 3600 * S_NS
FIRST_UPDATE_ID = 7_000_000_000_000
DEPTH_LIMITS = (5, 10, 20, 50, 100, 500, 1000)
DEPTH_PATH = "/fapi/v1/depth"
OPEN_INTEREST_PATH = "/fapi/v1/openInterest"
EXCHANGE_INFO_PATH = "/fapi/v1/exchangeInfo"
METHODS = ("SUBSCRIBE", "UNSUBSCRIBE", "LIST_SUBSCRIPTIONS", "SET_PROPERTY", "GET_PROPERTY")
TOO_OLD = (1000, "connection older than 24 hours")


def _text(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


def _error(code: int, msg: str, req_id: Any) -> str:
    return _text({"error": {"code": code, "msg": msg}, "id": req_id})


INVALID_SYMBOL = RestReply(400, _text({"code": -1121, "msg": "Invalid symbol."}).encode())


@dataclass
class _Book:
    """The venue-wide update ids of one symbol's book, and the latest depth event."""

    u: int = FIRST_UPDATE_ID
    ts_ns: int | None = None  # exchange time of the latest book event
    frame: str = ""  # the latest depthUpdate push (the same for every connection)


@dataclass
class _Stream:
    name: str  # btcusdt@depth@100ms
    kind: str  # bookTicker, depth@100ms, aggTrade, markPrice@1s, markPrice
    symbol: str
    pushes: bool  # routed to the endpoint of this connection
    last_ns: int | None = None  # mark price streams: when this stream last pushed


class BinanceSession(SpeakerSession):
    speaker: BinanceSpeaker

    def __init__(self, speaker: VenueSpeaker, conn_id: int, now_ns: int) -> None:
        super().__init__(speaker, conn_id, now_ns)
        self.streams: dict[str, _Stream] = {}
        self.next_ping_ns = now_ns + self.speaker.ping_interval_ns
        self.cut_ns = now_ns + self.speaker.max_age_ns

    # -- client frames ---------------------------------------------------------------------------

    def receive(self, frame: str | bytes, now_ns: int) -> list[Out]:
        try:
            msg = json.loads(frame)
        except ValueError:
            return [Out(_error(3, "Invalid JSON: expected value at line 1 column 1", None),
                        "error")]
        if not isinstance(msg, dict):
            return [Out(_error(2, "Invalid request: request must be an object", None), "error")]
        req_id = msg.get("id")
        method = msg.get("method")
        if not (isinstance(req_id, int) and not isinstance(req_id, bool) and req_id >= 0):
            return [Out(_error(2, "Invalid request: request ID must be an unsigned integer",
                               None), "error")]
        if method not in METHODS:
            return [Out(_error(2, f"Invalid request: unknown variant `{method}`, expected one "
                               f"of {', '.join(f'`{m}`' for m in METHODS)}", req_id), "error")]
        if method == "LIST_SUBSCRIPTIONS":
            return [Out(_text({"result": sorted(self.streams), "id": req_id}), "pong")]
        if method not in ("SUBSCRIBE", "UNSUBSCRIBE"):
            return [Out(_text({"result": None, "id": req_id}), "ack")]
        params = msg.get("params")
        if not isinstance(params, list) or not all(isinstance(p, str) for p in params):
            return [Out(_error(1, "Invalid value type: expected array of strings", req_id),
                        "error")]
        return self._subscription(method, params, req_id)

    def _subscription(self, method: str, params: list[str], req_id: int) -> list[Out]:
        """A well-formed ``SUBSCRIBE`` or ``UNSUBSCRIBE``."""
        streams = [self._stream(name) for name in params]
        bad = [name for name, st in zip(params, streams, strict=True) if st is None]
        if bad:
            return [Out(_error(2, f"Invalid request: unknown stream {bad[0]}", req_id), "error")]
        if method == "UNSUBSCRIBE":
            for name in params:
                self.streams.pop(name, None)
            return [Out(_text({"result": None, "id": req_id}), "ack")]
        symbols = {st.symbol for st in streams if st is not None}
        for symbol in sorted(symbols):
            if self.speaker.listed(symbol) and self.refusal(symbol) not in (None, PERMANENT):
                # above the message rate: Binance closes the connection
                return [Out(close=(1008, "too many requests"), kind="close", symbol=symbol)]
        for st in streams:
            if st is None or st.name in self.streams:
                continue
            self.streams[st.name] = st
            if st.kind == "depth@100ms":
                self.view(st.symbol, "l2", None).snapshot(self.speaker.book(st.symbol))
            elif st.kind == "bookTicker":
                self.view(st.symbol, "tob", 1).snapshot(self.speaker.book(st.symbol))
        return [Out(_text({"result": None, "id": req_id}), "ack",
                    next(iter(symbols)) if len(symbols) == 1 else None)]

    def _stream(self, name: str) -> _Stream | None:
        native, _, kind = name.partition("@")
        if kind not in ROUTE or native != native.lower():
            return None
        symbol = self.speaker.by_native.get(native.upper())
        pushes = symbol is not None and symbol not in self.speaker.unlisted and \
            ROUTE[kind] == self.path
        return _Stream(name, kind, symbol or native.upper(), pushes)

    # -- market ---------------------------------------------------------------------------------

    def market(self, event: MarketEvent, now_ns: int) -> list[Out]:
        outs: list[Out] = []
        for st in self.streams.values():
            if st.symbol != event.symbol or not st.pushes:
                continue
            if isinstance(event, TradePrint):
                if st.kind == "aggTrade":
                    outs.append(Out(self.speaker.agg_trade(event), "trade", st.symbol))
                continue
            if isinstance(event, PerpUpdate):
                every = MARK_EVERY_NS.get(st.kind)
                if every is not None and (st.last_ns is None or
                                          event.ts_ns - st.last_ns >= every):
                    st.last_ns = event.ts_ns
                    outs.append(Out(self.speaker.mark_price(event), "snapshot", st.symbol))
                continue
            if st.kind == "depth@100ms":
                self.views[(st.symbol, "l2")].diff(self.speaker.book(st.symbol))
                frame = self.speaker.books[st.symbol].frame
                if frame:
                    outs.append(Out(frame, "delta", st.symbol))
            elif st.kind == "bookTicker":
                view = self.views[(st.symbol, "tob")]
                bids, asks = view.diff(self.speaker.book(st.symbol))
                if bids or asks:
                    outs.append(Out(self.speaker.book_ticker(st.symbol, *view.ladders()),
                                    "snapshot", st.symbol))
        return outs

    # -- timers: websocket pings, the 24-hour cut -----------------------------------------------

    def next_deadline(self) -> int | None:
        return min(self.next_ping_ns, self.cut_ns)

    def on_deadline(self, now_ns: int) -> list[Out]:
        if now_ns >= self.cut_ns:
            self.cut_ns = self.next_ping_ns = now_ns + 3600 * S_NS
            self.speaker.cut.append(self.conn_id)
            return [Out(close=TOO_OLD, kind="close")]
        if now_ns < self.next_ping_ns:
            return []
        self.next_ping_ns += self.speaker.ping_interval_ns
        return [Out(str(ms(now_ns)).encode(), WS_PING)]


class BinanceSpeaker(VenueSpeaker):
    name = "binance"
    path = ""  # the plugin appends each lane's path
    session_class = BinanceSession
    perpetual = True
    server_time_path = "/fapi/v1/time"

    def __init__(self, market: Market) -> None:
        super().__init__(market)
        self.by_native = {s.replace("-", ""): s for s in self.symbols()}
        self.books: dict[str, _Book] = {s: _Book() for s in self.symbols()}
        #: symbols answered as unknown (a permanent refusal)
        self.unlisted: set[str] = set()
        self.ping_interval_ns = PING_INTERVAL_NS
        self.max_age_ns = MAX_AGE_NS
        #: connections closed for their age
        self.cut: list[int] = []
        #: REST depth snapshots served, per native symbol
        self.depth_calls: dict[str, int] = {}
        #: REST open interest answers served, per native symbol
        self.open_interest_calls: dict[str, int] = {}

    @classmethod
    def listing(cls, symbol: str, price: float) -> Listing:
        return Listing("binance", symbol, tick=power_of_ten(price / 100_000),
                       lot=power_of_ten(100 / price))

    def serves(self, path: str) -> bool:
        return path in (PUBLIC, MARKET, LEGACY)

    def refuse(self, symbol: str, kind: str = PERMANENT, times: int | None = None) -> None:
        super().refuse(symbol, kind, times)
        if kind == PERMANENT:
            self.unlisted.add(symbol)

    def book(self, symbol: str) -> Any:
        return self.market.book(self.name, symbol)

    # -- the venue-wide update ids ------------------------------------------------------------

    def observe(self, event: MarketEvent) -> None:
        if not isinstance(event, BookChange) or event.symbol not in self.books:
            return
        state = self.books[event.symbol]
        if not event.changes:
            state.frame = ""
            return
        latest: dict[tuple[str, int], int] = {}
        for side, ticks, lots in event.changes:
            latest[(side, ticks)] = lots
        bids = sorted(((t, q) for (s, t), q in latest.items() if s == "bid"), key=lambda x: -x[0])
        asks = sorted((t, q) for (s, t), q in latest.items() if s == "ask")
        pu = state.u
        state.u += 2 + len(latest)  # a 100 ms diff spans many engine updates
        state.ts_ns = event.ts_ns
        listing = self.market.listing(self.name, event.symbol)
        t = ms(event.ts_ns)
        state.frame = _text({
            "e": "depthUpdate", "E": t + 1, "T": t, "s": event.symbol.replace("-", ""),
            "U": pu + 1, "u": state.u, "pu": pu, "b": _wire(listing, bids),
            "a": _wire(listing, asks)})

    # -- frames shared by the sessions ---------------------------------------------------------

    def book_ticker(self, symbol: str, bids: Ladder, asks: Ladder) -> str:
        listing = self.market.listing(self.name, symbol)
        state = self.books[symbol]
        t = ms(state.ts_ns or 0)
        (bp, bq), (ap, aq) = (bids[0] if bids else (0, 0)), (asks[0] if asks else (0, 0))
        return _text({"e": "bookTicker", "u": state.u, "s": symbol.replace("-", ""),
                      "b": listing.price_text(bp), "B": listing.size_text(bq),
                      "a": listing.price_text(ap), "A": listing.size_text(aq),
                      "T": t, "E": t + 1})

    def mark_price(self, perp: PerpUpdate) -> str:
        """The ``markPriceUpdate`` push of one perpetual state (the same on every connection)."""
        listing = self.market.listing(self.name, perp.symbol)
        index = _px8(listing, perp.index_ticks)
        return _text({"e": "markPriceUpdate", "E": ms(perp.ts_ns),
                      "s": perp.symbol.replace("-", ""), "p": _px8(listing, perp.mark_ticks),
                      "P": index, "i": index, "r": f"{perp.funding_rate:.8f}",
                      "T": ms(perp.next_funding_ns)})

    def agg_trade(self, trade: TradePrint) -> str:
        listing = self.market.listing(self.name, trade.symbol)
        t = ms(trade.ts_ns)
        return _text({"e": "aggTrade", "E": t + 1, "s": trade.symbol.replace("-", ""),
                      "a": trade.trade_id, "p": listing.price_text(trade.ticks),
                      "q": listing.size_text(trade.lots), "f": trade.trade_id * 3,
                      "l": trade.trade_id * 3 + 2, "T": t, "m": trade.taker == "sell"})

    # -- REST -----------------------------------------------------------------------------------

    def server_time(self, venue_ns: int) -> bytes:
        return _text({"serverTime": ms(venue_ns)}).encode()

    def rest_at(self, target: str, now_ns: int) -> bytes | RestReply | None:
        parts = urlsplit(target)
        if parts.path == OPEN_INTEREST_PATH:
            return self.open_interest_body(parse_qs(parts.query).get("symbol", [""])[0], now_ns)
        return super().rest_at(target, now_ns)

    def open_interest_body(self, native: str, now_ns: int) -> bytes | RestReply:
        """``GET /fapi/v1/openInterest``: the simulated open interest now (base units)."""
        if not native:
            return RestReply(400, _text({"code": -1102, "msg": "Mandatory parameter 'symbol' "
                                         "was not sent, was empty/null, or malformed."}).encode())
        symbol = self.by_native.get(native)
        perp = self.market.perps.get((self.name, symbol)) if symbol is not None else None
        if symbol is None or symbol in self.unlisted or perp is None:
            return INVALID_SYMBOL
        self.open_interest_calls[native] = self.open_interest_calls.get(native, 0) + 1
        listing = self.market.listing(self.name, symbol)
        return _text({"openInterest": listing.size_text(perp.open_interest_lots),
                      "symbol": native, "time": ms(now_ns)}).encode()

    def rest(self, target: str) -> bytes | RestReply | None:
        parts = urlsplit(target)
        if parts.path == EXCHANGE_INFO_PATH:
            return self._exchange_info()
        if parts.path != DEPTH_PATH:
            return None
        query = parse_qs(parts.query)
        native = query.get("symbol", [""])[0]
        symbol = self.by_native.get(native)
        if symbol is None or symbol in self.unlisted:
            return INVALID_SYMBOL
        try:
            limit = int(query.get("limit", ["500"])[0])
        except ValueError:
            limit = -1
        if limit not in DEPTH_LIMITS:
            return RestReply(400, _text({"code": -1130, "msg": "Data sent for parameter "
                                         "'limit' is not valid."}).encode())
        self.depth_calls[native] = self.depth_calls.get(native, 0) + 1
        return self.depth_body(symbol, limit)

    def depth_body(self, symbol: str, limit: int = 1000) -> bytes:
        """``GET /fapi/v1/depth``: the book now, at most ``limit`` levels a side."""
        listing = self.market.listing(self.name, symbol)
        book = self.book(symbol)
        state = self.books[symbol]
        doc: dict[str, Any] = {"lastUpdateId": state.u}
        if state.ts_ns is not None:
            doc["E"] = ms(state.ts_ns) + 1
            doc["T"] = ms(state.ts_ns)
        doc["bids"] = _wire(listing, book.top("bid", limit))
        doc["asks"] = _wire(listing, book.top("ask", limit))
        return _text(doc).encode()

    def _exchange_info(self) -> bytes:
        items = []
        for sym in self.symbols():
            listing = self.market.listing(self.name, sym)
            base, quote = sym.split("-", 1)
            items.append({
                "symbol": sym.replace("-", ""), "pair": sym.replace("-", ""),
                "contractType": "PERPETUAL", "status": "TRADING", "baseAsset": base,
                "quoteAsset": quote, "marginAsset": quote,
                "pricePrecision": listing.price_decimals,
                "quantityPrecision": listing.size_decimals,
                "filters": [{"filterType": "PRICE_FILTER", "tickSize": str(listing.tick)},
                            {"filterType": "LOT_SIZE", "stepSize": str(listing.lot)}]})
        return _text({"timezone": "UTC", "symbols": items}).encode()


def _wire(listing: Listing, ladder: Ladder) -> list[list[str]]:
    return [[listing.price_text(p), listing.size_text(q)] for p, q in ladder]


def _px8(listing: Listing, ticks: int) -> str:
    """A price with 8 decimals, as the mark price stream writes them."""
    return f"{listing.price(ticks):.8f}"


__all__ = ["MARKET", "PUBLIC", "BinanceSession", "BinanceSpeaker"]
