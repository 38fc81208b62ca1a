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
from core.testing.fake_servers import serve_http, serve_ws
from tests.fakes.bybit import FakeBybit, book_msg
from tests.session.test_cli_bybit import INSTRUMENTS, T_MS

CEILING_S = 30
REPO = Path(__file__).resolve().parents[2]
REST_PATH = "/v5/market/instruments-info?category=linear&limit=1000"


def endless_script(n: int = 4000) -> dict:
    """A snapshot, then a steady stream of deltas (5 ms apart on the fake)."""
    msgs = [book_msg("BTCUSDT", "snapshot", [["100.0", "1"]], [["101.0", "1"]], 1, T_MS)]
    msgs += [book_msg("BTCUSDT", "delta", [["100.0", str(1 + i % 7)]], [], i + 1, T_MS + i)
             for i in range(1, n)]
    return {"orderbook.50.BTCUSDT": msgs}


async def test_kill_9_leaves_only_complete_readable_files(tmp_path: Path) -> None:
    fake = FakeBybit(scripts=[endless_script()])
    out = tmp_path / "data"
    with trio.fail_after(CEILING_S):
        async with trio.open_nursery() as nursery:
            ws_url = await nursery.start(serve_ws, fake.handler)
            rest_url = await nursery.start(serve_http, {REST_PATH: INSTRUMENTS})
            proc = await trio.lowlevel.open_process(
                [sys.executable, "-m", "core.run", "--plugins", "bybit", "--channels", "l2",
                 "--out", str(out), "--flush-interval", "0.2", "--record-raw",
                 "--endpoint", f"bybit={ws_url}", "--endpoint", f"bybit.rest={rest_url}",
                 "--log-level", "WARNING"], cwd=REPO)
            await fake.subscribed.wait()
            await trio.sleep(2.0)
            proc.send_signal(signal.SIGKILL)
            assert await proc.wait() == -signal.SIGKILL
            nursery.cancel_scope.cancel()
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
    fake = FakeBybit(scripts=[endless_script()])
    with trio.fail_after(CEILING_S):
        async with trio.open_nursery() as nursery:
            ws_url = await nursery.start(serve_ws, fake.handler)
            rest_url = await nursery.start(serve_http, {REST_PATH: INSTRUMENTS})
            start = trio.current_time()
            code = await async_main([
                "--plugins", "bybit", "--channels", "l2", "--out", str(out), "--duration", "60",
                "--flush-interval", "0.2", "--endpoint", f"bybit={ws_url}",
                "--endpoint", f"bybit.rest={rest_url}"], handle_signals=False)
            elapsed = trio.current_time() - start
            nursery.cancel_scope.cancel()
    assert code == 1
    assert elapsed < 10  # stopped at the first failed write, not at the end of --duration
    err = capsys.readouterr().err
    assert "error: cannot write" in err and "/l2/exchange=bybit/" in err and "stopped" in err
