"""A fake Coinbase Exchange (legacy ``ws-feed``) venue, and builders of its wire frames.

The builders write frames in the feed's real format (flat objects told apart by ``type``,
decimal strings for prices and sizes). :class:`FakeExchange` is a trio-websocket handler (serve
it with ``core.testing.fake_servers.serve_ws``) that behaves like the feed:

* a connection that sends no ``subscribe`` within 5 s is closed;
* ``subscribe`` frames (``product_ids`` + ``channels`` names) with a product it does not list are
  rejected whole: ``{"type":"error","message":"Failed to subscribe","reason":"X is not a valid
  product"}`` followed by the unchanged ``subscriptions`` list; otherwise the ``subscriptions``
  reply, then per channel a ``snapshot`` (``level2_batch``, from the fake's current book), the
  ``last_match`` (``matches``) and a first ``ticker``;
* once every product has ``level2_batch``, the scripted steps are sent (``l2update`` changes are
  applied to the fake's book even when ``dropped``: level2 has no sequence number, so the client
  cannot notice); ``heartbeat`` every second for each subscribed product.

Loopback only; no clocks except trio's (so ``autojump_clock`` drives it).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import msgspec
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, WebSocketRequest

from tests.fakes.coinbase import iso

SUBSCRIBE_WITHIN_S = 5.0
_encode = msgspec.json.Encoder().encode

# (side "buy"|"sell", price text, new size text)
Change = tuple[str, str, str]


def _text(obj: dict[str, object]) -> str:
    return _encode(obj).decode()


def snapshot_frame(product: str, bids: Sequence[tuple[str, str]],
                   asks: Sequence[tuple[str, str]], time: str | None = None) -> str:
    obj: dict[str, object] = {"type": "snapshot", "product_id": product,
                              "bids": [list(b) for b in bids], "asks": [list(a) for a in asks]}
    if time is not None:
        obj["time"] = time
    return _text(obj)


def l2update_frame(product: str, changes: Iterable[Change], time: str) -> str:
    return _text({"type": "l2update", "product_id": product,
                  "changes": [list(c) for c in changes], "time": time})


def match_frame(product: str, trade_id: int, price: str, size: str, maker_side: str, time: str,
                sequence: int = 50, kind: str = "match") -> str:
    return _text({"type": kind, "trade_id": trade_id, "maker_order_id": "ac928c66-ca53-498f-9c13",
                  "taker_order_id": "132fb6ae-456b-4654-b4e0", "side": maker_side,
                  "size": size, "price": price, "product_id": product, "sequence": sequence,
                  "time": time})


def ticker_frame(product: str, sequence: int, best: tuple[str, str, str, str], time: str | None,
                 price: str = "13.22", trade_id: int | None = None) -> str:
    bid, bid_size, ask, ask_size = best
    obj: dict[str, object] = {
        "type": "ticker", "sequence": sequence, "product_id": product, "price": price,
        "open_24h": "64675.22", "volume_24h": "2867.54", "low_24h": "64675.22",
        "high_24h": "65252.99", "volume_30d": "98783.6", "best_bid": bid,
        "best_bid_size": bid_size, "best_ask": ask, "best_ask_size": ask_size}
    if time is not None:
        obj.update(side="buy", time=time, trade_id=trade_id, last_size="0.01")
    return _text(obj)


def heartbeat_frame(product: str, sequence: int, last_trade_id: int, time: str) -> str:
    return _text({"type": "heartbeat", "sequence": sequence, "last_trade_id": last_trade_id,
                  "product_id": product, "time": time})


def subscriptions_frame(channels: dict[str, list[str]]) -> str:
    return _text({"type": "subscriptions",
                  "channels": [{"name": n, "product_ids": ps} for n, ps in channels.items()]})


def error_frame(reason: str, message: str = "Failed to subscribe") -> str:
    return _text({"type": "error", "message": message, "reason": reason})


@dataclass
class XStep:
    """One scripted push: book changes, a match (maker side), a ticker; ``dropped`` skips it."""

    product: str
    changes: list[Change] = field(default_factory=list)
    match: tuple[int, str, str, str] | None = None  # trade_id, price, size, maker side
    ticker: tuple[str, str, str, str] | None = None  # best bid, bid size, best ask, ask size
    dropped: bool = False
    pause_s: float = 0.0


@dataclass
class FakeExchange:
    """See the module docstring. ``books`` maps product -> (bids, asks) wire text."""

    books: dict[str, tuple[list[tuple[str, str]], list[tuple[str, str]]]]
    steps: list[XStep] = field(default_factory=list)
    last_trade: dict[str, int] = field(default_factory=dict)
    received: list[str] = field(default_factory=list)
    closed_unsubscribed: int = 0

    def __post_init__(self) -> None:
        self._bids = {p: dict(b) for p, (b, _) in self.books.items()}
        self._asks = {p: dict(a) for p, (_, a) in self.books.items()}
        self._seq = 1000

    def book_text(self, product: str) -> tuple[dict[str, str], dict[str, str]]:
        return self._bids[product], self._asks[product]

    def levels(self, product: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        """The fake's book of ``product`` as snapshot levels, best first."""
        bids = sorted(self._bids[product].items(), key=lambda kv: -float(kv[0]))
        asks = sorted(self._asks[product].items(), key=lambda kv: float(kv[0]))
        return bids, asks

    def apply(self, product: str, changes: Iterable[Change]) -> None:
        for side, px, size in changes:
            levels = self._bids[product] if side == "buy" else self._asks[product]
            if float(size) == 0:
                levels.pop(px, None)
            else:
                levels[px] = size

    def next_seq(self) -> int:
        self._seq += 1
        return self._seq

    async def handler(self, request: WebSocketRequest) -> None:
        ws = await request.accept()
        first: str | None = None
        with trio.move_on_after(SUBSCRIBE_WITHIN_S):
            first = str(await ws.get_message())
        if first is None:
            self.closed_unsubscribed += 1
            await ws.aclose(code=1008, reason="no subscribe within 5 seconds")
            return
        conn = _XConn(self, ws)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(conn.script)
                nursery.start_soon(conn.heartbeats)
                await conn.on_message(first)
                while True:
                    await conn.on_message(str(await ws.get_message()))
        except* ConnectionClosed:
            pass  # the client went away


