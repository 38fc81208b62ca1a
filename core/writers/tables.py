"""The four output tables: their exact polars schemas and how events become rows.

This is the single source of truth for column names and types (``docs/data.md`` documents them,
``analysis.load`` reads them). Timestamps are ``Datetime("ns", "UTC")``; prices and sizes are
``Float64`` in quote currency and base-asset units.

Pure data shaping: no I/O here.
"""

from __future__ import annotations

from typing import Final

import polars as pl

from core.schema import BookUpdate, Event, Health, TopOfBook, Trade

TS = pl.Datetime("ns", "UTC")

SCHEMAS: Final[dict[str, dict[str, pl.DataType]]] = {
    "tob": {
        "ts_local": TS, "ts_exchange": TS, "exchange": pl.String(), "symbol": pl.String(),
        "bid_px": pl.Float64(), "bid_sz": pl.Float64(), "ask_px": pl.Float64(),
        "ask_sz": pl.Float64(), "seq": pl.Int64(),
    },
    "l2": {
        "ts_local": TS, "ts_exchange": TS, "exchange": pl.String(), "symbol": pl.String(),
        "side": pl.String(), "price": pl.Float64(), "size": pl.Float64(),
        "is_snapshot": pl.Boolean(), "seq": pl.Int64(), "msg_id": pl.Int64(),
    },
    "trades": {
        "ts_local": TS, "ts_exchange": TS, "exchange": pl.String(), "symbol": pl.String(),
        "price": pl.Float64(), "size": pl.Float64(), "side": pl.String(),
        "trade_id": pl.String(),
    },
    "health": {
        "ts_local": TS, "exchange": pl.String(), "symbol": pl.String(), "event": pl.String(),
        "detail": pl.String(),
    },
}
TABLES: Final = ("tob", "l2", "trades", "health")  # the recorder's own tables
_TABLE_OF: dict[type[Event], str] = {TopOfBook: "tob", BookUpdate: "l2", Trade: "trades",
                                     Health: "health"}


def register_table(event_type: type[Event], table: str, schema: dict[str, pl.DataType]) -> None:
    """Let the Parquet writer persist another one-row-per-event type (e.g. live analyzer
    output). Column names must be attribute names of ``event_type``; ``Datetime`` columns take
    integer UTC nanoseconds. Registering the same mapping again is harmless."""
    if SCHEMAS.get(table, schema) != schema or _TABLE_OF.get(event_type, table) != table:
        raise ValueError(f"table {table!r} or {event_type.__name__} registered differently")
    missing = [c for c in schema if c not in event_type.__struct_fields__]
    if missing:
        raise ValueError(f"{event_type.__name__} has no attributes {missing} for {table!r}")
    SCHEMAS[table] = schema
    _TABLE_OF[event_type] = table


def table_of(event: Event) -> str:
    return _TABLE_OF.get(type(event), "health")


def table_of_tag(tag: str) -> str:
    """The table of an event kind (its msgspec tag)."""
    for event_type, table in _TABLE_OF.items():
        if event_type.__struct_config__.tag == tag:
            return table
    return "health"


def tables_in_order() -> list[str]:
    """The recorder's tables, then registered ones."""
    return [*TABLES, *(t for t in SCHEMAS if t not in TABLES)]


class TableBuffer:
    """Column lists for one (table, exchange, date) partition, filled event by event."""

    __slots__ = ("cols", "events", "first_added", "rows", "table")

    def __init__(self, table: str, first_added: float) -> None:
        self.table = table
        self.cols: dict[str, list[object]] = {c: [] for c in SCHEMAS[table]}
        self.rows = 0
        self.events = 0
        self.first_added = first_added

    def add(self, e: Event) -> None:
        c = self.cols
        self.events += 1
        if isinstance(e, TopOfBook):
            for name, value in (("ts_local", e.ts_local), ("ts_exchange", e.ts_exchange),
                                ("exchange", e.exchange), ("symbol", e.symbol),
                                ("bid_px", e.bid_px), ("bid_sz", e.bid_sz),
                                ("ask_px", e.ask_px), ("ask_sz", e.ask_sz), ("seq", e.seq)):
                c[name].append(value)
            self.rows += 1
        elif isinstance(e, BookUpdate):
            nb, na = len(e.bids), len(e.asks)
            n = nb + na
            c["ts_local"].extend([e.ts_local] * n)
            c["ts_exchange"].extend([e.ts_exchange] * n)
            c["exchange"].extend([e.exchange] * n)
            c["symbol"].extend([e.symbol] * n)
            c["side"].extend(["bid"] * nb)
            c["side"].extend(["ask"] * na)
            c["price"].extend([p for p, _ in e.bids])
            c["price"].extend([p for p, _ in e.asks])
            c["size"].extend([s for _, s in e.bids])
            c["size"].extend([s for _, s in e.asks])
            c["is_snapshot"].extend([e.is_snapshot] * n)
            c["seq"].extend([e.seq] * n)
            c["msg_id"].extend([e.msg_id] * n)
            self.rows += n
        elif isinstance(e, Trade):
            for name, value in (("ts_local", e.ts_local), ("ts_exchange", e.ts_exchange),
                                ("exchange", e.exchange), ("symbol", e.symbol),
                                ("price", e.price), ("size", e.size), ("side", e.side),
                                ("trade_id", e.trade_id)):
                c[name].append(value)
            self.rows += 1
        else:  # Health and registered one-row events: columns are attribute names
            for name, column in c.items():
                column.append(getattr(e, name))
            self.rows += 1

    def to_frame(self) -> pl.DataFrame:
        schema = SCHEMAS[self.table]
        data = {name: pl.Series(name, values, dtype=pl.Int64() if schema[name] == TS
                                else schema[name])
                for name, values in self.cols.items()}
        df = pl.DataFrame(data)
        return df.with_columns(pl.col([c for c, d in schema.items() if d == TS]).cast(TS))


def empty_frame(table: str) -> pl.DataFrame:
    return pl.DataFrame(schema=SCHEMAS[table])
