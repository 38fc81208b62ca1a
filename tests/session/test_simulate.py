"""``--simulate``: the whole command offline, against simulated venues on loopback sockets; and
the exit code of a run whose venue refuses every subscription."""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl
import pytest
import trio

from core.run import async_main
from core.sim.market import Market, load_text
from core.testing.faults import Fault, FaultPlan
from tests.session.sims import BYBIT_BTC, endpoints, serving, simulation

CEILING_S = 40


def cached_files(cache: Path) -> list[Path]:
    return list(cache.rglob("*.json"))


def table(out: Path, name: str) -> pl.DataFrame:
    return pl.scan_parquet(out / name / "**" / "*.parquet", hive_partitioning=True).collect()


async def test_simulate_records_every_table_offline(tmp_path: Path) -> None:
    out = tmp_path / "data"
    cache = Path(os.environ["BOOKWIRE_CACHE_DIR"])
    with trio.fail_after(CEILING_S):
        code = await async_main([
            "--plugins", "bybit,htx,coinbase,binance,okx", "--symbols", "BTC-USDT,ETH-USDT",
            "--channels", "tob,l2,trades", "--simulate", "--sim-seed", "7",
            "--sim-rate", "40", "--duration", "3", "--no-live", "--out", str(out)],
            handle_signals=False)
    assert code == 0
    for name in ("tob", "l2", "trades", "health", "spreads"):
        assert table(out, name).height > 0, name
    tob = table(out, "tob")
    assert set(tob["exchange"].unique()) == {"bybit", "htx", "coinbase", "binance", "okx"}
    assert set(tob["symbol"].unique()) == {"BTC-USDT", "ETH-USDT"}
    # prices coherent across venues: every venue's BTC mid within 0.5 % of the others'
    mids = tob.filter(pl.col("symbol") == "BTC-USDT").group_by("exchange").agg(
        ((pl.col("bid_px") + pl.col("ask_px")) / 2).median().alias("mid"))["mid"]
    assert mids.max() / mids.min() < 1.005
    health = table(out, "health")
    assert health.filter(pl.col("event").is_in(
        ["gap", "decode_error", "plugin_error", "subscribe_error", "disconnected"])
        & (pl.col("detail") != "stopped")).height == 0
    # sizes from contract venues arrive in base units like the others
    for venue in ("htx", "okx"):
        rows = tob.filter((pl.col("exchange") == venue) & (pl.col("symbol") == "BTC-USDT"))
        assert 0.01 < rows["bid_sz"].median() < 10, venue
    # Binance's books come from REST snapshots of the fake venue's market, bridged to its diffs
    snapshots = health.filter((pl.col("exchange") == "binance") & (pl.col("event") == "snapshot"))
    assert snapshots.height == 4  # tob and l2 of two symbols
    # simulated instruments never reach the user's instrument cache
    assert not cached_files(cache)


async def test_simulate_refuses_a_bad_rate_before_connecting(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture
                                                             ) -> None:
    code = await async_main(["--plugins", "bybit", "--simulate", "--sim-rate", "0",
                             "--out", str(tmp_path)], handle_signals=False)
    assert code == 2
    assert "--sim-rate must be a positive number" in capsys.readouterr().err


async def test_simulate_validates_like_a_real_run(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture) -> None:
    code = await async_main(["--plugins", "bybit,nope", "--simulate", "--out", str(tmp_path)],
                            handle_signals=False)
    assert code == 2
    assert "unknown plugin 'nope'" in capsys.readouterr().err


async def test_a_venue_that_refuses_every_subscription_exits_4(tmp_path: Path) -> None:
    market = Market([BYBIT_BTC])
    load_text(market, "bybit", "BTC-USDT", [("100.0", "1")], [("101.0", "1")])
    sim = simulation(market, faults={"bybit": FaultPlan(
        Fault("refuse_permanent", symbol="BTC-USDT"))})
    out = tmp_path / "data"
    with trio.fail_after(CEILING_S):
        async with serving(sim) as (_, urls):
            code = await async_main([
                "--plugins", "bybit", "--symbols", "BTC-USDT", "--out", str(out),
                "--duration", "1.5", "--no-live", *endpoints(urls)], handle_signals=False)
    refused = table(out, "health").filter(pl.col("event") == "subscribe_error")
    assert refused.height >= 1 and "Invalid symbol" in refused["detail"][0]
    assert code == 4  # a selected venue never delivered market data
