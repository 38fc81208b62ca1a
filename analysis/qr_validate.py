"""``python -m analysis.qr_validate``: simulate the fitted queue-reactive model and compare its
mid-price volatility with the realised one.

Huang, Lehalle & Rosenbaum (JASA 2015) judge the queue-reactive model by simulating order-book
paths from the estimated intensities and comparing the simulated price volatility with the
market's. This command does that for one venue's L2 book:

1. estimates the tables as ``analysis.queue_reactive`` does (same options), and θ̂ and θ̂^reinit
   from the depletions of the best queues (:mod:`analysis.qr_moves`);
2. turns the pooled λ̂^L(n), λ̂^C(n), λ̂^M(n) of Q±1..Q±3 into simulation rates
   (:func:`fitted_rates`: N/T for every state with exposure, linear interpolation across states
   never visited, no insertion above the largest state seen; without trades D stands for C);
3. simulates ``--paths`` books as long as the live recording
   (:func:`analysis.qr_sim.simulate_paths`: queues in lots with the estimated AES, n =
   ceil(q / AES) as in the tables, event sizes drawn from the sizes recorded at that limit,
   levels beyond Q±3 following Q±3) under three models: **Model I**
   (θ = 0: p_ref moves only when the book itself forces it), **Model III without
   re-initialisation** (θ̂, θ^reinit = 0: the book's own "mechanical" volatility) and **Model III**
   (θ̂, θ̂^reinit);
4. compares the 10-minute volatility of the mid price (root mean square of 10-minute log
   changes, in bps), η = N_continuations / (2 N_alternations) of p_ref moves and the p_ref moves
   per hour with the recording's.

Writes ``validation.csv``, ``validation.md`` and ``volatility.png`` into ``--out``. Pure
computation plus those files; never shows a figure.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from analysis import plots
from analysis.cli import UsageProblem, main_guard
from analysis.progress import Progress
from analysis.qr_replay import Messages
from analysis.qr_sim import N_MAX, PathConfig, QueueRates, simulate_paths
from analysis.qr_sim import Path as SimPath
from analysis.qr_tables import RV_WINDOW_NS, mean_reversion, ten_minute_vol
from analysis.queue_reactive import estimate
from analysis.queue_reactive import parser as qr_parser
from analysis.stats import chi2_ppf
from core.codec import S_NS

PROG = "python -m analysis.qr_validate"
EXAMPLE = f"{PROG} --data data --exchange coinbase --symbol ETC-USD --out out/qr_validate"
SIM_LEVELS = 3


def parser() -> argparse.ArgumentParser:
    p = qr_parser()
    p.prog = PROG
    p.description = ("Simulate the queue-reactive model fitted to a recorded L2 book (Model I, "
                     "Model III with the estimated θ and θ^reinit) and compare the simulated "
                     "mid-price volatility with the realised one.")
    p.epilog = f"example:\n  {EXAMPLE}"
    p.set_defaults(boot=0)
    p.add_argument("--paths", type=int, default=20,
                   help="simulated paths per model, each as long as the recording (default 20)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    return p


# -- rates ---------------------------------------------------------------------------------------


def _interpolated(n: npt.NDArray[np.int64], lam: npt.NDArray[np.float64],
                  top: int) -> npt.NDArray[np.float64]:
    out = np.zeros(N_MAX + 1)
    if n.size == 0:
        return out
    grid = np.arange(top + 1)
    out[:top + 1] = np.interp(grid, n, lam)
    return out


def fitted_rates(pooled: pl.DataFrame, limit: int) -> QueueRates | None:
    """Simulation rates of one limit from its pooled cells, or None without any exposure."""
    cells = pooled.filter(pl.col("limit") == limit, pl.col("T") > 0)
    if cells.height == 0:
        return None
    top = min(int(cells["n"].max()), N_MAX)
    kinds = set(cells["type"].to_list())
    by: dict[str, npt.NDArray[np.float64]] = {}
    for kind in ("L", "C", "M", "D"):
        c = cells.filter(pl.col("type") == kind, pl.col("n") <= top).sort("n")
        by[kind] = _interpolated(c["n"].to_numpy(), (c["N"] / c["T"]).to_numpy(), top)
    lam_l = by["L"]
    lam_l[top:] = 0.0  # no queue above the largest state seen
    if {"C", "M"} <= kinds:
        lam_c, lam_m = by["C"], by["M"]
    else:
        lam_c, lam_m = by["D"], np.zeros(N_MAX + 1)
    lam_c[0] = lam_m[0] = 0.0
    if lam_c[1:top + 1].sum() + lam_m[1:top + 1].sum() == 0:
        return None
    return QueueRates(lam_l, lam_c, lam_m)


def recorded_sizes(events: pl.DataFrame, limit: int, most: int = 100_000) -> list[int]:
    """Event sizes (lots) recorded at one limit, both sides and all types (thinned evenly to at
    most ``most``)."""
    v = events.filter(pl.col("limit").abs() == limit)["size_lots"].to_numpy()
    if v.size > most:
        v = v[np.linspace(0, v.size - 1, most).astype(np.int64)]
    return [int(x) for x in v if x > 0]


# -- statistics of a path ------------------------------------------------------------------------


@dataclass
class PathStats:
    windows: int
    rv_bps: float | None
    eta: float | None
    continuations: int
    alternations: int
    moves_per_hour: float
    ten_min_returns: npt.NDArray[np.float64]


def path_stats(t_ns: npt.NDArray[np.int64], mid2: npt.NDArray[np.int64],
               ref: npt.NDArray[np.int64]) -> PathStats:
    windows, rv = ten_minute_vol(t_ns, mid2.astype(np.float64))
    moved = np.flatnonzero(np.diff(ref) != 0)
    directions = np.sign(np.diff(ref)[moved])
    hours = (t_ns[-1] - t_ns[0]) / (3600 * S_NS) if t_ns.size > 1 else 0.0
    grid = np.arange(t_ns[0], t_ns[-1] + 1, RV_WINDOW_NS) if t_ns.size else np.zeros(0, np.int64)
    pos = np.searchsorted(t_ns, grid, side="right") - 1
    rets = 1e4 * np.diff(np.log(mid2[pos].astype(np.float64))) if grid.size > 1 else np.zeros(0)
    mr = mean_reversion(directions)
    return PathStats(windows, rv, mr["eta"], int(mr["continuations"] or 0),  # type: ignore[arg-type]
                     int(mr["alternations"] or 0), moved.size / hours if hours > 0 else 0.0, rets)


def pooled_rv(returns: npt.NDArray[np.float64]) -> float | None:
    return float(math.sqrt(np.mean(returns**2))) if returns.size else None


def rv_interval(rv: float | None, windows: int, level: float = 0.9) -> tuple[float | None,
                                                                            float | None]:
    """Interval of a root-mean-square volatility from ``windows`` returns (χ² with that many
    degrees of freedom, returns taken as centred normal)."""
    if rv is None or windows < 1:
        return None, None
    a = (1 - level) / 2
    s2 = rv**2 * windows
    return (math.sqrt(s2 / chi2_ppf(1 - a, windows)), math.sqrt(s2 / chi2_ppf(a, windows)))


# -- the command ---------------------------------------------------------------------------------


def realised(msgs: Messages) -> PathStats:
    live = msgs.live
    return path_stats(msgs.clock[live], msgs.mid2[live], msgs.ref[live])


def run(args: argparse.Namespace, progress: Progress) -> dict[str, Any]:
    """Estimate, simulate the three models, and gather the statistics."""
    res, tables = estimate(args, progress)
    pooled = tables.intensities.filter(pl.col("side") == "pooled")
    rates = {i: r for i in range(1, SIM_LEVELS + 1)
             if (r := fitted_rates(pooled, i)) is not None}
    if 1 not in rates:
        raise UsageProblem("no intensities at Q±1 to simulate (see summary.md of "
                           "analysis.queue_reactive)")
    m3 = tables.diagnostics["model3"]
    theta, theta_reinit = m3["theta"], m3["theta_reinit"]
    if theta is None:
        raise UsageProblem("θ cannot be estimated: no depletion of Q±1 was resolved")
    live = res.messages.live
    live_s = float(tables.diagnostics["live_seconds"])
    aes = tables.aes["limits"]
    aes_lots = tuple(float(aes[str(i)]["mean"]) for i in sorted(rates))
    sizes = {i: recorded_sizes(tables.events, i) for i in sorted(rates)}
    mid_ticks = int(np.median(res.messages.mid2[live]) // 2)
    models = [("Model I (θ = 0)", 0.0, 0.0),
              ("Model III, no re-initialisation (θ̂, θ^reinit = 0)", float(theta), 0.0),
              ("Model III (θ̂, θ̂^reinit)", float(theta), float(theta_reinit or 0.0))]
    rng = np.random.default_rng(args.seed)
    sims: dict[str, list[PathStats]] = {}
    for name, th, thr in models:
        progress.note(f"simulating {args.paths} paths of {live_s / 3600:.2f} h: {name}")
        cfg = PathConfig(duration_s=live_s, rates=rates, theta=th, theta_reinit=thr,
                         k=max(rates), p0_ticks=mid_ticks, aes_lots=aes_lots, sizes=sizes)
        paths: list[SimPath] = simulate_paths(cfg, args.paths, rng)
        sims[name] = [path_stats(p.t_ns, p.mid2, p.ref) for p in paths]
    return {"tables": tables, "data": realised(res.messages), "sims": sims, "models": models,
            "live_s": live_s, "theta": m3}


def table(out: dict[str, Any]) -> pl.DataFrame:
    data: PathStats = out["data"]
    lo, hi = rv_interval(data.rv_bps, data.windows)
    hours = out["live_s"] / 3600
    rows = [{"source": "recording", "theta": out["theta"]["theta"],
             "theta_reinit": out["theta"]["theta_reinit"], "paths": 1, "hours": hours,
             "rv_mid_10min_bps": data.rv_bps, "rv_lo_bps": lo, "rv_hi_bps": hi,
             "eta": data.eta, "pref_moves_per_hour": data.moves_per_hour}]
    for name, th, thr in out["models"]:
        stats: list[PathStats] = out["sims"][name]
        per_path = np.array([s.rv_bps for s in stats if s.rv_bps is not None])
        rets = np.concatenate([s.ten_min_returns for s in stats])
        cont = sum(s.continuations for s in stats)
        alt = sum(s.alternations for s in stats)
        rows.append({
            "source": name, "theta": th, "theta_reinit": thr, "paths": len(stats),
            "hours": hours * len(stats), "rv_mid_10min_bps": pooled_rv(rets),
            "rv_lo_bps": float(np.quantile(per_path, 0.05)) if per_path.size else None,
            "rv_hi_bps": float(np.quantile(per_path, 0.95)) if per_path.size else None,
            "eta": cont / (2 * alt) if alt else None,
            "pref_moves_per_hour": float(np.mean([s.moves_per_hour for s in stats]))})
    return pl.DataFrame(rows)


def _per_model(ax: object, out: dict[str, Any], tab: pl.DataFrame, column: str,
               per_path: str, unit: str, digits: int) -> None:
    """One point per simulated path and a bar for all paths pooled, per model, against the
    recording's value (a line) and its interval (a band)."""
    names = [m[0] for m in out["models"]]
    colours = ["tab:grey", "tab:orange", "tab:blue"]
    data = tab.row(0, named=True)
    top = 0.0
    if data[column] is not None:
        ax.axhline(data[column], color="black", lw=1.2,  # type: ignore[attr-defined]
                   label=f"recording: {data[column]:.{digits}f} {unit}")
        top = max(top, data[column])
    lo, hi = _interval(data, column)
    if lo is not None and hi is not None:
        ax.axhspan(lo, hi, color="black", alpha=0.12,  # type: ignore[attr-defined]
                   label="recording, 90% interval")
        top = max(top, hi)
    for j, (name, colour) in enumerate(zip(names, colours, strict=True)):
        values = [getattr(s, per_path) for s in out["sims"][name]
                  if getattr(s, per_path) is not None]
        x = j + np.linspace(-0.15, 0.15, max(len(values), 1))[:len(values)]
        ax.plot(x, values, "o", ms=3, color=colour, alpha=0.6)  # type: ignore[attr-defined]
        pooled = tab.row(j + 1, named=True)[column]
        if pooled is not None:
            ax.plot([j - 0.3, j + 0.3], [pooled] * 2, color=colour,  # type: ignore[attr-defined]
                    lw=2.5, label=f"{name}: {pooled:.{digits}f} {unit}")
        top = max([top, *values, pooled or 0.0])
    ax.set_xticks(range(len(names)),  # type: ignore[attr-defined]
                  ["Model I", "Model III\nθ^reinit = 0", "Model III"])
    ax.set_xlim(-0.6, len(names) - 0.4)  # type: ignore[attr-defined]
    ax.set_ylim(0, 1.6 * top if top > 0 else 1.0)  # type: ignore[attr-defined]
    ax.set_xlabel("simulated model (one point per path; bar: all paths)")  # type: ignore[attr-defined]
    ax.legend(fontsize=7, loc="upper left")  # type: ignore[attr-defined]
    ax.grid(True, axis="y", linestyle="--", alpha=0.4)  # type: ignore[attr-defined]


