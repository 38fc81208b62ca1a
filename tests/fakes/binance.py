"""A fake Binance USD-M futures venue (websocket + REST) speaking the real wire protocol, for
loopback tests.

* Two routed endpoints, as the venue has them: ``/public/ws`` serves ``<symbol>@bookTicker`` and
  ``<symbol>@depth@100ms``, ``/market/ws`` serves ``<symbol>@aggTrade``. A stream subscribed on
  the other endpoint is acknowledged and then silent, as Binance does with unrouted streams.
* ``SUBSCRIBE`` / ``UNSUBSCRIBE`` / ``LIST_SUBSCRIPTIONS`` get ``{"result": ..., "id": n}``.
* One market per symbol evolves on a clock shared by every connection (:meth:`FakeBinance.run`,
  one tick every ``tick_s`` from the first subscription on): each tick applies the next scripted
  update, sends it as a ``depthUpdate`` (``U``/``u``/``pu``) to every depth subscriber, a
  ``bookTicker`` when the top changed, and the trades scheduled at that tick as ``aggTrade``
  pushes (ids consecutive).
* REST: ``/fapi/v1/depth`` returns the market's book as it is now with its ``lastUpdateId``;
  ``/fapi/v1/exchangeInfo`` lists the markets (serve :meth:`FakeBinance.rest` with
  ``core.testing.fake_servers.serve_http``).
* Faults: diffs never sent on a given ``/public`` connection (so the next ``pu`` does not
  match); connections closed at a given age (the venue's 24 h cut), or only the first one of an
  endpoint; depth snapshots refused (404) after a number of them; websocket pings from the
  server, whose pongs are counted.

Test-only code: loopback, no real venue.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, WebSocketRequest

Wire = list[tuple[str, str]]
TradeSpec = tuple[str, str, bool]  # price, quantity, buyer is maker
EPOCH_MS = 1_786_310_818_000
PUBLIC = "/public/ws"
MARKET = "/market/ws"
ROUTE = {"bookTicker": PUBLIC, "depth@100ms": PUBLIC, "aggTrade": MARKET}


@dataclass
class MarketScript:
    """One symbol: its initial book, the updates applied one per tick, trades per tick."""

    bids: Wire
    asks: Wire
    updates: list[tuple[Wire, Wire]] = field(default_factory=list)
    trades: dict[int, list[TradeSpec]] = field(default_factory=dict)  # update index -> trades
    u0: int = 7_000_000_000
    ids_per_update: int = 3
    trade_id0: int = 900_000_000


@dataclass
class VenueTrade:
    id: int
    price: str
    qty: str
    buyer_maker: bool
    ms: int


class Market:
    """The venue's live state of one symbol."""

    def __init__(self, native: str, script: MarketScript) -> None:
        self.native = native
        self.script = script
        self.bids: dict[Decimal, tuple[str, str]] = {}
        self.asks: dict[Decimal, tuple[str, str]] = {}
        self._apply(script.bids, script.asks)
        self.u = script.u0
        self.position = 0
        self.next_trade_id = script.trade_id0
        self.trades: list[VenueTrade] = []
        self.tops: dict[int, tuple[float, float, float, float]] = {self.u: self.top()}

    def _apply(self, bids: Wire, asks: Wire) -> None:
        for side, levels in ((self.bids, bids), (self.asks, asks)):
            for px, sz in levels:
                if Decimal(sz) == 0:
                    side.pop(Decimal(px), None)
                else:
                    side[Decimal(px)] = (px, sz)

    def sides(self) -> tuple[Wire, Wire]:
        return ([self.bids[k] for k in sorted(self.bids, reverse=True)],
                [self.asks[k] for k in sorted(self.asks)])

    def top(self) -> tuple[float, float, float, float]:
        bids, asks = self.sides()
        return (float(bids[0][0]), float(bids[0][1]), float(asks[0][0]), float(asks[0][1]))

    def step(self) -> list[tuple[str, str]] | None:
        """Apply the next update: (stream suffix, payload) pushes, or None when done."""
        if self.position >= len(self.script.updates):
            return None
        index = self.position
        ms = EPOCH_MS + (index + 1) * 10
        bids, asks = self.script.updates[index]
        before = self.top()
        self._apply(bids, asks)
        first, prev = self.u + 1, self.u
        self.u += self.script.ids_per_update
        self.position += 1
        pushes = [("depth@100ms", json.dumps({
            "e": "depthUpdate", "E": ms + 1, "T": ms, "s": self.native, "U": first, "u": self.u,
            "pu": prev, "b": [list(x) for x in bids], "a": [list(x) for x in asks]}))]
        top = self.top()
        self.tops[self.u] = top
        if top != before:
            (b, bq), (a, aq) = self.sides()[0][0], self.sides()[1][0]
            pushes.append(("bookTicker", json.dumps({
                "e": "bookTicker", "u": self.u, "s": self.native, "b": b, "B": bq, "a": a,
                "A": aq, "T": ms, "E": ms + 1})))
        for price, qty, buyer_maker in self.script.trades.get(index, []):
            trade = VenueTrade(self.next_trade_id, price, qty, buyer_maker, ms)
            self.next_trade_id += 1
            self.trades.append(trade)
            pushes.append(("aggTrade", json.dumps({
                "e": "aggTrade", "E": ms + 2, "s": self.native, "a": trade.id, "p": price,
                "q": qty, "f": trade.id * 2, "l": trade.id * 2 + 1, "T": ms,
                "m": buyer_maker})))
        return pushes

    def rest_depth(self) -> bytes:
        bids, asks = self.sides()
        return json.dumps({"lastUpdateId": self.u, "E": EPOCH_MS, "T": EPOCH_MS,
                           "bids": [list(x) for x in bids],
                           "asks": [list(x) for x in asks]}).encode()


