"""Compatibility names for the table registry, which lives in :mod:`core.tables`.

Must not: define schemas of its own.
"""

from __future__ import annotations

import polars as pl

from core.schema import Event
from core.tables import (
    RECORDER_TABLES as TABLES,
)
from core.tables import (
    REGISTRY,
    TS,
    empty_frame,
    register_table,
    table_of,
    table_of_kind,
    tables_in_order,
)
from core.writers.columns import new_buffer

SCHEMAS = {name: dict(REGISTRY.get(name).schema) for name in TABLES}
table_of_tag = table_of_kind


class TableBuffer:
    """Rows of one table from any venues, as one frame (a convenience for building test data;
    the writer buffers per partition in :mod:`core.writers.columns`)."""

    def __init__(self, table: str, first_added: float = 0.0) -> None:
        self.table = REGISTRY.get(table)
        self._by_exchange: dict[str, object] = {}
        self.first_added = first_added

    def add(self, e: Event) -> None:
        buf = self._by_exchange.get(e.exchange)
        if buf is None:
            buf = self._by_exchange[e.exchange] = new_buffer(self.table, e.exchange, 0.0)
        buf.add(e)  # type: ignore[attr-defined]

    def to_frame(self) -> pl.DataFrame:
        frames = [b.build() for b in self._by_exchange.values()]  # type: ignore[attr-defined]
        return pl.concat(frames) if frames else empty_frame(self.table.name)

__all__ = ["SCHEMAS", "TABLES", "TS", "TableBuffer", "empty_frame", "register_table", "table_of",
           "table_of_kind", "table_of_tag", "tables_in_order"]
