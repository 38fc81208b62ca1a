"""Numerics: incomplete gamma and its inverse, Garwood intervals, binomial test, TV, cross-
correlation, Hayashi–Yoshida, and the two lead-lag estimators on series with a known lag."""

from __future__ import annotations

import math

import numpy as np
import pytest

from analysis.leadlag import grid_leadlag, hy_leadlag
from analysis.stats import (
    binom_two_sided,
    chi2_ppf,
    chi2_sf,
    gammainc,
    gammaincinv,
    garwood,
    hayashi_yoshida,
    poisson_two_sample_p,
    tv_distance,
    xcorr,
)
from analysis.ticks import infer_step


def test_incomplete_gamma_known_values() -> None:
    assert gammainc(1.0, 2.0) == pytest.approx(1 - math.exp(-2.0), rel=1e-12)
    assert gammainc(0.5, 1.0) == pytest.approx(math.erf(1.0), rel=1e-12)
    # P(3, x) = 1 - e^-x (1 + x + x²/2)
    x = 4.2
    assert gammainc(3.0, x) == pytest.approx(1 - math.exp(-x) * (1 + x + x * x / 2), rel=1e-12)


@pytest.mark.parametrize("a", [0.3, 1.0, 2.5, 10.0, 57.0, 1000.0, 25_000.0])
@pytest.mark.parametrize("p", [1e-6, 0.025, 0.5, 0.975, 1 - 1e-6])
def test_gammaincinv_inverts(a: float, p: float) -> None:
    x = gammaincinv(a, p)
    assert gammainc(a, x) == pytest.approx(p, rel=1e-9, abs=1e-14)


def test_chi_square_quantiles() -> None:
    assert chi2_ppf(0.95, 1) == pytest.approx(3.841458820694124, rel=1e-10)
    assert chi2_ppf(0.025, 10) == pytest.approx(3.246972780236841, rel=1e-10)
    assert chi2_sf(3.841458820694124, 1) == pytest.approx(0.05, rel=1e-10)
    assert chi2_sf(124.342, 100) == pytest.approx(0.05, rel=1e-3)


def test_garwood_intervals() -> None:
    lo, hi = garwood([0, 1, 10, 100], [1.0, 1.0, 1.0, 50.0])
    # classic exact Poisson 95% limits for counts 0, 1, 10 and 100 (the last over T = 50)
    np.testing.assert_allclose(lo, [0.0, 0.0253178, 4.7953887, 81.363991 / 50], rtol=1e-6)
    np.testing.assert_allclose(hi, [3.6888794, 5.5716434, 18.3903560, 121.626794 / 50],
                               rtol=1e-6)
    # defining property: P(X <= N | hi·T) = P(X >= N | lo·T) = 0.025
    mu_hi, mu_lo = hi[3] * 50, lo[3] * 50
    cdf = sum(math.exp(-mu_hi + j * math.log(mu_hi) - math.lgamma(j + 1)) for j in range(101))
    sf = 1 - sum(math.exp(-mu_lo + j * math.log(mu_lo) - math.lgamma(j + 1)) for j in range(100))
    assert (cdf, sf) == pytest.approx((0.025, 0.025), rel=1e-9)
    lo, hi = garwood([3], [0.0])
    assert np.isnan(lo[0]) and np.isnan(hi[0])


def test_binomial_and_two_sample_tests() -> None:
    assert binom_two_sided(7, 10, 0.5) == pytest.approx(0.34375)
    assert binom_two_sided(5, 10, 0.5) == pytest.approx(1.0)
    assert poisson_two_sample_p(50, 10.0, 50, 10.0) == pytest.approx(1.0)
    assert poisson_two_sample_p(100, 10.0, 50, 10.0) < 1e-4


def test_tv_distance_pads_supports() -> None:
    assert tv_distance([0.5, 0.5], [0.5, 0.25, 0.25]) == pytest.approx(0.25)
    assert tv_distance([1.0], [1.0]) == 0.0


def test_xcorr_matches_direct_computation() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=500)
    y = np.roll(x, 3) + 0.5 * rng.normal(size=500)
    lags, rho = xcorr(x, y, 5)
    xm, ym = x - x.mean(), y - y.mean()
    denom = math.sqrt((xm @ xm) * (ym @ ym))
    for lag, r in zip(lags, rho, strict=True):
        direct = (xm[: 500 - lag] @ ym[lag:] if lag >= 0 else xm[-lag:] @ ym[: 500 + lag])
        assert r == pytest.approx(direct / denom, abs=1e-12)
    assert lags[np.argmax(rho)] == 3


def test_hayashi_yoshida_brute_force() -> None:
    rng = np.random.default_rng(1)
    tx = np.sort(rng.choice(1000, 40, replace=False)).astype(np.int64)
    ty = np.sort(rng.choice(1000, 55, replace=False)).astype(np.int64)
    px = np.cumsum(rng.normal(size=40))
    py = np.cumsum(rng.normal(size=55))
    for theta in (-37, 0, 12, 150):
        total = 0.0
        for k in range(1, 40):
            for m in range(1, 55):
                a, b = tx[k - 1], tx[k]
                c, d = ty[m - 1] - theta, ty[m] - theta
                if a < d and c < b:
                    total += (px[k] - px[k - 1]) * (py[m] - py[m - 1])
        norm = math.sqrt(np.sum(np.diff(px) ** 2) * np.sum(np.diff(py) ** 2))
        got = hayashi_yoshida(tx, px, ty, py, [theta])[0]
        assert got == pytest.approx(total / norm, abs=1e-12)


def _lagged_paths(lag_ms: int, seed: int = 3) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    n_ms = 600_000
    w = np.cumsum(rng.normal(0, 1e-5, n_ms))
    ta = np.sort(rng.choice(np.arange(lag_ms, n_ms), 30_000, replace=False)).astype(np.int64)
    tb = np.sort(rng.choice(np.arange(lag_ms, n_ms), 20_000, replace=False)).astype(np.int64)
    return ta, w[ta], tb, w[tb - lag_ms]  # b shows a's price lag_ms later


def test_hy_finds_the_lead() -> None:
    ta, pa, tb, pb = _lagged_paths(120)
    ms = 1_000_000
    res = hy_leadlag(ta * ms, pa, tb * ms, pb)
    assert res.theta_ms is not None
    assert abs(res.theta_ms - 120) <= 3
    assert res.corr_max is not None and res.corr_max > 0.8
    res = hy_leadlag(tb * ms, pb, ta * ms, pa)
    assert res.theta_ms is not None and abs(res.theta_ms + 120) <= 3


def test_grid_cross_correlation_finds_the_lead() -> None:
    ta, pa, tb, pb = _lagged_paths(50)
    grid = np.arange(1000, 600_000, 10)
    ga = pa[np.searchsorted(ta, grid, side="right") - 1]
    gb = pb[np.searchsorted(tb, grid, side="right") - 1]
    res = grid_leadlag(ga, gb, 10.0)
    assert res.argmax_lag_ms is not None and 40 <= res.argmax_lag_ms <= 70
    assert res.asymmetry is not None and res.asymmetry > 1


def test_tick_inference() -> None:
    assert infer_step([18.43, 18.41, 18.40]) == 0.01
    assert infer_step([96649.8, 96650.1]) == 0.1
    assert infer_step([100.0, 250.0, 350.0]) == 50.0
    assert infer_step([0.00123457, 2.0]) == 1e-8
    assert infer_step([]) is None