@dataclass(eq=False)
class Conn:
    index: int
    path: str
    public_index: int  # ordinal among /public connections (-1 on /market)
    send: trio.MemorySendChannel[str]
    opened: float
    streams: set[str] = field(default_factory=set)
    received: list[dict[str, Any]] = field(default_factory=list)
    pongs: int = 0
    lost_pushes: int = 0  # the connection's outgoing buffer was full or closed
    closed: bool = False
    cut_by_venue: bool = False


@dataclass
class FakeBinance:
    """Serve :meth:`handler` with ``serve_ws``, :meth:`rest` with ``serve_http``; start
    :meth:`run` (the market clock) in the test's nursery."""

    scripts: dict[str, MarketScript]
    tick_s: float = 0.02
    #: (ordinal of the /public connection, native symbol) -> update indexes never sent on it
    drop_diffs: dict[tuple[int, str], set[int]] = field(default_factory=dict)
    cut_after_s: float | None = None  # the venue closes connections this old
    cut_first: dict[str, float] = field(default_factory=dict)  # path -> close its 1st after s
    depth_fails_after: int | None = None  # depth snapshots served before all others are 404
    ping_every_s: float | None = None  # websocket pings from the server
    conns: list[Conn] = field(default_factory=list)
    depth_calls: Counter[str] = field(default_factory=Counter)
    markets: dict[str, Market] = field(default_factory=dict)
    done: trio.Event = field(default_factory=trio.Event)  # every script played out
    subscribed: trio.Event = field(default_factory=trio.Event)  # a first subscription came

    def __post_init__(self) -> None:
        self.markets = {native: Market(native, s) for native, s in self.scripts.items()}

    # -- the market clock ---------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await self.subscribed.wait()  # the market moves once a client listens
        start = trio.current_time()
        tick = 0
        while True:
            # ticks on a fixed schedule: a loaded machine catches up instead of drifting late
            tick += 1
            await trio.sleep_until(start + tick * self.tick_s)
            active = False
            for native, market in self.markets.items():
                index = market.position
                pushes = market.step()
                if pushes is None:
                    continue
                active = True
                for kind, text in pushes:
                    self._broadcast(native, kind, text, index)
            if not active:
                self.done.set()

    def _broadcast(self, native: str, kind: str, text: str, index: int) -> None:
        stream = f"{native.lower()}@{kind}"
        for conn in self.conns:
            if conn.closed or stream not in conn.streams or conn.path != ROUTE[kind]:
                continue
            if kind == "depth@100ms" and \
                    index in self.drop_diffs.get((conn.public_index, native), set()):
                continue
            try:
                conn.send.send_nowait(text)
            except (trio.WouldBlock, trio.ClosedResourceError):
                conn.lost_pushes += 1

    # -- REST ------------------------------------------------------------------------------------

    def rest(self, target: str) -> bytes | None:
        parts = urlsplit(target)
        if parts.path == "/fapi/v1/exchangeInfo":
            return json.dumps({"timezone": "UTC", "symbols": [
                {"symbol": native, "pair": native, "contractType": "PERPETUAL",
                 "status": "TRADING", "baseAsset": native.removesuffix("USDT"),
                 "quoteAsset": "USDT", "marginAsset": "USDT", "filters": [
                     {"filterType": "PRICE_FILTER", "tickSize": "0.10"},
                     {"filterType": "LOT_SIZE", "stepSize": "0.001"}]}
                for native in self.markets]}).encode()
        if parts.path == "/fapi/v1/depth":
            query = parse_qs(parts.query)
            native = query.get("symbol", [""])[0]
            if native not in self.markets or query.get("limit") != ["1000"]:
                return None
            if self.depth_fails_after is not None and \
                    sum(self.depth_calls.values()) >= self.depth_fails_after:
                return None
            self.depth_calls[native] += 1
            return self.markets[native].rest_depth()
        return None

    # -- websocket -------------------------------------------------------------------------------

    async def handler(self, request: WebSocketRequest) -> None:
        path = request.path
        if path not in (PUBLIC, MARKET):
            await request.reject(404)
            return
        ws = await request.accept()
        send, receive = trio.open_memory_channel[str](100_000)
        public_index = sum(1 for c in self.conns if c.path == PUBLIC) if path == PUBLIC else -1
        conn = Conn(len(self.conns), path, public_index, send, trio.current_time())
        self.conns.append(conn)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._writer, ws, receive)
                first_on_path = sum(1 for c in self.conns if c.path == path) == 1
                cut = self.cut_first.get(path) if first_on_path else None
                cut = self.cut_after_s if cut is None else cut
                if cut is not None:
                    nursery.start_soon(self._cut, ws, conn, cut)
                if self.ping_every_s is not None:
                    nursery.start_soon(self._pinger, ws, conn)
                while True:
                    msg = json.loads(await ws.get_message())
                    conn.received.append(msg)
                    await ws.send_message(json.dumps(self._answer(conn, msg)))
        except* ConnectionClosed:
            pass  # the client went away, or the venue cut the connection
        finally:
            conn.closed = True

    def _answer(self, conn: Conn, msg: dict[str, Any]) -> dict[str, Any]:
        method, params, req_id = msg.get("method"), msg.get("params", []), msg.get("id")
        if method == "SUBSCRIBE":
            conn.streams.update(params)
            self.subscribed.set()
            return {"result": None, "id": req_id}
        if method == "UNSUBSCRIBE":
            conn.streams.difference_update(params)
            return {"result": None, "id": req_id}
        if method == "LIST_SUBSCRIPTIONS":
            return {"result": sorted(conn.streams), "id": req_id}
        return {"error": {"code": 2, "msg": f"Invalid request: unknown method {method!r}"},
                "id": req_id}

    async def _writer(self, ws: WebSocketConnection,
                      receive: trio.MemoryReceiveChannel[str]) -> None:
        async for text in receive:
            await ws.send_message(text)

    async def _cut(self, ws: WebSocketConnection, conn: Conn, after_s: float) -> None:
        await trio.sleep(after_s)
        conn.cut_by_venue = True
        await ws.aclose(code=1000, reason="connection too old")

    async def _pinger(self, ws: WebSocketConnection, conn: Conn) -> None:
        assert self.ping_every_s is not None
        while True:
            await trio.sleep(self.ping_every_s)
            with trio.move_on_after(5):
                await ws.ping()  # returns when the client's pong arrives
                conn.pongs += 1


