"""A fake Bitget v2 public websocket server (USDT-FUTURES) speaking the real wire protocol, for
loopback tests.

* ``subscribe``/``unsubscribe`` requests carry many ``args``; each argument is acknowledged on
  its own (``{"event":"subscribe","arg":{...}}``), or rejected with
  ``{"event":"error","arg":{...},"code":30001,...}`` when the venue does not list it.
* The text ``ping`` is answered with the text ``pong``; a connection that sends no ``ping`` for
  ``ping_timeout_s`` is closed by the server, as Bitget does.
* ``books``: the venue keeps one live book per instrument. A subscription gets a snapshot of the
  book as it is now, then the scripted updates that remain, each with ``seq``/``pseq`` and the
  real CRC32 ``checksum`` (computed here, independently of the plugin). One update can be sent
  with a wrong checksum, or lost (applied by the venue but never sent, so the next one's
  ``pseq`` does not match), on the first subscription of that instrument only.
* ``books1``: the top level of the scripted book after each step, each push a snapshot.
* ``trade``: a snapshot of the first trades (newest first), then the rest one update each.

Test-only code: loopback, no real venue.
"""

from __future__ import annotations

import json
import zlib
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, WebSocketRequest

INST_TYPE = "USDT-FUTURES"
Wire = list[tuple[str, str]]
TradeRow = tuple[int, str, str, str, str]  # ts ms, price, size, side, trade id
Message = dict[str, Any]


def venue_checksum(bids: Wire, asks: Wire) -> int:
    """Bitget's checksum of best-first sides: top 25 interleaved, CRC32, signed 32-bit."""
    fields: list[str] = []
    for i in range(25):
        for side in (bids, asks):
            if i < len(side):
                fields += [side[i][0], side[i][1]]
    crc = zlib.crc32(":".join(fields).encode())
    return crc - (1 << 32) if crc & (1 << 31) else crc


@dataclass
class BookScript:
    """One instrument's book: the initial levels and the updates the venue applies in turn."""

    bids: Wire
    asks: Wire
    updates: list[tuple[Wire, Wire]] = field(default_factory=list)
    seq0: int = 1000
    seq_step: int = 1
    ts0_ms: int = 1_700_000_000_000
    ts_step_ms: int = 10


class VenueBook:
    """The venue's live book of one instrument (Decimal price -> wire text)."""

    def __init__(self, script: BookScript) -> None:
        self.script = script
        self.bids: dict[Decimal, tuple[str, str]] = {}
        self.asks: dict[Decimal, tuple[str, str]] = {}
        self.apply(script.bids, script.asks)
        self.position = 0  # updates applied so far
        self.seq = script.seq0

    def apply(self, bids: Wire, asks: Wire) -> None:
        for side, levels in ((self.bids, bids), (self.asks, asks)):
            for px, sz in levels:
                if Decimal(sz) == 0:
                    side.pop(Decimal(px), None)
                else:
                    side[Decimal(px)] = (px, sz)

    def sides(self) -> tuple[Wire, Wire]:
        return ([self.bids[k] for k in sorted(self.bids, reverse=True)],
                [self.asks[k] for k in sorted(self.asks)])

    def ts_ms(self) -> int:
        return self.script.ts0_ms + self.position * self.script.ts_step_ms

    def step(self) -> tuple[Wire, Wire, int, int]:
        """Apply the next update: (bids, asks, seq, pseq)."""
        bids, asks = self.script.updates[self.position]
        self.apply(bids, asks)
        self.position += 1
        pseq = self.seq
        self.seq += self.script.seq_step
        return bids, asks, self.seq, pseq


def book_states(script: BookScript) -> list[tuple[Wire, Wire, int, int]]:
    """(bids, asks, seq, ts ms) of the scripted book initially and after each update."""
    book = VenueBook(script)
    states = [(*book.sides(), book.seq, book.ts_ms())]
    while book.position < len(script.updates):
        book.step()
        states.append((*book.sides(), book.seq, book.ts_ms()))
    return states


def push(action: str, channel: str, inst: str, data: list[Any], ts_ms: int) -> str:
    return json.dumps({"action": action, "arg": {"instType": INST_TYPE, "channel": channel,
                                                 "instId": inst}, "data": data, "ts": ts_ms},
                      separators=(",", ":"))


