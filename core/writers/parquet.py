"""Parquet writer: a lossless bus consumer that writes the ``tob``, ``l2``, ``trades`` and
``health`` tables in a hive layout::

    <out>/<table>/exchange=<venue>/date=<YYYY-MM-DD>/part-<run>-<n>.parquet

Rows are buffered per (table, venue, date) and flushed when a buffer reaches ``flush_rows`` or
has been open for ``flush_interval_s``, so there is at most one file per table, venue and flush
interval. Each file is written under a hidden temporary name in a worker thread and then renamed,
so readers only ever see complete files; a ``kill -9`` loses at most the rows buffered since the
last flush. When the bus closes, everything left is flushed (shielded, time-limited) and one
``rows_written`` health row per table and venue records what this writer persisted.

A file that cannot be written (disk full, permission denied) raises :class:`WriteFailed`, which
stops the run with a clear message instead of dropping data silently.

Must not: block the trio thread on file I/O (polars writes run in ``trio.to_thread``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import trio

from core.bus import Subscription
from core.clock import Clock, WallClock
from core.schema import Event, Health, HealthKind
from core.writers.tables import TableBuffer, table_of, tables_in_order

log = logging.getLogger(__name__)

DEFAULT_FLUSH_ROWS = 250_000
DEFAULT_FLUSH_INTERVAL_S = 60.0
FLUSH_CHECK_S = 1.0
FINAL_FLUSH_TIMEOUT_S = 120.0
DAY_NS = 86_400 * 1_000_000_000


class WriteFailed(RuntimeError):
    """A Parquet file could not be written; the run must stop rather than lose data."""


def partition_dir(out: Path, table: str, exchange: str, date: str) -> Path:
    return out / table / f"exchange={exchange}" / f"date={date}"


class ParquetWriter:
    def __init__(self, out: Path, *, flush_rows: int = DEFAULT_FLUSH_ROWS,
                 flush_interval_s: float = DEFAULT_FLUSH_INTERVAL_S,
                 clock: Clock | None = None, compression: str = "zstd") -> None:
        self.out = Path(out)
        self.flush_rows = flush_rows
        self.flush_interval_s = flush_interval_s
        self.clock = clock or WallClock()
        self.compression = compression
        self.run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)
        self._buffers: dict[tuple[str, str, int], TableBuffer] = {}
        self._file_no = 0
        self._lock = trio.Lock()
        self._days: dict[int, str] = {}
        self.events_received: dict[tuple[str, str], int] = {}
        self.events_written: dict[tuple[str, str], int] = {}
        self.rows_written: dict[tuple[str, str], int] = {}
        self.files_written = 0
        self.end_ns: int | None = None  # time stamped on the end-of-run rows (default: now)
        self.failed = False

    async def run(self, subscription: Subscription, *,
                  task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Consume until the bus closes, then flush everything."""
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._flush_on_time)
                task_status.started()
                async for batch in subscription:
                    full = self.add(batch)
                    for key in full:
                        await self._flush(key)
                nursery.cancel_scope.cancel()
        finally:
            subscription.close_receiver()
            with trio.CancelScope(shield=True), trio.move_on_after(FINAL_FLUSH_TIMEOUT_S):
                await self.close()

    def add(self, batch: Sequence[Event], *, count: bool = True) -> list[tuple[str, str, int]]:
        """Buffer events; return the partitions that reached ``flush_rows``."""
        full = []
        received = self.events_received
        buffers = self._buffers
        now = trio.current_time()
        for e in batch:
            table = table_of(e)
            key = (table, e.exchange, e.ts_local // DAY_NS)
            buf = buffers.get(key)
            if buf is None:
                buf = buffers[key] = TableBuffer(table, now)
            buf.add(e)
            if count:
                rkey = (table, e.exchange)
                received[rkey] = received.get(rkey, 0) + 1
            if buf.rows >= self.flush_rows and key not in full:
                full.append(key)
        return full

    async def close(self) -> None:
        """Flush every buffer, then record what was written as ``rows_written`` health rows
        (``table=<t> events=<n> rows=<m>``: ``events`` counts the events received from the bus
        and written, to compare with what the venues produced; ``rows`` counts Parquet rows,
        these summary rows included) and flush them."""
        if self.failed:
            return
        for key in list(self._buffers):
            await self._flush(key)
        if not self.events_received:
            return
        now = self.end_ns if self.end_ns is not None else self.clock.now_ns()
        summary: list[Event] = []
        for ex in sorted({ex for _, ex in self.events_received}):
            tables = [t for t in tables_in_order()
                      if (t, ex) in self.events_received or t == "health"]
            own = len(tables)  # the summary rows are health rows too
            for t in tables:
                extra = own if t == "health" else 0
                events = self.events_written.get((t, ex), 0)
                rows = self.rows_written.get((t, ex), 0) + extra
                summary.append(Health(exchange=ex, ts_local=now, symbol=None,
                                      event=HealthKind.ROWS_WRITTEN,
                                      detail=f"table={t} events={events} rows={rows}"))
        self.add(summary, count=False)
        for key in list(self._buffers):
            await self._flush(key, count=False)

    async def _flush_on_time(self) -> None:
        period = min(FLUSH_CHECK_S, self.flush_interval_s / 4)
        while True:
            await trio.sleep(period)
            now = trio.current_time()
            for key, buf in list(self._buffers.items()):
                if now - buf.first_added >= self.flush_interval_s:
                    await self._flush(key)

    async def _flush(self, key: tuple[str, str, int], *, count: bool = True) -> None:
        buf = self._buffers.pop(key, None)
        if buf is None or buf.rows == 0:
            return
        table, exchange, day = key
        async with self._lock:
            self._file_no += 1
            directory = partition_dir(self.out, table, exchange, self._date(day))
            name = f"part-{self.run_id}-{self._file_no:06d}.parquet"
            frame = buf.to_frame()
            await trio.to_thread.run_sync(self._write, frame, directory, name)
            self.files_written += 1
            rkey = (table, exchange)
            self.rows_written[rkey] = self.rows_written.get(rkey, 0) + frame.height
            if count:
                self.events_written[rkey] = self.events_written.get(rkey, 0) + buf.events

    def _write(self, frame: pl.DataFrame, directory: Path, name: str) -> None:
        tmp = directory / f".{name}.tmp"
        try:
            directory.mkdir(parents=True, exist_ok=True)
            frame.write_parquet(tmp, compression=self.compression, statistics=True)
            os.replace(tmp, directory / name)
        except OSError as exc:
            self.failed = True
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            raise WriteFailed(f"cannot write {directory / name}: {exc.strerror or exc}") from exc

    def _date(self, day: int) -> str:
        d = self._days.get(day)
        if d is None:
            d = self._days[day] = time.strftime("%Y-%m-%d", time.gmtime(day * 86_400))
        return d


