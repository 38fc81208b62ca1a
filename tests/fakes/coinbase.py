"""A fake Coinbase Advanced Trade websocket venue, and builders of its wire frames.

The builders write frames in the venue's real format (envelope with ``channel``, ``timestamp``,
``sequence_num``, ``events``; decimal strings for prices and sizes) for protocol tests.
:class:`FakeAdvancedTrade` is a trio-websocket handler (serve it with
``core.testing.fake_servers.serve_ws``) that behaves like the venue for one or more connections:

* ``subscribe``/``unsubscribe`` frames (one channel each) are answered with a ``subscriptions``
  frame listing the connection's whole current subscription set; a product it does not list gets
  ``{"type":"error","message":"failure to subscribe"}`` instead;
* subscribing ``level2`` sends one full-book ``l2_data`` snapshot per product (from the fake's
  current book, so a resubscription after a loss brings the missed changes), before the ack;
  ``market_trades`` sends a snapshot of recent trades before its ack;
* once every channel in ``script_after`` is subscribed, the scripted steps are sent (book updates
  are applied to the fake's book even when dropped), then ``heartbeats`` every second;
* ``drop_seqs``: sequence numbers consumed but never sent, i.e. lost messages.

Loopback only; no clocks except trio's (so ``autojump_clock`` drives it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import msgspec
import trio
from trio_websocket import (
    ConnectionClosed,
    WebSocketConnection,
    WebSocketRequest,
    open_websocket_url,
)

from core.protocol import ExchangeProtocol
from core.schema import Event

BASE_TIME = datetime(2026, 8, 9, 21, 5, 48, tzinfo=UTC)
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


def envelope(channel: str, seq: int, events: list[dict[str, object]],
             timestamp: str | None = None) -> str:
    return _encode({"channel": channel, "client_id": "", "timestamp": timestamp or iso(seq),
                    "sequence_num": seq, "events": events}).decode()


def l2_frame(seq: int, product: str, kind: str, changes: Iterable[L2Change],
             event_time: str | None = None) -> str:
    """An ``l2_data`` frame with one ``snapshot`` or ``update`` event."""
    et = event_time or iso(seq)
    updates = [{"side": side, "event_time": et, "price_level": px, "new_quantity": qty}
               for side, px, qty in changes]
    return envelope("l2_data", seq, [{"type": kind, "product_id": product, "updates": updates}])


def trades_frame(seq: int, kind: str, trades: Sequence[WireTrade]) -> str:
    """A ``market_trades`` frame; ``trades`` newest first, as the venue lists them."""
    rows = [{"product_id": p, "trade_id": tid, "price": px, "size": sz, "time": t, "side": side}
            for p, tid, px, sz, side, t in trades]
    return envelope("market_trades", seq, [{"type": kind, "trades": rows}])


def heartbeat_frame(seq: int, counter: int) -> str:
    now = BASE_TIME + timedelta(seconds=counter)
    text = now.strftime("%Y-%m-%d %H:%M:%S.%f") + f"045 +0000 UTC m=+{counter}.260485341"
    return envelope("heartbeats", seq, [{"current_time": text, "heartbeat_counter": counter}])


def subscriptions_frame(seq: int, subscriptions: dict[str, list[str]]) -> str:
    return envelope("subscriptions", seq, [{"subscriptions": subscriptions}])


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


@dataclass
class Step:
    """One scripted push: book changes of a product, trades, or a pause (seconds)."""

    product: str = ""
    changes: list[L2Change] = field(default_factory=list)
    trades: list[WireTrade] = field(default_factory=list)
    pause_s: float = 0.0


@dataclass
class FakeAdvancedTrade:
    """See the module docstring. ``books`` maps product -> (bids, asks) wire text."""

    books: dict[str, tuple[list[tuple[str, str]], list[tuple[str, str]]]]
    steps: list[Step] = field(default_factory=list)
    recent_trades: list[WireTrade] = field(default_factory=list)
    script_after: frozenset[str] = frozenset({"level2"})
    drop_seqs: frozenset[int] = frozenset()
    heartbeat_every_s: float = 1.0
    received: list[str] = field(default_factory=list)
    sent: list[str] = field(default_factory=list)
    connections: int = 0

    def __post_init__(self) -> None:
        self._bids = {p: dict(b) for p, (b, _) in self.books.items()}
        self._asks = {p: dict(a) for p, (_, a) in self.books.items()}

    def book_text(self, product: str) -> tuple[dict[str, str], dict[str, str]]:
        """The fake's current book of ``product``: price text -> size text per side."""
        return self._bids[product], self._asks[product]

    async def handler(self, request: WebSocketRequest) -> None:
        ws = await request.accept()
        self.connections += 1
        conn = _Conn(self, ws)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(conn.script)
                await conn.serve()
        except* ConnectionClosed:
            pass  # the client went away

    # -- the venue's side of a change --------------------------------------------------------

    def apply(self, product: str, changes: Iterable[L2Change]) -> None:
        bids, asks = self._bids[product], self._asks[product]
        for side, px, qty in changes:
            levels = bids if side == "bid" else asks
            if float(qty) == 0:
                levels.pop(px, None)
            else:
                levels[px] = qty

    def snapshot_of(self, product: str) -> list[L2Change]:
        bids = sorted(self._bids[product].items(), key=lambda kv: -float(kv[0]))
        asks = sorted(self._asks[product].items(), key=lambda kv: float(kv[0]))
        return snapshot_changes(bids, asks)


