"""A fake Gate.io USDT futures v4 websocket server, speaking the real wire protocol, for tests.

Serve it with ``core.testing.fake_servers.serve_ws(fake.handler)``. What it does:

* acks ``subscribe``/``unsubscribe`` requests (echoing ``id`` and ``payload`` like today's servers,
  or neither with ``echo=False`` like the 2023 ones); a second subscription of a live stream is
  refused with Gate's ``Alert sub`` error;
* answers ``futures.ping`` with ``futures.pong``;
* for each contract in ``contracts`` pushes scripted ``futures.book_ticker``, ``futures.obu``
  (a ``full`` snapshot then deltas, one of them empty, one removing a level, arrays unsorted) and
  ``futures.trades`` frames; sizes are contract counts, as Gate sends them;
* ``break_at``: the first obu stream skips one update id before that delta (once per run);
* contracts not in ``contracts`` are acked ``success`` and then stay silent.

Engine times inside pushes (``t``, ``create_time_ms``) are ``T0_MS`` plus the push's update or
trade id, so they are known in advance whatever the clock. Loopback test helper only; all timing is
``trio.sleep`` so tests can run on a mock clock.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, WebSocketRequest

EPOCH_S = 1_700_000_000  # wall-clock second that the fake's trio clock 0 stands for
T0_MS = 1_700_000_000_000  # engine times in pushes are T0_MS + the update (or trade) id
PUSH_INTERVAL_S = 0.02


@dataclass
class FakeContract:
    """A scripted book: best bid ``bid``, best ask ``bid + tick``, sizes in contracts."""

    bid: float
    tick: float
    first_id: int = 1000


def default_deltas(c: FakeContract) -> list[tuple[list[list[str]], list[list[str]]]]:
    """Three deltas: a size change plus an unsorted two-level ask update, an empty delta, and one
    that removes the best bid."""
    b0, a0 = c.bid, c.bid + c.tick
    return [
        ([[_px(b0), "900"]], [[_px(a0 + 2 * c.tick), "5"], [_px(a0), "250"]]),
        ([], []),
        ([[_px(b0), "0"]], []),
    ]


def _px(x: float) -> str:
    return f"{x:.10f}".rstrip("0").rstrip(".")


@dataclass
class GateFuturesFake:
    contracts: dict[str, FakeContract]
    break_at: int | None = None
    echo: bool = True
    received: list[dict[str, Any]] = field(default_factory=list)
    connections: int = 0
    pings: int = 0
    _ids: dict[str, int] = field(default_factory=dict)
    _broken: bool = False

    # -- frames ----------------------------------------------------------------------------

    @staticmethod
    def now_s() -> int:
        return EPOCH_S + int(trio.current_time())

    @staticmethod
    def now_ms() -> int:
        return EPOCH_S * 1000 + int(trio.current_time() * 1000)

    def frame(self, channel: str, event: str, result: Any, **extra: Any) -> str:
        return json.dumps({"time": self.now_s(), "time_ms": self.now_ms(), "channel": channel,
                           "event": event, **extra, "result": result})

    def reply(self, req: dict[str, Any], error: str | None = None) -> str:
        extra: dict[str, Any] = {}
        if self.echo:
            if "id" in req:
                extra["id"] = req["id"]
            extra["conn_id"] = "fake0001"
            extra["payload"] = req.get("payload", [])
        if error is not None:
            extra["error"] = {"code": 2, "message": error}
        return self.frame(req.get("channel", ""), req.get("event", ""),
                          {"status": "fail" if error else "success"}, **extra)

    def next_id(self, channel: str, contract: str, step: int = 1) -> tuple[int, int]:
        """(U, u) of the next push of ``channel`` for ``contract``, spanning ``step`` ids.

        Each channel counts on its own, so a channel's ids stay contiguous whatever the others
        push in between."""
        key = f"{channel}:{contract}"
        last = self._ids.setdefault(key, self.contracts[contract].first_id)
        self._ids[key] = last + step
        return last + 1, last + step

    # -- streams ---------------------------------------------------------------------------

    async def push_book_ticker(self, ws: WebSocketConnection, contract: str) -> None:
        c = self.contracts[contract]
        for bid_size, ask_size in ((1200, 300), (1500, 300)):
            _, u = self.next_id("futures.book_ticker", contract)
            await ws.send_message(self.frame("futures.book_ticker", "update", {
                "t": T0_MS + u, "u": u, "s": contract, "b": _px(c.bid), "B": bid_size,
                "a": _px(c.bid + c.tick), "A": ask_size}))
            await trio.sleep(PUSH_INTERVAL_S)

    async def push_obu(self, ws: WebSocketConnection, contract: str, stream: str) -> None:
        c = self.contracts[contract]
        _, u = self.next_id("futures.obu", contract)
        b0, a0 = c.bid, c.bid + c.tick
        await ws.send_message(self.frame("futures.obu", "update", {
            "t": T0_MS + u, "full": True, "s": stream, "u": u,
            "b": [[_px(b0), "1000"], [_px(b0 - c.tick), "2000"]],
            "a": [[_px(a0), "300"], [_px(a0 + c.tick), "400"]]}))
        for n, (bids, asks) in enumerate(default_deltas(c), start=1):
            await trio.sleep(PUSH_INTERVAL_S)
            if self.break_at == n and not self._broken:
                self._broken = True
                self.next_id("futures.obu", contract)  # an id the client never sees
            start, end = self.next_id("futures.obu", contract, 2)
            result: dict[str, Any] = {"t": T0_MS + end, "s": stream, "U": start, "u": end}
            if bids:
                result["b"] = bids
            if asks:
                result["a"] = asks
            await ws.send_message(self.frame("futures.obu", "update", result))
        await trio.sleep_forever()

    async def push_trades(self, ws: WebSocketConnection, contract: str) -> None:
        c = self.contracts[contract]
        await trio.sleep(PUSH_INTERVAL_S)
        await ws.send_message(self.frame("futures.trades", "update", [
            {"id": 501, "create_time": (T0_MS + 501) // 1000, "create_time_ms": T0_MS + 501,
             "contract": contract, "size": -25, "price": _px(c.bid)},
            {"id": 502, "create_time": (T0_MS + 502) // 1000, "create_time_ms": T0_MS + 502,
             "contract": contract, "size": 40, "price": _px(c.bid + c.tick)},
        ]))

    # -- handler ---------------------------------------------------------------------------

    async def handler(self, request: WebSocketRequest) -> None:
        ws = await request.accept()
        self.connections += 1
        live: dict[tuple[str, str], trio.CancelScope] = {}
        try:
            async with trio.open_nursery() as nursery:
                while True:
                    try:
                        text = await ws.get_message()
                    except ConnectionClosed:
                        nursery.cancel_scope.cancel()
                        return
                    req = json.loads(text)
                    self.received.append(req)
                    await self._on_request(ws, req, live, nursery)
        except ConnectionClosed:
            return

    async def _on_request(self, ws: WebSocketConnection, req: dict[str, Any],
                          live: dict[tuple[str, str], trio.CancelScope],
                          nursery: trio.Nursery) -> None:
        channel, event = req.get("channel", ""), req.get("event", "")
        if channel == "futures.ping":
            self.pings += 1
            await ws.send_message(self.frame("futures.pong", "", None, conn_id="fake0001"))
            return
        payload = req.get("payload", [])
        name = payload[0] if payload else ""
        key = (channel, name)
        if event == "unsubscribe":
            scope = live.pop(key, None)
            if scope is not None:
                scope.cancel()
            await ws.send_message(self.reply(req))
            return
        if event != "subscribe":
            await ws.send_message(self.reply(req, f"unknown event {event!r}"))
            return
        if key in live:
            await ws.send_message(self.reply(req, f"Alert sub {name}"))
            return
        await ws.send_message(self.reply(req))
        contract = name.split(".")[1] if channel == "futures.obu" else name
        if contract not in self.contracts:
            return  # acked, and silent from now on
        scope = trio.CancelScope()
        live[key] = scope
        nursery.start_soon(self._run, scope, ws, channel, contract, name)

    async def _run(self, scope: trio.CancelScope, ws: WebSocketConnection, channel: str,
                   contract: str, name: str) -> None:
        with scope:
            try:
                if channel == "futures.book_ticker":
                    await self.push_book_ticker(ws, contract)
                elif channel == "futures.obu":
                    await self.push_obu(ws, contract, name)
                elif channel == "futures.trades":
                    await self.push_trades(ws, contract)
            except ConnectionClosed:
                return
