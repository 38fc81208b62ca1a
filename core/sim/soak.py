"""Soak: record from simulated venues at a stated rate for a stated time and watch the process.

``python -m core.sim.soak --plugins bybit,htx,bitget,gateio --symbols BTC-USDT,ETH-USDT
--rate 50 --duration 600 --every 60`` serves the venues on loopback TCP from a child process
(:mod:`core.sim.serve`: real sockets, the venues' real protocols; their memory and CPU are not
the measured process's), runs the real recording pipeline (sessions, bus, Parquet writer) into a
temporary folder (or ``--out``), and every ``--every`` seconds prints one line: messages
received, messages per second, events published, rows on disk, reconnects, gaps, dropped events,
resident memory (RSS) and the number of objects the garbage collector tracks. The summary
compares memory after the warm-up (the first third of the run: imports, first flushes, buffers
at their working size) with the end.

The command is for people; :func:`soak` returns the samples for tests (``tests/session/
test_soak.py`` runs a short one and asserts that memory does not grow).

Must not: connect anywhere but loopback, or leave the venues' process behind.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
import trio

from core.bus import Bus
from core.clock import Clock
from core.plugins import load_plugins
from core.protocol import ProtocolConfig
from core.session import VenueStats
from core.simulate import build
from core.supervisor import RunPlan, VenuePlan, record
from core.testing.scenario import instruments_of

TABLES = ("tob", "l2", "trades", "health")
SERVE_START_TIMEOUT_S = 60.0
MAX_URLS_LINE = 64 * 1024
MIB = 1024 * 1024
WARM_UP_SHARE = 1 / 3


def rss_bytes() -> int:
    """Resident memory of this process now (Linux ``/proc``; elsewhere the peak so far)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


