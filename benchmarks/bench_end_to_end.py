"""End-to-end figures, measured side by side in one run: frames from another process over
loopback into ``python -m core.run`` writing Parquet, against a bare trio-websocket receive loop
on the same frames.

    python -m benchmarks.bench_end_to_end throughput [--frames 200000]
    python -m benchmarks.bench_end_to_end four-venues [--rate 1500] [--seconds 60]
    python -m benchmarks.bench_end_to_end soak [--rate 2000] [--minutes 10]
    python -m benchmarks.bench_end_to_end all --write   # all three; tables into docs/performance.md

* ``throughput``: ``benchmarks/loadgen.py`` sends Bybit ``orderbook.50`` frames (a 200-level
  book, updates of 1 to 6 levels per side) as fast as the client reads them (its send buffer
  is small, so it finishes within a few frames of the reader), first to
  ``benchmarks/bare_client.py``, then to ``python -m core.run --plugins bybit --channels l2``.
  Rate = frames / (last send - first send); CPU per message = the client process's user+system
  CPU (all threads, from /proc) from the first frame until it exited, final flush included,
  divided by the frames. A recorder run counts only if it lost nothing (exit code 0, no
  ``dropped`` row); otherwise the stream is paced lower until it does.
* ``four-venues``: Bybit, HTX (gzip), Bitget (checksummed) and Gate.io streams at ``--rate`` each
  into one recorder for ``--seconds``: dropped events, events produced against rows written,
  the 99th percentile of receipt-to-writer-buffer latency and the longest event-loop stall (the
  recorder measures both and prints them in its end-of-run summary).
* ``soak``: one venue at ``--rate`` for ``--minutes``; resident memory sampled every 10 s; the
  growth after the first flush cycle (60 s) is reported.

Absolute times depend on the machine and its load; the ratios are the figures. Not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import polars as pl
import trio
import trio_websocket

ROOT = Path(__file__).resolve().parents[1]
TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
FOUR = ("bybit", "htx", "bitget", "gateio")


def cpu_s(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime (all threads)


def rss_mib(pid: int) -> float | None:
    try:
        pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    except OSError:
        return None
    return pages * PAGE / 2**20


@dataclass
class Sampler:
    """CPU and RSS of one process, sampled every ``period`` seconds until it exits."""

    pid: int
    period: float = 0.05
    samples: list[tuple[float, float, float]] = field(default_factory=list)  # (t, cpu, rss)

    def start(self) -> None:
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while True:
            c, r = cpu_s(self.pid), rss_mib(self.pid)
            if c is None or r is None:
                return
            self.samples.append((time.time(), c, r))
            time.sleep(self.period)

    def cpu_at(self, t: float) -> float:
        before = [c for ts, c, _ in self.samples if ts <= t]
        return before[-1] if before else 0.0

    def cpu_total(self) -> float:
        return self.samples[-1][1] if self.samples else 0.0


class LoadGen:
    def __init__(self, venues: list[str], frames: int, rate: float | None) -> None:
        args = [sys.executable, "-m", "benchmarks.loadgen", "--frames", str(frames)]
        for v in venues:
            args += ["--venue", v]
        if rate is not None:
            args += ["--rate", str(rate)]
        self.proc = subprocess.Popen(args, cwd=ROOT, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        ready = json.loads(self.proc.stdout.readline())
        self.ws: dict[str, str] = ready["ready"]
        self.rest: str = ready["rest"]
        self.done: list[dict[str, float]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.done.append(json.loads(line))

    def wait(self, n: int, timeout: float) -> None:
        end = time.time() + timeout
        while len(self.done) < n and time.time() < end:
            time.sleep(0.02)

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(timeout=10)


@dataclass
class Result:
    frames: int
    seconds: float
    cpu_s: float
    exit_code: int = 0
    summary: str = ""

    @property
    def rate(self) -> float:
        return self.frames / self.seconds

    @property
    def cpu_us(self) -> float:
        return self.cpu_s / self.frames * 1e6


def run_bare(frames: int) -> Result:
    gen = LoadGen(["bybit"], frames, None)
    try:
        client = subprocess.Popen([sys.executable, "-m", "benchmarks.bare_client",
                                   gen.ws["bybit"], str(frames)], cwd=ROOT)
        sampler = Sampler(client.pid)
        sampler.start()
        client.wait(timeout=600)
        gen.wait(1, 10)
        [d] = gen.done
        return Result(d["frames"], d["end"] - d["start"],
                      sampler.cpu_total() - sampler.cpu_at(d["start"]))
    finally:
        gen.close()


def recorder_args(gen: LoadGen, venues: list[str], out: Path, channels: str,
                  extra: list[str]) -> list[str]:
    args = [sys.executable, "-m", "core.run", "--plugins", ",".join(venues), "--symbols",
            "BTC-USDT", "--channels", channels, "--out", str(out), "--no-live", "--no-spreads",
            "--log-level", "WARNING", "--cache-dir", str(out / ".cache"), *extra]
    for v in venues:
        args += ["--endpoint", f"{v}={gen.ws[v]}", "--endpoint", f"{v}.rest={gen.rest}"]
    return args


def run_recorder(frames: int, rate: float | None, transport: str) -> Result:
    gen = LoadGen(["bybit"], frames, rate)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "data"
        try:
            proc = subprocess.Popen(
                recorder_args(gen, ["bybit"], out, "l2", ["--flush-interval", "2",
                                                          "--transport", transport]),
                cwd=ROOT, stderr=subprocess.PIPE, text=True)
            sampler = Sampler(proc.pid)
            sampler.start()
            gen.wait(1, 900)
            time.sleep(0.5)  # the last frames in flight
            proc.send_signal(2)  # Ctrl-C: flush and stop
            _, err = proc.communicate(timeout=300)
            [d] = gen.done
            return Result(d["frames"], d["end"] - d["start"],
                          sampler.cpu_total() - sampler.cpu_at(d["start"]), proc.returncode,
                          "\n".join(x.replace(str(out), "OUT") for x in err.splitlines()
                                    if not x.startswith(("20", "Traceback"))))
        finally:
            gen.close()


def throughput(frames: int) -> str:
    bare = run_bare(frames)
    lines = [
        f"Bybit `orderbook.50` frames, {frames:,} per run, loopback, one process each:",
        "",
        "| client | frames/s | CPU µs per frame | rate / bare (target ≥ 0.8x) | CPU / bare "
        "(target ≤ 1.5x) |",
        "|---|---|---|---|---|",
        f"| bare trio-websocket receive loop | {bare.rate:,.0f} | {bare.cpu_us:.1f} | 1.00x | "
        "1.00x |",
    ]
    summaries = []
    for transport in ("trio-websocket", "lean"):
        rec = run_recorder(frames, None, transport)
        paced = ""
        rate = rec.rate
        while rec.exit_code != 0 and rate > 1000:  # lost data: the highest rate without loss
            rate *= 0.8
            rec = run_recorder(frames, rate, transport)
            paced = f", paced at {rate:,.0f}/s: the flat-out run lost data"
        rate_x, cpu_x = rec.rate / bare.rate, rec.cpu_us / bare.cpu_us
        lines.append(
            f"| `python -m core.run --transport {transport}` (l2 to Parquet, zero loss{paced}) "
            f"| {rec.rate:,.0f} | {rec.cpu_us:.1f} | {rate_x:.2f}x"
            f"{'' if rate_x >= 0.8 else ' (missed)'} | {cpu_x:.2f}x"
            f"{'' if cpu_x <= 1.5 else ' (missed)'} |")
        summaries += [f"--transport {transport}: exit code {rec.exit_code}", rec.summary]
    return "\n".join([*lines, "", "The recorders' end-of-run summaries:", "", "```",
                      *summaries, "```"])


def four_venues(rate: float, seconds: float) -> str:
    frames = int(rate * seconds)
    gen = LoadGen(list(FOUR), frames, rate)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "data"
        try:
            proc = subprocess.Popen(recorder_args(gen, list(FOUR), out, "l2", []), cwd=ROOT,
                                    stderr=subprocess.PIPE, text=True)
            gen.wait(len(FOUR), seconds * 3 + 120)
            time.sleep(1.0)
            proc.send_signal(2)
            _, err = proc.communicate(timeout=300)
            summary = [x for x in err.splitlines() if not x.startswith("20")]
            health = pl.read_parquet(out / "health" / "**" / "*.parquet")
            stopped = health.filter(pl.col("event") == "stopped")
            produced = sum(int(m) for d in stopped["detail"]
                           for m in re.findall(r"l2=(\d+)", d))
            l2_msgs = pl.scan_parquet(out / "l2" / "**" / "*.parquet").select(
                pl.struct("exchange", "msg_id").n_unique()).collect().item()
            dropped = health.filter(pl.col("event") == "dropped").height
        finally:
            gen.close()
    total = next((x for x in summary if x.startswith("total:")), "")
    stall = re.search(r"stall ([\d.]+) ms", total)
    p99 = re.search(r"p99 receipt-to-writer ([\d.]+) ms", total)
    sent = sum(int(d["frames"]) for d in gen.done)

    def verdict(value: str, ok: bool) -> str:
        return value if ok else f"{value} (missed)"

    p99_ms = float(p99.group(1)) if p99 else None
    stall_ms = float(stall.group(1)) if stall else None
    return "\n".join([
        f"Bybit, HTX, Bitget and Gate.io at {rate:,.0f} frames/s each for {seconds:g} s "
        f"({sent:,} frames sent), one recorder:",
        "",
        "| measure | value | target |",
        "|---|---|---|",
        f"| dropped rows | {verdict(str(dropped), dropped == 0)} | 0 |",
        f"| l2 messages produced / written | "
        f"{verdict(f'{produced:,} / {l2_msgs:,}', produced == l2_msgs == sent)} | equal |",
        f"| p99 receipt-to-writer-buffer latency | "
        f"{verdict(f'{p99_ms} ms', p99_ms is not None and p99_ms <= 5)} | ≤ 5 ms |",
        f"| longest event-loop stall | "
        f"{verdict(f'{stall_ms} ms', stall_ms is not None and stall_ms <= 20)} | ≤ 20 ms |",
        f"| exit code | {verdict(str(proc.returncode), proc.returncode == 0)} | 0 |",
    ])


def soak(rate: float, minutes: float) -> str:
    frames = int(rate * minutes * 60)
    gen = LoadGen(["bybit"], frames, rate)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "data"
        try:
            proc = subprocess.Popen(recorder_args(gen, ["bybit"], out, "l2", []), cwd=ROOT,
                                    stderr=subprocess.PIPE, text=True)
            sampler = Sampler(proc.pid, period=1.0)
            sampler.start()
            gen.wait(1, minutes * 60 + 120)
            proc.send_signal(2)
            proc.communicate(timeout=300)
        finally:
            gen.close()
    t0 = sampler.samples[0][0]
    # one window per flush cycle (60 s), after the first: its lowest and highest RSS
    windows: dict[int, list[float]] = {}
    for t, _, r in sampler.samples:
        k = int((t - t0) // 60)
        if k >= 1 and t - t0 <= minutes * 60:
            windows.setdefault(k, []).append(r)
    cycles = [(k, min(v), max(v)) for k, v in sorted(windows.items()) if len(v) >= 30]
    if len(cycles) < 2:
        return "soak: too short to judge (needs at least three flush cycles)"
    rows = [f"| {k} min | {lo:.0f} | {hi:.0f} |" for k, lo, hi in cycles]
    low_growth = cycles[-1][1] / cycles[0][1] - 1
    high_growth = cycles[-1][2] / cycles[0][2] - 1
    return "\n".join([
        f"One Bybit stream at {rate:,.0f} frames/s for {minutes:g} min, resident memory in MiB "
        "sampled every second; one row per flush cycle (60 s) after the first:",
        "",
        "| cycle | lowest | highest |",
        "|---|---|---|",
        *rows,
        "",
        f"Growth from the first to the last cycle: lowest {low_growth:+.1%}, highest "
        f"{high_growth:+.1%} (target: within 10%). Within a cycle memory rises while rows "
        "are buffered and falls when a file is written.",
    ])


def header() -> str:
    return (f"Measured {datetime.now(UTC):%Y-%m-%d} on {platform.machine()} "
            f"({os.cpu_count()} cores), Linux {platform.release()}, Python "
            f"{platform.python_version()}, trio {trio.__version__}, trio-websocket "
            f"{trio_websocket.__version__}, msgspec {msgspec.__version__}, polars "
            f"{pl.__version__}.")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("what", choices=["throughput", "four-venues", "soak", "all"])
    p.add_argument("--frames", type=int, default=200_000)
    p.add_argument("--rate", type=float, default=None)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--write", action="store_true",
                   help="also write the tables into docs/performance.md")
    args = p.parse_args()
    parts = [header()]
    if args.what in ("throughput", "all"):
        parts.append(throughput(args.frames))
    if args.what in ("four-venues", "all"):
        parts.append(four_venues(args.rate or 1500, args.seconds))
    if args.what in ("soak", "all"):
        parts.append(soak(args.rate or 2000, args.minutes))
    text = "\n\n".join(parts)
    print(text)
    if args.write:
        from benchmarks.docs import replace_section
        replace_section("end-to-end", text)


if __name__ == "__main__":
    main()
