"""Helpers for asserting on recorded tables."""

from __future__ import annotations

import polars as pl


def msg_rank(l2: pl.DataFrame) -> pl.DataFrame:
    """``msg_id`` replaced by its dense rank (1, 2, ...). Ids are seeded from receive times, so
    in a live recording only their order is predictable; pass one symbol's rows."""
    return l2.with_columns(pl.col("msg_id").rank("dense").cast(pl.Int64))
