"""From one replay (:mod:`analysis.qr_replay`) to the queue-reactive tables of spec §3.6–§3.7.

* AES per limit |i|: mean |Δ| over the L, C, M (or D) events at that limit, both sides pooled,
  frozen over the whole run (or injected), with the median, per-type and per-side means and the
  side asymmetry test (means more than 3 standard errors apart);
* queue sizes in AES units, n = ceil(q / AES_|i|) (n = 0 exactly when q = 0), always derived from
  the raw size, so a queue relabelled by a p_ref move is re-quantised with its new limit's AES;
* exposure T(limit, side, n) from the per-message state of the 2K queues (interval to the next
  message, live intervals only) and counts by pre-event state, then λ̂ = N / T with Garwood and
  hour-block bootstrap intervals, side pooling and the reporting rule;
* the invariant distribution against time-weighted occupancy and 30-second sampling;
* p_ref series and changes, η = N_continuations / (2 N_alternations), 10-minute realised
  volatility, and the data diagnostics of §3.7.

Computation only; the command-line script writes the files.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from analysis.qr_estimate import (
    block_bootstrap,
    hlr_estimates,
    intensity_table,
    invariant,
    median_interevent,
    pool_sides,
    rate_cells,
    sparse_flags,
)
from analysis.qr_replay import ReplayResult
from analysis.stats import tv_distance

NS = 1_000_000_000
HOUR_NS = 3600 * NS
TYPE_NAMES = ("L", "C", "M", "D")
SAMPLE_EVERY_NS = 30 * NS
RV_WINDOW_NS = 600 * NS
TS = pl.Datetime("ns", "UTC")


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


def events_frame(res: ReplayResult, lot: float) -> pl.DataFrame:
    """Raw events: times, signed level, side, type, sizes in lots and base units, Δt."""
    msg = np.asarray(res.ev_msg, dtype=np.int64)
    col = np.asarray(res.ev_col, dtype=np.int64)
    lvl = level_of(col, res.k)
    pre_ref = res.msg_ref[np.maximum(msg - 1, 0)] if msg.size else np.zeros(0, np.int64)
    return pl.DataFrame({
        "msg": msg,
        "ts": res.msg_clock[msg] if msg.size else np.zeros(0, np.int64),
        "ts_local": res.msg_order[msg] if msg.size else np.zeros(0, np.int64),
        "i": lvl,
        "limit": np.abs(lvl).astype(np.int32),
        "side": np.where(lvl > 0, "ask", "bid"),
        "type": np.asarray(TYPE_NAMES, dtype=object)[np.asarray(res.ev_type, dtype=np.int64)]
        if msg.size else np.zeros(0, dtype=object),
        "size_lots": np.asarray(res.ev_size, dtype=np.int64),
        "q_before_lots": np.asarray(res.ev_before, dtype=np.int64),
        "q_after_lots": np.asarray(res.ev_after, dtype=np.int64),
        "dt_ns": np.asarray(res.ev_dt, dtype=np.int64),
        "ref_half": pre_ref,
    }, schema_overrides={"type": pl.String, "side": pl.String}).with_columns(
        (pl.col("size_lots") * lot).alias("size"))


def aes_stats(events: pl.DataFrame, k: int, injected: dict[int, float] | None = None,
              lot: float = 1.0) -> dict[str, Any]:
    """AES per limit (lots), with the diagnostics of §3.6; ``injected`` overrides the means."""
    out: dict[str, Any] = {"unit": "lots", "lot": lot, "injected": injected is not None,
                              "limits": {}}
    limits: dict[str, dict[str, Any]] = {}
    for lim in range(1, k + 1):
        e = events.filter(pl.col("limit") == lim)
        sizes = e["size_lots"].to_numpy().astype(np.float64)
        entry: dict[str, Any] = {"events": int(sizes.size)}
        if sizes.size:
            entry["mean"] = float(sizes.mean())
            entry["median"] = float(np.median(sizes))
            entry["by_type"] = {t: float(g["size_lots"].mean())
                                for (t,), g in e.group_by("type") if g.height}
            side_stats = {}
            for s in ("bid", "ask"):
                v = e.filter(pl.col("side") == s)["size_lots"].to_numpy().astype(np.float64)
                se = float(v.std(ddof=1) / math.sqrt(v.size)) if v.size > 1 else None
                side_stats[s] = {"mean": float(v.mean()) if v.size else None, "se": se,
                                 "events": int(v.size)}
            entry["by_side"] = side_stats
            sb, sa = side_stats["bid"], side_stats["ask"]
            if sb["se"] is not None and sa["se"] is not None:
                diff = abs(float(sb["mean"]) - float(sa["mean"]))
                se = math.hypot(float(sb["se"]), float(sa["se"]))
                entry["side_asymmetry"] = bool(se > 0 and diff > 3 * se)
        if injected is not None and lim in injected:
            entry["mean"] = float(injected[lim])
        limits[str(lim)] = entry
    means = [float(v["mean"]) for v in limits.values() if "mean" in v]
    fallback = float(np.mean(means)) if means else 1.0
    for v in limits.values():
        if "mean" not in v:
            v["mean"] = fallback
            v["fallback"] = True
        v["mean_base_units"] = float(v["mean"]) * lot
    out["limits"] = limits
    return out


def aes_vector(aes: dict[str, Any], k: int) -> npt.NDArray[np.float64]:
    """AES per column −K..−1, 1..K."""
    lim = aes["limits"]
    per = [float(lim[str(j)]["mean"]) for j in range(1, k + 1)]
    return np.array([per[-i - 1] for i in range(-k, 0)] + per, dtype=np.float64)


def quantize(q: npt.ArrayLike, aes: npt.ArrayLike) -> npt.NDArray[np.int64]:
    qa = np.asarray(q, dtype=np.float64)
    return np.ceil(qa / np.asarray(aes, dtype=np.float64) - 1e-9).astype(np.int64)


def state_matrix(res: ReplayResult) -> npt.NDArray[np.int64]:
    """Raw lots of the 2K queues after every message (forward-filled changes)."""
    n_msgs = res.msg_clock.size
    ncol = 2 * res.k
    out = np.zeros((n_msgs, ncol), dtype=np.int64)
    msg = np.asarray(res.chg_msg, dtype=np.int64)
    col = np.asarray(res.chg_col, dtype=np.int64)
    val = np.asarray(res.chg_val, dtype=np.int64)
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
    dt = np.zeros(res.msg_clock.size, dtype=np.int64)
    dt[:-1] = np.diff(res.msg_clock)
    return np.where(res.interval_live, dt, 0)


def exposure_frames(res: ReplayResult, n_state: npt.NDArray[np.int64]
                    ) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Exposure per (limit, side, n) in seconds, and the same per hour block."""
    k = res.k
    w = interval_weights(res)
    live = w > 0
    blocks = res.msg_clock // HOUR_NS
    frames = []
    for c in range(2 * k):
        i = c - k if c < k else c - k + 1
        frames.append(pl.DataFrame({
            "limit": np.full(int(live.sum()), abs(i), dtype=np.int32),
            "side": "ask" if i > 0 else "bid",
            "n": n_state[live, c], "block": blocks[live], "T_ns": w[live]}))
    per = pl.concat(frames) if frames else pl.DataFrame()
    by_block = (per.group_by("limit", "side", "n", "block").agg(pl.col("T_ns").sum())
                .with_columns((pl.col("T_ns") / NS).alias("T")))
    total = (by_block.group_by("limit", "side", "n").agg(pl.col("T_ns").sum())
             .with_columns((pl.col("T_ns") / NS).alias("T")).sort("limit", "side", "n"))
    return total, by_block.drop("T_ns")


