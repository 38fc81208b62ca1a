"""From one replay (:mod:`analysis.qr_replay`) to the queue-reactive tables.

* AES per limit |i|: mean |Δ| over the L, C, M (or D) events at that limit, both sides pooled,
  frozen over the whole run (or injected), with the median, per-type and per-side means and the
  side asymmetry test (means more than 3 standard errors apart). A limit with fewer than
  :data:`MIN_AES_EVENTS` events gets **no** AES: its queues have no state in AES units and make
  no table cells, and the limit is reported as such;
* queue sizes in AES units, n = ceil(q / AES_|i|) (n = 0 exactly when q = 0), always derived from
  the raw size, so a queue relabelled by a p_ref move is re-quantised with its new limit's AES;
* exposure T(limit, side, n) from the per-message state of the 2K queues (interval to the next
  message, live intervals only) and counts by pre-event state, then λ̂ = N / T with Garwood
  intervals, a studentized block-bootstrap interval (:func:`analysis.qr_estimate.block_bootstrap`,
  about 50 blocks of live time), λ̂ again with every AES 2% smaller and 2% larger, side pooling
  and the reporting rule;
* the invariant distribution against time-weighted occupancy and 30-second sampling;
* p_ref series and changes, η = N_continuations / (2 N_alternations), the 10-minute realised
  volatility of p_ref and of the mid price, the Model III move statistics θ̂ and θ̂^reinit
  (:mod:`analysis.qr_moves`), and the data diagnostics, including the applicability warnings
  (:func:`applicability`).

Computation only; the command-line script writes the files.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import polars as pl

from analysis.qr_estimate import (
    MIN_EVENTS_PUBLISH,
    MIN_EXPOSURE_FACTOR,
    block_bootstrap,
    block_length_s,
    hlr_estimates,
    intensity_table,
    invariant,
    median_interevent,
    pool_sides,
    rate_cells,
    sparse_flags,
)
from analysis.qr_moves import move_stats
from analysis.qr_replay import ReplayResult
from analysis.stats import tv_distance
from core.codec import MS_NS, S_NS

TYPE_NAMES: Final = ("L", "C", "M", "D")
SAMPLE_EVERY_NS: Final = 30 * S_NS
RV_WINDOW_NS: Final = 600 * S_NS
TS: Final = pl.Datetime("ns", "UTC")
#: a limit needs this many events for an AES (and so for any table cell)
MIN_AES_EVENTS: Final = 30
#: the AES perturbation reported beside λ̂
AES_PERTURBATION: Final = 0.02
#: applicability: warn below this share of time with a one-tick spread ...
MIN_SPREAD_ONE_SHARE: Final = 0.5
#: ... or above this share of time with an empty best queue
MAX_EMPTY_BEST_SHARE: Final = 0.5


@dataclass
class QRTables:
    aes: dict[str, Any]
    events: pl.DataFrame
    intervals: pl.DataFrame
    exposure: pl.DataFrame
    intensities: pl.DataFrame
    invariant: pl.DataFrame
    pref: pl.DataFrame
    pref_changes: pl.DataFrame
    book_short: pl.DataFrame
    hlr: pl.DataFrame
    diagnostics: dict[str, Any] = field(default_factory=dict)


def level_of(col: npt.NDArray[np.int64], k: int) -> npt.NDArray[np.int64]:
    return np.where(col < k, col - k, col - k + 1)


def _i64(values: list[int]) -> npt.NDArray[np.int64]:
    return np.asarray(values, dtype=np.int64)


# -- events and AES ------------------------------------------------------------------------------


def events_frame(res: ReplayResult, lot: float) -> pl.DataFrame:
    """Raw events: times, signed level, side, type, sizes in lots and base units, Δt."""
    ev, msgs = res.events, res.messages
    msg = _i64(ev.msg)
    lvl = level_of(_i64(ev.col), res.k)
    pre_ref = msgs.ref[np.maximum(msg - 1, 0)] if msg.size else np.zeros(0, np.int64)
    return pl.DataFrame({
        "msg": msg,
        "col": _i64(ev.col),
        "ts": msgs.clock[msg] if msg.size else np.zeros(0, np.int64),
        "ts_local": msgs.order[msg] if msg.size else np.zeros(0, np.int64),
        "i": lvl,
        "limit": np.abs(lvl).astype(np.int32),
        "side": np.where(lvl > 0, "ask", "bid"),
        "type": np.asarray(TYPE_NAMES, dtype=object)[_i64(ev.type)]
        if msg.size else np.zeros(0, dtype=object),
        "size_lots": _i64(ev.size),
        "q_before_lots": _i64(ev.before),
        "q_after_lots": _i64(ev.after),
        "dt_ns": _i64(ev.dt),
        "ref_half": pre_ref,
    }, schema_overrides={"type": pl.String, "side": pl.String}).with_columns(
        (pl.col("size_lots") * lot).alias("size"))


def _side_stats(e: pl.DataFrame) -> dict[str, dict[str, Any]]:
    out = {}
    for s in ("bid", "ask"):
        v = e.filter(pl.col("side") == s)["size_lots"].to_numpy().astype(np.float64)
        se = float(v.std(ddof=1) / math.sqrt(v.size)) if v.size > 1 else None
        out[s] = {"mean": float(v.mean()) if v.size else None, "se": se, "events": int(v.size)}
    return out


def aes_stats(events: pl.DataFrame, k: int, injected: dict[int, float] | None = None,
              lot: float = 1.0) -> dict[str, Any]:
    """AES per limit (lots) with its diagnostics; ``injected`` overrides the means. ``mean`` is
    None for a limit with fewer than :data:`MIN_AES_EVENTS` events (status says why)."""
    limits: dict[str, dict[str, Any]] = {}
    for lim in range(1, k + 1):
        e = events.filter(pl.col("limit") == lim)
        sizes = e["size_lots"].to_numpy().astype(np.float64)
        entry: dict[str, Any] = {"events": int(sizes.size), "mean": None, "status": "ok"}
        if sizes.size:
            entry["median"] = float(np.median(sizes))
            entry["by_type"] = {t: float(g["size_lots"].mean())
                                for (t,), g in e.group_by("type") if g.height}
            side_stats = _side_stats(e)
            entry["by_side"] = side_stats
            sb, sa = side_stats["bid"], side_stats["ask"]
            if sb["se"] is not None and sa["se"] is not None:
                diff = abs(float(sb["mean"]) - float(sa["mean"]))
                se = math.hypot(float(sb["se"]), float(sa["se"]))
                entry["side_asymmetry"] = bool(se > 0 and diff > 3 * se)
        if injected is not None and lim in injected:
            entry["mean"] = float(injected[lim])
            entry["status"] = "injected"
        elif sizes.size >= MIN_AES_EVENTS:
            entry["mean"] = float(sizes.mean())
        else:
            entry["status"] = (f"no AES: {sizes.size} events at this limit, "
                               f"{MIN_AES_EVENTS} needed")
        entry["mean_base_units"] = None if entry["mean"] is None else float(entry["mean"]) * lot
        limits[str(lim)] = entry
    return {"unit": "lots", "lot": lot, "injected": injected is not None,
            "min_events": MIN_AES_EVENTS, "limits": limits}


def aes_vector(aes: dict[str, Any], k: int) -> npt.NDArray[np.float64]:
    """AES per column −K..−1, 1..K (NaN for a limit without AES)."""
    lim = aes["limits"]
    per = [math.nan if lim[str(j)]["mean"] is None else float(lim[str(j)]["mean"])
           for j in range(1, k + 1)]
    return np.array([per[-i - 1] for i in range(-k, 0)] + per, dtype=np.float64)


def quantize(q: npt.ArrayLike, aes: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """n = ceil(q / AES); −1 where the AES is unknown (NaN)."""
    qa = np.asarray(q, dtype=np.float64)
    a = np.asarray(aes, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        n = np.ceil(qa / a - 1e-9)
    return np.where(np.isfinite(n), n, -1).astype(np.int64)


def with_states(events: pl.DataFrame, aes_col: npt.NDArray[np.float64],
                tick: float) -> pl.DataFrame:
    col = events["col"].to_numpy()
    return events.with_columns(
        pl.Series("n_before", quantize(events["q_before_lots"].to_numpy(), aes_col[col])),
        pl.Series("n_after", quantize(events["q_after_lots"].to_numpy(), aes_col[col])),
        (pl.col("ref_half") * (tick / 2)).alias("p_ref"))


# -- state, exposure, intervals ------------------------------------------------------------------


def state_matrix(res: ReplayResult) -> npt.NDArray[np.int64]:
    """Raw lots of the 2K queues after every message (forward-filled changes)."""
    n_msgs = res.messages.clock.size
    ncol = 2 * res.k
    out = np.zeros((n_msgs, ncol), dtype=np.int64)
    ch = res.changes
    msg, col, val = _i64(ch.msg), _i64(ch.col), _i64(ch.val)
    rows = np.arange(n_msgs)
    for c in range(ncol):
        sel = col == c
        idx, v = msg[sel], val[sel]
        if idx.size == 0:
            continue
        last = np.append(idx[1:] != idx[:-1], True)  # last change within a message wins
        idx, v = idx[last], v[last]
        pos = np.searchsorted(idx, rows, side="right") - 1
        out[:, c] = np.where(pos >= 0, v[np.maximum(pos, 0)], 0)
    return out


def interval_weights(res: ReplayResult) -> npt.NDArray[np.int64]:
    """Live ns from each message to the next."""
    clock = res.messages.clock
    dt = np.zeros(clock.size, dtype=np.int64)
    dt[:-1] = np.diff(clock)
    return np.where(res.messages.interval_live, dt, 0)


def block_of(clock: npt.ArrayLike, clock0: int, block_ns: int) -> npt.NDArray[np.int64]:
    return (np.asarray(clock, dtype=np.int64) - clock0) // block_ns


def exposure_frames(res: ReplayResult, n_state: npt.NDArray[np.int64], block_ns: int,
                    clock0: int = 0) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Exposure per (limit, side, n) in seconds, and the same per bootstrap block. Queues
    without a state (no AES) are left out."""
    k = res.k
    w = interval_weights(res)
    live = w > 0
    blocks = block_of(res.messages.clock, clock0, block_ns)
    frames = []
    for c in range(2 * k):
        i = c - k if c < k else c - k + 1
        frames.append(pl.DataFrame({
            "limit": np.full(int(live.sum()), abs(i), dtype=np.int32),
            "side": "ask" if i > 0 else "bid",
            "n": n_state[live, c], "block": blocks[live], "T_ns": w[live]}))
    per = pl.concat(frames).filter(pl.col("n") >= 0)
    by_block = (per.group_by("limit", "side", "n", "block").agg(pl.col("T_ns").sum())
                .with_columns((pl.col("T_ns") / S_NS).alias("T")))
    total = (by_block.group_by("limit", "side", "n").agg(pl.col("T_ns").sum())
             .with_columns((pl.col("T_ns") / S_NS).alias("T")).sort("limit", "side", "n"))
    return total, by_block.drop("T_ns")


