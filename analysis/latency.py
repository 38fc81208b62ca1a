"""Feed latency per venue: d = ts_local − ts_exchange.

d is the one-way delay plus the offset between the local clock and the venue's; the two cannot
be told apart from d alone, so min(d) is reported as the practical "delay + offset" floor.
Quantiles p1/p50/p99 (ms) per venue, and the hourly median to show drift over the session.

LazyFrame builders only; rows without an exchange time are left out (and counted).
"""

from __future__ import annotations

import polars as pl

from core.codec import MS_NS as MS


def _d(tob: pl.LazyFrame) -> pl.LazyFrame:
    return tob.select("exchange", "ts_local",
                      ((pl.col("ts_local").cast(pl.Int64) - pl.col("ts_exchange").cast(pl.Int64))
                       / MS).alias("d_ms"))


def latency_quantiles(tob: pl.LazyFrame) -> pl.LazyFrame:
    d = pl.col("d_ms").drop_nulls()
    return (_d(tob).group_by("exchange")
            .agg(pl.len().alias("rows"), pl.col("d_ms").null_count().alias("no_exchange_time"),
                 d.quantile(0.01, "linear").alias("p1_ms"), d.median().alias("p50_ms"),
                 d.quantile(0.99, "linear").alias("p99_ms"), d.min().alias("min_ms"))
            .sort("exchange"))


def latency_hourly(tob: pl.LazyFrame) -> pl.LazyFrame:
    return (_d(tob).drop_nulls("d_ms")
            .with_columns(pl.col("ts_local").dt.truncate("1h").alias("hour"))
            .group_by("exchange", "hour").agg(pl.col("d_ms").median().alias("p50_ms"),
                                              pl.len().alias("rows"))
            .sort("exchange", "hour"))


def latency_samples(tob: pl.LazyFrame, per_venue: int = 20_000) -> pl.LazyFrame:
    """An evenly thinned sample of d per venue, for box plots."""
    return (_d(tob).drop_nulls("d_ms")
            .with_columns(pl.int_range(pl.len()).over("exchange").alias("_i"),
                          pl.len().over("exchange").alias("_n"))
            .filter(pl.col("_i") % (pl.col("_n") // per_venue).clip(lower_bound=1) == 0)
            .select("exchange", "d_ms"))
