"""The write path end to end: exit codes and the summary, drops written down, a failing disk, and
signals during the final flush."""

from __future__ import annotations

import errno
import logging
import os
import signal
import time
from pathlib import Path

import polars as pl
import pytest
import trio

from core.run import async_main
from core.sim.market import Market, Script, load_text
from core.sim.server import Simulation
from core.writers.parquet import ParquetWriter
from tests.session.sims import (
    BYBIT_BTC,
    HTX_BTC,
    bybit_btc,
    endless,
    endpoints,
    serving,
    simulation,
)

CEILING_S = 40


def read(out: Path, table: str) -> pl.DataFrame:
    files = sorted(out.glob(f"{table}/**/*.parquet"))
    return pl.concat([pl.read_parquet(f) for f in files]) if files else pl.DataFrame()


def parquet_files(out: Path) -> list[Path]:
    return list(out.rglob("*.parquet"))


def temp_files(out: Path) -> list[Path]:
    return list(out.rglob("*.tmp"))


def endless_bybit(interval_s: float) -> tuple[Simulation, Script]:
    """Bybit's BTC-USDT book and an endless stream of deltas, ``interval_s`` apart."""
    market = Market([BYBIT_BTC])
    load_text(market, "bybit", "BTC-USDT", [("100.0", "1")], [("101.0", "1")])
    return simulation(market), endless("bybit", "BTC-USDT", "100.0", interval_s=interval_s)


async def run_cli(sim: Simulation, script: Script | None, args: list[str], *,
                  venue: str = "bybit", signals: bool = False, during: object = None) -> int:
    """``async_main`` against the fake venue of ``sim`` (``script`` played once the client has
    subscribed); ``during()`` runs beside it (e.g. to signal)."""
    with trio.fail_after(CEILING_S):
        async with serving(sim) as (nursery, urls):
            if script is not None:
                nursery.start_soon(sim.play, script)
            if during is not None:
                nursery.start_soon(during)  # type: ignore[arg-type]
            code = await async_main(["--plugins", venue, *endpoints(urls), "--no-spreads",
                                     *args], handle_signals=signals)
    return code