def intervals_frame(res: ReplayResult, events: pl.DataFrame,
                    aes_col: npt.NDArray[np.float64]) -> pl.DataFrame:
    """Seed-compatible table: every event and cut with its queue, state and Δt (s)."""
    k = res.k
    cut_col = np.asarray(res.cut_col, dtype=np.int64)
    cut_lvl = level_of(cut_col, k)
    cut_msg = np.asarray(res.cut_msg, dtype=np.int64)
    cuts = pl.DataFrame({
        "ts": res.msg_clock[cut_msg] if cut_msg.size else np.zeros(0, np.int64),
        "i": cut_lvl, "limit": np.abs(cut_lvl).astype(np.int32),
        "side": np.where(cut_lvl > 0, "ask", "bid"),
        "n": quantize(np.asarray(res.cut_q, dtype=np.int64), aes_col[cut_col]),
        "type": "cut",
        "dt_ns": np.asarray(res.cut_dt, dtype=np.int64),
    }, schema_overrides={"side": pl.String, "type": pl.String})
    ev = events.select("ts", "i", "limit", "side", pl.col("n_before").alias("n"), "type", "dt_ns")
    return (pl.concat([ev, cuts.select(ev.columns)])
            .with_columns((pl.col("dt_ns") / NS).alias("dt"))
            .sort("ts", maintain_order=True))


