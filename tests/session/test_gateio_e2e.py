"""The CLI end to end for Gate.io: REST contracts and websocket from loopback fakes, Parquet out,
sizes in BTC. Real sockets and real time (a 2 s recording); the run has a trio-clock ceiling."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from functools import partial
from importlib.metadata import entry_points
from pathlib import Path

import polars as pl
import pytest
import trio

from core.codec import MS_NS
from core.run import async_main
from core.sim.market import Market, Script, Step, load_text
from core.sim.server import Simulation
from tests.session.sims import GATE_BTC, GATE_ETH, endpoints, serving, simulation
from tests.tables import msg_rank

CEILING_S = 30.0
DURATION_S = 2.0


def gate_market() -> tuple[Simulation, Script]:
    """BTC_USDT in contracts of 0.0001 BTC: 1000 and 2000 bid, 300 and 400 offered; then a delta
    of three levels, two trades (25 and 40 contracts), and the best bid removed."""
    market = Market([GATE_BTC, GATE_ETH])
    load_text(market, "gateio", "BTC-USDT", [("63700.0", "0.1"), ("63699.9", "0.2")],
              [("63700.1", "0.03"), ("63700.2", "0.04")])
    script = Script("gateio", [
        Step("BTC-USDT", bids=[("63700.0", "0.09")],
             asks=[("63700.3", "0.0005"), ("63700.1", "0.025")]),
        Step("BTC-USDT", trades=[("63700.0", "0.0025", "sell"), ("63700.1", "0.004", "buy")]),
        Step("BTC-USDT", bids=[("63700.0", "0")]),
    ], interval_s=0.05)
    return simulation(market), script


def read(out: Path, table: str) -> tuple[str, pl.DataFrame]:
    dates = sorted((out / table / "exchange=gateio").glob("date=*"))
    assert len(dates) == 1, dates
    files = sorted(dates[0].glob("*.parquet"))
    assert files
    frame = pl.concat([pl.read_parquet(f) for f in files]).sort("ts_local", maintain_order=True)
    return dates[0].name.removeprefix("date="), frame


def at(t_ns: int) -> datetime:
    return datetime.fromtimestamp(t_ns // MS_NS / 1000, tz=UTC)


@pytest.fixture
def only_gateio(monkeypatch: pytest.MonkeyPatch) -> None:
    """Load the gateio entry point alone, whatever state the other venues are in."""
    others = [ep.name for ep in entry_points(group="bookwire") if ep.name != "gateio"]
    monkeypatch.setenv("BOOKWIRE_DISABLE_PLUGINS", ",".join(others))


@pytest.mark.usefixtures("only_gateio")
async def test_cli_records_gateio_to_parquet(tmp_path: Path) -> None:
    sim, script = gate_market()
    out = tmp_path / "data"
    with trio.fail_after(CEILING_S):
        async with serving(sim) as (nursery, urls):
            nursery.start_soon(partial(sim.play, script, after_acks=3))
            code = await async_main([
                "--plugins", "gateio", "--symbols", "BTC-USDT", "--channels", "tob,l2,trades",
                "--out", str(out), "--duration", str(DURATION_S), *endpoints(urls),
                "--cache-dir", str(tmp_path / "cache")], handle_signals=False)
    assert code == 0
    assert script.done
    step1, step2, step3 = script.fired

    received = [json.loads(m) for m in sim.speakers["gateio"].sessions[0].received]
    assert [(m["channel"], m["event"], m["payload"]) for m in received] == [
        ("futures.book_ticker", "subscribe", ["BTC_USDT"]),
        ("futures.obu", "subscribe", ["ob.BTC_USDT.50"]),
        ("futures.trades", "subscribe", ["BTC_USDT"]),
    ]

    date, tob = read(out, "tob")
    first_local = tob["ts_local"][0]
    assert date == first_local.strftime("%Y-%m-%d")
    # book_ticker: the best levels at subscription, then each change, with the order-book id
    assert tob.select("symbol", "bid_px", "bid_sz", "ask_px", "ask_sz", "seq").rows() == [
        ("BTC-USDT", 63700.0, 0.1, 63700.1, 0.03, 1000),
        ("BTC-USDT", 63700.0, 0.09, 63700.1, 0.025, 1001),
        ("BTC-USDT", 63699.9, 0.2, 63700.1, 0.025, 1002),
    ]
    assert tob["ts_exchange"].to_list()[1:] == [at(step1), at(step3)]

    _, l2 = read(out, "l2")
    assert msg_rank(l2).select("side", "price", "size", "is_snapshot", "seq", "msg_id").rows() == [
        ("bid", 63700.0, 0.1, True, 1000, 1),
        ("bid", 63699.9, 0.2, True, 1000, 1),
        ("ask", 63700.1, 0.03, True, 1000, 1),
        ("ask", 63700.2, 0.04, True, 1000, 1),
        ("bid", 63700.0, 0.09, False, 1001, 2),
        ("ask", 63700.1, 0.025, False, 1001, 2),
        ("ask", 63700.3, 0.0005, False, 1001, 2),
        ("bid", 63700.0, 0.0, False, 1002, 3),
    ]
    assert l2.filter(~pl.col("is_snapshot"))["ts_exchange"].unique(
        maintain_order=True).to_list() == [at(step1), at(step3)]

    _, trades = read(out, "trades")
    assert trades.select("symbol", "price", "size", "side", "trade_id").rows() == [
        ("BTC-USDT", 63700.0, 0.0025, "sell", "1001"),
        ("BTC-USDT", 63700.1, 0.004, "buy", "1002"),
    ]
    assert trades["ts_exchange"].to_list() == [at(step2), at(step2)]

    _, health = read(out, "health")
    events = health.filter(pl.col("symbol") == "BTC-USDT").select("event", "detail").rows()
    assert sorted(events) == [
        ("snapshot", "levels=2 seq=1000"),  # book_ticker
        ("snapshot", "levels=4 seq=1000"),  # obu
        ("subscribed", "futures.book_ticker BTC_USDT"),
        ("subscribed", "futures.obu ob.BTC_USDT.50"),
        ("subscribed", "futures.trades BTC_USDT"),
    ]
    for kind in ("gap", "decode_error", "subscribe_error", "no_snapshot",
                 "venue_error"):
        assert kind not in health["event"].to_list()
    assert health.filter(pl.col("event") == "disconnected")["detail"].to_list() == ["stopped"]
