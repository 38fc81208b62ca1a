"""Queue-reactive estimators: intensities as events over exposure, their intervals, the
invariant distribution, and the waiting-time estimators of Huang, Lehalle & Rosenbaum (2015) for
comparison.

Inputs are small tidy frames, so the same code serves real data and the simulators:

* exposure: ``limit`` (|i|), ``side``, ``n`` (state in AES units), ``T`` (seconds in that state);
* events: ``limit``, ``side``, ``type`` (L, C, M or D), ``n`` (state **before** the event);
* intervals (seed-compatible): one row per event or cut with ``limit``, ``side``, ``n``,
  ``type`` (an event type, or ``cut`` for an interval ended by a p_ref change, a live-mask break or
  the end of data) and ``dt`` (seconds since the previous event or cut at that queue). Σ dt per
  state is the exposure, so :func:`exposure_from_intervals` and the pipeline's exposure agree.

λ̂^e(n) = N^e(n) / T(n) is the right-censored maximum-likelihood estimate: in state n a queue
waits an Exp(Λ(n)) time and the event type is drawn independently with probability λ^e/Λ, so
the likelihood of one cell is λ^N e^{−λT}; intervals cut by a p_ref change stay in the
denominator. HLR's 1/mean(Δt) × share is reported in both variants (cuts kept, which equals
N/T; cuts discarded, which is biased up by about r/Λ for cuts at rate r), and the per-type
1/mean(Δt | type), which estimates the total rate Λ(n) and not λ^e(n) (the waiting time does not
depend on the type that ends it).

Pure computation on polars/numpy frames: no I/O, no plotting.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl

from analysis.stats import garwood, poisson_two_sample_p

EVENT_TYPES = ("L", "C", "M", "D")
MIN_EVENTS_PUBLISH = 30  # reporting rule: N ≥ 30 ...
MIN_EXPOSURE_FACTOR = 10.0  # ... and T ≥ 10 × median inter-event time at that limit
MIN_EVENTS_INVARIANT = 20  # contiguous support of π̂: every state with N ≥ 20


def exposure_from_intervals(intervals: pl.DataFrame) -> pl.DataFrame:
    return (intervals.group_by("limit", "side", "n")
            .agg(pl.col("dt").sum().alias("T"))
            .sort("limit", "side", "n"))


def events_from_intervals(intervals: pl.DataFrame) -> pl.DataFrame:
    return intervals.filter(pl.col("type") != "cut").select("limit", "side", "type", "n")


def event_types(events: pl.DataFrame) -> list[str]:
    """L, C, M and their sum D when trades split decreases; L and D otherwise."""
    present = set(events["type"].unique().to_list())
    if present & {"C", "M"}:
        return ["L", "C", "M", "D"]
    return ["L", "D"]


def rate_cells(exposure: pl.DataFrame, events: pl.DataFrame) -> pl.DataFrame:
    """N and T per (limit, side, type, n) for every state with exposure, zeros included.

    D counts C + M (or the undivided decreases when there are no trades).
    """
    types = event_types(events)
    ev = events.with_columns(pl.col("type").replace({"C": "D", "M": "D"}).alias("_d"))
    counts = pl.concat([
        ev.filter(pl.col("type") != "D").group_by("limit", "side", "type", "n").len(),
        ev.filter(pl.col("_d") == "D").group_by("limit", "side", "n").len()
        .with_columns(pl.lit("D").alias("type"))
        .select("limit", "side", "type", "n", "len"),
    ])
    grid = exposure.filter(pl.col("T") > 0).join(
        pl.DataFrame({"type": types}), how="cross")
    return (grid.join(counts, on=["limit", "side", "type", "n"], how="left")
            .with_columns(pl.col("len").fill_null(0).cast(pl.Int64).alias("N"))
            .select("limit", "side", "type", "n", "N", "T")
            .sort("limit", "side", "type", "n"))


def pool_sides(cells: pl.DataFrame) -> pl.DataFrame:
    """Bid and ask pooled (λ_i = λ_−i), with the exact two-sample test of equal rates."""
    wide = (cells.group_by("limit", "type", "n")
            .agg(pl.col("N").sum(), pl.col("T").sum(),
                 pl.col("N").filter(pl.col("side") == "bid").sum().alias("N_bid"),
                 pl.col("T").filter(pl.col("side") == "bid").sum().alias("T_bid"),
                 pl.col("N").filter(pl.col("side") == "ask").sum().alias("N_ask"),
                 pl.col("T").filter(pl.col("side") == "ask").sum().alias("T_ask"))
            .sort("limit", "type", "n"))
    p = [poisson_two_sample_p(nb, tb, na, ta) for nb, tb, na, ta in
         wide.select("N_bid", "T_bid", "N_ask", "T_ask").iter_rows()]
    return wide.with_columns(pl.lit("pooled").alias("side"),
                             pl.Series("symmetry_p", p, dtype=pl.Float64)).select(
        "limit", "side", "type", "n", "N", "T", "symmetry_p")


def intensity_table(cells: pl.DataFrame, level: float = 0.95) -> pl.DataFrame:
    """λ̂ = N / T with Garwood intervals."""
    lo, hi = garwood(cells["N"].to_numpy(), cells["T"].to_numpy(), level)
    return cells.with_columns((pl.col("N") / pl.col("T")).alias("lam"),
                              pl.Series("ci_lo", lo), pl.Series("ci_hi", hi))


def sparse_flags(table: pl.DataFrame, median_dt: dict[int, float]) -> pl.DataFrame:
    """``sparse`` = not (N ≥ 30 and T ≥ 10 × median inter-event time at that limit)."""
    med = pl.DataFrame({"limit": list(median_dt), "_med": list(median_dt.values())},
                       schema={"limit": table.schema["limit"], "_med": pl.Float64})
    return (table.join(med, on="limit", how="left")
            .with_columns((~((pl.col("N") >= MIN_EVENTS_PUBLISH)
                             & (pl.col("T") >= MIN_EXPOSURE_FACTOR * pl.col("_med").fill_null(0))))
                          .alias("sparse"))
            .drop("_med"))


# -- invariant distribution ----------------------------------------------------------------------


def invariant(pooled: pl.DataFrame, limit: int,
              min_events: int = MIN_EVENTS_INVARIANT) -> tuple[np.ndarray, float]:
    """π̂ of one limit from the birth–death formula, on the contiguous run of states where every
    state has at least ``min_events`` events (all types) and at least two states; of several
    runs, the one holding most of the time. Returns π̂ indexed by n from 0 (zero outside the
    run) and the occupancy mass outside the run."""
    cells = pooled.filter(pl.col("limit") == limit)
    lam_l = _rates_by_n(cells, "L")
    lam_d = _rates_by_n(cells, "D")
    n_events = dict(cells.filter(pl.col("type").is_in(["L", "D"])).group_by("n")
                    .agg(pl.col("N").sum()).iter_rows())
    time_in = dict(cells.filter(pl.col("type") == "L").select("n", "T").iter_rows())
    total_t = sum(time_in.values())
    runs: list[tuple[float, int, int]] = []
    start = None
    top = max(n_events, default=-1)
    for n in range(top + 2):
        ok = n_events.get(n, 0) >= min_events
        if ok and start is None:
            start = n
        elif not ok and start is not None:
            runs.append((sum(time_in.get(j, 0.0) for j in range(start, n)), start, n - 1))
            start = None
    runs = [r for r in runs if r[2] > r[1]]  # a single state says nothing about the law
    if not runs or total_t <= 0:
        return np.array([]), 1.0
    mass, lo, hi = max(runs)
    w = np.zeros(hi + 1)
    w[lo] = 1.0
    for n in range(lo + 1, hi + 1):
        down = lam_d.get(n, 0.0)
        w[n] = w[n - 1] * (lam_l.get(n - 1, 0.0) / down if down > 0 else 0.0)
    return w / w.sum(), 1.0 - mass / total_t


def occupancy(exposure: pl.DataFrame, limit: int) -> np.ndarray:
    """Time-weighted distribution of n at one limit, both sides pooled."""
    e = (exposure.filter(pl.col("limit") == limit).group_by("n").agg(pl.col("T").sum())
         .sort("n"))
    if e.height == 0:
        return np.array([])
    out = np.zeros(int(e["n"].max()) + 1)
    out[e["n"].to_numpy()] = e["T"].to_numpy()
    return out / out.sum()


def _rates_by_n(cells: pl.DataFrame, kind: str) -> dict[int, float]:
    c = cells.filter(pl.col("type") == kind)
    return {int(n): (nn / t if t > 0 else 0.0) for n, nn, t in c.select("n", "N", "T").iter_rows()}


# -- the seed's estimators -----------------------------------------------------------------------


def hlr_estimates(intervals: pl.DataFrame) -> pl.DataFrame:
    """HLR's Λ̂(n) = 1 / mean(Δt | n) times the type share, pooled sides, in two variants:
    ``kept`` (cut intervals stay in the mean: equals N / T) and ``discarded`` (cut intervals
    dropped, the literal "restart"); plus ``naive_per_type`` = 1 / mean(Δt | type, n), the seed
    per-type 1/mean(Δt | type, n), which measures Λ(n) whatever the type."""
    ev = intervals.filter(pl.col("type") != "cut")
    kept = intervals.group_by("limit", "n").agg(pl.col("dt").sum().alias("sum_dt_kept"),
                                                pl.len().alias("rows_kept"))
    disc = ev.group_by("limit", "n").agg(pl.col("dt").sum().alias("sum_dt_discarded"),
                                         pl.len().alias("N_all"))
    by_type = ev.group_by("limit", "type", "n").agg(pl.len().alias("N"),
                                                    pl.col("dt").mean().alias("mean_dt_type"))
    out = (by_type.join(disc, on=["limit", "n"]).join(kept, on=["limit", "n"])
           .with_columns(
               (pl.col("N") / pl.col("N_all")).alias("share"),
               (pl.col("N_all") / pl.col("sum_dt_kept")).alias("Lambda_kept"),
               (pl.col("N_all") / pl.col("sum_dt_discarded")).alias("Lambda_discarded"))
           .with_columns(
               (pl.col("Lambda_kept") * pl.col("share")).alias("lam_kept"),
               (pl.col("Lambda_discarded") * pl.col("share")).alias("lam_discarded"),
               (1.0 / pl.col("mean_dt_type")).alias("naive_per_type"))
           .select("limit", "type", "n", "N", "N_all", "share", "sum_dt_kept",
                   "sum_dt_discarded", "Lambda_kept", "Lambda_discarded", "lam_kept",
                   "lam_discarded", "naive_per_type")
           .sort("limit", "type", "n"))
    return out


# -- block bootstrap -----------------------------------------------------------------------------

#: target number of blocks, and the shortest block, of the bootstrap
TARGET_BLOCKS = 50
MIN_BLOCK_S = 60.0
#: cells resampled at once (bounds the memory of the cells x resamples matrices)
BOOT_CHUNK = 512
_HUGE = 1e300


def block_length_s(live_s: float, target: int = TARGET_BLOCKS,
                   min_block_s: float = MIN_BLOCK_S) -> float:
    """Block length of the bootstrap: the live time cut into ``target`` equal blocks, but never
    shorter than ``min_block_s`` (blocks must stay long compared with the time over which order
    flow clusters; a recording shorter than target x min_block_s gets fewer blocks)."""
    return max(min_block_s, live_s / target) if live_s > 0 else min_block_s


def block_bootstrap(exposure_h: pl.DataFrame, events_h: pl.DataFrame, keys: list[str],
                    n_boot: int, rng: np.random.Generator,
                    level: float = 0.95) -> pl.DataFrame:
    """Studentized (bootstrap-t) interval of λ̂ = ΣN / ΣT per cell, resampling whole time blocks.

    ``exposure_h`` has keys minus ``type`` plus ``block`` and ``T``; ``events_h`` has keys plus
    ``block`` and ``N``. With B blocks, the standard error of the ratio is the batch-means one,
    se = √(B/(B−1) Σ_b (N_b − λ̂ T_b)²) / ΣT; each resample of B blocks drawn with replacement
    gives λ* and its own se*, and t* = (λ* − λ̂) / se*. The interval is
    [λ̂ − t*_{1−α/2} se, λ̂ − t*_{α/2} se] (lower end at least 0). Returns keys, ``boot_lo``,
    ``boot_hi``: null with fewer than 2 blocks, no event in the cell, or an unbounded end.
    """
    blocks = sorted(set(exposure_h["block"].unique().to_list())
                    | set(events_h["block"].unique().to_list()))
    state_keys = [k for k in keys if k != "type"]
    cells = (exposure_h.select(state_keys).unique()
             .join(events_h.select("type").unique(), how="cross").select(keys).sort(keys))
    nb = len(blocks)
    if nb < 2 or cells.height == 0 or n_boot < 2:
        return cells.with_columns(pl.lit(None, pl.Float64).alias("boot_lo"),
                                  pl.lit(None, pl.Float64).alias("boot_hi"))
    bidx = {b: j for j, b in enumerate(blocks)}
    cells = cells.with_row_index("_cell")
    state = cells.select([*state_keys, "_cell"])
    t_mat = np.zeros((cells.height, nb))
    n_mat = np.zeros((cells.height, nb))
    te = exposure_h.join(state, on=state_keys)
    np.add.at(t_mat, (te["_cell"].to_numpy(), te["block"].replace_strict(bidx).to_numpy()),
              te["T"].to_numpy())
    ne = events_h.join(cells.select([*keys, "_cell"]), on=keys)
    np.add.at(n_mat, (ne["_cell"].to_numpy(), ne["block"].replace_strict(bidx).to_numpy()),
              ne["N"].to_numpy())
    weights = rng.multinomial(nb, np.full(nb, 1.0 / nb), size=n_boot).T.astype(np.float64)
    lo = np.full(cells.height, np.nan)
    hi = np.full(cells.height, np.nan)
    for a in range(0, cells.height, BOOT_CHUNK):
        b = min(a + BOOT_CHUNK, cells.height)
        lo[a:b], hi[a:b] = _bootstrap_t(n_mat[a:b], t_mat[a:b], weights, level)
    return cells.drop("_cell").with_columns(pl.Series("boot_lo", lo), pl.Series("boot_hi", hi))


def _bootstrap_t(n: np.ndarray, t: np.ndarray, w: np.ndarray,
                 level: float) -> tuple[np.ndarray, np.ndarray]:
    """Bootstrap-t bounds for the cells (rows) of ``n`` and ``t`` (cells x blocks) with the
    resampling counts ``w`` (blocks x resamples)."""
    nb = n.shape[1]
    f = nb / (nb - 1)
    tot_t = t.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        lam = n.sum(axis=1) / tot_t
        se = np.sqrt(f * ((n - lam[:, None] * t) ** 2).sum(axis=1)) / tot_t
        tb = t @ w
        lam_s = (n @ w) / tb
        var_s = f * ((n * n) @ w - 2 * lam_s * ((n * t) @ w) + lam_s**2 * ((t * t) @ w))
        se_s = np.sqrt(np.maximum(var_s, 0.0)) / tb
        stat = (lam_s - lam[:, None]) / se_s
    # 0/0 (NaN): a resample without information, left out; ±inf (a resample without spread):
    # kept as a huge value, and an end that lands on one is unbounded (NaN below)
    stat = np.clip(stat, -_HUGE, _HUGE)
    alpha = (1.0 - level) / 2
    ok = (tot_t > 0) & (n.sum(axis=1) > 0) & (se > 0) & (np.isfinite(stat).sum(axis=1) >= 2)
    q_lo = np.full(n.shape[0], np.nan)
    q_hi = np.full(n.shape[0], np.nan)
    if ok.any():
        s = stat[ok]
        q_lo[ok] = np.nanquantile(s, alpha, axis=1, method="linear")
        q_hi[ok] = np.nanquantile(s, 1 - alpha, axis=1, method="linear")
    q_lo = np.where(np.abs(q_lo) < _HUGE / 2, q_lo, np.nan)
    q_hi = np.where(np.abs(q_hi) < _HUGE / 2, q_hi, np.nan)
    with np.errstate(invalid="ignore"):
        lower = np.maximum(lam - q_hi * se, 0.0)
        upper = lam - q_lo * se
    lower = np.where(np.isfinite(lower), lower, np.nan)
    upper = np.where(np.isfinite(upper), upper, np.nan)
    return lower, upper


def median_interevent(intervals: pl.DataFrame) -> dict[int, float]:
    """Median positive Δt between events at each limit (both sides)."""
    ev = intervals.filter((pl.col("type") != "cut") & (pl.col("dt") > 0))
    med = ev.group_by("limit").agg(pl.col("dt").median())
    return {int(k): float(v) for k, v in med.iter_rows() if v is not None and math.isfinite(v)}
