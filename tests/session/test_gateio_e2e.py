"""The CLI end to end for Gate.io: REST contracts and websocket from loopback fakes, Parquet out,
sizes in BTC. Real sockets and real time (a 2 s recording); the run has a trio-clock ceiling."""

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
from tests.fakes.gateio import T0_MS, FakeContract, GateFuturesFake
from tests.tables import msg_rank

CONTRACTS = "/api/v4/futures/usdt/contracts"
CEILING_S = 30.0
DURATION_S = 2.0


def contracts() -> bytes:
    return json.dumps([
        {"name": "BTC_USDT", "type": "direct", "quanto_multiplier": "0.0001",
         "order_price_round": "0.1", "order_size_min": 1, "in_delisting": False},
        {"name": "ETH_USDT", "type": "direct", "quanto_multiplier": "0.01",
         "order_price_round": "0.01", "order_size_min": 1, "in_delisting": False},
    ]).encode()


def read(out: Path, table: str) -> tuple[str, pl.DataFrame]:
    dates = sorted((out / table / "exchange=gateio").glob("date=*"))
    assert len(dates) == 1, dates
    files = sorted(dates[0].glob("*.parquet"))
    assert files
    frame = pl.concat([pl.read_parquet(f) for f in files]).sort("ts_local", maintain_order=True)
    return dates[0].name.removeprefix("date="), frame


def at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


@pytest.fixture
def only_gateio(monkeypatch: pytest.MonkeyPatch) -> None:
    """Load the gateio entry point alone, whatever state the other venues are in."""
    others = [ep.name for ep in entry_points(group="bookwire") if ep.name != "gateio"]
    monkeypatch.setenv("BOOKWIRE_DISABLE_PLUGINS", ",".join(others))


@pytest.mark.usefixtures("only_gateio")
async def test_cli_records_gateio_to_parquet(tmp_path: Path) -> None:
    fake = GateFuturesFake({"BTC_USDT": FakeContract(bid=63700.0, tick=0.1)})
    out = tmp_path / "data"
    with trio.fail_after(CEILING_S):
        async with trio.open_nursery() as nursery:
            ws_url = await nursery.start(serve_ws, fake.handler)
            rest_url = await nursery.start(serve_http, {CONTRACTS: contracts()})
            code = await async_main([
                "--plugins", "gateio", "--symbols", "BTC-USDT", "--channels", "tob,l2,trades",
                "--out", str(out), "--duration", str(DURATION_S),
                "--endpoint", f"gateio={ws_url}", "--endpoint", f"gateio.rest={rest_url}",
                "--cache-dir", str(tmp_path / "cache")], handle_signals=False)
            nursery.cancel_scope.cancel()
    assert code == 0

    assert [(m["channel"], m["event"], m["payload"]) for m in fake.received] == [
        ("futures.book_ticker", "subscribe", ["BTC_USDT"]),
        ("futures.obu", "subscribe", ["ob.BTC_USDT.50"]),
        ("futures.trades", "subscribe", ["BTC_USDT"]),
    ]

    date, tob = read(out, "tob")
    first_local = tob["ts_local"][0]
    assert date == first_local.strftime("%Y-%m-%d")
    assert tob.select("symbol", "bid_px", "bid_sz", "ask_px", "ask_sz", "seq").rows() == [
        ("BTC-USDT", 63700.0, 0.12, 63700.1, 0.03, 1001),
        ("BTC-USDT", 63700.0, 0.15, 63700.1, 0.03, 1002),
    ]
    assert tob["ts_exchange"].to_list() == [at(T0_MS + 1001), at(T0_MS + 1002)]

    _, l2 = read(out, "l2")
    assert msg_rank(l2).select("side", "price", "size", "is_snapshot", "seq", "msg_id").rows() == [
        ("bid", 63700.0, 0.1, True, 1001, 1),
        ("bid", 63699.9, 0.2, True, 1001, 1),
        ("ask", 63700.1, 0.03, True, 1001, 1),
        ("ask", 63700.2, 0.04, True, 1001, 1),
        ("bid", 63700.0, 0.09, False, 1003, 2),
        ("ask", 63700.3, 0.0005, False, 1003, 2),
        ("ask", 63700.1, 0.025, False, 1003, 2),
        ("bid", 63700.0, 0.0, False, 1007, 3),
    ]
    assert l2["ts_exchange"].unique(maintain_order=True).to_list() == [
        at(T0_MS + 1001), at(T0_MS + 1003), at(T0_MS + 1007)]

    _, trades = read(out, "trades")
    assert trades.select("symbol", "price", "size", "side", "trade_id").rows() == [
        ("BTC-USDT", 63700.0, 0.0025, "sell", "501"),
        ("BTC-USDT", 63700.1, 0.004, "buy", "502"),
    ]
    assert trades["ts_exchange"].to_list() == [at(T0_MS + 501), at(T0_MS + 502)]

    _, health = read(out, "health")
    events = health.filter(pl.col("symbol") == "BTC-USDT").select("event", "detail").rows()
    assert sorted(events) == [
        ("snapshot", "levels=2 seq=1001"),  # book_ticker
        ("snapshot", "levels=4 seq=1001"),  # obu
        ("subscribed", "futures.book_ticker BTC_USDT"),
        ("subscribed", "futures.obu ob.BTC_USDT.50"),
        ("subscribed", "futures.trades BTC_USDT"),
    ]
    for kind in ("gap", "decode_error", "subscribe_error", "no_snapshot",
                 "venue_error"):
        assert kind not in health["event"].to_list()
    assert health.filter(pl.col("event") == "disconnected")["detail"].to_list() == ["stopped"]
