"""The performance report: every figure of ``docs/performance.md``, measured side by side in one
run, printed, and written into that file with the machine, the versions and the date.

    python -m benchmarks.report                  # about 15 minutes (the soak takes 10)
    python -m benchmarks.report --soak-minutes 0 # without the soak
    python -m benchmarks.report --only plugins   # one section (or several, comma-separated)

Sections (each between ``<!-- bench:NAME -->`` markers in the doc): ``plugins`` (each venue's
``receive()`` against a bare typed decode of the same frames, ``benchmarks/bench_plugins.py``),
``end-to-end`` (``python -m core.run`` against a bare trio-websocket receive loop), ``four-venues``
and ``soak`` (``benchmarks/bench_end_to_end.py``). Ratios are the figures: absolute times depend
on the machine and what else runs on it. Not a test.
"""

from __future__ import annotations

import argparse
import importlib.metadata

from benchmarks import bench_end_to_end as e2e
from benchmarks import bench_plugins
from benchmarks.docs import replace_section
from benchmarks.frames import stream

SECTIONS = ("plugins", "end-to-end", "four-venues", "soak")


def plugins_section(frames: int, repeats: int) -> str:
    rows = bench_plugins.run(frames, repeats)
    _, bybit_frames = stream("bybit", frames)
    cf = bench_plugins.cryptofeed_bybit(bybit_frames, repeats)
    if cf is not None:
        rows.append((f"for comparison: cryptofeed {cf[0]} Bybit handler, same frames",
                     cf[1] * 1e6, rows[0][2], cf[1] * 1e6 / rows[0][2], float("inf")))
    note = ("" if cf is not None else
            "\n\n(cryptofeed is not installed here, so its Bybit handler was not timed.)")
    return (f"{e2e.header()} msgspec {importlib.metadata.version('msgspec')}; {frames:,} "
            f"update frames per venue, best of {repeats} runs:\n\n"
            + bench_plugins.table(rows) + note)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=20_000, help="frames per plugin run")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--e2e-frames", type=int, default=200_000)
    p.add_argument("--rate", type=float, default=1500.0, help="four venues: frames/s each")
    p.add_argument("--seconds", type=float, default=60.0, help="four venues: how long")
    p.add_argument("--soak-rate", type=float, default=2000.0)
    p.add_argument("--soak-minutes", type=float, default=10.0, help="0: no soak")
    p.add_argument("--no-write", action="store_true", help="print only")
    p.add_argument("--only", default=",".join(SECTIONS),
                   help="comma-separated sections to measure (default: all)")
    args = p.parse_args()
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(only) - set(SECTIONS))
    if unknown:
        p.error(f"--only: unknown section(s) {', '.join(unknown)}; "
                f"choose from {', '.join(SECTIONS)}")
    measure = {
        "plugins": lambda: plugins_section(args.frames, args.repeats),
        "end-to-end": lambda: e2e.header() + "\n\n" + e2e.throughput(args.e2e_frames),
        "four-venues": lambda: e2e.header() + "\n\n" + e2e.four_venues(args.rate, args.seconds),
        "soak": lambda: e2e.header() + "\n\n" + e2e.soak(args.soak_rate, args.soak_minutes),
    }
    sections = {name: measure[name]() for name in SECTIONS
                if name in only and (name != "soak" or args.soak_minutes > 0)}
    for name, text in sections.items():
        print(f"## {name}\n\n{text}\n")
        if not args.no_write:
            replace_section(name, text)


if __name__ == "__main__":
    main()
