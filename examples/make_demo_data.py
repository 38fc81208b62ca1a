"""Write a synthetic dataset in the recorder's layout, so every analysis script can run on data the
project makes itself. Both parts cover the same hour (2024-05-01 12:00 to 13:00 UTC):

* ``tob`` + ``health`` + ``funding`` for BTC-USDT on four perpetual venues (bybit, gateio,
  bitget, htx) with known lead-lags, latencies, clock offsets (measured in ``clock_offset``
  health rows) and occasional dislocations that cross the venues (:mod:`analysis.synth`), a
  short htx outage, and funding every 30 minutes (a funding at 12:30 inside the hour; htx, which
  quotes 1 bp rich, pays the highest rate);
* ``l2`` + ``trades`` + ``health`` for coinbase ETC-USD from the queue-reactive simulator
  (:mod:`analysis.qr_sim`: Model I queues in AES units around the half-tick reference price,
  Model III moves of the reference price (shifts and re-initialisations), re-sent snapshots,
  duplicated messages, unchanged-size rows and one feed loss followed by a resync).

Usage::

    python examples/make_demo_data.py --out demo_data
    python -m analysis.spreads --data demo_data --symbol BTC-USDT --out out/spreads
    python -m analysis.depth --data demo_data --exchange coinbase --symbol ETC-USD \\
        --at 2024-05-01T12:30:00Z --levels 10 --out out/depth
    python -m analysis.queue_reactive --data demo_data --exchange coinbase --symbol ETC-USD \\
        --out out/qr
    python -m analysis.qr_validate --data demo_data --exchange coinbase --symbol ETC-USD \\
        --out out/qr_validate
    python -m analysis.coverage --data demo_data --png out/coverage.png

The ground truth of the simulations (dislocations, QR events, Model III moves) is written under
``<out>/truth``.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from analysis.load import write_table
from analysis.qr_sim import L2SimConfig, simulate_l2
from analysis.synth import DEFAULT_VENUES, PerpConfig, simulate_perps

T0_NS = 1_714_564_800 * 1_000_000_000  # 2024-05-01 12:00:00 UTC
#: (clock offset ms, funding rates bps per 8 h of the two periods) of each demo venue
CLOCKS_AND_FUNDING = {"bybit": (0.0, (0.5, 1.0)), "gateio": (3.0, (1.0, 0.5)),
                      "bitget": (-2.0, (0.0, -0.5)), "htx": (5.0, (2.0, 2.5))}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="example:\n  python examples/make_demo_data.py --out "
                                       "demo_data")
    p.add_argument("--out", type=Path, required=True, help="dataset root to write")
    p.add_argument("--perp-minutes", type=float, default=60.0)
    p.add_argument("--l2-minutes", type=float, default=60.0)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    venues = tuple(replace(v, clock_offset_ms=CLOCKS_AND_FUNDING[v.name][0],
                           funding_bps_8h=CLOCKS_AND_FUNDING[v.name][1]) for v in DEFAULT_VENUES)
    perps = simulate_perps(PerpConfig(duration_s=args.perp_minutes * 60, t0_ns=T0_NS,
                                      venues=venues, funding_interval_s=1800,
                                      outages=(("htx", args.perp_minutes * 30, 8.0),)), rng)
    write_table(perps.tob, args.out, "tob")
    write_table(perps.health, args.out, "health", "part-perps.parquet")
    if perps.funding is not None:
        write_table(perps.funding, args.out, "funding")
    lot = 1e-8  # Coinbase's ETC-USD base increment
    cfg = L2SimConfig(duration_s=args.l2_minutes * 60, k=10, depth_beyond=3, tick=0.01, lot=lot,
                      p0=18.0, aes_lots=(3e8, 5e8, 5e8), t0_ns=T0_NS,
                      resnapshot_rate=1 / 600, duplicate_rate=0.05, zero_delta_rate=0.05,
                      breaks=((args.l2_minutes * 60 * 0.7, 15.0),))
    sim = simulate_l2(cfg, rng)
    write_table(sim.l2, args.out, "l2")
    write_table(sim.trades, args.out, "trades")
    write_table(sim.health, args.out, "health", "part-coinbase.parquet")
    truth = args.out / "truth"
    truth.mkdir(parents=True, exist_ok=True)
    perps.dislocations.write_parquet(truth / "perp_dislocations.parquet")
    sim.truth.write_parquet(truth / "qr_events.parquet")
    sim.pref.write_parquet(truth / "qr_pref.parquet")
    sim.moves.write_parquet(truth / "qr_moves.parquet")
    print(f"wrote {perps.tob.height} tob rows ({perps.dislocations.height} dislocations), "
          f"{sim.l2.height} l2 rows, {sim.trades.height} trades to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
