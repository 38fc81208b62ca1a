"""A fake HTX USDT-swap market server speaking the real wire protocol, for loopback tests.

Start it with ``core.testing.fake_servers.serve_ws(FakeHtx(...).handler)``. Per connection it:

* acknowledges ``sub``/``unsub`` frames per ``id`` (``{"id", "status": "ok", "subbed"}``), and
  answers topics of contracts it does not list with HTX's ``invalid topic`` error;
* pushes each subscribed topic's scripted ticks as gzip binary frames ``{"ch", "ts", "tick"}``;
  on ``depth.size_N.high_freq`` with ``"data_type": "incremental"`` it numbers the ticks with a
  per-connection ``version`` that grows by one per frame (a re-subscription replays the script,
  snapshot first, continuing the chain), and can skip one version once to inject a gap;
* sends ``{"ping": n}`` every ``ping_interval_s`` and closes the socket with code 1003
  ``ping check expired`` once ``max_missed_pings`` pings are unanswered when the next one is due.

Contracts in ``silent`` are acknowledged and never pushed (a suspended contract).
"""

from __future__ import annotations

import copy
import gzip
import json
from dataclasses import dataclass, field
from typing import Any

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, WebSocketRequest

Payload = dict[str, Any]
PING_EXPIRED_CODE = 1003
PING_EXPIRED_REASON = "ping check expired"


def depth_tick(event: str | None, bids: list[list[float]], asks: list[list[float]],
               **extra: Any) -> Payload:
    """A depth tick without ``version`` (the fake numbers incremental streams itself)."""
    tick: Payload = {"bids": bids, "asks": asks}
    if event is not None:
        tick["event"] = event
    tick.update(extra)
    return tick


def trade_tick(trades: list[tuple[int, float, float, str]], contract_size: float) -> Payload:
    """A ``trade.detail`` tick; each trade is (id, price, contracts, taker direction)."""
    return {"data": [{"amount": amount, "quantity": amount * contract_size,
                      "trade_turnover": amount * contract_size * price, "id": trade_id,
                      "price": price, "direction": direction}
                     for trade_id, price, amount, direction in trades]}


def gz(obj: Any) -> bytes:
    return gzip.compress(json.dumps(obj).encode())


@dataclass
class _Conn:
    """State of one client connection."""

    index: int
    ws: WebSocketConnection
    nursery: trio.Nursery
    versions: dict[str, int] = field(default_factory=dict)
    streams: dict[str, trio.CancelScope] = field(default_factory=dict)
    pings: list[int] = field(default_factory=list)  # sent and not yet answered
    next_ping: int = 0


