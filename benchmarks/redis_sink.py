"""Redis Streams sink throughput: events published on the bus until Redis acknowledged them all.

    python -m benchmarks.redis_sink [--events 200000] [--repeats 3]

Starts a private ``redis-server`` on a free loopback port in a temporary folder (no persistence),
then, side by side in one run:

* **sink**: the real path. Frames' worth of events (a realistic mix: top of book, ``l2`` updates of
  1 to 6 levels per side, trades, at 4 events per frame) are published on a :class:`core.bus.Bus`
  as fast as the sink takes them; :class:`core.streams.sink.RedisSink` encodes each event with
  msgspec and writes it with pipelined ``XADD ... MAXLEN ~``. Timed from the first publish to the
  last entry acknowledged by Redis.
* **bare XADD**: the same pre-encoded entries written with the same pipelining and nothing else
  (the client library and the server alone), to show what the sink adds.

Prints events per second (median of the repeats) and the ratio; not a test. Needs
``redis-server`` on the path (Debian: ``apt-get install redis-server``).
"""

from __future__ import annotations

import argparse
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

import coredis
import trio
from coredis.tokens import PureToken

from core.bus import Bus, Policy
from core.schema import BookUpdate, Event, TopOfBook, Trade
from core.streams.client import parse_url
from core.streams.codec import Encoder, stream_name
from core.streams.sink import BATCH_ENTRIES, RedisSink

T0 = 1_786_310_818_000_000_000
EVENTS_PER_FRAME = 4


def events(n: int, seed: int = 7) -> list[list[Event]]:
    """``n`` events in frames: tob, l2 and trades of two venues and three symbols."""
    rng = random.Random(seed)
    frames: list[list[Event]] = []
    for i in range(n // EVENTS_PER_FRAME):
        venue = ("bybit", "htx")[i % 2]
        symbol = ("BTC-USDT", "ETH-USDT", "SOL-USDT")[i % 3]
        t = T0 + i * 1000
        msg_id = i + 1
        frame: list[Event] = []
        for _ in range(EVENTS_PER_FRAME):
            r = rng.random()
            if r < 0.6:
                frame.append(BookUpdate(
                    exchange=venue, ts_local=t, symbol=symbol, ts_exchange=t - 5, seq=msg_id,
                    msg_id=t + msg_id, is_snapshot=False,
                    bids=tuple((65_000 - 0.1 * rng.randint(1, 30), rng.uniform(0, 5))
                               for _ in range(rng.randint(1, 6))),
                    asks=tuple((65_000 + 0.1 * rng.randint(0, 29), rng.uniform(0, 5))
                               for _ in range(rng.randint(1, 6)))))
            elif r < 0.9:
                frame.append(TopOfBook(exchange=venue, ts_local=t, symbol=symbol,
                                       ts_exchange=t - 5, bid_px=64_999.9, bid_sz=rng.random(),
                                       ask_px=65_000.0, ask_sz=rng.random(), seq=msg_id))
            else:
                frame.append(Trade(exchange=venue, ts_local=t, symbol=symbol, ts_exchange=t,
                                   price=65_000.0, size=rng.random(), side="buy",
                                   trade_id=str(msg_id)))
        frames.append(frame)
    return frames


@contextmanager
def redis_server() -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("redis-server is not installed (Debian: apt-get install redis-server)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as folder:
        proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                 "--appendonly", "no", "--dir", folder],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    time.sleep(0.05)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            proc.kill()
            proc.wait()


async def flush(url: str) -> None:
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    async with coredis.Redis(host="127.0.0.1", port=port) as client:
        await client.flushall()


async def run_sink(url: str, frames: list[list[Event]]) -> float:
    """Seconds from the first publish until Redis acknowledged every event."""
    await flush(url)
    bus = Bus()
    sink = RedisSink(parse_url(url))
    sub = bus.subscribe("redis", policy=Policy.LOSSLESS)
    sink.bind(bus)
    n = sum(len(f) for f in frames)
    async with trio.open_nursery() as nursery:
        await nursery.start(sink.run, sub)
        started = time.perf_counter()
        for i, frame in enumerate(frames):
            bus.publish(frame)
            if i % 64 == 63:
                await trio.lowlevel.checkpoint()  # a reader yields between frames
        bus.close()
    took = time.perf_counter() - started
    assert sink.entries_written == n and not sink.lost_events(), "events were lost"
    assert bus.dropped_events() == 0, "the bus dropped events"
    return took


async def run_bare(url: str, frames: list[list[Event]]) -> float:
    """The same entries, pre-encoded, with the same pipelining and nothing else."""
    await flush(url)
    enc = Encoder()
    entries = [(stream_name("l2", e.exchange).encode(), enc.encode(e))
               for f in frames for e in f]
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    async with coredis.Redis(host="127.0.0.1", port=port) as client:
        started = time.perf_counter()
        for i in range(0, len(entries), BATCH_ENTRIES):
            async with client.pipeline(transaction=False) as pipe:
                for key, payload in entries[i:i + BATCH_ENTRIES]:
                    pipe.xadd(key, {b"e": payload}, trim_strategy=PureToken.MAXLEN,
                              trim_operator=PureToken.APPROXIMATELY, threshold=1_000_000)
        return time.perf_counter() - started


async def main(n: int, repeats: int) -> None:
    frames = events(n)
    n = sum(len(f) for f in frames)
    with redis_server() as url:
        sink = [await run_sink(url, frames) for _ in range(repeats)]
        bare = [await run_bare(url, frames) for _ in range(repeats)]
    s, b = statistics.median(sink), statistics.median(bare)
    print(f"{n:,} events (tob, l2 of 1-6 levels per side, trades; {EVENTS_PER_FRAME} per frame), "
          f"median of {repeats}, one process, local redis-server")
    print(f"sink, bus to acknowledged XADD:  {n / s:>10,.0f} events/s")
    print(f"bare pipelined XADD (same data): {n / b:>10,.0f} events/s")
    print(f"sink / bare: {b / s:.2f} of the bare rate")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=3)
    a = parser.parse_args()
    trio.run(main, a.events, a.repeats)
