"""Sans-IO protocol for Gate.io futures v4, USDT-settled perpetuals (``/v4/ws/usdt``).

Channels: ``tob`` from ``futures.book_ticker``, ``l2`` from ``futures.obu`` (stream
``ob.{contract}.{depth}``; option ``l2_depth``: ``50`` (20 ms pushes, the default) or ``400``
(100 ms)), ``trades`` from ``futures.trades``, ``funding`` from ``futures.tickers``.

Funding (``futures.tickers``, every push a whole ticker): ``funding_rate``, ``mark_price``,
``index_price`` and ``total_size`` (the open interest in contracts, converted to base units); a
row when one of them changed. The push carries no funding time: the interval and a funding time
come from the contract list (``funding_interval``, ``funding_next_apply``) and the next funding
time is that one rolled forward by whole intervals to the push's time. Clock offsets are
measured against ``/api/v4/spot/time``.

Requests are ``{"time": s, "id": n, "channel": ..., "event": ..., "payload": [...]}``, one per
(channel, contract), so that every reply is attributed to one symbol: by the echoed ``id``, else by
the echoed ``payload``, else (older servers echo neither) by the oldest request still waiting on
that channel, Gate answering in order. ``time`` is the ``now_ns`` of the call that queued the frame.
A reply with ``error`` becomes a ``subscribe_error`` health event for that symbol and channel,
which is then left alone for the rest of the run, unless the reason is transient ("too many
requests", a rate limit): then it is a ``subscribe_retry`` row and the request is sent again
after a backoff (:class:`core.subscriptions.RetryQueue`).

Book rule (``futures.obu``): a ``full: true`` push replaces the book; a delta applies only when its
``U`` is the book's ``u + 1`` (BookKeeper ``prev_seq = U - 1``); a delta without levels still
advances the id. A break makes that symbol's book invalid and unsubscribes + resubscribes that
symbol's obu stream alone; nothing is published for it until the next full push. Gate acks
unknown contracts with ``success`` and then stays silent: the symbol's snapshot deadline (on the
obu stream when ``l2`` is requested, else on ``book_ticker``) turns that into ``no_snapshot`` and a
retry with a growing delay. Symbols absent from a non-empty instrument list are not subscribed.

The REST snapshot + ``futures.order_book_update`` procedure is implemented as a pure helper,
:class:`OrderBookBridge`; the live session uses ``futures.obu`` (it needs no REST call).

Sizes arrive in contracts and leave in base units (x ``quanto_multiplier``). ``futures.trades``
entries flagged ``is_internal`` (insurance-fund/ADL takeovers, not order-book matches) are not
published.

Heartbeat: ``{"time": s, "channel": "futures.ping"}`` every 15 s; ``futures.pong`` is accepted.
``futures.system`` ``upgrade`` notices become a ``venue_upgrade`` health event (the server closes
the socket soon after and the session reconnects).

Pure: no trio, no sockets, no clock reads.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from typing import ClassVar, Final

import msgspec

from core.book import BookKeeper, OrderBook
from core.codec import INF, MS_NS, S_NS, BadValue, Price, check_size, ms_to_ns
from core.funding import FundingTracker, next_on_grid
from core.options import OptionSpec
from core.protocol import ExchangeProtocol, Instrument, ProtocolConfig
from core.schema import Event, HealthKind, Level, Trade
from core.subscriptions import SUBSCRIBE_RETRY, RetryQueue, is_transient
from plugins.gateio.messages import (
    BookTicker,
    Contract,
    Envelope,
    ObuData,
    ObuFrame,
    OrderBookUpdate,
    PriceSize,
    RestOrderBook,
    ServerTime,
    Status,
    StreamName,
    System,
    Ticker,
    TradeData,
)

PING_INTERVAL_S = 15.0
L2_DEPTHS = ("50", "400")

BOOK_TICKER = "futures.book_ticker"
OBU = "futures.obu"
OBU_MARK = '"futures.obu"'
TRADES = "futures.trades"
TICKERS = "futures.tickers"
PING = "futures.ping"
PONG = "futures.pong"
SYSTEM = "futures.system"

#: health event for a ``futures.system`` upgrade notice
VENUE_UPGRADE: Final = HealthKind.VENUE_UPGRADE

_encoder = msgspec.json.Encoder()


def _encode(obj: object) -> str:
    return _encoder.encode(obj).decode()


class Scale:
    """Contract counts to base units with the contract size ``quanto_multiplier``.

    Multipliers such as ``0.0001`` are applied as a division by ``10000``: a decimal count divided
    by a power of ten lands on the nearest float to the decimal result (``600`` -> ``0.06``),
    where multiplying by the inexact ``0.0001`` would not (``0.060000000000000005``).
    """

    __slots__ = ("div", "mul", "pair")

    def __init__(self, contract_size: float) -> None:
        self.mul = 1.0
        self.div = 1.0
        inverse = round(1 / contract_size) if 0 < contract_size < 1 else 0
        if inverse and abs(inverse * contract_size - 1) < 1e-12:
            self.div = float(inverse)
        else:
            self.mul = contract_size
        #: ``(mul, div)``, as :meth:`core.book.BookKeeper.delta` takes it
        self.pair = (self.mul, self.div)

    def __call__(self, size: float) -> float:
        return check_size(size * self.mul / self.div)

    def levels(self, levels: Iterable[tuple[float, float]]) -> list[Level]:
        mul, div = self.mul, self.div
        return _finite_sizes([(p, s * mul / div) for p, s in levels], mul)

    def rest_levels(self, levels: Iterable[PriceSize]) -> list[Level]:
        mul, div = self.mul, self.div
        return _finite_sizes([(lv.p, lv.s * mul / div) for lv in levels], mul)


def _finite_sizes(levels: list[Level], mul: float) -> list[Level]:
    """``levels``, unless a contract size above 1 took a huge count past the largest float."""
    if mul > 1.0:
        for _, s in levels:
            if s == INF:
                raise BadValue("a size overflows once converted to base units")
    return levels


class _Request(msgspec.Struct):
    channel: str
    event: str
    symbol: str
    what: str  # "tob" | "l2" | "trades"
    payload: list[str]


class GateioProtocol(ExchangeProtocol):
    name = "gateio"
    channels = frozenset({"tob", "l2", "trades", "funding"})
    default_url = "wss://fx-ws.gateio.ws/v4/ws/usdt"
    default_rest_url = "https://api.gateio.ws"
    silence_timeout_s = 40.0  # pings every 15 s are always answered on a live socket
    ping_interval_s = PING_INTERVAL_S
    requires_instruments = True
    description = ("Gate.io USDT futures v4 (futures.book_ticker, futures.obu, futures.trades, "
                   "futures.tickers)")
    server_time_path = "/api/v4/spot/time"
    #: handshake headers this venue wants: without ``X-Gate-Size-Decimal: 1`` Gate truncates
    #: fractional contract sizes to integers (sessions that support extra headers send these)
    ws_headers: ClassVar[tuple[tuple[str, str], ...]] = (("X-Gate-Size-Decimal", "1"),)
    options: ClassVar[Mapping[str, OptionSpec]] = {
        "l2_depth": OptionSpec(default="50", choices=L2_DEPTHS,
                               help="levels of the l2 channel's futures.obu stream"),
    }

    def __init__(self, config: ProtocolConfig) -> None:
        super().__init__(config)
        depth = self.option("l2_depth")
        self.l2_depth = depth
        self.tob = BookKeeper(self.name, publish_tob=True, publish_l2=False)
        self.l2 = BookKeeper(self.name, publish_tob=False, publish_l2=True)
        self.keepers = [self.tob, self.l2]
        # The keeper whose snapshot deadline proves that a subscribed contract exists: obu always
        # starts with a full push; book_ticker pushes only on change (a quiet book stays silent).
        self._deadline_keeper: BookKeeper | None = (
            self.l2 if "l2" in config.channels else self.tob if "tob" in config.channels else None)
        self.scale: dict[str, Scale] = {}
        self.by_contract: dict[str, str] = {}  # BTC_USDT -> BTC-USDT
        self.by_stream: dict[str, str] = {}  # ob.BTC_USDT.50 -> BTC-USDT
        self.unlisted: list[str] = []
        for sym in config.symbols:
            if config.instruments and sym not in config.instruments:
                self.unlisted.append(sym)
                continue
            inst = config.instruments.get(sym)
            native = inst.native if inst is not None else self.to_native(sym)
            self.by_contract[native] = sym
            self.by_stream[self.stream(native)] = sym
            self.scale[sym] = Scale(self.contract_size(sym))
        self.native: dict[str, str] = {sym: nat for nat, sym in self.by_contract.items()}
        self._env = msgspec.json.Decoder(Envelope)
        self._status = msgspec.json.Decoder(Status)
        self._system = msgspec.json.Decoder(System)
        # strict=False: decimal strings decode straight into the float fields.
        self._ticker = msgspec.json.Decoder(BookTicker, strict=False)
        self._obu = msgspec.json.Decoder(ObuData, strict=False)
        self._obu_frame = msgspec.json.Decoder(ObuFrame, strict=False)
        self._trades = msgspec.json.Decoder(list[TradeData], strict=False)
        self._tickers = msgspec.json.Decoder(list[Ticker], strict=False)
        self.funding = FundingTracker(self.name)
        self._req_n = 0
        self._pending: dict[int, _Request] = {}
        self._failed: set[tuple[str, str]] = set()  # (symbol, what)
        self._unlisted_reported = False
        self.retry: RetryQueue[_Request] = RetryQueue()  # refused for a transient reason

    # -- symbols and instruments -----------------------------------------------------------------

    @classmethod
    def to_native(cls, symbol: str) -> str:
        return symbol.replace("-", "_")

    @classmethod
    def to_canonical(cls, native: str) -> str:
        return native.replace("_", "-")

    def stream(self, native: str) -> str:
        return f"ob.{native}.{self.l2_depth}"

    @classmethod
    def instruments_path(cls) -> str:
        return "/api/v4/futures/usdt/contracts"

    @classmethod
    def parse_instruments(cls, body: bytes) -> dict[str, Instrument]:
        out: dict[str, Instrument] = {}
        for c in msgspec.json.decode(body, type=list[Contract], strict=False):
            sym = cls.to_canonical(c.name)
            size = c.quanto_multiplier
            status = "delisting" if c.in_delisting else (c.status or "trading").lower()
            interval = c.funding_interval if c.funding_interval and c.funding_interval > 0 \
                else None
            anchor = ms_to_ns(round(c.funding_next_apply * 1000)) \
                if c.funding_next_apply and c.funding_next_apply > 0 else None
            out[sym] = Instrument(symbol=sym, native=c.name, contract_size=size,
                                  tick_size=c.order_price_round,
                                  lot_size=None if c.enable_decimal else size, status=status,
                                  funding_interval_s=interval, next_funding_ns=anchor)
        return out

    @classmethod
    def parse_server_time(cls, body: bytes) -> int:
        return msgspec.json.decode(body, type=ServerTime).server_time * MS_NS

    # -- lifecycle ----------------------------------------------------------------------------

    def connection_made(self, now_ns: int) -> list[Event]:
        super().connection_made(now_ns)
        if self.unlisted and not self._unlisted_reported:
            self._unlisted_reported = True
            return [self.health(HealthKind.SUBSCRIBE_ERROR,
                                f"{self.to_native(sym)} is not in the venue's contract list; "
                                "not subscribed", sym) for sym in self.unlisted]
        return []

    def subscribe(self, now_ns: int) -> list[str]:
        self._pending.clear()
        self.retry.clear()  # a new connection subscribes everything anyway
        frames: list[str] = []
        for what, channel in (("tob", BOOK_TICKER), ("l2", OBU), ("trades", TRADES),
                              ("funding", TICKERS)):
            if what not in self.config.channels:
                continue
            for sym in self.native:
                if (sym, what) in self._failed:
                    continue
                frames.append(self._request(now_ns, channel, "subscribe", sym, what))
        for sym in self.native:
            self._expect(sym, now_ns)
        return frames

    def connection_lost(self, now_ns: int) -> list[Event]:
        super().connection_lost(now_ns)  # books untrusted, ping schedule stopped
        self._pending.clear()
        return []

    def ping_frame(self, now_ns: int) -> str:
        return _encode({"time": now_ns // S_NS, "channel": PING})

    def resubscribe(self, due: list[_Request], now_ns: int) -> None:
        for req in due:
            self.send(self._request(now_ns, req.channel, "subscribe", req.symbol, req.what))
            keeper = {"tob": self.tob, "l2": self.l2}.get(req.what)
            if keeper is not None and keeper is self._deadline_keeper:
                keeper.expect_snapshot(req.symbol, now_ns)

    # -- frames -------------------------------------------------------------------------------

    def handle(self, payload: str | bytes, recv_ns: int) -> list[Event]:
        if type(payload) is str and OBU_MARK in payload[:96]:
            try:
                frame = self._obu_frame.decode(payload)
            except msgspec.MsgspecError:
                pass  # the two-step path below reports exactly what is wrong, and with which book
            else:
                if frame.channel == OBU and frame.event in ("update", "all"):
                    return self._on_obu_data(frame.result, frame.time_ms, recv_ns)
        env = self._env.decode(payload)
        event = env.event
        if event == "update" or event == "all":
            if env.channel == OBU:
                return self._on_obu(env, recv_ns)
            if env.channel == BOOK_TICKER:
                return self._on_ticker(env, recv_ns)
            if env.channel == TRADES:
                return self._on_trades(env, recv_ns)
            if env.channel == TICKERS:
                return self._on_tickers(env, recv_ns)
            if env.channel == SYSTEM:
                return self._on_system(env)
        if env.channel == PONG:
            return []
        if event in ("subscribe", "unsubscribe"):
            return self._on_reply(env)
        if env.channel == SYSTEM:
            return self._on_system(env)
        if env.error is not None:
            return [self.health(HealthKind.VENUE_ERROR,
                                f"{env.channel or '?'}: {_error_text(env)}")]
        return [self.health(HealthKind.VENUE_ERROR, f"unrecognised frame: {payload[:200]!r}")]

    def _on_obu(self, env: Envelope, recv_ns: int) -> list[Event]:
        try:
            data = self._obu.decode(env.result)
        except msgspec.ValidationError:
            self._announce(self.l2, self.by_stream, env.result)
            raise
        return self._on_obu_data(data, env.time_ms, recv_ns)

    def _on_obu_data(self, data: ObuData, time_ms: int | None, recv_ns: int) -> list[Event]:
        sym = self.by_stream.get(data.s)
        if sym is None:
            return [self.health(HealthKind.VENUE_ERROR, f"push for unsubscribed stream {data.s!r}")]
        self._frame_book = (self.l2, sym)  # (book_frame, inline: the hot path)
        t = data.t
        ts_exchange = t * MS_NS if t is not None else _exchange_time(t, time_ms)
        if data.full:
            scale = self.scale[sym]
            return self.l2.snapshot(sym, scale.levels(data.b), scale.levels(data.a),
                                    ts_local=recv_ns, ts_exchange=ts_exchange, seq=data.u)
        if data.U is None:
            if not self.l2.is_live(sym):
                return []
            return self.l2.invalidate(sym, HealthKind.GAP, f"delta without U (u={data.u})",
                                      recv_ns)
        # contracts become base units while the levels are applied
        return self.l2.delta(sym, data.b, data.a, ts_local=recv_ns, ts_exchange=ts_exchange,
                             seq=data.u, prev_seq=data.U - 1, scale=self.scale[sym].pair)

    def _on_ticker(self, env: Envelope, recv_ns: int) -> list[Event]:
        try:
            data = self._ticker.decode(env.result)
        except msgspec.ValidationError:
            self._announce(self.tob, self.by_contract, env.result)
            raise
        sym = self.by_contract.get(data.s)
        if sym is None:
            return [self.health(HealthKind.VENUE_ERROR, f"book_ticker for unsubscribed {data.s!r}")]
        self.book_frame(self.tob, sym)
        scale = self.scale[sym]
        bids = [(_price(data.b), scale(data.B))] if data.b else []
        asks = [(_price(data.a), scale(data.A))] if data.a else []
        return self.tob.snapshot(sym, bids, asks, ts_local=recv_ns,
                                 ts_exchange=_exchange_time(data.t, env.time_ms), seq=data.u)

    def _announce(self, keeper: BookKeeper, names: dict[str, str], result: msgspec.Raw) -> None:
        """A book push that does not decode: find its symbol, so that its book is resynced."""
        try:
            sym = names.get(_stream_name.decode(result).s)
        except msgspec.DecodeError:
            return
        if sym is not None:
            self.book_frame(keeper, sym)

    def _on_trades(self, env: Envelope, recv_ns: int) -> list[Event]:
        events: list[Event] = []
        for t in self._trades.decode(env.result):
            sym = self.by_contract.get(t.contract)
            if sym is None:
                events.append(self.health(HealthKind.VENUE_ERROR,
                                          f"trade for unsubscribed {t.contract!r}"))
                continue
            if t.is_internal:
                continue
            size = t.size
            if t.create_time_ms is not None:
                ts_exchange: int | None = t.create_time_ms * MS_NS
            else:
                ts_exchange = t.create_time * S_NS if t.create_time is not None else None
            events.append(Trade(
                exchange=self.name, ts_local=recv_ns, symbol=sym, ts_exchange=ts_exchange,
                price=t.price, size=self.scale[sym](abs(size)),
                side="sell" if size < 0 else "buy", trade_id=str(t.id)))
        return events

    def _on_tickers(self, env: Envelope, recv_ns: int) -> list[Event]:
        events: list[Event] = []
        ts_exchange = ms_to_ns(env.time_ms) if env.time_ms else None
        for t in self._tickers.decode(env.result):
            sym = self.by_contract.get(t.contract)
            if sym is None:
                events.append(self.health(HealthKind.VENUE_ERROR,
                                          f"ticker for unsubscribed {t.contract!r}"))
                continue
            inst = self.instrument(sym)
            interval = inst.funding_interval_s if inst is not None else None
            anchor = inst.next_funding_ns if inst is not None else None
            nxt = None
            if interval and anchor:
                nxt = next_on_grid(anchor, interval, ts_exchange or recv_ns)
            events += self.funding.update(
                sym, recv_ns, ts_exchange, funding_rate=t.funding_rate,
                funding_interval_s=interval, next_funding_time=nxt, mark_px=t.mark_price,
                index_px=t.index_price,
                open_interest=None if t.total_size is None else self.scale[sym](t.total_size))
        return events

    def _on_system(self, env: Envelope) -> list[Event]:
        info = self._system.decode(env.result) if _has(env.result) else System()
        if info.type == "upgrade":
            return [self.health(VENUE_UPGRADE,
                                f"server upgrade announced: {info.msg or 'reconnect soon'}")]
        return [self.health(HealthKind.VENUE_ERROR,
                            f"futures.system {info.type or '?'}: {info.msg}".rstrip(": "))]

    def _on_reply(self, env: Envelope) -> list[Event]:
        req = self._match(env)
        status = self._status.decode(env.result).status if _has(env.result) else ""
        ok = env.error is None and status == "success"
        if req is None:
            if ok:
                return []
            return [self.health(HealthKind.SUBSCRIBE_ERROR if env.event == "subscribe"
                                else HealthKind.VENUE_ERROR,
                                f"{env.channel} {env.event} rejected: {_error_text(env)}")]
        if ok:
            if req.event == "subscribe":
                self.retry.succeeded()
                return [self.health(HealthKind.SUBSCRIBED, f"{req.channel} {','.join(req.payload)}",
                                    req.symbol)]
            return []
        detail = f"{req.channel} {req.event} {','.join(req.payload)} rejected: {_error_text(env)}"
        if req.event != "subscribe":
            return [self.health(HealthKind.VENUE_ERROR, detail, req.symbol)]
        keeper = {"tob": self.tob, "l2": self.l2}.get(req.what)
        if keeper is not None and keeper is self._deadline_keeper:
            keeper.forget(req.symbol)
        if is_transient(env.error.message if env.error is not None else None):
            delay = self.retry.defer(req, self.now_ns)
            return [self.health(SUBSCRIBE_RETRY, f"{detail}; retrying in {delay:g} s",
                                req.symbol)]
        self._failed.add((req.symbol, req.what))
        return [self.health(HealthKind.SUBSCRIBE_ERROR, detail, req.symbol)]

    # -- helpers ------------------------------------------------------------------------------

    def _request(self, now_ns: int, channel: str, event: str, sym: str, what: str) -> str:
        native = self.native[sym]
        payload = [self.stream(native)] if channel == OBU else [native]
        self._req_n += 1
        self._pending[self._req_n] = _Request(channel, event, sym, what, payload)
        return _encode({"time": now_ns // S_NS, "id": self._req_n, "channel": channel,
                        "event": event, "payload": payload})

    def _match(self, env: Envelope) -> _Request | None:
        """The request this reply answers: by echoed id, else echoed payload, else the oldest."""
        if env.id is not None and env.id in self._pending:
            return self._pending.pop(env.id)
        for key, req in self._pending.items():
            if req.channel != env.channel or req.event != env.event:
                continue
            if env.payload is None or env.payload == req.payload:
                return self._pending.pop(key)
        return None

    def _expect(self, sym: str, now_ns: int) -> None:
        keeper = self._deadline_keeper
        if keeper is None:
            return
        what = "l2" if keeper is self.l2 else "tob"
        if (sym, what) not in self._failed:
            keeper.expect_snapshot(sym, now_ns)

    def resync(self, keeper: BookKeeper, symbols: list[str], now_ns: int) -> None:
        """Unsubscribe + subscribe one symbol's book_ticker or obu stream, alone."""
        what, channel = ("tob", BOOK_TICKER) if keeper is self.tob else ("l2", OBU)
        for sym in symbols:
            if (sym, what) in self._failed:
                continue
            self.send(self._request(now_ns, channel, "unsubscribe", sym, what))
            self.send(self._request(now_ns, channel, "subscribe", sym, what))
            if keeper is self._deadline_keeper:
                keeper.expect_snapshot(sym, now_ns)


