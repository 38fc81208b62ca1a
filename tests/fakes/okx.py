"""A fake OKX v5 public websocket and REST venue speaking the real wire protocol, for loopback
tests.

* ``subscribe``/``unsubscribe`` requests carry many ``args``; each argument is acknowledged on its
  own (``{"event":"subscribe","arg":{...},"connId":...}``); an unknown instrument gets
  ``{"event":"error","code":"60018","msg":"... instId:X doesn't exist ..."}``, which names the
  argument only in its message, as OKX does.
* The text ``ping`` is answered with the text ``pong``.
* One market per swap evolves on a clock shared by every connection (:meth:`FakeOkx.run`,
  from the first subscription on):
  each tick applies the next scripted step and pushes to the subscribers of ``books`` an
  ``update`` with ``prevSeqId``/``seqId`` and the real CRC32 ``checksum`` of the book after it
  (computed here, from the documented rule); a step can also be an idle update (``seqId ==
  prevSeqId``, no levels) or a sequence reset (``seqId`` smaller than ``prevSeqId``). A ``books``
  subscription starts with a ``snapshot`` of the book as it is (``prevSeqId`` -1). ``bbo-tbt``
  pushes the top after each change, ``trades`` the trades scheduled at that step. Sizes are
  contracts.
* Faults: a wrong checksum sent on the first subscription of an instrument only; frames sent as
  binary raw-deflate; checksums all 0 (the deprecated field).
* REST: ``/api/v5/public/instruments?instType=SWAP`` lists the swaps with their ``ctVal``.

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

Wire = list[tuple[str, str]]
EPOCH_MS = 1_786_310_818_000
IDLE = "idle"
RESET = "reset"


def venue_checksum(bids: Wire, asks: Wire) -> int:
    """OKX's checksum of best-first sides: top 25 interleaved, CRC32, signed 32-bit."""
    fields: list[str] = []
    for i in range(25):
        for side in (bids, asks):
            if i < len(side):
                fields += [side[i][0], side[i][1]]
    crc = zlib.crc32(":".join(fields).encode())
    return crc - (1 << 32) if crc & (1 << 31) else crc


@dataclass
class SwapScript:
    """One swap: its contract value, initial book, steps (levels, ``IDLE`` or ``RESET``) and
    trades per step (price, contracts, taker side)."""

    ct_val: str
    bids: Wire
    asks: Wire
    steps: list[tuple[Wire, Wire] | str] = field(default_factory=list)
    trades: dict[int, list[tuple[str, str, str]]] = field(default_factory=dict)
    seq0: int = 123_456_789
    reset_to: int = 17


@dataclass
class VenueTrade:
    id: str
    px: str
    sz: str
    side: str
    ms: int


class Swap:
    """The venue's live state of one swap."""

    def __init__(self, inst: str, script: SwapScript) -> None:
        self.inst = inst
        self.script = script
        self.bids: dict[Decimal, tuple[str, str]] = {}
        self.asks: dict[Decimal, tuple[str, str]] = {}
        self._apply(script.bids, script.asks)
        self.seq = script.seq0
        self.position = 0
        self.trades: list[VenueTrade] = []
        self.tops: dict[int, tuple[str, str, str, str]] = {self.seq: self.top()}

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

    def top(self) -> tuple[str, str, str, str]:
        (b, bq), (a, aq) = self.sides()[0][0], self.sides()[1][0]
        return b, bq, a, aq

    def ms(self) -> int:
        return EPOCH_MS + self.position * 100

    def entry(self, bids: Wire, asks: Wire, seq: int, prev: int) -> dict[str, Any]:
        """A ``books`` data entry whose checksum is that of the whole book as it is now."""
        return {"asks": [[p, s, "0", "1"] for p, s in asks],
                "bids": [[p, s, "0", "1"] for p, s in bids], "ts": str(self.ms()),
                "checksum": venue_checksum(*self.sides()), "prevSeqId": prev, "seqId": seq}

    def step(self) -> tuple[dict[str, Any] | None, bool, list[VenueTrade]]:
        """Apply the next step: (books update entry, top changed, trades), or None when done."""
        if self.position >= len(self.script.steps):
            return None, False, []
        index = self.position
        step = self.script.steps[index]
        self.position += 1
        before = self.top()
        prev = self.seq
        if step == IDLE:
            return self.entry([], [], prev, prev), False, []
        bids, asks = ([], []) if step == RESET else step  # type: ignore[misc]
        if step == RESET:
            self.seq = self.script.reset_to
        else:
            self._apply(bids, asks)
            self.seq += 1 + index % 5
        self.tops[self.seq] = self.top()
        trades = []
        for n, (px, sz, side) in enumerate(self.script.trades.get(index, [])):
            trades.append(VenueTrade(f"{index}{n:03d}", px, sz, side, self.ms()))
        self.trades += trades
        return self.entry(bids, asks, self.seq, prev), self.top() != before, trades


