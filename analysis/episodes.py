"""Cross-venue edges and fee-adjusted opportunity episodes on an aligned pair (arbitrage spec §3-4).

For the ordered direction *buy on a at ask_a, sell on b at bid_b* ("a→b"):

* gross edge [bps] = 1e4 · (bid_b / ask_a − 1); the notebook's ratio is ask_a / bid_b (a crossing
  when below 1);
* net edge [bps] = gross − 1e4 · (taker_a + taker_b) (no slippage: top of book only);
* executable size = min(ask_sz_a, bid_sz_b) in base units; notional = size × ask_a.

The mid basis is 1e4 · (mid_b / mid_a − 1).

Episodes for a threshold τ are maximal runs of grid rows with both legs fresh and net > τ. A run
starts at its first row's time and ends at the next grid time after its last row (when the
condition stopped holding, or the end of the data: then ``open_at_end``). Runs less than
``merge_gap`` (50 ms) apart are merged; each episode holds at least one event by construction.
Per episode: duration, number of grid rows, peak net, time-averaged net (each row weighted by
how long it held), Σ over rows of net × notional (an upper bound on extractable P&L: every
quote update taken once at top-of-book size), and the two legs' age difference at the start.

LazyFrame builders only.
"""

from __future__ import annotations

from typing import Final

import polars as pl

DEFAULT_THRESHOLDS_BPS: Final = (0.0, 2.0, 5.0, 10.0)
DEFAULT_MERGE_GAP_MS: Final = 50.0
MS: Final = 1_000_000


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
    """Generic columns for one direction ("ab" or "ba"): t, dt, fresh, gross, net, notional,
    age_buy, age_sell."""
    buy, sell = ("a", "b") if d == "ab" else ("b", "a")
    return edges.select("t", "dt", "fresh", pl.col(f"gross_{d}").alias("gross"),
                        pl.col(f"net_{d}").alias("net"),
                        pl.col(f"notional_{d}").alias("notional"),
                        pl.col(f"{buy}_age").alias("age_buy"),
                        pl.col(f"{sell}_age").alias("age_sell"))


def episodes(view: pl.LazyFrame, tau_bps: float,
             merge_gap_ms: float = DEFAULT_MERGE_GAP_MS) -> pl.LazyFrame:
    """Episodes of ``net > tau`` with both legs fresh (see the module docstring)."""
    gap = int(merge_gap_ms * MS)
    last_t = pl.col("t").max()
    rows = (view.with_columns((pl.col("fresh") & (pl.col("net") > tau_bps)).fill_null(False)
                              .alias("_on"))
            .with_columns((pl.col("_on") & ~pl.col("_on").shift(1, fill_value=False))
                          .cum_sum().alias("_run"),
                          (pl.col("t") == last_t).alias("_last"))
            .filter(pl.col("_on")))
    runs = (rows.group_by("_run")
            .agg(pl.col("t").min().alias("start"),
                 (pl.col("t") + pl.col("dt")).max().alias("end"),
                 pl.len().alias("rows"),
                 pl.col("net").max().alias("peak_net_bps"),
                 (pl.col("net") * pl.col("dt")).sum().alias("_net_dt"),
                 pl.col("dt").sum().alias("_dt"),
                 pl.col("net").sum().alias("_net_sum"),
                 (pl.col("net") / 1e4 * pl.col("notional")).sum().alias("pnl_upper"),
                 (pl.col("age_buy") - pl.col("age_sell")).first().alias("age_gap_ns"),
                 pl.col("_last").any().alias("open_at_end"))
            .sort("start"))
    merged = (runs.with_columns(((pl.col("start") - pl.col("end").shift(1)) >= gap)
                                .fill_null(True).cum_sum().alias("_ep"))
              .group_by("_ep")
              .agg(pl.col("start").min(), pl.col("end").max(), pl.col("rows").sum(),
                   pl.col("peak_net_bps").max(), pl.col("_net_dt").sum(), pl.col("_dt").sum(),
                   pl.col("_net_sum").sum(), pl.col("pnl_upper").sum(),
                   pl.col("age_gap_ns").first(), pl.col("open_at_end").any())
              .sort("start"))
    return merged.select(
        "start", "end", (pl.col("end") - pl.col("start")).alias("duration_ns"), "rows",
        "peak_net_bps",
        pl.when(pl.col("_dt") > 0).then(pl.col("_net_dt") / pl.col("_dt"))
        .otherwise(pl.col("_net_sum") / pl.col("rows")).alias("mean_net_bps"),
        "_net_dt", "_dt", "pnl_upper", "age_gap_ns", "open_at_end")


def episode_stats(eps: pl.LazyFrame, hours: float, latency_ns: int | None,
                  rtt_ns: int) -> pl.LazyFrame:
    """One row: count, rate, duration quantiles (ms), peak and time-averaged net edge, P&L
    bound, stale-quote share and capturable count (duration > latency + order round trip)."""
    dur_ms = pl.col("duration_ns") / MS
    lat = None if latency_ns is None else int(latency_ns)
    stale = (pl.lit(None, pl.Float64) if lat is None
             else (pl.col("age_gap_ns").abs() > lat).mean())
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
        .otherwise(pl.col("mean_net_bps").mean()).alias("mean_net_bps"),
        pl.col("pnl_upper").sum().alias("pnl_upper"),
        stale.alias("stale_share"),
        capt.alias("capturable"),
    )


def edge_summary(edges: pl.LazyFrame) -> pl.LazyFrame:
    """Per pair, over rows with both legs fresh: gross edges both ways (time-weighted mean,
    p1/p50/p99, max), share of time crossed each way, ratio means, basis mean and std."""
    f = edges.filter(pl.col("fresh"))
    w = pl.col("dt").cast(pl.Float64)

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
            pl.len().alias("fresh_rows"), (w.sum() / 1e9).alias("fresh_seconds")]
    return f.select(out)


def basis_hourly(edges: pl.LazyFrame) -> pl.LazyFrame:
    """Mean and std of the mid basis per UTC hour (fresh rows)."""
    return (edges.filter(pl.col("fresh"))
            .with_columns(pl.col("t").cast(pl.Datetime("ns", "UTC")).dt.truncate("1h")
                          .alias("hour"))
            .group_by("hour").agg(pl.col("basis").mean().alias("basis_mean_bps"),
                                  pl.col("basis").std().alias("basis_std_bps"),
                                  pl.len().alias("rows"))
            .sort("hour"))
