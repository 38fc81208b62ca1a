"""Lead-lag between two venues' mids.

* Regular grid: the log mid of each venue sampled previous-tick on a grid of ``step`` (10 ms and
  100 ms by default), log returns, and ρ(ℓ) = corr(r_a(t), r_b(t + ℓ)) for |ℓ| ≤ 2 s. A peak at
  ℓ > 0 means a moves first (a leads). Reported: the argmax lag, ρ there, and the asymmetry ratio
  Σ_{ℓ>0} ρ² / Σ_{ℓ<0} ρ² (above 1: a leads). Previous-tick sampling of venues that update at
  different rates attenuates ρ (Epps) and can fake a lag: read it with the next estimator.
* Hayashi–Yoshida: the HY correlation of the two tick-time log-mid paths with b's clock shifted
  by θ, maximised over θ (Hoffmann, Rosenbaum & Yoshida 2013). θ̂ > 0 means a leads by θ̂. The
  search is coarse-to-fine: a 25 ms grid over ±2 s, then 1 ms steps within ±30 ms of the best
  coarse θ.

Builders return LazyFrames; the estimators take the collected numpy arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
import polars as pl

from analysis.stats import hayashi_yoshida, xcorr
from core.codec import MS_NS as MS

MAX_LAG_MS: Final = 2000
COARSE_STEP_MS: Final = 25
FINE_HALF_WIDTH_MS: Final = 30


@dataclass
class GridLeadLag:
    step_ms: float
    lags_ms: npt.NDArray[np.float64]
    rho: npt.NDArray[np.float64]
    argmax_lag_ms: float | None
    rho_max: float | None
    asymmetry: float | None
    points: int


@dataclass
class HYLeadLag:
    thetas_ms: npt.NDArray[np.float64]
    corr: npt.NDArray[np.float64]
    theta_ms: float | None
    corr_max: float | None
    corr_zero: float | None


def mid_ticks(quotes: pl.LazyFrame) -> pl.LazyFrame:
    """Tick-time log mid of one venue (``ts`` ns, ``logmid``)."""
    return quotes.select("ts", ((pl.col("bid_px") + pl.col("ask_px")) / 2).log().alias("logmid"))


def grid_mid(quotes: pl.LazyFrame, t0: int, t1: int, step_ns: int) -> pl.LazyFrame:
    """Previous-tick log mid on the grid t0, t0 + step, ... < t1 (null before the first quote)."""
    grid = pl.LazyFrame().select(pl.int_range(t0, t1, step_ns, dtype=pl.Int64).alias("t")) \
        .set_sorted("t")
    return grid.join_asof(mid_ticks(quotes), left_on="t", right_on="ts", strategy="backward") \
        .select("t", "logmid")


def grid_leadlag(mid_a: npt.ArrayLike, mid_b: npt.ArrayLike, step_ms: float,
                 max_lag_ms: float = MAX_LAG_MS) -> GridLeadLag:
    a = np.asarray(mid_a, dtype=np.float64)
    b = np.asarray(mid_b, dtype=np.float64)
    ok = np.isfinite(a) & np.isfinite(b)
    first = int(np.argmax(ok)) if ok.any() else a.size
    a, b = a[first:], b[first:]
    ra, rb = np.diff(a), np.diff(b)
    max_lag = round(max_lag_ms / step_ms)
    if ra.size < 3 or not np.isfinite(ra).all() or not np.isfinite(rb).all():
        lags = np.arange(-max_lag, max_lag + 1) * step_ms
        return GridLeadLag(step_ms, lags.astype(np.float64), np.full(lags.size, np.nan), None,
                           None, None, int(ra.size))
    lags, rho = xcorr(ra, rb, min(max_lag, ra.size - 1))
    lags_ms = lags.astype(np.float64) * step_ms
    if not np.isfinite(rho).any():
        return GridLeadLag(step_ms, lags_ms, rho, None, None, None, int(ra.size))
    k = int(np.nanargmax(rho))
    pos = np.nansum(rho[lags > 0] ** 2)
    neg = np.nansum(rho[lags < 0] ** 2)
    return GridLeadLag(step_ms, lags_ms, rho, float(lags_ms[k]), float(rho[k]),
                       float(pos / neg) if neg > 0 else None, int(ra.size))


def hy_leadlag(ts_a: npt.ArrayLike, mid_a: npt.ArrayLike, ts_b: npt.ArrayLike,
               mid_b: npt.ArrayLike, max_lag_ms: float = MAX_LAG_MS) -> HYLeadLag:
    ta = np.asarray(ts_a, dtype=np.int64)
    tb = np.asarray(ts_b, dtype=np.int64)
    coarse = np.arange(-max_lag_ms, max_lag_ms + COARSE_STEP_MS / 2, COARSE_STEP_MS)
    c_corr = hayashi_yoshida(ta, mid_a, tb, mid_b, (coarse * MS).astype(np.int64))
    if not np.isfinite(c_corr).any():
        return HYLeadLag(coarse, c_corr, None, None, None)
    best = float(coarse[int(np.nanargmax(c_corr))])
    fine = np.arange(best - FINE_HALF_WIDTH_MS, best + FINE_HALF_WIDTH_MS + 0.5, 1.0)
    f_corr = hayashi_yoshida(ta, mid_a, tb, mid_b, (fine * MS).astype(np.int64))
    thetas = np.concatenate([coarse, fine])
    corr = np.concatenate([c_corr, f_corr])
    order = np.argsort(thetas, kind="stable")
    thetas, corr = thetas[order], corr[order]
    k = int(np.nanargmax(corr))
    zero = hayashi_yoshida(ta, mid_a, tb, mid_b, np.array([0], dtype=np.int64))[0]
    return HYLeadLag(thetas, corr, float(thetas[k]), float(corr[k]), float(zero))
