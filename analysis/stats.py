"""Small statistical tools the analyses share, in numpy and the standard library only.

* regularized incomplete gamma P(a, x) and its inverse (series / Lentz continued fraction, then a
  safeguarded Newton solve), giving chi-square quantiles and survival probabilities;
* exact Poisson (Garwood) confidence intervals for a rate N / T:
  [χ²_{α/2}(2N) / (2T), χ²_{1−α/2}(2N + 2) / (2T)], using χ²_p(2k) / 2 = Gamma(k, 1) quantile;
* an exact two-sided binomial test (regularized incomplete beta), for Poisson two-sample tests;
* total-variation distance;
* cross-correlation of two regular-grid series by FFT;
* the Hayashi–Yoshida cross-covariance of two asynchronously observed log-price paths with one of
  them shifted by θ (Hoffmann, Rosenbaum & Yoshida 2013), whose argmax over θ estimates the
  lead-lag.

Pure functions on numbers and arrays: no I/O, no polars, no plotting.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

_EPS = 1e-15
_MAX_ITER = 500


# -- incomplete gamma ---------------------------------------------------------------------------


def _gamma_series(a: float, x: float) -> float:
    """P(a, x) by its power series (good for x < a + 1)."""
    term = 1.0 / a
    total = term
    ap = a
    for _ in range(_MAX_ITER):
        ap += 1.0
        term *= x / ap
        total += term
        if abs(term) < abs(total) * _EPS:
            break
    return total * math.exp(-x + a * math.log(x) - math.lgamma(a))


def _gamma_cf(a: float, x: float) -> float:
    """Q(a, x) by Lentz's continued fraction (good for x >= a + 1)."""
    tiny = 1e-300
    b = x + 1.0 - a
    c = 1.0 / tiny
    d = 1.0 / b
    h = d
    for i in range(1, _MAX_ITER):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < _EPS:
            break
    return math.exp(-x + a * math.log(x) - math.lgamma(a)) * h


def gammainc(a: float, x: float) -> float:
    """Regularized lower incomplete gamma P(a, x), a > 0."""
    if a <= 0:
        raise ValueError("a must be positive")
    if x <= 0:
        return 0.0
    if x < a + 1.0:
        return _gamma_series(a, x)
    return 1.0 - _gamma_cf(a, x)


def gammaincc(a: float, x: float) -> float:
    """Regularized upper incomplete gamma Q(a, x) = 1 − P(a, x), accurate in the tail."""
    if a <= 0:
        raise ValueError("a must be positive")
    if x <= 0:
        return 1.0
    if x < a + 1.0:
        return 1.0 - _gamma_series(a, x)
    return _gamma_cf(a, x)


def gammaincinv(a: float, p: float) -> float:
    """x with P(a, x) = p (0 < p < 1): Wilson–Hilferty start, Newton steps kept inside a
    bracket that bisection shrinks whenever Newton would leave it."""
    if not 0.0 < p < 1.0:
        if p == 0.0:
            return 0.0
        if p == 1.0:
            return math.inf
        raise ValueError("p must be in [0, 1]")
    z = NormalDist().inv_cdf(p)
    if a > 1.0:
        x = a * (1.0 - 1.0 / (9.0 * a) + z / (3.0 * math.sqrt(a))) ** 3
    else:
        x = (p * math.gamma(a + 1.0)) ** (1.0 / a)
    if not x > 0:
        x = 1e-8
    lo, hi = 0.0, math.inf
    lga = math.lgamma(a)
    for _ in range(200):
        f = gammainc(a, x) - p
        if f > 0:
            hi = min(hi, x)
        else:
            lo = max(lo, x)
        if abs(f) < 1e-14:
            break
        dens = math.exp((a - 1.0) * math.log(x) - x - lga)
        step = f / dens if dens > 0 else math.inf
        new = x - step
        if not lo < new < hi or not math.isfinite(new):
            new = (lo + hi) / 2 if math.isfinite(hi) else max(2 * x, x + 1.0)
        if abs(new - x) <= 1e-14 * max(1.0, x):
            x = new
            break
        x = new
    return x


def chi2_ppf(q: float, df: float) -> float:
    """Quantile of the chi-square distribution."""
    return 2.0 * gammaincinv(df / 2.0, q)


def chi2_sf(x: float, df: float) -> float:
    """Survival function P(χ²(df) > x)."""
    return gammaincc(df / 2.0, x / 2.0)


def norm_ppf(q: float) -> float:
    return NormalDist().inv_cdf(q)


# -- Poisson rates --------------------------------------------------------------------------------


def garwood(events: npt.ArrayLike, exposure: npt.ArrayLike,
            level: float = 0.95) -> tuple[FloatArray, FloatArray]:
    """Exact Poisson confidence interval of the rate events / exposure, element-wise.

    The lower bound is 0 when there are no events; cells with zero exposure give NaN.
    """
    n = np.atleast_1d(np.asarray(events, dtype=np.float64))
    t = np.atleast_1d(np.asarray(exposure, dtype=np.float64))
    n, t = np.broadcast_arrays(n, t)
    alpha = 1.0 - level
    lo = np.full(n.shape, np.nan)
    hi = np.full(n.shape, np.nan)
    for idx in np.ndindex(n.shape):
        k, tt = n[idx], t[idx]
        if not tt > 0 or not np.isfinite(k):
            continue
        lo[idx] = 0.0 if k == 0 else gammaincinv(k, alpha / 2) / tt
        hi[idx] = gammaincinv(k + 1.0, 1.0 - alpha / 2) / tt
    return lo, hi


def poisson_z(events: npt.ArrayLike, expected: npt.ArrayLike) -> FloatArray:
    """z = (N − λT) / √(λT) for observed counts against expected counts λT."""
    n = np.asarray(events, dtype=np.float64)
    mu = np.asarray(expected, dtype=np.float64)
    return np.asarray((n - mu) / np.sqrt(mu), dtype=np.float64)


