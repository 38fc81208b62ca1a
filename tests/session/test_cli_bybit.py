"""End to end: ``python -m core.run`` against the loopback fake Bybit (websocket + REST), checking
the Parquet tables value by value, usage errors, and a clean SIGTERM shutdown."""

from __future__ import annotations

import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
import trio

from core.codec import MS_NS
from core.run import async_main
from core.sim.market import Market, Script, Step, load_text
from core.sim.server import Simulation
from tests.session.sims import BYBIT_BTC, BYBIT_ETH, endpoints, serving, simulation
from tests.tables import msg_rank

CEILING_S = 30
REPO = Path(__file__).resolve().parents[2]


def btc_market() -> tuple[Simulation, Script]:
    """BTC-USDT at 100 / 99 x 101 / 102, then: a delta below the touch, a change of the best
    bid size, two trades."""
    market = Market([BYBIT_BTC, BYBIT_ETH])
    load_text(market, "bybit", "BTC-USDT", [("100.0", "1"), ("99.0", "2")],
              [("101.0", "2"), ("102.0", "3")])
    script = Script("bybit", [
        Step("BTC-USDT", bids=[("99.0", "0")], asks=[("101.5", "1")]),
        Step("BTC-USDT", bids=[("100.0", "1.5")]),
        Step("BTC-USDT", trades=[("101.0", "0.5", "buy"), ("100.0", "0.25", "sell")]),
    ], interval_s=0.05)
    return simulation(market), script


def read(out: Path, table: str) -> pl.DataFrame:
    files = sorted(out.glob(f"{table}/exchange=bybit/date=*/*.parquet"))
    assert files, f"no {table} files under {out}"
    return pl.concat([pl.read_parquet(f) for f in files]).sort("ts_local", maintain_order=True)


