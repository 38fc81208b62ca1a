"""Parquet writer: a lossless bus consumer that writes every registered table in a hive layout::

    <out>/<table>/exchange=<venue>/date=<YYYY-MM-DD>/part-<run>-<n>.parquet

Rows are buffered per (table, venue, date) in columnar buffers (:mod:`core.writers.columns`). A
buffer is *sealed* when it reaches ``flush_rows`` or has been open for ``flush_interval_s``, and
a flusher task writes sealed buffers one by one: the frame is built and encoded in a worker
thread, written under a hidden temporary name and renamed, so readers only ever see complete
files. A buffer leaves memory only after its file was renamed into place; a cancelled flush
finishes its file first (worker threads are not abandoned). So a ``kill -9`` loses at most what
was buffered since the last flush, and cancellation never drops rows.

Memory is bounded: when the buffered bytes (open and sealed) pass ``max_bytes`` the writer stops
taking events from the bus until its flusher caught up, and the bus's own byte bound turns any
excess into counted ``dropped`` rows; the websocket readers never wait.

When the bus closes (or the writer is cancelled), everything left is flushed within
``final_flush_timeout_s``; :attr:`ParquetWriter.abort` abandons the rest early (a third signal
does that). What is abandoned is counted in :attr:`ParquetWriter.abandoned`, never dropped
silently. One ``rows_written`` health row per table and venue records what was persisted.

A caller that must know when its events are safely on disk (the Redis Streams source
acknowledges an entry only then) passes a ``token`` to :meth:`ParquetWriter.add` or
:meth:`ParquetWriter.feed`: every buffer that takes a row of that batch keeps the token, and
:attr:`ParquetWriter.on_written` is called with it once the last of those buffers was renamed into
place. A token whose buffers are abandoned or fail is never reported.

Any failure while building or writing a file (disk full, permission denied, a polars error, a
type error) raises :class:`WriteFailed` naming the file and its cause; a ``write_failed`` health
row is written wherever anything can still be written, no temporary file is left behind, and the
run stops (exit code 1).

Must not: block the trio thread on file I/O or on building a frame.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import secrets
import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import trio

from core.bus import Subscription
from core.clock import Clock, WallClock
from core.schema import Event, Health, HealthKind
from core.tables import REGISTRY, Table, tables_in_order
from core.writers.columns import ColumnBuffer, RowRejected, new_buffer

#: Parquet compression codecs polars writes
Compression = Literal["lz4", "uncompressed", "snappy", "gzip", "brotli", "zstd"]

log = logging.getLogger(__name__)

MIB = 1024 * 1024
DEFAULT_FLUSH_ROWS = 250_000
DEFAULT_FLUSH_INTERVAL_S = 60.0
DEFAULT_MAX_BYTES = 256 * MIB
DEFAULT_FINAL_FLUSH_TIMEOUT_S = 120.0
FLUSH_CHECK_S = 1.0
DAY_NS = 86_400 * 1_000_000_000

Key = tuple[str, str, int]  # (table, exchange, day)


class WriteFailed(RuntimeError):
    """A Parquet file could not be written; the run must stop rather than lose data silently."""


def partition_dir(out: Path, table: str, exchange: str, date: str) -> Path:
    return out / table / f"exchange={exchange}" / f"date={date}"


@dataclass
class Latency:
    """Receipt-to-writer-buffer latency: a log-2 histogram in microseconds, weighted by events.
    Each wake-up counts its events at the age of its oldest one (an upper bound)."""

    buckets: list[int] = field(default_factory=lambda: [0] * 40)
    count: int = 0
    max_ns: int = 0

    def add(self, age_ns: int, events: int) -> None:
        if age_ns < 0:
            age_ns = 0
        us = age_ns // 1000
        self.buckets[min(us.bit_length(), 39)] += events
        self.count += events
        if age_ns > self.max_ns:
            self.max_ns = age_ns

    def quantile_ms(self, q: float) -> float:
        """Upper edge of the bucket holding the ``q`` quantile, in ms."""
        if not self.count:
            return 0.0
        target = math.ceil(q * self.count)
        seen = 0
        for i, n in enumerate(self.buckets):
            seen += n
            if seen >= target:
                return (1 << i) / 1000.0
        return self.max_ns / 1e6


class ParquetWriter:
    def __init__(self, out: Path, *, flush_rows: int = DEFAULT_FLUSH_ROWS,
                 flush_interval_s: float = DEFAULT_FLUSH_INTERVAL_S,
                 clock: Clock | None = None, compression: Compression = "zstd",
                 max_bytes: int = DEFAULT_MAX_BYTES,
                 final_flush_timeout_s: float = DEFAULT_FINAL_FLUSH_TIMEOUT_S) -> None:
        self.out = Path(out)
        self.flush_rows = flush_rows
        self.flush_interval_s = flush_interval_s
        self.clock = clock or WallClock()
        self.compression = compression
        self.max_bytes = max_bytes
        self.final_flush_timeout_s = final_flush_timeout_s
        self.run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)
        self._open: dict[Key, ColumnBuffer] = {}
        self._sealed: deque[tuple[Key, ColumnBuffer]] = deque()
        self._sealed_bytes = 0
        self._sealed_event = trio.Event()  # set when a buffer is sealed
        self._progress = trio.Event()  # set when a sealed buffer was written
        self._file_no = 0
        self._days: dict[int, str] = {}
        self._tables: dict[type[Event], Table] = {}
        self.events_received: dict[tuple[str, str], int] = {}
        self.events_written: dict[tuple[str, str], int] = {}
        self.rows_written: dict[tuple[str, str], int] = {}
        #: events that no column could hold (a plugin that bypassed the checked wire types)
        self.rejected: dict[tuple[str, str], int] = {}
        #: events given up at the end (final flush timed out or was aborted, or a write failed)
        self.abandoned: dict[tuple[str, str], int] = {}
        self.files_written = 0
        self.bytes_written = 0
        #: files and bytes per venue
        self.files_by_venue: dict[str, int] = {}
        self.bytes_by_venue: dict[str, int] = {}
        self.latency = Latency()
        self.end_ns: int | None = None  # time stamped on the end-of-run rows (default: now)
        self.failures: list[WriteFailed] = []
        self._failed_venues: set[str] = set()
        self.finishing = False
        #: cancel this scope to abandon the final flush (what is left is counted as abandoned)
        self.abort = trio.CancelScope()
        self._summary_done = False
        #: called with a token once every row added with it is in a renamed file
        self.on_written: Callable[[Hashable], None] | None = None
        self._token_refs: dict[Hashable, int] = {}

    # -- consuming ----------------------------------------------------------------------------

    async def run(self, subscription: Subscription, *,
                  task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Consume until the bus closes, then flush everything (see the module docstring)."""
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._flusher)
                nursery.start_soon(self._seal_on_time)
                task_status.started()
                async for events in subscription:
                    self.add(events)
                    if self.buffered_bytes > self.max_bytes:
                        await self._relieve()
                nursery.cancel_scope.cancel()
        finally:
            subscription.close_receiver()
            with trio.CancelScope(shield=True):
                await self.close()
        if self.failures:
            raise self.failures[0]

    async def feed(self, batch: Sequence[Event], token: Hashable | None = None) -> None:
        """:meth:`add` from a producer that can wait (the Redis Streams source): waits while the
        writer holds more than ``max_bytes``, instead of letting anything be dropped."""
        if self.buffered_bytes > self.max_bytes:
            await self._relieve()
        self.add(batch, token=token)

    def add(self, batch: Sequence[Event], *, count: bool = True,
            token: Hashable | None = None) -> None:
        """Buffer events (synchronous); seal the partitions that reached ``flush_rows``.
        ``token``: see the module docstring."""
        if token is not None:
            before = {id(b): b.events for b in self._open.values()}
            sealed = len(self._sealed)
            self._add(batch, count)
            self._stamp(token, before, sealed)
        elif batch:
            self._add(batch, count)

    def _stamp(self, token: Hashable, before: dict[int, int], sealed: int) -> None:
        """Give ``token`` to every buffer that took rows since ``before`` / the ``sealed``-th
        sealed buffer; report it at once when none did (nothing of it is left to write)."""
        touched = [b for b in self._open.values() if before.get(id(b)) != b.events]
        touched += [b for i, (_, b) in enumerate(self._sealed) if i >= sealed]
        for buf in touched:
            buf.tokens.append(token)
        if touched:
            self._token_refs[token] = self._token_refs.get(token, 0) + len(touched)
        elif self.on_written is not None:
            self.on_written(token)

    def _release(self, buf: ColumnBuffer) -> None:
        """``buf`` is in a renamed file: report the tokens it was the last holder of."""
        refs = self._token_refs
        for token in buf.tokens:
            n = refs[token] - 1
            if n:
                refs[token] = n
                continue
            del refs[token]
            if self.on_written is not None:
                self.on_written(token)

    def _add(self, batch: Sequence[Event], count: bool) -> None:
        if not batch:
            return
        if count:
            first = batch[0]
            if type(first) is Health and first.event == HealthKind.DROPPED and len(batch) > 1:
                first = batch[-1]  # drop reports carry the time of the loss: not a latency
            self.latency.add(self.clock.now_ns() - first.ts_local, len(batch))
        received = self.events_received
        buffers = self._open
        tables = self._tables
        now = trio.current_time()
        flush_rows = self.flush_rows
        for e in batch:
            t = type(e)
            table = tables.get(t)
            if table is None:
                table = self._table_for(t)
            key = (table.name, e.exchange, e.ts_local // DAY_NS)
            buf = buffers.get(key)
            if buf is None:
                buf = buffers[key] = new_buffer(table, e.exchange, now)
            rkey = (table.name, e.exchange)
            try:
                buf.add(e)
            except RowRejected as exc:
                self._reject(rkey, exc)
                continue
            if count and not (isinstance(e, Health) and e.event == HealthKind.DROPPED):
                # (drop reports come from the bus itself, not from a venue: not counted)
                received[rkey] = received.get(rkey, 0) + 1
                buf.counted += 1
            if buf.rows >= flush_rows:
                self._seal(key)

    def _table_for(self, event_type: type[Event]) -> Table:
        table = REGISTRY.of_type(event_type) or REGISTRY.get("health")
        self._tables[event_type] = table
        return table

    def _reject(self, rkey: tuple[str, str], exc: RowRejected) -> None:
        n = self.rejected.get(rkey, 0) + 1
        self.rejected[rkey] = n
        if n == 1:
            log.error("writer: %s (counted; later rejections of this table are not logged)", exc)

    # -- sealing and flushing -------------------------------------------------------------------

    @property
    def buffered_bytes(self) -> int:
        return self._sealed_bytes + sum(b.nbytes for b in self._open.values())

    def _seal(self, key: Key) -> None:
        buf = self._open.pop(key, None)
        if buf is None or buf.rows == 0:
            return
        self._sealed.append((key, buf))
        self._sealed_bytes += buf.nbytes
        self._sealed_event.set()

    async def _relieve(self) -> None:
        """Too much in memory: seal everything and wait until the flusher wrote half of it."""
        for key in list(self._open):
            self._seal(key)
        while self._sealed and self._sealed_bytes > self.max_bytes // 2:
            await self._progress.wait()
            self._progress = trio.Event()

    async def _seal_on_time(self) -> None:
        period = min(FLUSH_CHECK_S, self.flush_interval_s / 4)
        while True:
            await trio.sleep(period)
            now = trio.current_time()
            for key, buf in list(self._open.items()):
                if now - buf.first_added >= self.flush_interval_s:
                    self._seal(key)

    async def _flusher(self) -> None:
        while True:
            while not self._sealed:
                await self._sealed_event.wait()
                self._sealed_event = trio.Event()
            await self._write_next()
            if self.failures:
                raise self.failures[0]  # stop the run; close() still writes what it can

    async def _write_next(self) -> None:
        """Write the oldest sealed buffer; it leaves memory only once its file is in place."""
        key, buf = self._sealed[0]
        table, exchange, day = key
        self._file_no += 1
        directory = partition_dir(self.out, table, exchange, self._date(day))
        name = f"part-{self.run_id}-{self._file_no:06d}.parquet"
        try:
            size = await trio.to_thread.run_sync(self._write, buf, directory, name)
        except WriteFailed as exc:
            self._sealed.popleft()
            self._sealed_bytes -= buf.nbytes
            self._give_up((table, exchange), buf)
            self._failed(exc, exchange)
            return
        self._sealed.popleft()
        self._sealed_bytes -= buf.nbytes
        self.files_written += 1
        self.bytes_written += size
        self.files_by_venue[exchange] = self.files_by_venue.get(exchange, 0) + 1
        self.bytes_by_venue[exchange] = self.bytes_by_venue.get(exchange, 0) + size
        rkey = (table, exchange)
        self.rows_written[rkey] = self.rows_written.get(rkey, 0) + buf.rows
        self.events_written[rkey] = self.events_written.get(rkey, 0) + buf.counted
        if buf.tokens:
            self._release(buf)
        self._progress.set()

    def _write(self, buf: ColumnBuffer, directory: Path, name: str) -> int:
        """Worker thread: build, encode, write under a hidden name, rename. Returns the size."""
        final = directory / name
        tmp = directory / f".{name}.tmp"
        try:
            frame = buf.build()
            directory.mkdir(parents=True, exist_ok=True)
            frame.write_parquet(tmp, compression=self.compression, statistics=True)
            size = tmp.stat().st_size
            os.replace(tmp, final)
        except Exception as exc:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            cause = (exc.strerror or str(exc)) if isinstance(exc, OSError) else \
                f"{type(exc).__name__}: {exc}"
            raise WriteFailed(f"cannot write {final}: {cause}") from exc
        return size

    def _give_up(self, rkey: tuple[str, str], buf: ColumnBuffer) -> None:
        if buf.counted:
            self.abandoned[rkey] = self.abandoned.get(rkey, 0) + buf.counted

    def _failed(self, exc: WriteFailed, exchange: str) -> None:
        """Remember the failure and record it as a ``write_failed`` row (written if anything
        still can be; one per venue, so that a full disk cannot feed itself rows forever)."""
        log.error("%s", exc)
        self.failures.append(exc)
        if exchange in self._failed_venues:
            return
        self._failed_venues.add(exchange)
        self.add([Health(exchange=exchange, ts_local=self.clock.now_ns(), symbol=None,
                         event=HealthKind.WRITE_FAILED, detail=str(exc)[:2000])], count=False)

    # -- the end --------------------------------------------------------------------------------

    def pending(self) -> tuple[int, int]:
        """(events, buffers) not yet in a file."""
        bufs = [b for _, b in self._sealed] + list(self._open.values())
        return sum(b.events for b in bufs), len(bufs)

    async def close(self) -> None:
        """Flush everything within ``final_flush_timeout_s`` (abortable through :attr:`abort`),
        then write the ``rows_written`` summary rows (``table=<t> events=<n> rows=<m>``:
        ``events`` counts the events received from the bus and written, to compare with what
        the venues produced; ``rows`` counts Parquet rows, these summary rows included)."""
        if self._summary_done:
            return
        self.finishing = True
        with self.abort, trio.move_on_after(self.final_flush_timeout_s) as timer:
            await self._drain()
            if self.events_received:
                self.add(self._summary_rows(), count=False)
            await self._drain()
        if timer.cancelled_caught or self.abort.cancelled_caught:
            why = "aborted" if self.abort.cancelled_caught else \
                f"not done within {self.final_flush_timeout_s:g} s"
            events, buffers = self.pending()
            log.error("final flush %s: %d events in %d buffers abandoned", why, events, buffers)
        for key in list(self._open):
            self._seal(key)
        while self._sealed:
            (table, exchange, _), buf = self._sealed.popleft()
            self._give_up((table, exchange), buf)
        self._sealed_bytes = 0
        self._summary_done = True

    async def _drain(self) -> None:
        for key in list(self._open):
            self._seal(key)
        while self._sealed:
            await self._write_next()

    def _summary_rows(self) -> list[Event]:
        now = self.end_ns if self.end_ns is not None else self.clock.now_ns()
        rows: list[Event] = []
        for ex in sorted({ex for _, ex in self.events_received}):
            tables = [t for t in tables_in_order()
                      if (t, ex) in self.events_received or t == "health"]
            own = len(tables)  # the summary rows are health rows too
            for t in tables:
                extra = own if t == "health" else 0
                events = self.events_written.get((t, ex), 0)
                n = self.rows_written.get((t, ex), 0) + extra
                rows.append(Health(exchange=ex, ts_local=now, symbol=None,
                                   event=HealthKind.ROWS_WRITTEN,
                                   detail=f"table={t} events={events} rows={n}"))
        return rows

    def lost_events(self) -> int:
        """Events this writer received or was given but did not put in a file."""
        return sum(self.rejected.values()) + sum(self.abandoned.values())

    def describe(self) -> str:
        """The writer's part of the end-of-run totals."""
        return (f"{self.files_written} files, {_size(self.bytes_written)} in {self.out}; "
                f"p99 receipt-to-writer {self.latency.quantile_ms(0.99):g} ms")

    def _date(self, day: int) -> str:
        d = self._days.get(day)
        if d is None:
            d = self._days[day] = time.strftime("%Y-%m-%d", time.gmtime(day * 86_400))
        return d


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"
