"""The CLI end to end for HTX: REST instruments and websocket from loopback fakes, Parquet out.

Real sockets and real time (a 2 s recording); the run has a trio-clock ceiling.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from importlib.metadata import entry_points
from pathlib import Path

import polars as pl
import pytest
import trio

from core.run import async_main
from core.testing.fake_servers import serve_http, serve_ws
from tests.fakes.htx import FakeHtx, depth_tick, trade_tick
from tests.tables import msg_rank

BOOK = "market.BTC-USDT.depth.size_20.high_freq"
TRADES = "market.BTC-USDT.trade.detail"
CONTRACT_INFO = "/linear-swap-api/v1/swap_contract_info"
CEILING_S = 30.0
DURATION_S = 2.0
TS_MS = 1_700_000_000_500


def contract_info() -> bytes:
    return json.dumps({"status": "ok", "ts": TS_MS, "data": [
        {"symbol": "BTC", "contract_code": "BTC-USDT", "contract_size": 0.001, "price_tick": 0.1,
         "contract_status": 1, "business_type": "swap", "contract_type": "swap",
         "pair": "BTC-USDT"},
        {"symbol": "ETH", "contract_code": "ETH-USDT", "contract_size": 0.01, "price_tick": 0.01,
         "contract_status": 1, "business_type": "swap", "contract_type": "swap",
         "pair": "ETH-USDT"},
    ]}).encode()


def script() -> dict[str, list[dict]]:
    return {
        BOOK: [
            depth_tick("snapshot", [[100.0, 5], [99.5, 2]], [[100.5, 3]], ts=TS_MS),
            depth_tick("update", [[100.0, 6]], [], ts=TS_MS + 1),
            depth_tick("update", [], [[100.4, 1]], ts=TS_MS + 2),
            depth_tick("update", [[99.5, 0]], [], ts=TS_MS + 3),
        ],
        TRADES: [trade_tick([(11, 100.5, 3, "buy"), (12, 100.0, 250, "sell")], 0.001)
                 | {"ts": TS_MS + 4}],
    }


def read(out: Path, table: str) -> tuple[str, pl.DataFrame]:
    dates = sorted((out / table / "exchange=htx").glob("date=*"))
    assert len(dates) == 1, dates
    files = sorted(dates[0].glob("*.parquet"))
    assert files
    frame = pl.concat([pl.read_parquet(f) for f in files]).sort("ts_local", maintain_order=True)
    return dates[0].name.removeprefix("date="), frame


@pytest.fixture
def only_htx(monkeypatch: pytest.MonkeyPatch) -> None:
    """Load the htx entry point alone, whatever state the other venues are in."""
    others = [ep.name for ep in entry_points(group="bookwire") if ep.name != "htx"]
    monkeypatch.setenv("BOOKWIRE_DISABLE_PLUGINS", ",".join(others))


@pytest.mark.usefixtures("only_htx")
async def test_cli_records_htx_to_parquet(tmp_path: Path) -> None:
    fake = FakeHtx(script(), listed={"BTC-USDT", "ETH-USDT"}, ping_interval_s=0.5)
    out = tmp_path / "data"
    with trio.fail_after(CEILING_S):
        async with trio.open_nursery() as nursery:
            ws_url = await nursery.start(serve_ws, fake.handler)
            rest_url = await nursery.start(serve_http, {CONTRACT_INFO: contract_info()})
            code = await async_main([
                "--plugins", "htx", "--symbols", "BTC-USDT", "--channels", "tob,l2,trades",
                "--out", str(out), "--duration", str(DURATION_S),
                "--endpoint", f"htx={ws_url}", "--endpoint", f"htx.rest={rest_url}",
                "--cache-dir", str(tmp_path / "cache")], handle_signals=False)
            nursery.cancel_scope.cancel()
    assert code == 0

    # The client subscribed each topic once and answered the server's pings with their numbers.
    assert [m.get("sub") for m in fake.received[0] if "sub" in m] == [BOOK, TRADES]
    assert fake.pongs_ok >= 2
    assert fake.pongs_bad == []

    date, tob = read(out, "tob")
    first_local = tob["ts_local"][0]
    assert date == first_local.strftime("%Y-%m-%d")
    assert first_local.tzinfo is not None
    assert tob.select("symbol", "bid_px", "bid_sz", "ask_px", "ask_sz", "seq").rows() == [
        ("BTC-USDT", 100.0, 0.005, 100.5, 0.003, 1000),
        ("BTC-USDT", 100.0, 0.006, 100.5, 0.003, 1001),
        ("BTC-USDT", 100.0, 0.006, 100.4, 0.001, 1002),
    ]
    assert tob["ts_exchange"].to_list() == [
        datetime.fromtimestamp((TS_MS + i) / 1000, tz=UTC) for i in range(3)]

    _, l2 = read(out, "l2")
    assert msg_rank(l2).select("side", "price", "size", "is_snapshot", "seq", "msg_id").rows() == [
        ("bid", 100.0, 0.005, True, 1000, 1),
        ("bid", 99.5, 0.002, True, 1000, 1),
        ("ask", 100.5, 0.003, True, 1000, 1),
        ("bid", 100.0, 0.006, False, 1001, 2),
        ("ask", 100.4, 0.001, False, 1002, 3),
        ("bid", 99.5, 0.0, False, 1003, 4),
    ]

    _, trades = read(out, "trades")
    assert trades.select("symbol", "price", "size", "side", "trade_id").rows() == [
        ("BTC-USDT", 100.5, 0.003, "buy", "11"),
        ("BTC-USDT", 100.0, 0.25, "sell", "12"),
    ]
    assert trades["ts_exchange"].to_list() == [
        datetime.fromtimestamp((TS_MS + 4) / 1000, tz=UTC)] * 2

    _, health = read(out, "health")
    events = health.filter(pl.col("symbol") == "BTC-USDT").select("event", "detail").rows()
    assert sorted(events) == [("snapshot", "levels=3 seq=1000"), ("subscribed", BOOK),
                              ("subscribed", TRADES)]
    venue = health.filter(pl.col("symbol").is_null())["event"].to_list()
    assert venue[:2] == ["started", "connected"]
    for kind in ("gap", "decode_error", "subscribe_error", "no_snapshot"):
        assert kind not in health["event"].to_list()
    # The only disconnect is the end of the run.
    assert health.filter(pl.col("event") == "disconnected")["detail"].to_list() == ["stopped"]
    assert "stopped" in venue
