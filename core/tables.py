"""The table registry: what each output table is (name, event type, exact polars schema).

This is the single source of truth for table names, column names and types: the Parquet writer,
the supervisor's end-of-run counts, the analysis loader and ``docs/data.md`` all read it. Every
table is written in the same hive layout (``<table>/exchange=<venue>/date=<YYYY-MM-DD>/``).
Timestamps are ``Datetime("ns", "UTC")``; prices and sizes are ``Float64`` in quote currency and
base-asset units.

The recorder's own four tables are registered here, then ``funding`` (written when the
``funding`` channel is recorded); plugins add theirs (a live analyzer's output,
for instance) through the ``bookwire_register_tables`` hook (:mod:`core.plugins`), and a consumer
that publishes rows declares their tables so that the supervisor registers them before any writer
starts. Registering the same table again is harmless; registering a name or an event type
differently is an error.

:func:`markdown` renders the registry as the tables section of ``docs/data.md`` (between the
markers :data:`BEGIN_MARK` and :data:`END_MARK`); ``python -m core.tables`` prints it, and a test
keeps the document equal to it.

Pure data: no I/O here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

import polars as pl

from core.schema import BookUpdate, Event, Funding, Health, TopOfBook, Trade

TS: Final = pl.Datetime("ns", "UTC")


@dataclass(frozen=True)
class Table:
    """One output table: one row per event of ``event_type`` (``l2``: one row per level)."""

    name: str
    event_type: type[Event]
    schema: Mapping[str, pl.DataType]
    description: str = ""
    #: column -> what it means (for the generated documentation)
    columns: Mapping[str, str] = field(default_factory=dict, compare=False, hash=False)

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

    def conflict(self, table: Table) -> str | None:
        """Why ``table`` cannot be registered (None: it can, or it already is)."""
        known = self._tables.get(table.name)
        if known is not None:
            if dict(known.schema) != dict(table.schema) or known.event_type is not table.event_type:
                return f"table {table.name!r} is already registered differently"
            return None
        if table.event_type in self._by_type:
            return (f"{table.event_type.__name__} already fills table "
                    f"{self._by_type[table.event_type].name!r}")
        return None

    def register(self, table: Table) -> None:
        problem = self.conflict(table)
        if problem is not None:
            raise ValueError(problem)
        if table.name in self._tables:
            return
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

_VENUE_COLUMNS: Final = {
    "ts_local": "receive time of the frame that carried the row (see Conventions)",
    "ts_exchange": "the venue's own time of the message; null where the venue gives none",
    "exchange": "the plugin name; also the hive partition",
    "symbol": "canonical `BASE-QUOTE`",
}

for _table in (
    Table("tob", TopOfBook, {
        "ts_local": TS, "ts_exchange": TS, "exchange": pl.String(), "symbol": pl.String(),
        "bid_px": pl.Float64(), "bid_sz": pl.Float64(), "ask_px": pl.Float64(),
        "ask_sz": pl.Float64(), "seq": pl.Int64(),
    }, "best bid and ask, one row per change", {
        **_VENUE_COLUMNS,
        "bid_px": "best bid, quote currency; null when the side is empty",
        "bid_sz": "size at the best bid, base units; null when the side is empty",
        "ask_px": "best ask, quote currency; null when the side is empty",
        "ask_sz": "size at the best ask, base units; null when the side is empty",
        "seq": "the venue's sequence id of the message; null where there is none",
    }),
    Table("l2", BookUpdate, {
        "ts_local": TS, "ts_exchange": TS, "exchange": pl.String(), "symbol": pl.String(),
        "side": pl.String(), "price": pl.Float64(), "size": pl.Float64(),
        "is_snapshot": pl.Boolean(), "seq": pl.Int64(), "msg_id": pl.Int64(),
    }, "every level update, snapshots flagged", {
        **_VENUE_COLUMNS,
        "side": '`"bid"` or `"ask"`',
        "price": "price of the level, quote currency",
        "size": "the new absolute size at that price, base units; 0 removes the level",
        "is_snapshot": "the rows of a snapshot replace the whole book",
        "seq": "the venue's sequence id of the message; null where there is none",
        "msg_id": "shared by every row of one venue message; strictly increasing per "
                  "(exchange, symbol) and unique across reconnects, restarts and runs",
    }),
    Table("trades", Trade, {
        "ts_local": TS, "ts_exchange": TS, "exchange": pl.String(), "symbol": pl.String(),
        "price": pl.Float64(), "size": pl.Float64(), "side": pl.String(),
        "trade_id": pl.String(),
    }, "public trades, taker side, base-asset sizes", {
        **_VENUE_COLUMNS,
        "price": "quote currency",
        "size": "base units",
        "side": 'the **taker\'s** side, `"buy"` or `"sell"`',
        "trade_id": "the venue's id of the trade",
    }),
    Table("health", Health, {
        "ts_local": TS, "exchange": pl.String(), "symbol": pl.String(), "event": pl.String(),
        "detail": pl.String(),
    }, "the data-quality ledger: connects, gaps, resyncs, drops, ...", {
        "ts_local": "when it happened (receive time, or the time a timer fired)",
        "exchange": "the venue (or the analyzer) it is about; also the hive partition",
        "symbol": "the symbol it is about; null for connection-wide events",
        "event": "one of the names listed below (`core.schema.HealthKind`)",
        "detail": "free text: counts, reasons, URLs",
    }),
    Table("funding", Funding, {
        "ts_local": TS, "ts_exchange": TS, "exchange": pl.String(), "symbol": pl.String(),
        "funding_rate": pl.Float64(), "funding_interval_s": pl.Int64(),
        "next_funding_time": TS, "mark_px": pl.Float64(), "index_px": pl.Float64(),
        "open_interest": pl.Float64(),
    }, "perpetual market context: funding, mark and index prices, open interest; one row "
       "whenever one of them changes", {
        **_VENUE_COLUMNS,
        "ts_exchange": "the venue's own time of the message (of the REST response for polled "
                       "values); null where the venue gives none",
        "funding_rate": "the funding rate of one interval, as a fraction (0.0001 = 0.01 %), for "
                        "the funding due at `next_funding_time`; positive: longs pay shorts; "
                        "null where the venue gives none",
        "funding_interval_s": "seconds between two fundings; null where the venue gives none",
        "next_funding_time": "when the next funding is paid (UTC); null where the venue gives "
                             "none",
        "mark_px": "mark price, quote currency; null where the venue gives none",
        "index_px": "index price, quote currency; null where the venue gives none",
        "open_interest": "open interest in base units (contracts x contract size); null where "
                         "the venue gives none",
    }),
):
    REGISTRY.register(_table)


def check_table(table: Table) -> None:
    """ValueError unless every column of a one-row-per-event table is an attribute of its event
    type (``exchange`` included: it is the hive partition); ``Datetime`` columns take integer UTC
    nanoseconds."""
    if not isinstance(table, Table):
        raise ValueError(f"{table!r} is not a core.tables.Table")
    fields = table.event_type.__struct_fields__
    missing = [c for c in table.schema if c not in fields]
    if missing:
        raise ValueError(f"{table.event_type.__name__} has no attributes {missing} for table "
                         f"{table.name!r}")


def add_table(table: Table) -> None:
    """Check and register one table (what ``bookwire_register_tables`` hooks reach)."""
    check_table(table)
    REGISTRY.register(table)


def register_table(event_type: type[Event], name: str, schema: Mapping[str, pl.DataType],
                   description: str = "") -> None:
    """Let the writers persist another one-row-per-event type (e.g. live analyzer output)."""
    add_table(Table(name, event_type, dict(schema), description))


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


# -- the tables section of docs/data.md ------------------------------------------------------------

BEGIN_MARK: Final = "<!-- tables: generated from the table registry by `python -m core.tables` -->"
END_MARK: Final = "<!-- end of generated tables -->"


def dtype_name(dtype: pl.DataType) -> str:
    """``Datetime(ns, UTC)``, ``Float64``, ``String``, ..."""
    if isinstance(dtype, pl.Datetime):
        return f"Datetime({dtype.time_unit}, {dtype.time_zone})"
    return str(dtype).removesuffix("()")


def markdown(registry: TableRegistry = REGISTRY) -> str:
    """Every registered table as Markdown, markers included (the recorder's tables first)."""
    lines = [BEGIN_MARK, ""]
    for name in registry.names():
        table = registry.get(name)
        lines += [f"### `{name}`: {table.description}", "",
                  f"One row per `{table.event_type.__name__}` event (kind `{table.kind}`"
                  + ("; one row per price level" if table.event_type is BookUpdate else "")
                  + f"), under `<out>/{name}/exchange=<venue>/date=<YYYY-MM-DD>/`.", "",
                  "| column | type | meaning |", "|---|---|---|"]
        lines += [f"| {col} | {dtype_name(dtype)} | {table.columns.get(col, '')} |"
                  for col, dtype in table.schema.items()]
        lines.append("")
    lines.append(END_MARK)
    return "\n".join(lines)


def replace_section(text: str, section: str) -> str:
    """``text`` with its generated tables section replaced by ``section``."""
    start, end = text.index(BEGIN_MARK), text.index(END_MARK) + len(END_MARK)
    return text[:start] + section + text[end:]


if __name__ == "__main__":
    from core.plugins import load_plugins

    load_plugins()
    print(markdown())
