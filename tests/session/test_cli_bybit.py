"""End to end: ``python -m core.run`` against a loopback fake Bybit (websocket + REST), checking
the Parquet tables value by value, usage errors, and a clean SIGTERM shutdown."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
import trio

from core.run import async_main
from core.testing.fake_servers import serve_http, serve_ws
from tests.fakes.bybit import FakeBybit, book_msg, trade_msg
from tests.tables import msg_rank

CEILING_S = 30
REPO = Path(__file__).resolve().parents[2]
T_MS = 1_786_310_818_000

INSTRUMENTS = json.dumps({"retCode": 0, "result": {"category": "linear", "list": [
    {"symbol": s, "contractType": "LinearPerpetual", "status": "Trading", "baseCoin": b,
     "quoteCoin": "USDT", "priceFilter": {"tickSize": "0.10"},
     "lotSizeFilter": {"qtyStep": "0.001"}} for s, b in (("BTCUSDT", "BTC"), ("ETHUSDT", "ETH"))
]}}).encode()


def btc_script() -> dict:
    return {
        "orderbook.1.BTCUSDT": [
            book_msg("BTCUSDT", "snapshot", [["100.0", "1"]], [["101.0", "2"]], 1, T_MS, depth=1),
            book_msg("BTCUSDT", "snapshot", [["100.0", "1"]], [["101.0", "2"]], 1, T_MS + 1,
                     depth=1),
            book_msg("BTCUSDT", "snapshot", [["100.0", "1.5"]], [["101.0", "2"]], 2, T_MS + 2,
                     depth=1),
        ],
        "orderbook.50.BTCUSDT": [
            book_msg("BTCUSDT", "snapshot", [["100.0", "1"], ["99.0", "2"]],
                     [["101.0", "2"], ["102.0", "3"]], 10, T_MS + 10),
            book_msg("BTCUSDT", "delta", [["99.0", "0"]], [["101.5", "1"]], 11, T_MS + 11),
        ],
        "publicTrade.BTCUSDT": [
            trade_msg("BTCUSDT", [(T_MS + 20, "Buy", "0.5", "101.0", "t1"),
                                  (T_MS + 21, "Sell", "0.25", "100.0", "t2")], T_MS + 22),
        ],
    }


def read(out: Path, table: str) -> pl.DataFrame:
    files = sorted(out.glob(f"{table}/exchange=bybit/date=*/*.parquet"))
    assert files, f"no {table} files under {out}"
    return pl.concat([pl.read_parquet(f) for f in files]).sort("ts_local", maintain_order=True)


def ms(t: int) -> datetime:
    return datetime.fromtimestamp(t / 1000, UTC)


async def test_cli_records_all_tables_value_by_value(tmp_path: Path) -> None:
    fake = FakeBybit(scripts=[btc_script()])
    out = tmp_path / "data"
    with trio.fail_after(CEILING_S):
        async with trio.open_nursery() as nursery:
            ws_url = await nursery.start(serve_ws, fake.handler)
            rest_url = await nursery.start(serve_http, {
                "/v5/market/instruments-info?category=linear&limit=1000": INSTRUMENTS})
            code = await async_main([
                "--plugins", "bybit", "--symbols", "BTC-USDT", "--channels", "tob,l2,trades",
                "--out", str(out), "--duration", "1.5", "--flush-interval", "0.5",
                "--endpoint", f"bybit={ws_url}", "--endpoint", f"bybit.rest={rest_url}",
            ], handle_signals=False)
            nursery.cancel_scope.cancel()
    assert code == 0

    tob = read(out, "tob")
    assert tob.columns == ["ts_local", "ts_exchange", "exchange", "symbol", "bid_px", "bid_sz",
                           "ask_px", "ask_sz", "seq"]
    assert tob.schema["ts_local"] == pl.Datetime("ns", "UTC")
    assert tob.select("exchange", "symbol", "bid_px", "bid_sz", "ask_px", "ask_sz",
                      "seq").rows() == [("bybit", "BTC-USDT", 100.0, 1.0, 101.0, 2.0, 1),
                                        ("bybit", "BTC-USDT", 100.0, 1.5, 101.0, 2.0, 2)]
    assert tob["ts_exchange"].to_list() == [ms(T_MS - 1), ms(T_MS + 1)]  # cts

    l2 = read(out, "l2")
    assert l2.columns == ["ts_local", "ts_exchange", "exchange", "symbol", "side", "price",
                          "size", "is_snapshot", "seq", "msg_id"]
    assert msg_rank(l2).select("side", "price", "size", "is_snapshot", "seq", "msg_id").rows() == [
        ("bid", 100.0, 1.0, True, 10, 1), ("bid", 99.0, 2.0, True, 10, 1),
        ("ask", 101.0, 2.0, True, 10, 1), ("ask", 102.0, 3.0, True, 10, 1),
        ("bid", 99.0, 0.0, False, 11, 2), ("ask", 101.5, 1.0, False, 11, 2),
    ]

    trades = read(out, "trades")
    assert trades.columns == ["ts_local", "ts_exchange", "exchange", "symbol", "price", "size",
                              "side", "trade_id"]
    assert trades.select("price", "size", "side", "trade_id").rows() == [
        (101.0, 0.5, "buy", "t1"), (100.0, 0.25, "sell", "t2")]
    assert trades["ts_exchange"].to_list() == [ms(T_MS + 20), ms(T_MS + 21)]

    health = read(out, "health")
    assert health.columns == ["ts_local", "exchange", "symbol", "event", "detail"]
    events = health["event"].to_list()
    for name in ("connected", "subscribed", "snapshot", "disconnected", "stopped",
                 "rows_written"):
        assert name in events, name
    produced = health.filter(pl.col("event") == "stopped")["detail"].item()
    assert produced == "produced tob=2 l2=2 trades=2 health=" + produced.split("health=")[1]
    written = dict(line.split(" ", 1) for line in
                   health.filter(pl.col("event") == "rows_written")["detail"].to_list())
    assert written["table=tob"] == "events=2 rows=2"
    assert written["table=l2"] == "events=2 rows=6"
    assert written["table=trades"] == "events=2 rows=2"
    # nothing lost: events produced per table equal events written
    n_health_produced = int(produced.split("health=")[1])
    assert written["table=health"].startswith(f"events={n_health_produced} ")
    # only complete files: no temporaries left behind
    assert not list(out.rglob("*.tmp"))


async def test_unknown_symbol_at_the_venue_is_a_usage_error(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture) -> None:
    with trio.fail_after(CEILING_S):
        async with trio.open_nursery() as nursery:
            rest_url = await nursery.start(serve_http, {
                "/v5/market/instruments-info?category=linear&limit=1000": INSTRUMENTS})
            code = await async_main(["--plugins", "bybit", "--symbols", "BTC-USDC",
                                     "--out", str(tmp_path), "--endpoint",
                                     f"bybit.rest={rest_url}"], handle_signals=False)
            nursery.cancel_scope.cancel()
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
    lines = {line.split()[0]: line for line in result.stdout.splitlines()}
    for venue in ("bybit", "binance", "okx"):
        assert "channels: l2,tob,trades" in lines[venue]


async def test_sigterm_flushes_and_exits_0(tmp_path: Path) -> None:
    fake = FakeBybit(scripts=[btc_script()])
    out = tmp_path / "data"
    with trio.fail_after(CEILING_S):
        async with trio.open_nursery() as nursery:
            ws_url = await nursery.start(serve_ws, fake.handler)
            rest_url = await nursery.start(serve_http, {
                "/v5/market/instruments-info?category=linear&limit=1000": INSTRUMENTS})
            proc = await trio.lowlevel.open_process(
                [sys.executable, "-m", "core.run", "--plugins", "bybit", "--channels",
                 "tob,l2,trades", "--out", str(out), "--flush-interval", "3600",
                 "--endpoint", f"bybit={ws_url}", "--endpoint", f"bybit.rest={rest_url}",
                 "--cache-dir", str(tmp_path / "cache")], cwd=REPO)
            await fake.subscribed.wait()
            await trio.sleep(1.0)  # let the script play out; nothing is flushed yet (1 h)
            assert not list(out.glob("tob/**/*.parquet"))
            proc.send_signal(signal.SIGTERM)
            code = await proc.wait()
            nursery.cancel_scope.cancel()
    assert code == 0
    assert read(out, "tob").height == 2 and read(out, "trades").height == 2
    assert "stopped" in read(out, "health")["event"].to_list()
