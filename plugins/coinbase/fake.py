"""A fake Coinbase Advanced Trade venue (``advanced-trade-ws``), and builders of its frames.

What it says, as the venue does:

* one ``subscribe``/``unsubscribe`` frame per channel (``level2``, ``market_trades``,
  ``heartbeats``) is answered with a ``subscriptions`` frame listing the connection's whole
  subscription set; a product it does not list gets ``{"type":"error","message":"failure to
  subscribe"}`` instead (the error names no product);
* ``level2``: one full-book ``l2_data`` snapshot per product before the acknowledgement, then
  ``update`` events with absolute ``new_quantity`` (sides ``bid``/``offer``);
* ``market_trades``: a snapshot of the latest trades before the acknowledgement, then one
  ``update`` per trade; ``side`` is the *maker's*;
* ``heartbeats``: a frame every second;
* every frame of a connection carries ``sequence_num``, +1 per frame across all channels;
* REST ``/api/v3/brokerage/market/products``: the listings.

The builders (:func:`envelope`, :func:`l2_frame`, :func:`trades_frame`, ...) write single frames
in the same format for protocol tests. Sans-IO like the plugin: no trio, no sockets, no clocks.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import msgspec

from core.codec import S_NS
from core.sim.market import Listing, MarketEvent, TradePrint
from core.sim.simulator import power_of_ten
from core.sim.speaker import PERMANENT, TRANSIENT_TEXT, Out, SpeakerSession, VenueSpeaker

HEARTBEAT_NS = S_NS
PRODUCTS_PATH = "/api/v3/brokerage/market/products"
BASE_TIME = datetime(2026, 8, 9, 21, 5, 48, tzinfo=UTC)
TRADE_SNAPSHOT = 50
_encode = msgspec.json.Encoder().encode

# (side "bid"|"offer", price text, new quantity text)
L2Change = tuple[str, str, str]
# (product, trade_id, price text, size text, maker side "BUY"|"SELL", time text)
WireTrade = tuple[str, str, str, str, str, str]


def iso(offset_us: int = 0, *, nanos: int | None = None) -> str:
    """RFC 3339 UTC text ``offset_us`` after BASE_TIME; ``nanos`` adds nanosecond digits."""
    t = BASE_TIME + timedelta(microseconds=offset_us)
    if nanos is None:
        return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond * 1000 + nanos:09d}Z"


def iso_ns(ts_ns: int) -> str:
    """RFC 3339 UTC text of a ns timestamp, microsecond digits (as ``event_time`` is sent)."""
    t = datetime.fromtimestamp(ts_ns // 1000 / 1e6, UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def envelope(channel: str, seq: int, events: list[dict[str, object]],
             timestamp: str | None = None) -> str:
    return _encode({"channel": channel, "timestamp": timestamp or iso(seq),
                    "sequence_num": seq, "events": events}).decode()


def l2_frame(seq: int, product: str, kind: str, changes: Iterable[L2Change],
             event_time: str | None = None, timestamp: str | None = None) -> str:
    """An ``l2_data`` frame with one ``snapshot`` or ``update`` event."""
    et = event_time or iso(seq)
    updates = [{"side": side, "event_time": et, "price_level": px, "new_quantity": qty}
               for side, px, qty in changes]
    return envelope("l2_data", seq, [{"type": kind, "product_id": product, "updates": updates}],
                    timestamp)


def trades_frame(seq: int, kind: str, trades: Sequence[WireTrade],
                 timestamp: str | None = None) -> str:
    """A ``market_trades`` frame; ``trades`` newest first, as the venue lists them."""
    rows = [{"product_id": p, "trade_id": tid, "price": px, "size": sz, "time": t, "side": side}
            for p, tid, px, sz, side, t in trades]
    return envelope("market_trades", seq, [{"type": kind, "trades": rows}], timestamp)


def heartbeat_frame(seq: int, counter: int, timestamp: str | None = None) -> str:
    now = BASE_TIME + timedelta(seconds=counter)
    text = now.strftime("%Y-%m-%d %H:%M:%S.%f") + f"045 +0000 UTC m=+{counter}.260485341"
    return envelope("heartbeats", seq, [{"current_time": text, "heartbeat_counter": counter}],
                    timestamp)


def subscriptions_frame(seq: int, subscriptions: dict[str, list[str]],
                        timestamp: str | None = None) -> str:
    return envelope("subscriptions", seq, [{"subscriptions": subscriptions}], timestamp)


def error_frame(message: str = "failure to subscribe") -> str:
    return _encode({"type": "error", "message": message}).decode()


def ladder(best: float, n: int, step: float, *, down: bool, size0: float = 0.5,
           decimals: int = 2) -> list[tuple[str, str]]:
    """``n`` price levels from ``best`` away from the touch, as wire text ``(price, size)``."""
    out = []
    for i in range(n):
        px = best - i * step if down else best + i * step
        size = f"{size0 + (i % 97) * 0.01:.8f}".rstrip("0").rstrip(".")
        out.append((f"{px:.{decimals}f}", size))
    return out


def snapshot_changes(bids: Sequence[tuple[str, str]], asks: Sequence[tuple[str, str]]
                     ) -> list[L2Change]:
    return [("bid", p, q) for p, q in bids] + [("offer", p, q) for p, q in asks]


def _plain(value: Decimal) -> str:
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


class CoinbaseSession(SpeakerSession):
    """One connection: its sequence numbers and subscriptions."""

    speaker: CoinbaseSpeaker

    def __init__(self, speaker: VenueSpeaker, conn_id: int, now_ns: int) -> None:
        super().__init__(speaker, conn_id, now_ns)
        self.seq = 0
        self.subs: dict[str, list[str]] = {}  # channel -> products
        self.next_heartbeat_ns: int | None = None
        self.counter = 41_690
        #: ``sequence_num`` of the latest ``l2_data`` frames sent (snapshots and updates)
        self.l2_seqs: deque[int] = deque(maxlen=1000)

    def _next(self) -> int:
        seq = self.seq
        self.seq += 1
        return seq

    # -- client frames ---------------------------------------------------------------------------

    def receive(self, frame: str | bytes, now_ns: int) -> list[Out]:
        try:
            req = msgspec.json.decode(frame)
            op, channel = req.get("type"), req.get("channel", "")
            products = [str(p) for p in req.get("product_ids", [])]
        except (msgspec.DecodeError, AttributeError):
            return [Out(error_frame("malformed request"), "error")]
        if op == "subscribe":
            return self._subscribe(str(channel), products, now_ns)
        if op == "unsubscribe":
            left = [p for p in self.subs.get(channel, []) if p not in products]
            if left:
                self.subs[channel] = left
            else:
                self.subs.pop(channel, None)
            for p in products:
                self.views.pop((p, "l2"), None)
            return [self._ack(now_ns)]
        return [Out(error_frame(f"unknown type {op!r}"), "error")]

    def _subscribe(self, channel: str, products: list[str], now_ns: int) -> list[Out]:
        if channel not in ("heartbeats", "level2", "market_trades"):
            return [Out(error_frame(f"unknown channel {channel}"), "error")]
        if channel != "heartbeats":
            for p in products:
                if not self.speaker.listed(p):
                    return [Out(error_frame(), "error")]
                refusal = self.refusal(p)
                if refusal == PERMANENT:
                    return [Out(error_frame(), "error", p)]
                if refusal is not None:
                    return [Out(error_frame(f"rate limit exceeded: {TRANSIENT_TEXT}"), "error",
                                p)]
        outs: list[Out] = []
        if channel == "level2":
            for p in products:
                view = self.view(p, "l2", None)
                bids, asks = view.snapshot(self._book(p))
                outs.append(self._l2(p, "snapshot", bids, asks, now_ns))
        elif channel == "market_trades":
            recent = [t for p in products
                      for t in self.speaker.market.recent_trades[("coinbase", p)]]
            recent.sort(key=lambda t: (t.ts_ns, t.trade_id))
            rows = [self._trade_row(t) for t in reversed(recent[-TRADE_SNAPSHOT:])]
            seq = self._next()
            outs.append(Out(trades_frame(seq, "snapshot", rows, iso_ns(now_ns)), "snapshot"))
        else:
            if self.next_heartbeat_ns is None:
                self.next_heartbeat_ns = now_ns + HEARTBEAT_NS
        names = ["heartbeats"] if channel == "heartbeats" else products
        have = self.subs.setdefault(channel, [])
        have.extend(p for p in names if p not in have)
        outs.append(self._ack(now_ns))
        return outs

    def _ack(self, now_ns: int) -> Out:
        current = {ch: list(ps) for ch, ps in sorted(self.subs.items())}
        return Out(subscriptions_frame(self._next(), current, iso_ns(now_ns)), "ack")

    # -- market ---------------------------------------------------------------------------------

    def market(self, event: MarketEvent, now_ns: int) -> list[Out]:
        product = event.symbol
        if isinstance(event, TradePrint):
            if product not in self.subs.get("market_trades", []):
                return []
            seq = self._next()
            return [Out(trades_frame(seq, "update", [self._trade_row(event)],
                                     iso_ns(event.ts_ns)), "trade", product)]
        if product not in self.subs.get("level2", []):
            return []
        view = self.views.get((product, "l2"))
        if view is None:
            return []
        bids, asks = view.diff(self._book(product))
        if not bids and not asks:
            return []
        return [self._l2(product, "update", bids, asks, event.ts_ns)]

    def _book(self, product: str) -> Any:
        return self.speaker.market.book("coinbase", product)

    def _l2(self, product: str, kind: str, bids: list[tuple[int, int]],
            asks: list[tuple[int, int]], ts_ns: int) -> Out:
        listing = self.speaker.market.listing("coinbase", product)
        changes = [("bid", listing.price_text(p), _plain(listing.size(q))) for p, q in bids]
        changes += [("offer", listing.price_text(p), _plain(listing.size(q))) for p, q in asks]
        t = iso_ns(ts_ns)
        seq = self._next()
        self.l2_seqs.append(seq)
        frame = l2_frame(seq, product, kind, changes, t, t)
        return Out(frame, "snapshot" if kind == "snapshot" else "delta", product)

    def _trade_row(self, trade: TradePrint) -> WireTrade:
        listing = self.speaker.market.listing("coinbase", trade.symbol)
        maker = "SELL" if trade.taker == "buy" else "BUY"
        return (trade.symbol, str(trade.trade_id), listing.price_text(trade.ticks),
                _plain(listing.size(trade.lots)), maker, iso_ns(trade.ts_ns))

    # -- heartbeats --------------------------------------------------------------------------

    def next_deadline(self) -> int | None:
        return self.next_heartbeat_ns

    def on_deadline(self, now_ns: int) -> list[Out]:
        if self.next_heartbeat_ns is None or now_ns < self.next_heartbeat_ns:
            return []
        self.next_heartbeat_ns += HEARTBEAT_NS
        self.counter += 1
        return [Out(heartbeat_frame(self._next(), self.counter, iso_ns(now_ns)), "heartbeat")]


class CoinbaseSpeaker(VenueSpeaker):
    name = "coinbase"
    path = "/"
    session_class = CoinbaseSession
    server_time_path = "/api/v3/brokerage/time"

    @classmethod
    def listing(cls, symbol: str, price: float) -> Listing:
        tick = Decimal("0.01") if price >= 1 else power_of_ten(price / 10_000)
        return Listing("coinbase", symbol, tick=tick, lot=Decimal("0.00000001"))

    def server_time(self, venue_ns: int) -> bytes:
        iso = datetime.fromtimestamp(venue_ns // 1_000_000 / 1000, UTC)
        return msgspec.json.encode({
            "iso": iso.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
            "epochSeconds": str(venue_ns // 1_000_000_000),
            "epochMillis": str(venue_ns // 1_000_000)})

    def rest(self, target: str) -> bytes | None:
        if target.split("?", 1)[0] != PRODUCTS_PATH:
            return None
        rows = []
        for sym in self.symbols():
            listing = self.market.listing(self.name, sym)
            rows.append({"product_id": sym, "price": "0", "base_increment": str(listing.lot),
                         "quote_increment": str(listing.tick), "status": "online",
                         "trading_disabled": False, "product_type": "SPOT"})
        return _encode({"products": rows, "num_products": len(rows)})


__all__ = ["BASE_TIME", "CoinbaseSession", "CoinbaseSpeaker", "envelope", "error_frame",
           "heartbeat_frame", "iso", "iso_ns", "l2_frame", "ladder", "snapshot_changes",
           "subscriptions_frame", "trades_frame"]
