"""The table registry: what each output table is (name, event type, exact polars schema).

This is the single source of truth for table names, column names and types: the Parquet writer,
the supervisor's end-of-run counts, the analysis loader and ``docs/data.md`` all read it. Every
table is written in the same hive layout (``<table>/exchange=<venue>/date=<YYYY-MM-DD>/``).
Timestamps are ``Datetime("ns", "UTC")``; prices and sizes are ``Float64`` in quote currency and
base-asset units.

The recorder's own four tables are registered here; plugins add theirs (a live analyzer's output,
for instance) with :func:`register_table`. Registering the same table again is harmless;
registering a name or an event type differently is an error.

Pure data: no I/O here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

import polars as pl

from core.schema import BookUpdate, Event, Health, TopOfBook, Trade

TS: Final = pl.Datetime("ns", "UTC")


@dataclass(frozen=True)
class Table:
    """One output table: one row per event of ``event_type`` (``l2``: one row per level)."""

    name: str
    event_type: type[Event]
    schema: Mapping[str, pl.DataType]
    description: str = ""

    @property
    def kind(self) -> str:
        """The msgspec tag of the table's events (``trade`` for the ``trades`` table)."""
        return str(self.event_type.__struct_config__.tag)


class TableRegistry:
    """Table name -> :class:`Table`, in registration order (the recorder's tables first)."""

    def __init__(self) -> None:
        self._tables: dict[str, Table] = {}
        self._by_type: dict[type[Event], Table] = {}
        self._by_kind: dict[str, Table] = {}

    def register(self, table: Table) -> None:
        known = self._tables.get(table.name)
        if known is not None:
            if dict(known.schema) != dict(table.schema) or known.event_type is not table.event_type:
                raise ValueError(f"table {table.name!r} is already registered differently")
            return
        if table.event_type in self._by_type:
            raise ValueError(f"{table.event_type.__name__} already fills table "
                             f"{self._by_type[table.event_type].name!r}")
        self._tables[table.name] = table
        self._by_type[table.event_type] = table
        self._by_kind[table.kind] = table

    def get(self, name: str) -> Table:
        return self._tables[name]

    def names(self) -> list[str]:
        return list(self._tables)

    def of_type(self, event_type: type[Event]) -> Table | None:
        return self._by_type.get(event_type)

    def of_kind(self, kind: str) -> Table | None:
        return self._by_kind.get(kind)

    def __contains__(self, name: object) -> bool:
        return name in self._tables


REGISTRY: Final = TableRegistry()

#: the recorder's own tables, always written
RECORDER_TABLES: Final = ("tob", "l2", "trades", "health")

for _table in (
    Table("tob", TopOfBook, {
        "ts_local": TS, "ts_exchange": TS, "exchange": pl.String(), "symbol": pl.String(),
        "bid_px": pl.Float64(), "bid_sz": pl.Float64(), "ask_px": pl.Float64(),
        "ask_sz": pl.Float64(), "seq": pl.Int64(),
    }, "best bid and ask, one row per change"),
    Table("l2", BookUpdate, {
        "ts_local": TS, "ts_exchange": TS, "exchange": pl.String(), "symbol": pl.String(),
        "side": pl.String(), "price": pl.Float64(), "size": pl.Float64(),
        "is_snapshot": pl.Boolean(), "seq": pl.Int64(), "msg_id": pl.Int64(),
    }, "every level update, snapshots flagged"),
    Table("trades", Trade, {
        "ts_local": TS, "ts_exchange": TS, "exchange": pl.String(), "symbol": pl.String(),
        "price": pl.Float64(), "size": pl.Float64(), "side": pl.String(),
        "trade_id": pl.String(),
    }, "public trades, taker side, base-asset sizes"),
    Table("health", Health, {
        "ts_local": TS, "exchange": pl.String(), "symbol": pl.String(), "event": pl.String(),
        "detail": pl.String(),
    }, "the data-quality ledger: connects, gaps, resyncs, drops, ..."),
):
    REGISTRY.register(_table)


def register_table(event_type: type[Event], name: str, schema: Mapping[str, pl.DataType],
                   description: str = "") -> None:
    """Let the writers persist another one-row-per-event type (e.g. live analyzer output).
    Column names must be attribute names of ``event_type`` (``exchange`` included: it is the
    hive partition); ``Datetime`` columns take integer UTC nanoseconds."""
    missing = [c for c in schema if c not in event_type.__struct_fields__]
    if missing:
        raise ValueError(f"{event_type.__name__} has no attributes {missing} for table {name!r}")
    REGISTRY.register(Table(name, event_type, dict(schema), description))


def table_of(event: Event) -> str:
    table = REGISTRY.of_type(type(event))
    return table.name if table is not None else "health"


def table_of_kind(kind: str) -> str:
    """The table of an event kind (its msgspec tag); unknown kinds are counted as health."""
    table = REGISTRY.of_kind(kind)
    return table.name if table is not None else "health"


def schema_of(name: str) -> dict[str, pl.DataType]:
    return dict(REGISTRY.get(name).schema)


def tables_in_order() -> list[str]:
    """The recorder's tables, then registered ones."""
    return REGISTRY.names()


def empty_frame(name: str) -> pl.DataFrame:
    return pl.DataFrame(schema=schema_of(name))