def _interval(row: dict[str, Any], column: str) -> tuple[float | None, float | None]:
    if column == "rv_mid_10min_bps":
        return row["rv_lo_bps"], row["rv_hi_bps"]
    n = row["pref_moves_per_hour"] * row["hours"]
    if n <= 0:
        return None, None
    # 90% interval of a Poisson count, per hour
    return (chi2_ppf(0.05, 2 * n) / 2 / row["hours"], chi2_ppf(0.95, 2 * n + 2) / 2 / row["hours"])


def draw(out: dict[str, Any], tab: pl.DataFrame, title: str, path: Path) -> Path:
    fig = plots.new_figure(12.5, 4.6)
    ax1, ax2 = fig.subplots(1, 2)
    _per_model(ax1, out, tab, "rv_mid_10min_bps", "rv_bps", "bps", 2)
    ax1.set_ylabel("10-minute volatility of the mid (bps)")
    ax1.set_title(f"{title}: simulated against realised volatility", fontsize=9)
    _per_model(ax2, out, tab, "pref_moves_per_hour", "moves_per_hour", "/ h", 1)
    ax2.set_ylabel("reference-price moves per hour")
    ax2.set_title(f"{title}: p_ref moves per hour", fontsize=9)
    return plots.save(fig, path)


def markdown(tab: pl.DataFrame, out: dict[str, Any], title: str) -> str:
    def cell(v: Any, digits: int = 2) -> str:
        if v is None:
            return "–"
        return f"{v:.{digits}f}" if isinstance(v, float) else str(v)

    m3 = out["theta"]
    lines = [f"# {title}: the fitted queue-reactive model against the recording", "",
             f"θ̂ = {cell(m3['theta'], 3)} ± {cell(m3['theta_se'], 3)}, θ̂^reinit = "
             f"{cell(m3['theta_reinit'], 3)} ± {cell(m3['theta_reinit_se'], 3)} "
             f"({m3['moves']} moves, {m3['stays']} stays after {m3['depletions']} depletions "
             "of Q±1).", "",
             "| source | θ | θ^reinit | paths | hours | 10-min vol of the mid (bps) | "
             "interval (bps) | η | p_ref moves per hour |", "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['source']} | {cell(r['theta'], 3)} | {cell(r['theta_reinit'], 3)} | "
              f"{r['paths']} | {cell(r['hours'], 2)} | {cell(r['rv_mid_10min_bps'])} | "
              f"{cell(r['rv_lo_bps'])} – {cell(r['rv_hi_bps'])} | {cell(r['eta'], 3)} | "
              f"{cell(r['pref_moves_per_hour'], 1)} |" for r in tab.iter_rows(named=True)]
    lines += ["", "Interval: for the recording, 90% from the χ² law of its windows; for a model, "
              "the 5th to 95th percentile of the per-path volatility (each path as long as the "
              "recording). η of a model pools the p_ref moves of all its paths.", ""]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.paths < 1:
        raise UsageProblem("--paths must be at least 1")
    if args.k < 1:
        raise UsageProblem("--k must be at least 1")
    progress = Progress(PROG, quiet=args.quiet)
    out = run(args, progress)
    tab = table(out)
    args.out.mkdir(parents=True, exist_ok=True)
    tab.write_csv(args.out / "validation.csv")
    title = f"{args.exchange} {args.symbol}"
    (args.out / "validation.md").write_text(markdown(tab, out, title))
    draw(out, tab, title, args.out / "volatility.png")
    progress.note("done")
    rv = {r["source"]: r["rv_mid_10min_bps"] for r in tab.iter_rows(named=True)}
    fmt = ", ".join(f"{k.split(' (')[0] if k != 'recording' else k} "
                    f"{'–' if v is None else f'{v:.2f}'}" for k, v in rv.items())
    print(f"{title}: 10-minute volatility of the mid (bps): {fmt} -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main_guard(PROG, main))