def intervals_frame(res: ReplayResult, events: pl.DataFrame,
                    aes_col: npt.NDArray[np.float64]) -> pl.DataFrame:
    """Seed-compatible table: every event and cut with its queue, state and Δt (s)."""
    k, cu = res.k, res.cuts
    cut_col = _i64(cu.col)
    cut_lvl = level_of(cut_col, k)
    cut_msg = _i64(cu.msg)
    cuts = pl.DataFrame({
        "ts": res.messages.clock[cut_msg] if cut_msg.size else np.zeros(0, np.int64),
        "i": cut_lvl, "limit": np.abs(cut_lvl).astype(np.int32),
        "side": np.where(cut_lvl > 0, "ask", "bid"),
        "n": quantize(_i64(cu.q), aes_col[cut_col]),
        "type": "cut",
        "dt_ns": _i64(cu.dt),
    }, schema_overrides={"side": pl.String, "type": pl.String})
    ev = events.select("ts", "i", "limit", "side", pl.col("n_before").alias("n"), "type", "dt_ns")
    return (pl.concat([ev, cuts.select(ev.columns)])
            .filter(pl.col("n") >= 0)
            .with_columns((pl.col("dt_ns") / S_NS).alias("dt"))
            .sort("ts", maintain_order=True))


# -- intensities ---------------------------------------------------------------------------------