@dataclass(eq=False)
class Conn:
    index: int
    send: trio.MemorySendChannel[str | bytes]
    args: set[tuple[str, str]] = field(default_factory=set)
    received: list[Any] = field(default_factory=list)
    closed: bool = False


@dataclass
class FakeOkx:
    """Serve :meth:`handler` with ``serve_ws`` and :meth:`rest` with ``serve_http``; start
    :meth:`run` (the market clock) in the test's nursery."""

    swaps: dict[str, SwapScript]  # instId -> script
    tick_s: float = 0.02
    bad_checksum_at: dict[str, int] = field(default_factory=dict)  # instId -> step index
    deflate: bool = False  # send pushes as binary raw-deflate frames
    zero_checksums: bool = False
    conns: list[Conn] = field(default_factory=list)
    subscriptions: Counter[tuple[str, str]] = field(default_factory=Counter)
    pings: int = 0
    live: dict[str, Swap] = field(default_factory=dict)
    done: trio.Event = field(default_factory=trio.Event)
    subscribed: trio.Event = field(default_factory=trio.Event)  # a first subscription came

    def __post_init__(self) -> None:
        self.live = {inst: Swap(inst, s) for inst, s in self.swaps.items()}

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
            for inst, swap in self.live.items():
                index = swap.position
                entry, top_changed, trades = swap.step()
                if entry is None:
                    continue
                active = True
                for conn in self.conns:
                    if ("books", inst) in conn.args:
                        e = dict(entry)
                        first = self.subscriptions[("books", inst)] == 1
                        if first and self.bad_checksum_at.get(inst) == index:
                            e["checksum"] ^= 0x2D2D2D2D
                        self._push(conn, "books", inst, [e], "update")
                    if top_changed and ("bbo-tbt", inst) in conn.args:
                        self._push_bbo(conn, swap)
                    if trades and ("trades", inst) in conn.args:
                        self._push(conn, "trades", inst, [
                            {"instId": inst, "tradeId": t.id, "px": t.px, "sz": t.sz,
                             "side": t.side, "ts": str(t.ms), "count": "1"} for t in trades])
            if not active:
                self.done.set()

    def _push(self, conn: Conn, channel: str, inst: str, data: list[dict[str, Any]],
              action: str | None = None) -> None:
        msg: dict[str, Any] = {"arg": {"channel": channel, "instId": inst}}
        if action is not None:
            msg["action"] = action
        msg["data"] = data
        if self.zero_checksums:
            for d in data:
                if "checksum" in d:
                    d["checksum"] = 0
        text = json.dumps(msg)
        frame: str | bytes = text
        if self.deflate:
            deflater = zlib.compressobj(wbits=-zlib.MAX_WBITS)
            frame = deflater.compress(text.encode()) + deflater.flush()
        try:
            conn.send.send_nowait(frame)
        except (trio.WouldBlock, trio.ClosedResourceError):
            conn.closed = True

    def _push_bbo(self, conn: Conn, swap: Swap) -> None:
        b, bq, a, aq = swap.top()
        self._push(conn, "bbo-tbt", swap.inst, [{"asks": [[a, aq, "0", "1"]],
                                                 "bids": [[b, bq, "0", "1"]],
                                                 "ts": str(swap.ms()), "seqId": swap.seq}])

    # -- REST ------------------------------------------------------------------------------------

    def rest(self, target: str) -> bytes | None:
        if target != "/api/v5/public/instruments?instType=SWAP":
            return None
        return json.dumps({"code": "0", "msg": "", "data": [
            {"instType": "SWAP", "instId": inst, "uly": inst.removesuffix("-SWAP"),
             "instFamily": inst.removesuffix("-SWAP"), "settleCcy": "USDT",
             "ctVal": s.ct_val, "ctMult": "1", "ctValCcy": inst.split("-")[0],
             "ctType": "linear", "tickSz": "0.1", "lotSz": "1", "minSz": "1", "state": "live"}
            for inst, s in self.swaps.items()]}).encode()

    # -- websocket -------------------------------------------------------------------------------

    async def handler(self, request: WebSocketRequest) -> None:
        ws = await request.accept()
        send, receive = trio.open_memory_channel[str | bytes](100_000)
        conn = Conn(len(self.conns), send)
        self.conns.append(conn)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._writer, ws, receive)
                while True:
                    text = await ws.get_message()
                    conn.received.append(text)
                    if text == "ping":
                        self.pings += 1
                        await send.send("pong")
                        continue
                    self._request(conn, json.loads(text))
        except* ConnectionClosed:
            pass
        finally:
            conn.closed = True

    def _request(self, conn: Conn, msg: dict[str, Any]) -> None:
        op = msg.get("op")
        for arg in msg.get("args", []):
            channel, inst = arg.get("channel"), arg.get("instId")
            if inst not in self.live or channel not in ("books", "bbo-tbt", "trades"):
                conn.send.send_nowait(json.dumps({
                    "event": "error", "code": "60018",
                    "msg": f"Wrong URL or channel:{channel},instId:{inst} doesn't exist. Please "
                           "use the correct URL, channel and parameters referring to API "
                           "document.", "connId": f"c{conn.index}"}))
                continue
            key = (channel, inst)
            conn.send.send_nowait(json.dumps({"event": op, "arg": arg,
                                              "connId": f"c{conn.index}"}))
            if op == "unsubscribe":
                conn.args.discard(key)
                continue
            self.subscriptions[key] += 1
            conn.args.add(key)
            self.subscribed.set()
            swap = self.live[inst]
            if channel == "books":
                bids, asks = swap.sides()
                self._push(conn, "books", inst, [swap.entry(bids, asks, swap.seq, -1)],
                           "snapshot")
            elif channel == "bbo-tbt":
                self._push_bbo(conn, swap)

    async def _writer(self, ws: WebSocketConnection,
                      receive: trio.MemoryReceiveChannel[str | bytes]) -> None:
        async for frame in receive:
            await ws.send_message(frame)