class _XConn:
    def __init__(self, venue: FakeExchange, ws: WebSocketConnection) -> None:
        self.venue = venue
        self.ws = ws
        self.subs: dict[str, list[str]] = {}
        self.ready = trio.Event()

    async def on_message(self, text: str) -> None:
        self.venue.received.append(text)
        req = msgspec.json.decode(text)
        products: list[str] = list(req.get("product_ids", []))
        names = [c if isinstance(c, str) else c["name"] for c in req.get("channels", [])]
        if req.get("type") == "subscribe":
            bad = [p for p in products if p not in self.venue.books]
            if bad:
                await self.ws.send_message(error_frame(f"{bad[0]} is not a valid product"))
                await self.ws.send_message(subscriptions_frame(self.subs))
                return
            for name in names:
                have = self.subs.setdefault(name, [])
                have.extend(p for p in products if p not in have)
            await self.ws.send_message(subscriptions_frame(self.subs))
            for name in names:
                for p in products:
                    await self.first_push(name, p)
        elif req.get("type") == "unsubscribe":
            for name in names:
                left = [p for p in self.subs.get(name, []) if p not in products]
                if left:
                    self.subs[name] = left
                else:
                    self.subs.pop(name, None)
            await self.ws.send_message(subscriptions_frame(self.subs))
        if set(self.venue.books) <= set(self.subs.get("level2_batch", [])):
            self.ready.set()

    async def first_push(self, name: str, product: str) -> None:
        venue = self.venue
        if name == "level2_batch":
            bids, asks = venue.levels(product)
            await self.ws.send_message(snapshot_frame(product, bids, asks, iso(1)))
        elif name == "matches" and product in venue.last_trade:
            await self.ws.send_message(match_frame(product, venue.last_trade[product], "100.00",
                                                   "0.5", "buy", iso(0), kind="last_match"))
        elif name == "ticker":
            bids, asks = venue.book_text(product)
            bid = max(bids, key=float)
            ask = min(asks, key=float)
            await self.ws.send_message(ticker_frame(product, venue.next_seq(),
                                                    (bid, bids[bid], ask, asks[ask]), None))

    async def script(self) -> None:
        await self.ready.wait()
        venue = self.venue
        for i, step in enumerate(venue.steps):
            if step.pause_s:
                await trio.sleep(step.pause_s)
            t = iso(1000 * (i + 2))
            frames = []
            if step.changes:
                venue.apply(step.product, step.changes)
                frames.append(l2update_frame(step.product, step.changes, t))
            if step.match is not None:
                tid, px, size, side = step.match
                venue.last_trade[step.product] = tid
                frames.append(match_frame(step.product, tid, px, size, side, t,
                                          sequence=venue.next_seq()))
            if step.ticker is not None:
                frames.append(ticker_frame(step.product, venue.next_seq(), step.ticker, t,
                                           trade_id=venue.last_trade.get(step.product)))
            if not step.dropped:
                for frame in frames:
                    await self.ws.send_message(frame)

    async def heartbeats(self) -> None:
        n = 0
        while True:
            await trio.sleep(1.0)
            n += 1
            for p in self.subs.get("heartbeat", []):
                await self.ws.send_message(heartbeat_frame(
                    p, self.venue.next_seq(), self.venue.last_trade.get(p, 0), iso(n * 1_000_000)))
