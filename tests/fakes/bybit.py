"""A fake Bybit v5 public linear server speaking the real wire protocol, for loopback tests.

It acknowledges ``subscribe``/``unsubscribe`` requests per ``req_id`` (``success: false`` for
symbols it does not list), answers ``{"op":"ping"}`` with Bybit's pong reply, and pushes each
subscribed topic's scripted messages. Behaviour can differ per connection (index 0 is the first
connection): close the socket after N pushes, or go silent (no pushes, no pongs).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, WebSocketRequest

Message = dict[str, Any]
#: scripted times below this are milliseconds after it (2026-08-09T21:26:58Z); real venue times
#: are never that small, and decoders reject them
EPOCH_MS = 1_786_310_818_000


def at(ms: int) -> int:
    """A scripted time in ms since the Unix epoch: ``ms`` itself, or ``EPOCH_MS + ms``."""
    return ms if ms >= EPOCH_MS else EPOCH_MS + ms


def book_msg(symbol: str, kind: str, bids: list[list[str]], asks: list[list[str]], u: int,
             ts_ms: int, depth: int = 50, seq: int = 0) -> Message:
    """An ``orderbook.{depth}.{symbol}`` push exactly as Bybit sends it (``cts`` top-level);
    ``ts_ms`` goes through :func:`at`."""
    return {"topic": f"orderbook.{depth}.{symbol}", "type": kind, "ts": at(ts_ms),
            "data": {"s": symbol, "b": bids, "a": asks, "u": u, "seq": seq or u * 10},
            "cts": at(ts_ms) - 1}


def trade_msg(symbol: str, trades: list[tuple[int, str, str, str, str]], ts_ms: int) -> Message:
    """A ``publicTrade.{symbol}`` push; each trade is (T ms, side Buy/Sell, size, price, id);
    times go through :func:`at`."""
    return {"topic": f"publicTrade.{symbol}", "type": "snapshot", "ts": at(ts_ms),
            "data": [{"T": at(t), "s": symbol, "S": side, "v": v, "p": p,
                      "L": "PlusTick", "i": i, "BT": False, "seq": 1}
                     for t, side, v, p, i in trades]}


@dataclass
class ConnectionPlan:
    close_after_pushes: int | None = None  # close the socket (code 1000) after this many pushes
    silent_after_pushes: int | None = None  # stop pushing and stop answering pings


@dataclass
class FakeBybit:
    """``scripts[i][topic]``: messages pushed on connection i (the last entry serves later ones)."""

    scripts: list[dict[str, list[Message]]]
    plans: list[ConnectionPlan] = field(default_factory=list)
    listed: set[str] | None = None  # native symbols the venue lists (None: all)
    #: messages for a topic subscribed again (a resync); default: its script from the start
    resubscribed: dict[str, list[Message]] = field(default_factory=dict)
    push_interval_s: float = 0.005
    received: list[list[Message]] = field(default_factory=list)
    connections: int = 0
    subscribed: trio.Event = field(default_factory=trio.Event)  # set at the first subscribe

    async def handler(self, request: WebSocketRequest) -> None:
        ws = await request.accept()
        index = self.connections
        self.connections += 1
        self.received.append([])
        plan = self.plans[index] if index < len(self.plans) else ConnectionPlan()
        script = self.scripts[min(index, len(self.scripts) - 1)]
        state: dict[Any, Any] = {"pushes": 0, "silent": False}
        try:
            async with trio.open_nursery() as nursery:
                while True:
                    msg = json.loads(await ws.get_message())
                    self.received[index].append(msg)
                    if state["silent"]:
                        continue
                    op = msg.get("op")
                    if op == "ping":
                        await ws.send_message(json.dumps({
                            "success": True, "ret_msg": "pong", "conn_id": f"c{index}",
                            "req_id": msg.get("req_id", ""), "op": "ping"}))
                    elif op in ("subscribe", "unsubscribe"):
                        bad = [t for t in msg["args"] if self.listed is not None
                               and t.rsplit(".", 1)[-1] not in self.listed]
                        ack: Message = {"success": not bad, "ret_msg": "", "conn_id": f"c{index}",
                                        "req_id": msg.get("req_id", ""), "op": op}
                        if bad:
                            ack["ret_msg"] = f"Invalid symbol :[{','.join(bad)}]"
                        await ws.send_message(json.dumps(ack))
                        if op == "subscribe":
                            self.subscribed.set()
                        if op == "subscribe" and not bad:
                            for topic in msg["args"]:
                                again = state.setdefault(("seen", topic), False)
                                messages = (self.resubscribed.get(topic, script.get(topic, []))
                                            if again else script.get(topic, []))
                                state[("seen", topic)] = True
                                nursery.start_soon(self._push, ws, messages, plan, state)
        except* ConnectionClosed:
            pass  # the client went away, or this fake closed the socket itself

    async def _push(self, ws: WebSocketConnection, messages: list[Message], plan: ConnectionPlan,
                    state: dict[str, Any]) -> None:
        for message in messages:
            await trio.sleep(self.push_interval_s)
            if state["silent"]:
                return
            if plan.silent_after_pushes is not None and \
                    state["pushes"] >= plan.silent_after_pushes:
                state["silent"] = True
                return
            if plan.close_after_pushes is not None and state["pushes"] >= plan.close_after_pushes:
                await ws.aclose(code=1000, reason="fake venue closing")
                return
            await ws.send_message(json.dumps(message))
            state["pushes"] += 1