@dataclass
class FakeBitget:
    """Serve with ``core.testing.fake_servers.serve_ws(fake.handler)``."""

    books: dict[str, BookScript] = field(default_factory=dict)  # instId -> book script
    trades: dict[str, list[TradeRow]] = field(default_factory=dict)  # instId -> trades, oldest 1st
    trade_snapshot_n: int = 2  # how many of the first trades the trade snapshot holds
    listed: set[str] | None = None  # instIds the venue lists (None: those with a script)
    push_interval_s: float = 0.01
    ping_timeout_s: float | None = 120.0
    bad_checksum_at: dict[str, int] = field(default_factory=dict)  # instId -> update index
    lost_update_at: dict[str, int] = field(default_factory=dict)  # instId -> update index
    send_checksum: bool = True
    # observations
    received: list[list[str]] = field(default_factory=list)  # raw client frames per connection
    closed_for_no_ping: list[int] = field(default_factory=list)  # connection indexes
    subscriptions: Counter[tuple[str, str]] = field(default_factory=Counter)
    connections: int = 0
    live: dict[str, VenueBook] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.live = {inst: VenueBook(script) for inst, script in self.books.items()}

    def is_listed(self, inst: str) -> bool:
        if self.listed is not None:
            return inst in self.listed
        return inst in self.books or inst in self.trades

    async def handler(self, request: WebSocketRequest) -> None:
        ws = await request.accept()
        index = self.connections
        self.connections += 1
        self.received.append([])
        last_ping = [trio.current_time()]
        scopes: dict[tuple[str, str], trio.CancelScope] = {}
        try:
            async with trio.open_nursery() as nursery:
                if self.ping_timeout_s is not None:
                    nursery.start_soon(self._ping_watch, ws, last_ping, index)
                while True:
                    text = await ws.get_message()
                    assert isinstance(text, str)
                    self.received[index].append(text)
                    if text == "ping":
                        last_ping[0] = trio.current_time()
                        await ws.send_message("pong")
                        continue
                    await self._request(ws, text, nursery, scopes)
        except* ConnectionClosed:
            pass  # the client went away (or the server closed it for want of a ping)

    async def _ping_watch(self, ws: WebSocketConnection, last_ping: list[float],
                          index: int) -> None:
        assert self.ping_timeout_s is not None
        while True:
            wait = last_ping[0] + self.ping_timeout_s - trio.current_time()
            if wait <= 0:
                self.closed_for_no_ping.append(index)
                await ws.aclose(code=1000, reason="no ping received")
                return
            await trio.sleep(wait)

    async def _request(self, ws: WebSocketConnection, text: str, nursery: trio.Nursery,
                       scopes: dict[tuple[str, str], trio.CancelScope]) -> None:
        try:
            msg = json.loads(text)
        except ValueError:
            await ws.send_message(json.dumps({"event": "error", "code": 30012,
                                              "msg": "param error"}))
            return
        op = msg.get("op")
        args = msg.get("args")
        if op not in ("subscribe", "unsubscribe") or not isinstance(args, list):
            await ws.send_message(json.dumps({"event": "error", "code": 30016,
                                              "msg": "Param error"}))
            return
        for arg in args:
            channel, inst = arg.get("channel"), arg.get("instId")
            key = (channel, inst)
            if arg.get("instType") != INST_TYPE or not self.is_listed(inst) or channel not in (
                    "books", "books1", "trade"):
                await ws.send_message(json.dumps({
                    "event": "error", "arg": arg, "code": 30001, "op": op,
                    "msg": f"instType:{arg.get('instType')},channel:{channel},instId:{inst} "
                           f"doesn't exist"}))
                continue
            if op == "unsubscribe":
                scope = scopes.pop(key, None)
                if scope is not None:
                    scope.cancel()
                await ws.send_message(json.dumps({"event": "unsubscribe", "arg": arg}))
                continue
            await ws.send_message(json.dumps({"event": "subscribe", "arg": arg}))
            if key in scopes:
                continue
            self.subscriptions[key] += 1
            scopes[key] = await nursery.start(self._serve_arg, ws, channel, inst)

    async def _serve_arg(self, ws: WebSocketConnection, channel: str, inst: str,
                         task_status: trio.TaskStatus[trio.CancelScope]) -> None:
        with trio.CancelScope() as scope:
            task_status.started(scope)
            if channel == "books" and inst in self.live:
                await self._push_books(ws, inst, self.subscriptions[(channel, inst)] == 1)
            elif channel == "books1" and inst in self.books:
                await self._push_books1(ws, inst)
            elif channel == "trade":
                await self._push_trades(ws, inst)

    async def _push_books(self, ws: WebSocketConnection, inst: str, first: bool) -> None:
        book = self.live[inst]
        await trio.sleep(self.push_interval_s)
        bids, asks = book.sides()
        await ws.send_message(push("snapshot", "books", inst, [self._entry(
            bids, asks, bids, asks, book.seq, 0, book.ts_ms())], book.ts_ms()))
        while book.position < len(book.script.updates):
            await trio.sleep(self.push_interval_s)
            index = book.position
            ub, ua, seq, pseq = book.step()
            if first and self.lost_update_at.get(inst) == index:
                continue
            entry = self._entry(ub, ua, *book.sides(), seq, pseq, book.ts_ms())
            if first and self.bad_checksum_at.get(inst) == index and "checksum" in entry:
                entry["checksum"] ^= 0x5A5A5A5A
            await ws.send_message(push("update", "books", inst, [entry], book.ts_ms()))

    async def _push_books1(self, ws: WebSocketConnection, inst: str) -> None:
        for bids, asks, seq, ts in book_states(self.books[inst]):
            await trio.sleep(self.push_interval_s)
            await ws.send_message(push("snapshot", "books1", inst, [self._entry(
                bids[:1], asks[:1], bids[:1], asks[:1], seq, seq - 1, ts)], ts))

    async def _push_trades(self, ws: WebSocketConnection, inst: str) -> None:
        rows = self.trades.get(inst, [])
        n = self.trade_snapshot_n
        await trio.sleep(self.push_interval_s)
        snap = [_trade(r) for r in reversed(rows[:n])]
        await ws.send_message(push("snapshot", "trade", inst, snap,
                                   rows[n - 1][0] if rows[:n] else 0))
        for row in rows[n:]:
            await trio.sleep(self.push_interval_s)
            await ws.send_message(push("update", "trade", inst, [_trade(row)], row[0]))

    def _entry(self, bids: Wire, asks: Wire, book_bids: Wire, book_asks: Wire, seq: int,
               pseq: int, ts_ms: int) -> Message:
        entry: Message = {"asks": [list(x) for x in asks], "bids": [list(x) for x in bids]}
        if self.send_checksum:
            entry["checksum"] = venue_checksum(book_bids, book_asks)
        entry.update({"ts": str(ts_ms), "seq": seq, "pseq": pseq})
        return entry


def _trade(row: TradeRow) -> Message:
    ts, price, size, side, trade_id = row
    return {"ts": str(ts), "price": price, "size": size, "side": side, "tradeId": trade_id}
