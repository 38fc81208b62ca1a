"""Sans-IO protocol for HTX (Huobi) USDT-margined perpetual swaps (``linear-swap-ws``).

Channels and topics (one ``sub`` frame per topic, contract code ``BTC-USDT``):

* ``l2`` from the book topic chosen by option ``l2_source``:

  - ``size_20`` (default) / ``size_150``: ``market.$code.depth.size_N.high_freq`` with
    ``"data_type": "incremental"``. The first frame is ``tick.event == "snapshot"``, then
    ``update`` frames; an update applies only when ``version == last + 1`` (expressed to the
    BookKeeper as ``prev_seq = version - 1``). Empty updates still advance ``version``.
  - ``step0``: ``market.$code.depth.step0``, a full 150-level book in every push, so every push
    is published as a snapshot. It has no update counter (``version`` is the push second); the
    event ``seq`` is ``mrid``, the last match id.

* ``tob`` from option ``tob_source``: ``book`` (default) takes the best bid/ask of the book topic
  above (the same subscription serves ``l2`` and ``tob``); ``bbo`` subscribes
  ``market.$code.bbo`` instead (the venue documents it as not strictly real time).
* ``trades`` from ``market.$code.trade.detail``; ``direction`` is the taker side.
* ``funding``: polled over REST, because HTX streams funding only on its separate notification
  endpoint and mark/index prices only as candles on its index endpoint, each a socket with its
  own dialect, and open interest not at all. Every ``funding_poll_s`` seconds (option: 1, 2,
  5, 10, 30 or 60; default 5) one round asks, per symbol,
  ``/linear-swap-api/v1/swap_funding_rate`` (``funding_rate`` for the funding at
  ``funding_time``; the interval is ``next_funding_time - funding_time`` where
  both are given), ``/linear-swap-api/v1/swap_open_interest`` (``volume`` contracts x contract
  size), ``/linear-swap-api/v1/swap_index`` and the latest 1-minute candle of
  ``/linear-swap-ex/market/history/mark_price_kline`` (its ``close`` is the mark price); once
  the four answers of a symbol are in, a row if a value changed (``ts_exchange``: the latest
  answer's ``ts``). Rounds never overlap and at most :data:`POLL_IN_FLIGHT` calls are out at
  once (:class:`core.rest_poll.RestPoller`); an answer that failed leaves its values as they
  were. Clock offsets are measured against ``/api/v1/timestamp``.

Sizes arrive in contracts and leave in base units (contracts x ``contract_size`` of the
instrument). ``ts_exchange`` is the tick's ``ts`` (ms). A broken version chain, a crossed book or a
snapshot that does not arrive (a suspended contract is acked and then silent) makes that symbol's
book invalid and resubscribes its book topic alone (``unsub`` + ``sub``).

A refused ``sub`` is a ``subscribe_error`` row and the topic is left alone, unless the reason is
transient ("too many requests", a rate limit): then it is a ``subscribe_retry`` row and the ``sub``
is sent again after a backoff (:class:`core.subscriptions.RetryQueue`).

Heartbeat: the server sends ``{"ping": n}`` about every 5 s and closes the socket after about four
unanswered pings; the protocol queues ``{"pong": n}`` with the same number. Every server frame is a
gzip member, inflated by the base class before :meth:`HtxProtocol.handle`.

Pure: no trio, no sockets, no clock reads.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar, Final

import msgspec

from core.book import BookKeeper
from core.codec import MS_NS
from core.funding import FundingTracker
from core.options import OptionSpec
from core.protocol import ExchangeProtocol, Instrument, ProtocolConfig, RestResponse
from core.rest_poll import RestPoller
from core.rest_poll import parse_key as parse_poll_key
from core.schema import Event, HealthKind, Level, Trade
from core.subscriptions import SUBSCRIBE_RETRY, RetryQueue, is_transient
from plugins.htx.messages import (
    BboTick,
    Candle,
    ContractInfoReply,
    DepthTick,
    Envelope,
    FundingRateData,
    IndexData,
    OpenInterestData,
    RestReply,
    ServerTime,
    TradeTick,
    WireLevel,
)

L2_SOURCES: Final = {
    "size_20": "depth.size_20.high_freq",
    "size_150": "depth.size_150.high_freq",
    "step0": "depth.step0",
}
DEFAULT_L2_SOURCE: Final = "size_20"
TOB_SOURCES: Final = ("book", "bbo")
DEFAULT_TOB_SOURCE: Final = "book"
INCREMENTAL: Final = "incremental"
#: health event for a configured symbol without instrument metadata (sizes left in contracts)
NO_INSTRUMENT: Final = HealthKind.NO_INSTRUMENT
# contract_status of swap_contract_info
CONTRACT_STATUS: Final = {
    0: "delisting", 1: "trading", 2: "pending", 3: "suspended", 4: "suspended",
    5: "settling", 6: "delivering", 7: "settled", 8: "delivered",
}

DEFAULT_FUNDING_POLL_S: Final = "5"
FUNDING_POLL_CHOICES: Final = ("1", "2", "5", "10", "30", "60")
#: REST calls of a polling round out at once (one more slot is left for clock samples)
POLL_IN_FLIGHT: Final = 3
#: the REST calls of one symbol in a polling round: name -> path (``{code}``: contract code)
POLL_CALLS: Final = {
    "funding_rate": "/linear-swap-api/v1/swap_funding_rate?contract_code={code}",
    "open_interest": "/linear-swap-api/v1/swap_open_interest?contract_code={code}",
    "index": "/linear-swap-api/v1/swap_index?contract_code={code}",
    "mark": "/linear-swap-ex/market/history/mark_price_kline?contract_code={code}"
            "&period=1min&size=1",
}
#: polling rounds whose answers are still collected (older ones are forgotten)
KEEP_ROUNDS: Final = 3
#: distinct poll failures reported per connection
MAX_POLL_ERRORS: Final = 100

_encode = msgspec.json.Encoder().encode
_envelope = msgspec.json.Decoder(Envelope)
_depth = msgspec.json.Decoder(DepthTick)
_bbo = msgspec.json.Decoder(BboTick)
_trades = msgspec.json.Decoder(TradeTick)
_contracts = msgspec.json.Decoder(ContractInfoReply)
_rest_reply = msgspec.json.Decoder(RestReply)
_funding_rate = msgspec.json.Decoder(FundingRateData, strict=False)
_open_interest = msgspec.json.Decoder(list[OpenInterestData], strict=False)
_index = msgspec.json.Decoder(list[IndexData], strict=False)
_candles = msgspec.json.Decoder(list[Candle], strict=False)


@dataclass(frozen=True, slots=True)
class Topic:
    """One subscription: its wire name, what it feeds and for which canonical symbol."""

    name: str
    kind: str  # "book", "bbo" or "trades"
    symbol: str
    incremental: bool = False


@dataclass(frozen=True, slots=True)
class SizeScale:
    """Contracts -> base units. A contract size of ``1/n`` divides by ``n``, so that 229 contracts
    of 0.001 BTC read 0.229 exactly rather than 0.22900000000000001."""

    factor: float = 1.0
    divide: bool = False

    @classmethod
    def of(cls, contract_size: float) -> SizeScale:
        if 0.0 < contract_size < 1.0:
            inverse = 1.0 / contract_size
            n = round(inverse)
            if abs(inverse - n) <= 1e-9 * n:
                return cls(float(n), True)
        return cls(contract_size, False)

    def size(self, contracts: float) -> float:
        return contracts / self.factor if self.divide else contracts * self.factor

    def levels(self, levels: Sequence[WireLevel] | None) -> list[Level]:
        if not levels:
            return []
        f = self.factor
        if self.divide:
            return [(p, s / f) for p, s in levels]
        if f == 1.0:
            return list(levels)
        return [(p, s * f) for p, s in levels]


class HtxProtocol(ExchangeProtocol):
    name = "htx"
    channels = frozenset({"tob", "l2", "trades", "funding"})
    default_url = "wss://api.hbdm.com/linear-swap-ws"
    default_rest_url = "https://api.hbdm.com"
    compression = "gzip"
    # The server pings every ~5 s; 20 s without any frame is four missed pings: the socket is dead.
    silence_timeout_s = 20.0
    # HTX allows 40 subscriptions per second; keep a margin (pongs count too).
    max_sends_per_s = 35.0
    requires_instruments = True
    description = ("HTX USDT-margined swaps (depth.size_20/150.high_freq or step0, bbo, "
                   "trade.detail; funding polled over REST; contracts x contract_size)")
    server_time_path = "/api/v1/timestamp"
    max_rest_in_flight = POLL_IN_FLIGHT + 1

    options: ClassVar[Mapping[str, OptionSpec]] = {
        "l2_source": OptionSpec(default=DEFAULT_L2_SOURCE, choices=tuple(L2_SOURCES),
                                help="the book topic of the l2 (and book-based tob) channel"),
        "tob_source": OptionSpec(default=DEFAULT_TOB_SOURCE, choices=TOB_SOURCES,
                                 help="the source of the tob channel: the book topic or bbo"),
        "funding_poll_s": OptionSpec(default=DEFAULT_FUNDING_POLL_S, choices=FUNDING_POLL_CHOICES,
                                     help="seconds between two REST polling rounds of the "
                                          "funding channel"),
    }

    def __init__(self, config: ProtocolConfig) -> None:
        super().__init__(config)
        self.l2_source = self.option("l2_source")
        self.tob_source = self.option("tob_source")
        want_tob = "tob" in config.channels
        book_tob = want_tob and self.tob_source == "book"
        self.book = BookKeeper(self.name, publish_tob=book_tob,
                               publish_l2="l2" in config.channels)
        self.bbo = BookKeeper(self.name, publish_tob=True, publish_l2=False)
        self.keepers = [self.book, self.bbo]
        self.topics: dict[str, Topic] = {}
        self.topics_of: dict[str, list[Topic]] = {}
        self.scale: dict[str, SizeScale] = {}
        for sym in config.symbols:
            self.topics_of[sym] = self._topics_for(sym, book_tob, want_tob)
            self.topics.update((t.name, t) for t in self.topics_of[sym])
            self.scale[sym] = SizeScale.of(self.contract_size(sym))
        self._req_n = 0
        self._pending: dict[str, tuple[str, Topic]] = {}  # request id -> (op, topic)
        self._acked: set[str] = set()
        self._failed: set[str] = set()  # topics the venue rejected; never requested again
        self.retry: RetryQueue[Topic] = RetryQueue()  # topics refused for a transient reason
        self._reported_instruments = False
        self.funding = FundingTracker(self.name)
        self.poller: RestPoller | None = None
        if "funding" in config.channels:
            self.poller = RestPoller(float(self.option("funding_poll_s")), POLL_IN_FLIGHT)
        #: (round, symbol) -> the answers of that round so far and the values they gave
        self._answers: dict[tuple[int, str], tuple[set[str], dict[str, float | int | None],
                                                   int | None]] = {}
        self._poll_errors: set[str] = set()  # (call, reason) already reported this connection

    def _topics_for(self, sym: str, book_tob: bool, want_tob: bool) -> list[Topic]:
        code = self.to_native(sym)
        out: list[Topic] = []
        if "l2" in self.config.channels or book_tob:
            source = L2_SOURCES[self.l2_source]
            out.append(Topic(f"market.{code}.{source}", "book", sym,
                             incremental=self.l2_source != "step0"))
        if want_tob and self.tob_source == "bbo":
            out.append(Topic(f"market.{code}.bbo", "bbo", sym))
        if "trades" in self.config.channels:
            out.append(Topic(f"market.{code}.trade.detail", "trades", sym))
        return out

    # -- symbols and instruments -----------------------------------------------------------------

    @classmethod
    def to_native(cls, symbol: str) -> str:
        return symbol.upper()

    @classmethod
    def to_canonical(cls, native: str) -> str:
        return native.upper()

    @classmethod
    def instruments_path(cls) -> str:
        return "/linear-swap-api/v1/swap_contract_info"

    @classmethod
    def parse_instruments(cls, body: bytes) -> dict[str, Instrument]:
        reply = _contracts.decode(body)
        if reply.status != "ok":
            raise ValueError(f"swap_contract_info: {reply.err_code}: {reply.err_msg}")
        out: dict[str, Instrument] = {}
        for c in reply.data:
            if c.business_type not in (None, "swap") or c.contract_code.count("-") != 1:
                continue  # dated futures share the endpoint under other business types
            sym = cls.to_canonical(c.contract_code)
            out[sym] = Instrument(
                symbol=sym, native=c.contract_code, contract_size=c.contract_size,
                tick_size=c.price_tick, lot_size=c.contract_size,
                status=CONTRACT_STATUS.get(c.contract_status, f"status_{c.contract_status}"))
        return out

    @classmethod
    def parse_server_time(cls, body: bytes) -> int:
        reply = msgspec.json.decode(body, type=ServerTime)
        if reply.status != "ok":
            raise ValueError(f"timestamp: status {reply.status!r}")
        return reply.ts * MS_NS

    # -- lifecycle ----------------------------------------------------------------------------

    def connection_made(self, now_ns: int) -> list[Event]:
        events = super().connection_made(now_ns)
        if self.poller is not None:
            self.poller.start(now_ns)
        self._answers.clear()
        self._poll_errors.clear()
        if not self._reported_instruments:
            self._reported_instruments = True
            events.extend(
                self.health(NO_INSTRUMENT, "no contract_size known; sizes are contracts x 1.0",
                            sym)
                for sym in self.config.symbols if self.instrument(sym) is None)
        return events

    def subscribe(self, now_ns: int) -> list[str]:
        self._pending.clear()
        self._acked.clear()
        self.retry.clear()  # a new connection subscribes everything anyway
        self.book.connection_lost()  # versions are per connection: nothing carries over
        self.bbo.connection_lost()
        frames: list[str] = []
        for sym in self.config.symbols:
            for topic in self.topics_of[sym]:
                if topic.name in self._failed:
                    continue
                frames.append(self._request("sub", topic))
                keeper = self._keeper(topic)
                if keeper is not None:
                    keeper.expect_snapshot(sym, now_ns)
        return frames

    def connection_lost(self, now_ns: int) -> list[Event]:
        super().connection_lost(now_ns)  # books untrusted until the next snapshots
        self._pending.clear()
        if self.poller is not None:
            self.poller.stop()
        return []

    def next_deadline(self) -> int | None:
        due = super().next_deadline()
        other = self.poller.next_ns if self.poller is not None else None
        return other if due is None else due if other is None else min(due, other)

    def on_deadline(self, now_ns: int) -> list[Event]:
        events = super().on_deadline(now_ns)  # overdue snapshots
        poller = self.poller
        if poller is not None and poller.next_ns is not None and now_ns >= poller.next_ns:
            calls = [(f"{name}:{sym}", path.format(code=self.to_native(sym)))
                     for sym in self.config.symbols for name, path in POLL_CALLS.items()]
            for key, path in poller.begin(now_ns, calls):
                self.request_rest(key, path)
        return events

    def resubscribe(self, due: list[Topic], now_ns: int) -> None:
        for topic in due:
            self.send(self._request("sub", topic))
            keeper = self._keeper(topic)
            if keeper is not None:
                keeper.expect_snapshot(topic.symbol, now_ns)

    # -- frames -------------------------------------------------------------------------------

    def handle(self, payload: str | bytes, recv_ns: int) -> list[Event]:
        env = _envelope.decode(payload)
        if env.ping is not None:
            self.send(_encode({"pong": env.ping}).decode(), urgent=True)
            return []
        if env.ch is not None:
            return self._on_push(env, recv_ns)
        if env.status is not None:
            return self._on_reply(env, recv_ns)
        return [self.health(HealthKind.VENUE_ERROR, f"unrecognised frame: {payload[:200]!r}")]

    def _on_push(self, env: Envelope, recv_ns: int) -> list[Event]:
        topic = self.topics.get(env.ch or "")
        if topic is None:
            return [self.health(HealthKind.VENUE_ERROR, f"unexpected channel {env.ch!r}")]
        if not env.tick:
            raise msgspec.ValidationError(f"push on {env.ch} without a tick")
        if topic.kind == "trades":
            return self._on_trades(topic.symbol, env.tick, recv_ns)
        if topic.kind == "bbo":
            return self._on_bbo(topic.symbol, env.tick, recv_ns)
        return self._on_depth(topic, env.tick, recv_ns)

    def _on_depth(self, topic: Topic, raw: msgspec.Raw, recv_ns: int) -> list[Event]:
        sym = topic.symbol
        self.book_frame(self.book, sym)
        tick = _depth.decode(raw)
        scale = self.scale[sym]
        bids = scale.levels(tick.bids)
        asks = scale.levels(tick.asks)
        ts_exchange = tick.ts * MS_NS
        if not topic.incremental:  # step0: the whole book in every push
            return self.book.snapshot(sym, bids, asks, ts_local=recv_ns, ts_exchange=ts_exchange,
                                      seq=tick.mrid)
        if tick.event == "update":
            return self.book.delta(sym, bids, asks, ts_local=recv_ns, ts_exchange=ts_exchange,
                                   seq=tick.version, prev_seq=tick.version - 1)
        if tick.event is None or tick.event == "snapshot":
            return self.book.snapshot(sym, bids, asks, ts_local=recv_ns, ts_exchange=ts_exchange,
                                      seq=tick.version)
        raise msgspec.ValidationError(f"unknown depth event {tick.event!r} on {topic.name}")

    def _on_bbo(self, sym: str, raw: msgspec.Raw, recv_ns: int) -> list[Event]:
        self.book_frame(self.bbo, sym)
        tick = _bbo.decode(raw)
        scale = self.scale[sym]
        bids = scale.levels([tick.bid] if tick.bid is not None and tick.bid[1] > 0 else None)
        asks = scale.levels([tick.ask] if tick.ask is not None and tick.ask[1] > 0 else None)
        return self.bbo.snapshot(sym, bids, asks, ts_local=recv_ns, ts_exchange=tick.ts * MS_NS,
                                 seq=tick.version)

    def _on_trades(self, sym: str, raw: msgspec.Raw, recv_ns: int) -> list[Event]:
        tick = _trades.decode(raw)
        scale = self.scale[sym]
        return [
            Trade(exchange=self.name, ts_local=recv_ns, symbol=sym, ts_exchange=t.ts * MS_NS,
                  price=t.price, size=scale.size(t.amount), side=_taker_side(t.direction),
                  trade_id=str(t.id))
            for t in tick.data
        ]

    def _on_reply(self, env: Envelope, recv_ns: int) -> list[Event]:
        op, topic = self._pending.pop(str(env.id), ("", None)) if env.id is not None else ("", None)
        if env.status == "ok":
            if env.subbed is not None:
                return self._on_subbed(self.topics.get(env.subbed) or topic, recv_ns)
            return []  # unsub acknowledged
        reason = f"{env.err_code or env.status}: {env.err_msg or 'no reason given'}"
        if topic is None:
            topic = self.topics.get(_topic_in(env.err_msg))
            op = op or "sub"
        if topic is None or op != "sub":
            what = f"{op} {topic.name}" if topic is not None else "request"
            return [self.health(HealthKind.VENUE_ERROR, f"{what} rejected: {reason}",
                                topic.symbol if topic is not None else None)]
        keeper = self._keeper(topic)
        if keeper is not None:
            keeper.forget(topic.symbol)
        if is_transient(reason):
            delay = self.retry.defer(topic, recv_ns)
            return [self.health(SUBSCRIBE_RETRY, f"{topic.name} rejected: {reason}; retrying in "
                                f"{delay:g} s", topic.symbol)]
        self._failed.add(topic.name)
        return [self.health(HealthKind.SUBSCRIBE_ERROR, f"{topic.name} rejected: {reason}",
                            topic.symbol)]

    def _on_subbed(self, topic: Topic | None, recv_ns: int) -> list[Event]:
        if topic is None:
            return []
        self.retry.succeeded()
        keeper = self._keeper(topic)
        if keeper is not None and not keeper.is_live(topic.symbol):
            # The snapshot follows the ack: time its deadline from here, not from a paced send.
            keeper.expect_snapshot(topic.symbol, recv_ns)
        if topic.name in self._acked:
            return []
        self._acked.add(topic.name)
        return [self.health(HealthKind.SUBSCRIBED, topic.name, topic.symbol)]

    # -- the funding channel's REST polling -----------------------------------------------------

    def handle_rest(self, response: RestResponse) -> list[Event]:
        parsed = parse_poll_key(response.key)
        if parsed is None:
            return []
        round_no, name = parsed
        if self.poller is not None:
            for key, path in self.poller.answered(response.key, response.recv_ns):
                self.request_rest(key, path)
        call, _, sym = name.partition(":")
        if call not in POLL_CALLS or sym not in self.scale:
            return []
        seen, values, ts = self._answers.setdefault((round_no, sym), (set(), {}, None))
        if call in seen:
            return []
        seen.add(call)
        events: list[Event] = []
        try:
            ts = self._poll_answer(call, sym, response, values, ts, events)
        except (msgspec.MsgspecError, ValueError) as exc:  # a bad body: its values are dropped
            events.append(self.decode_error(type(exc).__name__, response.body, exc,
                                            response.recv_ns))
        self._answers[(round_no, sym)] = (seen, values, ts)
        if len(seen) == len(POLL_CALLS):  # the symbol's round is complete
            del self._answers[(round_no, sym)]
            for stale in [k for k in self._answers if k[0] <= round_no - KEEP_ROUNDS]:
                del self._answers[stale]
            if values:
                events += self.funding.update(sym, response.recv_ns, ts, **values)
        return events

    def _poll_answer(self, call: str, sym: str, response: RestResponse,
                     values: dict[str, float | int | None], ts: int | None,
                     events: list[Event]) -> int | None:
        """Put what one answer says into ``values``; returns the latest answer time."""
        if response.error is not None and not response.body.startswith(b"{"):
            events += self._poll_error(call, sym, response.error)
            return ts
        reply = _rest_reply.decode(response.body)
        if reply.status != "ok":
            events += self._poll_error(call, sym, f"{reply.err_code}: "
                                                  f"{reply.err_msg or reply.status}")
            return ts
        data = bytes(reply.data)
        if call == "funding_rate":
            fr = _funding_rate.decode(data)
            values["funding_rate"] = fr.funding_rate
            values["next_funding_time"] = \
                fr.funding_time * MS_NS if fr.funding_time is not None else None
            if fr.funding_time is not None and fr.next_funding_time is not None and \
                    fr.next_funding_time > fr.funding_time:
                values["funding_interval_s"] = (fr.next_funding_time - fr.funding_time) // 1000
            else:
                values["funding_interval_s"] = None
        elif call == "open_interest":
            code = self.to_native(sym)
            rows = [r for r in _open_interest.decode(data) if r.contract_code == code]
            if rows:
                values["open_interest"] = self.scale[sym].size(rows[0].volume)
        elif call == "index":
            code = self.to_native(sym)
            rows_i = [r for r in _index.decode(data) if r.contract_code == code]
            if rows_i:
                values["index_px"] = rows_i[0].index_price
        else:
            candles = _candles.decode(data)
            if candles:
                values["mark_px"] = max(candles, key=lambda c: c.id).close
        if reply.ts is not None:
            t = reply.ts * MS_NS
            return t if ts is None or t > ts else ts
        return ts

    def _poll_error(self, call: str, sym: str, reason: str) -> list[Event]:
        """A failed poll is a ``venue_error`` row once per call and reason per connection (the
        next round asks again; the values stay as they were)."""
        key = f"{call}:{sym}:{reason}"
        if key in self._poll_errors or len(self._poll_errors) >= MAX_POLL_ERRORS:
            return []
        self._poll_errors.add(key)
        return [self.health(HealthKind.VENUE_ERROR,
                            f"funding poll {call} failed: {reason}"[:500], sym)]

    # -- helpers ------------------------------------------------------------------------------

    def _keeper(self, topic: Topic) -> BookKeeper | None:
        if topic.kind == "book":
            return self.book
        if topic.kind == "bbo":
            return self.bbo
        return None

    def _request(self, op: str, topic: Topic) -> str:
        self._req_n += 1
        req_id = str(self._req_n)
        self._pending[req_id] = (op, topic)
        frame: dict[str, str] = {op: topic.name}
        if topic.incremental:
            frame["data_type"] = INCREMENTAL
        frame["id"] = req_id
        return _encode(frame).decode()

    def resync(self, keeper: BookKeeper, symbols: list[str], now_ns: int) -> None:
        """``unsub`` + ``sub`` of each symbol's book (or bbo) topic, alone."""
        kind = "book" if keeper is self.book else "bbo"
        for sym in symbols:
            topic = next((t for t in self.topics_of.get(sym, ()) if t.kind == kind), None)
            if topic is None or topic.name in self._failed:
                continue
            self.send(self._request("unsub", topic))
            self.send(self._request("sub", topic))
            keeper.expect_snapshot(sym, now_ns)


def _taker_side(direction: str) -> str:
    side = direction.lower()
    if side not in ("buy", "sell"):
        raise ValueError(f"trade direction {direction!r} is neither buy nor sell")
    return side


def _topic_in(err_msg: str | None) -> str:
    """``invalid topic market.X-USDT.bbo`` -> ``market.X-USDT.bbo`` (``""`` when none)."""
    if not err_msg:
        return ""
    return next((w for w in err_msg.split() if w.startswith("market.")), "")
