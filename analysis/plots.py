"""Figures of the analysis scripts, drawn with matplotlib's object-oriented API on the Agg canvas.

Each ``draw_*`` function takes an Axes (or a Figure) and plain arrays/frames, draws, and returns
nothing; :func:`new_figure` and :func:`save` own figure creation and the PNG file. Nothing here
calls ``pyplot`` or ``show()``, so it works headless and leaves no global state behind.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.dates as mdates
import numpy as np
import numpy.typing as npt
import polars as pl
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

TYPE_COLOURS = {"L": "tab:green", "C": "tab:orange", "M": "tab:red", "D": "tab:purple"}
TYPE_LABELS = {"L": "L insertions", "C": "C cancellations", "M": "M market orders",
               "D": "D decreases (C + M)"}
BID_COLOUR = "tab:green"
ASK_COLOUR = "tab:red"


def new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save(fig: Figure, path: Path, dpi: int = 110) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    return path


# -- queue-reactive -------------------------------------------------------------------------------


def draw_intensity(ax: Axes, cells: pl.DataFrame, kind: str, title: str) -> None:
    """λ̂(n) with Garwood 95% intervals for one limit and type (pooled sides). Only the cells
    given are drawn (the caller passes those that meet the reporting rule); the y-axis holds
    every interval whole, and a panel without cells says so instead of drawing axes ticks
    around nothing."""
    c = cells.filter(pl.col("type") == kind).sort("n")
    colour = TYPE_COLOURS.get(kind, "black")
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("queue size n before the event (AES units)")
    ax.set_ylabel("intensity (events / s)")
    if c.height == 0:
        ax.text(0.5, 0.5, "no cell meets the reporting rule", ha="center", va="center",
                transform=ax.transAxes, fontsize=8, color="grey")
        ax.set_xticks([])
        ax.set_yticks([])
        return
    n = c["n"].to_numpy()
    lam = c["lam"].to_numpy()
    hi = c["ci_hi"].to_numpy()
    err = np.vstack([lam - c["ci_lo"].to_numpy(), hi - lam])
    ax.errorbar(n, lam, yerr=err, fmt="o", ms=3.5, color=colour, mfc=colour, mec=colour, lw=0.8,
                capsize=1.5, label="λ̂ ± 95% Garwood interval")
    top = float(np.nanmax(hi))
    ax.set_ylim(0, 1.08 * top if top > 0 else 1.0)
    ax.set_xlim(max(float(n.min()) - 1, -0.5), float(n.max()) + 1)
    ax.grid(True, linestyle="--", alpha=0.4)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize=7, loc="best")


def draw_invariant(ax: Axes, inv: pl.DataFrame, title: str) -> None:
    """Occupancy bars, 30-s samples and the birth–death π̂ (only where it exists); the legend
    names only what is drawn."""
    n = inv["n"].to_numpy()
    ax.bar(n, inv["occupancy"].to_numpy(), color="lightgrey", label="time-weighted occupancy")
    smp = inv["sampled_30s"].to_numpy()
    if np.nansum(smp) > 0:
        ax.plot(n, smp, "s", ms=3, color="tab:blue", label="30-s samples")
    pi_hat = inv["pi_hat"].to_numpy()
    if np.isfinite(pi_hat).any() and np.nansum(pi_hat) > 0:
        ax.plot(n, pi_hat, "-", color="black", lw=1.2, label="π̂ (birth–death)")
    else:
        ax.text(0.98, 0.6, "no π̂: no run of two or more\nstates with 20 events each", ha="right",
                transform=ax.transAxes, fontsize=7, color="grey")
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("queue size n (AES units)")
    ax.set_ylabel("probability")
    ax.set_xlim(-0.8, float(n.max()) + 0.8 if n.size else 1.0)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize=7)
    ax.grid(True, linestyle="--", alpha=0.4)


# -- depth -----------------------------------------------------------------------------------------


def draw_depth(ax: Axes, bid_px: Sequence[float], bid_sz: Sequence[float],
               ask_px: Sequence[float], ask_sz: Sequence[float], ref_price: float, tick: float,
               title: str, price_unit: str = "quote currency",
               size_unit: str = "base units") -> None:
    """Bar chart of the book around the reference price (bids and asks in two colours)."""
    ax.bar(bid_px, bid_sz, width=tick * 0.8, color=BID_COLOUR, label="bids")
    ax.bar(ask_px, ask_sz, width=tick * 0.8, color=ASK_COLOUR, label="asks")
    ax.axvline(ref_price, color="tab:blue", lw=1.5, label=f"reference price {ref_price:.10g}")
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(f"price ({price_unit})")
    ax.set_ylabel(f"size ({size_unit})")
    ax.legend(fontsize=8)
    ax.grid(True, axis="y", linestyle="--", alpha=0.4)
    ax.xaxis.set_major_locator(MaxNLocator(12))
    ax.tick_params(axis="x", rotation=45)


# -- time axes -----------------------------------------------------------------------------------


def utc_time_axis(ax: Axes, t: npt.ArrayLike) -> None:
    """Label an x-axis of ``datetime64`` values (UTC) as clock times, with the UTC date(s) in the
    axis label."""
    tt = np.asarray(t, dtype="datetime64[ns]")
    if tt.size == 0:
        ax.set_xlabel("time (UTC)")
        return
    first, last = (str(x)[:10] for x in (tt.min(), tt.max()))
    span_s = float((tt.max() - tt.min()) / np.timedelta64(1, "s"))
    fmt = "%H:%M:%S" if span_s < 600 else "%H:%M"
    if first != last:
        fmt = "%m-%d " + fmt
    ax.xaxis.set_major_locator(mdates.AutoDateLocator(minticks=4, maxticks=10))
    ax.xaxis.set_major_formatter(mdates.DateFormatter(fmt))
    ax.set_xlabel(f"time (UTC, {first})" if first == last else f"time (UTC, {first} to {last})")
    ax.tick_params(axis="x", rotation=30, labelsize=7)


# -- spreads ---------------------------------------------------------------------------------------


def draw_quote_pair(ax: Axes, t: npt.ArrayLike, bid: npt.ArrayLike, ask: npt.ArrayLike,
                    bid_label: str, ask_label: str, bid_colour: str, ask_colour: str,
                    title: str, price_unit: str) -> None:
    ax.plot(t, bid, drawstyle="steps-post", color=bid_colour, lw=0.9, label=bid_label)
    ax.plot(t, ask, drawstyle="steps-post", color=ask_colour, lw=0.9, ls="--", label=ask_label)
    ax.set_title(title, fontsize=9)
    ax.set_ylabel(f"price ({price_unit})")
    ax.legend(fontsize=7)
    ax.grid(True, linestyle="--", alpha=0.5)
    utc_time_axis(ax, t)


def draw_edges(ax: Axes, t: npt.ArrayLike, bands: Sequence[tuple[npt.ArrayLike, npt.ArrayLike,
                                                                    str, str]],
               cost_bps: float | None, title: str) -> None:
    """Gross edges in bps as min–max bands per time bucket (``bands``: lo, hi, label, colour),
    the zero line (above it: the venues cross) and, when known, the taker fees of both legs."""
    for lo, hi, label, colour in bands:
        ax.fill_between(t, lo, hi, step="post", color=colour, alpha=0.55, lw=0.6, label=label)
    ax.axhline(0.0, color="black", lw=0.8, ls=":", label="0 (above: the venues cross)")
    if cost_bps is not None:
        ax.axhline(cost_bps, color="tab:red", lw=1.0, ls="--",
                   label=f"taker fees, both legs ({cost_bps:.1f} bps)")
    ax.set_title(title, fontsize=9)
    ax.set_ylabel("gross edge (bps)")
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(True, linestyle="--", alpha=0.5)
    utc_time_axis(ax, t)


def draw_xcorr(ax: Axes, lags_ms: npt.ArrayLike, rho: npt.ArrayLike, label: str) -> None:
    ax.plot(lags_ms, rho, lw=1.0, label=label)
    ax.axvline(0, color="black", lw=0.6)
    ax.set_xlabel("lag ℓ (ms); ℓ > 0: first venue leads")
    ax.set_ylabel("correlation")
    ax.grid(True, linestyle="--", alpha=0.4)
    ax.legend(fontsize=7)


def draw_latency(ax: Axes, venues: Sequence[str], samples: Sequence[npt.ArrayLike]) -> None:
    data = [np.asarray(s, dtype=np.float64) for s in samples]
    ax.boxplot(data, tick_labels=list(venues), whis=(1, 99), showfliers=False)
    ax.set_ylabel("ts_local − ts_exchange (ms)")
    ax.set_title("feed latency per venue (whiskers p1–p99)", fontsize=9)
    ax.grid(True, axis="y", linestyle="--", alpha=0.4)


def draw_event_study(ax: Axes, taus_ms: npt.ArrayLike,
                     curves: Sequence[tuple[str, npt.ArrayLike, npt.ArrayLike, str]],
                     title: str) -> None:
    """P(the follower's mid moves the same way within τ) against τ (log scale, ms): per curve
    (label, conditional, baseline at random times, colour), the conditional solid and its
    baseline dashed."""
    for label, cond, base, colour in curves:
        ax.plot(taus_ms, cond, lw=1.4, color=colour, label=f"{label}: after a move")
        ax.plot(taus_ms, base, lw=1.0, ls="--", color=colour, label=f"{label}: random times")
    for tau in (10, 50, 100, 500):
        ax.axvline(tau, color="grey", lw=0.5, ls=":")
    ax.set_xscale("log")
    ax.set_xlim(1, 1000)
    ticks = [1, 10, 50, 100, 500, 1000]
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.set_ylim(0, 1)
    ax.set_xlabel("τ: time after the leader's move (ms, log scale)")
    ax.set_ylabel("P(follower's mid moves the same way within τ)")
    ax.set_title(title, fontsize=9)
    ax.grid(True, linestyle="--", alpha=0.4)
    ax.legend(fontsize=7, loc="upper left")