def _with_d(events: pl.DataFrame) -> pl.DataFrame:
    """C and M events again as D (the tables hold D = C + M beside them)."""
    if set(events["type"].unique().to_list()) & {"C", "M"}:
        return pl.concat([events, events.filter(pl.col("type").is_in(["C", "M"]))
                          .with_columns(pl.lit("D").alias("type"))])
    return events


def intensities(exposure: pl.DataFrame, exposure_b: pl.DataFrame, events: pl.DataFrame,
                intervals: pl.DataFrame, n_boot: int, rng: np.random.Generator,
                block_ns: int, clock0: int = 0) -> pl.DataFrame:
    """λ̂ per side and pooled, with Garwood and bootstrap intervals and the sparse flag."""
    ev = events.filter(pl.col("n_before") >= 0).select(
        "limit", "side", "type", "ts", pl.col("n_before").alias("n"))
    per_side = rate_cells(exposure.select("limit", "side", "n", "T"), ev)
    pooled = pool_sides(per_side)
    table = pl.concat([
        intensity_table(per_side).with_columns(pl.lit(None, pl.Float64).alias("symmetry_p")),
        intensity_table(pooled),
    ], how="diagonal_relaxed")
    ev_b = _with_d(ev.with_columns(pl.Series("block", block_of(ev["ts"], clock0, block_ns))))
    ev_side = ev_b.group_by("limit", "side", "type", "n", "block").agg(pl.len().alias("N"))
    boot_side = block_bootstrap(exposure_b, ev_side, ["limit", "side", "type", "n"], n_boot, rng)
    ev_pool = ev_side.group_by("limit", "type", "n", "block").agg(pl.col("N").sum())
    exp_pool = exposure_b.group_by("limit", "n", "block").agg(pl.col("T").sum())
    boot_pool = block_bootstrap(exp_pool, ev_pool, ["limit", "type", "n"], n_boot, rng) \
        .with_columns(pl.lit("pooled").alias("side"))
    boot = pl.concat([boot_side, boot_pool.select(boot_side.columns)])
    table = table.join(boot, on=["limit", "side", "type", "n"], how="left")
    table = sparse_flags(table, median_interevent(intervals))
    return table.with_columns(
        ((pl.col("boot_hi") - pl.col("boot_lo")) / (pl.col("ci_hi") - pl.col("ci_lo")))
        .alias("boot_width_ratio"))