class _Conn:
    """One connection's state: sequence numbers, subscriptions."""

    def __init__(self, venue: FakeAdvancedTrade, ws: WebSocketConnection) -> None:
        self.venue = venue
        self.ws = ws
        self.seq = 0
        self.subs: dict[str, list[str]] = {}
        self.lock = trio.Lock()
        self.ready = trio.Event()

    async def push(self, build: Callable[[int], str]) -> None:
        """Send the frame ``build(seq)`` with the next sequence number, unless it is dropped."""
        async with self.lock:
            seq = self.seq
            self.seq += 1
            frame = build(seq)
            if seq in self.venue.drop_seqs:
                return
            self.venue.sent.append(frame)
            await self.ws.send_message(frame)

    async def serve(self) -> None:
        while True:
            text = await self.ws.get_message()
            self.venue.received.append(str(text))
            req = msgspec.json.decode(text)
            op, channel = req.get("type"), req.get("channel", "")
            products = list(req.get("product_ids", []))
            if op == "subscribe":
                await self.subscribe(channel, products)
            elif op == "unsubscribe":
                left = [p for p in self.subs.get(channel, []) if p not in products]
                if left:
                    self.subs[channel] = left
                else:
                    self.subs.pop(channel, None)
                await self.ack()
            if self.venue.script_after.issubset(self.subs):
                self.ready.set()

    async def subscribe(self, channel: str, products: list[str]) -> None:
        if channel != "heartbeats" and any(p not in self.venue.books for p in products):
            async with self.lock:
                await self.ws.send_message(error_frame())
            return
        if channel == "level2":
            for p in products:
                changes = self.venue.snapshot_of(p)
                await self.push(lambda s, p=p, c=changes: l2_frame(s, p, "snapshot", c))
        elif channel == "market_trades":
            recent = [t for t in self.venue.recent_trades if t[0] in products]
            await self.push(lambda s: trades_frame(s, "snapshot", recent))
        names = ["heartbeats"] if channel == "heartbeats" else products
        have = self.subs.setdefault(channel, [])
        have.extend(p for p in names if p not in have)
        await self.ack()

    async def ack(self) -> None:
        current = {ch: list(ps) for ch, ps in sorted(self.subs.items())}
        await self.push(lambda s: subscriptions_frame(s, current))

    async def script(self) -> None:
        await self.ready.wait()
        for step in self.venue.steps:
            if step.pause_s:
                await trio.sleep(step.pause_s)
            if step.changes:
                self.venue.apply(step.product, step.changes)
                await self.push(lambda s, st=step: l2_frame(s, st.product, "update", st.changes))
            if step.trades:
                await self.push(lambda s, st=step: trades_frame(s, "update", st.trades))
        counter = 41691
        while True:
            if "heartbeats" in self.subs:
                await self.push(lambda s, c=counter: heartbeat_frame(s, c))
                counter += 1
            await trio.sleep(self.venue.heartbeat_every_s)


async def drive(proto: ExchangeProtocol, url: str, until: Callable[[list[Event]], bool]
                ) -> list[Event]:
    """Run ``proto`` over a real websocket client against ``url`` until ``until(events)``.

    Time is trio's clock in ns (virtual under ``autojump_clock``). Frames the protocol queues are
    sent after every received frame, as the session does.
    """
    events: list[Event] = []

    def now() -> int:
        return int(trio.current_time() * 1e9)

    async with open_websocket_url(url, max_message_size=proto.max_message_bytes) as ws:
        events.extend(proto.connection_made(now()))
        for out in proto.frames_to_send():
            await ws.send_message(out)
        while not until(events):
            frame = await ws.get_message()
            events.extend(proto.receive(frame, now()))
            for out in proto.frames_to_send():
                await ws.send_message(out)
    events.extend(proto.connection_lost(now()))
    return events
