"""Sans-IO protocol for Coinbase Advanced Trade public market data (``advanced-trade-ws``).

Channels: ``l2`` and ``tob`` from ``level2`` (pushed on channel ``l2_data``: one full-book
snapshot event per product, then ``update`` events with absolute ``new_quantity``); ``tob`` is the
top of that book (the ``ticker`` channel only moves on trades, so its best bid/ask is stale between
them). ``trades`` from ``market_trades``; Coinbase reports the *maker's* side there, so it is
flipped to the taker's side. ``heartbeats`` is always subscribed (1 s) so quiet products keep the
socket open; it is the session's liveness signal.

Subscriptions: one ``subscribe`` frame per channel listing every product. The venue acknowledges
with a ``subscriptions`` frame listing the connection's whole current subscription set; each
product that newly appears becomes a ``subscribed`` health event. Error frames
(``{"type":"error","message":...}``) name no product, so an error is attributed to the oldest
unacknowledged request: a one-product request fails that product (``subscribe_error``), a
multi-product one is re-sent one product per frame so that the next error names its product.
With instruments loaded, a symbol the venue does not list fails at connect time instead. An error
whose message is transient (a rate limit, "try again") is a ``subscribe_retry`` row and the same
request is sent again after a backoff (:class:`core.subscriptions.RetryQueue`).

Integrity: ``sequence_num`` counts every frame of the connection across all channels. A jump (or
a step back) means frames were lost, and a lost frame may have been any product's ``l2_data``, so
every book of the connection becomes invalid (one ``gap`` for the connection, one per book) and
``level2`` is unsubscribed and resubscribed, which makes the venue send fresh snapshots. A
malformed ``l2_data`` frame counts as lost the same way. Books also resync when crossed and when
a snapshot is overdue. Trade ids run contiguously per product: a jump is reported as
``trade_gap``; after a reconnect, trades from the new ``market_trades`` snapshot that are newer
than the last one seen fill the outage.

``ts_exchange``: the latest ``event_time`` of a book event, a trade's ``time``; ``seq`` of book
rows is the frame's ``sequence_num``.

Pure: no trio, no sockets, no clock reads.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from core.book import BookKeeper
from core.codec import MS_NS, iso_to_ns
from core.protocol import ExchangeProtocol, Instrument, ProtocolConfig
from core.schema import Event, HealthKind, Level, Trade
from core.subscriptions import SUBSCRIBE_RETRY, RetryQueue, is_transient
from plugins.coinbase.messages import (
    L2_EVENTS,
    SUBSCRIPTIONS_EVENTS,
    TRADES_EVENTS,
    Envelope,
    L2Event,
    L2Frame,
    L2Level,
    ProductsReply,
    ServerTime,
    TradesEvent,
)

MIB = 1024 * 1024
TRADE_GAP = HealthKind.TRADE_GAP  # trade ids of a product jumped (trades missing)
# Coinbase reports the maker's side; the taker took the other one.
TAKER_SIDE = {"BUY": "sell", "SELL": "buy"}
# Channels the venue may push that this plugin never subscribes (ignored, sequence still counted).
QUIET_CHANNELS = frozenset({"ticker", "ticker_batch", "candles", "status"})
DECODE_ERRORS = (msgspec.DecodeError, msgspec.ValidationError)

_encode = msgspec.json.Encoder().encode


@dataclass(slots=True)
class _Request:
    """A subscribe/unsubscribe frame not yet reflected in a ``subscriptions`` frame."""

    op: str
    channel: str
    symbols: tuple[str, ...]


class CoinbaseProtocol(ExchangeProtocol):
    name = "coinbase"
    channels = frozenset({"tob", "l2", "trades"})
    default_url = "wss://advanced-trade-ws.coinbase.com"
    default_rest_url = "https://api.coinbase.com"
    #: clock offsets are measured against this (public, no key needed)
    server_time_path = "/api/v3/brokerage/time"
    # A full-book snapshot is one frame: ~5 MB for BTC-USD's 46,000 levels.
    max_message_bytes = 64 * MIB
    # heartbeats arrive every second on a healthy connection.
    silence_timeout_s = 10.0
    # The heartbeats channel already proves the socket alive every second.
    ws_ping_interval_s = None
    # Unauthenticated clients may send 8 messages per second.
    max_sends_per_s = 8.0
    # The level2 acknowledgement follows the snapshots, which take a while for many products.
    subscribe_timeout_s = 20.0
    description = "Coinbase Advanced Trade (level2 full book + sequence_num, market_trades)"

    def __init__(self, config: ProtocolConfig) -> None:
        super().__init__(config)
        chans = set(config.channels)
        self.want_book = bool(chans & {"tob", "l2"})
        self.want_trades = "trades" in chans
        self.book = BookKeeper(self.name, publish_tob="tob" in chans, publish_l2="l2" in chans)
        self.keepers = [self.book]
        # product id on the wire -> canonical symbol. Public channels serve a "-USDC" product's
        # data under its "-USD" alias, so that name routes to the "-USDC" symbol when the "-USD"
        # one is not configured itself.
        self.route: dict[str, str] = {self.to_native(s): s for s in config.symbols}
        for sym in config.symbols:
            base, _, quote = sym.partition("-")
            if quote == "USDC":
                self.route.setdefault(f"{base}-USD", sym)
        self._env = msgspec.json.Decoder(Envelope)
        self._l2 = msgspec.json.Decoder(L2_EVENTS, strict=False)
        self._l2_frame = msgspec.json.Decoder(L2Frame, strict=False)
        self._trades = msgspec.json.Decoder(TRADES_EVENTS, strict=False)
        self._subs = msgspec.json.Decoder(SUBSCRIPTIONS_EVENTS)
        # Symbols the venue refused or does not list: never subscribed again in this run.
        self.failed: dict[str, str] = {}
        self._unlisted: list[tuple[str, str]] = []
        if config.instruments:
            for sym in config.symbols:
                inst = config.instruments.get(sym)
                if inst is None:
                    self._unlisted.append((sym, "not listed by the products endpoint"))
                elif inst.status == "delisted":
                    self._unlisted.append((sym, "delisted"))
            self.failed.update(self._unlisted)
        self._unlisted_reported = False
        # per connection
        self._next_seq: int | None = None
        self._acked: dict[str, set[str]] = {}
        self._pending: list[_Request] = []
        self.retry: RetryQueue[_Request] = RetryQueue()  # refused for a transient reason
        # per run: the last trade id seen per symbol (gap detection, outage fill)
        self.last_trade_id: dict[str, int] = {}
        self._unknown: set[str] = set()

    # -- symbols and instruments -----------------------------------------------------------------

    @classmethod
    def to_native(cls, symbol: str) -> str:
        return symbol

    @classmethod
    def to_canonical(cls, native: str) -> str:
        return native.upper()

    @classmethod
    def parse_server_time(cls, body: bytes) -> int:
        return msgspec.json.decode(body, type=ServerTime, strict=False).epochMillis * MS_NS

    @classmethod
    def instruments_path(cls) -> str:
        return "/api/v3/brokerage/market/products"

    @classmethod
    def parse_instruments(cls, body: bytes) -> dict[str, Instrument]:
        doc = msgspec.json.decode(body, type=ProductsReply)
        out: dict[str, Instrument] = {}
        for p in doc.products:
            status = "trading" if p.status == "online" and not p.trading_disabled else p.status
            out[p.product_id] = Instrument(
                symbol=cls.to_canonical(p.product_id), native=p.product_id,
                tick_size=float(p.quote_increment), lot_size=float(p.base_increment),
                status=status)
        return out

    # -- lifecycle --------------------------------------------------------------------------------

    def active_symbols(self) -> list[str]:
        return [s for s in self.config.symbols if s not in self.failed]

    def connection_made(self, now_ns: int) -> list[Event]:
        self._next_seq = None
        self._acked = {}
        self._pending = []
        self.retry.clear()  # a new connection subscribes everything anyway
        super().connection_made(now_ns)
        if self._unlisted_reported:
            return []
        self._unlisted_reported = True
        return [self.health(HealthKind.SUBSCRIBE_ERROR, f"{why}; not subscribed", sym)
                for sym, why in self._unlisted]

    def subscribe(self, now_ns: int) -> list[str]:
        symbols = tuple(self.active_symbols())
        if not symbols:
            return []
        frames = [self._request("subscribe", "heartbeats", symbols)]
        if self.want_book:
            frames.append(self._request("subscribe", "level2", symbols))
            for sym in symbols:
                self.book.expect_snapshot(sym, now_ns)
        if self.want_trades:
            frames.append(self._request("subscribe", "market_trades", symbols))
        return frames

    def connection_lost(self, now_ns: int) -> list[Event]:
        super().connection_lost(now_ns)  # books untrusted until the next snapshots
        self._next_seq = None
        self._acked = {}
        self._pending = []
        return []

    def resubscribe(self, due: list[_Request], now_ns: int) -> None:
        for req in due:
            symbols = tuple(s for s in req.symbols if s not in self.failed)
            if symbols:
                self.send(self._request(req.op, req.channel, symbols))
                if req.channel == "level2":
                    for sym in symbols:
                        self.book.expect_snapshot(sym, now_ns)

    # -- frames -----------------------------------------------------------------------------------

    def handle(self, payload: str | bytes, recv_ns: int) -> list[Event]:
        if '"l2_data"' in payload[:32] if type(payload) is str else b'"l2_data"' in payload[:32]:
            fast = self._l2_push(payload, recv_ns)
            if fast is not None:
                return fast
        env = self._env.decode(payload)
        events: list[Event] = []
        if env.sequence_num is not None:
            self._check_sequence(env.sequence_num, recv_ns, events)
        channel = env.channel
        if channel == "l2_data":
            self._on_l2(env, payload, recv_ns, events)
        elif channel == "market_trades":
            self._on_trades(env, recv_ns, events)
        elif channel == "subscriptions":
            self._on_subscriptions(env, events)
        elif channel == "heartbeats" or channel in QUIET_CHANNELS:
            pass
        elif env.type == "error":
            self._on_error(env.message or "error without message", events)
        else:
            key = f"channel:{channel}"
            if key not in self._unknown:
                self._unknown.add(key)
                events.append(self.health(HealthKind.VENUE_ERROR,
                                          f"unexpected frame: {payload[:200]!r}"))
        return events

    def _check_sequence(self, seq: int, recv_ns: int, events: list[Event]) -> None:
        expected = self._next_seq
        self._next_seq = seq + 1
        if expected is None or seq == expected:
            return
        if seq > expected:
            detail = (f"sequence_num {expected - 1} -> {seq}: {seq - expected} message(s) lost "
                      "on the connection")
        else:
            detail = f"sequence_num went back from {expected - 1} to {seq}"
        events.append(self.health(HealthKind.GAP, detail))
        self._invalidate_books(detail, recv_ns, events)

    def _invalidate_books(self, detail: str, recv_ns: int, events: list[Event]) -> None:
        """A frame of unknown content is lost: any product's book may be wrong."""
        if not self.want_book:
            return
        for sym in self.active_symbols():
            events.extend(self.book.invalidate(sym, HealthKind.GAP, detail, recv_ns))

    def _l2_push(self, payload: str | bytes, recv_ns: int) -> list[Event] | None:
        """An ``l2_data`` frame decoded in one step (the common case), or None for the two-step
        path, which reports exactly what is wrong (and resyncs the books)."""
        try:
            frame = self._l2_frame.decode(payload)
        except msgspec.MsgspecError:
            return None
        seq = frame.sequence_num
        if type(seq) is not int:
            return None
        events: list[Event] = []
        if seq == self._next_seq:  # (_check_sequence's common case, inline)
            self._next_seq = seq + 1
        else:
            self._check_sequence(seq, recv_ns, events)
        try:
            parsed = self._parse_l2(frame.events, frame.timestamp, events)
        except DECODE_ERRORS as exc:
            self._l2_malformed(seq, payload, exc, recv_ns, events)
            return events
        if len(parsed) == 1 and parsed[0][0] == "update" and not events:  # the common case
            _, sym, bids, asks, ts = parsed[0]
            return self.book.delta(sym, bids, asks, ts_local=recv_ns, ts_exchange=ts, seq=seq)
        self._apply_l2(parsed, seq, recv_ns, events)
        return events

    def _on_l2(self, env: Envelope, payload: str | bytes, recv_ns: int,
               events: list[Event]) -> None:
        """Decode and check the whole frame first; only a frame that is entirely valid is
        applied (a malformed one counts as lost: every book resyncs)."""
        seq = env.sequence_num
        try:
            parsed = self._parse_l2(self._l2.decode(env.events), env.timestamp, events)
        except DECODE_ERRORS as exc:
            self._l2_malformed(seq, payload, exc, recv_ns, events)
            return
        self._apply_l2(parsed, seq, recv_ns, events)

    def _l2_malformed(self, seq: int | None, payload: str | bytes, exc: Exception,
                      recv_ns: int, events: list[Event]) -> None:
        events.append(self.decode_error("l2_data", payload, exc, recv_ns))
        self._invalidate_books(f"malformed l2_data frame (sequence_num={seq})", recv_ns, events)

    def _parse_l2(self, l2_events: list[L2Event], timestamp: str | None, events: list[Event]
                  ) -> list[tuple[str, str, list[Level], list[Level], int | None]]:
        """Every event's levels by side and its time, or a msgspec error for the frame."""
        parsed: list[tuple[str, str, list[Level], list[Level], int | None]] = []
        route = self.route
        for ev in l2_events:
            sym = route.get(ev.product_id) or self._symbol(ev.product_id, events)
            if sym is None or sym in self.failed:
                continue
            updates = ev.updates
            bids: list[Level] = []
            asks: list[Level] = []
            add_bid = bids.append
            add_ask = asks.append
            # one event_time for every update is the common case: parsed once
            first = updates[0].event_time if updates else timestamp
            mixed = False
            for u in updates:
                if u.side == "bid":
                    add_bid((u.price_level, u.new_quantity))
                else:
                    add_ask((u.price_level, u.new_quantity))
                if u.event_time != first:
                    mixed = True
            if mixed:
                ts = _event_time(updates, timestamp)
            else:
                try:  # (parse_time, inline)
                    ts = iso_to_ns(first)
                except ValueError as exc:
                    raise msgspec.ValidationError(f"bad timestamp {first!r}: {exc}") from None
            parsed.append((ev.type, sym, bids, asks, ts))
        return parsed

    def _apply_l2(self, parsed: list[tuple[str, str, list[Level], list[Level], int | None]],
                  seq: int | None, recv_ns: int, events: list[Event]) -> None:
        keeper = self.book
        for kind, sym, bids, asks, ts in parsed:
            if kind == "snapshot":
                events.extend(keeper.snapshot(
                    sym, [lv for lv in bids if lv[1] > 0], [lv for lv in asks if lv[1] > 0],
                    ts_local=recv_ns, ts_exchange=ts, seq=seq))
            elif kind == "update":
                events.extend(keeper.delta(sym, bids, asks, ts_local=recv_ns, ts_exchange=ts,
                                           seq=seq))
            else:
                events.append(self.health(HealthKind.VENUE_ERROR,
                                          f"l2_data event type {kind!r}", sym))

    def _on_trades(self, env: Envelope, recv_ns: int, events: list[Event]) -> None:
        parsed: list[tuple[TradesEvent, dict[str, list[Trade]]]] = []
        for ev in self._trades.decode(env.events):
            by_symbol: dict[str, list[Trade]] = {}
            for t in ev.trades:
                sym = self._symbol(t.product_id, events)
                if sym is None:
                    continue
                by_symbol.setdefault(sym, []).append(Trade(
                    exchange=self.name, ts_local=recv_ns, symbol=sym,
                    ts_exchange=parse_time(t.time), price=t.price, size=t.size,
                    side=TAKER_SIDE[t.side], trade_id=t.trade_id))
            parsed.append((ev, by_symbol))
        for ev, by_symbol in parsed:
            for sym, trades in by_symbol.items():
                self._emit_trades(sym, ev, trades, recv_ns, events)

    def _emit_trades(self, sym: str, ev: TradesEvent, trades: list[Trade], recv_ns: int,
                     events: list[Event]) -> None:
        """Emit in trade-id order (the venue lists newest first), checking id continuity."""
        if not all(t.trade_id.isdigit() for t in trades):
            if ev.type != "snapshot":
                events.extend(trades)
            return
        trades.sort(key=lambda t: int(t.trade_id))
        last = self.last_trade_id.get(sym)
        if ev.type == "snapshot":
            # Trades from before this subscription: new only after an outage of this run.
            self.last_trade_id[sym] = max(int(trades[-1].trade_id), last or 0)
            if last is None:
                return
            newer = [t for t in trades if int(t.trade_id) > last]
            if newer and int(newer[0].trade_id) > last + 1:
                events.append(self.health(
                    TRADE_GAP, f"trade_id {last} -> {newer[0].trade_id} across a reconnect: "
                               f"{int(newer[0].trade_id) - last - 1} trade(s) missing", sym))
            events.extend(newer)
            return
        for t in trades:
            tid = int(t.trade_id)
            if last is not None:
                if tid <= last:
                    continue  # already emitted (snapshot fill)
                if tid > last + 1:
                    events.append(self.health(
                        TRADE_GAP, f"trade_id {last} -> {tid}: {tid - last - 1} trade(s) missing",
                        sym))
            events.append(t)
            last = tid
        if last is not None:
            self.last_trade_id[sym] = last

    def _on_subscriptions(self, env: Envelope, events: list[Event]) -> None:
        for ev in self._subs.decode(env.events):
            current: dict[str, set[str]] = {}
            for channel, products in ev.subscriptions.items():
                current[channel] = {s for s in map(self.route.get, products) if s is not None}
            newly: dict[str, list[str]] = {}
            for channel, syms in current.items():
                for sym in sorted(syms - self._acked.get(channel, set())):
                    newly.setdefault(sym, []).append(channel)
            self._acked = current
            self._pending = [r for r in self._pending if not _satisfied(r, current)]
            if newly:
                self.retry.succeeded()
            events.extend(self.health(HealthKind.SUBSCRIBED, ",".join(chans), sym)
                          for sym, chans in newly.items())

    def _on_error(self, message: str, events: list[Event]) -> None:
        req = self._pending.pop(0) if self._pending else None
        if req is None:
            events.append(self.health(HealthKind.VENUE_ERROR, message))
            return
        if req.op != "subscribe":
            events.append(self.health(HealthKind.VENUE_ERROR,
                                      f"{req.op} {req.channel} {','.join(req.symbols)}: {message}"))
            return
        if is_transient(message):
            delay = self.retry.defer(req, self.now_ns)
            for sym in req.symbols:
                self.book.forget(sym)
            events.extend(self.health(SUBSCRIBE_RETRY, f"{req.channel}: {message}; retrying in "
                                      f"{delay:g} s", sym) for sym in req.symbols)
            return
        if len(req.symbols) == 1:
            sym = req.symbols[0]
            self.failed[sym] = message
            self.book.forget(sym)
            events.append(self.health(HealthKind.SUBSCRIBE_ERROR, f"{req.channel}: {message}",
                                      sym))
            return
        events.append(self.health(
            HealthKind.SUBSCRIBE_ERROR,
            f"{req.channel} {','.join(req.symbols)}: {message}; retrying one product per request"))
        for sym in req.symbols:
            self.send(self._request("subscribe", req.channel, (sym,)))

    # -- helpers ----------------------------------------------------------------------------------

    def _symbol(self, product_id: str, events: list[Event]) -> str | None:
        sym = self.route.get(product_id)
        if sym is None and product_id not in self._unknown:
            self._unknown.add(product_id)
            events.append(self.health(HealthKind.VENUE_ERROR,
                                      f"data for unrequested product {product_id!r}"))
        return sym

    def _request(self, op: str, channel: str, symbols: tuple[str, ...]) -> str:
        self._pending.append(_Request(op, channel, symbols))
        return _encode({"type": op, "product_ids": [self.to_native(s) for s in symbols],
                        "channel": channel}).decode()

    def resync(self, keeper: BookKeeper, symbols: list[str], now_ns: int) -> None:
        """One level2 unsubscribe + subscribe for every symbol that needs a snapshot."""
        wanted = tuple(s for s in symbols if s not in self.failed)
        if not wanted:
            return
        self.send(self._request("unsubscribe", "level2", wanted))
        self.send(self._request("subscribe", "level2", wanted))
        for sym in wanted:
            keeper.expect_snapshot(sym, now_ns)


def parse_time(text: str | None) -> int | None:
    """RFC 3339 text to ns; a malformed time is a malformed frame (a msgspec error)."""
    try:
        return iso_to_ns(text)
    except ValueError as exc:
        raise msgspec.ValidationError(f"bad timestamp {text!r}: {exc}") from None


def _event_time(updates: list[L2Level], timestamp: str | None) -> int | None:
    """The latest ``event_time`` of a book event's updates (the frame's time for none)."""
    if not updates:
        return parse_time(timestamp)
    times = {u.event_time for u in updates}
    if len(times) == 1:
        return parse_time(times.pop())
    return max((t for t in map(parse_time, times) if t is not None), default=None)


def _satisfied(req: _Request, current: dict[str, set[str]]) -> bool:
    have = current.get(req.channel)
    if req.op == "subscribe":
        if have is None:
            return False
        return req.channel == "heartbeats" or have.issuperset(req.symbols)
    return have is None or have.isdisjoint(req.symbols)