def intensities(exposure: pl.DataFrame, exposure_h: pl.DataFrame, events: pl.DataFrame,
                intervals: pl.DataFrame, n_boot: int, rng: np.random.Generator
                ) -> pl.DataFrame:
    """λ̂ per side and pooled, with Garwood and bootstrap intervals and the sparse flag."""
    ev = events.select("limit", "side", "type", pl.col("n_before").alias("n"))
    per_side = rate_cells(exposure.select("limit", "side", "n", "T"), ev)
    pooled = pool_sides(per_side)
    table = pl.concat([
        intensity_table(per_side).with_columns(pl.lit(None, pl.Float64).alias("symmetry_p")),
        intensity_table(pooled),
    ], how="diagonal_relaxed")
    # bootstrap by hour blocks, per side and pooled
    ev_h = events.with_columns((pl.col("ts") // HOUR_NS).alias("block"),
                               pl.col("n_before").alias("n"))
    ev_h = pl.concat([ev_h, ev_h.filter(pl.col("type").is_in(["C", "M"]))
                      .with_columns(pl.lit("D").alias("type"))]) \
        if set(ev_h["type"].unique().to_list()) & {"C", "M"} else ev_h
    ev_side = ev_h.group_by("limit", "side", "type", "n", "block").agg(pl.len().alias("N"))
    boot_side = block_bootstrap(exposure_h, ev_side, ["limit", "side", "type", "n"], n_boot, rng)
    ev_pool = ev_side.group_by("limit", "type", "n", "block").agg(pl.col("N").sum())
    exp_pool = exposure_h.group_by("limit", "n", "block").agg(pl.col("T").sum())
    boot_pool = block_bootstrap(exp_pool, ev_pool, ["limit", "type", "n"], n_boot, rng) \
        .with_columns(pl.lit("pooled").alias("side"))
    boot = pl.concat([boot_side, boot_pool.select(boot_side.columns)])
    table = table.join(boot, on=["limit", "side", "type", "n"], how="left")
    table = sparse_flags(table, median_interevent(intervals))
    return table.with_columns(
        ((pl.col("boot_hi") - pl.col("boot_lo")) / (pl.col("ci_hi") - pl.col("ci_lo")))
        .alias("boot_width_ratio")
    ).select("limit", "side", "type", "n", "N", "T", "lam", "ci_lo", "ci_hi", "boot_lo",
             "boot_hi", "boot_width_ratio", "sparse", "symmetry_p").sort(
        "limit", "side", "type", "n")


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
    clock = res.msg_clock
    if clock.size == 0:
        return pl.DataFrame(schema={"limit": pl.Int32, "n": pl.Int64})
    first = clock[0] - clock[0] % SAMPLE_EVERY_NS + SAMPLE_EVERY_NS
    grid = np.arange(first, clock[-1], SAMPLE_EVERY_NS, dtype=np.int64)
    pos = np.searchsorted(clock, grid, side="right") - 1
    ok = (pos >= 0) & res.interval_live[np.maximum(pos, 0)]
    pos = pos[ok]
    k = res.k
    frames = [pl.DataFrame({"limit": np.full(pos.size, abs(c - k if c < k else c - k + 1),
                                             dtype=np.int32), "n": n_state[pos, c]})
              for c in range(2 * k)]
    return pl.concat(frames)


def pref_frames(res: ReplayResult, tick: float) -> tuple[pl.DataFrame, pl.DataFrame]:
    live = res.msg_live
    ref = res.msg_ref
    prev_ref = np.concatenate([[-2], ref[:-1]])
    keep = live & (ref != prev_ref)
    idx = np.flatnonzero(keep)
    pref = pl.DataFrame({"ts": res.msg_clock[idx], "ts_local": res.msg_order[idx],
                         "ref_half": ref[idx]}).with_columns(
        (pl.col("ref_half") / 2).alias("ref_ticks"),
        (pl.col("ref_half") * (tick / 2)).alias("p_ref"))
    pm = np.asarray(res.pc_msg, dtype=np.int64)
    changes = pl.DataFrame({
        "ts": res.msg_clock[pm] if pm.size else np.zeros(0, np.int64),
        "ts_local": res.msg_order[pm] if pm.size else np.zeros(0, np.int64),
        "direction": np.asarray(res.pc_dir, dtype=np.int64),
        "trigger": pl.Series(res.pc_trigger, dtype=pl.String),
        "spread_before": np.asarray(res.pc_spread_before, dtype=np.int64),
        "spread_after": np.asarray(res.pc_spread_after, dtype=np.int64),
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


def realized_vol(res: ReplayResult) -> dict[str, float | int | None]:
    """Std of 10-minute log changes of p_ref (bps), previous-tick sampled in live time."""
    live = res.msg_live
    if live.sum() < 2:
        return {"windows": 0, "rv_10min_bps": None}
    clock, ref = res.msg_clock[live], res.msg_ref[live]
    grid = np.arange(clock[0], clock[-1] + 1, RV_WINDOW_NS)
    if grid.size < 2:
        return {"windows": 0, "rv_10min_bps": None}
    pos = np.searchsorted(clock, grid, side="right") - 1
    r = np.diff(np.log(ref[pos].astype(np.float64)))
    return {"windows": int(r.size), "rv_10min_bps": float(1e4 * math.sqrt(np.mean(r**2)))}


def book_short_frame(res: ReplayResult, raw: npt.NDArray[np.int64],
                     n_state: npt.NDArray[np.int64], lot: float, tick: float) -> pl.DataFrame:
    k = res.k
    live = np.flatnonzero(res.msg_live)
    names = [f"m{-i}" if i < 0 else f"p{i}" for i in [*range(-k, 0), *range(1, k + 1)]]
    cols: dict[str, object] = {
        "ts": pl.Series(res.msg_clock[live]).cast(TS),
        "ts_local": pl.Series(res.msg_order[live]).cast(TS),
        "ref_half": res.msg_ref[live],
        "p_ref": res.msg_ref[live] * (tick / 2),
    }
    for c, name in enumerate(names):
        cols[f"q_{name}"] = raw[live, c] * lot
    for c, name in enumerate(names):
        cols[f"n_{name}"] = n_state[live, c].astype(np.int32)
    return pl.DataFrame(cols)


def diagnostics(res: ReplayResult, raw: npt.NDArray[np.int64], events: pl.DataFrame,
                live_s: float) -> dict[str, Any]:
    """Spread, empty best queues, event rates, counts and trade-match diagnostics."""
    w = interval_weights(res).astype(np.float64)
    total = w.sum()
    spread = res.msg_spread
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
    hours = live_s / 3600 if live_s else float("nan")
    per = events.group_by("limit").len().sort("limit")
    out["events_per_hour"] = {str(lim): (n / hours if hours == hours and hours > 0 else None)
                              for lim, n in per.iter_rows()}
    gaps = np.diff(res.msg_clock) / 1e6
    if gaps.size:
        q = np.quantile(gaps, [0.01, 0.1, 0.5, 0.9, 0.99])
        near50 = float(np.mean(np.abs(gaps - 50 * np.round(gaps / 50)) < 1.0)) \
            if gaps.size else None
        out["inter_message_ms"] = {"p1": q[0], "p10": q[1], "p50": q[2], "p90": q[3],
                                   "p99": q[4], "share_within_1ms_of_50ms_multiple": near50}
    if res.match:
        m = dict(res.match)
        offs = np.asarray(m.pop("offsets_best_ns"), dtype=np.float64) / 1e6
        if offs.size:
            qq = np.quantile(offs, [0.01, 0.05, 0.5, 0.95, 0.99])
            m["trade_minus_decrease_ms_best"] = dict(zip(["p1", "p5", "p50", "p95", "p99"],
                                                         qq.tolist(), strict=True))
        out["trade_match"] = m
    return out


def build(res: ReplayResult, *, lot: float, tick: float, aes_injected: dict[int, float] | None,
          n_boot: int = 200, seed: int = 0) -> QRTables:
    """All tables of one run."""
    k = res.k
    events = events_frame(res, lot)
    aes = aes_stats(events, k, aes_injected, lot)
    aes_col = aes_vector(aes, k)
    col = np.asarray(res.ev_col, dtype=np.int64)
    events = events.with_columns(
        pl.Series("n_before", quantize(events["q_before_lots"].to_numpy(), aes_col[col])),
        pl.Series("n_after", quantize(events["q_after_lots"].to_numpy(), aes_col[col])),
        (pl.col("ref_half") * (tick / 2)).alias("p_ref"))
    raw = state_matrix(res)
    n_state = quantize(raw, aes_col[None, :])
    exposure, exposure_h = exposure_frames(res, n_state)
    intervals = intervals_frame(res, events, aes_col)
    rng = np.random.default_rng(seed)
    table = intensities(exposure, exposure_h, events, intervals, n_boot, rng)
    sampled = sampled_states(res, n_state)
    inv, inv_diag = invariant_frame(table, exposure, sampled, k)
    pref, changes = pref_frames(res, tick)
    live_s = float(interval_weights(res).sum() / NS)
    hlr = hlr_estimates(intervals.select("limit", "side", "n", "type", "dt"))
    diag = diagnostics(res, raw, events, live_s)
    diag["invariant"] = inv_diag
    diag["pref"] = {**mean_reversion(changes["direction"].to_numpy()), **realized_vol(res),
                    "triggers": dict(changes.group_by("trigger").len().iter_rows())}
    diag["aes_base_units"] = {lim: v["mean_base_units"] for lim, v in aes["limits"].items()}
    n_sym = table.filter((pl.col("side") == "pooled") & (pl.col("symmetry_p") < 0.001)
                         & ~pl.col("sparse")).height
    diag["symmetry_cells_p_below_0.001"] = n_sym
    events_out = events.with_columns(pl.col("ts").cast(TS), pl.col("ts_local").cast(TS)).select(
        "ts", "ts_local", pl.col("i").alias("limit"), "side", "type", "size", "size_lots",
        "n_before", "n_after", "q_before_lots", "q_after_lots", "p_ref", "ref_half",
        (pl.col("dt_ns") / NS).alias("dt"))
    return QRTables(
        aes=aes, events=events_out,
        intervals=intervals.with_columns(pl.col("ts").cast(TS)).select(
            "ts", pl.col("i").alias("queue"), "limit", "side", "n", "type", "dt"),
        exposure=exposure.select("limit", "side", "n", "T"), intensities=table, invariant=inv,
        pref=pref, pref_changes=changes, book_short=book_short_frame(res, raw, n_state, lot, tick),
        hlr=hlr, diagnostics=diag)