def perturbed_rates(res: ReplayResult, events: pl.DataFrame, raw: npt.NDArray[np.int64],
                    aes_col: npt.NDArray[np.float64], factor: float) -> pl.DataFrame:
    """λ̂ per (limit, side, type, n), per side and pooled, with every AES multiplied by
    ``factor`` (bin edges move; the events and the time are the same)."""
    a = aes_col * factor
    n_state = quantize(raw, a[None, :])
    exposure, _ = exposure_frames(res, n_state, 1 << 62)
    n_ev = quantize(events["q_before_lots"].to_numpy(), a[events["col"].to_numpy()])
    ev = events.with_columns(pl.Series("n", n_ev)).filter(pl.col("n") >= 0).select(
        "limit", "side", "type", "n")
    per_side = rate_cells(exposure.select("limit", "side", "n", "T"), ev)
    cells = pl.concat([per_side, pool_sides(per_side).drop("symmetry_p")],
                      how="diagonal_relaxed")
    return cells.select("limit", "side", "type", "n", (pl.col("N") / pl.col("T")).alias("lam"))


def with_aes_perturbation(table: pl.DataFrame, res: ReplayResult, events: pl.DataFrame,
                          raw: npt.NDArray[np.int64], aes_col: npt.NDArray[np.float64]
                          ) -> pl.DataFrame:
    keys = ["limit", "side", "type", "n"]
    for factor, name in ((1 - AES_PERTURBATION, "lam_aes_minus2"),
                         (1 + AES_PERTURBATION, "lam_aes_plus2")):
        alt = perturbed_rates(res, events, raw, aes_col, factor).rename({"lam": name})
        table = table.join(alt, on=keys, how="left")
    return table


