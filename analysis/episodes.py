"""Cross-venue edges and fee-adjusted opportunity episodes on an aligned pair.

For the ordered direction *buy on a at ask_a, sell on b at bid_b* ("a→b"):

* gross edge [bps] = 1e4 · (bid_b / ask_a − 1); the ask/bid ratio ask_a / bid_b is kept in the
  tables (a crossing when below 1), the figures show edges in bps;
* net edge [bps] = gross − 1e4 · (taker_a + taker_b) (no slippage: top of book only);
* executable size = min(ask_sz_a, bid_sz_b) in base units; notional = size × ask_a.

The mid basis is 1e4 · (mid_b / mid_a − 1).

Episodes for a threshold τ are maximal stretches of time with both legs fresh and net > τ, in
continuous time: a grid row counts from its time t until ``fresh_until`` (the next grid time, or
the instant a leg went stale or dead, :mod:`analysis.align`), so an episode ends when the edge
dropped, or exactly when a leg's age passed its cap. Stretches less than ``merge_gap`` (50 ms)
apart are merged; an edge that held for no time is no episode. Per episode: duration, number of
grid rows, peak net, the gross edge at the start (``rt_entry_bps``: the entry of a round trip,
:mod:`analysis.funding`), time-averaged net (each row weighted by how long it held), Σ over rows of
net × notional (an upper bound on extractable P&L: every quote update taken once at top-of-book
size), the legs' age difference at the start, and the **refresh test** of the staleness
diagnostic:

* the *older* leg at the start is the one whose quote is older (its venue may simply not have
  caught up with a move the other venue already shows);
* ``confirmed``: that leg's next quote arrived while the episode was running and the crossing
  was still there with it: the dislocation is real at both venues' latest prices;
* ``artefact``: the crossing was gone with that next quote (the episode ended at it, or paused
  there): a stale-quote artefact;
* ``unresolved``: the episode ended before the older leg quoted again.

LazyFrame builders only; the live analyzer applies the same definitions event by event.
"""

from __future__ import annotations

from typing import Final

import polars as pl

from core.codec import MS_NS, S_NS

DEFAULT_THRESHOLDS_BPS: Final = (0.0, 2.0, 5.0, 10.0)
DEFAULT_MERGE_GAP_MS: Final = 50.0


def pair_edges(aligned: pl.LazyFrame, fee_a: float | None, fee_b: float | None) -> pl.LazyFrame:
    """Add both directions' edges, sizes, ratios and the mid basis to an aligned pair."""
    cost = None if fee_a is None or fee_b is None else 1e4 * (fee_a + fee_b)
    lit_cost = pl.lit(cost, dtype=pl.Float64)
    mid_a = (pl.col("a_bid_px") + pl.col("a_ask_px")) / 2
    mid_b = (pl.col("b_bid_px") + pl.col("b_ask_px")) / 2
    return aligned.with_columns(
        (1e4 * (pl.col("b_bid_px") / pl.col("a_ask_px") - 1)).alias("gross_ab"),
        (1e4 * (pl.col("a_bid_px") / pl.col("b_ask_px") - 1)).alias("gross_ba"),
        (pl.col("a_ask_px") / pl.col("b_bid_px")).alias("ratio_ab"),
        (pl.col("b_ask_px") / pl.col("a_bid_px")).alias("ratio_ba"),
        pl.min_horizontal("a_ask_sz", "b_bid_sz").alias("size_ab"),
        pl.min_horizontal("b_ask_sz", "a_bid_sz").alias("size_ba"),
        (1e4 * (mid_b / mid_a - 1)).alias("basis"),
    ).with_columns(
        (pl.col("gross_ab") - lit_cost).alias("net_ab"),
        (pl.col("gross_ba") - lit_cost).alias("net_ba"),
        (pl.col("size_ab") * pl.col("a_ask_px")).alias("notional_ab"),
        (pl.col("size_ba") * pl.col("b_ask_px")).alias("notional_ba"),
    )


