"""Sans-IO protocol for Binance USD-M futures (USDⓈ-margined perpetuals).

Endpoints: Binance routes its market streams by kind, so the venue has two lanes (one socket
each, opened and closed together by :mod:`core.connections`): ``/public/ws`` serves ``tob``
(``<symbol>@bookTicker``) and ``l2`` (``<symbol>@depth@100ms``); ``/market/ws`` serves ``trades``
(``<symbol>@aggTrade``) and ``funding`` (``<symbol>@markPrice@1s``: funding rate ``r`` for the
funding at ``T``, mark price ``p``, index price ``i``; the stream gives no interval). Open
interest is not streamed: the funding lane polls ``GET /fapi/v1/openInterest`` every
``funding_poll_s`` seconds (option: 1, 2, 5, 10, 30 or 60; default 10;
:class:`core.rest_poll.RestPoller`), one call per symbol at a time. A row whenever one of the
values changed (``ts_exchange``: the push's ``E``, the answer's ``time``). Clock offsets are
measured against ``/fapi/v1/time`` (on the first lane only).

Streams are subscribed with ``SUBSCRIBE`` requests (at most ``MAX_STREAMS_PER_REQUEST`` streams
each), paced below the venue's 10 incoming messages per
second; a lane refuses a request for more than ``MAX_STREAMS_PER_CONNECTION`` streams at
construction (a usage error before any connection).

Book rule (the venue's "how to manage a local order book correctly"): depth diffs are buffered;
once the stream is known to be active (its ``SUBSCRIBE`` is acknowledged, or a diff arrived) the
REST snapshot ``GET /fapi/v1/depth?symbol=...&limit=1000`` is requested (through the session,
:meth:`request_rest`), so a quiet book gets its snapshot too. Diffs with ``u < lastUpdateId`` are
dropped; the first one applied must bridge the snapshot, ``U <= lastUpdateId <= u``, or directly
follow it, ``pu == lastUpdateId`` (a snapshot older than the buffered stream is not published:
it is asked again after a backoff); from then on every diff's ``pu`` must be the previous diff's
``u`` (BookKeeper ``prev_seq = pu``). A break invalidates that symbol alone (a ``gap`` row) and
starts the procedure again for it: new buffer, new snapshot. The snapshot row is stamped with the
REST response's receive time; the buffered diffs applied after it keep their own receive times
(``msg_id`` keeps their order). A failed snapshot call is retried with a doubling backoff (0.5 s
up to 30 s) as diffs keep arriving; an unknown symbol (``-1121``) is a ``subscribe_error`` and is
not asked again; a book still not live after its deadline is reported (``no_snapshot``) and
started over.

Top of book: every ``bookTicker`` push is a whole one-level book (a keeper snapshot), ``seq`` =
``u``. Trades: ``aggTrade``; ``m`` (the buyer was the maker) means the taker sold; ``trade_id`` =
the aggregate trade id ``a``. Sizes are base units. ``ts_exchange`` is the transaction time
``T`` (the event time ``E`` where ``T`` is absent).

Liveness: the server pings at the websocket level every 3 minutes and trio-websocket answers
them. Quiet streams send nothing for minutes, so the plugin sends ``LIST_SUBSCRIPTIONS`` every
``PING_INTERVAL_S``; its reply proves the socket alive. Binance closes connections after 24
hours: ``max_connection_age_s`` makes the session replace them before that without a gap.

Pure: no trio, no sockets, no clock reads.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import ClassVar, Final

import msgspec

from core.book import BookKeeper
from core.codec import MS_NS, S_NS
from core.funding import FundingTracker
from core.options import OptionSpec
from core.protocol import ExchangeProtocol, Instrument, Lane, ProtocolConfig, RestResponse
from core.rest_poll import RestPoller
from core.rest_poll import parse_key as parse_poll_key
from core.schema import Event, HealthKind, Trade
from core.symbols import split_concatenated
from plugins.binance.messages import (
    AggTrade,
    BookTicker,
    DepthUpdate,
    ErrorInfo,
    ExchangeInfo,
    Head,
    MarkPrice,
    OpenInterest,
    Reply,
    RestDepth,
    RestError,
    ServerTime,
    Symbol,
)

PING_INTERVAL_S: Final = 30.0
#: the venue's limit on streams per connection
MAX_STREAMS_PER_CONNECTION: Final = 1024
MAX_STREAMS_PER_REQUEST: Final = 100
#: diffs kept per symbol while its snapshot is on its way
MAX_BUFFERED_DIFFS: Final = 2000
DEPTH_LIMIT: Final = 1000
RETRY_FIRST_S: Final = 0.5
RETRY_MAX_S: Final = 30.0
#: REST error code: the symbol does not exist
INVALID_SYMBOL: Final = -1121

PUBLIC = Lane(name="public", path="/public/ws", channels=frozenset({"tob", "l2"}))
MARKET = Lane(name="market", path="/market/ws", channels=frozenset({"trades", "funding"}))
STREAM_OF: Final = {"tob": "bookTicker", "l2": "depth@100ms", "trades": "aggTrade",
                    "funding": "markPrice@1s"}
DEFAULT_POLL_S: Final = "10"
POLL_CHOICES: Final = ("1", "2", "5", "10", "30", "60")
OPEN_INTEREST_PATH: Final = "/fapi/v1/openInterest?symbol={native}"


_encode = msgspec.json.Encoder().encode


class _Depth:
    """One symbol's snapshot procedure on one connection."""

    __slots__ = ("active", "bridge", "buffer", "call", "requested")

    def __init__(self, call: int, active: bool = False) -> None:
        self.buffer: deque[tuple[DepthUpdate, int]] = deque(maxlen=MAX_BUFFERED_DIFFS)
        self.call = call  # number of the latest snapshot call: older responses are stale
        self.active = active  # the stream is subscribed: a snapshot now is safe to bridge
        self.requested = False
        self.bridge: int | None = None  # lastUpdateId the next diff must bridge


