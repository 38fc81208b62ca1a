"""As-of alignment of two venues' top of book on their event-time union grid, with each leg's
staleness honoured in continuous time.

At every update of either venue (the grid, on ``ts_local``), each venue's latest quote with
``ts_local ≤ t`` is joined backward: no look-ahead, what a live strategy would have seen. Each
leg carries its age t − ts_local(quote) and two flags:

* ``dead``: a feed break of that venue (:data:`analysis.load.QUOTE_BREAKS`) happened after the
  quote was received, so the quote is no longer known to stand;
* ``fresh``: quoted, not dead, and age ≤ S_max of that venue.

A row holds until the next grid time, but a leg can go stale or dead in between: its quote
reaches the age S_max at ts_local + S_max, and a break can arrive at any time. ``fresh_until``
is the first of those instants (and the next grid time), so ``dt_fresh`` = fresh_until − t is
the time the row really had both legs fresh (0 when it never had). Statistics weight rows by
``dt_fresh`` and episodes end at ``fresh_until``: the same answer as the live analyzer
(:mod:`analysis.spread_live`), which stops an episode at the exact instant a leg goes stale.

S_max per venue is the p99 of its time between updates, capped (250 ms by default, the live
analyzer's default cap). A change-only channel is silent when nothing changes, so S_max flags
quiet-but-alive quotes too; the dead flag is the separate "the feed is gone" signal.

Only LazyFrame builders; times are integer nanoseconds (``ts`` columns) for cheap arithmetic.
"""

from __future__ import annotations

from typing import Final

import polars as pl

from core.codec import MS_NS

DEFAULT_STALE_CAP_MS: Final = 250.0


def venue_quotes(tob: pl.LazyFrame, venue: str, offset_ns: int | None = None) -> pl.LazyFrame:
    """Quotes of one venue: ts (ns), ts_ex (ns, nullable), bid/ask price and size (a side may be
    null: a one-sided book has no edge, as in the live analyzer).

    ``ts`` is the receipt time ``ts_local``; with ``offset_ns`` it is the clock-corrected
    exchange time ``ts_exchange + offset_ns`` instead (rows without an exchange time dropped), for
    the robustness run.
    """
    clock = (pl.col("ts_local").cast(pl.Int64) if offset_ns is None
             else pl.col("ts_exchange").cast(pl.Int64) + offset_ns)
    return (tob.filter(pl.col("exchange") == venue)
            .select(clock.alias("ts"),
                    pl.col("ts_exchange").cast(pl.Int64).alias("ts_ex"),
                    "bid_px", "bid_sz", "ask_px", "ask_sz")
            .drop_nulls("ts")
            .sort("ts", maintain_order=True)
            .unique(subset="ts", keep="last", maintain_order=True)
            .set_sorted("ts"))


def staleness_caps(tob: pl.LazyFrame, cap_ms: float = DEFAULT_STALE_CAP_MS) -> pl.LazyFrame:
    """S_max per venue (ns): p99 of the time between its quote updates, capped at ``cap_ms``."""
    cap = int(cap_ms * MS_NS)
    return (tob.select("exchange", pl.col("ts_local").cast(pl.Int64).alias("ts"))
            .sort("exchange", "ts")
            .with_columns(pl.col("ts").diff().over("exchange").alias("gap"))
            .group_by("exchange")
            .agg(pl.col("gap").drop_nulls().quantile(0.99, "nearest").alias("p99_gap"))
            .with_columns(pl.min_horizontal(pl.col("p99_gap").fill_null(cap), pl.lit(cap))
                          .cast(pl.Int64).alias("smax"))
            .sort("exchange"))


def join_leg(grid: pl.LazyFrame, quotes: pl.LazyFrame, breaks: pl.LazyFrame, p: str,
         smax_ns: int) -> pl.LazyFrame:
    """Join one venue's quote as of each grid time, with its age, dead and fresh flags and the
    instant it stops being fresh (``<p>_until``: S_max reached or the next break)."""
    q = quotes.rename({c: f"{p}_{c}" for c in quotes.collect_schema().names()})
    b = (breaks.select(pl.col("ts_local").cast(pl.Int64).alias(f"{p}_break"))
         .sort(f"{p}_break").set_sorted(f"{p}_break"))
    nxt = b.rename({f"{p}_break": f"{p}_next_break"})
    return (grid.join_asof(q, left_on="t", right_on=f"{p}_ts", strategy="backward")
            .join_asof(b, left_on="t", right_on=f"{p}_break", strategy="backward")
            .join_asof(nxt, left_on="t", right_on=f"{p}_next_break", strategy="forward",
                       allow_exact_matches=False)
            .with_columns((pl.col("t") - pl.col(f"{p}_ts")).alias(f"{p}_age"),
                          (pl.col(f"{p}_break").is_not_null()
                           & (pl.col(f"{p}_break") > pl.col(f"{p}_ts"))).alias(f"{p}_dead"))
            .with_columns((pl.col(f"{p}_ts").is_not_null() & ~pl.col(f"{p}_dead")
                           & (pl.col(f"{p}_age") <= smax_ns)).alias(f"{p}_fresh"),
                          pl.min_horizontal(pl.col(f"{p}_ts") + smax_ns,
                                            pl.col(f"{p}_next_break")).alias(f"{p}_until"))
            .drop(f"{p}_break", f"{p}_next_break"))


def align_pair(qa: pl.LazyFrame, qb: pl.LazyFrame, smax_a: int, smax_b: int,
               breaks_a: pl.LazyFrame, breaks_b: pl.LazyFrame,
               end_ns: int | None = None) -> pl.LazyFrame:
    """Union grid of two venues with both legs joined as of each grid time.

    Columns: t, dt (ns to the next grid time, 0 on the last row), a_*/b_* (ts, ts_ex, bid_px,
    bid_sz, ask_px, ask_sz, age, dead, fresh, until), ``fresh`` (both legs fresh at t),
    ``fresh_until`` and ``dt_fresh`` (how long after t both legs stay fresh, within the row).
    The last row holds until ``end_ns`` (the end of the recording) when it is given, or a leg's
    cap or break if that comes first; without ``end_ns`` it holds for no time. Rows before both
    venues have quoted are dropped.
    """
    grid = (pl.concat([qa.select(pl.col("ts").alias("t")), qb.select(pl.col("ts").alias("t"))])
            .unique().sort("t").set_sorted("t"))
    left = join_leg(grid, qa, breaks_a, "a", smax_a)
    both = join_leg(left, qb, breaks_b, "b", smax_b)
    return (both.filter(pl.col("a_ts").is_not_null(), pl.col("b_ts").is_not_null())
            .with_columns(pl.col("t").shift(-1)
                          .fill_null(pl.max_horizontal("t", pl.lit(end_ns, pl.Int64)))
                          .alias("_next"))
            .with_columns((pl.col("_next") - pl.col("t")).fill_null(0).alias("dt"),
                          (pl.col("a_fresh") & pl.col("b_fresh")).alias("fresh"))
            .with_columns(pl.when(pl.col("fresh"))
                          .then(pl.min_horizontal("_next", "a_until", "b_until"))
                          .otherwise(pl.col("t")).alias("fresh_until"))
            .with_columns((pl.col("fresh_until") - pl.col("t")).clip(lower_bound=0)
                          .alias("dt_fresh"))
            .drop("_next"))