def direction(edges: pl.LazyFrame, d: str) -> pl.LazyFrame:
    """Generic columns for one direction ("ab" or "ba"): t, dt, dt_fresh, fresh, gross, net,
    notional, age_buy, age_sell, ts_buy, ts_sell (the legs' quote times)."""
    buy, sell = ("a", "b") if d == "ab" else ("b", "a")
    return edges.select("t", "dt", "dt_fresh", "fresh", pl.col(f"gross_{d}").alias("gross"),
                        pl.col(f"net_{d}").alias("net"),
                        pl.col(f"notional_{d}").alias("notional"),
                        pl.col(f"{buy}_age").alias("age_buy"),
                        pl.col(f"{sell}_age").alias("age_sell"),
                        pl.col(f"{buy}_ts").alias("ts_buy"),
                        pl.col(f"{sell}_ts").alias("ts_sell"))


def _next_quote(leg: str) -> list[pl.Expr]:
    """Per row: the time of that leg's next quote after the row, and whether the edge was on
    with it."""
    updated = pl.col(f"ts_{leg}") == pl.col("t")
    return [pl.when(updated).then(pl.col("t")).shift(-1).backward_fill()
            .alias(f"_next_{leg}"),
            pl.when(updated).then(pl.col("_on")).shift(-1).backward_fill()
            .alias(f"_on_next_{leg}")]


def episodes(view: pl.LazyFrame, tau_bps: float,
             merge_gap_ms: float = DEFAULT_MERGE_GAP_MS) -> pl.LazyFrame:
    """Episodes of ``net > tau`` with both legs fresh (see the module docstring)."""
    gap = int(merge_gap_ms * MS_NS)
    last_t = pl.col("t").max()
    older_buy = pl.col("age_buy") >= pl.col("age_sell")
    rows = (view.with_columns((pl.col("fresh") & (pl.col("net") > tau_bps)
                               & (pl.col("dt_fresh") > 0)).fill_null(False).alias("_on"),
                              (pl.col("t") + pl.col("dt_fresh")).alias("_end"))
            .with_columns(*_next_quote("buy"), *_next_quote("sell"))
            .with_columns(
                (pl.col("_on") & ~(pl.col("_on").shift(1, fill_value=False)
                                   & (pl.col("_end").shift(1) == pl.col("t"))))
                .cum_sum().alias("_run"),
                (pl.col("t") == last_t).alias("_last"),
                pl.when(older_buy).then(pl.col("_next_buy")).otherwise(pl.col("_next_sell"))
                .alias("_refresh_t"),
                pl.when(older_buy).then(pl.col("_on_next_buy"))
                .otherwise(pl.col("_on_next_sell")).alias("_refresh_on"),
                pl.when(older_buy).then(pl.lit("buy")).otherwise(pl.lit("sell"))
                .alias("older_leg"))
            .filter(pl.col("_on")))
    w = pl.col("dt_fresh")
    runs = (rows.group_by("_run")
            .agg(pl.col("t").min().alias("start"),
                 pl.col("_end").max().alias("end"),
                 pl.len().alias("rows"),
                 pl.col("net").max().alias("peak_net_bps"),
                 pl.col("gross").first().alias("rt_entry_bps"),
                 (pl.col("net") * w).sum().alias("_net_dt"),
                 w.sum().alias("_dt"),
                 (pl.col("net") / 1e4 * pl.col("notional")).sum().alias("pnl_upper"),
                 (pl.col("age_buy") - pl.col("age_sell")).first().alias("age_gap_ns"),
                 pl.col("older_leg").first(), pl.col("_refresh_t").first(),
                 pl.col("_refresh_on").first(),
                 pl.col("_last").any().alias("open_at_end"))
            .sort("start"))
    merged = (runs.with_columns(((pl.col("start") - pl.col("end").shift(1)) >= gap)
                                .fill_null(True).cum_sum().alias("_ep"))
              .group_by("_ep")
              .agg(pl.col("start").min(), pl.col("end").max(), pl.col("rows").sum(),
                   pl.col("peak_net_bps").max(), pl.col("rt_entry_bps").first(),
                   pl.col("_net_dt").sum(), pl.col("_dt").sum(),
                   pl.col("pnl_upper").sum(), pl.col("age_gap_ns").first(),
                   pl.col("older_leg").first(), pl.col("_refresh_t").first(),
                   pl.col("_refresh_on").first(), pl.col("open_at_end").any())
              .sort("start"))
    refresh = pl.col("_refresh_t")
    verdict = (pl.when(refresh.is_null()).then(pl.lit("unresolved"))
               .when((refresh < pl.col("end")) & pl.col("_refresh_on").fill_null(False))
               .then(pl.lit("confirmed"))
               .when(refresh <= pl.col("end")).then(pl.lit("artefact"))
               .otherwise(pl.lit("unresolved")))
    return merged.select(
        "start", "end", (pl.col("end") - pl.col("start")).alias("duration_ns"), "rows",
        "peak_net_bps", (pl.col("_net_dt") / pl.col("_dt")).alias("mean_net_bps"),
        "rt_entry_bps",
        "_net_dt", "_dt", "pnl_upper", "age_gap_ns", "older_leg",
        (refresh - pl.col("start")).alias("older_refresh_ns"), verdict.alias("verdict"),
        "open_at_end")


