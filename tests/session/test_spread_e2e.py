"""End to end: the live spread analyzer in a real recording of two loopback fake venues (Bybit
and HTX) whose quotes cross on a script, its rows read back from Parquet.

Real sockets and real time (a 2 s run under a trio ceiling). Episode boundaries are checked
exactly against the ``ts_local`` of the Bybit quotes that opened and closed them, read from the
``tob`` table of the same run. Bybit opens at a quote that crosses nothing (``BYBIT_OPEN``); the
scripted quotes start once both venues have subscribed, and the checks cover them.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest
import trio

from analysis.fees import resolve_fees, taker_rates
from analysis.spread_live import SpreadAnalyzer, SpreadConfig, SpreadState
from core.live_view import choose_status_view
from core.protocol import Instrument, ProtocolConfig
from core.sim.market import Listing, Market, Script, Step, load_text
from core.sim.server import Simulation
from core.supervisor import RunPlan, VenuePlan, record
from plugins.bybit.protocol import BybitProtocol
from plugins.htx.protocol import HtxProtocol
from tests.session.sims import HTX_BTC, endpoints, serving, simulation

CEILING_S = 30.0
DURATION_S = 2.0
FEE_BPS = 5.5 + 6.0  # bybit + htx default takers
approx = pytest.approx
BYBIT_BTC = Listing("bybit", "BTC-USDT", tick=Decimal("0.05"), lot=Decimal("0.1"))
BYBIT_OPEN = (99.5, 1.0, 100.5, 1.0)  # crosses nothing

# Bybit top of book, one push every 0.2 s: (bid, bid size, ask, ask size)
BYBIT_TOPS = [
    (99.95, 1.0, 100.05, 1.0),  # m1: no crossing
    (100.2, 0.3, 100.25, 1.0),  # m2: buy htx 100.0, sell bybit 100.2: gross 20 bps
    (99.95, 1.0, 100.05, 1.0),  # m3: over
    (99.6, 1.0, 99.7, 0.2),  # m4: buy bybit 99.7, sell htx 99.9: gross 20.06 bps
    (99.95, 1.0, 100.05, 1.0),  # m5: over
    (100.3, 0.4, 100.35, 1.0),  # m6: buy htx 100.0, sell bybit 100.3: gross 30 bps, open at end
]
HTX_BID, HTX_BID_SZ, HTX_ASK, HTX_ASK_SZ = 99.9, 0.8, 100.0, 0.5  # 800 and 500 contracts


def crossing_market() -> tuple[Simulation, Script]:
    """HTX quotes once; Bybit moves its only level to each of ``BYBIT_TOPS`` in turn."""
    market = Market([BYBIT_BTC, HTX_BTC])
    b, bs, a, az = BYBIT_OPEN
    load_text(market, "bybit", "BTC-USDT", [(str(b), str(bs))], [(str(a), str(az))])
    load_text(market, "htx", "BTC-USDT", [(str(HTX_BID), str(HTX_BID_SZ))],
              [(str(HTX_ASK), str(HTX_ASK_SZ))])
    steps = []
    prev = BYBIT_OPEN
    for top in BYBIT_TOPS:
        bids = [(str(top[0]), str(top[1]))]
        asks = [(str(top[2]), str(top[3]))]
        if prev[0] != top[0]:
            bids.insert(0, (str(prev[0]), "0"))  # the old level goes
        if prev[2] != top[2]:
            asks.insert(0, (str(prev[2]), "0"))
        steps.append(Step("BTC-USDT", bids=bids, asks=asks))
        prev = top
    return simulation(market), Script("bybit", steps, interval_s=0.2)


async def play_when_both_listen(sim: Simulation, script: Script) -> None:
    await sim.venues["htx"].wait_acks(1)
    await sim.play(script, delay_s=0.1)


def read(out: Path, table: str, exchange: str, order: str = "ts_local") -> pl.DataFrame:
    files = sorted(out.glob(f"{table}/exchange={exchange}/date=*/*.parquet"))
    assert files, f"no {table} files for {exchange} under {out}"
    return pl.concat([pl.read_parquet(f) for f in files]).sort(order, maintain_order=True)


def ns(column: pl.Series) -> list[int]:
    return column.cast(pl.Int64).to_list()


def gross(ask: float, bid: float) -> float:
    return 1e4 * (bid / ask - 1)


async def test_two_fake_venues_cross_and_the_episodes_are_written(tmp_path: Path) -> None:
    sim, script = crossing_market()
    fees = taker_rates(resolve_fees())
    # HTX quotes once and stays valid (10 s cap); Bybit's quotes count for 1 s
    config = SpreadConfig(taker_fees=fees, default_stale_ms=10_000.0, stale_ms={"bybit": 1_000.0},
                          thresholds_bps=(0.0, 10.0))
    analyzer = SpreadAnalyzer(SpreadState(config))
    out = tmp_path / "data"
    with trio.fail_after(CEILING_S):
        async with serving(sim) as (nursery, urls):
            nursery.start_soon(play_when_both_listen, sim, script)
            instruments = {"BTC-USDT": Instrument(symbol="BTC-USDT", native="BTC-USDT",
                                                  contract_size=0.001, tick_size=0.1)}
            plan = RunPlan(
                venues=[
                    VenuePlan(BybitProtocol, urls["bybit"][0],
                              ProtocolConfig(symbols=("BTC-USDT",), channels=("tob",))),
                    VenuePlan(HtxProtocol, urls["htx"][0],
                              ProtocolConfig(symbols=("BTC-USDT",), channels=("tob",),
                                             instruments=instruments)),
                ],
                out=out, duration_s=DURATION_S, handle_signals=False, flush_interval_s=0.5,
                consumers=[analyzer.consumer()],
                status_view=choose_status_view(True, analyzer))
            await record(plan)
    assert script.done

    bybit_tob = read(out, "tob", "bybit")
    assert bybit_tob.select("bid_px", "bid_sz", "ask_px", "ask_sz").rows() == [
        BYBIT_OPEN, *BYBIT_TOPS]
    t = ns(bybit_tob["ts_local"])[1:]  # when each scripted Bybit quote arrived, UTC ns
    assert read(out, "tob", "htx").select("bid_px", "bid_sz", "ask_px", "ask_sz").rows() == [
        (HTX_BID, HTX_BID_SZ, HTX_ASK, HTX_ASK_SZ)]

    # spreads: both directions after every scripted Bybit quote, at that quote's time (before
    # it, the opening quotes met in whichever order the venues subscribed)
    spreads = read(out, "spreads", "spread").filter(
        pl.col("ts_local").cast(pl.Int64) >= t[0])
    assert spreads.columns == ["ts_local", "symbol", "buy_exchange", "sell_exchange", "ask_px",
                               "bid_px", "gross_bps", "net_bps", "size", "buy_age_ms",
                               "sell_age_ms"]
    expected = []
    for ts, (bid, bid_sz, ask, ask_sz) in zip(t, BYBIT_TOPS, strict=True):
        expected += [(ts, "BTC-USDT", "bybit", "htx", ask, HTX_BID, min(ask_sz, HTX_BID_SZ)),
                     (ts, "BTC-USDT", "htx", "bybit", HTX_ASK, bid, min(HTX_ASK_SZ, bid_sz))]
    assert spreads.with_columns(pl.col("ts_local").cast(pl.Int64)).select(
        "ts_local", "symbol", "buy_exchange", "sell_exchange", "ask_px", "bid_px",
        "size").rows() == expected
    assert spreads["gross_bps"].to_list() == approx(
        [gross(r[4], r[5]) for r in expected])
    assert spreads["net_bps"].to_list() == approx(
        [gross(r[4], r[5]) - FEE_BPS for r in expected])
    assert (spreads.filter(pl.col("buy_exchange") == "bybit")["buy_age_ms"] == 0.0).all()
    assert (spreads.filter(pl.col("buy_exchange") == "htx")["buy_age_ms"] > 0.0).all()

    # opportunities: two closed by the script, one closed at shutdown; only the 30 bps crossing
    # clears the 10 bps threshold
    opps = read(out, "opportunities", "spread", "start").sort("threshold_bps",
                                                               maintain_order=True)
    assert opps.columns == ["start", "end", "duration_ms", "symbol", "buy_exchange",
                            "sell_exchange", "threshold_bps", "peak_net_bps", "mean_net_bps",
                            "size", "notional", "updates"]
    assert opps.select("symbol", "buy_exchange", "sell_exchange", "threshold_bps", "size",
                       "notional", "updates").rows() == [
        ("BTC-USDT", "htx", "bybit", 0.0, 0.3, 30.0, 1),
        ("BTC-USDT", "bybit", "htx", 0.0, 0.2, approx(0.2 * 99.7), 1),
        ("BTC-USDT", "htx", "bybit", 0.0, 0.4, 40.0, 1),
        ("BTC-USDT", "htx", "bybit", 10.0, 0.4, 40.0, 1),
    ]
    peaks = [20.0 - FEE_BPS, gross(99.7, HTX_BID) - FEE_BPS, 30.0 - FEE_BPS, 30.0 - FEE_BPS]
    assert opps["peak_net_bps"].to_list() == approx(peaks)
    assert opps["mean_net_bps"].to_list() == approx(peaks)  # one value held the whole episode
    start, end = ns(opps["start"]), ns(opps["end"])
    assert start == [t[1], t[3], t[5], t[5]]
    assert end[:2] == [t[2], t[4]]
    assert opps["duration_ms"].to_list() == [(e - s) / 1e6 for s, e in zip(start, end,
                                                                            strict=True)]
    # the last one was still open when the run stopped: closed then, within Bybit's 1 s cap
    assert end[2] == end[3]
    assert t[5] < end[2] <= t[5] + 1_000_000_000
    assert analyzer.rows_lost == 0


async def test_cli_runs_the_analyzer_for_two_venues(tmp_path: Path) -> None:
    """The same crossing script through ``python -m core.run``: the analyzer starts because two
    venues record ``tob``, its flags reach it, and its tables and ledger rows are written."""
    from core.run import async_main

    sim, script = crossing_market()
    out = tmp_path / "data"
    with trio.fail_after(CEILING_S):
        async with serving(sim) as (nursery, urls):
            nursery.start_soon(play_when_both_listen, sim, script)
            code = await async_main([
                "--plugins", "bybit,htx", "--channels", "tob", "--out", str(out),
                "--duration", str(DURATION_S), "--flush-interval", "0.5", "--no-live",
                "--spread-stale-ms", "10000", "--spread-stale-ms", "bybit=1000",
                "--spread-threshold-bps", "0,10", *endpoints(urls)], handle_signals=False)
    assert code == 0
    assert script.done
    opps = read(out, "opportunities", "spread", "start")
    assert sorted(opps.select("buy_exchange", "threshold_bps").rows()) == [
        ("bybit", 0.0), ("htx", 0.0), ("htx", 0.0), ("htx", 10.0)]
    ledger = read(out, "health", "spread")
    stopped = ledger.filter(pl.col("event") == "stopped")["detail"].item()
    n_spreads = read(out, "spreads", "spread").height
    assert stopped == f"produced opportunities=4 spreads={n_spreads} health=1"
    assert "table=opportunities events=4 rows=4" in ledger["detail"].to_list()
