"""Funding in the spread report: the basis beside the funding-rate difference, and round trips
held across a funding time.

A persistent basis between two perpetuals is usually carry, not opportunity: the venue whose
longs pay more funding trades rich. From the ``funding`` table (one row per change of a venue's
funding rate, next funding time, mark, index or open interest):

* **Rates on the pair's timeline** (:func:`rates_on_grid`): each venue's latest funding rate as
  of every grid time of the aligned pair (no look-ahead), normalised to **bps per 8 hours**
  (``rate / interval x 8 h``) so that venues with 1-, 4- and 8-hour intervals compare; a venue
  whose rows give no interval (Binance's stream) is taken at 8 hours, and the report says so.
  :func:`funding_hourly` averages them over the same fresh time and UTC hours as the mid basis
  (:func:`analysis.episodes.basis_hourly`): ``funding_diff_bps`` = rate of b − rate of a, the
  carry a long-b/short-a position pays (positive: b's longs pay more, b should trade rich).
* **Funding times** (:func:`funding_times`): every distinct ``next_funding_time`` a venue
  announced, with the last rate it announced for it: the rate paid at that time.
* **Round trips** (:func:`round_trips`): an episode of *buy on a, sell on b* is a position long a
  and short b opened at the episode's start and closed at its end (sell on a at its bid, buy on b
  at its ask). Its net edge in bps of notional is

      entry gross + exit gross − 2 x (taker_a + taker_b) + funding

  where ``funding`` = 1e4 x (Σ rates of b's fundings in (start, end] − Σ rates of a's): the long
  pays its venue's rate, the short receives its own (a negative rate reverses both). An episode
  with a funding time of either venue inside it is flagged ``spans_funding``.

LazyFrame builders and small frames; no I/O beyond :func:`load_funding`'s scan.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Final

import polars as pl

from analysis.load import scan, venues
from core.codec import S_NS

EIGHT_HOURS_S: Final = 8 * 3600
#: the interval assumed for a venue whose rows give none (Binance's stream)
DEFAULT_INTERVAL_S: Final = EIGHT_HOURS_S
FUNDING_SCHEMA: Final = {"exchange": pl.String(), "ts": pl.Int64(), "funding_rate": pl.Float64(),
                         "funding_interval_s": pl.Int64(), "next_funding_time": pl.Int64()}


def load_funding(data: Path, wanted: list[str], symbol: str, start: datetime | None = None,
                 end: datetime | None = None) -> pl.DataFrame:
    """The funding rows of ``symbol`` on ``wanted`` venues: exchange, ts (receipt time, ns),
    funding_rate, funding_interval_s, next_funding_time (ns); empty when none was recorded."""
    have = [v for v in wanted if v in venues(data, "funding")]
    if not have:
        return pl.DataFrame(schema=FUNDING_SCHEMA)
    return (scan(data, "funding", exchanges=have, symbol=symbol, start=start, end=end)
            .select("exchange", pl.col("ts_local").cast(pl.Int64).alias("ts"), "funding_rate",
                    "funding_interval_s",
                    pl.col("next_funding_time").cast(pl.Int64).alias("next_funding_time"))
            .drop_nulls("funding_rate").sort("exchange", "ts").collect())


def rate_8h_bps() -> pl.Expr:
    """The funding rate of a row in bps per 8 hours."""
    interval = pl.col("funding_interval_s").fill_null(DEFAULT_INTERVAL_S).cast(pl.Float64)
    return 1e4 * pl.col("funding_rate") * EIGHT_HOURS_S / interval


def rates_on_grid(edges: pl.LazyFrame, funding: pl.DataFrame, a: str, b: str) -> pl.LazyFrame:
    """``edges`` (an aligned pair, column ``t``) with ``a_funding_bps`` and ``b_funding_bps``:
    each venue's latest rate as of ``t``, bps per 8 h (null before its first row)."""
    out = edges
    for p, venue in (("a", a), ("b", b)):
        mine = (funding.lazy().filter(pl.col("exchange") == venue)
                .select(pl.col("ts").alias(f"_{p}_fts"), rate_8h_bps().alias(f"{p}_funding_bps"))
                .sort(f"_{p}_fts").set_sorted(f"_{p}_fts"))
        out = out.join_asof(mine, left_on="t", right_on=f"_{p}_fts",
                            strategy="backward").drop(f"_{p}_fts")
    return out