class RowCounter:
    """Rows in the Parquet files written so far; each file is read (metadata only) once."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.seen: set[Path] = set()
        self.rows = 0

    def count(self) -> int:
        for table in TABLES:
            new = [f for f in sorted(self.out.glob(f"{table}/**/*.parquet"))
                   if f not in self.seen]
            if new:
                self.rows += pl.scan_parquet(new).select(pl.len()).collect().item()
                self.seen.update(new)
        return self.rows


@dataclass(frozen=True)
class Sample:
    t_s: float
    messages: int
    events: int
    rows: int
    reconnects: int
    gaps: int
    dropped: int
    rss: int
    objects: int  # objects the garbage collector tracks (a per-message leak shows here first)


@dataclass
class SoakResult:
    samples: list[Sample] = field(default_factory=list)
    stats: dict[str, VenueStats] = field(default_factory=dict)
    bus: Bus | None = None

    def rss_after_warm_up(self) -> int:
        """RSS at the first sample after the warm-up (the first third of the run)."""
        end = self.samples[-1].t_s
        return next(s.rss for s in self.samples if s.t_s >= WARM_UP_SHARE * end)


def _sample(t_s: float, stats: Sequence[VenueStats], bus: Bus, rows: int) -> Sample:
    return Sample(t_s=t_s, messages=sum(s.messages for s in stats),
                  events=sum(bus.published.values()), rows=rows,
                  reconnects=sum(s.reconnects for s in stats),
                  gaps=sum(s.gaps for s in stats),
                  dropped=sum(sub.dropped_events for sub in bus.stats()), rss=rss_bytes(),
                  objects=len(gc.get_objects()))


def format_sample(s: Sample, previous: Sample | None) -> str:
    dt = s.t_s - previous.t_s if previous else s.t_s
    rate = (s.messages - (previous.messages if previous else 0)) / dt if dt > 0 else 0.0
    return (f"{s.t_s:7.0f} {s.messages:10d} {rate:8.0f} {s.events:10d} {s.rows:11d} "
            f"{s.reconnects:10d} {s.gaps:5d} {s.dropped:8d} {s.rss / MIB:8.1f} {s.objects:8d}")


HEADER = ("    t_s   messages    msg/s     events rows_on_disk reconnects  gaps  dropped   "
          "rss_mb  objects")


async def soak(plugins: Sequence[str], symbols: Sequence[str], *, rate: float,
               duration_s: float, every_s: float, out: Path, seed: int = 1,
               flush_interval_s: float = 5.0, echo: bool = False,
               count_rows: bool = True, result: SoakResult | None = None) -> SoakResult:
    """Run the soak (see the module docstring) and return its samples (in ``result`` if given,
    filled as the run goes)."""
    _, registry = load_plugins()
    sim = build(plugins, symbols, seed, rate)  # here only for the venues' instruments
    result = result if result is not None else SoakResult()
    start = trio.current_time()
    counter = RowCounter(out)

    async def reporter(stats: list[VenueStats], bus: Bus, clock: Clock,
                       interval_s: float) -> None:
        result.bus = bus
        result.stats = {s.venue: s for s in stats}
        previous: Sample | None = None
        if echo:
            print(HEADER, flush=True)
        while True:
            await trio.sleep(interval_s)
            rows = await trio.to_thread.run_sync(counter.count) if count_rows else 0
            sample = _sample(trio.current_time() - start, stats, bus, rows)
            result.samples.append(sample)
            if echo:
                print(format_sample(sample, previous), flush=True)
            previous = sample

    async with trio.open_nursery() as nursery:
        urls = await nursery.start(_serve_venues, plugins, symbols, seed, rate)
        venues = []
        for name in plugins:
            proto = registry.get(name)
            config = ProtocolConfig(symbols=tuple(symbols), channels=("tob", "l2", "trades"),
                                    instruments=instruments_of(proto, sim.speakers[name]))
            venues.append(VenuePlan(proto=proto, url=urls[name]["ws"], config=config))
        plan = RunPlan(venues=venues, out=out, duration_s=duration_s,
                       flush_interval_s=flush_interval_s, status_interval_s=every_s,
                       handle_signals=echo, status_view=reporter)
        await record(plan)
        nursery.cancel_scope.cancel()
    # the end: every buffer flushed
    if result.bus is not None:
        rows = await trio.to_thread.run_sync(counter.count) if count_rows else 0
        final = _sample(trio.current_time() - start, list(result.stats.values()), result.bus,
                        rows)
        result.samples.append(final)
        if echo:
            print(format_sample(final, result.samples[-2] if len(result.samples) > 1 else None),
                  "(end)", flush=True)
    return result


async def _serve_venues(plugins: Sequence[str], symbols: Sequence[str], seed: int, rate: float,
                        *, task_status: trio.TaskStatus[dict[str, dict[str, str]]]
                        = trio.TASK_STATUS_IGNORED) -> None:
    """Run :mod:`core.sim.serve` in a child process until cancelled; started with its URLs."""
    command = [sys.executable, "-m", "core.sim.serve", "--plugins", ",".join(plugins),
               "--symbols", ",".join(symbols), "--seed", str(seed), "--rate", repr(rate)]
    process = await trio.lowlevel.open_process(command, stdin=subprocess.PIPE,
                                               stdout=subprocess.PIPE)
    try:
        assert process.stdout is not None
        line = b""
        with trio.fail_after(SERVE_START_TIMEOUT_S):
            while not line.endswith(b"\n"):
                chunk = await process.stdout.receive_some(4096)
                if not chunk or len(line) > MAX_URLS_LINE:
                    raise RuntimeError(f"the simulated venues did not start: {command}")
                line += chunk
        task_status.started(json.loads(line))
        await process.wait()
        raise RuntimeError(f"the simulated venues stopped (exit {process.returncode})")
    finally:
        with trio.CancelScope(shield=True):
            process.kill()
            await process.wait()


def summary(result: SoakResult) -> str:
    last = result.samples[-1]
    warm = result.rss_after_warm_up()
    return (f"summary: {last.messages} messages in {last.t_s:.0f} s "
            f"({last.messages / max(last.t_s, 1e-9):.0f}/s), {last.events} events, "
            f"{last.rows} rows on disk, {last.reconnects} reconnects, {last.gaps} gaps, "
            f"{last.dropped} dropped; rss {warm / MIB:.1f} MB after warm-up -> "
            f"{last.rss / MIB:.1f} MB at the end ({(last.rss - warm) / MIB:+.1f} MB)")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m core.sim.soak",
        description="Record from simulated venues at a given rate and report throughput, rows "
                    "written, reconnects and resident memory over time.")
    p.add_argument("--plugins", default="bybit,htx,bitget,gateio")
    p.add_argument("--symbols", default="BTC-USDT,ETH-USDT")
    p.add_argument("--rate", type=float, default=50.0,
                   help="book events per second per venue and symbol (default: 50)")
    p.add_argument("--duration", type=float, default=300.0, help="seconds (default: 300)")
    p.add_argument("--every", type=float, default=30.0,
                   help="seconds between report lines (default: 30)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", type=Path, default=None,
                   help="keep the recording here (default: a temporary folder, removed)")
    args = p.parse_args(argv)
    plugins = [x for x in args.plugins.split(",") if x]
    symbols = [x for x in args.symbols.split(",") if x]
    print(f"soak: {','.join(plugins)} x {','.join(symbols)}, {args.rate:g} book events/s per "
          f"venue and symbol, {args.duration:g} s", flush=True)

    async def run(out: Path) -> SoakResult:
        return await soak(plugins, symbols, rate=args.rate, duration_s=args.duration,
                          every_s=args.every, out=out, seed=args.seed, echo=True)

    if args.out is not None:
        result = trio.run(run, args.out)
    else:
        with tempfile.TemporaryDirectory(prefix="bookwire-soak-") as tmp:
            result = trio.run(run, Path(tmp))
    if not result.samples:
        print("soak: too short for a sample; raise --duration or lower --every")
        return 1
    print(summary(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