_stream_name = msgspec.json.Decoder(StreamName)


def _price(text: str) -> float:
    """A decimal string to a checked price; anything else is a ``ValidationError``."""
    return msgspec.convert(text, Price, strict=False)


def _exchange_time(t: int | None, time_ms: int | None) -> int | None:
    """The push's engine time ``t``, else the envelope's ``time_ms`` (0 means none), in ns."""
    if t is not None:
        return t * MS_NS  # checked by its TsMs type
    return ms_to_ns(time_ms) if time_ms else None


def _has(raw: msgspec.Raw) -> bool:
    return bool(raw) and bytes(raw) != b"null"


def _error_text(env: Envelope) -> str:
    if env.error is None:
        return "no reason given"
    code = f"code {env.error.code}: " if env.error.code is not None else ""
    return f"{code}{env.error.message or 'no message'}"


# -- REST snapshot + futures.order_book_update bridging ------------------------------------------


_REST_BOOK = msgspec.json.Decoder(RestOrderBook, strict=False)
_BOOK_UPDATE = msgspec.json.Decoder(OrderBookUpdate, strict=False)


class BridgeStatus:
    """What :meth:`OrderBookBridge.update` / :meth:`OrderBookBridge.load_snapshot` did."""

    BUFFERED: Final = "buffered"  # no snapshot yet: kept for replay
    STALE: Final = "stale"  # u < id + 1: already in the snapshot, dropped
    BRIDGED: Final = "bridged"  # the first delta applied: U <= id + 1 <= u
    APPLIED: Final = "applied"  # U == previous u + 1
    BREAK: Final = "break"  # the chain broke: a new snapshot is needed
    WAITING: Final = "waiting"  # snapshot loaded, no delta reaches it yet