def ms(t_ns: int) -> datetime:
    return datetime.fromtimestamp(t_ns // MS_NS / 1000, UTC)


async def test_cli_records_all_tables_value_by_value(tmp_path: Path) -> None:
    sim, script = btc_market()
    out = tmp_path / "data"
    with trio.fail_after(CEILING_S):
        async with serving(sim) as (nursery, urls):
            nursery.start_soon(sim.play, script)
            code = await async_main([
                "--plugins", "bybit", "--symbols", "BTC-USDT", "--channels", "tob,l2,trades",
                "--out", str(out), "--duration", "1.5", "--flush-interval", "0.5",
                *endpoints(urls)], handle_signals=False)
    assert code == 0
    assert script.done
    step1, step2, step3 = script.fired

    tob = read(out, "tob")
    assert tob.columns == ["ts_local", "ts_exchange", "exchange", "symbol", "bid_px", "bid_sz",
                           "ask_px", "ask_sz", "seq"]
    assert tob.schema["ts_local"] == pl.Datetime("ns", "UTC")
    # orderbook.1: the snapshot at subscription, then a snapshot when the best level changed
    # (step 1 left it alone); u counts per connection from 10001
    assert tob.select("exchange", "symbol", "bid_px", "bid_sz", "ask_px", "ask_sz",
                      "seq").rows() == [("bybit", "BTC-USDT", 100.0, 1.0, 101.0, 2.0, 10001),
                                        ("bybit", "BTC-USDT", 100.0, 1.5, 101.0, 2.0, 10002)]
    assert tob["ts_exchange"][1] == ms(step2)  # cts: the engine time of the change
    assert tob["ts_exchange"][0] <= ms(step1)

    l2 = read(out, "l2")
    assert l2.columns == ["ts_local", "ts_exchange", "exchange", "symbol", "side", "price",
                          "size", "is_snapshot", "seq", "msg_id"]
    assert msg_rank(l2).select("side", "price", "size", "is_snapshot", "seq", "msg_id").rows() == [
        ("bid", 100.0, 1.0, True, 10001, 1), ("bid", 99.0, 2.0, True, 10001, 1),
        ("ask", 101.0, 2.0, True, 10001, 1), ("ask", 102.0, 3.0, True, 10001, 1),
        ("bid", 99.0, 0.0, False, 10002, 2), ("ask", 101.5, 1.0, False, 10002, 2),
        ("bid", 100.0, 1.5, False, 10003, 3),
    ]
    assert l2.filter(~pl.col("is_snapshot"))["ts_exchange"].to_list() == [
        ms(step1), ms(step1), ms(step2)]

    trades = read(out, "trades")
    assert trades.columns == ["ts_local", "ts_exchange", "exchange", "symbol", "price", "size",
                              "side", "trade_id"]
    assert trades.select("price", "size", "side", "trade_id").rows() == [
        (101.0, 0.5, "buy", "1001"), (100.0, 0.25, "sell", "1002")]
    assert trades["ts_exchange"].to_list() == [ms(step3), ms(step3)]

    health = read(out, "health")
    assert health.columns == ["ts_local", "exchange", "symbol", "event", "detail"]
    events = health["event"].to_list()
    for name in ("connected", "subscribed", "snapshot", "disconnected", "stopped",
                 "rows_written"):
        assert name in events, name
    produced = health.filter(pl.col("event") == "stopped")["detail"].item()
    assert produced == "produced tob=2 l2=3 trades=2 health=" + produced.split("health=")[1]
    written = dict(line.split(" ", 1) for line in
                   health.filter(pl.col("event") == "rows_written")["detail"].to_list())
    assert written["table=tob"] == "events=2 rows=2"
    assert written["table=l2"] == "events=3 rows=7"
    assert written["table=trades"] == "events=2 rows=2"
    # nothing lost: events produced per table equal events written
    n_health_produced = int(produced.split("health=")[1])
    assert written["table=health"].startswith(f"events={n_health_produced} ")
    # only complete files: no temporaries left behind
    assert not list(out.rglob("*.tmp"))


async def test_unknown_symbol_at_the_venue_is_a_usage_error(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture) -> None:
    sim, _ = btc_market()
    with trio.fail_after(CEILING_S):
        async with serving(sim) as (_, urls):
            code = await async_main(["--plugins", "bybit", "--symbols", "BTC-USDC",
                                     "--out", str(tmp_path), "--endpoint",
                                     f"bybit.rest={urls['bybit'][1]}"], handle_signals=False)
    assert code == 2
    err = capsys.readouterr().err
    assert "bybit does not list symbol 'BTC-USDC'" in err and "BTC-USDT" in err


@pytest.mark.parametrize(("argv", "message"), [
    (["--plugins", "nope"], "unknown plugin 'nope'; valid choices: "),
    (["--plugins", "bybit", "--channels", "tob,book"], "unknown channel 'book'; valid choices:"
                                                      " tob, l2, trades"),
    (["--plugins", "bybit", "--symbols", "btcusdt"], "symbol 'btcusdt' is not canonical"),
    (["--plugins", "bybit", "--opt", "bybit.l2_depth=3"], "l2_depth must be one of"),
    (["--plugins", "bybit", "--endpoint", "kraken=ws://x"], "unknown plugin 'kraken'"),
])
async def test_usage_errors_exit_2(argv: list[str], message: str, tmp_path: Path,
                                   capsys: pytest.CaptureFixture) -> None:
    argv = [*argv, "--out", str(tmp_path), "--endpoint", "bybit.rest=http://127.0.0.1:9"]
    assert await async_main(argv, handle_signals=False) == 2
    assert message in capsys.readouterr().err


def test_list_plugins_names_every_venue_with_channels() -> None:
    result = subprocess.run([sys.executable, "-m", "core.run", "--list-plugins"],
                            capture_output=True, text=True, cwd=REPO, check=True)
    lines = {line.split()[0]: line for line in result.stdout.splitlines() if line.split()}
    for venue in ("bybit", "binance", "okx"):
        assert "channels: funding,l2,tob,trades" in lines[venue]


async def test_sigterm_flushes_and_exits_0(tmp_path: Path) -> None:
    sim, script = btc_market()
    out = tmp_path / "data"
    with trio.fail_after(CEILING_S):
        async with serving(sim) as (_, urls):
            proc = await trio.lowlevel.open_process(
                [sys.executable, "-m", "core.run", "--plugins", "bybit", "--channels",
                 "tob,l2,trades", "--out", str(out), "--flush-interval", "3600",
                 *endpoints(urls), "--cache-dir", str(tmp_path / "cache")], cwd=REPO)
            await sim.play(script)
            await trio.sleep(1.0)  # let the script play out; nothing is flushed yet (1 h)
            assert script.done
            assert not list(out.glob("tob/**/*.parquet"))
            proc.send_signal(signal.SIGTERM)
            code = await proc.wait()
    assert code == 0
    assert read(out, "tob").height == 2 and read(out, "trades").height == 2
    assert "stopped" in read(out, "health")["event"].to_list()