def episode_stats(eps: pl.LazyFrame, hours: float, latency_ns: int | None,
                  rtt_ns: int) -> pl.LazyFrame:
    """One row: count, rate, duration quantiles (ms), peak and time-averaged net edge, P&L
    bound, the refresh test's shares (confirmed, artefact) and the capturable count (duration >
    latency + order round trip)."""
    dur_ms = pl.col("duration_ns") / MS_NS
    lat = None if latency_ns is None else int(latency_ns)
    capt = (pl.lit(None, pl.UInt32) if lat is None
            else (pl.col("duration_ns") > lat + rtt_ns).sum().cast(pl.UInt32))
    return eps.select(
        pl.len().alias("episodes"),
        (pl.len() / hours if hours > 0 else pl.lit(None, pl.Float64)).alias("per_hour"),
        dur_ms.median().alias("dur_median_ms"),
        dur_ms.quantile(0.9, "linear").alias("dur_p90_ms"),
        dur_ms.max().alias("dur_max_ms"),
        pl.col("peak_net_bps").max().alias("peak_net_bps"),
        pl.when(pl.col("_dt").sum() > 0).then(pl.col("_net_dt").sum() / pl.col("_dt").sum())
        .otherwise(None).alias("mean_net_bps"),
        pl.col("pnl_upper").sum().alias("pnl_upper"),
        (pl.col("verdict") == "confirmed").mean().alias("confirmed_share"),
        (pl.col("verdict") == "artefact").mean().alias("artefact_share"),
        capt.alias("capturable"),
    )


def edge_summary(edges: pl.LazyFrame) -> pl.LazyFrame:
    """Per pair, over the time with both legs fresh (rows weighted by ``dt_fresh``): gross edges
    both ways (time-weighted mean, p1/p50/p99 over rows, max), share of that time crossed each
    way, ratio means, basis mean and std."""
    f = edges.filter(pl.col("fresh") & (pl.col("dt_fresh") > 0))
    w = pl.col("dt_fresh").cast(pl.Float64)

    def tw(c: str) -> pl.Expr:
        return pl.when(w.sum() > 0).then((pl.col(c) * w).sum() / w.sum()).otherwise(
            pl.col(c).mean())

    out = []
    for d in ("ab", "ba"):
        g = f"gross_{d}"
        out += [tw(g).alias(f"{g}_mean_bps"),
                pl.col(g).quantile(0.01, "linear").alias(f"{g}_p1_bps"),
                pl.col(g).median().alias(f"{g}_p50_bps"),
                pl.col(g).quantile(0.99, "linear").alias(f"{g}_p99_bps"),
                pl.col(g).max().alias(f"{g}_max_bps"),
                pl.when(w.sum() > 0).then((w * (pl.col(g) > 0)).sum() / w.sum())
                .otherwise(None).alias(f"cross_{d}_time_share"),
                tw(f"ratio_{d}").alias(f"ratio_{d}_mean")]
    out += [tw("basis").alias("basis_mean_bps"), pl.col("basis").std().alias("basis_std_bps"),
            pl.len().alias("fresh_rows"), (w.sum() / S_NS).alias("fresh_seconds")]
    return f.select(out)


def basis_hourly(edges: pl.LazyFrame) -> pl.LazyFrame:
    """Mean and std of the mid basis per UTC hour (rows with both legs fresh)."""
    return (edges.filter(pl.col("fresh") & (pl.col("dt_fresh") > 0))
            .with_columns(pl.col("t").cast(pl.Datetime("ns", "UTC")).dt.truncate("1h")
                          .alias("hour"))
            .group_by("hour").agg(pl.col("basis").mean().alias("basis_mean_bps"),
                                  pl.col("basis").std().alias("basis_std_bps"),
                                  pl.len().alias("rows"))
            .sort("hour"))
