"""Sans-IO protocol for OKX v5 public perpetual swaps (USDT- and USDC-margined, linear).

Channels: ``tob`` from ``bbo-tbt`` (the best level, pushed on every change), ``l2`` from
``books`` (a 400-level snapshot, then updates every 100 ms), ``trades`` from ``trades`` (``side``
is the taker's side), ``funding`` from four channels merged into one state per symbol:
``funding-rate`` (``fundingRate`` for the funding at ``fundingTime``; the interval is
``nextFundingTime - fundingTime``), ``mark-price`` (``markPx``), ``open-interest`` (``oi``
contracts, converted to base units) and ``index-tickers`` of the index ``BTC-USDT``
(``idxPx``); a row whenever one of the values changed, ``ts_exchange`` the push's ``ts``.
Symbols: canonical ``BTC-USDT`` is the swap ``BTC-USDT-SWAP``. Clock offsets are measured
against ``/api/v5/public/time``.

Sizes: swap sizes are contracts; they leave in base units, times the instrument's ``ctVal``
(``/api/v5/public/instruments?instType=SWAP``, required). A fractional ``ctVal`` such as 0.01 is
applied as a division by 100, which lands on the nearest float to the decimal result.

Book rule (``books``): a ``snapshot`` (``prevSeqId`` -1) replaces the book; an ``update``
applies only when its ``prevSeqId`` is the book's last ``seqId``. An update with ``seqId ==
prevSeqId`` and no levels is the venue's keep-alive of a quiet book: valid, nothing to write.
After maintenance the venue may reset the sequence: an update whose ``seqId`` is smaller than its
``prevSeqId`` (which still equals the last ``seqId``) is accepted, and the book continues from
the new ``seqId``. Checksum: the book after each frame must hash to the frame's ``checksum``
(CRC32 of the top 25 levels of each side interleaved, wire text, signed 32-bit; see
:mod:`plugins.okx.checksum`), verified on every frame by default (option ``checksum``: ``on``
or ``off``). A ``checksum`` of 0 is not checked: since 2026-06-23 the venue sends 0 in every
``books`` frame (the field is deprecated), and then the ``seqId`` chain alone guards the book.
A break, a mismatch or a crossed book invalidates that symbol's book alone and resubscribes its
``books`` argument (unsubscribe + subscribe), which brings a new snapshot.

Top of book: every ``bbo-tbt`` push is a whole one-level book (a keeper snapshot), ``seq`` =
``seqId``. A quiet instrument pushes nothing, so the top-of-book keeper has no snapshot deadline
(the instruments list proves the symbol exists).

Heartbeat: the text ``ping`` every 20 s (the venue drops connections idle for 30 s) and the text
``pong`` is accepted. Binary frames are raw-deflate compressed (``compression``). Requests are
batched (at most 4096 bytes each) and paced at 3 per second; the venue allows 480 subscribe and
unsubscribe requests per connection per hour, and a resync costs two. Acknowledgements name their
argument; an error names it only in its message, from which the instrument is read when it can
be. A ``notice`` (code 64008: the venue will close the connection for an upgrade) becomes a
``venue_upgrade`` health row.

Refusals for load: every request carries an ``id``, which the venue echoes in its replies, and
the plugin keeps the requests of the connection whose arguments are not all answered yet. An
error ``60014`` ("Requests too frequent") refuses a whole request and names no argument: its
``id`` says which request it was (an error without ``id`` is taken for the oldest request of
which nothing was answered yet, as the venue answers in order). Each of its arguments is a
``subscribe_retry`` row (one per symbol) and the request is sent again after a backoff
(:class:`core.subscriptions.RetryQueue`: 1 s, doubling per refusal, at most 60 s); an argument
refused ``MAX_TRANSIENT_REFUSALS`` times in a row becomes a ``subscribe_error`` and is not asked
again. An acknowledgement resets its argument's count and the backoff. A refused
``unsubscribe`` is a ``venue_error`` row.

Pure: no trio, no sockets, no clock reads.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import ClassVar, Final

import msgspec

from core import checksums
from core.book import BookKeeper, OrderBook
from core.codec import (
    INF,
    MAX_TS_NS,
    MIN_TS_NS,
    MS_NS,
    BadValue,
    check_price,
    check_size,
    levels_from_text,
    ms_to_ns,
)
from core.funding import FundingTracker
from core.options import OptionSpec
from core.protocol import ExchangeProtocol, Instrument, ProtocolConfig
from core.schema import Event, HealthKind, Level, Trade
from core.subscriptions import SUBSCRIBE_RETRY, RetryQueue, is_transient
from plugins.okx.checksum import DEPTH
from plugins.okx.messages import (
    BboData,
    BookData,
    BooksFrame,
    Envelope,
    FundingRateData,
    IndexTickerData,
    InstrumentsReply,
    MarkPriceData,
    OpenInterestData,
    ServerTimeReply,
    TradeData,
)

PING_INTERVAL_S: Final = 20.0
MAX_REQUEST_BYTES: Final = 4096
WIRE_CHANNEL: Final = {"tob": "bbo-tbt", "l2": "books", "trades": "trades"}
#: the OKX channels of the funding channel; ``index-tickers`` takes the index id (``BTC-USDT``)
FUNDING_CHANNELS: Final = ("funding-rate", "mark-price", "open-interest", "index-tickers")
INDEX_CHANNEL: Final = "index-tickers"
#: error codes that say the argument itself is wrong (does not exist): not asked again
PERMANENT_ERROR_CODES: Final = frozenset({"60018"})
#: "Requests too frequent": the whole request is refused for load, naming no argument
TRANSIENT_ERROR_CODES: Final = frozenset({"60014"})
#: transient refusals of an argument in a row after which it is not asked again
MAX_TRANSIENT_REFUSALS: Final = 8
#: requests waiting for answers, at most (the oldest is forgotten beyond)
MAX_IN_FLIGHT: Final = 256
#: room for a request's ``"id"`` (the venue takes at most 32 characters)
ID_ROOM: Final = len(b'"id":"",') + 32
REQUEST_PREFIX: Final = {"subscribe": "sub", "unsubscribe": "unsub"}
#: notice code: the venue will close the connection soon for a service upgrade
UPGRADE_NOTICE: Final = "64008"
VENUE_UPGRADE: Final = "venue_upgrade"
CHECKSUM_OPTIONS: Final = ("on", "off")
_INST_IN_MESSAGE = re.compile(r"instId:([A-Za-z0-9._-]+)")

_encode = msgspec.json.Encoder().encode

#: an OKX argument of a symbol: (OKX channel, canonical symbol)
Key = tuple[str, str]


@dataclass(slots=True)
class _Request:
    """A request sent on this connection, and which of its arguments still await an answer."""

    req_id: str
    op: str
    keys: tuple[Key, ...]
    waiting: set[Key]


class Scale:
    """Contract counts to base units: times ``ctVal``, or divided by its inverse when that is
    a whole number (0.01 -> / 100), so that ``"415"`` contracts of 0.01 give exactly 4.15."""

    __slots__ = ("div", "mul")

    def __init__(self, contract_size: float) -> None:
        self.mul, self.div = contract_size, 1.0
        if 0 < contract_size < 1:
            inverse = round(1 / contract_size)
            if abs(inverse * contract_size - 1) < 1e-12:
                self.mul, self.div = 1.0, float(inverse)

    def __call__(self, contracts: float) -> float:
        return check_size(contracts * self.mul / self.div)

    def convert(self, bids: list[list[str]], asks: list[list[str]]
                ) -> tuple[list[Level], list[Level]]:
        """Both sides' ``[price, size, ...]`` wire rows to checked levels in base units, in one
        pass: the same levels as :meth:`levels` of :func:`levels_from_text`, which reports
        exactly what is wrong when a row does not convert."""
        mul, div = self.mul, self.div
        try:
            b = [(float(r[0]), float(r[1]) * mul / div) for r in bids]
            a = [(float(r[0]), float(r[1]) * mul / div) for r in asks]
        except (ValueError, TypeError, IndexError):
            pass
        else:
            for p, s in b:
                if not (0.0 < p < INF and 0.0 <= s < INF):
                    break
            else:
                for p, s in a:
                    if not (0.0 < p < INF and 0.0 <= s < INF):
                        break
                else:
                    return b, a
        return self.levels(levels_from_text(bids)), self.levels(levels_from_text(asks))

    def levels(self, levels: Sequence[Level]) -> list[Level]:
        mul, div = self.mul, self.div
        out = [(p, s * mul / div) for p, s in levels]
        if mul > 1.0:  # a contract size above 1 may take a huge count past the largest float
            for _, s in out:
                if s == INF:
                    raise BadValue("a size overflows once converted to base units")
        return out


class OkxProtocol(ExchangeProtocol):
    name = "okx"
    channels = frozenset({"tob", "l2", "trades", "funding"})
    default_url = "wss://ws.okx.com:8443/ws/v5/public"
    default_rest_url = "https://www.okx.com"
    compression = "deflate"
    silence_timeout_s = 45.0  # a ping every 20 s is always answered on a live socket
    ping_interval_s = PING_INTERVAL_S
    max_sends_per_s = 3.0
    requires_instruments = True  # swap sizes are contracts
    description = ("OKX v5 perpetual swaps (bbo-tbt, books with seqId chain and checksum, trades, "
                   "funding-rate/mark-price/open-interest/index-tickers)")
    server_time_path = "/api/v5/public/time"
    options: ClassVar[Mapping[str, OptionSpec]] = {
        "checksum": OptionSpec(default="on", choices=CHECKSUM_OPTIONS,
                               help="verify the books checksum of every frame that carries one"),
    }

    def __init__(self, config: ProtocolConfig) -> None:
        super().__init__(config)
        self.verify = self.option("checksum") == "on"
        self.tob = BookKeeper(self.name, publish_tob=True, publish_l2=False)
        self.l2 = BookKeeper(self.name, publish_tob=False, publish_l2=True, keep_text=True)
        self.keepers = [self.tob, self.l2]
        self.by_inst: dict[str, str] = {}
        self.inst: dict[str, str] = {}
        self.scale: dict[str, Scale] = {}
        for sym in config.symbols:
            inst = config.instruments.get(sym)
            native = inst.native if inst is not None else self.to_native(sym)
            self.by_inst[native] = sym
            self.inst[sym] = native
            self.scale[sym] = Scale(self.contract_size(sym))
        self.wanted = [(WIRE_CHANNEL[ch], sym) for sym in config.symbols
                       for ch in ("tob", "l2", "trades") if ch in config.channels]
        if "funding" in config.channels:
            self.wanted += [(ch, sym) for sym in config.symbols for ch in FUNDING_CHANNELS]
        self.by_index = {sym: sym for sym in config.symbols}  # index id -> symbol
        self.funding = FundingTracker(self.name)
        self._funding_rate = msgspec.json.Decoder(list[FundingRateData], strict=False)
        self._mark = msgspec.json.Decoder(list[MarkPriceData], strict=False)
        self._open_interest = msgspec.json.Decoder(list[OpenInterestData], strict=False)
        self._index = msgspec.json.Decoder(list[IndexTickerData], strict=False)
        self._env = msgspec.json.Decoder(Envelope)
        self._books = msgspec.json.Decoder(list[BookData])
        self._books_frame = msgspec.json.Decoder(BooksFrame)
        self._expected = 0  # the checksum the entry being applied carries
        self._check = self._check_expected
        self._bbo = msgspec.json.Decoder(list[BboData])
        self._trades = msgspec.json.Decoder(list[TradeData])
        self._failed: set[Key] = set()
        self._req_n = 0
        #: requests of this connection still waiting for answers, by ``id``
        self._in_flight: dict[str, _Request] = {}
        #: requests refused for load, sent again when their delay is over
        self.retry: RetryQueue[tuple[Key, ...]] = RetryQueue()
        self._refusals: dict[Key, int] = {}  # transient refusals in a row, per argument
        #: checksums skipped because the venue sent 0 (the field is deprecated)
        self.unchecked = 0

    # -- symbols and instruments -----------------------------------------------------------------

    @classmethod
    def to_native(cls, symbol: str) -> str:
        return f"{symbol}-SWAP"

    @classmethod
    def to_canonical(cls, native: str) -> str:
        return native.removesuffix("-SWAP")

    @classmethod
    def instruments_path(cls) -> str:
        return "/api/v5/public/instruments?instType=SWAP"

    @classmethod
    def parse_instruments(cls, body: bytes) -> dict[str, Instrument]:
        """Linear swaps only (USDT- and USDC-margined; coin-margined swaps quote contracts in
        USD). ``contract_size`` = ``ctVal`` (in ``ctValCcy``, the base coin), ``tick_size`` =
        ``tickSz``, ``lot_size`` = ``lotSz`` contracts in base units; ``status`` is ``trading``
        for ``live``, else OKX's state."""
        doc = msgspec.json.decode(body, type=InstrumentsReply)
        if doc.code != "0" or doc.data is None:
            raise ValueError(f"okx instruments: code {doc.code}: {doc.msg}")
        out: dict[str, Instrument] = {}
        for item in doc.data:
            family = item.instFamily or item.uly
            if item.ctType != "linear" or not family or family.split("-")[0] != item.ctValCcy:
                continue
            try:
                size = float(Decimal(item.ctVal))
                tick = float(Decimal(item.tickSz))
                lot = float(Decimal(item.lotSz) * Decimal(item.ctVal))
            except InvalidOperation as exc:
                raise ValueError(f"okx instruments: bad numbers for {item.instId}") from exc
            if not size > 0:
                raise ValueError(f"okx instruments: ctVal {item.ctVal!r} of {item.instId}")
            status = "trading" if item.state == "live" else item.state
            out[family] = Instrument(symbol=family, native=item.instId, contract_size=size,
                                     tick_size=tick, lot_size=lot, status=status)
        return out

    @classmethod
    def parse_server_time(cls, body: bytes) -> int:
        reply = msgspec.json.decode(body, type=ServerTimeReply, strict=False)
        if reply.code != "0" or not reply.data:
            raise ValueError(f"okx time: code {reply.code}")
        return reply.data[0].ts * MS_NS

    # -- lifecycle ----------------------------------------------------------------------------

    def subscribe(self, now_ns: int) -> list[str]:
        self._in_flight.clear()
        self.retry.clear()  # a new connection subscribes everything anyway
        return self._subscribe([key for key in self.wanted if key not in self._failed], now_ns)

    def ping_frame(self, now_ns: int) -> str:
        return "ping"  # text, not JSON

    def resubscribe(self, due: list[tuple[Key, ...]], now_ns: int) -> None:
        for keys in due:
            for frame in self._subscribe([k for k in keys if k not in self._failed], now_ns):
                self.send(frame)

    def resync(self, keeper: BookKeeper, symbols: list[str], now_ns: int) -> None:
        """l2: unsubscribe + subscribe the ``books`` argument of each symbol (batched), which
        brings a new snapshot. tob: nothing to ask, every ``bbo-tbt`` push is a whole book."""
        if keeper is not self.l2:
            return
        keys: list[Key] = []
        for sym in symbols:
            if ("books", sym) in self._failed or "l2" not in self.config.channels:
                continue
            keys.append(("books", sym))
            keeper.expect_snapshot(sym, now_ns)
        for op in ("unsubscribe", "subscribe"):
            for frame in self._requests(op, keys):
                self.send(frame)

    # -- frames -------------------------------------------------------------------------------

    def handle(self, payload: str | bytes, recv_ns: int) -> list[Event]:
        if payload == "pong" or payload == b"pong":
            return []
        if '"books"' in payload[:64] if type(payload) is str else b'"books"' in payload[:64]:
            fast = self._book_push(payload, recv_ns)
            if fast is not None:
                return fast
        env = self._env.decode(payload)
        if env.event is not None:
            return self._on_event(env)
        arg = env.arg
        if arg is None or not env.data:
            raise msgspec.ValidationError("frame has neither `event` nor `arg` and `data`")
        sym = self._symbol_of(arg.channel, arg.instId)
        if sym is None:
            return [self.health(HealthKind.VENUE_ERROR,
                                f"unexpected push {arg.channel!r} for {arg.instId!r}")]
        if arg.channel in FUNDING_CHANNELS:
            return self._on_funding(sym, arg.channel, env, recv_ns)
        if arg.channel == "books":
            self.book_frame(self.l2, sym)
            if env.action not in ("snapshot", "update"):
                raise msgspec.ValidationError(f"books push with action {env.action!r}")
            return self._on_books(sym, env.action, self._books.decode(env.data), recv_ns)
        if arg.channel == "bbo-tbt":
            self.book_frame(self.tob, sym)
            return self._on_bbo(sym, env, recv_ns)
        if arg.channel == "trades":
            return self._on_trades(sym, env, recv_ns)
        return [self.health(HealthKind.VENUE_ERROR, f"unexpected channel {arg.channel!r}")]

    def _book_push(self, payload: str | bytes, recv_ns: int) -> list[Event] | None:
        """A ``books`` push decoded in one step (the common case), or None for the two-step
        path, which reports exactly what is wrong, and with which book."""
        try:
            frame = self._books_frame.decode(payload)
        except msgspec.MsgspecError:
            return None
        arg = frame.arg
        sym = self.by_inst.get(arg.instId) if arg.channel == "books" else None
        if sym is None or frame.action not in ("snapshot", "update"):
            return None
        self.book_frame(self.l2, sym)
        data = frame.data
        if len(data) != 1 or frame.action != "update":
            return self._on_books(sym, frame.action, data, recv_ns)
        # one update entry (the stream's common case): _on_books, inline
        d = data[0]
        convert = self.scale[sym].convert
        bids, asks = convert(d.bids, d.asks)
        try:  # (_ms, inline)
            ts_exchange = int(d.ts) * MS_NS
        except ValueError:
            ts_exchange = 0
        if not MIN_TS_NS <= ts_exchange <= MAX_TS_NS:
            ts_exchange = _ms(d.ts)
        expected = d.checksum
        if expected and self.verify:  # (_checksum, inline)
            self._expected = expected
            check: Callable[[OrderBook], bool] | None = self._check
        else:
            check = self._checksum(expected)
        if d.prevSeqId is None or d.seqId is None:
            raise msgspec.ValidationError("books update without seqId/prevSeqId")
        return self.l2.delta(sym, bids, asks, ts_local=recv_ns, ts_exchange=ts_exchange,
                             seq=d.seqId, prev_seq=d.prevSeqId, bid_text=d.bids,
                             ask_text=d.asks, checksum=check)

    def _on_books(self, sym: str, action: str, entries: list[BookData],
                  recv_ns: int) -> list[Event]:
        if not entries:
            raise msgspec.ValidationError("books push with empty `data`")
        convert = self.scale[sym].convert
        # convert every entry before applying any: a malformed frame leaves the book untouched
        converted = [(d, *convert(d.bids, d.asks), _ms(d.ts)) for d in entries]
        events: list[Event] = []
        for d, bids, asks, ts_exchange in converted:
            # the book keeps the first two fields of each row (price and size) as wire text
            check = self._checksum(d.checksum)
            if action == "snapshot":
                events += self.l2.snapshot(sym, bids, asks, ts_local=recv_ns,
                                           ts_exchange=ts_exchange, seq=d.seqId,
                                           bid_text=d.bids, ask_text=d.asks, checksum=check)
            else:
                if d.prevSeqId is None or d.seqId is None:
                    raise msgspec.ValidationError("books update without seqId/prevSeqId")
                events += self.l2.delta(sym, bids, asks, ts_local=recv_ns,
                                        ts_exchange=ts_exchange, seq=d.seqId,
                                        prev_seq=d.prevSeqId, bid_text=d.bids,
                                        ask_text=d.asks, checksum=check)
        return events

    def _on_bbo(self, sym: str, env: Envelope, recv_ns: int) -> list[Event]:
        scale = self.scale[sym]
        converted = [(d, scale.levels(levels_from_text(d.bids[:1])),
                      scale.levels(levels_from_text(d.asks[:1])), _ms(d.ts))
                     for d in self._bbo.decode(env.data)]
        events: list[Event] = []
        for d, bids, asks, ts_exchange in converted:
            events += self.tob.snapshot(sym, bids, asks, ts_local=recv_ns,
                                        ts_exchange=ts_exchange, seq=d.seqId)
        return events

    def _on_trades(self, sym: str, env: Envelope, recv_ns: int) -> list[Event]:
        scale = self.scale[sym]
        rows: list[Event] = []
        for t in self._trades.decode(env.data):
            side = t.side.lower()
            if side not in ("buy", "sell"):
                raise msgspec.ValidationError(f"trade side {t.side!r}")
            try:
                price = check_price(float(t.px))
                size = check_size(scale(float(t.sz)))
            except ValueError as exc:
                raise BadValue(f"bad trade {t.tradeId!r}: {exc}") from exc
            rows.append(Trade(exchange=self.name, ts_local=recv_ns, symbol=sym,
                              ts_exchange=_ms(t.ts), price=price, size=size, side=side,
                              trade_id=t.tradeId))
        return rows

    def _on_funding(self, sym: str, channel: str, env: Envelope, recv_ns: int) -> list[Event]:
        """One of the four funding channels: its values merged into the symbol's state."""
        events: list[Event] = []
        if channel == "funding-rate":
            for f in self._funding_rate.decode(env.data):
                interval = None
                if f.nextFundingTime and f.nextFundingTime > f.fundingTime:
                    interval = (f.nextFundingTime - f.fundingTime) // 1000
                events += self.funding.update(sym, recv_ns, _ms_or_none(f.ts),
                                              funding_rate=f.fundingRate,
                                              next_funding_time=f.fundingTime * MS_NS,
                                              funding_interval_s=interval)
        elif channel == "mark-price":
            for m in self._mark.decode(env.data):
                events += self.funding.update(sym, recv_ns, _ms_or_none(m.ts), mark_px=m.markPx)
        elif channel == "open-interest":
            for o in self._open_interest.decode(env.data):
                events += self.funding.update(sym, recv_ns, _ms_or_none(o.ts),
                                              open_interest=self.scale[sym](o.oi))
        else:
            for i in self._index.decode(env.data):
                events += self.funding.update(sym, recv_ns, _ms_or_none(i.ts), index_px=i.idxPx)
        return events

    def _symbol_of(self, channel: str, inst_id: str) -> str | None:
        return (self.by_index if channel == INDEX_CHANNEL else self.by_inst).get(inst_id)

    def _on_event(self, env: Envelope) -> list[Event]:
        arg = env.arg
        sym = self._symbol_of(arg.channel, arg.instId) if arg is not None else None
        key = (arg.channel, sym) if arg is not None and sym is not None else None
        if env.event == "subscribe":
            self._answered(env.id, key, "subscribe")
            if key is not None:
                self.retry.succeeded()
                self._refusals.pop(key, None)
                return [self.health(HealthKind.SUBSCRIBED, key[0], key[1])]
            return []
        if env.event == "unsubscribe":
            self._answered(env.id, key, "unsubscribe")
            return []
        if env.event == "error":
            return self._on_error(env)
        if env.event == "notice":
            kind = VENUE_UPGRADE if env.code == UPGRADE_NOTICE else HealthKind.VENUE_ERROR
            return [self.health(kind, f"notice {env.code}: {env.msg or ''}".rstrip(": "))]
        return [self.health(HealthKind.VENUE_ERROR, f"unknown event {env.event!r}: {env.msg}")]

    def _on_error(self, env: Envelope) -> list[Event]:
        """Errors do not echo their argument; its instrument is read from the message, and the
        request is known by its ``id``. A refusal for load is retried (see the module doc)."""
        code = env.code or ""
        detail = f"error {code}: {env.msg or 'no reason given'}"
        found = _INST_IN_MESSAGE.search(env.msg or "")
        sym = self.by_inst.get(found.group(1)) if found else None
        if found and sym is None and INDEX_CHANNEL in (env.msg or ""):
            sym = self.by_index.get(found.group(1))  # index-tickers takes the index id
        keys = [(channel, sym) for channel, owner in self.wanted
                if sym is not None and owner == sym and channel in (env.msg or "")]
        if code not in PERMANENT_ERROR_CODES and \
                is_transient(env.msg, code, TRANSIENT_ERROR_CODES):
            request = self._refused(env.id)
            if request is not None and request.op == "subscribe":
                return self._refused_for_load(request.keys, detail)
            if request is not None:
                return [self.health(HealthKind.VENUE_ERROR, f"{request.op} refused: {detail}")]
            return [self.health(HealthKind.SUBSCRIBE_ERROR, detail, sym)]
        for key in keys:
            self._answered(env.id, key, None)
            if code in PERMANENT_ERROR_CODES:
                self._drop(key)
        return [self.health(HealthKind.SUBSCRIBE_ERROR, detail, sym)]

    def _refused_for_load(self, keys: tuple[Key, ...], detail: str) -> list[Event]:
        """A subscribe request refused for load: sent again later, or given up on."""
        retried: list[Key] = []
        given_up: list[Key] = []
        for key in keys:
            if key in self._failed:
                continue
            refusals = self._refusals.get(key, 0) + 1
            if refusals >= MAX_TRANSIENT_REFUSALS:
                self._drop(key)
                given_up.append(key)
            else:
                self._refusals[key] = refusals
                retried.append(key)
                if key[0] == "books":
                    self.l2.forget(key[1])
        events: list[Event] = []
        if retried:
            delay = self.retry.defer(tuple(retried), self.now_ns)
            for sym, channels in _by_symbol(retried).items():
                events.append(self.health(SUBSCRIBE_RETRY, f"{channels}: {detail}; retrying in "
                                          f"{delay:g} s", sym))
        for sym, channels in _by_symbol(given_up).items():
            events.append(self.health(HealthKind.SUBSCRIBE_ERROR, f"{channels}: {detail}; "
                                      f"refused {MAX_TRANSIENT_REFUSALS} times in a row, not "
                                      "asked again", sym))
        return events

    def _drop(self, key: Key) -> None:
        """Never ask for ``key`` again."""
        self._failed.add(key)
        self._refusals.pop(key, None)
        if key[0] == "books":
            self.l2.forget(key[1])

    def _answered(self, req_id: str | None, key: Key | None, op: str | None) -> None:
        """``key`` was answered (acknowledged, or refused on its own): in the request whose ``id``
        the reply echoes, else in the oldest request (of ``op``) still waiting for it, as the
        venue answers in order. A request with every argument answered is done."""
        if key is None:
            return
        request = self._in_flight.get(req_id) if req_id else None
        if request is None and not req_id:
            request = next((r for r in self._in_flight.values()
                            if key in r.waiting and op in (None, r.op)), None)
        if request is not None:
            request.waiting.discard(key)
            if not request.waiting:
                del self._in_flight[request.req_id]

    def _refused(self, req_id: str | None) -> _Request | None:
        """The request a refusal of a whole request is about: the one whose ``id`` it echoes,
        else the oldest request with nothing answered yet."""
        if req_id:
            return self._in_flight.pop(req_id, None)
        for request in self._in_flight.values():
            if len(request.waiting) == len(request.keys):
                return self._in_flight.pop(request.req_id)
        return None

    # -- helpers ------------------------------------------------------------------------------

    def _checksum(self, expected: int) -> Callable[[OrderBook], bool] | None:
        if not self.verify:
            return None
        if expected == 0:
            self.unchecked += 1
            return None
        self._expected = expected  # (a bound method, not a closure per frame)
        return self._check

    def _check_expected(self, book: OrderBook) -> bool:
        # (plugins.okx.checksum.book_checksum, one call shorter)
        return checksums.book_checksum(book, DEPTH) == self._expected

    def _arg(self, channel: str, sym: str) -> dict[str, str]:
        return {"channel": channel, "instId": sym if channel == INDEX_CHANNEL else self.inst[sym]}

    def _subscribe(self, keys: Sequence[Key], now_ns: int) -> list[str]:
        """Subscribe requests for ``keys``; each ``books`` argument waits for its snapshot."""
        for channel, sym in keys:
            if channel == "books":
                self.l2.expect_snapshot(sym, now_ns)
        return self._requests("subscribe", keys)

    def _requests(self, op: str, keys: Sequence[Key]) -> list[str]:
        """``op`` requests carrying ``keys``, as few as fit in ``MAX_REQUEST_BYTES`` each, each
        with an ``id`` of its own and remembered until each argument is answered."""
        head = len(b'{"op":"' + op.encode() + b'","args":[]}') + ID_ROOM
        frames: list[str] = []
        batch: list[Key] = []
        items: list[bytes] = []
        size = head
        for key in keys:
            item = _encode(self._arg(*key))
            if items and size + len(item) + 1 > MAX_REQUEST_BYTES:
                frames.append(self._request(op, batch, items))
                batch, items, size = [], [], head
            size += len(item) + (1 if items else 0)
            batch.append(key)
            items.append(item)
        if items:
            frames.append(self._request(op, batch, items))
        return frames

    def _request(self, op: str, keys: list[Key], items: list[bytes]) -> str:
        self._req_n += 1
        req_id = f"{REQUEST_PREFIX.get(op, op)}{self._req_n}"
        if len(self._in_flight) >= MAX_IN_FLIGHT:
            del self._in_flight[next(iter(self._in_flight))]
        self._in_flight[req_id] = _Request(req_id, op, tuple(keys), set(keys))
        return (b'{"id":"' + req_id.encode() + b'","op":"' + op.encode() + b'","args":['
                + b",".join(items) + b"]}").decode()


def _by_symbol(keys: Sequence[Key]) -> dict[str, str]:
    """The OKX channels of ``keys``, comma-separated, per symbol (in order)."""
    out: dict[str, list[str]] = {}
    for channel, sym in keys:
        out.setdefault(sym, []).append(channel)
    return {sym: ",".join(channels) for sym, channels in out.items()}


def _ms_or_none(ms: int | None) -> int | None:
    """A checked ``TsMs`` in ns (None stays None)."""
    return ms * MS_NS if ms is not None else None


def _ms(text: str) -> int:
    try:  # the common case, inline; anything else is reported by ms_to_ns
        ns = int(text) * MS_NS
    except ValueError:
        ns = 0
    if MIN_TS_NS <= ns <= MAX_TS_NS:
        return ns
    checked = ms_to_ns(text)
    if checked is None:
        raise BadValue("empty millisecond timestamp")
    return checked
