"""``analysis.qr_validate`` on a recording simulated from a known Model III: the estimated θ, the
three simulated models, and the volatility comparison the way Huang, Lehalle & Rosenbaum make it
(the model that generated the data reproduces its volatility; queues alone move the price far
less)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from analysis import qr_validate
from analysis.cli import main_guard
from analysis.load import write_table
from analysis.qr_sim import L2SimConfig, QueueRates, simulate_l2

T0 = 1_714_564_800 * 1_000_000_000


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("qrv")
    cfg = L2SimConfig(duration_s=2 * 3600.0, k=3, t0_ns=T0, theta=0.7, theta_reinit=0.85)
    sim = simulate_l2(cfg, np.random.default_rng(21))
    write_table(sim.l2, root, "l2")
    write_table(sim.trades, root, "trades")
    write_table(sim.health, root, "health")
    return root


def test_validation_table_and_picture(recording: Path, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "v"
    code = main_guard(qr_validate.PROG, qr_validate.main,
                      ["--data", str(recording), "--exchange", "coinbase", "--symbol", "ETC-USD",
                       "--k", "3", "--paths", "3", "--out", str(out), "--quiet"])
    stdout, err = capsys.readouterr()
    assert (code, err) == (0, "")
    assert "10-minute volatility of the mid" in stdout
    assert (out / "volatility.png").stat().st_size > 20_000
    assert "θ̂ =" in (out / "validation.md").read_text()
    tab = pl.read_csv(out / "validation.csv")
    assert tab["source"].to_list()[0] == "recording" and tab.height == 4
    rec, model1, mech, model3 = tab.iter_rows(named=True)
    assert abs(rec["theta"] - 0.7) < 0.15 and abs(rec["theta_reinit"] - 0.85) < 0.15
    assert (model1["theta"], model3["theta"]) == (0.0, rec["theta"])
    assert mech["theta_reinit"] == 0.0 and model3["theta_reinit"] == rec["theta_reinit"]
    # the generating model reproduces the recording's volatility; the book alone does not
    assert rec["rv_lo_bps"] <= model3["rv_mid_10min_bps"] <= rec["rv_hi_bps"]
    assert model1["rv_mid_10min_bps"] < 0.4 * rec["rv_mid_10min_bps"]
    assert model1["pref_moves_per_hour"] < 0.1 * rec["pref_moves_per_hour"]


def test_fitted_rates_from_cells() -> None:
    cells = pl.DataFrame({
        "limit": [1] * 9, "type": ["L", "L", "L", "C", "C", "M", "M", "D", "D"],
        "n": [0, 1, 3, 1, 3, 1, 3, 1, 3], "N": [4, 8, 8, 3, 9, 6, 3, 9, 12],
        "T": [10.0, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0]},
        schema_overrides={"limit": pl.Int32})
    r = qr_validate.fitted_rates(cells, 1)
    assert isinstance(r, QueueRates)
    assert r.L[:4].tolist() == pytest.approx([0.4, 0.8, 0.8, 0.0])  # none above n = 3
    assert r.C[:4].tolist() == pytest.approx([0.0, 0.3, 0.6, 0.9])  # n = 2 interpolated
    assert r.M[:4].tolist() == pytest.approx([0.0, 0.6, 0.45, 0.3])
    assert qr_validate.fitted_rates(cells, 2) is None
