"""Sans-IO protocol for Kraken spot, websocket v2 (``wss://ws.kraken.com/v2``).

Channels: ``tob`` from ``ticker`` with ``event_trigger: "bbo"`` (a push on every change of the
best bid or ask, each a whole top of book), ``l2`` from ``book`` (a snapshot of ``depth``
levels a side, then updates), ``trades`` from ``trade`` (``side`` is the taker's side; only
trades that happen after the subscription: ``snapshot: false``). Symbols: canonical ``BTC-USD``
is Kraken's ``BTC/USD``; sizes are base units.

Book rule: Kraken's book carries no sequence number; its integrity check is the ``checksum`` of
every snapshot and update: the CRC32 of the top 10 levels of each side over the wire text
(:mod:`bookwire_kraken.checksum`), verified after each frame. After an update the book is cut to
the subscribed depth (the venue sends no removal for a level pushed out of it); the levels cut
are written as removals with the update, so the ``l2`` rows rebuild the same book. A mismatch is
a ``checksum_mismatch``: that symbol's book alone is unsubscribed and subscribed again, which
brings a new snapshot (``resynced``). The checksum covers the top 10 levels only, so the default
``depth`` is 10, where every level is verified (``--opt kraken.depth=25`` and more: deeper
levels are kept but not verifiable).

Subscriptions: one request per channel for every symbol; Kraken answers each symbol on its own.
A refusal for load ("Exceeded msg rate", "too many requests") is a ``subscribe_retry`` and that
symbol's channel is asked again after a backoff (:class:`core.subscriptions.RetryQueue`); any
other refusal ("Currency pair not supported ...") is a ``subscribe_error`` and is not asked
again. Liveness: the venue sends a ``heartbeat`` about every second; the plugin sends
``{"method":"ping"}`` every 30 s and 10 s without any frame means a dead socket.

Pure: no trio, no sockets, no clock reads.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import ClassVar, Final

import msgspec

from bookwire_kraken.checksum import book_checksum
from bookwire_kraken.messages import (
    BookData,
    BookMsg,
    Head,
    Level,
    NamedMsg,
    Reply,
    StatusMsg,
    TickerMsg,
    TradeMsg,
)
from core.book import BookKeeper, OrderBook
from core.codec import BadValue, check_level, iso_to_ns
from core.options import OptionSpec
from core.protocol import ExchangeProtocol, ProtocolConfig
from core.schema import Event, HealthKind, Trade
from core.subscriptions import SUBSCRIBE_RETRY, RetryQueue, is_transient

WIRE_CHANNEL: Final = {"tob": "ticker", "l2": "book", "trades": "trade"}
DEPTHS: Final = ("10", "25", "100", "500", "1000")
#: Kraken's words for a refusal for load, besides the generic ones of core.subscriptions
LOAD_WORDS: Final = ("exceeded msg rate",)
#: request ids whose channel is remembered (replies name the request, errors not the channel)
MAX_PENDING: Final = 1024

_encode = msgspec.json.Encoder().encode
Wire = list[tuple[str, str]]
Levels = list[tuple[float, float]]


class KrakenProtocol(ExchangeProtocol):
    name = "kraken"
    channels = frozenset({"tob", "l2", "trades"})
    default_url = "wss://ws.kraken.com/v2"
    description = "Kraken spot v2 (ticker bbo, book with its CRC32 checksum, trade)"
    silence_timeout_s = 10.0  # a heartbeat about every second
    ping_interval_s = 30.0
    max_sends_per_s = 5.0
    options: ClassVar[Mapping[str, OptionSpec]] = {
        "depth": OptionSpec(default="10", choices=DEPTHS,
                            help="book levels per side (the checksum verifies the top 10)"),
    }

    def __init__(self, config: ProtocolConfig) -> None:
        super().__init__(config)
        self.depth = int(self.option("depth"))
        self.tob = BookKeeper(self.name, publish_tob=True, publish_l2=False)
        self.l2 = BookKeeper(self.name, publish_tob=False, publish_l2=True, keep_text=True)
        self.keepers = [self.tob, self.l2]
        self.native = {sym: self.to_native(sym) for sym in config.symbols}
        self.by_native = {n: s for s, n in self.native.items()}
        self.wanted = [WIRE_CHANNEL[ch] for ch in ("tob", "l2", "trades")
                       if ch in config.channels]
        self._head = msgspec.json.Decoder(Head)
        self._book = msgspec.json.Decoder(BookMsg)
        self._named = msgspec.json.Decoder(NamedMsg)
        self._ticker = msgspec.json.Decoder(TickerMsg)
        self._trade = msgspec.json.Decoder(TradeMsg)
        self._reply = msgspec.json.Decoder(Reply)
        self._status = msgspec.json.Decoder(StatusMsg)
        self._req_n = 0
        self._channel_of: dict[int, str] = {}  # req_id -> channel of the request
        self._failed: set[tuple[str, str]] = set()  # (channel, symbol) refused for good
        self.retry: RetryQueue[tuple[str, str]] = RetryQueue()

    # -- symbols ------------------------------------------------------------------------------

    @classmethod
    def to_native(cls, symbol: str) -> str:
        return symbol.replace("-", "/")

    @classmethod
    def to_canonical(cls, native: str) -> str:
        return native.replace("/", "-")

    # -- lifecycle ----------------------------------------------------------------------------

    def subscribe(self, now_ns: int) -> list[str]:
        self._channel_of.clear()
        self.retry.clear()  # a new connection subscribes everything anyway
        frames = []
        for channel in self.wanted:
            symbols = [s for s in self.config.symbols if (channel, s) not in self._failed]
            if symbols:
                frames.append(self._request("subscribe", channel, symbols, now_ns))
        return frames

    def ping_frame(self, now_ns: int) -> str:
        self._req_n += 1
        return _encode({"method": "ping", "req_id": self._req_n}).decode()

    def resubscribe(self, due: list[tuple[str, str]], now_ns: int) -> None:
        for channel, sym in due:
            self.send(self._request("subscribe", channel, [sym], now_ns))

    def resync(self, keeper: BookKeeper, symbols: list[str], now_ns: int) -> None:
        """A book broke or its snapshot is overdue: unsubscribe and subscribe its channel for
        those symbols only (a ``ticker`` or ``book`` subscription starts with a snapshot)."""
        channel = "book" if keeper is self.l2 else "ticker"
        # (a symbol whose new snapshot is already on its way is not asked twice)
        symbols = [s for s in symbols if (channel, s) not in self._failed
                   and keeper.state(s).snapshot_due_ns is None]
        if not symbols or channel not in self.wanted:
            return
        self.send(self._request("unsubscribe", channel, symbols, now_ns))
        self.send(self._request("subscribe", channel, symbols, now_ns))

    # -- frames -------------------------------------------------------------------------------

    def handle(self, payload: str | bytes, recv_ns: int) -> list[Event]:
        head = self._head.decode(payload)
        channel = head.channel
        if channel == "book":
            return self._on_book(payload, recv_ns)
        if channel == "ticker":
            return self._on_ticker(payload, recv_ns)
        if channel == "trade":
            return self._on_trade(payload, recv_ns)
        if channel == "heartbeat":
            return []
        if channel == "status":
            return self._on_status(payload)
        if head.method is not None:
            return self._on_reply(payload)
        return [self.health(HealthKind.VENUE_ERROR, f"unexpected frame: {payload[:200]!r}")]

    def _on_book(self, payload: str | bytes, recv_ns: int) -> list[Event]:
        try:
            msg = self._book.decode(payload)
        except msgspec.ValidationError:
            self._announce(payload)  # that book may now miss an update: resync it
            raise
        if msg.type not in ("snapshot", "update"):
            raise msgspec.ValidationError(f"book push of type {msg.type!r}")
        events: list[Event] = []
        for d in msg.data:
            sym = self.by_native.get(d.symbol)
            if sym is None:
                events.append(self.health(HealthKind.VENUE_ERROR,
                                          f"book for unsubscribed {d.symbol!r}"))
                continue
            self.book_frame(self.l2, sym)
            events += self._apply(sym, msg.type == "snapshot", d, recv_ns)
        return events

    def _apply(self, sym: str, snapshot: bool, d: BookData, recv_ns: int) -> list[Event]:
        bid_text, bids = _levels(d.bids)
        ask_text, asks = _levels(d.asks)
        ts_exchange = iso_to_ns(d.timestamp)
        check = _checksum(d.checksum)
        if snapshot:
            return self.l2.snapshot(sym, bids, asks, ts_local=recv_ns, ts_exchange=ts_exchange,
                                    seq=None, bid_text=bid_text, ask_text=ask_text,
                                    checksum=check)
        if self.l2.is_live(sym):  # levels pushed out of the subscribed depth are removed
            book = self.l2.book(sym)
            _cut(book.bids, bids, bid_text, self.depth, reverse=True)
            _cut(book.asks, asks, ask_text, self.depth, reverse=False)
        return self.l2.delta(sym, bids, asks, ts_local=recv_ns, ts_exchange=ts_exchange,
                             seq=None, bid_text=bid_text, ask_text=ask_text, checksum=check)

    def _on_ticker(self, payload: str | bytes, recv_ns: int) -> list[Event]:
        events: list[Event] = []
        for d in self._ticker.decode(payload).data:
            sym = self.by_native.get(d.symbol)
            if sym is None:
                events.append(self.health(HealthKind.VENUE_ERROR,
                                          f"ticker for unsubscribed {d.symbol!r}"))
                continue
            events += self.tob.snapshot(sym, [check_level(d.bid, d.bid_qty)],
                                        [check_level(d.ask, d.ask_qty)], ts_local=recv_ns,
                                        ts_exchange=iso_to_ns(d.timestamp), seq=None)
        return events

    def _on_trade(self, payload: str | bytes, recv_ns: int) -> list[Event]:
        msg = self._trade.decode(payload)
        if msg.type != "update":
            return []  # trades from before the subscription (we ask for none)
        rows: list[Event] = []
        for t in msg.data:
            sym = self.by_native.get(t.symbol)
            if sym is None:
                rows.append(self.health(HealthKind.VENUE_ERROR,
                                        f"trade for unsubscribed {t.symbol!r}"))
                continue
            if t.side not in ("buy", "sell"):
                raise BadValue(f"trade side {t.side!r}")
            rows.append(Trade(exchange=self.name, ts_local=recv_ns, symbol=sym,
                              ts_exchange=iso_to_ns(t.timestamp), price=t.price, size=t.qty,
                              side=t.side, trade_id=str(t.trade_id)))
        return rows

    def _on_status(self, payload: str | bytes) -> list[Event]:
        return [self.health(HealthKind.VENUE_ERROR, f"system {s.system} (version {s.version})")
                for s in self._status.decode(payload).data if s.system != "online"]

    def _on_reply(self, payload: str | bytes) -> list[Event]:
        r = self._reply.decode(payload)
        if r.method not in ("subscribe", "unsubscribe"):
            return []  # pong
        channel = self._channel_of.get(r.req_id or -1, r.result.channel if r.result else "")
        if r.success:
            sym = self.by_native.get(r.result.symbol) if r.result is not None else None
            if r.method == "subscribe" and sym is not None:
                self.retry.succeeded()
                return [self.health(HealthKind.SUBSCRIBED, channel, sym)]
            return []
        sym = self.by_native.get(r.symbol or "")
        detail = f"{r.method} {channel} rejected: {r.error or 'no reason given'}"
        if sym is None or r.method != "subscribe":
            return [self.health(HealthKind.VENUE_ERROR if r.method != "subscribe"
                                else HealthKind.SUBSCRIBE_ERROR, detail, sym)]
        keeper = self._keeper(channel)
        if keeper is not None:
            keeper.forget(sym)
        if is_transient(r.error) or any(w in (r.error or "").lower() for w in LOAD_WORDS):
            delay = self.retry.defer((channel, sym), self.now_ns)
            return [self.health(SUBSCRIBE_RETRY, f"{detail}; retrying in {delay:g} s", sym)]
        self._failed.add((channel, sym))
        return [self.health(HealthKind.SUBSCRIBE_ERROR, detail, sym)]

    # -- helpers ------------------------------------------------------------------------------

    def _request(self, method: str, channel: str, symbols: Sequence[str], now_ns: int) -> str:
        self._req_n += 1
        self._channel_of[self._req_n] = channel
        if len(self._channel_of) > MAX_PENDING:  # answered long ago: forget the oldest
            del self._channel_of[next(iter(self._channel_of))]
        params: dict[str, object] = {"channel": channel,
                                     "symbol": [self.native[s] for s in symbols]}
        if channel == "book":
            params["depth"] = self.depth
        if method == "subscribe":
            if channel == "ticker":
                params["event_trigger"] = "bbo"
            params["snapshot"] = channel != "trade"
            keeper = self._keeper(channel)
            if keeper is not None:
                for s in symbols:
                    keeper.expect_snapshot(s, now_ns)
        return _encode({"method": method, "params": params, "req_id": self._req_n}).decode()

    def _keeper(self, channel: str) -> BookKeeper | None:
        return self.l2 if channel == "book" else self.tob if channel == "ticker" else None

    def _announce(self, payload: str | bytes) -> None:
        """A book frame that does not decode: find its symbol, so its book is resynced."""
        try:
            named = self._named.decode(payload).data
        except (msgspec.DecodeError, msgspec.ValidationError):
            return
        for entry in named[:1]:
            sym = self.by_native.get(entry.symbol)
            if sym is not None:
                self.book_frame(self.l2, sym)


def _number(raw: msgspec.Raw) -> str:
    """A raw JSON value that must be a plain number; its text as sent."""
    text = bytes(raw).decode()
    if not text or text[0] not in "0123456789" or any(c in text for c in "eE+"):
        raise BadValue(f"level value {text[:40]!r} is not a plain decimal number")
    return text


def _levels(levels: list[Level]) -> tuple[Wire, Levels]:
    text = [(_number(lv.price), _number(lv.qty)) for lv in levels]
    return text, [check_level(float(p), float(q)) for p, q in text]


def _cut(side: dict[float, float], levels: Levels, text: Wire, depth: int, *,
         reverse: bool) -> None:
    """Append removals for the levels the update pushes out of the subscribed depth."""
    if len(side) + len(levels) <= depth:
        return
    after = dict(side)
    for price, size in levels:
        if size > 0:
            after[price] = size
        else:
            after.pop(price, None)
    if len(after) <= depth:
        return
    for price in sorted(after, reverse=reverse)[depth:]:
        levels.append((price, 0.0))
        text.append((repr(price), "0"))


def _checksum(expected: int) -> Callable[[OrderBook], bool]:
    def check(book: OrderBook) -> bool:
        return book_checksum(book) == expected

    return check
