"""Lazy, typed access to the recorder's Parquet tables.

Layout: ``<data>/<table>/exchange=<venue>/date=<YYYY-MM-DD>/<file>.parquet`` for the tables
``tob``, ``l2``, ``trades`` and ``health`` (and any table a plugin registered, such as
``spreads``). Every scan uses the schema of the table registry (``core.tables``, the one the
writer uses), hive partitioning for ``exchange``
and ``date`` (string-typed, so a file that also stores ``exchange`` gives the same column, and a
file without it still gets it from its path), ``missing_columns="insert"`` and
``extra_columns="ignore"`` so older or newer files still scan. The ``date`` partition column is
used for pruning and then dropped.

Missing inputs raise :class:`MissingData` with a one-line message naming what exists instead.
Nothing here collects a frame except the small look-ups that build those messages.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import polars as pl

from core.schema import SYMBOL_BREAKS, VENUE_BREAKS, HealthKind
from core.tables import RECORDER_TABLES, REGISTRY

TS: Final = pl.Datetime("ns", "UTC")

# The recorder's four tables, exactly as the table registry defines them (single source of truth).
SCHEMAS: Final[dict[str, dict[str, pl.DataType]]] = {
    table: dict(REGISTRY.get(table).schema) for table in RECORDER_TABLES}


def schema_of(table: str) -> dict[str, pl.DataType]:
    """The registry's schema of ``table``; tables registered by plugins (the live analyzer's)
    are loaded on first use."""
    if table not in REGISTRY:
        from core.plugins import load_plugins

        load_plugins()
    if table not in REGISTRY:
        raise MissingData(f"no table named {table!r}; known: {', '.join(REGISTRY.names())}")
    return dict(REGISTRY.get(table).schema)

# Health events after which a venue's book (and its last quote) is no longer trusted until the
# next snapshot: the recorder's trust rule (core.schema), plus a malformed frame, which the
# analyses treat conservatively as possibly lost data.
BREAK_EVENTS: Final = SYMBOL_BREAKS | VENUE_BREAKS | {HealthKind.DECODE_ERROR}

# Health events after which a venue's last top-of-book quote no longer stands until its next
# quote: the book's trust rule, plus a new connection and a subscription without a snapshot.
# The live spread analyzer and the offline spreads both use this one set.
QUOTE_BREAKS: Final = SYMBOL_BREAKS | VENUE_BREAKS | {HealthKind.CONNECTED,
                                                      HealthKind.NO_SNAPSHOT}


class MissingData(Exception):
    """The requested data are not there; the message is one line for the user."""


def table_dir(data: Path, table: str) -> Path:
    return Path(data) / table


def venues(data: Path, table: str) -> list[str]:
    """Venues with a partition directory for ``table`` (no file is read)."""
    d = table_dir(data, table)
    if not d.is_dir():
        return []
    return sorted(p.name.split("=", 1)[1] for p in d.iterdir()
                  if p.is_dir() and p.name.startswith("exchange=") and any(p.rglob("*.parquet")))


def dates(data: Path, table: str, exchange: str) -> list[str]:
    d = table_dir(data, table) / f"exchange={exchange}"
    if not d.is_dir():
        return []
    return sorted(p.name.split("=", 1)[1] for p in d.iterdir()
                  if p.is_dir() and p.name.startswith("date=") and any(p.glob("*.parquet")))


def require_venues(data: Path, table: str, wanted: Iterable[str] | None = None) -> list[str]:
    """The venues to use; raises :class:`MissingData` when the table or a venue is absent."""
    have = venues(data, table)
    if not have:
        raise MissingData(f"no '{table}' table under {data} (expected {table}/exchange=*/date=*/"
                          "*.parquet)")
    if wanted is None:
        return have
    want = list(wanted)
    missing = [v for v in want if v not in have]
    if missing:
        raise MissingData(f"no '{table}' data for {', '.join(missing)} under {data}; "
                          f"available: {', '.join(have)}")
    return want


def scan(data: Path, table: str, *, exchanges: Iterable[str] | None = None,
         symbol: str | None = None, start: datetime | None = None,
         end: datetime | None = None) -> pl.LazyFrame:
    """Typed lazy scan of one table, optionally filtered (partition pruning on exchange/date)."""
    schema = schema_of(table)
    venue_list = require_venues(data, table, exchanges)
    pattern = str(table_dir(data, table) / "exchange=*" / "date=*" / "*.parquet")
    lf = pl.scan_parquet(pattern, hive_partitioning=True, schema=schema,
                         hive_schema={"exchange": pl.String(), "date": pl.String()},
                         missing_columns="insert", extra_columns="ignore")
    lf = lf.filter(pl.col("exchange").is_in(venue_list))
    if start is not None:
        lf = lf.filter(pl.col("date") >= _day(start), pl.col("ts_local") >= _utc(start))
    if end is not None:
        lf = lf.filter(pl.col("date") <= _day(end), pl.col("ts_local") <= _utc(end))
    if symbol is not None:
        lf = lf.filter(pl.col("symbol") == symbol)
    return lf.select(list(schema))


def symbols(data: Path, table: str, exchanges: Iterable[str] | None = None) -> list[str]:
    """Symbols present (a small collect, used to explain an empty selection)."""
    lf = scan(data, table, exchanges=exchanges).select("symbol").unique()
    return sorted(s for s in lf.collect()["symbol"].to_list() if s is not None)


def time_range(lf: pl.LazyFrame) -> tuple[datetime | None, datetime | None]:
    r = lf.select(pl.col("ts_local").min().alias("a"), pl.col("ts_local").max().alias("b"))
    row = r.collect().row(0)
    return row[0], row[1]


def breaks(data: Path, exchange: str, symbol: str, *, start: datetime | None = None,
           end: datetime | None = None,
           events: frozenset[str] = BREAK_EVENTS) -> pl.LazyFrame:
    """``ts_local`` and ``event`` of the health events that break trust in ``symbol``'s feed:
    rows for that symbol, and connection-wide events (``VENUE_BREAKS``, ``connected``) whatever
    their symbol column holds. Empty when there is no health table."""
    if exchange not in venues(data, "health"):
        return pl.LazyFrame(schema={"ts_local": TS, "event": pl.String()})
    lf = scan(data, "health", exchanges=[exchange], start=start, end=end)
    wide = sorted(VENUE_BREAKS | {HealthKind.CONNECTED})
    return (lf.filter(pl.col("event").is_in(sorted(events)),
                      pl.col("symbol").is_null() | (pl.col("symbol") == symbol)
                      | pl.col("event").is_in(wide))
            .select("ts_local", "event").sort("ts_local"))


def _utc(t: datetime) -> datetime:
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def _day(t: datetime) -> str:
    return _utc(t).strftime("%Y-%m-%d")


def write_table(df: pl.DataFrame, data: Path, table: str, name: str = "part-0.parquet") -> None:
    """Write rows of one table in the recorder's layout (used by the demo-data script and tests).

    Splits by exchange and UTC date; columns are cast to the table's schema.
    """
    schema = schema_of(table)
    df = df.select([pl.col(c).cast(t) for c, t in schema.items()])
    df = df.with_columns(pl.col("ts_local").dt.strftime("%Y-%m-%d").alias("_date"))
    for (ex, day), part in df.group_by("exchange", "_date", maintain_order=True):
        d = table_dir(data, table) / f"exchange={ex}" / f"date={day}"
        d.mkdir(parents=True, exist_ok=True)
        part.drop("_date").write_parquet(d / name)
