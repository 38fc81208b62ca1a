"""Durability: a killed recorder leaves only complete, readable files; a run that cannot write
stops with a clear message and exit code 1 instead of dropping data."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import polars as pl
import pytest
import trio

from core.replay import read_raw
from core.run import async_main
from core.sim.market import Market, Script, Step, load_text
from core.sim.server import Simulation
from tests.session.sims import BYBIT_BTC, endpoints, serving, simulation

CEILING_S = 30
REPO = Path(__file__).resolve().parents[2]


def endless(n: int = 4000) -> tuple[Simulation, Script]:
    """A one-level book, then a steady stream of deltas (5 ms apart)."""
    market = Market([BYBIT_BTC])
    load_text(market, "bybit", "BTC-USDT", [("100.0", "1")], [("101.0", "1")])
    steps = [Step("BTC-USDT", bids=[("100.0", str(1 + i % 7))]) for i in range(1, n)]
    return simulation(market), Script("bybit", steps, interval_s=0.005)


async def test_kill_9_leaves_only_complete_readable_files(tmp_path: Path) -> None:
    sim, script = endless()
    out = tmp_path / "data"
    with trio.fail_after(CEILING_S):
        async with serving(sim) as (_, urls):
            proc = await trio.lowlevel.open_process(
                [sys.executable, "-m", "core.run", "--plugins", "bybit", "--channels", "l2",
                 "--out", str(out), "--flush-interval", "0.2", "--record-raw",
                 *endpoints(urls), "--log-level", "WARNING"], cwd=REPO)
            await sim.play(script)
            await trio.sleep(2.0)
            proc.send_signal(signal.SIGKILL)
            assert await proc.wait() == -signal.SIGKILL
    files = sorted(out.rglob("*.parquet"))
    assert len([f for f in files if "/l2/" in str(f)]) >= 2  # several flushes happened
    rows = 0
    for f in files:  # every visible file is complete and readable
        rows += pl.read_parquet(f).height
    assert rows > 100
    l2 = pl.concat([pl.read_parquet(f) for f in files if "/l2/" in str(f)])
    per_msg = l2.group_by("msg_id", maintain_order=True).agg(pl.col("ts_local").first())
    assert per_msg["msg_id"].is_sorted() and per_msg["msg_id"].is_unique().all()
    assert (per_msg["msg_id"] >= per_msg["ts_local"].dt.epoch("ns")).all()  # time-seeded
    raw = sorted((out / "raw").rglob("*.jsonl.gz"))
    assert raw and sum(1 for f in raw for _ in read_raw(f)) > 100


async def test_unwritable_output_stops_the_run_with_exit_1(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "data"
    out.mkdir()
    (out / "l2").write_text("a file where a folder must go")  # every l2 write fails
    sim, script = endless()
    with trio.fail_after(CEILING_S):
        async with serving(sim) as (nursery, urls):
            nursery.start_soon(sim.play, script)
            start = trio.current_time()
            code = await async_main([
                "--plugins", "bybit", "--channels", "l2", "--out", str(out), "--duration", "60",
                "--flush-interval", "0.2", *endpoints(urls)], handle_signals=False)
            elapsed = trio.current_time() - start
    assert code == 1
    assert elapsed < 10  # stopped at the first failed write, not at the end of --duration
    err = capsys.readouterr().err
    assert "error: cannot write" in err and "/l2/exchange=bybit/" in err and "stopped" in err
