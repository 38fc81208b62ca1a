"""Sans-IO protocol for Bitget v2 public USDT-margined futures (``instType`` ``USDT-FUTURES``).

Channels: ``tob`` from ``books1`` (every push is a one-level snapshot), ``l2`` from ``books``
(a full-depth snapshot, then updates), ``trades`` from ``trade`` (a snapshot of recent trades,
then updates; ``side`` is the taker's side), ``funding`` from ``ticker`` (every push a whole
ticker: ``fundingRate``, ``nextFundingTime``, ``markPrice``, ``indexPrice`` and
``holdingAmount``, the open interest in base coin; the interval is the contract list's
``fundInterval``; a row when one of them changed, ``ts_exchange`` the entry's ``ts``). Symbols:
``BTC-USDT`` <-> ``BTCUSDT``. Clock offsets are measured against ``/api/v2/public/time``.

Book rule (``books``): a ``snapshot`` replaces the book; an ``update`` applies only when its
``pseq`` is the book's last ``seq``. When a frame carries a non-zero ``checksum`` the book after
applying it must hash to it (CRC32 of the top 25 levels in wire text, see
:mod:`plugins.bitget.checksum`); an absent or zero ``checksum`` is not checked. A sequence break
or a checksum mismatch marks that symbol's book invalid and resubscribes that symbol's ``books``
argument alone (unsubscribe + subscribe). ``ts_exchange`` is the entry's ``ts`` (ms string).

Trades: the snapshot a (re)subscription starts with overlaps trades already published before a
reconnect; trade ids seen recently are skipped, so each trade is published once.

Heartbeat: the text ``ping`` every 30 s; the server answers the text ``pong`` (not JSON).
Subscriptions: one request carries many arguments (at most 4096 bytes per request) and the
session paces requests below the venue's 10 messages per second per connection. Acks and errors
name the argument they concern, so a rejected symbol is reported as that symbol's
``subscribe_error`` and never raises; a refusal for a transient reason (request too many, rate
limit) is a ``subscribe_retry`` row and the argument is subscribed again after a backoff
(:class:`core.subscriptions.RetryQueue`).

Pure: no trio, no sockets, no clock reads.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from decimal import Decimal, InvalidOperation
from typing import Final

import msgspec

from core.book import BookKeeper, OrderBook
from core.codec import MS_NS, BadValue, check_price, check_size, levels_from_text, ms_to_ns
from core.funding import FundingTracker
from core.protocol import ExchangeProtocol, Instrument, ProtocolConfig
from core.schema import Event, HealthKind, Level, Trade
from core.subscriptions import SUBSCRIBE_RETRY, RetryQueue, is_transient
from core.symbols import split_concatenated
from plugins.bitget.checksum import book_checksum
from plugins.bitget.messages import (
    Arg,
    BookData,
    BooksFrame,
    ContractsReply,
    Envelope,
    ServerTimeReply,
    TickerData,
    TradeData,
)

INST_TYPE: Final = "USDT-FUTURES"
PING_INTERVAL_S: Final = 30.0
MAX_REQUEST_BYTES: Final = 4096
# Codes that say the argument itself is wrong (it does not exist / bad parameter): retrying the
# same request cannot succeed, so the argument is dropped. Any other error is retried through the
# snapshot deadline.
PERMANENT_ERROR_CODES: Final = frozenset({"30001", "30016"})
# "request too many": the venue asks for a pause, not for a different request
TRANSIENT_ERROR_CODES: Final = frozenset({"30006"})
RECENT_TRADE_IDS: Final = 4096

# user channel -> Bitget channel
WIRE_CHANNEL: Final = {"tob": "books1", "l2": "books", "trades": "trade", "funding": "ticker"}

_encode = msgspec.json.Encoder().encode


class BitgetProtocol(ExchangeProtocol):
    name = "bitget"
    channels = frozenset({"tob", "l2", "trades", "funding"})
    default_url = "wss://ws.bitget.com/v2/ws/public"
    default_rest_url = "https://api.bitget.com"
    silence_timeout_s = 45.0  # a text ping every 30 s is always answered on a live socket
    ping_interval_s = PING_INTERVAL_S
    # The venue allows 10 client messages per second per connection, pings included; pace below.
    max_sends_per_s = 8.0
    requires_instruments = False  # USDT-FUTURES sizes are base coin already (contract size 1)
    description = ("Bitget v2 USDT-margined futures (books1, books with CRC32 checksum, trade, "
                   "ticker)")
    server_time_path = "/api/v2/public/time"

    def __init__(self, config: ProtocolConfig) -> None:
        super().__init__(config)
        self.tob = BookKeeper(self.name, publish_tob=True, publish_l2=False)
        self.l2 = BookKeeper(self.name, publish_tob=False, publish_l2=True, keep_text=True)
        self.keepers = [self.tob, self.l2]
        # (Bitget channel, instId) -> canonical symbol
        self.routes: dict[tuple[str, str], str] = {}
        # every (Bitget channel, canonical symbol) to subscribe, in request order
        self.wanted: list[tuple[str, str]] = []
        for sym in config.symbols:
            native = self.to_native(sym)
            for channel in ("tob", "l2", "trades", "funding"):
                if channel in config.channels:
                    wire = WIRE_CHANNEL[channel]
                    self.routes[(wire, native)] = sym
                    self.wanted.append((wire, sym))
        self._env = msgspec.json.Decoder(Envelope)
        self._books_frame = msgspec.json.Decoder(BooksFrame)
        self._expected = 0  # the checksum the frame being applied carries
        self._books = msgspec.json.Decoder(list[BookData])
        self._trades = msgspec.json.Decoder(list[TradeData])
        self._tickers = msgspec.json.Decoder(list[TickerData], strict=False)
        self.funding = FundingTracker(self.name)
        self._failed: set[tuple[str, str]] = set()
        self._recent: dict[str, _RecentIds] = {}
        #: (Bitget channel, symbol) refused for a transient reason
        self.retry: RetryQueue[tuple[str, str]] = RetryQueue()

    # -- symbols and instruments -----------------------------------------------------------------

    @classmethod
    def to_canonical(cls, native: str) -> str:
        return split_concatenated(native)

    @classmethod
    def instruments_path(cls) -> str:
        return f"/api/v2/mix/market/contracts?productType={INST_TYPE}"

    @classmethod
    def parse_instruments(cls, body: bytes) -> dict[str, Instrument]:
        """Perpetual contracts only. Tick size is ``priceEndStep`` units of the last of
        ``pricePlace`` decimals; ``sizeMultiplier`` is the order-size step (the lot size), not a
        contract multiplier: USDT-FUTURES sizes are in base coin, so the contract size is 1."""
        doc = msgspec.json.decode(body, type=ContractsReply)
        if doc.code != "00000" or doc.data is None:
            raise ValueError(f"bitget contracts: code {doc.code}: {doc.msg}")
        out: dict[str, Instrument] = {}
        for item in doc.data:
            if item.symbolType != "perpetual":
                continue
            sym = f"{item.baseCoin}-{item.quoteCoin}".upper()
            try:
                tick = float(Decimal(item.priceEndStep).scaleb(-int(item.pricePlace)))
                lot = float(item.sizeMultiplier) if item.sizeMultiplier else None
            except (InvalidOperation, ValueError) as exc:
                raise ValueError(f"bitget contracts: bad precision for {item.symbol}") from exc
            status = "trading" if item.symbolStatus == "normal" else item.symbolStatus.lower()
            hours = item.fundInterval
            interval = int(hours) * 3600 if hours and hours.isdigit() and int(hours) else None
            out[sym] = Instrument(symbol=sym, native=item.symbol, contract_size=1.0,
                                  tick_size=tick, lot_size=lot, status=status,
                                  funding_interval_s=interval)
        return out

    @classmethod
    def parse_server_time(cls, body: bytes) -> int:
        return msgspec.json.decode(body, type=ServerTimeReply, strict=False).data.serverTime * MS_NS

    # -- lifecycle ----------------------------------------------------------------------------

    def subscribe(self, now_ns: int) -> list[str]:
        self.retry.clear()  # a new connection subscribes everything anyway
        args: list[dict[str, str]] = []
        for wire, sym in self.wanted:
            if (wire, sym) in self._failed:
                continue
            args.append(self._arg(wire, sym))
            keeper = self._keeper(wire)
            if keeper is not None:
                keeper.expect_snapshot(sym, now_ns)
        return self._requests("subscribe", args)

    def ping_frame(self, now_ns: int) -> str:
        return "ping"  # text, not JSON

    def resubscribe(self, due: list[tuple[str, str]], now_ns: int) -> None:
        for frame in self._requests("subscribe", [self._arg(w, s) for w, s in due]):
            self.send(frame)
        for wire, sym in due:
            keeper = self._keeper(wire)
            if keeper is not None:
                keeper.expect_snapshot(sym, now_ns)

    # -- frames -------------------------------------------------------------------------------

    def handle(self, payload: str | bytes, recv_ns: int) -> list[Event]:
        if payload == "pong" or payload == b"pong":
            return []
        if type(payload) is str and '"books' in payload[:96]:
            fast = self._book_push(payload, recv_ns)
            if fast is not None:
                return fast
        env = self._env.decode(payload)
        if env.event is not None:
            return self._on_event(env)
        if env.action is None or env.arg is None:
            raise msgspec.ValidationError("frame has neither `event` nor `action` and `arg`")
        arg = env.arg
        sym = self.routes.get((arg.channel, arg.instId))
        if sym is None:
            return [self.health(HealthKind.VENUE_ERROR,
                                f"unexpected push {arg.channel!r} for {arg.instId!r}")]
        if not env.data:
            raise msgspec.ValidationError(f"{arg.channel} push without `data`")
        if arg.channel == "trade":
            return self._on_trades(sym, env, recv_ns)
        if arg.channel == "ticker":
            return self._on_ticker(sym, env, recv_ns)
        if env.action not in ("snapshot", "update"):
            raise msgspec.ValidationError(f"unknown action {env.action!r}")
        if arg.channel == "books":
            self.book_frame(self.l2, sym)
            return self._on_books(sym, env.action, self._books.decode(env.data), recv_ns)
        self.book_frame(self.tob, sym)
        return self._on_books1(sym, self._books.decode(env.data), recv_ns)

    def _book_push(self, payload: str, recv_ns: int) -> list[Event] | None:
        """A book push decoded in one step (the common case), or None for the two-step path,
        which reports exactly what is wrong, and with which book."""
        try:
            frame = self._books_frame.decode(payload)
        except msgspec.MsgspecError:
            return None
        arg = frame.arg
        sym = self.routes.get((arg.channel, arg.instId))
        if sym is None or not frame.data or frame.action not in ("snapshot", "update"):
            return None
        if arg.channel == "books":
            self.book_frame(self.l2, sym)
            return self._on_books(sym, frame.action, frame.data, recv_ns)
        if arg.channel == "books1":
            self.book_frame(self.tob, sym)
            return self._on_books1(sym, frame.data, recv_ns)
        return None

    def _on_books(self, sym: str, action: str, entries: list[BookData],
                  recv_ns: int) -> list[Event]:
        events: list[Event] = []
        for d, bids, asks, ts_exchange in self._book_entries(sym, entries):
            check = self._check_against(d.checksum) if d.checksum else None
            if action == "snapshot":
                events += self.l2.snapshot(
                    sym, bids, asks, ts_local=recv_ns, ts_exchange=ts_exchange, seq=d.seq,
                    bid_text=d.bids, ask_text=d.asks, checksum=check)
            else:
                events += self.l2.delta(
                    sym, bids, asks, ts_local=recv_ns, ts_exchange=ts_exchange, seq=d.seq,
                    prev_seq=d.pseq, bid_text=d.bids, ask_text=d.asks, checksum=check)
        return events

    def _on_books1(self, sym: str, entries: list[BookData], recv_ns: int) -> list[Event]:
        events: list[Event] = []
        for d, bids, asks, ts_exchange in self._book_entries(sym, entries):
            events += self.tob.snapshot(sym, bids, asks, ts_local=recv_ns,
                                        ts_exchange=ts_exchange, seq=d.seq)
        return events

    def _check_against(self, expected: int) -> Callable[[OrderBook], bool]:
        """The checksum check of one entry (a bound method: no closure per frame)."""
        self._expected = expected
        return self._check_expected

    def _check_expected(self, book: OrderBook) -> bool:
        return book_checksum(book) == self._expected

    def _book_entries(self, sym: str, entries: list[BookData]
                      ) -> list[tuple[BookData, list[Level], list[Level], int]]:
        """Convert every entry before any is applied, so that a malformed frame leaves the book
        untouched."""
        if not entries:
            raise msgspec.ValidationError("book push with empty `data`")
        scale = self.contract_size(sym)
        return [(d, levels_from_text(d.bids, scale), levels_from_text(d.asks, scale),
                  _ms_to_ns(d.ts)) for d in entries]

    def _on_trades(self, sym: str, env: Envelope, recv_ns: int) -> list[Event]:
        entries = self._trades.decode(env.data)
        scale = self.contract_size(sym)
        rows: list[tuple[int, float, float, str, str]] = []
        for t in reversed(entries):  # the venue lists the newest first
            side = t.side.lower()
            if side not in ("buy", "sell"):
                raise msgspec.ValidationError(f"trade side {t.side!r}")
            try:
                rows.append((_ms_to_ns(t.ts), check_price(float(t.price)),
                             check_size(float(t.size) * scale), side, t.tradeId))
            except ValueError as exc:
                raise BadValue(f"bad trade {t.tradeId!r}: {exc}") from exc
        rows.sort(key=lambda r: r[0])
        recent = self._recent.get(sym)
        if recent is None:
            recent = self._recent[sym] = _RecentIds(RECENT_TRADE_IDS)
        return [
            Trade(exchange=self.name, ts_local=recv_ns, symbol=sym, ts_exchange=ts, price=px,
                  size=sz, side=side, trade_id=tid)
            for ts, px, sz, side, tid in rows if recent.add(tid)
        ]

    def _on_ticker(self, sym: str, env: Envelope, recv_ns: int) -> list[Event]:
        """Each entry is a whole ticker: a field it lacks is one the venue does not give."""
        events: list[Event] = []
        inst = self.instrument(sym)
        scale = self.contract_size(sym)
        for t in self._tickers.decode(env.data):
            events += self.funding.update(
                sym, recv_ns, t.ts * MS_NS if t.ts is not None else None,
                funding_rate=t.fundingRate,
                funding_interval_s=inst.funding_interval_s if inst is not None else None,
                next_funding_time=t.nextFundingTime * MS_NS if t.nextFundingTime else None,
                mark_px=t.markPrice, index_px=t.indexPrice,
                open_interest=None if t.holdingAmount is None else t.holdingAmount * scale)
        return events

    def _on_event(self, env: Envelope) -> list[Event]:
        arg = env.arg
        sym = self.routes.get((arg.channel, arg.instId)) if arg is not None else None
        if env.event == "subscribe":
            if arg is not None and sym is not None:
                self.retry.succeeded()
                return [self.health(HealthKind.SUBSCRIBED, arg.channel, sym)]
            return []
        if env.event == "unsubscribe":
            return []
        if env.event == "error":
            return [self._on_error(env, arg, sym)]
        return [self.health(HealthKind.VENUE_ERROR, f"unknown event {env.event!r}: {env.msg}")]

    def _on_error(self, env: Envelope, arg: Arg | None, sym: str | None) -> Event:
        code = "" if env.code is None else str(env.code)
        op = env.op or "subscribe"
        detail = f"{op} error {code}: {env.msg or 'no reason given'}"
        if arg is not None:
            detail = f"{arg.channel} {arg.instId}: {detail}"
        if op != "subscribe":
            return self.health(HealthKind.VENUE_ERROR, detail, sym)
        if sym is not None and arg is not None and code not in PERMANENT_ERROR_CODES and \
                is_transient(env.msg, code, TRANSIENT_ERROR_CODES):
            delay = self.retry.defer((arg.channel, sym), self.now_ns)
            keeper = self._keeper(arg.channel)
            if keeper is not None:
                keeper.forget(sym)
            return self.health(SUBSCRIBE_RETRY, f"{detail}; retrying in {delay:g} s", sym)
        if sym is not None and arg is not None and code in PERMANENT_ERROR_CODES:
            self._failed.add((arg.channel, sym))
            keeper = self._keeper(arg.channel)
            if keeper is not None:
                keeper.forget(sym)
        return self.health(HealthKind.SUBSCRIBE_ERROR, detail, sym)

    # -- helpers ------------------------------------------------------------------------------

    def _keeper(self, wire: str) -> BookKeeper | None:
        if wire == "books":
            return self.l2
        if wire == "books1":
            return self.tob
        return None

    def _arg(self, wire: str, sym: str) -> dict[str, str]:
        return {"instType": INST_TYPE, "channel": wire, "instId": self.to_native(sym)}

    def _requests(self, op: str, args: Sequence[dict[str, str]]) -> list[str]:
        """``op`` requests carrying ``args``, as few as fit in ``MAX_REQUEST_BYTES`` each."""
        head = b'{"op":"' + op.encode() + b'","args":['
        tail = b"]}"
        frames: list[str] = []
        batch: list[bytes] = []
        size = len(head) + len(tail)
        for arg in args:
            item = _encode(arg)
            extra = len(item) + (1 if batch else 0)
            if batch and size + extra > MAX_REQUEST_BYTES:
                frames.append((head + b",".join(batch) + tail).decode())
                batch = []
                size = len(head) + len(tail)
                extra = len(item)
            batch.append(item)
            size += extra
        if batch:
            frames.append((head + b",".join(batch) + tail).decode())
        return frames

    def resync(self, keeper: BookKeeper, symbols: list[str], now_ns: int) -> None:
        """Unsubscribe + subscribe the book arguments of ``symbols``, batched."""
        wire = "books1" if keeper is self.tob else "books"
        args: list[dict[str, str]] = []
        for sym in symbols:
            if (wire, sym) in self._failed:
                continue
            args.append(self._arg(wire, sym))
            keeper.expect_snapshot(sym, now_ns)
        if args:
            for frame in self._requests("unsubscribe", args):
                self.send(frame)
            for frame in self._requests("subscribe", args):
                self.send(frame)


class _RecentIds:
    """The last ``size`` trade ids of one symbol, for skipping repeats in trade snapshots."""

    __slots__ = ("_ids", "_order")

    def __init__(self, size: int) -> None:
        self._order: deque[str] = deque(maxlen=size)
        self._ids: set[str] = set()

    def add(self, trade_id: str) -> bool:
        """Remember ``trade_id``; False when it was seen already."""
        if trade_id in self._ids:
            return False
        if len(self._order) == self._order.maxlen:
            self._ids.discard(self._order[0])
        self._order.append(trade_id)
        self._ids.add(trade_id)
        return True


def _ms_to_ns(ms: str | int) -> int:
    ns = ms_to_ns(ms)
    if ns is None:
        raise BadValue("empty millisecond timestamp")
    return ns