# -- invariant distribution ----------------------------------------------------------------------


def invariant_frame(table: pl.DataFrame, exposure: pl.DataFrame, sampled: pl.DataFrame,
                    k: int) -> tuple[pl.DataFrame, dict[str, Any]]:
    pooled = table.filter(pl.col("side") == "pooled")
    frames = []
    diag: dict[str, Any] = {}
    for lim in range(1, k + 1):
        pi_hat, outside = invariant(pooled, lim)
        occ = exposure.filter(pl.col("limit") == lim).group_by("n").agg(pl.col("T").sum())
        smp = sampled.filter(pl.col("limit") == lim).group_by("n").len()
        top = max([pi_hat.size - 1, *occ["n"].to_list(), *smp["n"].to_list(), -1])
        if top < 0:
            continue
        o = np.zeros(top + 1)
        o[occ["n"].to_numpy()] = occ["T"].to_numpy()
        o = o / o.sum() if o.sum() > 0 else o
        sm = np.zeros(top + 1)
        sm[smp["n"].to_numpy()] = smp["len"].to_numpy()
        sm = sm / sm.sum() if sm.sum() > 0 else sm
        ph = np.full(top + 1, np.nan)
        ph[:pi_hat.size] = pi_hat
        if pi_hat.size:
            ph[pi_hat.size:] = 0.0
            ph[:pi_hat.size][pi_hat == 0] = 0.0
        frames.append(pl.DataFrame({"limit": np.full(top + 1, lim, dtype=np.int32),
                                    "n": np.arange(top + 1), "pi_hat": ph, "occupancy": o,
                                    "sampled_30s": sm}))
        diag[str(lim)] = {
            "support_events_min": 20,
            "mass_outside_support": outside,
            "tv_pi_occupancy": tv_distance(pi_hat, o) if pi_hat.size else None,
            "tv_pi_sampled_30s": tv_distance(pi_hat, sm) if pi_hat.size and sm.sum() else None,
            "samples_30s": int(smp["len"].sum()),
        }
    frame = pl.concat(frames) if frames else pl.DataFrame(
        schema={"limit": pl.Int32, "n": pl.Int64, "pi_hat": pl.Float64,
                "occupancy": pl.Float64, "sampled_30s": pl.Float64})
    return frame, diag


def sampled_states(res: ReplayResult, n_state: npt.NDArray[np.int64]) -> pl.DataFrame:
    """n of every queue at each 30-s grid point that falls in a live interval."""
    clock = res.messages.clock
    if clock.size == 0:
        return pl.DataFrame(schema={"limit": pl.Int32, "n": pl.Int64})
    first = clock[0] - clock[0] % SAMPLE_EVERY_NS + SAMPLE_EVERY_NS
    grid = np.arange(first, clock[-1], SAMPLE_EVERY_NS, dtype=np.int64)
    pos = np.searchsorted(clock, grid, side="right") - 1
    ok = (pos >= 0) & res.messages.interval_live[np.maximum(pos, 0)]
    pos = pos[ok]
    k = res.k
    frames = [pl.DataFrame({"limit": np.full(pos.size, abs(c - k if c < k else c - k + 1),
                                             dtype=np.int32), "n": n_state[pos, c]})
              for c in range(2 * k)]
    return pl.concat(frames).filter(pl.col("n") >= 0)


# -- reference price -----------------------------------------------------------------------------


def pref_frames(res: ReplayResult, tick: float) -> tuple[pl.DataFrame, pl.DataFrame]:
    msgs, rc = res.messages, res.ref_changes
    prev_ref = np.concatenate([[-2], msgs.ref[:-1]])
    idx = np.flatnonzero(msgs.live & (msgs.ref != prev_ref))
    pref = pl.DataFrame({"ts": msgs.clock[idx], "ts_local": msgs.order[idx],
                         "ref_half": msgs.ref[idx]}).with_columns(
        (pl.col("ref_half") / 2).alias("ref_ticks"),
        (pl.col("ref_half") * (tick / 2)).alias("p_ref"))
    pm = _i64(rc.msg)
    changes = pl.DataFrame({
        "ts": msgs.clock[pm] if pm.size else np.zeros(0, np.int64),
        "ts_local": msgs.order[pm] if pm.size else np.zeros(0, np.int64),
        "direction": _i64(rc.dir),
        "trigger": pl.Series(rc.trigger, dtype=pl.String),
        "spread_before": _i64(rc.spread_before),
        "spread_after": _i64(rc.spread_after),
    })
    return (pref.with_columns(pl.col("ts").cast(TS), pl.col("ts_local").cast(TS)),
            changes.with_columns(pl.col("ts").cast(TS), pl.col("ts_local").cast(TS)))


