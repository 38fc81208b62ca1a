"""One row per venue for the spread report: how often it updates, how often it holds the best
price across venues, and how often it moves first.

* ``updates_per_s``: top-of-book rows per second of the venue's own span (first to last row),
  and ``mid_moves_per_s``: mid changes per second (size-only updates are not moves).
* ``best_bid_share`` / ``best_ask_share``: on the union grid of every venue's updates (each
  venue's latest quote as of each grid time, no look-ahead), the share of the time with two or
  more venues fresh (quoted, not past their staleness limit, no feed break since) during which
  this venue's bid is the highest of the fresh venues' bids (its ask the lowest). A tie counts
  for every venue in it, so the shares of all venues can add up to more than 1.
* ``lead_share``: a move of a venue *leads* when another venue's mid moves the same way within
  the next ``window_ms`` (default 100 ms) and no other venue's moved that way in the
  ``window_ms`` before (at the same instant counts as before: simultaneous moves lead nothing).
  ``leads`` counts them, ``lead_share`` is the venue's part of all venues' leading moves.

On whatever timeline the quotes are given (the report uses its ``--clock``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import numpy as np
import polars as pl

from analysis.align import join_leg
from analysis.event_study import Changes
from core.codec import MS_NS, S_NS

DEFAULT_LEAD_WINDOW_MS: Final = 100.0


def best_price_shares(quotes: Mapping[str, pl.LazyFrame], smax: Mapping[str, int],
                      breaks: Mapping[str, pl.LazyFrame],
                      end_ns: int | None = None) -> pl.DataFrame:
    """exchange, best_bid_share, best_ask_share, compared_seconds (see the module docstring)."""
    names = sorted(quotes)
    grid = (pl.concat([quotes[v].select(pl.col("ts").alias("t")) for v in names])
            .unique().sort("t").set_sorted("t"))
    frame = grid
    for i, v in enumerate(names):
        frame = join_leg(frame, quotes[v], breaks[v], f"v{i}", smax[v])
    fresh = [pl.col(f"v{i}_fresh").fill_null(False) for i in range(len(names))]
    bids = [pl.when(f).then(pl.col(f"v{i}_bid_px")) for i, f in enumerate(fresh)]
    asks = [pl.when(f).then(pl.col(f"v{i}_ask_px")) for i, f in enumerate(fresh)]
    frame = (frame.with_columns(
                 (pl.col("t").shift(-1).fill_null(pl.max_horizontal(
                     "t", pl.lit(end_ns, pl.Int64))) - pl.col("t")).alias("_dt"),
                 pl.sum_horizontal([f.cast(pl.Int32) for f in fresh]).alias("_n"),
                 pl.max_horizontal(bids).alias("_best_bid"),
                 pl.min_horizontal(asks).alias("_best_ask"))
             .filter(pl.col("_n") >= 2))
    w = pl.col("_dt").cast(pl.Float64)
    aggs = [(w.sum() / S_NS).alias("compared_seconds")]
    for i, f in enumerate(fresh):
        aggs += [(w * (f & (pl.col(f"v{i}_bid_px") == pl.col("_best_bid")))
                  .cast(pl.Float64)).sum().alias(f"bid_{i}"),
                 (w * (f & (pl.col(f"v{i}_ask_px") == pl.col("_best_ask")))
                  .cast(pl.Float64)).sum().alias(f"ask_{i}")]
    row = frame.select(aggs).collect().row(0, named=True)
    total = row["compared_seconds"] * S_NS
    return pl.DataFrame({
        "exchange": names,
        "best_bid_share": [row[f"bid_{i}"] / total if total else None for i in range(len(names))],
        "best_ask_share": [row[f"ask_{i}"] / total if total else None for i in range(len(names))],
        "compared_seconds": [row["compared_seconds"]] * len(names),
    }, schema={"exchange": pl.String(), "best_bid_share": pl.Float64(),
               "best_ask_share": pl.Float64(), "compared_seconds": pl.Float64()})


def lead_counts(changes: Mapping[str, Changes],
                window_ms: float = DEFAULT_LEAD_WINDOW_MS) -> pl.DataFrame:
    """exchange, moves, leads, lead_share (see the module docstring)."""
    w = int(window_ms * MS_NS)
    names = sorted(changes)
    leads: dict[str, int] = {}
    for v in names:
        c = changes[v]
        followed = np.zeros(c.t.size, dtype=bool)
        preceded = np.zeros(c.t.size, dtype=bool)
        for other in names:
            if other == v:
                continue
            for s, times in ((1, changes[other].up), (-1, changes[other].down)):
                mine = c.sign == s
                if not mine.any() or times.size == 0:
                    continue
                t = c.t[mine]
                nxt = np.searchsorted(times, t, side="right")  # first strictly after t
                ok = nxt < times.size
                f = np.zeros(t.size, dtype=bool)
                f[ok] = times[nxt[ok]] - t[ok] <= w
                prev = np.searchsorted(times, t, side="right") - 1  # last at or before t
                okp = prev >= 0
                p = np.zeros(t.size, dtype=bool)
                p[okp] = t[okp] - times[prev[okp]] <= w
                followed[mine] |= f
                preceded[mine] |= p
        leads[v] = int(np.sum(followed & ~preceded))
    total = sum(leads.values())
    return pl.DataFrame({
        "exchange": names, "moves": [int(changes[v].t.size) for v in names],
        "leads": [leads[v] for v in names],
        "lead_share": [leads[v] / total if total else None for v in names],
    }, schema={"exchange": pl.String(), "moves": pl.Int64(), "leads": pl.Int64(),
               "lead_share": pl.Float64()})


def venue_table(rows: Mapping[str, int], spans_ns: Mapping[str, int],
                changes: Mapping[str, Changes], shares: pl.DataFrame,
                leads: pl.DataFrame) -> pl.DataFrame:
    """The per-venue table: update and move rates, best-price shares, leads."""
    names = sorted(rows)
    rates = pl.DataFrame({
        "exchange": names,
        "updates_per_s": [rows[v] / (spans_ns[v] / S_NS) if spans_ns[v] > 0 else None
                          for v in names],
        "mid_moves_per_s": [changes[v].t.size / (spans_ns[v] / S_NS) if spans_ns[v] > 0
                            else None for v in names],
    }, schema={"exchange": pl.String(), "updates_per_s": pl.Float64(),
               "mid_moves_per_s": pl.Float64()})
    return (rates.join(shares, on="exchange", how="left")
            .join(leads, on="exchange", how="left").sort("exchange"))


__all__ = ["DEFAULT_LEAD_WINDOW_MS", "best_price_shares", "lead_counts", "venue_table"]
