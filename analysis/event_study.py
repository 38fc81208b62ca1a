"""The lead-lag event study: when venue i's mid moves, how soon does venue j's move the same way?

For every mid change of venue i at time t (direction s = the sign of the change), the response
time is Δ = t_j − t, where t_j is the first change of j's mid in direction s at or after t. The
study reports, per ordered pair (i → j), the probability that Δ ≤ τ for τ in 10, 50, 100 and
500 ms (:data:`TAUS_MS`), against an **unconditional baseline**: the same probability from
random times (uniform over the pair's common span, as many as there are events, at least
:data:`MIN_BASELINE`, seeded) each paired with the sign of a randomly drawn event of i. A lift
(conditional / baseline) well above 1 at small τ says that j follows i; for a pair where
nothing connects the venues both are the same. ``lag_ms`` is the most common response time (1 ms
bins, among responses within the largest τ; a deterministic lag shows there) and ``median_ms``
the median response time.

Events too close to the end of j's data to see a whole window (t > last change of j − the
largest τ) are left out, so a quiet end does not read as "no response". The study runs on any
timeline: receipt time ``ts_local``, and clock-corrected exchange time ``ts_exchange`` + the
venue's offset (:mod:`analysis.clock_offsets`); the spread report runs both, since different
network latencies shift the apparent lead by their difference.

numpy on the mid-change times and signs; :func:`mid_changes` extracts them from quotes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
import polars as pl

from core.codec import MS_NS

TAUS_MS: Final = (10.0, 50.0, 100.0, 500.0)
MIN_BASELINE: Final = 2000
#: the τ grid of the pictures (ms)
CURVE_MS: Final = np.unique(np.round(np.logspace(0, np.log10(1000), 61), 1))


@dataclass
class Changes:
    """One venue's mid changes on one timeline: times (ns, increasing) and signs (±1)."""

    t: npt.NDArray[np.int64]
    sign: npt.NDArray[np.int8]

    @property
    def up(self) -> npt.NDArray[np.int64]:
        return self.t[self.sign > 0]

    @property
    def down(self) -> npt.NDArray[np.int64]:
        return self.t[self.sign < 0]


def mid_changes(quotes: pl.DataFrame) -> Changes:
    """Mid changes of one venue's quotes (``ts``, ``bid_px``, ``ask_px``, sorted by ``ts``):
    rows whose mid differs from the previous quote's (size-only updates and one-sided books
    are not moves)."""
    q = (quotes.select("ts", ((pl.col("bid_px") + pl.col("ask_px")) / 2).alias("mid"))
         .drop_nulls("mid")
         .with_columns(pl.col("mid").diff().alias("d"))
         .filter(pl.col("d").is_not_null() & (pl.col("d") != 0)))
    return Changes(q["ts"].to_numpy().astype(np.int64),
                   np.sign(q["d"].to_numpy()).astype(np.int8))


def response_times(t: npt.NDArray[np.int64], sign: npt.NDArray[np.int8],
                   follower: Changes) -> npt.NDArray[np.float64]:
    """For each (t, sign): ns until the follower's first change in that direction at or after t
    (inf when none)."""
    out = np.full(t.size, np.inf)
    for s, times in ((1, follower.up), (-1, follower.down)):
        mine = sign == s
        if not mine.any() or times.size == 0:
            continue
        k = np.searchsorted(times, t[mine], side="left")
        ok = k < times.size
        d = np.full(k.size, np.inf)
        d[ok] = (times[k[ok]] - t[mine][ok]).astype(np.float64)
        out[mine] = d
    return out


@dataclass
class PairStudy:
    leader: str
    follower: str
    events: int
    p: dict[float, float]  # τ ms -> P(Δ ≤ τ | a move of the leader)
    base: dict[float, float]  # τ ms -> P(Δ ≤ τ | a random time)
    lag_ms: float | None
    median_ms: float | None
    curve: npt.NDArray[np.float64]  # P(Δ ≤ τ) on CURVE_MS
    base_curve: npt.NDArray[np.float64]

    def row(self, clock: str) -> dict[str, object]:
        out: dict[str, object] = {"clock": clock, "leader": self.leader,
                                  "follower": self.follower, "events": self.events}
        for tau in TAUS_MS:
            out[f"p_{tau:g}ms"] = self.p.get(tau)
            out[f"base_{tau:g}ms"] = self.base.get(tau)
            b = self.base.get(tau)
            out[f"lift_{tau:g}ms"] = (self.p[tau] / b) if b else None
        out["lag_ms"] = self.lag_ms
        out["median_ms"] = self.median_ms
        return out


def study(leader: str, follower: str, a: Changes, b: Changes, *, seed: int = 0,
          taus_ms: Sequence[float] = TAUS_MS) -> PairStudy:
    """The event study of ``a``'s moves (venue ``leader``) answered by ``b``'s."""
    horizon = int(max(taus_ms) * MS_NS)
    empty = PairStudy(leader, follower, 0, {}, {}, None, None,
                      np.full(CURVE_MS.size, np.nan), np.full(CURVE_MS.size, np.nan))
    if a.t.size == 0 or b.t.size == 0:
        return empty
    t0 = max(int(a.t[0]), int(b.t[0]))
    t1 = int(b.t[-1]) - horizon
    keep = (a.t >= t0) & (a.t <= t1)
    if not keep.any() or t1 <= t0:
        return empty
    t, sign = a.t[keep], a.sign[keep]
    delta = response_times(t, sign, b)
    rng = np.random.default_rng(seed)
    n_base = max(MIN_BASELINE, t.size)
    u = np.sort(rng.integers(t0, t1, n_base, endpoint=True))
    base_delta = response_times(u, sign[rng.integers(0, sign.size, n_base)], b)
    ms = delta / MS_NS
    base_ms = base_delta / MS_NS
    responded = ms[ms <= max(taus_ms)]
    lag = None
    if responded.size:
        counts = np.bincount(np.floor(responded).astype(np.int64))
        lag = float(np.argmax(counts))
    finite = ms[np.isfinite(ms)]
    return PairStudy(
        leader, follower, int(t.size),
        {tau: float(np.mean(ms <= tau)) for tau in taus_ms},
        {tau: float(np.mean(base_ms <= tau)) for tau in taus_ms},
        lag, float(np.median(finite)) if finite.size else None,
        np.array([np.mean(ms <= x) for x in CURVE_MS]),
        np.array([np.mean(base_ms <= x) for x in CURVE_MS]))


def study_all(changes: dict[str, Changes], seed: int = 0) -> list[PairStudy]:
    """Every ordered pair of venues (leader first, in name order)."""
    names = sorted(changes)
    return [study(i, j, changes[i], changes[j], seed=seed)
            for i in names for j in names if i != j]


def table(studies: dict[str, list[PairStudy]]) -> pl.DataFrame:
    """One row per clock and ordered pair."""
    rows = [s.row(clock) for clock, items in studies.items() for s in items]
    return pl.DataFrame(rows) if rows else pl.DataFrame()


__all__ = ["CURVE_MS", "TAUS_MS", "Changes", "PairStudy", "mid_changes", "response_times",
           "study", "study_all", "table"]