def mean_reversion(directions: npt.ArrayLike) -> dict[str, float | int | None]:
    d = np.asarray(directions, dtype=np.int64)
    if d.size < 2:
        return {"continuations": 0, "alternations": 0, "eta": None}
    same = int(np.sum(d[1:] == d[:-1]))
    alt = int(d.size - 1 - same)
    return {"continuations": same, "alternations": alt,
            "eta": same / (2 * alt) if alt else None}


def ten_minute_vol(clock: npt.NDArray[np.int64], price: npt.NDArray[np.float64],
                   window_ns: int = RV_WINDOW_NS) -> tuple[int, float | None]:
    """Root mean square of the log changes of ``price`` over consecutive windows (previous-tick
    sampling), in bps: (number of windows, volatility)."""
    if clock.size < 2:
        return 0, None
    grid = np.arange(clock[0], clock[-1] + 1, window_ns)
    if grid.size < 2:
        return 0, None
    pos = np.searchsorted(clock, grid, side="right") - 1
    r = np.diff(np.log(price[pos]))
    return int(r.size), float(1e4 * math.sqrt(np.mean(r**2)))


def realized_vol(res: ReplayResult) -> dict[str, float | int | None]:
    """10-minute realised volatility of p_ref and of the mid price (bps), live messages only."""
    msgs = res.messages
    live = msgs.live
    windows, rv_ref = ten_minute_vol(msgs.clock[live], msgs.ref[live].astype(np.float64))
    _, rv_mid = ten_minute_vol(msgs.clock[live], msgs.mid2[live].astype(np.float64))
    return {"windows": windows, "rv_10min_bps": rv_ref, "rv_mid_10min_bps": rv_mid}


def book_short_frame(res: ReplayResult, raw: npt.NDArray[np.int64],
                     n_state: npt.NDArray[np.int64], lot: float, tick: float) -> pl.DataFrame:
    k, msgs = res.k, res.messages
    live = np.flatnonzero(msgs.live)
    names = [f"m{-i}" if i < 0 else f"p{i}" for i in [*range(-k, 0), *range(1, k + 1)]]
    cols: dict[str, object] = {
        "ts": pl.Series(msgs.clock[live]).cast(TS),
        "ts_local": pl.Series(msgs.order[live]).cast(TS),
        "ref_half": msgs.ref[live],
        "p_ref": msgs.ref[live] * (tick / 2),
    }
    for c, name in enumerate(names):
        cols[f"q_{name}"] = raw[live, c] * lot
    for c, name in enumerate(names):
        cols[f"n_{name}"] = pl.Series(n_state[live, c], dtype=pl.Int32).replace(-1, None)
    return pl.DataFrame(cols)


# -- diagnostics ---------------------------------------------------------------------------------


def _quantiles_ms(values_ns: npt.ArrayLike) -> dict[str, float] | None:
    v = np.asarray(values_ns, dtype=np.float64) / MS_NS
    if v.size == 0:
        return None
    q = np.quantile(v, [0.01, 0.05, 0.5, 0.95, 0.99])
    return dict(zip(["p1", "p5", "p50", "p95", "p99"], q.tolist(), strict=True))


