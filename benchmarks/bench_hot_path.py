"""Hot-path figures: frame -> decode -> book -> hand-off, per message, and what one trio
channel hop costs next to it.

    python benchmarks/bench_hot_path.py

Prints medians over repeated runs; not a test. Frames are generated in Bybit v5's wire format
(orderbook.50 deltas touching a handful of levels near the touch, on a 200-level book).
"""

from __future__ import annotations

import json
import random
import statistics
import time

import trio

from core.bus import Bus
from core.protocol import ProtocolConfig
from plugins.bybit.protocol import BybitProtocol

N_FRAMES = 20_000
REPEATS = 5
T0 = 1_786_310_818_000_000_000


def frames(n: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    mid = 65_000.0
    bids = [[f"{mid - 0.1 * (i + 1):.1f}", f"{rng.uniform(0.001, 5):.3f}"] for i in range(200)]
    asks = [[f"{mid + 0.1 * i:.1f}", f"{rng.uniform(0.001, 5):.3f}"] for i in range(200)]
    out = [json.dumps({"topic": "orderbook.50.BTCUSDT", "type": "snapshot", "ts": 1,
                       "data": {"s": "BTCUSDT", "b": bids, "a": asks, "u": 1, "seq": 1},
                       "cts": 1})]
    for u in range(2, n + 1):
        b = [[f"{mid - 0.1 * rng.randint(1, 30):.1f}",
              "0" if rng.random() < 0.2 else f"{rng.uniform(0.001, 5):.3f}"]
             for _ in range(rng.randint(1, 6))]
        a = [[f"{mid + 0.1 * rng.randint(0, 29):.1f}",
              "0" if rng.random() < 0.2 else f"{rng.uniform(0.001, 5):.3f}"]
             for _ in range(rng.randint(1, 6))]
        out.append(json.dumps({"topic": "orderbook.50.BTCUSDT", "type": "delta", "ts": u,
                               "data": {"s": "BTCUSDT", "b": b, "a": a, "u": u, "seq": u},
                               "cts": u}))
    return out


def bench_protocol(data: list[str], bus: Bus | None) -> float:
    """Seconds per frame for receive() (+ publish when a bus is given)."""
    proto = BybitProtocol(ProtocolConfig(symbols=("BTC-USDT",), channels=("tob", "l2")))
    proto.connection_made(T0)
    start = time.perf_counter()
    for i, frame in enumerate(data):
        events = proto.receive(frame, T0 + i)
        if bus is not None and events:
            bus.publish(events)
    return (time.perf_counter() - start) / len(data)


async def bench_channel_hop(n: int) -> float:
    """Seconds per item sent through a trio memory channel and received by another task."""
    send, recv = trio.open_memory_channel[int](1)

    async def consumer() -> None:
        async for _ in recv:
            pass

    async with trio.open_nursery() as nursery:
        nursery.start_soon(consumer)
        start = time.perf_counter()
        async with send:
            for i in range(n):
                await send.send(i)
        elapsed = time.perf_counter() - start
    return elapsed / n


def main() -> None:
    data = frames(N_FRAMES)
    decode_only = []
    with_bus = []
    hop = []
    for _ in range(REPEATS):
        decode_only.append(bench_protocol(data, None))
        bus = Bus()
        bus.subscribe("writer", buffer_batches=N_FRAMES + 10)
        with_bus.append(bench_protocol(data, bus))
        hop.append(trio.run(bench_channel_hop, N_FRAMES))
    us = 1e6
    print(f"frames per run: {N_FRAMES}, runs: {REPEATS}")
    print(f"decode + book + events (Bybit delta):      {statistics.median(decode_only) * us:6.2f} "
          f"us/frame")
    print(f"... + bus.publish (send_nowait, 1 writer): {statistics.median(with_bus) * us:6.2f} "
          f"us/frame")
    print(f"one awaited trio channel hop:              {statistics.median(hop) * us:6.2f} "
          f"us/item")


if __name__ == "__main__":
    main()
