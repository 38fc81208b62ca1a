"""Alignment, edges and episodes on small hand-made quote frames with known answers."""

from __future__ import annotations

import polars as pl
import pytest

from analysis.align import align_pair, staleness_caps, venue_quotes
from analysis.episodes import direction, edge_summary, episode_stats, episodes, pair_edges

MS = 1_000_000
T0 = 1_714_564_800_000_000_000
BIG = 10_000 * MS  # a staleness limit that never bites
NO_BREAKS = pl.LazyFrame(schema={"ts_local": pl.Datetime("ns", "UTC"), "event": pl.String})


def tob(venue: str, rows: list[tuple[float, float, float, float, float]]) -> pl.DataFrame:
    """rows: (t ms, bid, bid_sz, ask, ask_sz)."""
    ts = [T0 + int(r[0] * MS) for r in rows]
    return pl.DataFrame({
        "ts_local": ts, "ts_exchange": [t - 5 * MS for t in ts], "exchange": venue,
        "symbol": "BTC-USDT", "bid_px": [r[1] for r in rows], "bid_sz": [r[2] for r in rows],
        "ask_px": [r[3] for r in rows], "ask_sz": [r[4] for r in rows], "seq": None,
    }).with_columns(pl.col("ts_local", "ts_exchange").cast(pl.Datetime("ns", "UTC")))


A_ROWS = [(0, 100.0, 1.0, 100.1, 2.0), (1100, 100.0, 1.0, 100.1, 3.0),
          (2000, 100.0, 1.0, 100.1, 2.0)]
B_ROWS = [(0, 100.0, 1.0, 100.1, 1.0), (1000, 100.3, 0.5, 100.4, 0.5),
          (1300, 100.0, 1.0, 100.1, 1.0)]


def aligned(a_rows: list[tuple[float, float, float, float, float]],
            b_rows: list[tuple[float, float, float, float, float]], smax: int = BIG,
            breaks_a: pl.LazyFrame = NO_BREAKS) -> pl.LazyFrame:
    frame = pl.concat([tob("a", a_rows), tob("b", b_rows)]).lazy()
    return align_pair(venue_quotes(frame, "a"), venue_quotes(frame, "b"), smax, smax,
                      breaks_a, NO_BREAKS)


def test_asof_alignment_uses_only_the_past() -> None:
    df = aligned(A_ROWS, B_ROWS).collect()
    assert df["t"].to_list() == [T0 + x * MS for x in (0, 1000, 1100, 1300, 2000)]
    # at 1000 ms venue a's latest quote is the one from 0 ms: age 1 s, no look-ahead to 1100
    row = df.filter(pl.col("t") == T0 + 1000 * MS).row(0, named=True)
    assert row["a_ask_sz"] == 2.0
    assert row["a_age"] == 1000 * MS
    assert row["b_bid_px"] == 100.3
    assert row["b_age"] == 0
    assert df["dt"].to_list() == [1000 * MS, 100 * MS, 200 * MS, 700 * MS, 0]
    assert df["fresh"].all()


