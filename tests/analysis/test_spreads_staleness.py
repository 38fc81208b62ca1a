"""Offline spreads in continuous time: a leg that goes stale between two grid rows ends the
episode at that instant, exactly as the live analyzer does; offline and live agree episode by
episode on a simulated stream; and the refresh test tells injected dislocations from the
stale-quote artefacts of venues that lag a price jump."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from analysis import spreads
from analysis.align import align_pair, venue_quotes
from analysis.episodes import direction, edge_summary, episodes, pair_edges
from analysis.load import write_table
from analysis.spread_live import Opportunity, SpreadConfig, SpreadState
from analysis.synth import DEFAULT_VENUES, PerpConfig, simulate_perps
from core.schema import Event, Health, TopOfBook

MS = 1_000_000
T0 = 1_714_564_800_000_000_000
CAP = 250 * MS
NO_BREAKS = pl.LazyFrame(schema={"ts_local": pl.Datetime("ns", "UTC"), "event": pl.String})

# b quotes every 200 ms until 800 ms and goes quiet until 3000 ms; a crosses b at 1000 ms
# (ask 99.9 < b's bid 100.0) and quotes again at 3000 ms. Caps 250 ms: b's 800 ms quote is stale
# from 1050 ms, so the crossing lasts 50 ms, not the 2000 ms to the next grid row.
A_ROWS = [(0, 100.0, 100.1), (500, 100.0, 100.1), (1000, 99.8, 99.9), (3000, 100.0, 100.1)]
B_ROWS = [(0, 100.0, 100.1), (200, 100.0, 100.1), (400, 100.0, 100.1), (600, 100.0, 100.1),
          (800, 100.0, 100.1), (3000, 100.0, 100.1), (3200, 100.0, 100.1)]


def tob(venue: str, rows: list[tuple[float, float, float]]) -> pl.DataFrame:
    ts = [T0 + int(r[0] * MS) for r in rows]
    return pl.DataFrame({
        "ts_local": ts, "ts_exchange": [t - 5 * MS for t in ts], "exchange": venue,
        "symbol": "BTC-USDT", "bid_px": [r[1] for r in rows], "bid_sz": 1.0,
        "ask_px": [r[2] for r in rows], "ask_sz": 1.0, "seq": None,
    }).with_columns(pl.col("ts_local", "ts_exchange").cast(pl.Datetime("ns", "UTC")))


def live_events(frame: pl.DataFrame, health: pl.DataFrame | None = None) -> list[Event]:
    events: list[Event] = [
        TopOfBook(exchange=r["exchange"], ts_local=r["ts"], symbol=r["symbol"], ts_exchange=None,
                  bid_px=r["bid_px"], bid_sz=r["bid_sz"], ask_px=r["ask_px"],
                  ask_sz=r["ask_sz"])
        for r in frame.with_columns(pl.col("ts_local").cast(pl.Int64).alias("ts"))
        .iter_rows(named=True)]
    if health is not None:
        events += [Health(exchange=r["exchange"], ts_local=r["ts"], symbol=r["symbol"],
                          event=r["event"], detail=r["detail"] or "")
                   for r in health.with_columns(pl.col("ts_local").cast(pl.Int64).alias("ts"))
                   .iter_rows(named=True)]
    return sorted(events, key=lambda e: e.ts_local)


def run_live(events: list[Event], config: SpreadConfig, end_ns: int) -> list[Opportunity]:
    st = SpreadState(config)
    out: list[Event] = []
    for e in events:
        out += st.on_event(e)
    out += st.close(end_ns)
    return [o for o in out if isinstance(o, Opportunity)]


def test_a_leg_going_stale_between_rows_ends_the_episode_to_the_ms(tmp_path: Path) -> None:
    frame = pl.concat([tob("a", A_ROWS), tob("b", B_ROWS)])
    lf = frame.lazy()
    edges = pair_edges(align_pair(venue_quotes(lf, "a"), venue_quotes(lf, "b"), CAP, CAP,
                                  NO_BREAKS, NO_BREAKS), 0.0, 0.0)
    eps = episodes(direction(edges, "ab"), 0.0).collect()
    assert eps.select("start", "end", "duration_ns").rows() == [
        (T0 + 1000 * MS, T0 + 1050 * MS, 50 * MS)]
    # fresh time: 0-250 (a's 0 ms quote), 500-750, 1000-1050, 3000-3200 ms (the data end at
    # 3200 ms); crossed 50 ms of it
    s = edge_summary(edges).collect().row(0, named=True)
    assert s["fresh_seconds"] == pytest.approx(0.75)
    assert s["cross_ab_time_share"] == pytest.approx(50 / 750)
    # the live analyzer, fed the same quotes with the same caps, writes the same episode
    live = run_live(live_events(frame), SpreadConfig(taker_fees={"a": 0.0, "b": 0.0}),
                    T0 + 3200 * MS)
    assert [(o.buy_exchange, o.sell_exchange, o.start, o.end, o.duration_ms) for o in live] == [
        ("a", "b", T0 + 1000 * MS, T0 + 1050 * MS, 50.0)]
    # and so does the command (S_max is capped at 250 ms for both venues)
    write_table(frame, tmp_path / "data", "tob")
    out = tmp_path / "out"
    assert spreads.main(["--data", str(tmp_path / "data"), "--symbol", "BTC-USDT", "--out",
                         str(out), "--thresholds", "0", "--no-leadlag", "--quiet",
                         "--taker-fee-bps", "a=0", "--taker-fee-bps", "b=0"]) == 0
    every = pl.read_parquet(out / "episodes.parquet")
    assert every.select("buy_venue", "duration_ms").rows() == [("a", 50.0)]
    opp = pl.read_csv(out / "opportunities.csv").filter(pl.col("buy_venue") == "a")
    assert opp["capturable"].item() == 0  # 50 ms < 5 ms latency + 100 ms round trip
    pairs = pl.read_csv(out / "pairs.csv")
    assert pairs["cross_ab_time_share"].item() == pytest.approx(50 / 750)


def test_offline_and_live_agree_on_a_simulated_stream(tmp_path: Path) -> None:
    venues = tuple(v for v in DEFAULT_VENUES if v.name in ("bybit", "htx"))
    cfg = PerpConfig(duration_s=240.0, venues=venues, dislocation_rate_hz=1 / 6,
                     outages=(("htx", 100.0, 3.0),))
    sim = simulate_perps(cfg, np.random.default_rng(3))
    data = tmp_path / "data"
    write_table(sim.tob, data, "tob")
    write_table(sim.health, data, "health")
    out = tmp_path / "out"
    assert spreads.main(["--data", str(data), "--symbol", "BTC-USDT", "--out", str(out),
                         "--thresholds", "0,5", "--no-leadlag", "--quiet"]) == 0
    offline = pl.read_parquet(out / "episodes.parquet").with_columns(
        pl.col("start").cast(pl.Int64), pl.col("end").cast(pl.Int64)).sort("tau_bps", "start")
    smax = dict(pl.read_csv(out / "latency.csv").select("exchange", "smax_ms").iter_rows())
    fees = {"bybit": 0.00055, "htx": 0.0006}
    end_ns = cfg.t0_ns + int(cfg.duration_s * 1e9)
    live = run_live(live_events(sim.tob, sim.health),
                    SpreadConfig(taker_fees=fees, stale_ms=smax, thresholds_bps=(0.0, 5.0)),
                    end_ns)
    live_rows = sorted(((o.threshold_bps, o.start), o) for o in live)
    assert len(offline) == len(live_rows) > 20
    for row, (_, o) in zip(offline.iter_rows(named=True), live_rows, strict=True):
        assert (row["buy_venue"], row["sell_venue"], row["tau_bps"]) == (
            o.buy_exchange, o.sell_exchange, o.threshold_bps)
        assert (row["start"], row["end"]) == (o.start, o.end)
        assert row["peak_net_bps"] == pytest.approx(o.peak_net_bps)
        assert row["mean_net_bps"] == pytest.approx(o.mean_net_bps)


def test_refresh_test_on_injected_dislocations_and_lagged_jumps(tmp_path: Path) -> None:
    """Injected dislocations (one venue off for 150-900 ms) must come out confirmed; crossings
    made by jumps of the common price that slower venues show late are mostly artefacts (a
    lagging venue's next quote can still predate the jump: those read as confirmed)."""
    venues = tuple(v for v in DEFAULT_VENUES if v.name in ("bybit", "gateio", "htx"))
    sim = simulate_perps(PerpConfig(duration_s=600.0, venues=venues, dislocation_rate_hz=1 / 10,
                                    jump_rate_hz=1 / 20, outages=()),
                         np.random.default_rng(1))
    data = tmp_path / "data"
    write_table(sim.tob, data, "tob")
    write_table(sim.health, data, "health")
    out = tmp_path / "out"
    zero = [x for v in ("bybit", "gateio", "htx") for x in ("--taker-fee-bps", f"{v}=0")]
    assert spreads.main(["--data", str(data), "--symbol", "BTC-USDT", "--out", str(out),
                         "--thresholds", "5", "--no-leadlag", "--quiet", *zero]) == 0
    eps = pl.read_parquet(out / "episodes.parquet").with_columns(pl.col("start").cast(pl.Int64))
    dis, jumps = sim.dislocations, sim.jumps
    assert jumps is not None

    def truth(buy: str, sell: str, start: int) -> str:
        if dis.filter(pl.col("venue").is_in([buy, sell]), pl.col("start_ns") <= start + 50 * MS,
                      start <= pl.col("end_ns") + 100 * MS).height:
            return "dislocation"
        if jumps.filter(pl.col("t_ns") <= start, start <= pl.col("t_ns") + 400 * MS).height:
            return "jump"
        return "other"

    eps = eps.with_columns(pl.Series("truth", [truth(*r) for r in eps.select(
        "buy_venue", "sell_venue", "start").iter_rows()]))
    share = {k: dict(g.group_by("verdict").len().with_columns(pl.col("len") / g.height)
                     .iter_rows()) for (k,), g in eps.group_by("truth")}
    n_dis = eps.filter(pl.col("truth") == "dislocation").height
    n_jump = eps.filter(pl.col("truth") == "jump").height
    assert n_dis > 50 and n_jump > 30
    assert share["dislocation"].get("confirmed", 0) >= 0.8
    assert share["dislocation"].get("artefact", 0) <= 0.1
    assert share["jump"].get("artefact", 0) >= 0.4
    assert share["jump"].get("artefact", 0) >= 2 * share["jump"].get("confirmed", 0)
