"""Figures of the analysis scripts, drawn with matplotlib's object-oriented API on the Agg canvas.

Each ``draw_*`` function takes an Axes (or a Figure) and plain arrays/frames, draws, and returns
nothing; :func:`new_figure` and :func:`save` own figure creation and the PNG file. Nothing here
calls ``pyplot`` or ``show()``, so it works headless and leaves no global state behind.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

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
    """λ̂(n) with Garwood 95% intervals for one limit and type (pooled sides); sparse cells
    (reporting rule not met) are drawn hollow."""
    c = cells.filter(pl.col("type") == kind).sort("n")
    colour = TYPE_COLOURS.get(kind, "black")
    for sparse, style in ((False, {"mfc": colour}), (True, {"mfc": "white"})):
        s = c.filter(pl.col("sparse") == sparse)
        if s.height == 0:
            continue
        n = s["n"].to_numpy()
        lam = s["lam"].to_numpy()
        err = np.vstack([lam - s["ci_lo"].to_numpy(), s["ci_hi"].to_numpy() - lam])
        ax.errorbar(n, lam, yerr=err, fmt="o", ms=3.5, color=colour, mec=colour, lw=0.8,
                    capsize=1.5, label="sparse" if sparse else "λ̂ ± 95% Garwood", **style)
    solid = c.filter(~pl.col("sparse"))
    if solid.height:  # keep the axes on the published cells; sparse bars may run off the top
        top = float(solid["ci_hi"].max())
        ax.set_ylim(0, 1.25 * top if top > 0 else 1.0)
        ax.set_xlim(-0.8, float(solid["n"].max()) + 4.8)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("queue size n (AES units, before the event)")
    ax.set_ylabel("intensity (events / s)")
    ax.grid(True, linestyle="--", alpha=0.4)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if c.height:
        ax.legend(fontsize=7, loc="best")


def draw_invariant(ax: Axes, inv: pl.DataFrame, title: str) -> None:
    n = inv["n"].to_numpy()
    ax.bar(n, inv["occupancy"].to_numpy(), color="lightgrey", label="time-weighted occupancy")
    ax.plot(n, inv["sampled_30s"].to_numpy(), "s", ms=3, color="tab:blue", label="30-s samples")
    ax.plot(n, inv["pi_hat"].to_numpy(), "-", color="black", lw=1.2, label="π̂ (birth–death)")
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("queue size n (AES units)")
    ax.set_ylabel("probability")
    ax.legend(fontsize=7)
    ax.grid(True, linestyle="--", alpha=0.4)


# -- depth -----------------------------------------------------------------------------------------


def draw_depth(ax: Axes, bid_px: Sequence[float], bid_sz: Sequence[float],
               ask_px: Sequence[float], ask_sz: Sequence[float], ref_price: float, tick: float,
               title: str) -> None:
    """Bar chart of the book around the reference price (bids and asks in two colours)."""
    ax.bar(bid_px, bid_sz, width=tick * 0.8, color=BID_COLOUR, label="bids")
    ax.bar(ask_px, ask_sz, width=tick * 0.8, color=ASK_COLOUR, label="asks")
    ax.axvline(ref_price, color="tab:blue", lw=1.5, label=f"reference price {ref_price:.10g}")
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("price")
    ax.set_ylabel("size (base units)")
    ax.legend(fontsize=8)
    ax.grid(True, axis="y", linestyle="--", alpha=0.4)
    ax.xaxis.set_major_locator(MaxNLocator(12))
    ax.tick_params(axis="x", rotation=45)


# -- spreads ---------------------------------------------------------------------------------------


def draw_quote_pair(ax: Axes, t: npt.ArrayLike, bid: npt.ArrayLike, ask: npt.ArrayLike,
                    bid_label: str, ask_label: str, bid_colour: str, ask_colour: str,
                    title: str) -> None:
    ax.plot(t, bid, drawstyle="steps-post", color=bid_colour, lw=0.9, label=bid_label)
    ax.plot(t, ask, drawstyle="steps-post", color=ask_colour, lw=0.9, ls="--", label=ask_label)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(True, linestyle="--", alpha=0.5)
    ax.tick_params(axis="x", rotation=30, labelsize=7)


def draw_ratio(ax: Axes, t: npt.ArrayLike, lo: npt.ArrayLike, hi: npt.ArrayLike, mean: float,
               label: str, title: str) -> None:
    """The ask/bid ratio (a band when the series was bucketed for drawing) and its mean; values
    below 1 are crossings."""
    ax.fill_between(t, lo, hi, step="post", color="tab:blue", alpha=0.6, lw=0.6, label=label)
    ax.axhline(mean, color="tab:red", lw=1.0, label=f"mean {mean:.6f}")
    ax.axhline(1.0, color="black", lw=0.8, ls=":", label="1 (crossing below)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(True, linestyle="--", alpha=0.5)
    ax.tick_params(axis="x", rotation=30, labelsize=7)


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