def funding_hourly(edges: pl.LazyFrame) -> pl.LazyFrame:
    """Per UTC hour, over the time both legs were fresh (as the basis): the mid basis and each
    venue's funding rate, time-weighted, and their difference b − a (bps per 8 h)."""
    w = pl.col("dt_fresh").cast(pl.Float64)

    def tw(c: str) -> pl.Expr:
        ok = pl.col(c).is_not_null()
        return pl.when((w * ok).sum() > 0).then((pl.col(c).fill_null(0) * w).sum()
                                               / (w * ok).sum()).otherwise(None)

    return (edges.filter(pl.col("fresh") & (pl.col("dt_fresh") > 0))
            .with_columns(pl.col("t").cast(pl.Datetime("ns", "UTC")).dt.truncate("1h")
                          .alias("hour"),
                          (pl.col("b_funding_bps") - pl.col("a_funding_bps"))
                          .alias("funding_diff_bps"))
            .group_by("hour")
            .agg(tw("basis").alias("basis_tw_bps"), tw("a_funding_bps").alias("funding_a_bps"),
                 tw("b_funding_bps").alias("funding_b_bps"),
                 tw("funding_diff_bps").alias("funding_diff_bps"),
                 (w.sum() / S_NS).alias("fresh_seconds"))
            .sort("hour"))


def funding_times(funding: pl.DataFrame) -> pl.DataFrame:
    """exchange, funding_time (ns), rate: every announced funding time with the last rate
    announced for it before it came (rows after the time do not count)."""
    return (funding.drop_nulls("next_funding_time")
            .filter(pl.col("ts") < pl.col("next_funding_time"))
            .sort("exchange", "ts")
            .group_by("exchange", "next_funding_time", maintain_order=True)
            .agg(pl.col("funding_rate").last().alias("rate"))
            .rename({"next_funding_time": "funding_time"})
            .sort("exchange", "funding_time"))


def _funding_of(eps: pl.DataFrame, times: pl.DataFrame, venue: str, name: str) -> pl.DataFrame:
    """Per episode (by ``_i``): Σ rates and count of ``venue``'s funding times in (start, end]."""
    mine = times.filter(pl.col("exchange") == venue).select("funding_time", "rate")
    hits = (eps.select("_i", "start", "end").join(mine, how="cross")
            .filter((pl.col("funding_time") > pl.col("start"))
                    & (pl.col("funding_time") <= pl.col("end")))
            .group_by("_i").agg(pl.col("rate").sum().alias(f"{name}_rate"),
                                pl.len().alias(f"{name}_fundings")))
    return eps.join(hits, on="_i", how="left").with_columns(
        pl.col(f"{name}_rate").fill_null(0.0), pl.col(f"{name}_fundings").fill_null(0))


def round_trips(eps: pl.DataFrame, edges: pl.DataFrame, d: str, buy: str, sell: str,
                times: pl.DataFrame, cost_bps: float | None) -> pl.DataFrame:
    """Episodes of direction ``d`` (``ab``: buy on a) with the round trip held across them:
    ``rt_entry_bps`` (gross edge at the start), ``rt_exit_bps`` (the reverse gross edge as of
    the end: closing both legs), ``fundings`` (funding times of either venue inside),
    ``spans_funding``, ``funding_bps`` (received by the position, see the module docstring),
    ``rt_net_bps`` (null without both fees)."""
    reverse = "gross_ba" if d == "ab" else "gross_ab"
    ex = (edges.select("t", pl.col(reverse).alias("rt_exit_bps")).sort("t")
          .set_sorted("t"))
    out = eps.with_row_index("_i").sort("end")
    out = out.join_asof(ex, left_on="end", right_on="t", strategy="backward").drop("t")
    out = _funding_of(out, times, buy, "_buy")
    out = _funding_of(out, times, sell, "_sell")
    cost = pl.lit(None, pl.Float64) if cost_bps is None else pl.lit(2 * cost_bps)
    return (out.with_columns(
                (pl.col("_buy_fundings") + pl.col("_sell_fundings")).alias("fundings"),
                (1e4 * (pl.col("_sell_rate") - pl.col("_buy_rate"))).alias("funding_bps"))
            .with_columns((pl.col("fundings") > 0).alias("spans_funding"),
                          (pl.col("rt_entry_bps") + pl.col("rt_exit_bps") - cost
                           + pl.col("funding_bps")).alias("rt_net_bps"))
            .sort("_i").drop("_i", "_buy_rate", "_sell_rate", "_buy_fundings",
                             "_sell_fundings"))


__all__ = ["DEFAULT_INTERVAL_S", "funding_hourly", "funding_times", "load_funding",
           "rate_8h_bps", "rates_on_grid", "round_trips"]