class BinanceProtocol(ExchangeProtocol):
    name = "binance"
    channels = frozenset({"tob", "l2", "trades", "funding"})
    default_url = "wss://fstream.binance.com"
    default_rest_url = "https://fapi.binance.com"
    lanes = (PUBLIC, MARKET)
    description = ("Binance USD-M perpetuals (bookTicker, depth@100ms + REST snapshot, aggTrade, "
                   "markPrice@1s + open interest polled)")
    server_time_path = "/fapi/v1/time"
    options: ClassVar[Mapping[str, OptionSpec]] = {
        "funding_poll_s": OptionSpec(default=DEFAULT_POLL_S, choices=POLL_CHOICES,
                                     help="seconds between two REST polls of the open interest "
                                          "(funding channel)"),
    }
    silence_timeout_s = 75.0  # LIST_SUBSCRIPTIONS every 30 s is always answered
    ping_interval_s = PING_INTERVAL_S
    max_sends_per_s = 5.0  # the venue allows 10 incoming messages per second per connection
    max_connection_age_s = 24 * 3600.0
    max_rest_body_bytes = 4 * 1024 * 1024  # a 1000-level book is about 60 KB
    rest_timeout_s = 10.0
    max_rest_in_flight = 2

    def __init__(self, config: ProtocolConfig) -> None:
        super().__init__(config)
        self.tob = BookKeeper(self.name, publish_tob=True, publish_l2=False)
        self.l2 = BookKeeper(self.name, publish_tob=False, publish_l2=True)
        self.keepers = [self.tob, self.l2]
        self.by_native: dict[str, str] = {}
        self.native: dict[str, str] = {}
        for sym in config.symbols:
            inst = config.instruments.get(sym)
            native = inst.native if inst is not None else self.to_native(sym)
            self.by_native[native] = sym
            self.native[sym] = native
        # (stream, symbol) in request order, symbol by symbol
        self.streams = [(f"{self.native[sym].lower()}@{STREAM_OF[ch]}", sym)
                        for sym in config.symbols for ch in ("tob", "l2", "trades", "funding")
                        if ch in config.channels]
        for lane in self.lanes:
            n = sum(1 for ch in config.channels if ch in lane.channels) * len(config.symbols)
            if n > MAX_STREAMS_PER_CONNECTION:
                raise ValueError(
                    f"binance allows {MAX_STREAMS_PER_CONNECTION} streams per connection; "
                    f"{len(config.symbols)} symbols need {n} on the {lane.name} endpoint")
        self._head = msgspec.json.Decoder(Head)
        self._symbol = msgspec.json.Decoder(Symbol)
        self._ticker = msgspec.json.Decoder(BookTicker, strict=False)
        self._diff = msgspec.json.Decoder(DepthUpdate, strict=False)
        self._trade = msgspec.json.Decoder(AggTrade, strict=False)
        self._reply = msgspec.json.Decoder(Reply)
        self._rest_depth = msgspec.json.Decoder(RestDepth, strict=False)
        self._rest_error = msgspec.json.Decoder(RestError)
        self._mark = msgspec.json.Decoder(MarkPrice, strict=False)
        self._open_interest = msgspec.json.Decoder(OpenInterest, strict=False)
        self.funding = FundingTracker(self.name)
        self.poller: RestPoller | None = None
        if "funding" in config.channels:
            self.poller = RestPoller(float(self.option("funding_poll_s")), 1)
        self.depth: dict[str, _Depth] = {}
        self._calls = 0
        # symbol -> (failed snapshot attempts in a row, no new call before this time)
        self._retry: dict[str, tuple[int, int]] = {}
        self._req_n = 0
        self._pending: dict[int, tuple[str, list[str], list[str]]] = {}  # id -> (method, ...)
        self._pings: deque[int] = deque(maxlen=16)
        self._failed: set[str] = set()

    # -- symbols and instruments -----------------------------------------------------------------

    @classmethod
    def to_canonical(cls, native: str) -> str:
        return split_concatenated(native)

    @classmethod
    def instruments_path(cls) -> str:
        return "/fapi/v1/exchangeInfo"

    @classmethod
    def parse_instruments(cls, body: bytes) -> dict[str, Instrument]:
        """Perpetual contracts only (a quarterly contract shares the perpetual's assets); tick
        and lot sizes from the ``PRICE_FILTER`` and ``LOT_SIZE`` filters; contract size 1."""
        out: dict[str, Instrument] = {}
        for s in msgspec.json.decode(body, type=ExchangeInfo).symbols:
            if s.contractType != "PERPETUAL":
                continue
            sym = f"{s.baseAsset}-{s.quoteAsset}".upper()
            tick = lot = None
            for f in s.filters:
                if f.filterType == "PRICE_FILTER" and f.tickSize:
                    tick = float(f.tickSize)
                elif f.filterType == "LOT_SIZE" and f.stepSize:
                    lot = float(f.stepSize)
            status = "trading" if s.status == "TRADING" else s.status.lower()
            out[sym] = Instrument(symbol=sym, native=s.symbol, contract_size=1.0,
                                  tick_size=tick, lot_size=lot, status=status)
        return out

    @classmethod
    def parse_server_time(cls, body: bytes) -> int:
        return msgspec.json.decode(body, type=ServerTime).serverTime * MS_NS

    # -- lifecycle ----------------------------------------------------------------------------

    def connection_made(self, now_ns: int) -> list[Event]:
        events = super().connection_made(now_ns)
        if self.poller is not None:
            self.poller.start(now_ns)
        return events

    def connection_lost(self, now_ns: int) -> list[Event]:
        events = super().connection_lost(now_ns)
        if self.poller is not None:
            self.poller.stop()
        return events

    def next_deadline(self) -> int | None:
        due = super().next_deadline()
        poll = self.poller.next_ns if self.poller is not None else None
        return poll if due is None else due if poll is None else min(due, poll)

    def on_deadline(self, now_ns: int) -> list[Event]:
        events = super().on_deadline(now_ns)
        poller = self.poller
        if poller is not None and poller.next_ns is not None and now_ns >= poller.next_ns:
            calls = [(f"open_interest:{sym}", OPEN_INTEREST_PATH.format(native=self.native[sym]))
                     for sym in self.config.symbols if sym not in self._failed]
            for key, path in poller.begin(now_ns, calls):
                self.request_rest(key, path)
        return events

    def subscribe(self, now_ns: int) -> list[str]:
        self._pending.clear()
        self.depth = {}
        if "l2" in self.config.channels:
            for sym in self.config.symbols:
                if sym not in self._failed:
                    self.depth[sym] = self._new_depth()
                    self.l2.expect_snapshot(sym, now_ns)
        streams = [(stream, sym) for stream, sym in self.streams if sym not in self._failed]
        return [self._request("SUBSCRIBE", streams[i:i + MAX_STREAMS_PER_REQUEST])
                for i in range(0, len(streams), MAX_STREAMS_PER_REQUEST)]

    def ping_frame(self, now_ns: int) -> str:
        self._req_n += 1
        self._pings.append(self._req_n)
        return _encode({"method": "LIST_SUBSCRIPTIONS", "id": self._req_n}).decode()

    def resync(self, keeper: BookKeeper, symbols: list[str], now_ns: int) -> None:
        """l2: start the snapshot procedure again for each symbol, alone. tob: nothing to ask,
        every ``bookTicker`` push is a whole top of book."""
        if keeper is not self.l2:
            return
        for sym in symbols:
            if sym in self._failed or "l2" not in self.config.channels:
                continue
            old = self.depth.get(sym)
            state = self.depth[sym] = self._new_depth(old is not None and old.active)
            keeper.expect_snapshot(sym, now_ns)
            self._maybe_ask(sym, state, now_ns)

    # -- frames -------------------------------------------------------------------------------

    def handle(self, payload: str | bytes, recv_ns: int) -> list[Event]:
        if type(payload) is str and '"depthUpdate"' in payload[:32]:
            # the common frame in one pass; one that does not decode takes the two-step path
            # below, which reports exactly what is wrong, and with which book
            try:
                d = self._diff.decode(payload)
            except msgspec.MsgspecError:
                pass
            else:
                if d.e == "depthUpdate":
                    return self._on_depth(d, recv_ns)
        head = self._head.decode(payload)
        kind = head.e
        if kind == "depthUpdate":
            return self._on_diff(payload, recv_ns)
        if kind == "bookTicker":
            return self._on_ticker(payload, recv_ns)
        if kind == "aggTrade":
            return self._on_trade(payload, recv_ns)
        if kind == "markPriceUpdate":
            return self._on_mark(payload, recv_ns)
        if kind is None:
            return self._on_reply(payload)
        return [self.health(HealthKind.VENUE_ERROR, f"unexpected event {kind!r}")]

    def _on_ticker(self, payload: str | bytes, recv_ns: int) -> list[Event]:
        try:
            t = self._ticker.decode(payload)
        except msgspec.ValidationError:
            self._announce(self.tob, payload)
            raise
        sym = self.by_native.get(t.s)
        if sym is None:
            return [self.health(HealthKind.VENUE_ERROR, f"bookTicker for unsubscribed {t.s!r}")]
        self.book_frame(self.tob, sym)
        bids = [(t.b, t.B)] if t.b > 0 else []
        asks = [(t.a, t.A)] if t.a > 0 else []
        return self.tob.snapshot(sym, bids, asks, ts_local=recv_ns,
                                 ts_exchange=_ns(t.T, t.E), seq=t.u)

    def _on_diff(self, payload: str | bytes, recv_ns: int) -> list[Event]:
        try:
            d = self._diff.decode(payload)
        except msgspec.ValidationError:
            self._announce(self.l2, payload)
            raise
        return self._on_depth(d, recv_ns)

    def _on_depth(self, d: DepthUpdate, recv_ns: int) -> list[Event]:
        sym = self.by_native.get(d.s)
        if sym is None:
            return [self.health(HealthKind.VENUE_ERROR, f"depthUpdate for unsubscribed {d.s!r}")]
        self._frame_book = (self.l2, sym)  # (book_frame, inline)
        state = self.depth.get(sym)
        if state is None:
            return []  # not asked for (or not listed by the venue)
        st = self.l2.states.get(sym)
        if st is not None and st.live:  # (l2.is_live, inline)
            if state.bridge is None:  # the hot path: pu == the previous u
                t = d.T if d.T is not None else d.E
                return self.l2.delta(sym, d.b, d.a, ts_local=recv_ns,
                                     ts_exchange=t * MS_NS if t is not None else None,
                                     seq=d.u, prev_seq=d.pu)
            return self._apply(sym, state, d, recv_ns)
        state.buffer.append((d, recv_ns))
        state.active = True
        self._maybe_ask(sym, state, recv_ns)
        return []

    def _apply(self, sym: str, state: _Depth, d: DepthUpdate, recv_ns: int) -> list[Event]:
        """One diff on a live book: the bridging rule first, then ``pu`` == previous ``u``."""
        ts_exchange = _ns(d.T, d.E)
        if state.bridge is not None:
            last = state.bridge
            if d.u < last:
                return []  # already in the snapshot
            if last < d.U and d.pu != last:
                return self.l2.invalidate(
                    sym, HealthKind.GAP,
                    f"first update after the snapshot (lastUpdateId={last}) starts at U={d.U}",
                    recv_ns)
            state.bridge = None
            return self.l2.delta(sym, d.b, d.a, ts_local=recv_ns, ts_exchange=ts_exchange,
                                 seq=d.u)
        return self.l2.delta(sym, d.b, d.a, ts_local=recv_ns, ts_exchange=ts_exchange, seq=d.u,
                             prev_seq=d.pu)

    def _on_trade(self, payload: str | bytes, recv_ns: int) -> list[Event]:
        t = self._trade.decode(payload)
        sym = self.by_native.get(t.s)
        if sym is None:
            return [self.health(HealthKind.VENUE_ERROR, f"aggTrade for unsubscribed {t.s!r}")]
        return [Trade(exchange=self.name, ts_local=recv_ns, symbol=sym, ts_exchange=t.T * MS_NS,
                      price=t.p, size=t.q, side="sell" if t.m else "buy", trade_id=str(t.a))]

    def _on_mark(self, payload: str | bytes, recv_ns: int) -> list[Event]:
        m = self._mark.decode(payload)
        sym = self.by_native.get(m.s)
        if sym is None:
            return [self.health(HealthKind.VENUE_ERROR, f"markPrice for unsubscribed {m.s!r}")]
        return self.funding.update(sym, recv_ns, m.E * MS_NS if m.E is not None else None,
                                   funding_rate=m.r, mark_px=m.p, index_px=m.i,
                                   next_funding_time=m.T * MS_NS if m.T else None)

    def _on_open_interest(self, response: RestResponse) -> list[Event]:
        if self.poller is not None:
            for key, path in self.poller.answered(response.key, response.recv_ns):
                self.request_rest(key, path)
        _, name = parse_poll_key(response.key) or (0, "")
        sym = name.partition(":")[2]
        if sym not in self.native:
            return []
        if response.error is not None:
            sample = response.body[:200].decode("utf-8", "replace")
            return [self.health(HealthKind.VENUE_ERROR, f"open interest poll failed: "
                                f"{response.error} {sample}".rstrip(), sym, response.recv_ns)]
        oi = self._open_interest.decode(response.body)
        if oi.symbol != self.native[sym]:
            raise msgspec.ValidationError(f"open interest of {oi.symbol!r}, asked for "
                                          f"{self.native[sym]!r}")
        return self.funding.update(sym, response.recv_ns,
                                   oi.time * MS_NS if oi.time is not None else None,
                                   open_interest=oi.openInterest)

    def _on_reply(self, payload: str | bytes) -> list[Event]:
        r = self._reply.decode(payload)
        if r.id is None:
            return [self.health(HealthKind.VENUE_ERROR, f"unrecognised frame: {payload[:200]!r}")]
        if r.id in self._pings:
            return []
        pending = self._pending.pop(r.id, None) if isinstance(r.id, int) else None
        error = r.error
        if error is None and (r.code is not None or r.msg is not None):
            error = ErrorInfo(code=r.code, msg=r.msg or "")
        if pending is None:
            if error is None:
                return []
            return [self.health(HealthKind.VENUE_ERROR,
                                f"request {r.id}: code {error.code}: {error.msg}")]
        method, streams, symbols = pending
        if error is None:
            if method != "SUBSCRIBE":
                return []
            for stream, sym in zip(streams, symbols, strict=True):
                state = self.depth.get(sym)
                if state is not None and stream.endswith("@depth@100ms"):
                    state.active = True
                    self._maybe_ask(sym, state, self.now_ns)
            return [self.health(HealthKind.SUBSCRIBED,
                                ",".join(s for s, owner in zip(streams, symbols, strict=True)
                                         if owner == sym), sym)
                    for sym in dict.fromkeys(symbols)]
        detail = f"{method} rejected: code {error.code}: {error.msg or 'no reason given'}"
        return [self.health(HealthKind.SUBSCRIBE_ERROR, detail, sym)
                for sym in dict.fromkeys(symbols)]

    # -- the REST snapshot --------------------------------------------------------------------

    def handle_rest(self, response: RestResponse) -> list[Event]:
        if parse_poll_key(response.key) is not None:
            return self._on_open_interest(response)
        key, body, recv_ns, error = response.key, response.body, response.recv_ns, response.error
        what, _, rest = key.partition(":")
        sym, _, call = rest.rpartition(":")
        state = self.depth.get(sym)
        if what != "depth" or state is None or str(state.call) != call or \
                self.l2.is_live(sym):
            return []  # an answer to a call made before a resync or a reconnect
        state.requested = False
        if error is not None:
            return self._snapshot_failed(sym, body, error, recv_ns)
        self.book_frame(self.l2, sym)
        snap = self._rest_depth.decode(body)
        last = snap.lastUpdateId
        while state.buffer and state.buffer[0][0].u < last:
            state.buffer.popleft()  # already in the snapshot
        first = state.buffer[0][0] if state.buffer else None
        if first is not None and last < first.U and first.pu != last:
            # the snapshot predates the buffered stream: not published, asked again later
            self._retry_later(sym, recv_ns)
            return []
        events = self.l2.snapshot(sym, snap.bids, snap.asks, ts_local=recv_ns,
                                  ts_exchange=_ns(snap.T, snap.E), seq=last)
        if not self.l2.is_live(sym):
            return events  # a crossed snapshot: the keeper asked for a resync
        self._retry.pop(sym, None)
        state.bridge = last
        buffered = list(state.buffer)
        state.buffer.clear()
        for d, t in buffered:
            events += self._apply(sym, state, d, t)
            if not self.l2.is_live(sym):
                break
        return events

    def _snapshot_failed(self, sym: str, body: bytes, error: str, recv_ns: int) -> list[Event]:
        code = 0
        if body:
            try:
                code = self._rest_error.decode(body).code
            except (msgspec.DecodeError, msgspec.ValidationError):
                code = 0
        if code == INVALID_SYMBOL:
            self._failed.add(sym)
            self.depth.pop(sym, None)
            self.l2.forget(sym)
            return [self.health(HealthKind.SUBSCRIBE_ERROR,
                                f"depth snapshot: Binance does not list {self.native[sym]} "
                                f"({error})", sym, recv_ns)]
        wait_s = self._retry_later(sym, recv_ns)
        sample = body[:200].decode("utf-8", "replace") if body else ""
        return [self.health(HealthKind.VENUE_ERROR,
                            f"depth snapshot failed: {error} {sample}; asking again in "
                            f"{wait_s:g} s", sym, recv_ns)]

    def _retry_later(self, sym: str, recv_ns: int) -> float:
        """No new snapshot call for ``sym`` before a doubling delay; returns it in seconds."""
        failures, _ = self._retry.get(sym, (0, 0))
        wait_s = min(RETRY_FIRST_S * 2.0 ** failures, RETRY_MAX_S)
        self._retry[sym] = (failures + 1, recv_ns + int(wait_s * S_NS))
        return wait_s

    def _maybe_ask(self, sym: str, state: _Depth, now_ns: int) -> None:
        """Ask for the snapshot once the stream is active, unless a call is on its way or a
        failed one is backing off."""
        if state.active and not state.requested and now_ns >= self._retry.get(sym, (0, 0))[1]:
            self._ask_snapshot(sym, state)

    def _ask_snapshot(self, sym: str, state: _Depth) -> None:
        self._calls += 1
        state.call = self._calls
        state.requested = True
        self.request_rest(f"depth:{sym}:{state.call}",
                          f"/fapi/v1/depth?symbol={self.native[sym]}&limit={DEPTH_LIMIT}")

    def _new_depth(self, active: bool = False) -> _Depth:
        self._calls += 1
        return _Depth(self._calls, active)

    # -- helpers ------------------------------------------------------------------------------

    def _request(self, method: str, streams: list[tuple[str, str]]) -> str:
        self._req_n += 1
        names = [s for s, _ in streams]
        self._pending[self._req_n] = (method, names, [sym for _, sym in streams])
        return _encode({"method": method, "params": names, "id": self._req_n}).decode()

    def _announce(self, keeper: BookKeeper, payload: str | bytes) -> None:
        """A book push that does not decode: find its symbol, so that its book is resynced."""
        try:
            sym = self.by_native.get(self._symbol.decode(payload).s)
        except msgspec.DecodeError:
            return
        if sym is not None:
            self.book_frame(keeper, sym)


def _ns(t: int | None, e: int | None) -> int | None:
    """Transaction time, else event time, in ns (both checked ``TsMs`` ms values)."""
    ms = t if t is not None else e
    return ms * MS_NS if ms is not None else None
