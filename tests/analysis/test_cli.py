"""End to end: the three scripts on a small dataset generated into tmp_path (the same generators
as examples/make_demo_data.py), their files and their key numbers; and their one-line failures."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from analysis import depth, queue_reactive, spreads
from analysis.cli import main_guard
from analysis.load import write_table
from analysis.qr_sim import L2Sim, L2SimConfig, simulate_l2
from analysis.synth import DEFAULT_VENUES, PerpConfig, PerpSim, simulate_perps

NS = 1_000_000_000
T0 = 1_714_564_800 * NS  # 2024-05-01 12:00:00 UTC
VENUES = tuple(v for v in DEFAULT_VENUES if v.name in ("bybit", "gateio", "htx"))


@dataclass
class Dataset:
    root: Path
    perps: PerpSim
    l2: L2Sim


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(11)
    perps = simulate_perps(PerpConfig(duration_s=240.0, t0_ns=T0, venues=VENUES,
                                      dislocation_rate_hz=1 / 12,
                                      outages=(("htx", 100.0, 5.0),)), rng)
    write_table(perps.tob, root, "tob")
    write_table(perps.health, root, "health", "part-perps.parquet")
    sim = simulate_l2(L2SimConfig(duration_s=900.0, k=3, t0_ns=T0, resnapshot_rate=0.005,
                                  duplicate_rate=0.02, zero_delta_rate=0.02,
                                  breaks=((400.0, 10.0),)), rng)
    write_table(sim.l2, root, "l2")
    write_table(sim.trades, root, "trades")
    write_table(sim.health, root, "health", "part-l2.parquet")
    # the same book under a venue name without a trades table
    write_table(sim.l2.with_columns(pl.lit("testex").alias("exchange")), root, "l2")
    return Dataset(root, perps, sim)


def run(prog: str, main: object, argv: list[str], capsys: pytest.CaptureFixture[str]
        ) -> tuple[int, str, str]:
    code = main_guard(prog, main, argv)  # type: ignore[arg-type]
    out, err = capsys.readouterr()
    return code, out, err


# -- spreads -------------------------------------------------------------------------------------


def test_spreads_end_to_end(data: Dataset, tmp_path: Path,
                            capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "spreads"
    code, stdout, err = run(spreads.PROG, spreads.main,
                            ["--data", str(data.root), "--symbol", "BTC-USDT", "--out", str(out),
                             "--quiet"],
                            capsys)
    assert (code, err) == (0, "")
    assert "3 pairs over bybit, gateio, htx" in stdout
    for name in ("pair_bybit_gateio.png", "pair_bybit_htx.png", "pair_gateio_htx.png",
                 "leadlag_bybit_htx.png", "latency.png", "summary.md", "opportunities.csv",
                 "opportunities.md", "pairs.csv", "basis_hourly.csv", "leadlag.csv",
                 "latency.csv", "episodes.parquet", "event_study.csv",
                 "event_study_bybit_htx.png", "venues.csv"):
        assert (out / name).stat().st_size > 0, name
    opp = pl.read_csv(out / "opportunities.csv")
    assert opp.height == 3 * 2 * 4
    assert sorted(opp["tau_bps"].unique().to_list()) == [0.0, 2.0, 5.0, 10.0]
    # fees from analysis/fees.toml: bybit 5.5 + htx 6 bps
    cost = opp.filter(pl.col("buy_venue") == "bybit", pl.col("sell_venue") == "htx")["cost_bps"]
    assert cost.to_list() == pytest.approx([11.5] * 4)
    assert opp.filter(pl.col("tau_bps") == 0)["episodes"].sum() > 5
    every = pl.read_parquet(out / "episodes.parquet")
    assert (every["mean_net_bps"] > every["tau_bps"]).all()
    assert (every["peak_net_bps"] >= every["mean_net_bps"] - 1e-9).all()
    assert (every["duration_ms"] > 0).all()
    # without dislocations the venues never clear the fees: every episode starts inside an
    # injected dislocation of one of its two venues (plus the feeds' latency)
    eps = pl.read_parquet(out / "episodes.parquet").filter(pl.col("tau_bps") == 0)
    dis = data.perps.dislocations
    for buy, sell, start in eps.select("buy_venue", "sell_venue",
                                       pl.col("start").cast(pl.Int64)).iter_rows():
        hit = dis.filter(pl.col("venue").is_in([buy, sell]),
                         pl.col("start_ns") <= start,
                         start <= pl.col("end_ns") + 100_000_000)
        assert hit.height >= 1, (buy, sell, start)
    # lead-lag: htx quotes 40 ms behind bybit and arrives about 20 ms later still (on receipt
    # time the leads add up to about 60 ms)
    ll = pl.read_csv(out / "leadlag.csv").filter(pl.col("venue_a") == "bybit",
                                                 pl.col("venue_b") == "htx")
    assert 45.0 <= ll["hy_theta_ms"].item() <= 85.0
    lat = dict(pl.read_csv(out / "latency.csv").select("exchange", "p50_ms").iter_rows())
    for v in VENUES:
        assert v.latency_ms <= lat[v.name] <= v.latency_ms + 3 * v.jitter_ms
    summary = (out / "summary.md").read_text()
    assert "bybit: taker 5.5 bps" in summary


def test_spreads_fee_override(data: Dataset, tmp_path: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "spreads"
    fees = tmp_path / "fees.toml"
    fees.write_text('[htx]\ntaker = 0.0001\n')
    code, _, _ = run(spreads.PROG, spreads.main,
                     ["--data", str(data.root), "--symbol", "BTC-USDT", "--out", str(out),
                      "--venues", "bybit,htx", "--fees", str(fees), "--taker-fee-bps",
                      "bybit=1", "--thresholds", "0", "--no-leadlag"], capsys)
    assert code == 0
    opp = pl.read_csv(out / "opportunities.csv")
    assert opp["cost_bps"].to_list() == pytest.approx([2.0, 2.0])
    assert not (out / "leadlag.csv").exists()


@pytest.mark.parametrize(("argv", "message"), [
    (["--symbol", "ETH-USDT"], "ETH-USDT is on no venue in the tob table"),
    (["--symbol", "BTC-USDT", "--venues", "bybit,okx"], "no 'tob' data for okx"),
    (["--symbol", "BTC-USDT", "--taker-fee-bps", "bybit"], "expected VENUE=BPS"),
    (["--symbol", "BTC-USDT", "--start", "2024-05-02T00:00:00Z"], "BTC-USDT is on no venue"),
])
def test_spreads_failures_are_one_line(data: Dataset, tmp_path: Path, argv: list[str],
                                       message: str,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(spreads.PROG, spreads.main,
                       ["--data", str(data.root), "--out", str(tmp_path), "--quiet", *argv],
                       capsys)
    assert code == 2
    assert err.count("\n") == 1
    assert err.startswith(f"{spreads.PROG}: ")
    assert message in err


# -- depth ---------------------------------------------------------------------------------------


def _pref_at(sim: L2Sim, at_ns: int) -> float:
    msgs = (sim.l2.group_by("msg_id").agg(pl.col("ts_local").first().cast(pl.Int64))
            .filter(pl.col("ts_local") <= at_ns).sort("msg_id"))
    last = msgs["msg_id"][-1]
    ref = sim.pref.filter(pl.col("msg_id") == last)["ref_half"].item()
    return ref * sim.config.tick / 2


def test_depth_end_to_end(data: Dataset, tmp_path: Path,
                          capsys: pytest.CaptureFixture[str]) -> None:
    at = datetime(2024, 5, 1, 12, 5, 0, tzinfo=UTC)
    code, stdout, err = run(depth.PROG, depth.main,
                            ["--data", str(data.root), "--exchange", "coinbase", "--symbol",
                             "ETC-USD", "--at", "2024-05-01T12:05:00Z", "--levels", "5",
                             "--out", str(tmp_path), "--quiet"], capsys)
    assert (code, err) == (0, "")
    png = tmp_path / "depth_coinbase_ETC-USD_20240501T120500.png"
    assert png.stat().st_size > 10_000
    book = pl.read_csv(png.with_suffix(".csv"))
    assert book["level"].to_list() == [-5, -4, -3, -2, -1, 1, 2, 3, 4, 5]
    prices = book["price"].to_numpy()
    assert np.allclose(np.diff(prices), 0.01)
    pref = _pref_at(data.l2, int(at.timestamp()) * NS)
    assert (prices[4] + prices[5]) / 2 == pytest.approx(pref)
    assert f"p_ref {pref:.10g}" in stdout


@pytest.mark.parametrize(("at", "message"), [
    ("2024-05-01T13:00:00Z", "is outside the recorded l2 data"),
    ("2024-05-01T12:06:45Z", "'disconnected' at"),  # inside the feed loss at 400-410 s
    ("noon", "cannot read time"),
])
def test_depth_failures_are_one_line(data: Dataset, tmp_path: Path, at: str, message: str,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(depth.PROG, depth.main,
                       ["--data", str(data.root), "--exchange", "coinbase", "--symbol",
                        "ETC-USD", "--at", at, "--out", str(tmp_path), "--quiet"], capsys)
    assert code == 2
    assert err.count("\n") == 1
    assert message in err


def test_depth_unknown_venue_and_symbol(data: Dataset, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    base = ["--data", str(data.root), "--at", "2024-05-01T12:05:00Z", "--out", str(tmp_path)]
    code, _, err = run(depth.PROG, depth.main,
                       [*base, "--exchange", "kraken", "--symbol", "ETC-USD"], capsys)
    assert code == 2 and "available: coinbase, testex" in err
    code, _, err = run(depth.PROG, depth.main,
                       [*base, "--exchange", "coinbase", "--symbol", "BTC-USD"], capsys)
    assert code == 2 and "symbols there: ETC-USD" in err


# -- queue-reactive ------------------------------------------------------------------------------


def test_queue_reactive_end_to_end(data: Dataset, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "qr"
    code, stdout, err = run(queue_reactive.PROG, queue_reactive.main,
                            ["--data", str(data.root), "--exchange", "coinbase", "--symbol",
                             "ETC-USD", "--out", str(out), "--k", "3", "--boot", "20",
                             "--quiet"], capsys)
    assert (code, err) == (0, "")
    for name in ("pref.parquet", "pref_changes.parquet", "events.parquet", "book_short.parquet",
                 "aes.json", "intensities.parquet", "invariant.parquet", "intervals.parquet",
                 "hlr.parquet", "diagnostics.json", "lambda_level1.png", "lambda_level3.png",
                 "lambda_levels.png", "invariant.png"):
        assert (out / name).stat().st_size > 0, name
    diag = json.loads((out / "diagnostics.json").read_text())
    assert diag["counts"]["breaks"] == 1
    assert diag["tick"] == 0.01 and diag["lot"] == 0.01  # both inferred from the data
    assert diag["clock"] == "exchange" and diag["trades"] is True
    truth = data.l2.truth
    events = pl.read_parquet(out / "events.parquet")
    # every simulated event is found, except those between the resync and the first odd spread
    assert 0.99 * truth.height <= events.height <= truth.height + 30
    assert set(events["type"].unique().to_list()) == {"L", "C", "M"}
    tab = pl.read_parquet(out / "intensities.parquet")
    assert set(tab["type"].unique().to_list()) == {"L", "C", "M", "D"}
    assert set(tab["side"].unique().to_list()) == {"bid", "ask", "pooled"}
    # λ̂^L at Q±1 for a well-populated state is near the simulated 0.8/s
    l1 = tab.filter(pl.col("side") == "pooled", pl.col("limit") == 1, pl.col("type") == "L",
                    ~pl.col("sparse"))
    assert l1.height >= 5
    assert ((l1["ci_lo"] <= 0.8) & (l1["ci_hi"] >= 0.8)).mean() >= 0.8
    aes = json.loads((out / "aes.json").read_text())
    sizes = truth.filter(pl.col("limit").abs() == 1)["size_lots"].to_numpy()
    assert abs(aes["limits"]["1"]["mean"] - sizes.mean()) <= 3 * sizes.std() / np.sqrt(sizes.size)
    assert "events" in stdout and "clock exchange" in stdout


def test_queue_reactive_without_trades(data: Dataset, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    base = ["--data", str(data.root), "--exchange", "testex", "--symbol", "ETC-USD", "--k", "2",
            "--boot", "0", "--quiet"]
    code, _, err = run(queue_reactive.PROG, queue_reactive.main,
                       [*base, "--out", str(tmp_path / "a")], capsys)
    assert code == 0
    assert "no trades for testex ETC-USD" in err
    types = pl.read_parquet(tmp_path / "a" / "intensities.parquet")["type"].unique().to_list()
    assert sorted(types) == ["D", "L"]
    code, _, err = run(queue_reactive.PROG, queue_reactive.main,
                       [*base, "--out", str(tmp_path / "b"), "--trades", "required"], capsys)
    assert code == 2
    assert err.count("\n") == 1 and "C and M cannot be told apart" in err


def test_queue_reactive_missing_inputs(data: Dataset, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    base = ["--data", str(data.root), "--out", str(tmp_path)]
    code, _, err = run(queue_reactive.PROG, queue_reactive.main,
                       [*base, "--exchange", "coinbase", "--symbol", "BTC-USD"], capsys)
    assert code == 2 and "symbols there: ETC-USD" in err
    code, _, err = run(queue_reactive.PROG, queue_reactive.main,
                       [*base, "--exchange", "coinbase", "--symbol", "ETC-USD", "--start",
                        "2024-05-02T00:00:00Z"], capsys)
    assert code == 2 and "no l2 rows for coinbase ETC-USD between" in err


@pytest.mark.parametrize("module", [spreads, depth, queue_reactive])
def test_help_has_an_example(module: object) -> None:
    text = module.parser().format_help()  # type: ignore[attr-defined]
    assert "example:" in text
    assert f"{module.PROG} --data" in text  # type: ignore[attr-defined]


def test_spreads_on_the_exchange_clock(data: Dataset, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "ex"
    base = ["--data", str(data.root), "--symbol", "BTC-USDT", "--venues", "bybit,htx",
            "--thresholds", "0"]
    code, _, _ = run(spreads.PROG, spreads.main,
                     [*base, "--out", str(out), "--clock", "exchange", "--clock-offset-ms",
                      "htx=0"], capsys)
    assert code == 0
    summary = (out / "summary.md").read_text()
    assert "Timeline: exchange time ts_exchange + each venue's clock offset" in summary
    assert "htx +0.000 ms (--clock-offset-ms)" in summary
    # on exchange time the lead is the quotes' own 40 ms, without htx's extra 17 ms of latency
    theta = pl.read_csv(out / "leadlag.csv")["hy_theta_ms"].item()
    assert 30.0 <= theta <= 55.0
    code, _, err = run(spreads.PROG, spreads.main,
                       [*base, "--out", str(out), "--clock", "exchange", "--clock-offset-ms",
                        "htx"], capsys)
    assert code == 2 and "expected VENUE=MS" in err
