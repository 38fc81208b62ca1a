"""The lead-lag event study recovers a known lag, on receipt time and on clock-corrected
exchange time, and reads no lead where there is none; the venue table's best-price shares and
leads on hand-made quotes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from analysis import spreads
from analysis.align import venue_quotes
from analysis.cli import main_guard
from analysis.event_study import Changes, mid_changes, response_times, study
from analysis.load import write_table
from analysis.venue_summary import best_price_shares, lead_counts
from core.clock_sync import Estimate, estimate_detail

MS = 1_000_000
NS = 1_000_000_000
T0 = 1_714_564_800 * NS
TS = pl.Datetime("ns", "UTC")
NO_BREAKS = pl.LazyFrame(schema={"ts_local": TS, "event": pl.String})

LAG_MS = 40
LAT_A_MS, LAT_B_MS = 5, 25  # receipt latencies: on receipt time b follows 60 ms later
OFFSET_B_MS = 7  # b's clock runs 7 ms behind: its ts_exchange is early by 7 ms


def leader_and_follower(seed: int = 3, duration_s: float = 600.0
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Leader moves (Poisson 4/s, random signs, 1 ms grid); the follower makes each of them
    exactly LAG_MS later and moves on its own too (Poisson 2/s)."""
    rng = np.random.default_rng(seed)
    n = rng.poisson(4 * duration_s)
    ta = np.unique(rng.integers(0, int(duration_s * 1000), n)) * MS
    sa = rng.choice(np.array([-1, 1], dtype=np.int8), ta.size)
    m = rng.poisson(2 * duration_s)
    noise_t = np.unique(rng.integers(0, int(duration_s * 1000), m)) * MS
    noise_s = rng.choice(np.array([-1, 1], dtype=np.int8), noise_t.size)
    tb = np.concatenate([ta + LAG_MS * MS, noise_t])
    sb = np.concatenate([sa, noise_s])
    order = np.argsort(tb, kind="stable")
    tb, sb = tb[order], sb[order]
    keep = np.concatenate([[True], np.diff(tb) > 0])  # one move per instant
    return ta.astype(np.int64), sa, tb[keep].astype(np.int64), sb[keep]


def test_response_times_take_the_first_same_way_move_at_or_after() -> None:
    follower = Changes(np.array([10, 20, 30, 45], dtype=np.int64),
                       np.array([1, -1, 1, -1], dtype=np.int8))
    got = response_times(np.array([10, 11, 21, 40, 46], dtype=np.int64),
                         np.array([1, 1, -1, 1, -1], dtype=np.int8), follower)
    assert got.tolist() == [0.0, 19.0, 24.0, np.inf, np.inf]


def test_the_study_recovers_a_known_lag_and_no_reverse_lead() -> None:
    ta, sa, tb, sb = leader_and_follower()
    a, b = Changes(T0 + ta, sa), Changes(T0 + tb, sb)
    fwd = study("a", "b", a, b)
    assert fwd.lag_ms == LAG_MS
    assert fwd.p[10.0] == pytest.approx(fwd.base[10.0], abs=0.03)  # nothing before the lag
    assert fwd.p[50.0] > 0.97 and fwd.base[50.0] < 0.15  # everything right after it
    back = study("b", "a", b, a)  # a does not follow b: its moves are as likely after any time
    for tau in (10.0, 50.0, 100.0, 500.0):
        assert back.p[tau] == pytest.approx(back.base[tau], abs=0.04), tau
    assert fwd.events > 2000 and fwd.median_ms == pytest.approx(LAG_MS, abs=1)


def quotes_of(venue: str, t: np.ndarray, sign: np.ndarray, latency_ms: int,
              offset_ms: int) -> pl.DataFrame:
    """tob rows whose mid walks by one tick per move; ``t`` is exchange time on our clock."""
    mid = 65_000.0 + 0.1 * np.cumsum(sign.astype(np.float64))
    return pl.DataFrame({
        "ts_local": T0 + t + latency_ms * MS, "ts_exchange": T0 + t - offset_ms * MS,
        "exchange": venue, "symbol": "BTC-USDT", "bid_px": np.round(mid - 0.05, 2),
        "bid_sz": 1.0, "ask_px": np.round(mid + 0.05, 2), "ask_sz": 1.0, "seq": None,
    }).with_columns(pl.col("ts_local", "ts_exchange").cast(TS))


def write_dataset(root: Path) -> None:
    ta, sa, tb, sb = leader_and_follower(duration_s=120.0)
    write_table(pl.concat([quotes_of("a", ta, sa, LAT_A_MS, 0),
                           quotes_of("b", tb, sb, LAT_B_MS, OFFSET_B_MS)]), root, "tob")
    est = Estimate(offset_ns=OFFSET_B_MS * MS + 0.2 * MS, rtt_ns=2 * LAT_B_MS * MS,
                   min_rtt_ns=2 * LAT_B_MS * MS, good=5, samples=5)
    rows = [(T0, v, None, "connected", "x") for v in ("a", "b")]
    rows += [(T0 + k * 60 * NS, "b", None, "clock_offset", estimate_detail(est, "/t"))
             for k in range(2)]
    rows += [(T0 + 121 * NS, v, None, "stopped", "end") for v in ("a", "b")]
    write_table(pl.DataFrame(rows, schema={"ts_local": pl.Int64, "exchange": pl.String,
                                           "symbol": pl.String, "event": pl.String,
                                           "detail": pl.String}, orient="row")
                .with_columns(pl.col("ts_local").cast(TS)), root, "health")