# -- binomial ------------------------------------------------------------------------------------


def _betacf(a: float, b: float, x: float) -> float:
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = tiny if abs(d) < tiny else d
    d = 1.0 / d
    h = d
    for m in range(1, _MAX_ITER):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = tiny if abs(d) < tiny else d
        c = 1.0 + aa / c
        c = tiny if abs(c) < tiny else c
        d = 1.0 / d
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = tiny if abs(d) < tiny else d
        c = 1.0 + aa / c
        c = tiny if abs(c) < tiny else c
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < _EPS:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    lbt = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
           + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(lbt) * _betacf(a, b, x) / a
    return 1.0 - math.exp(lbt) * _betacf(b, a, 1.0 - x) / b


def binom_cdf(k: int, n: int, p: float) -> float:
    """P(X ≤ k) for X ~ Bin(n, p)."""
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    return betainc(n - k, k + 1, 1.0 - p)


def binom_two_sided(k: int, n: int, p: float) -> float:
    """Two-sided exact binomial p-value (doubled smaller tail, capped at 1)."""
    if n == 0:
        return 1.0
    lower = binom_cdf(k, n, p)
    upper = 1.0 - binom_cdf(k - 1, n, p)
    return min(1.0, 2.0 * min(lower, upper))


def poisson_two_sample_p(n1: int, t1: float, n2: int, t2: float) -> float:
    """Test of equal Poisson rates: given n1 + n2, n1 ~ Bin(n1 + n2, t1 / (t1 + t2))."""
    if t1 <= 0 or t2 <= 0:
        return math.nan
    return binom_two_sided(int(n1), int(n1 + n2), t1 / (t1 + t2))


# -- distributions ----------------------------------------------------------------------------


def tv_distance(p: npt.ArrayLike, q: npt.ArrayLike) -> float:
    """Total variation ½ Σ |p − q| between two distributions on the same support (padded)."""
    a = np.asarray(p, dtype=np.float64)
    b = np.asarray(q, dtype=np.float64)
    m = max(a.size, b.size)
    a = np.pad(a, (0, m - a.size))
    b = np.pad(b, (0, m - b.size))
    return float(0.5 * np.abs(a - b).sum())


# -- lead-lag ---------------------------------------------------------------------------------


def xcorr(x: npt.ArrayLike, y: npt.ArrayLike, max_lag: int) -> tuple[IntArray, FloatArray]:
    """ρ(ℓ) = corr(x_t, y_{t+ℓ}) for ℓ = −max_lag..max_lag, by FFT (series are demeaned; the
    normalisation is the full-sample standard deviations, so ρ(0) is the Pearson correlation).

    A peak at ℓ > 0 means x moves first (x leads y).
    """
    a = np.asarray(x, dtype=np.float64)
    b = np.asarray(y, dtype=np.float64)
    if a.size != b.size:
        raise ValueError("x and y must have the same length")
    n = a.size
    lags = np.arange(-max_lag, max_lag + 1, dtype=np.int64)
    a = a - a.mean()
    b = b - b.mean()
    denom = math.sqrt(float(a @ a) * float(b @ b))
    if n == 0 or denom == 0:
        return lags, np.full(lags.size, np.nan)
    nfft = 1 << (2 * n - 1).bit_length()
    c = np.fft.irfft(np.conj(np.fft.rfft(a, nfft)) * np.fft.rfft(b, nfft), nfft)
    out = np.array([c[k] if k >= 0 else c[nfft + k] for k in lags], dtype=np.float64)
    out[np.abs(lags) >= n] = np.nan
    return lags, out / denom


def hayashi_yoshida(tx: npt.ArrayLike, px: npt.ArrayLike, ty: npt.ArrayLike, py: npt.ArrayLike,
                    thetas: npt.ArrayLike) -> FloatArray:
    """Hayashi–Yoshida correlation of X and Y with Y's clock shifted by θ, for each θ.

    ``tx``/``ty`` are increasing observation times (any unit, e.g. ns) and ``px``/``py`` the
    observed log prices. Returns U(θ) / √(Σ ΔX² Σ ΔY²) with
    U(θ) = Σ_{I, J : I ∩ (J − θ) ≠ ∅} ΔX(I) ΔY(J) over the observation intervals I of X and J of Y.
    If Y_t = X_{t−θ0} (X leads by θ0 > 0) the maximum is at θ = θ0.

    For each I = (a, b], the overlapping intervals of the shifted Y form one run of consecutive
    intervals, so their total increment telescopes to a difference of two observed Y levels:
    O(n log m) per θ.
    """
    tx = np.asarray(tx)
    ty = np.asarray(ty)
    px = np.asarray(px, dtype=np.float64)
    py = np.asarray(py, dtype=np.float64)
    th = np.atleast_1d(np.asarray(thetas))
    out = np.full(th.size, np.nan)
    if tx.size < 2 or ty.size < 2:
        return out
    dx = np.diff(px)
    a = tx[:-1]
    b = tx[1:]
    norm = math.sqrt(float(dx @ dx) * float(np.diff(py) @ np.diff(py)))
    if norm == 0:
        return out
    m = ty.size
    for k, theta in enumerate(th):
        lo = np.maximum(np.searchsorted(ty, a + theta, side="right"), 1)  # first J ending > a
        hi = np.minimum(np.searchsorted(ty, b + theta, side="left"), m - 1)  # last J starting < b
        ok = hi >= lo
        lo = np.minimum(lo, m - 1)
        dy = np.where(ok, py[hi] - py[lo - 1], 0.0)
        out[k] = float(dx @ dy) / norm
    return out
