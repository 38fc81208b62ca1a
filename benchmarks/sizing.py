"""Disk and memory of a recording, measured: the recorder (``python -m core.run``, a separate
process) records one Bybit BTC-USDT feed from a loopback fake venue that pushes generated
messages in Bybit v5's wire format at set rates; afterwards the Parquet files are sized and
counted, and the recorder's resident memory (sampled every second from /proc) is reported.

    python benchmarks/sizing.py --profile captured --minutes 3
    python benchmarks/sizing.py --profile busy --minutes 3 [--record-raw]

Profiles (messages per second per topic; levels per l2 message; trades per push):

* ``captured``: the rates of a real Bybit v5 linear recording of BTCUSDT (42 s): orderbook.200
  deltas 9.8/s with 16.4 levels on average, 0.40 trade pushes/s of 3.5 trades, top-of-book
  changes 3.2/s (from the ``tickers`` channel, which samples the top every 100 ms).
* ``busy``: the maximum push rates Bybit documents for the book topics (orderbook.1 every
  10 ms, orderbook.50 every 20 ms), the captured 16.4 levels per delta, and 5 trade pushes/s
  of 3.5 trades (a chosen busy market, not a measurement).

The generated book is a random walk of the mid price (0.1 ticks) with levels spread over the
topic's depth, 22 % of level updates deleting a level (as captured) and sizes log-uniform
between 0.001 and 5 BTC with 3 decimals. Real data may compress differently. Prints one result
line per table and the extrapolation to one hour; nothing here is a test.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import tempfile
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import polars as pl
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, WebSocketRequest

from core.testing.fake_servers import serve_http, serve_ws

ROOT = Path(__file__).resolve().parents[1]
TICK = 0.1
MID_TICKS = 650_000  # 65,000.0 USDT
DELETE_SHARE = 0.22
MOVE_SHARE = 0.1  # l2 messages that move the mid by one tick
INSTRUMENTS_PATH = "/v5/market/instruments-info?category=linear&limit=1000"
INSTRUMENTS = json.dumps({"retCode": 0, "result": {"category": "linear", "list": [
    {"symbol": "BTCUSDT", "contractType": "LinearPerpetual", "status": "Trading",
     "baseCoin": "BTC", "quoteCoin": "USDT", "priceFilter": {"tickSize": "0.10"},
     "lotSizeFilter": {"qtyStep": "0.001"}}]}}).encode()


@dataclass(frozen=True)
class Profile:
    tob_per_s: float
    l2_per_s: float
    l2_depth: int
    levels_per_msg: float
    trade_pushes_per_s: float
    trades_per_push: float


PROFILES = {
    "captured": Profile(tob_per_s=3.2, l2_per_s=9.8, l2_depth=200, levels_per_msg=16.4,
                        trade_pushes_per_s=0.40, trades_per_push=3.5),
    "busy": Profile(tob_per_s=100.0, l2_per_s=50.0, l2_depth=50, levels_per_msg=16.4,
                    trade_pushes_per_s=5.0, trades_per_push=3.5),
}


def price(tick: int) -> str:
    return f"{tick * TICK:.1f}"


class Market:
    """One generated BTCUSDT market: a book around a walking mid, and trades at the touch."""

    def __init__(self, profile: Profile, seed: int = 1) -> None:
        self.p = profile
        self.rng = random.Random(seed)
        self.mid = MID_TICKS  # best ask tick; best bid is mid - 1
        self.trade_id = 0

    def size(self) -> str:
        return f"{max(10 ** self.rng.uniform(-3, math.log10(5)), 0.001):.3f}"

    def snapshot(self, depth: int) -> tuple[list[list[str]], list[list[str]]]:
        bids = [[price(self.mid - 1 - i), self.size()] for i in range(depth)]
        asks = [[price(self.mid + i), self.size()] for i in range(depth)]
        return bids, asks

    def delta(self, depth: int) -> tuple[list[list[str]], list[list[str]]]:
        bids: dict[int, str] = {}
        asks: dict[int, str] = {}
        if self.rng.random() < MOVE_SHARE:
            if self.rng.random() < 0.5:
                asks[self.mid] = "0"  # the best ask is taken out; the mid moves up
                self.mid += 1
            else:
                self.mid -= 1
                bids[self.mid] = "0"  # the best bid is taken out; the mid moves down
        n = 1 + int(self.rng.expovariate(1 / (self.p.levels_per_msg - 0.5)))
        for _ in range(n):
            off = self.rng.randrange(depth)
            size = "0" if self.rng.random() < DELETE_SHARE else self.size()
            if self.rng.random() < 0.5:
                bids[self.mid - 1 - off] = size
            else:
                asks[self.mid + off] = size
        return ([[price(t), s] for t, s in sorted(bids.items(), reverse=True)],
                [[price(t), s] for t, s in sorted(asks.items())])

    def trades(self, now_ms: int) -> list[dict[str, object]]:
        out: list[dict[str, object]] = []
        for _ in range(max(1, round(self.rng.expovariate(1 / self.p.trades_per_push)))):
            self.trade_id += 1
            buy = self.rng.random() < 0.5
            out.append({"T": now_ms, "s": "BTCUSDT", "S": "Buy" if buy else "Sell",
                        "v": self.size(), "p": price(self.mid if buy else self.mid - 1),
                        "L": "PlusTick", "i": str(self.trade_id), "BT": False, "seq": 1})
        return out


class FakeVenue:
    """A Bybit v5 linear server: acks subscriptions, answers pings, pushes generated topics."""

    def __init__(self, market: Market) -> None:
        self.market = market
        self.pushed: dict[str, int] = {}
        self.resubscribes = 0

    async def handler(self, request: WebSocketRequest) -> None:
        ws = await request.accept()
        active: dict[str, trio.CancelScope] = {}
        try:
            async with trio.open_nursery() as nursery:
                while True:
                    msg = json.loads(await ws.get_message())
                    op = msg.get("op")
                    reply = {"success": True, "ret_msg": "pong" if op == "ping" else "",
                             "conn_id": "sizing", "req_id": msg.get("req_id", ""), "op": op}
                    await ws.send_message(json.dumps(reply))
                    for topic in msg.get("args", []) if op in ("subscribe", "unsubscribe") \
                            else []:
                        if topic in active:
                            active.pop(topic).cancel()
                        if op == "subscribe":
                            self.resubscribes += topic in self.pushed
                            active[topic] = await nursery.start(self.push, ws, topic)
        except* ConnectionClosed:
            pass

    async def push(self, ws: WebSocketConnection, topic: str,
                   task_status: trio.TaskStatus[trio.CancelScope] = trio.TASK_STATUS_IGNORED
                   ) -> None:
        p, m = self.market.p, self.market
        kind, _, rest = topic.partition(".")
        depth = int(rest.split(".")[0]) if kind == "orderbook" else 0
        rate = (p.trade_pushes_per_s if kind == "publicTrade"
                else p.tob_per_s if depth == 1 else p.l2_per_s)
        with trio.CancelScope() as scope:
            task_status.started(scope)
            u = 0
            next_t = trio.current_time()
            while True:
                now_ms = int(time.time() * 1000)
                if kind == "publicTrade":
                    body = {"topic": topic, "type": "snapshot", "ts": now_ms,
                            "data": m.trades(now_ms)}
                else:
                    u += 1
                    if depth == 1:
                        b, a = [[price(m.mid - 1), m.size()]], [[price(m.mid), m.size()]]
                        kind_ = "snapshot"
                    elif u == 1:
                        b, a = m.snapshot(depth)
                        kind_ = "snapshot"
                    else:
                        b, a = m.delta(depth)
                        kind_ = "delta"
                    body = {"topic": topic, "type": kind_, "ts": now_ms, "cts": now_ms - 1,
                            "data": {"s": "BTCUSDT", "b": b, "a": a, "u": u, "seq": u}}
                await ws.send_message(json.dumps(body))
                self.pushed[topic] = self.pushed.get(topic, 0) + 1
                next_t += 1 / rate
                await trio.sleep_until(next_t)


def rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


async def measure(profile_name: str, seconds: float, out: Path, record_raw: bool) -> None:
    profile = PROFILES[profile_name]
    venue = FakeVenue(Market(profile))
    rss: list[tuple[float, int]] = []
    with tempfile.TemporaryDirectory() as cache:
        async with trio.open_nursery() as nursery:
            ws_url = await nursery.start(partial(serve_ws, venue.handler))
            rest_url = await nursery.start(serve_http, {INSTRUMENTS_PATH: INSTRUMENTS})
            argv = [sys.executable, "-m", "core.run", "--plugins", "bybit", "--symbols",
                    "BTC-USDT", "--channels", "tob,l2,trades", "--opt",
                    f"bybit.l2_depth={profile.l2_depth}", "--out", str(out), "--duration",
                    f"{seconds:g}", "--no-live", "--no-spreads", "--status-interval", "60",
                    "--cache-dir", cache, "--endpoint", f"bybit={ws_url}",
                    "--endpoint", f"bybit.rest={rest_url}",
                    *(["--record-raw"] if record_raw else [])]
            proc = await trio.lowlevel.open_process(argv, cwd=ROOT)
            t0 = trio.current_time()
            while proc.poll() is None:
                kib = rss_kib(proc.pid)
                if kib is not None:
                    rss.append((trio.current_time() - t0, kib))
                await trio.sleep(1.0)
            code = await proc.wait()
            nursery.cancel_scope.cancel()
    report(profile_name, profile, seconds, out, code, rss, venue)


def report(name: str, profile: Profile, seconds: float, out: Path, code: int,
           rss: list[tuple[float, int]], venue: FakeVenue) -> None:
    scale = 3600 / seconds
    print(f"profile {name}: {profile}; {seconds:g} s recorded, exit code {code}, "
          f"resubscribes {venue.resubscribes}")
    print("pushed per topic: " + ", ".join(f"{t} {n} ({n / seconds:.1f}/s)"
                                           for t, n in sorted(venue.pushed.items())))
    total = 0
    for table in ("tob", "l2", "trades", "health"):
        files = sorted(out.glob(f"{table}/**/*.parquet"))
        size = sum(f.stat().st_size for f in files)
        rows = pl.scan_parquet(files).select(pl.len()).collect().item() if files else 0
        total += size
        per_row = size / rows if rows else 0.0
        print(f"  {table:<7} {len(files):3d} files {rows:9d} rows {size / 1e6:9.2f} MB "
              f"({per_row:5.1f} B/row) -> {rows * scale / 1e6:7.2f} M rows, "
              f"{size * scale / 1e6:8.1f} MB per hour")
    print(f"  tables  {total / 1e6:9.2f} MB -> {total * scale / 1e6:8.1f} MB per hour")
    raw = sorted(out.glob("raw/**/*.jsonl.gz"))
    if raw:
        size = sum(f.stat().st_size for f in raw)
        print(f"  raw     {size / 1e6:9.2f} MB -> {size * scale / 1e6:8.1f} MB per hour")
    if rss:
        peak = max(k for _, k in rss)
        by_minute = [k for t, k in rss if t >= 60 and t % 60 < 1.0]
        start = next((k for t, k in rss if t >= 5), rss[-1][1])
        print(f"  resident memory: {start / 1024:.0f} MiB 5 s after start, peak "
              f"{peak / 1024:.0f} MiB; after each minute: "
              + ", ".join(f"{k / 1024:.0f}" for k in by_minute) + " MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", choices=sorted(PROFILES), default="captured")
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--out", type=Path, default=None,
                        help="where the recorder writes (default: a temporary folder)")
    parser.add_argument("--record-raw", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp) / "data"
        trio.run(measure, args.profile, args.minutes * 60, out, args.record_raw)


if __name__ == "__main__":
    main()
