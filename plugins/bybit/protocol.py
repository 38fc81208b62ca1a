"""Sans-IO protocol for Bybit v5 public linear (USDT perpetual) streams.

Channels: ``tob`` from ``orderbook.1`` (10 ms pushes), ``l2`` from ``orderbook.{depth}`` (option
``l2_depth``: 50, 200 or 1000; default 50), ``trades`` from ``publicTrade``, ``funding`` from
``tickers``.

Funding (``tickers.{symbol}``): the first push of a subscription is a ``snapshot`` with every
field, then ``delta`` pushes carry only the fields that changed; each delta is merged into the
last full state before a row is written (:class:`core.funding.FundingTracker`), and a delta that
arrives before the connection's snapshot is dropped. ``fundingRate``, ``nextFundingTime``,
``markPrice``, ``indexPrice`` and ``openInterest`` (base coin on linear contracts) are used; the
interval is ``fundingIntervalHour`` where the push has it, else the instrument's
``fundingInterval``. ``ts_exchange`` is the push time ``ts``. Clock offsets are measured against
``/v5/market/time`` (``timeNano``).

Book rule: a ``snapshot`` (or any message with ``u == 1``, Bybit's service-restart snapshot)
replaces the book; a ``delta`` applies only when its ``u`` is the book's ``u + 1``. A break marks
that symbol's book invalid and resubscribes that symbol's book topic alone. ``ts_exchange`` is the
matching-engine time ``cts`` where the frame has it, else the push time ``ts``.

Heartbeat: ``{"op":"ping"}`` every 20 s; the pong is an op reply. Subscriptions go one request
per symbol, tagged with a ``req_id``, so that an error (``success: false``, e.g. an unknown symbol)
is attributed to the symbol it concerns. A refusal for a transient reason ("too many visits",
a rate limit) is a ``subscribe_retry`` row and the request is sent again after a backoff
(:class:`core.subscriptions.RetryQueue`); any other refusal is a ``subscribe_error`` row and the
symbol is left alone for the rest of the run.

Pure: no trio, no sockets, no clock reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import msgspec

from core.book import BookKeeper
from core.codec import MS_NS
from core.funding import FundingTracker
from core.options import OptionSpec
from core.protocol import ExchangeProtocol, Instrument, ProtocolConfig
from core.schema import Event, HealthKind, Trade
from core.subscriptions import SUBSCRIBE_RETRY, RetryQueue, is_transient
from core.symbols import split_concatenated
from plugins.bybit.messages import (
    BookData,
    BookFrame,
    Envelope,
    InstrumentsReply,
    ServerTimeReply,
    TickerData,
    TradeData,
)

PING_INTERVAL_S = 20.0
L2_DEPTHS = ("50", "200", "1000")
TAKER_SIDES = {"Buy": "buy", "Sell": "sell"}

_encoder = msgspec.json.Encoder()


def _encode(obj: object) -> str:
    """JSON text: venues expect text websocket frames, never binary ones."""
    return _encoder.encode(obj).decode()


class BybitProtocol(ExchangeProtocol):
    name = "bybit"
    channels = frozenset({"tob", "l2", "trades", "funding"})
    default_url = "wss://stream.bybit.com/v5/public/linear"
    default_rest_url = "https://api.bybit.com"
    silence_timeout_s = 45.0  # pings every 20 s are always answered on a live socket
    description = "Bybit v5 public linear perpetuals (orderbook.1/50/200, publicTrade, tickers)"
    server_time_path = "/v5/market/time"
    #: client app-level ping period (Bybit asks for one every 20 s)
    ping_interval_s = PING_INTERVAL_S
    options: ClassVar[Mapping[str, OptionSpec]] = {
        "l2_depth": OptionSpec(default="50", choices=L2_DEPTHS,
                               help="levels of the l2 channel's orderbook.N topic"),
    }

    def __init__(self, config: ProtocolConfig) -> None:
        super().__init__(config)
        depth = self.option("l2_depth")
        self.l2_depth = depth
        self.tob = BookKeeper(self.name, publish_tob=True, publish_l2=False)
        self.l2 = BookKeeper(self.name, publish_tob=False, publish_l2=True)
        self.keepers = [self.tob, self.l2]
        # topic -> (what, canonical symbol)
        self.topics: dict[str, tuple[str, str]] = {}
        self.topics_of: dict[str, list[str]] = {}
        for sym in config.symbols:
            native = self.to_native(sym)
            wanted: list[str] = []
            if "tob" in config.channels:
                wanted.append(f"orderbook.1.{native}")
                self.topics[wanted[-1]] = ("tob", sym)
            if "l2" in config.channels:
                wanted.append(f"orderbook.{depth}.{native}")
                self.topics[wanted[-1]] = ("l2", sym)
            if "trades" in config.channels:
                wanted.append(f"publicTrade.{native}")
                self.topics[wanted[-1]] = ("trades", sym)
            if "funding" in config.channels:
                wanted.append(f"tickers.{native}")
                self.topics[wanted[-1]] = ("funding", sym)
            self.topics_of[sym] = wanted
        self._env = msgspec.json.Decoder(Envelope)
        self._book = msgspec.json.Decoder(BookData, strict=False)
        self._book_frame = msgspec.json.Decoder(BookFrame, strict=False)
        self._trades = msgspec.json.Decoder(list[TradeData], strict=False)
        self._ticker = msgspec.json.Decoder(TickerData, strict=False)
        self.funding = FundingTracker(self.name)
        self._ticker_full: set[str] = set()  # symbols whose ticker snapshot came on this conn
        self._req_n = 0
        self._pending: dict[str, str] = {}  # req_id -> symbol
        self._failed: set[str] = set()
        self.retry: RetryQueue[str] = RetryQueue()  # symbols refused for a transient reason

    # -- symbols and instruments -----------------------------------------------------------------

    @classmethod
    def to_canonical(cls, native: str) -> str:
        return split_concatenated(native)

    @classmethod
    def instruments_path(cls) -> str:
        return "/v5/market/instruments-info?category=linear&limit=1000"

    @classmethod
    def parse_instruments(cls, body: bytes) -> dict[str, Instrument]:
        doc = msgspec.json.decode(body, type=InstrumentsReply)
        out: dict[str, Instrument] = {}
        for item in doc.result.items:
            sym = f"{item.baseCoin}-{item.quoteCoin}"
            if item.contractType != "LinearPerpetual":
                continue
            out[sym] = Instrument(
                symbol=sym, native=item.symbol, contract_size=1.0,
                tick_size=float(item.priceFilter.tickSize),
                lot_size=float(item.lotSizeFilter.qtyStep),
                status=item.status.lower(),
                funding_interval_s=item.fundingInterval * 60 if item.fundingInterval else None)
        return out

    @classmethod
    def parse_server_time(cls, body: bytes) -> int:
        return msgspec.json.decode(body, type=ServerTimeReply, strict=False).result.timeNano

    # -- lifecycle ----------------------------------------------------------------------------

    def subscribe(self, now_ns: int) -> list[str]:
        self._pending.clear()
        self._ticker_full.clear()  # deltas wait for this connection's snapshots
        self.retry.clear()  # a new connection subscribes everything anyway
        frames = []
        for sym in self.config.symbols:
            if sym in self._failed:
                continue
            frames.append(self._request("subscribe", sym, self.topics_of[sym]))
            self._expect(sym, now_ns)
        return frames

    def ping_frame(self, now_ns: int) -> str:
        self._req_n += 1
        return _encode({"req_id": f"ping-{self._req_n}", "op": "ping"})

    def resubscribe(self, due: list[str], now_ns: int) -> None:
        for sym in due:
            self.send(self._request("subscribe", sym, self.topics_of[sym]))
            self._expect(sym, now_ns)

    # -- frames -------------------------------------------------------------------------------

    def handle(self, payload: str | bytes, recv_ns: int) -> list[Event]:
        if type(payload) is str and "orderbook." in payload[:48]:
            try:
                frame = self._book_frame.decode(payload)
            except msgspec.MsgspecError:
                pass  # the two-step path below reports exactly what is wrong, and with which book
            else:
                route = self.topics.get(frame.topic)
                if route is not None:
                    what, sym = route
                    data = frame.data
                    u = data.u
                    ts_ms = frame.cts if frame.cts is not None else frame.ts
                    keeper = self.l2 if what == "l2" else self.tob
                    if frame.type == "delta" and u != 1:
                        return keeper.delta(sym, data.b, data.a, ts_local=recv_ns,
                                            ts_exchange=ts_ms * MS_NS if ts_ms else None,
                                            seq=u, prev_seq=u - 1)
                    return self._apply(keeper, sym, frame.type, data, ts_ms, recv_ns)
        env = self._env.decode(payload)
        if env.topic is not None:
            route = self.topics.get(env.topic)
            if route is None or not env.data:
                return [self.health(HealthKind.VENUE_ERROR, f"unexpected topic {env.topic!r}")]
            what, sym = route
            if what == "trades":
                return self._on_trades(sym, env, recv_ns)
            if what == "funding":
                return self._on_ticker(sym, env, recv_ns)
            return self._on_book(self.tob if what == "tob" else self.l2, sym, env, recv_ns)
        if env.op is not None:
            return self._on_op(env)
        return [self.health(HealthKind.VENUE_ERROR, f"unrecognised frame: {payload[:200]!r}")]

    def _on_book(self, keeper: BookKeeper, sym: str, env: Envelope, recv_ns: int) -> list[Event]:
        self.book_frame(keeper, sym)
        data = self._book.decode(env.data)
        return self._apply(keeper, sym, env.type, data,
                           env.cts if env.cts is not None else env.ts, recv_ns)

    def _apply(self, keeper: BookKeeper, sym: str, kind: str | None, data: BookData,
               ts_ms: int | None, recv_ns: int) -> list[Event]:
        ts_exchange = ts_ms * MS_NS if ts_ms is not None else None
        u = data.u
        if kind == "snapshot" or u == 1:
            return keeper.snapshot(sym, data.b, data.a, ts_local=recv_ns,
                                   ts_exchange=ts_exchange, seq=u)
        return keeper.delta(sym, data.b, data.a, ts_local=recv_ns, ts_exchange=ts_exchange,
                            seq=u, prev_seq=u - 1)

    def _on_trades(self, sym: str, env: Envelope, recv_ns: int) -> list[Event]:
        return [
            Trade(exchange=self.name, ts_local=recv_ns, symbol=sym, ts_exchange=t.T * MS_NS,
                  price=t.p, size=t.v, side=_taker_side(t.S), trade_id=t.i)
            for t in self._trades.decode(env.data)
        ]

    def _on_ticker(self, sym: str, env: Envelope, recv_ns: int) -> list[Event]:
        """A ``tickers`` push: a snapshot sets every field (absent ones are none), a delta only
        the fields it carries; then a row if a value changed."""
        t = self._ticker.decode(env.data)
        if env.type == "snapshot":
            self._ticker_full.add(sym)
        elif sym not in self._ticker_full:
            return []  # nothing to merge a delta into yet
        fields: dict[str, float | int | None] = {}
        full = env.type == "snapshot"
        for name, value in (("mark_px", t.markPrice), ("index_px", t.indexPrice),
                            ("funding_rate", t.fundingRate), ("open_interest", t.openInterest)):
            if value is not msgspec.UNSET:
                fields[name] = value
            elif full:
                fields[name] = None
        if t.nextFundingTime is not msgspec.UNSET:
            fields["next_funding_time"] = t.nextFundingTime * MS_NS
        elif full:
            fields["next_funding_time"] = None
        if t.fundingIntervalHour is not msgspec.UNSET:
            fields["funding_interval_s"] = t.fundingIntervalHour * 3600
        elif full:
            inst = self.instrument(sym)
            fields["funding_interval_s"] = inst.funding_interval_s if inst is not None else None
        return self.funding.update(sym, recv_ns, env.ts * MS_NS if env.ts else None, **fields)

    def _on_op(self, env: Envelope) -> list[Event]:
        if env.op in ("ping", "pong"):
            return []
        sym = self._pending.pop(env.req_id or "", None)
        if env.op == "unsubscribe":
            return []
        if env.success:
            if env.op == "subscribe" and sym is not None:
                self.retry.succeeded()
                return [self.health(HealthKind.SUBSCRIBED, ",".join(self.topics_of[sym]), sym)]
            return []
        detail = f"{env.op} rejected: {env.ret_msg or 'no reason given'}"
        if sym is not None and env.op == "subscribe" and is_transient(env.ret_msg):
            delay = self.retry.defer(sym, self.now_ns)
            for keeper in (self.tob, self.l2):
                keeper.forget(sym)
            return [self.health(SUBSCRIBE_RETRY, f"{detail}; retrying in {delay:g} s", sym)]
        if sym is not None:
            self._failed.add(sym)
            for keeper in (self.tob, self.l2):
                keeper.forget(sym)
        return [self.health(HealthKind.SUBSCRIBE_ERROR, detail, sym)]

    # -- helpers ------------------------------------------------------------------------------

    def _request(self, op: str, sym: str, topics: list[str]) -> str:
        self._req_n += 1
        req_id = f"{op[:5]}-{self._req_n}"
        self._pending[req_id] = sym
        return _encode({"req_id": req_id, "op": op, "args": topics})

    def _expect(self, sym: str, now_ns: int) -> None:
        if "tob" in self.config.channels:
            self.tob.expect_snapshot(sym, now_ns)
        if "l2" in self.config.channels:
            self.l2.expect_snapshot(sym, now_ns)

    def resync(self, keeper: BookKeeper, symbols: list[str], now_ns: int) -> None:
        """Unsubscribe + subscribe the book topic of each symbol, alone."""
        depth = "1" if keeper is self.tob else self.l2_depth
        for sym in symbols:
            if sym in self._failed:
                continue
            topic = [f"orderbook.{depth}.{self.to_native(sym)}"]
            self.send(self._request("unsubscribe", sym, topic))
            self.send(self._request("subscribe", sym, topic))
            keeper.expect_snapshot(sym, now_ns)


def _taker_side(side: str) -> str:
    taker = TAKER_SIDES.get(side)
    if taker is None:
        raise ValueError(f"trade side {side!r} is neither Buy nor Sell")
    return taker
