"""Funding in the spread report, on hand-made data with a known funding schedule: funding times
and the rates paid at them, an episode spanning a funding time flagged, its round-trip net edge
equal to a hand computation, and the basis beside the funding-rate difference per hour."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from analysis import spreads
from analysis.cli import main_guard
from analysis.funding import funding_times
from analysis.load import write_table
from analysis.synth import PerpConfig, VenueSpec, funding_schedule, simulate_perps

MS = 1_000_000
NS = 1_000_000_000
T0 = 1_714_564_800 * NS  # 2024-05-01 12:00:00 UTC
TS = pl.Datetime("ns", "UTC")
F1 = T0 + 2 * NS  # a funding time of both venues, inside the episode
F2 = T0 + 60 * NS  # the next one, after it
RATES = {"a": {F1: 0.0001, F2: 0.0003}, "b": {F1: -0.0002, F2: 0.0}}
FEES = {"a": 5.0, "b": 6.0}  # taker bps


def tob(venue: str, rows: list[tuple[int, float, float]]) -> pl.DataFrame:
    """rows: (t ms, bid, ask), sizes 1."""
    ts = [T0 + t * MS for t, _, _ in rows]
    return pl.DataFrame({"ts_local": ts, "ts_exchange": ts, "exchange": venue,
                         "symbol": "BTC-USDT", "bid_px": [r[1] for r in rows], "bid_sz": 1.0,
                         "ask_px": [r[2] for r in rows], "ask_sz": 1.0, "seq": None}
                        ).with_columns(pl.col("ts_local", "ts_exchange").cast(TS))


def funding_rows(venue: str) -> pl.DataFrame:
    """A row every 500 ms: the rate for the next funding time, then the one after it (rows
    announced after F1 carry F2 and its rate)."""
    ts = [T0 + k * 500 * MS for k in range(11)]
    nxt = [F1 if t < F1 else F2 for t in ts]
    return pl.DataFrame({"ts_local": ts, "ts_exchange": ts, "exchange": venue,
                         "symbol": "BTC-USDT", "funding_rate": [RATES[venue][n] for n in nxt],
                         "funding_interval_s": 3600, "next_funding_time": nxt,
                         "mark_px": 100.0, "index_px": 100.0, "open_interest": 5.0}
                        ).with_columns(pl.col("ts_local", "ts_exchange", "next_funding_time")
                                       .cast(TS))


def write_dataset(root: Path) -> None:
    # every 100 ms both venues quote; from 1 s to 3 s b's bid (100.50) is above a's ask (100.10)
    a_rows, b_rows = [], []
    for k in range(51):
        t = k * 100
        a_rows.append((t, 100.0, 100.1))
        crossed = 1000 <= t < 3000
        b_rows.append((t, 100.5 if crossed else 100.0, 100.6 if crossed else 100.1))
    write_table(pl.concat([tob("a", a_rows), tob("b", b_rows)]), root, "tob")
    write_table(pl.concat([funding_rows("a"), funding_rows("b")]), root, "funding")
    health = [(T0, v, None, "connected", "x") for v in ("a", "b")]
    health += [(T0 + 5_000 * MS, v, None, "stopped", "end") for v in ("a", "b")]
    write_table(pl.DataFrame(health, schema={"ts_local": pl.Int64, "exchange": pl.String,
                                             "symbol": pl.String, "event": pl.String,
                                             "detail": pl.String}, orient="row")
                .with_columns(pl.col("ts_local").cast(TS)), root, "health")


def test_funding_times_carry_the_rate_announced_before_them() -> None:
    frame = pl.concat([funding_rows("a"), funding_rows("b")]).select(
        "exchange", pl.col("ts_local").cast(pl.Int64).alias("ts"), "funding_rate",
        "funding_interval_s", pl.col("next_funding_time").cast(pl.Int64))
    got = funding_times(frame)
    assert got.rows() == [("a", F1, 0.0001), ("a", F2, 0.0003), ("b", F1, -0.0002),
                          ("b", F2, 0.0)]


def test_a_round_trip_across_a_funding_time_against_a_hand_computation(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data, out = tmp_path / "data", tmp_path / "out"
    write_dataset(data)
    assert main_guard(spreads.PROG, spreads.main, [
        "--data", str(data), "--symbol", "BTC-USDT", "--out", str(out), "--quiet",
        "--thresholds", "0", "--taker-fee-bps", "a=5", "--taker-fee-bps", "b=6",
        "--stale-cap-ms", "1000", "--no-leadlag"]) == 0
    capsys.readouterr()
    eps = pl.read_parquet(out / "episodes.parquet")
    [ep] = eps.filter(pl.col("buy_venue") == "a").rows(named=True)
    assert (ep["start"].timestamp(), ep["end"].timestamp()) == (T0 / NS + 1, T0 / NS + 3)
    # by hand: buy a at 100.10 and sell b at 100.50 at 1 s; at 3 s sell a at its bid 100.00
    # and buy b back at its ask 100.10; long a pays its +1 bp, short b pays b's -2 bp
    entry = 1e4 * (100.5 / 100.1 - 1)
    exit_ = 1e4 * (100.0 / 100.1 - 1)
    funding = 1e4 * (-0.0002 - 0.0001)
    assert ep["spans_funding"] is True and ep["fundings"] == 2
    assert ep["rt_entry_bps"] == pytest.approx(entry)
    assert ep["rt_exit_bps"] == pytest.approx(exit_)
    assert ep["funding_bps"] == pytest.approx(-3.0)
    assert ep["rt_net_bps"] == pytest.approx(entry + exit_ - 2 * (FEES["a"] + FEES["b"])
                                             + funding)
    opp = pl.read_csv(out / "opportunities.csv").filter(pl.col("buy_venue") == "a")
    assert opp["spanning_funding"].item() == 1
    assert opp["rt_net_mean_bps"].item() == pytest.approx(ep["rt_net_bps"])
    summary = (out / "summary.md").read_text()
    assert "1 of 1 episodes span a funding time." in summary
    # the basis beside the funding difference, over the same (fresh) time: 1 s of the 5 s the
    # funding of a was +1 bp/h (8 bps per 8 h) and b -2 bp/h (-16), then +3 (24) and 0
    basis = pl.read_csv(out / "basis_hourly.csv").row(0, named=True)
    assert basis["basis_mean_bps"] == pytest.approx(
        (2 * 1e4 * (100.55 / 100.05 - 1) + 3 * 0.0) / 5, rel=1e-3)
    assert basis["funding_a_bps"] == pytest.approx((2 * 8 + 3 * 24) / 5)
    assert basis["funding_b_bps"] == pytest.approx((2 * -16 + 3 * 0) / 5)
    assert basis["funding_diff_bps"] == pytest.approx(basis["funding_b_bps"]
                                                      - basis["funding_a_bps"])


def test_without_a_funding_table_nothing_spans_and_the_report_says_so(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data, out = tmp_path / "data", tmp_path / "out"
    write_dataset(data)
    for f in (data / "funding").rglob("*.parquet"):
        f.unlink()
    assert main_guard(spreads.PROG, spreads.main, [
        "--data", str(data), "--symbol", "BTC-USDT", "--out", str(out), "--quiet",
        "--thresholds", "0", "--no-leadlag"]) == 0
    capsys.readouterr()
    eps = pl.read_parquet(out / "episodes.parquet")
    assert not eps["spans_funding"].any() and (eps["funding_bps"] == 0).all()
    assert "No funding rows for these venues" in (out / "summary.md").read_text()


def test_the_synthetic_funding_follows_its_schedule() -> None:
    """The demo generator's funding rows: the rate of each period, the next grid time."""
    venue = VenueSpec("x", 5.0, 0.0, 5.0, funding_bps_8h=(1.0, -2.0))
    cfg = PerpConfig(duration_s=90.0, t0_ns=T0 + 1770 * NS, venues=(venue,),
                     funding_interval_s=1800, dislocation_rate_hz=0.0, outages=())
    sim = simulate_perps(cfg, np.random.default_rng(1))
    assert sim.funding is not None
    f = sim.funding.select(pl.col("ts_exchange").cast(pl.Int64), "funding_rate",
                           pl.col("next_funding_time").cast(pl.Int64))
    before = f.filter(pl.col("ts_exchange") < T0 + 1800 * NS)
    after = f.filter(pl.col("ts_exchange") >= T0 + 1800 * NS)
    assert set(before["next_funding_time"]) == {T0 + 1800 * NS}
    assert set(after["next_funding_time"]) == {T0 + 3600 * NS}
    nxt, rate = funding_schedule(cfg, venue, np.array([T0 + 1799 * NS, T0 + 1800 * NS]))
    assert nxt.tolist() == [T0 + 1800 * NS, T0 + 3600 * NS]
    assert set(before["funding_rate"]) == {rate[0]} and set(after["funding_rate"]) == {rate[1]}
    assert sorted({rate[0], rate[1]}) == pytest.approx(sorted({1e-4 / 16, -2e-4 / 16}))