@dataclass
class FakeHtx:
    """``scripts[topic]``: tick payloads pushed, in order, after each ``sub`` of that topic."""

    scripts: dict[str, list[Payload]]
    listed: set[str] | None = None  # contract codes it lists (None: every code)
    silent: set[str] = field(default_factory=set)
    gap_at: dict[str, int] = field(default_factory=dict)  # topic -> script index; skip once
    ping_interval_s: float = 5.0
    max_missed_pings: int = 4
    push_interval_s: float = 0.01
    first_version: int = 1_000
    base_ts_ms: int = 1_700_000_000_000
    received: list[list[Payload]] = field(default_factory=list)  # client frames per connection
    pongs_ok: int = 0
    pongs_bad: list[Any] = field(default_factory=list)
    closed: list[tuple[int, str]] = field(default_factory=list)
    connections: int = 0
    _gaps_done: set[str] = field(default_factory=set)
    _pushes: int = 0

    async def handler(self, request: WebSocketRequest) -> None:
        ws = await request.accept()
        index = self.connections
        self.connections += 1
        self.received.append([])
        try:
            async with trio.open_nursery() as nursery:
                conn = _Conn(index, ws, nursery, next_ping=self.base_ts_ms)
                nursery.start_soon(self._pinger, conn)
                await self._reader(conn)
                nursery.cancel_scope.cancel()
        except* (ConnectionClosed, trio.BrokenResourceError):
            pass  # the client went away, or the fake closed the socket itself

    # -- client frames -------------------------------------------------------------------------

    async def _reader(self, conn: _Conn) -> None:
        while True:
            text = await conn.ws.get_message()
            try:
                msg = json.loads(text)
            except ValueError:
                await conn.ws.send_message(gz({"status": "error", "ts": self._ts(), "id": "",
                                               "err-code": "bad-request",
                                               "err-msg": "not json, is not json string"}))
                continue
            self.received[conn.index].append(msg)
            if "pong" in msg:
                self._on_pong(conn, msg["pong"])
            elif "sub" in msg:
                await self._on_sub(conn, msg)
            elif "unsub" in msg:
                await self._on_unsub(conn, msg)

    def _on_pong(self, conn: _Conn, number: Any) -> None:
        if number in conn.pings:
            self.pongs_ok += 1
            conn.pings = [p for p in conn.pings if p > number]
        else:
            self.pongs_bad.append(number)

    async def _on_sub(self, conn: _Conn, msg: Payload) -> None:
        topic = str(msg["sub"])
        parts = topic.split(".")
        if len(parts) < 3 or parts[0] != "market" or (
                self.listed is not None and parts[1] not in self.listed):
            await conn.ws.send_message(gz({"status": "error", "ts": self._ts(),
                                           "id": msg.get("id", ""), "err-code": "bad-request",
                                           "err-msg": f"invalid topic {topic}"}))
            return
        ack: Payload = {"id": msg.get("id", ""), "status": "ok", "subbed": topic,
                        "ts": self._ts()}
        if "data_type" in msg:
            ack["data_type"] = msg["data_type"]
        await conn.ws.send_message(gz(ack))
        if parts[1] in self.silent:
            return
        old = conn.streams.pop(topic, None)
        if old is not None:
            old.cancel()
        scope = trio.CancelScope()
        conn.streams[topic] = scope
        incremental = topic.endswith(".high_freq") and msg.get("data_type") == "incremental"
        conn.nursery.start_soon(self._stream, conn, topic, incremental, scope)

    async def _on_unsub(self, conn: _Conn, msg: Payload) -> None:
        topic = str(msg["unsub"])
        scope = conn.streams.pop(topic, None)
        if scope is not None:
            scope.cancel()
        await conn.ws.send_message(gz({"id": msg.get("id", ""), "status": "ok",
                                       "unsubbed": topic, "ts": self._ts()}))

    # -- server frames -------------------------------------------------------------------------

    async def _stream(self, conn: _Conn, topic: str, incremental: bool,
                      scope: trio.CancelScope) -> None:
        with scope:
            for i, payload in enumerate(self.scripts.get(topic, [])):
                await trio.sleep(self.push_interval_s)
                tick = copy.deepcopy(payload)
                ts = int(tick.setdefault("ts", self._ts()))
                if incremental:
                    tick["version"] = self._next_version(conn, topic, i)
                else:
                    tick.setdefault("version", ts // 1000)
                tick.setdefault("id", ts // 1000)
                tick.setdefault("mrid", ts)
                if not topic.endswith(".trade.detail"):
                    tick["ch"] = topic
                else:
                    for trade in tick.get("data", []):
                        trade.setdefault("ts", ts)
                await conn.ws.send_message(gz({"ch": topic, "ts": ts + 1, "tick": tick}))

    def _next_version(self, conn: _Conn, topic: str, index: int) -> int:
        version = conn.versions.get(topic, self.first_version - 1) + 1
        if self.gap_at.get(topic) == index and topic not in self._gaps_done:
            self._gaps_done.add(topic)
            version += 1
        conn.versions[topic] = version
        return version

    async def _pinger(self, conn: _Conn) -> None:
        while True:
            await trio.sleep(self.ping_interval_s)
            if len(conn.pings) >= self.max_missed_pings:
                self.closed.append((PING_EXPIRED_CODE, PING_EXPIRED_REASON))
                await conn.ws.aclose(code=PING_EXPIRED_CODE, reason=PING_EXPIRED_REASON)
                return
            conn.next_ping += int(self.ping_interval_s * 1000)
            conn.pings.append(conn.next_ping)
            await conn.ws.send_message(gz({"ping": conn.next_ping}))

    def _ts(self) -> int:
        self._pushes += 1
        return self.base_ts_ms + self._pushes