def okx_script(mid: float, ct_val: str, steps: int, *, idle_at: tuple[int, ...] = (),
               reset_at: int | None = None) -> SwapScript:
    """A book of 30 levels a side (more than the 25 the checksum covers) in contracts, one
    level changed per step, a trade every other step."""
    def px(x: float) -> str:
        return f"{x:.1f}"

    bids: Wire = [(px(mid - 0.1 * i), str(10 + i)) for i in range(30)]
    asks: Wire = [(px(mid + 0.1 * (i + 1)), str(20 + i)) for i in range(30)]
    script: list[tuple[Wire, Wire] | str] = []
    trades: dict[int, list[tuple[str, str, str]]] = {}
    for n in range(steps):
        if n in idle_at:
            script.append(IDLE)
            continue
        if n == reset_at:
            script.append(RESET)
            continue
        if n % 3 == 0:
            script.append(([(px(mid - 0.1 * (n % 7)), str(5 + n))], []))
        elif n % 3 == 1:
            script.append(([], [(px(mid + 0.1 * (1 + n % 4)), str(7 + n))]))
        else:
            script.append(([(px(mid - 0.1 * 29), "0")] if n % 2 else [(px(mid - 0.1 * 29),
                                                                        "3")], []))
        if n % 2 == 0:
            trades[n] = [(px(mid), str(1 + n % 4), "buy" if n % 4 == 0 else "sell")]
    return SwapScript(ct_val, bids, asks, script, trades)