class OrderBookBridge:
    """Gate's documented local-book procedure for one contract, as a pure state machine.

    1. Buffer ``futures.order_book_update`` deltas (:meth:`update`) until a REST snapshot
       ``order_book?with_id=true`` is loaded (:meth:`load_snapshot`), then replay the buffer.
    2. Drop deltas with ``u < id + 1``; the first applied delta must satisfy ``U <= id + 1 <= u``.
       A dropped delta ending exactly at ``id`` already proves the alignment: the book is live at
       ``id`` and the next delta must start at ``id + 1`` (a stricter form of the same rule).
    3. Afterwards every delta must have ``U == previous u + 1`` (empty deltas included).

    A delta that does not fit is a ``break``: the book is cleared, counted, and deltas are buffered
    again until the next snapshot. Sizes are converted to base units with ``contract_size``.
    """

    def __init__(self, contract_size: float = 1.0, max_buffer: int = 10_000) -> None:
        self.scale = Scale(contract_size)
        self.book = OrderBook()
        self.buffer: deque[OrderBookUpdate] = deque(maxlen=max_buffer)
        self.snapshot_id: int | None = None
        self.last_u: int | None = None
        self.live = False
        self.syncs = 0  # times the book became live
        self.stale = 0
        self.applied = 0
        self.breaks = 0
        self.crossed = 0

    @staticmethod
    def decode_snapshot(body: bytes | str) -> RestOrderBook:
        """The REST ``order_book?with_id=true`` body."""
        return _REST_BOOK.decode(body)

    @staticmethod
    def decode_update(result: bytes | str | msgspec.Raw) -> OrderBookUpdate:
        """The ``result`` of one ``futures.order_book_update`` push."""
        return _BOOK_UPDATE.decode(result)

    def load_snapshot(self, snapshot: RestOrderBook | bytes | str) -> str:
        """Take the REST book and replay the buffered deltas: ``bridged`` (the book is live),
        ``waiting`` (no delta reaches the snapshot yet) or ``break``."""
        snap = snapshot if isinstance(snapshot, RestOrderBook) else self.decode_snapshot(snapshot)
        self.book.replace(self.scale.rest_levels(snap.bids), self.scale.rest_levels(snap.asks))
        self.snapshot_id = snap.id
        self.last_u = None
        self.live = False
        pending = list(self.buffer)
        self.buffer.clear()
        for upd in pending:
            if self.update(upd) == BridgeStatus.BREAK:
                return BridgeStatus.BREAK
        return BridgeStatus.BRIDGED if self.live else BridgeStatus.WAITING

    def update(self, upd: OrderBookUpdate) -> str:
        """Feed one delta (in arrival order)."""
        if self.snapshot_id is None:
            self.buffer.append(upd)
            return BridgeStatus.BUFFERED
        if not self.live:
            first = self.snapshot_id + 1
            if upd.u < first:
                self.stale += 1
                if upd.u == self.snapshot_id:
                    # The stream ends exactly at the snapshot: the next delta must start at id + 1.
                    self.live = True
                    self.syncs += 1
                    self.last_u = upd.u
                return BridgeStatus.STALE
            if not upd.U <= first <= upd.u:
                return self._break()
            self._apply(upd)
            self.live = True
            self.syncs += 1
            return BridgeStatus.BRIDGED
        start = upd.U
        if self.last_u is None or start != self.last_u + 1:
            return self._break()
        self._apply(upd)
        return BridgeStatus.APPLIED

    def bids(self, n: int) -> list[Level]:
        return self.book.top_bids(n)

    def asks(self, n: int) -> list[Level]:
        return self.book.top_asks(n)

    def _apply(self, upd: OrderBookUpdate) -> None:
        self.book.apply(self.scale.rest_levels(upd.b), self.scale.rest_levels(upd.a))
        self.last_u = upd.u
        self.applied += 1
        if self.book.is_crossed():
            self.crossed += 1

    def _break(self) -> str:
        self.breaks += 1
        self.live = False
        self.snapshot_id = None
        self.last_u = None
        self.book.clear()
        return BridgeStatus.BREAK

