"""Time decode + apply of a full-book Coinbase Advanced Trade ``l2_data`` snapshot.

Builds one 46,000-level snapshot frame in the venue's wire format (the size of BTC-USD's book in
the 2026 capture: ~5 MB of JSON), then feeds it through ``CoinbaseProtocol.receive`` several
times (each one replaces the whole book, publishes the l2 rows and the top of book) and prints
median and max milliseconds; also the same for small ``update`` frames.

Run: ``python benchmarks/bench_coinbase_snapshot.py [runs]``. Prints figures; asserts nothing.
"""

from __future__ import annotations

import statistics
import sys
import time

import msgspec

from core.protocol import ProtocolConfig
from plugins.coinbase.protocol import CoinbaseProtocol

LEVELS = 46_000
EVENT_TIME = "2026-08-09T21:05:48.170326Z"


def snapshot_frame(seq: int, levels: int = LEVELS) -> str:
    half = levels // 2
    updates = [{"side": "bid", "event_time": EVENT_TIME,
                "price_level": f"{65083.66 - i * 0.01:.2f}",
                "new_quantity": f"{0.00012345 + (i % 613) * 0.0071:.8f}"} for i in range(half)]
    updates += [{"side": "offer", "event_time": EVENT_TIME,
                 "price_level": f"{65083.67 + i * 0.01:.2f}",
                 "new_quantity": f"{0.0003 + (i % 587) * 0.0113:.8f}"}
                for i in range(levels - half)]
    return msgspec.json.encode({
        "channel": "l2_data", "client_id": "", "timestamp": "2026-08-09T21:05:48.483587501Z",
        "sequence_num": seq,
        "events": [{"type": "snapshot", "product_id": "BTC-USD", "updates": updates}],
    }).decode()


def update_frame(seq: int, n: int = 20) -> str:
    updates = [{"side": "bid" if i % 2 else "offer", "event_time": EVENT_TIME,
                "price_level": f"{(65080.00 - i * 0.37) if i % 2 else (65090.00 + i * 0.41):.2f}",
                "new_quantity": "0" if i % 5 == 0 else f"{0.1 + i * 0.01:.8f}"}
               for i in range(n)]
    return msgspec.json.encode({
        "channel": "l2_data", "client_id": "", "timestamp": "2026-08-09T21:05:48.505350477Z",
        "sequence_num": seq,
        "events": [{"type": "update", "product_id": "BTC-USD", "updates": updates}],
    }).decode()


def main(runs: int = 15) -> None:
    frame = snapshot_frame(0)
    proto = CoinbaseProtocol(ProtocolConfig(symbols=("BTC-USD",), channels=("tob", "l2")))
    proto.connection_made(0)
    snap_ms = []
    for i in range(runs):
        proto.connection_made(i)  # sequence restarts, so every run is a first snapshot
        t = time.perf_counter()
        events = proto.receive(frame, i)
        snap_ms.append((time.perf_counter() - t) * 1000)
        assert proto.book.is_live("BTC-USD") and len(proto.book.book("BTC-USD")) == LEVELS
        assert not proto.decode_errors, events[:1]
    upd_ms = []
    for seq in range(1, 2001):
        f = update_frame(seq)
        t = time.perf_counter()
        proto.receive(f, seq)
        upd_ms.append((time.perf_counter() - t) * 1000)
    print(f"snapshot frame: {LEVELS} levels, {len(frame) / 1e6:.2f} MB, {runs} runs")
    print(f"  decode+apply (receive): median {statistics.median(snap_ms):.1f} ms, "
          f"max {max(snap_ms):.1f} ms, min {min(snap_ms):.1f} ms")
    print(f"update frames: 20 levels, {len(upd_ms)} frames")
    print(f"  decode+apply (receive): median {statistics.median(upd_ms) * 1000:.0f} us, "
          f"max {max(upd_ms) * 1000:.0f} us")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 15)