def walk_script(start_bid: float, updates: int, *, trades_every: int = 3,
                step: float = 0.1) -> MarketScript:
    """A book that drifts up and down by ``step``: 5 levels a side, one level changed per
    update, a trade every ``trades_every`` updates."""
    def px(x: float) -> str:
        return f"{x:.1f}"

    bids: Wire = [(px(start_bid - i * step), f"{1 + i}.000") for i in range(5)]
    asks: Wire = [(px(start_bid + (i + 1) * step), f"{2 + i}.500") for i in range(5)]
    ups: list[tuple[Wire, Wire]] = []
    trades: dict[int, list[TradeSpec]] = {}
    for n in range(updates):
        k = n % 4
        if k == 0:
            ups.append(([(px(start_bid - 2 * step), f"{3 + n % 7}.250")], []))
        elif k == 1:
            ups.append(([], [(px(start_bid + 2 * step), f"{n % 5 + 1}.125")]))
        elif k == 2:
            ups.append(([(px(start_bid), f"{n % 3 + 1}.500")], [(px(start_bid + 6 * step), "0")]))
        else:
            ups.append(([(px(start_bid - 5 * step), f"0.{n % 8 + 1}50")],
                        [(px(start_bid + 6 * step), "4.000")]))
        if n % trades_every == 0:
            trades[n] = [(px(start_bid + step), f"0.{n % 9 + 1}00", n % 2 == 0)]
    return MarketScript(bids, asks, ups, trades)