def test_staleness_and_dead_legs() -> None:
    df = aligned(A_ROWS, B_ROWS, smax=500 * MS).collect()
    # a's quote from 0 ms is 1000 ms old at t = 1000 ms: stale
    assert df.filter(pl.col("t") == T0 + 1000 * MS)["a_fresh"].item() is False
    assert df.filter(pl.col("t") == T0 + 1100 * MS)["a_fresh"].item() is True
    brk = pl.LazyFrame({"ts_local": [T0 + 1200 * MS], "event": ["disconnected"]}).with_columns(
        pl.col("ts_local").cast(pl.Datetime("ns", "UTC")))
    df = aligned(A_ROWS, B_ROWS, breaks_a=brk).collect()
    dead = dict(zip(((df["t"] - T0) // MS).to_list(), df["a_dead"].to_list(), strict=True))
    # a's 1100 ms quote is dead once the feed broke at 1200 ms, until a's next quote
    assert dead == {0: False, 1000: False, 1100: False, 1300: True, 2000: False}


def test_staleness_cap_is_p99_of_update_gaps_capped() -> None:
    frame = pl.concat([tob("a", [(i * 10.0, 1, 1, 2, 1) for i in range(200)]),
                       tob("b", [(i * 1000.0, 1, 1, 2, 1) for i in range(5)])]).lazy()
    caps = dict(staleness_caps(frame, 250.0).collect().select("exchange", "smax").iter_rows())
    assert caps == {"a": 10 * MS, "b": 250 * MS}


def test_edges_both_ways() -> None:
    df = pair_edges(aligned(A_ROWS, B_ROWS), 0.0005, 0.0006).collect()
    row = df.filter(pl.col("t") == T0 + 1000 * MS).row(0, named=True)
    assert row["gross_ab"] == pytest.approx(1e4 * (100.3 / 100.1 - 1))
    assert row["net_ab"] == pytest.approx(1e4 * (100.3 / 100.1 - 1) - 11.0)
    assert row["gross_ba"] == pytest.approx(1e4 * (100.0 / 100.4 - 1))
    assert row["ratio_ab"] == pytest.approx(100.1 / 100.3)
    assert row["notional_ab"] == pytest.approx(0.5 * 100.1)  # min(2.0, 0.5) at a's ask
    assert row["basis"] == pytest.approx(1e4 * (100.35 / 100.05 - 1))
    # no fee known: gross only
    assert pair_edges(aligned(A_ROWS, B_ROWS), None, 0.0006).collect()["net_ab"].null_count() \
        == df.height


def test_a_crafted_crossing_is_exactly_one_episode() -> None:
    view = direction(pair_edges(aligned(A_ROWS, B_ROWS), 0.0, 0.0), "ab")
    eps = episodes(view, 0.0).collect()
    assert eps.height == 1
    ep = eps.row(0, named=True)
    assert ep["start"] == T0 + 1000 * MS
    assert ep["end"] == T0 + 1300 * MS
    assert ep["duration_ns"] == 300 * MS
    assert ep["rows"] == 2
    edge = 1e4 * (100.3 / 100.1 - 1)
    assert ep["peak_net_bps"] == pytest.approx(edge)
    assert ep["mean_net_bps"] == pytest.approx(edge)
    # two quote states, each 0.5 BTC at 100.1 bought and sold at 100.3
    assert ep["pnl_upper"] == pytest.approx(2 * 0.5 * 0.2)
    assert ep["age_gap_ns"] == 1000 * MS
    assert ep["open_at_end"] is False
    # the reverse direction never crosses
    assert episodes(direction(pair_edges(aligned(A_ROWS, B_ROWS), 0.0, 0.0), "ba"),
                    0.0).collect().height == 0


def test_fees_and_thresholds() -> None:
    view = direction(pair_edges(aligned(A_ROWS, B_ROWS), 0.0005, 0.0005), "ab")
    net = 1e4 * (100.3 / 100.1 - 1) - 10.0  # 9.98 bps
    assert episodes(view, 5.0).collect()["peak_net_bps"].to_list() == pytest.approx([net])
    assert episodes(view, 10.0).collect().height == 0


def test_stale_legs_make_no_episode() -> None:
    view = direction(pair_edges(aligned(A_ROWS, B_ROWS, smax=500 * MS), 0.0, 0.0), "ab")
    eps = episodes(view, 0.0).collect()
    # only the part after a's fresh quote at 1100 ms counts
    assert eps["start"].to_list() == [T0 + 1100 * MS]
    assert eps["duration_ns"].to_list() == [200 * MS]


@pytest.mark.parametrize(("gap_ms", "expected"), [(30, 1), (60, 2)])
def test_episodes_closer_than_50_ms_merge(gap_ms: int, expected: int) -> None:
    b_rows = [*B_ROWS, (1300 + gap_ms, 100.3, 0.5, 100.4, 0.5), (1500, 100.0, 1.0, 100.1, 1.0)]
    view = direction(pair_edges(aligned(A_ROWS, sorted(b_rows)), 0.0, 0.0), "ab")
    eps = episodes(view, 0.0).collect()
    assert eps.height == expected
    if expected == 1:
        assert eps["duration_ns"].item() == 500 * MS
        assert eps["rows"].item() == 3
    else:
        assert eps["duration_ns"].to_list() == [300 * MS, (200 - gap_ms) * MS]


def test_episode_stats() -> None:
    view = direction(pair_edges(aligned(A_ROWS, B_ROWS), 0.0, 0.0), "ab")
    st = episode_stats(episodes(view, 0.0), 0.5, latency_ns=10 * MS, rtt_ns=100 * MS)
    row = st.collect().row(0, named=True)
    assert row["episodes"] == 1
    assert row["per_hour"] == pytest.approx(2.0)
    assert row["dur_median_ms"] == pytest.approx(300.0)
    assert row["dur_max_ms"] == pytest.approx(300.0)
    assert row["capturable"] == 1  # 300 ms > 10 ms + 100 ms
    # a's quote was 1 s older than b's at the start; a's next quote (1100 ms) still crossed
    assert row["confirmed_share"] == pytest.approx(1.0)
    assert row["artefact_share"] == pytest.approx(0.0)
    st = episode_stats(episodes(view, 0.0), 0.5, latency_ns=None, rtt_ns=100 * MS)
    assert st.collect()["capturable"].item() is None


def test_edge_summary_time_weights() -> None:
    s = edge_summary(pair_edges(aligned(A_ROWS, B_ROWS), 0.0, 0.0)).collect().row(0, named=True)
    # crossed (a -> b) for 300 ms of the 2000 ms weighted span
    assert s["cross_ab_time_share"] == pytest.approx(0.3 / 2.0)
    assert s["fresh_seconds"] == pytest.approx(2.0)