async def test_a_clean_run_exits_0_with_a_summary(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    sim, script = bybit_btc()
    code = await run_cli(sim, script, ["--channels", "tob,l2,trades", "--out", str(tmp_path),
                                       "--duration", "1.5"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert script.done
    [line] = [x for x in err.splitlines() if x.startswith("bybit: connected")]
    assert "rows tob=2 l2=5 trades=2 health=" in line and "dropped 0" in line
    assert "exit code 0: every venue delivered data and nothing was lost" in err


async def test_a_venue_that_never_delivers_data_exits_4(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    """The venue acknowledges the subscription and never pushes (a suspended contract)."""
    market = Market([HTX_BTC])
    load_text(market, "htx", "BTC-USDT", [("99.9", "0.8")], [("100.0", "0.5")])
    sim = simulation(market)
    sim.speakers["htx"].silent.add("BTC-USDT")  # type: ignore[attr-defined]
    code = await run_cli(sim, None, ["--channels", "l2", "--out", str(tmp_path),
                                     "--duration", "1"], venue="htx")
    err = capsys.readouterr().err
    assert code == 4, err
    assert sim.venues["htx"].acks >= 1  # subscribed, and nothing came
    assert "exit code 4: no market data from htx" in err


async def test_a_full_buffer_is_written_down_as_dropped_rows_and_exits_3(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    real_write = ParquetWriter._write

    def slow_disk(self: ParquetWriter, buf: object, directory: Path, name: str) -> int:
        time.sleep(0.5)  # in the worker thread: the feed keeps running
        return real_write(self, buf, directory, name)  # type: ignore[arg-type]

    monkeypatch.setattr(ParquetWriter, "_write", slow_disk)
    code = await run_cli(*endless_bybit(0.0005), ["--channels", "l2", "--out", str(tmp_path),
                                                  "--duration", "2", "--buffer-mb", "0.01"])
    err = capsys.readouterr().err
    assert code == 3, err
    health = read(tmp_path, "health")
    drops = health.filter(pl.col("event") == "dropped")
    assert drops.height >= 1
    lost: dict[str, int] = {}
    for detail in drops["detail"].to_list():
        fields = dict(f.split("=", 1) for f in detail.split(":")[0].split())
        lost[fields["table"]] = lost.get(fields["table"], 0) + int(fields["count"])
    assert lost.get("l2", 0) > 0
    # the ledger's own end rows are never dropped, and produced = written + written-down drops
    stopped = health.filter(pl.col("event") == "stopped")["detail"].item()
    produced = dict(f.split("=") for f in stopped.removeprefix("produced ").split())
    assert read(tmp_path, "l2")["msg_id"].n_unique() + lost["l2"] == int(produced["l2"])
    # health: everything produced is written or written down (drop rows are the writer's own)
    own = health.filter(pl.col("event").is_in(["dropped", "rows_written"])).height
    assert health.height - own + lost.get("health", 0) == int(produced["health"])
    total = sum(lost.values())
    assert f"exit code 3: {total} events lost ({total} dropped" in err


async def test_a_full_disk_stops_the_run_with_exit_1_and_a_write_failed_row(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    real = pl.DataFrame.write_parquet

    def enospc(self: pl.DataFrame, file: Path, **kw: object) -> None:
        if "/l2/" in str(file):
            raise OSError(errno.ENOSPC, "No space left on device")
        real(self, file, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(pl.DataFrame, "write_parquet", enospc)
    start = trio.current_time()
    code = await run_cli(*endless_bybit(0.005),
                         ["--channels", "l2", "--out", str(tmp_path), "--duration", "60",
                          "--flush-interval", "0.2"])
    assert trio.current_time() - start < 15
    err = capsys.readouterr().err
    assert code == 1, err
    assert "error: cannot write" in err and "No space left on device" in err
    assert "Traceback" not in err
    [row] = read(tmp_path, "health").filter(pl.col("event") == "write_failed")["detail"]
    assert "/l2/exchange=bybit/" in row and "No space left on device" in row
    assert not temp_files(tmp_path)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
async def test_second_and_third_signals_during_the_final_flush(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
        capsys: pytest.CaptureFixture[str], signum: signal.Signals) -> None:
    """The second signal says what is still being written and how to abandon it; the third
    abandons it: no traceback, files complete, the loss counted, exit code 3."""
    real_write = ParquetWriter._write

    def slow_disk(self: ParquetWriter, buf: object, directory: Path, name: str) -> int:
        time.sleep(1.0)
        return real_write(self, buf, directory, name)  # type: ignore[arg-type]

    monkeypatch.setattr(ParquetWriter, "_write", slow_disk)
    sim, script = endless_bybit(0.005)

    async def signal_three_times() -> None:
        await sim.venues["bybit"].wait_acks(1)
        await trio.sleep(0.5)
        for _ in range(3):
            os.kill(os.getpid(), signum)
            await trio.sleep(0.3)

    caplog.set_level(logging.INFO)
    code = await run_cli(sim, script, ["--channels", "l2", "--out", str(tmp_path)],
                         signals=True, during=signal_three_times)
    err = capsys.readouterr().err
    assert code == 3, err
    messages = [r.getMessage() for r in caplog.records]
    name = signum.name
    assert any(m.startswith(f"received {name}: flushing and stopping") for m in messages)
    [second] = [m for m in messages if m.startswith(f"received {name} again")]
    assert "still writing" in second and "send it once more to abandon them" in second
    assert any(m.startswith(f"received {name} a third time: abandoning") for m in messages)
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert "abandoned by the final flush" in err
    for f in parquet_files(tmp_path):
        pl.read_parquet(f)  # every file on disk is complete
    assert not temp_files(tmp_path)