def test_the_report_runs_it_on_both_clocks_with_the_measured_offsets(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data, out = tmp_path / "data", tmp_path / "out"
    write_dataset(data)
    argv = ["--data", str(data), "--symbol", "BTC-USDT", "--out", str(out), "--quiet",
            "--thresholds", "0", "--grid-ms", "100", "--no-leadlag"]
    assert main_guard(spreads.PROG, spreads.main, argv) == 0
    assert not (out / "event_study.csv").exists()  # --no-leadlag: no lead-lag study at all
    assert main_guard(spreads.PROG, spreads.main, argv[:-1]) == 0
    capsys.readouterr()
    table = pl.read_csv(out / "event_study.csv")
    lag = {(c, i): v for c, i, v in table.select("clock", "leader", "lag_ms").iter_rows()}
    # receipt time: the lag plus the latency difference; exchange time corrected by the
    # recorded offset (within its 0.2 ms error, on a 1 ms grid): the venues' own lag
    assert lag[("receipt", "a")] == LAG_MS + LAT_B_MS - LAT_A_MS
    assert lag[("exchange", "a")] == LAG_MS
    summary = (out / "summary.md").read_text()
    assert "b +7.200 ms (median of 2 clock_offset bursts, round trip 50.0 ms)" in summary
    assert "a 0 ms (no clock_offset rows, no --clock-offset-ms)" in summary
    assert (out / "event_study_a_b.png").stat().st_size > 10_000
    # the flag overrides the measurement: without the correction the lag is 7 ms short
    assert main_guard(spreads.PROG, spreads.main,
                      [*argv[:-1], "--clock-offset-ms", "b=0"]) == 0
    table = pl.read_csv(out / "event_study.csv")
    lag = {(c, i): v for c, i, v in table.select("clock", "leader", "lag_ms").iter_rows()}
    assert lag[("exchange", "a")] == LAG_MS - OFFSET_B_MS
    assert "b +0.000 ms (--clock-offset-ms)" in (out / "summary.md").read_text()
    venues = pl.read_csv(out / "venues.csv")
    share = dict(venues.select("exchange", "lead_share").iter_rows())
    # a leads most moves the two share; b's own moves lead only when a happens to follow
    assert share["a"] > 0.8 and share["b"] < 0.2


def test_mid_changes_ignore_size_only_updates() -> None:
    q = pl.DataFrame({"ts": [1, 2, 3, 4], "bid_px": [1.0, 1.0, 1.1, 1.0],
                      "ask_px": [2.0, 2.0, 2.1, 2.1]})
    c = mid_changes(q)
    assert c.t.tolist() == [3, 4] and c.sign.tolist() == [1, -1]


def test_best_price_shares_and_leads_by_hand() -> None:
    """a: bid 100 ask 101 until 1 s, then 102/103; b: 101/102 throughout; c: quotes once and
    goes stale. Over [0, 2 s): b has the best bid for the first second, a for the second."""
    def frame(venue: str, rows: list[tuple[int, float, float]]) -> pl.DataFrame:
        return pl.DataFrame({"ts_local": [T0 + t * MS for t, _, _ in rows],
                             "ts_exchange": [T0 + t * MS for t, _, _ in rows],
                             "exchange": venue, "symbol": "X", "bid_px": [r[1] for r in rows],
                             "bid_sz": 1.0, "ask_px": [r[2] for r in rows], "ask_sz": 1.0,
                             "seq": None}).with_columns(pl.col("ts_local", "ts_exchange")
                                                        .cast(TS))
    tob = pl.concat([frame("a", [(0, 100.0, 101.0), (1000, 102.0, 103.0)]),
                     frame("b", [(0, 101.0, 102.0), (500, 101.0, 102.0)]),
                     frame("c", [(0, 90.0, 120.0)])]).lazy()
    quotes = {v: venue_quotes(tob, v) for v in ("a", "b", "c")}
    smax = {"a": 10 * NS, "b": 10 * NS, "c": 100 * MS}
    shares = best_price_shares(quotes, smax, {v: NO_BREAKS for v in quotes}, T0 + 2 * NS)
    got = {r["exchange"]: (r["best_bid_share"], r["best_ask_share"])
           for r in shares.iter_rows(named=True)}
    assert got["a"] == pytest.approx((0.5, 0.5))
    assert got["b"] == pytest.approx((0.5, 0.5))  # best ask 102 < 103 in the second half
    assert got["c"] == pytest.approx((0.0, 0.0))  # its bid never the highest; stale after 0.1 s
    assert shares["compared_seconds"][0] == pytest.approx(2.0)
    # leads: a up at 0, b up at 30 ms (follows); b down at 500, a down at 520 (a follows);
    # a up at 900 with nothing after; simultaneous moves lead nothing
    changes = {"a": Changes(np.array([0, 520, 900, 2000]) * MS,
                            np.array([1, -1, 1, 1], dtype=np.int8)),
               "b": Changes(np.array([30, 500, 2000]) * MS,
                            np.array([1, -1, 1], dtype=np.int8))}
    leads = {r["exchange"]: (r["moves"], r["leads"]) for r in
             lead_counts(changes, 100.0).iter_rows(named=True)}
    assert leads == {"a": (4, 1), "b": (3, 1)}
