"""Sans-IO protocol for the Coinbase Exchange public feed (legacy ``ws-feed.exchange``).

Channels: ``l2`` from ``level2_batch`` (a ``snapshot`` with the whole book, then ``l2update``
frames whose ``changes`` are ``[side, price, new absolute size]``, side ``buy``/``sell``, batched
every 50 ms; the unbatched ``level2`` needs authentication); ``trades`` from ``matches`` (the
``side`` there is the *maker's*, flipped here to the taker's); ``tob`` from ``ticker`` by default
(option ``tob_from=book`` derives it from the ``level2_batch`` book instead: the ticker is sent
only on trades, so between trades its best bid/ask can be stale). ``heartbeat`` (1 s per product)
is always subscribed: it is the session's liveness signal.

The venue closes a connection that has not subscribed within 5 s, so the subscribe frames are
queued in :meth:`connection_made` and the session sends them first thing. One frame per product
(with every channel) because the venue rejects a whole request when one product is invalid;
``error`` frames name the product in ``reason`` and become ``subscribe_error`` for it, or, when
the reason is transient (a rate limit, "try again"), ``subscribe_retry``, and the product's
frame is sent again after a backoff (:class:`core.subscriptions.RetryQueue`).

Integrity: level2 frames carry **no sequence number**, so a lost or reordered ``l2update`` is not
detectable; the book is checked for crossing (then resynced by unsubscribing and resubscribing
``level2_batch``), a snapshot that does not arrive is retried, and ``matches`` trade ids, which run
contiguously per product, report missing trades as ``trade_gap``. ``last_match`` (the latest
trade, sent on subscribe) seeds that check, and after a reconnect fills the outage when it is
newer than the last trade seen.

Pure: no trio, no sockets, no clock reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import msgspec

from core.book import BookKeeper
from core.codec import iso_to_ns
from core.options import OptionSpec
from core.protocol import ExchangeProtocol, Instrument, ProtocolConfig
from core.schema import Event, HealthKind, Level, TopOfBook, Trade
from core.subscriptions import SUBSCRIBE_RETRY, RetryQueue, is_transient
from plugins.coinbase_exchange.messages import PRODUCTS, Head, Message, ServerTime

MIB = 1024 * 1024
TRADE_GAP = HealthKind.TRADE_GAP
# ``side`` of a match is the maker order's side; the taker took the other one.
TAKER_SIDE = {"buy": "sell", "sell": "buy"}
TOB_SOURCES = ("ticker", "book")

_encode = msgspec.json.Encoder().encode


class CoinbaseExchangeProtocol(ExchangeProtocol):
    name = "coinbase-exchange"
    channels = frozenset({"tob", "l2", "trades"})
    default_url = "wss://ws-feed.exchange.coinbase.com"
    default_rest_url = "https://api.exchange.coinbase.com"
    #: clock offsets are measured against this (``iso``: the server time to the millisecond)
    server_time_path = "/time"
    # The snapshot is the whole book in one frame (multi-MB for the big products).
    max_message_bytes = 64 * MIB
    # heartbeat arrives every second per product on a healthy connection.
    silence_timeout_s = 10.0
    ws_ping_interval_s = None
    max_sends_per_s = 8.0
    description = "Coinbase Exchange legacy feed (level2_batch, matches, ticker; no l2 sequence)"
    options: ClassVar[Mapping[str, OptionSpec]] = {
        "tob_from": OptionSpec(default="ticker", choices=TOB_SOURCES,
                               help="the source of the tob channel: ticker or the local book"),
    }

    def __init__(self, config: ProtocolConfig) -> None:
        super().__init__(config)
        chans = set(config.channels)
        tob_from = self.option("tob_from")
        self.tob_from_ticker = "tob" in chans and tob_from == "ticker"
        tob_from_book = "tob" in chans and tob_from == "book"
        self.want_book = "l2" in chans or tob_from_book
        self.want_trades = "trades" in chans
        self.book = BookKeeper(self.name, publish_tob=tob_from_book, publish_l2="l2" in chans)
        self.keepers = [self.book]
        self.route: dict[str, str] = {self.to_native(s): s for s in config.symbols}
        self.sub_channels: list[str] = ["heartbeat"]
        if self.want_book:
            self.sub_channels.append("level2_batch")
        if self.tob_from_ticker:
            self.sub_channels.append("ticker")
        if self.want_trades:
            self.sub_channels.append("matches")
        self._decoder = msgspec.json.Decoder(Message, strict=False)
        self.failed: dict[str, str] = {}
        self._unlisted: list[tuple[str, str]] = []
        if config.instruments:
            for sym in config.symbols:
                inst = config.instruments.get(sym)
                if inst is None:
                    self._unlisted.append((sym, "not listed by /products"))
                elif inst.status == "delisted":
                    self._unlisted.append((sym, "delisted"))
            self.failed.update(self._unlisted)
        self._unlisted_reported = False
        # per connection
        self._acked: dict[str, set[str]] = {}
        self._pending: list[str] = []  # symbols subscribed and not yet acknowledged
        self._last_tob: dict[str, tuple[float | None, ...]] = {}
        self.retry: RetryQueue[str] = RetryQueue()  # symbols refused for a transient reason
        # per run
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
        ns = iso_to_ns(msgspec.json.decode(body, type=ServerTime).iso)
        if ns is None:
            raise ValueError("time: empty iso")
        return ns

    @classmethod
    def instruments_path(cls) -> str:
        return "/products"

    @classmethod
    def parse_instruments(cls, body: bytes) -> dict[str, Instrument]:
        out: dict[str, Instrument] = {}
        for p in msgspec.json.decode(body, type=PRODUCTS):
            status = "trading" if p.status == "online" and not p.trading_disabled else p.status
            out[cls.to_canonical(p.id)] = Instrument(
                symbol=cls.to_canonical(p.id), native=p.id, tick_size=float(p.quote_increment),
                lot_size=float(p.base_increment) if p.base_increment else None, status=status)
        return out

    # -- lifecycle --------------------------------------------------------------------------------

    def active_symbols(self) -> list[str]:
        return [s for s in self.config.symbols if s not in self.failed]

    def connection_made(self, now_ns: int) -> list[Event]:
        self._reset_connection()
        super().connection_made(now_ns)
        if self._unlisted_reported:
            return []
        self._unlisted_reported = True
        return [self.health(HealthKind.SUBSCRIBE_ERROR, f"{why}; not subscribed", sym)
                for sym, why in self._unlisted]

    def subscribe(self, now_ns: int) -> list[str]:
        frames = []
        for sym in self.active_symbols():
            frames.append(self._frame("subscribe", sym, self.sub_channels))
            self._pending.append(sym)
            if self.want_book:
                self.book.expect_snapshot(sym, now_ns)
        return frames

    def connection_lost(self, now_ns: int) -> list[Event]:
        super().connection_lost(now_ns)  # books untrusted until the next snapshots
        self._reset_connection()
        return []

    def _reset_connection(self) -> None:
        self._acked = {}
        self._pending = []
        self._last_tob = {}
        self.retry.clear()

    def resubscribe(self, due: list[str], now_ns: int) -> None:
        for sym in due:
            if sym not in self.failed:
                self.send(self._frame("subscribe", sym, self.sub_channels))
                self._pending.append(sym)
                if self.want_book:
                    self.book.expect_snapshot(sym, now_ns)

    # -- frames -----------------------------------------------------------------------------------

    def handle(self, payload: str | bytes, recv_ns: int) -> list[Event]:
        try:
            msg = self._decoder.decode(payload)
        except msgspec.ValidationError:
            self._announce(payload)
            raise
        kind = msg.type
        events: list[Event] = []
        if kind == "l2update":
            sym = self._symbol(msg, events)
            if sym is not None:
                self.book_frame(self.book, sym)
            if sym is not None and msg.changes:
                bids: list[Level] = []
                asks: list[Level] = []
                for side, price, size in msg.changes:
                    (bids if side == "buy" else asks).append((price, size))
                events.extend(self.book.delta(sym, bids, asks, ts_local=recv_ns,
                                              ts_exchange=parse_time(msg.time), seq=None))
        elif kind == "snapshot":
            sym = self._symbol(msg, events)
            if sym is not None:
                bids = [lv for lv in msg.bids or () if lv[1] > 0]
                asks = [lv for lv in msg.asks or () if lv[1] > 0]
                events.extend(self.book.snapshot(sym, bids, asks, ts_local=recv_ns,
                                                 ts_exchange=parse_time(msg.time), seq=None))
        elif kind == "match" or kind == "last_match":
            self._on_match(msg, recv_ns, events)
        elif kind == "ticker":
            self._on_ticker(msg, recv_ns, events)
        elif kind == "heartbeat":
            pass
        elif kind == "subscriptions":
            self._on_subscriptions(msg, events)
        elif kind == "error":
            self._on_error(msg, events)
        elif kind not in self._unknown:
            self._unknown.add(kind)
            events.append(self.health(HealthKind.VENUE_ERROR,
                                      f"unexpected frame type {kind!r}: {payload[:200]!r}"))
        return events

    def _announce(self, payload: str | bytes) -> None:
        """A frame that does not decode: if it was a book frame, find its symbol to resync."""
        try:
            head = _head.decode(payload)
        except msgspec.DecodeError:
            return
        sym = self.route.get(head.product_id or "")
        if sym is not None and head.type in ("l2update", "snapshot"):
            self.book_frame(self.book, sym)

    def _on_match(self, msg: Message, recv_ns: int, events: list[Event]) -> None:
        if msg.trade_id is None or msg.price is None or msg.size is None:
            raise msgspec.ValidationError(f"{msg.type} without trade_id, price or size")
        side = TAKER_SIDE.get(msg.side or "")
        if side is None:
            raise msgspec.ValidationError(f"{msg.type} side {msg.side!r} is not buy/sell")
        sym = self._symbol(msg, events)
        if sym is None:
            return
        tid = msg.trade_id
        ts = parse_time(msg.time)
        last = self.last_trade_id.get(sym)
        if msg.type == "last_match" and last is None:
            self.last_trade_id[sym] = tid  # the latest trade before this run: seeds the check
            return
        if last is not None:
            if tid <= last:
                return  # seen already
            if tid > last + 1:
                events.append(self.health(
                    TRADE_GAP, f"trade_id {last} -> {tid}: {tid - last - 1} trade(s) missing", sym))
        self.last_trade_id[sym] = tid
        events.append(Trade(exchange=self.name, ts_local=recv_ns, symbol=sym,
                            ts_exchange=ts, price=msg.price, size=msg.size,
                            side=side, trade_id=str(tid)))

    def _on_ticker(self, msg: Message, recv_ns: int, events: list[Event]) -> None:
        if not self.tob_from_ticker:
            return
        sym = self._symbol(msg, events)
        if sym is None:
            return
        top = (msg.best_bid, msg.best_bid_size, msg.best_ask, msg.best_ask_size)
        if top == self._last_tob.get(sym):
            return
        ts = parse_time(msg.time)
        self._last_tob[sym] = top
        events.append(TopOfBook(exchange=self.name, ts_local=recv_ns, symbol=sym,
                                ts_exchange=ts, bid_px=top[0], bid_sz=top[1],
                                ask_px=top[2], ask_sz=top[3], seq=msg.sequence))

    def _on_subscriptions(self, msg: Message, events: list[Event]) -> None:
        current: dict[str, set[str]] = {}
        for ch in msg.channels or ():
            current[ch.name] = {s for s in map(self.route.get, ch.product_ids) if s is not None}
        newly: dict[str, list[str]] = {}
        for name, syms in current.items():
            for sym in sorted(syms - self._acked.get(name, set())):
                newly.setdefault(sym, []).append(name)
        self._acked = current
        if newly:
            self.retry.succeeded()
        acked_any = set().union(*current.values()) if current else set()
        self._pending = [s for s in self._pending if s not in acked_any]
        events.extend(self.health(HealthKind.SUBSCRIBED, ",".join(chans), sym)
                      for sym, chans in newly.items())

    def _on_error(self, msg: Message, events: list[Event]) -> None:
        text = f"{msg.message or 'error'}: {msg.reason}" if msg.reason else (msg.message or "error")
        reason = msg.reason or ""
        # the longest product id in the reason (BTC-USDC, not BTC-USD, in "BTC-USDC is not ...")
        named = [native for native in self.route if native in reason]
        sym = self.route[max(named, key=len)] if named else None
        if sym is None and self._pending and "subscribe" in text.lower():
            sym = self._pending[0]
        if sym is None:
            events.append(self.health(HealthKind.VENUE_ERROR, text))
            return
        if sym in self._pending:
            self._pending.remove(sym)
        if is_transient(text):
            delay = self.retry.defer(sym, self.now_ns)
            self.book.forget(sym)
            events.append(self.health(SUBSCRIBE_RETRY, f"{text}; retrying in {delay:g} s", sym))
            return
        self.failed[sym] = text
        self.book.forget(sym)
        events.append(self.health(HealthKind.SUBSCRIBE_ERROR, text, sym))

    # -- helpers ----------------------------------------------------------------------------------

    def _symbol(self, msg: Message, events: list[Event]) -> str | None:
        product = msg.product_id or ""
        sym = self.route.get(product)
        if sym is None and product not in self._unknown:
            self._unknown.add(product)
            events.append(self.health(HealthKind.VENUE_ERROR,
                                      f"{msg.type} for unrequested product {product!r}"))
        return sym

    def _frame(self, op: str, sym: str, channels: list[str]) -> str:
        return _encode({"type": op, "product_ids": [self.to_native(sym)],
                        "channels": channels}).decode()

    def resync(self, keeper: BookKeeper, symbols: list[str], now_ns: int) -> None:
        """Unsubscribe and resubscribe ``level2_batch`` of each book that needs a snapshot."""
        for sym in symbols:
            if sym in self.failed:
                continue
            self.send(self._frame("unsubscribe", sym, ["level2_batch"]))
            self.send(self._frame("subscribe", sym, ["level2_batch"]))
            keeper.expect_snapshot(sym, now_ns)


_head = msgspec.json.Decoder(Head)


def parse_time(text: str | None) -> int | None:
    """RFC 3339 text to ns; a malformed time is a malformed frame (a msgspec error)."""
    try:
        return iso_to_ns(text)
    except ValueError as exc:
        raise msgspec.ValidationError(f"bad timestamp {text!r}: {exc}") from None
