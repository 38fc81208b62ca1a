"""The CLI end to end for HTX: REST instruments and websocket from the loopback fake HTX, Parquet
out, sizes converted from contracts.

Real sockets and real time (a 2 s recording); the run has a trio-clock ceiling.
"""

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
from plugins.htx.fake import CONTRACT_INFO_PATH
from tests.session.sims import HTX_BTC, HTX_ETH, endpoints, serving, simulation
from tests.tables import msg_rank

BOOK = "market.BTC-USDT.depth.size_20.high_freq"
TRADES = "market.BTC-USDT.trade.detail"
CEILING_S = 30.0
DURATION_S = 2.0


def htx_market() -> tuple[Simulation, Script]:
    """BTC-USDT (contracts of 0.001 BTC): 5 and 2 contracts bid, 3 offered; then three updates
    and two trades (3 and 250 contracts)."""
    market = Market([HTX_BTC, HTX_ETH])
    load_text(market, "htx", "BTC-USDT", [("100.0", "0.005"), ("99.5", "0.002")],
              [("100.5", "0.003")])
    script = Script("htx", [
        Step("BTC-USDT", bids=[("100.0", "0.006")]),
        Step("BTC-USDT", asks=[("100.4", "0.001")]),
        Step("BTC-USDT", bids=[("99.5", "0")]),
        Step("BTC-USDT", trades=[("100.5", "0.003", "buy"), ("100.0", "0.25", "sell")]),
    ], interval_s=0.05)
    sim = simulation(market)
    sim.speakers["htx"].ping_interval_ns = 500 * MS_NS  # type: ignore[attr-defined]
    return sim, script


def read(out: Path, table: str) -> tuple[str, pl.DataFrame]:
    dates = sorted((out / table / "exchange=htx").glob("date=*"))
    assert len(dates) == 1, dates
    files = sorted(dates[0].glob("*.parquet"))
    assert files
    frame = pl.concat([pl.read_parquet(f) for f in files]).sort("ts_local", maintain_order=True)
    return dates[0].name.removeprefix("date="), frame


def ms(t_ns: int) -> datetime:
    return datetime.fromtimestamp(t_ns // MS_NS / 1000, tz=UTC)


@pytest.fixture
def only_htx(monkeypatch: pytest.MonkeyPatch) -> None:
    """Load the htx entry point alone, whatever state the other venues are in."""
    others = [ep.name for ep in entry_points(group="bookwire") if ep.name != "htx"]
    monkeypatch.setenv("BOOKWIRE_DISABLE_PLUGINS", ",".join(others))


@pytest.mark.usefixtures("only_htx")
async def test_cli_records_htx_to_parquet(tmp_path: Path) -> None:
    sim, script = htx_market()
    out = tmp_path / "data"
    with trio.fail_after(CEILING_S):
        async with serving(sim) as (nursery, urls):
            nursery.start_soon(partial(sim.play, script, after_acks=2))  # book and trades
            code = await async_main([
                "--plugins", "htx", "--symbols", "BTC-USDT", "--channels", "tob,l2,trades",
                "--out", str(out), "--duration", str(DURATION_S), *endpoints(urls),
                "--cache-dir", str(tmp_path / "cache")], handle_signals=False)
    assert code == 0
    assert script.done
    step1, step2, step3, step4 = script.fired

    # The client subscribed each topic once and answered the server's pings with their numbers.
    [conn] = sim.speakers["htx"].sessions
    subs = [m for m in map(_json, conn.received) if "sub" in m]
    assert [m["sub"] for m in subs] == [BOOK, TRADES]
    assert subs[0]["data_type"] == "incremental"
    assert conn.pongs_ok >= 2  # type: ignore[attr-defined]
    assert conn.pongs_bad == []  # type: ignore[attr-defined]

    date, tob = read(out, "tob")
    first_local = tob["ts_local"][0]
    assert date == first_local.strftime("%Y-%m-%d")
    assert first_local.tzinfo is not None
    assert tob.select("symbol", "bid_px", "bid_sz", "ask_px", "ask_sz", "seq").rows() == [
        ("BTC-USDT", 100.0, 0.005, 100.5, 0.003, 1000),
        ("BTC-USDT", 100.0, 0.006, 100.5, 0.003, 1001),
        ("BTC-USDT", 100.0, 0.006, 100.4, 0.001, 1002),
    ]
    assert tob["ts_exchange"].to_list()[1:] == [ms(step1), ms(step2)]

    _, l2 = read(out, "l2")
    assert msg_rank(l2).select("side", "price", "size", "is_snapshot", "seq", "msg_id").rows() == [
        ("bid", 100.0, 0.005, True, 1000, 1),
        ("bid", 99.5, 0.002, True, 1000, 1),
        ("ask", 100.5, 0.003, True, 1000, 1),
        ("bid", 100.0, 0.006, False, 1001, 2),
        ("ask", 100.4, 0.001, False, 1002, 3),
        ("bid", 99.5, 0.0, False, 1003, 4),
    ]
    assert l2.filter(~pl.col("is_snapshot"))["ts_exchange"].to_list() == [
        ms(step1), ms(step2), ms(step3)]

    _, trades = read(out, "trades")
    assert trades.select("symbol", "price", "size", "side", "trade_id").rows() == [
        ("BTC-USDT", 100.5, 0.003, "buy", str(1001 * 10_000)),
        ("BTC-USDT", 100.0, 0.25, "sell", str(1002 * 10_000)),
    ]
    assert trades["ts_exchange"].to_list() == [ms(step4)] * 2

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


def contract_info() -> bytes:
    """The fake HTX's ``swap_contract_info`` body (BTC-USDT 0.001, ETH-USDT 0.01 per contract)."""
    sim, _ = htx_market()
    body = sim.speakers["htx"].rest(CONTRACT_INFO_PATH)
    assert body is not None
    return body


def _json(frame: str | bytes) -> dict[str, object]:
    return json.loads(frame)