def trade_match_diagnostics(match: dict[str, object]) -> dict[str, Any]:
    m = dict(match)
    offs = m.pop("offsets_best_ns", [])
    lags = np.asarray(m.pop("lags_ns", []), dtype=np.float64)
    m["trade_minus_decrease_ms_best"] = _quantiles_ms(offs)  # type: ignore[arg-type]
    m["trade_minus_nearest_decrease_ms"] = _quantiles_ms(lags)
    if lags.size:
        pre, post = float(m["window_pre_ms"]) * MS_NS, float(m["window_post_ms"]) * MS_NS  # type: ignore[arg-type]
        m["lags_inside_window_share"] = float(np.mean((lags >= -pre) & (lags <= post)))
    return m


def diagnostics(res: ReplayResult, raw: npt.NDArray[np.int64], events: pl.DataFrame,
                live_s: float) -> dict[str, Any]:
    """Spread, empty best queues, event rates, counts and trade-match diagnostics."""
    w = interval_weights(res).astype(np.float64)
    total = w.sum()
    spread = res.messages.spread
    out: dict[str, Any] = {"counts": res.counts, "live_seconds": live_s}
    if total > 0:
        vals, inv = np.unique(spread[w > 0], return_inverse=True)
        dist = np.bincount(inv, weights=w[w > 0]) / total
        out["spread_ticks_time_share"] = {str(int(v)): float(p) for v, p in zip(vals, dist,
                                                                               strict=True)}
        out["spread_1_share"] = float(dist[vals == 1].sum())
        k = res.k
        out["q_best_empty_share"] = {"bid": float(w[raw[:, k - 1] == 0].sum() / total),
                                     "ask": float(w[raw[:, k] == 0].sum() / total)}
    hours = live_s / 3600
    per = events.group_by("limit").len().sort("limit")
    out["events_per_hour"] = {str(lim): (n / hours if hours > 0 else None)
                              for lim, n in per.iter_rows()}
    gaps = np.diff(res.messages.clock) / 1e6
    if gaps.size:
        q = np.quantile(gaps, [0.01, 0.1, 0.5, 0.9, 0.99])
        near50 = float(np.mean(np.abs(gaps - 50 * np.round(gaps / 50)) < 1.0))
        out["inter_message_ms"] = {"p1": q[0], "p10": q[1], "p50": q[2], "p90": q[3],
                                   "p99": q[4], "share_within_1ms_of_50ms_multiple": near50}
    if res.match:
        out["trade_match"] = trade_match_diagnostics(res.match)
    return out


def limit_status(aes: dict[str, Any], table: pl.DataFrame, k: int) -> dict[str, Any]:
    """Per limit: events, AES status and how many pooled cells meet the reporting rule."""
    pooled = table.filter(pl.col("side") == "pooled")
    out = {}
    for lim in range(1, k + 1):
        a = aes["limits"][str(lim)]
        published = pooled.filter(pl.col("limit") == lim, ~pl.col("sparse")).height
        status = a["status"] if a["mean"] is None else (
            "ok" if published else "no cell meets the reporting rule "
            f"(N ≥ {MIN_EVENTS_PUBLISH} and T ≥ {MIN_EXPOSURE_FACTOR:g} × the median time "
            "between events)")
        out[str(lim)] = {"events": a["events"], "aes_lots": a["mean"],
                         "published_cells": published, "status": status}
    return out


def applicability(diag: dict[str, Any]) -> list[str]:
    """Warnings when the book is not the large-tick book the queue-reactive model describes,
    each saying what to do instead."""
    out = []
    one = diag.get("spread_1_share")
    empty = diag.get("q_best_empty_share") or {}
    worst = max(empty.values(), default=0.0)
    if one is not None and one < MIN_SPREAD_ONE_SHARE:
        out.append(f"the spread is one tick only {100 * one:.1f}% of the live time (the "
                   "queue-reactive model assumes a large-tick asset whose spread is one tick "
                   "most of the time)")
    if worst > MAX_EMPTY_BEST_SHARE:
        out.append(f"the best queues Q±1 are empty {100 * empty.get('bid', 0.0):.1f}% (bid) "
                   f"and {100 * empty.get('ask', 0.0):.1f}% (ask) of the live time, so most "
                   "events happen at prices the model does not see as best queues")
    if out:
        out.append("the λ(n) tables below still describe the queues at p_ref ± (i − ½) ticks, "
                   "but the model's dynamics do not apply: for this book aggregate the levels "
                   "into price buckets of several ticks before estimating, or condition the "
                   "intensities on the spread and the best-level imbalance instead of on single "
                   "queue sizes")
    by_status: dict[str, list[str]] = {}
    for lim, st in diag.get("limits", {}).items():
        if st["status"] not in ("ok", "injected"):
            by_status.setdefault(st["status"], []).append(lim)
    for status, lims in by_status.items():
        out.append(f"limit{'s' if len(lims) > 1 else ''} {', '.join(lims)}: {status}")
    return out


def build(res: ReplayResult, *, lot: float, tick: float, aes_injected: dict[int, float] | None,
          n_boot: int = 999, seed: int = 0, block_s: float | None = None) -> QRTables:
    """All tables of one run."""
    k = res.k
    events = events_frame(res, lot)
    aes = aes_stats(events, k, aes_injected, lot)
    aes_col = aes_vector(aes, k)
    events = with_states(events, aes_col, tick)
    raw = state_matrix(res)
    n_state = quantize(raw, aes_col[None, :])
    weights = interval_weights(res)
    live_s = float(weights.sum() / S_NS)
    block_s = block_length_s(live_s) if block_s is None else block_s
    block_ns = max(1, round(block_s * S_NS))
    clock0 = int(res.messages.clock[0]) if res.messages.clock.size else 0
    exposure, exposure_b = exposure_frames(res, n_state, block_ns, clock0)
    intervals = intervals_frame(res, events, aes_col)
    rng = np.random.default_rng(seed)
    table = intensities(exposure, exposure_b, events, intervals, n_boot, rng, block_ns, clock0)
    table = with_aes_perturbation(table, res, events, raw, aes_col).select(
        "limit", "side", "type", "n", "N", "T", "lam", "ci_lo", "ci_hi", "boot_lo", "boot_hi",
        "boot_width_ratio", "lam_aes_minus2", "lam_aes_plus2", "sparse", "symmetry_p").sort(
        "limit", "side", "type", "n")
    sampled = sampled_states(res, n_state)
    inv, inv_diag = invariant_frame(table, exposure, sampled, k)
    pref, changes = pref_frames(res, tick)
    hlr = hlr_estimates(intervals.select("limit", "side", "n", "type", "dt"))
    diag = diagnostics(res, raw, events, live_s)
    diag["invariant"] = inv_diag
    diag["pref"] = {**mean_reversion(changes["direction"].to_numpy()), **realized_vol(res),
                    "triggers": dict(changes.group_by("trigger").len().iter_rows())}
    diag["model3"] = move_stats(res, raw).as_dict()
    diag["aes_base_units"] = {lim: v["mean_base_units"] for lim, v in aes["limits"].items()}
    diag["bootstrap"] = {"variant": "studentized block bootstrap", "block_s": block_s,
                         "blocks": int(exposure_b["block"].n_unique()) if exposure_b.height
                         else 0, "resamples": n_boot}
    n_sym = table.filter((pl.col("side") == "pooled") & (pl.col("symmetry_p") < 0.001)
                         & ~pl.col("sparse")).height
    diag["symmetry_cells_p_below_0.001"] = n_sym
    diag["limits"] = limit_status(aes, table, k)
    diag["warnings"] = applicability(diag)
    events_out = events.with_columns(pl.col("ts").cast(TS), pl.col("ts_local").cast(TS)).select(
        "ts", "ts_local", pl.col("i").alias("limit"), "side", "type", "size", "size_lots",
        pl.col("n_before").replace(-1, None), pl.col("n_after").replace(-1, None),
        "q_before_lots", "q_after_lots", "p_ref", "ref_half", (pl.col("dt_ns") / S_NS).alias("dt"))
    return QRTables(
        aes=aes, events=events_out,
        intervals=intervals.with_columns(pl.col("ts").cast(TS)).select(
            "ts", pl.col("i").alias("queue"), "limit", "side", "n", "type", "dt"),
        exposure=exposure.select("limit", "side", "n", "T"), intensities=table, invariant=inv,
        pref=pref, pref_changes=changes, book_short=book_short_frame(res, raw, n_state, lot, tick),
        hlr=hlr, diagnostics=diag)
