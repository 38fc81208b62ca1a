"""The top-level nursery of a recording run: writers first, then one connector per venue, a
status reporter, the duration timer and the signal watcher.

Shutdown order (Ctrl-C, SIGTERM or the end of ``--duration``): cancel the feeds; publish a
``stopped`` health row per venue with the number of events it produced per table; close the bus;
the writers drain what is buffered, flush (within the writer's final-flush bound), and return.
Nothing is cut off mid-write. The signal watcher stays up until the writers are done: a second
signal says what is still being written and how to abandon it; a third abandons the final flush
(what is left is counted as lost); neither prints a traceback, and files on disk stay complete.

An exception from plugin code outside frame handling (a frame's own failure is a ``decode_error``)
is recorded (``plugin_error``), logged with its traceback, and the connector restarts with a
fresh protocol object after a backoff, while the other venues keep running. Network failures
never get this far: the session handles them.

:func:`record` returns a :class:`RunResult`: what each venue produced, what the writer wrote, what
was dropped or abandoned, and the longest event-loop stall, for the end-of-run summary and the
exit code.

Must not: pass ``strict_exception_groups=False``, or leave a task without an owning nursery.
"""

from __future__ import annotations

import logging
import signal
import traceback
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Protocol

import trio

from core.bus import DEFAULT_BUFFER_BYTES, Bus, Policy, Subscription
from core.clock import Clock, WallClock
from core.protocol import ExchangeProtocol, Instrument, ProtocolConfig
from core.recording import NullRecorder, RawRecorder, Recorder
from core.schema import Health, HealthKind
from core.session import Backoff, Connect, Session, VenueStats, connect_websocket
from core.status import DEFAULT_STATUS_INTERVAL_S, RunInfo, report_status
from core.tables import RECORDER_TABLES, table_of_kind
from core.writers.parquet import (
    DEFAULT_FINAL_FLUSH_TIMEOUT_S,
    DEFAULT_FLUSH_INTERVAL_S,
    DEFAULT_FLUSH_ROWS,
    DEFAULT_MAX_BYTES,
    ParquetWriter,
    WriteFailed,
)

log = logging.getLogger(__name__)

#: the Parquet writer takes what waits at most every 2 ms (its rows are buffered for seconds
#: anyway): a few hundred wake-ups a second at any message rate
WRITER_COALESCE_S = 0.002


@dataclass
class VenuePlan:
    """Everything needed to run one venue."""

    proto: type[ExchangeProtocol]
    url: str
    config: ProtocolConfig
    #: the REST response the instruments came from: (url, receive time ns, body)
    instruments_http: tuple[str, int, bytes] | None = None


class ConsumerRun(Protocol):
    """``async def run(subscription, *, task_status)``: consume until the bus closes."""

    def __call__(self, subscription: Subscription, *,
                 task_status: trio.TaskStatus[None] = ...) -> Awaitable[None]: ...


@dataclass
class Consumer:
    """A bus consumer started before the feeds (writers, live analyzers).

    ``bind(bus)`` is called once the bus exists, for consumers that publish rows of their own;
    ``finish(end_ns)`` is called when the feeds have stopped and the bus still accepts events,
    so that a consumer can publish what it holds (an analyzer's open episodes)."""

    name: str
    run: ConsumerRun
    kinds: frozenset[str] | None = None
    policy: Policy = Policy.LOSSLESS
    buffer_bytes: int = DEFAULT_BUFFER_BYTES
    bind: Callable[[Bus], None] | None = None
    finish: Callable[[int], None] | None = None


# Shows live state while recording: (venue stats, bus, clock, interval) -> runs until cancelled.
StatusView = Callable[[list[VenueStats], Bus, Clock, float], Awaitable[None]]


@dataclass
class RunPlan:
    venues: list[VenuePlan]
    out: Path
    duration_s: float | None = None
    flush_interval_s: float = DEFAULT_FLUSH_INTERVAL_S
    flush_rows: int = DEFAULT_FLUSH_ROWS
    status_interval_s: float = DEFAULT_STATUS_INTERVAL_S
    #: the writer's bus subscription bound (``--buffer-mb``)
    buffer_bytes: int = DEFAULT_BUFFER_BYTES
    #: what the writer may hold in its own buffers before it stops taking events
    writer_max_bytes: int = DEFAULT_MAX_BYTES
    final_flush_timeout_s: float = DEFAULT_FINAL_FLUSH_TIMEOUT_S
    handle_signals: bool = True
    instruments: Mapping[str, Mapping[str, Instrument]] = field(default_factory=dict)
    consumers: list[Consumer] = field(default_factory=list)
    status_view: StatusView = report_status
    record_raw: bool = False
    #: what the status views show about the run (its rows and bytes are filled in here)
    run_info: RunInfo | None = None


async def run_connector(plan: VenuePlan, bus: Bus, stats: VenueStats, *, clock: Clock,
                        recorder: Recorder, connect: Connect, backoff: Backoff) -> None:
    """Run one venue forever; a plugin exception restarts it with a fresh protocol."""
    attempt = 0
    while True:
        proto = plan.proto(plan.config)
        session = Session(proto, bus, url=plan.url, clock=clock, stats=stats,
                          recorder=recorder, connect=connect, backoff=backoff)
        try:
            await session.run()
        # Plugin code may raise anything; this is the boundary that keeps one venue's bug from
        # stopping the others. Cancellation (a BaseException) passes through untouched.
        except* Exception as group:
            stats.plugin_errors += 1
            text = "".join(traceback.format_exception(group)).strip()
            log.error("%s: plugin error, restarting the connector:\n%s", plan.proto.name, text)
            summary = "; ".join(f"{type(e).__name__}: {e}" for e in group.exceptions)
            bus.publish([Health(exchange=plan.proto.name, ts_local=clock.now_ns(), symbol=None,
                                event=HealthKind.PLUGIN_ERROR, detail=summary[:2000])])
        delay = backoff.delay(attempt)
        attempt += 1
        await trio.sleep(delay)


class StallProbe:
    """How late a timer due every ``period_s`` fires: the longest the event loop kept everything
    else waiting (a step that ran for 30 ms shows as a timer about 30 ms late). Costs one
    wake-up per period, where a per-step trio Instrument would cost something on every step."""

    def __init__(self, period_s: float = 0.01) -> None:
        self.period_s = period_s
        self.max_ns = 0
        self.over_20ms = 0

    async def run(self) -> None:
        while True:
            due = trio.current_time() + self.period_s
            await trio.sleep_until(due)
            late_ns = int((trio.current_time() - due) * 1e9)
            if late_ns > self.max_ns:
                self.max_ns = late_ns
            if late_ns > 20_000_000:
                self.over_20ms += 1
                log.debug("event loop stalled for %.1f ms", late_ns / 1e6)


@dataclass
class RunResult:
    """What a run did, for the end-of-run summary and the exit code."""

    venues: dict[str, VenueStats]
    #: events each venue produced, per (venue, kind)
    produced: dict[tuple[str, str], int]
    writer: ParquetWriter
    #: events lossless consumers lost to a full buffer (each also written as a ``dropped`` row)
    dropped: int
    dropped_by_venue: dict[str, int]
    max_stall_ms: float
    started_ns: int
    ended_ns: int
    #: the final flush was abandoned by a third signal
    aborted: bool = False

    def market_events(self, venue: str) -> int:
        return sum(n for (ex, kind), n in self.produced.items()
                   if ex == venue and kind in ("tob", "l2", "trade"))

    def lost_events(self) -> int:
        return self.dropped + self.writer.lost_events()


@dataclass
class Shutdown:
    """How far the run's end has come; the signal watcher reads and advances it."""

    feeds: trio.CancelScope
    writer: ParquetWriter
    signals: int = 0
    aborted: bool = False


async def watch_signals(shutdown: Shutdown) -> None:
    """First SIGINT/SIGTERM: stop the feeds and flush. Second: say what is still being
    written and how to abandon it. Third: abandon the final flush (counted as lost)."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            name = signal.Signals(signum).name
            shutdown.signals += 1
            if shutdown.signals == 1:
                log.info("received %s: flushing and stopping", name)
                shutdown.feeds.cancel()
            elif shutdown.signals == 2:
                events, buffers = shutdown.writer.pending()
                log.warning(
                    "received %s again: still writing %d events in %d buffers to %s; send it "
                    "once more to abandon them (counted as lost, exit code 3). Files already on "
                    "disk are complete whatever happens, kill -9 included.",
                    name, events, buffers, shutdown.writer.out)
            else:
                log.warning("received %s a third time: abandoning the final flush", name)
                shutdown.aborted = True
                shutdown.writer.abort.cancel()


async def stop_after(seconds: float, cancel_scope: trio.CancelScope) -> None:
    await trio.sleep(seconds)
    log.info("duration of %g s reached: flushing and stopping", seconds)
    cancel_scope.cancel()


async def record(plan: RunPlan, *, clock: Clock | None = None,
                 connect: Connect = connect_websocket,
                 backoff: Backoff | None = None) -> RunResult:
    """Run a recording until cancelled, signalled or out of time; return what it did."""
    clock = clock or WallClock()
    backoff = backoff or Backoff()
    bus = Bus(table_of_kind=table_of_kind)
    writer = ParquetWriter(plan.out, flush_rows=plan.flush_rows,
                           flush_interval_s=plan.flush_interval_s, clock=clock,
                           max_bytes=plan.writer_max_bytes,
                           final_flush_timeout_s=plan.final_flush_timeout_s)
    subscription = bus.subscribe("parquet", policy=Policy.LOSSLESS, max_bytes=plan.buffer_bytes,
                                 coalesce_s=WRITER_COALESCE_S)
    stats = {v.proto.name: VenueStats(v.proto.name) for v in plan.venues}
    if plan.run_info is not None:
        plan.run_info.written = lambda: (sum(writer.rows_written.values()), writer.bytes_written)
    raw = RawRecorder(plan.out, writer.run_id) if plan.record_raw else None
    recorder: Recorder = raw if raw is not None else NullRecorder()
    started_ns = clock.now_ns()
    if raw is not None:
        for v in plan.venues:
            raw.meta(v.proto.name, started_ns, v.url, list(v.config.symbols),
                     list(v.config.channels), dict(v.config.options))
            if v.instruments_http is not None:
                raw.http(v.proto.name, *v.instruments_http)
    for v in plan.venues:  # what was asked of each venue, before anything can fail
        bus.publish([started_row(v.proto.name, started_ns, v.config.symbols, v.config.channels,
                                 v.url)], force=True)
    probe = StallProbe()
    shutdown = Shutdown(feeds=trio.CancelScope(), writer=writer)
    async with trio.open_nursery() as outer:
        outer.start_soon(probe.run)
        if plan.handle_signals:
            outer.start_soon(watch_signals, shutdown)
        try:
            await record_into(plan, bus, writer, subscription, stats, shutdown, raw,
                              recorder, clock=clock, connect=connect, backoff=backoff)
        # A write failure stops the run; the writer keeps it (writer.failures) for the
        # summary and the exit code.
        except* WriteFailed:
            pass
        finally:
            outer.cancel_scope.cancel()  # the writers are done: stop watching signals
    return RunResult(venues=stats, produced=dict(bus.published), writer=writer,
                     dropped=bus.dropped_events(), dropped_by_venue=bus.dropped_by_venue(),
                     max_stall_ms=probe.max_ns / 1e6,
                     started_ns=started_ns, ended_ns=writer.end_ns or clock.now_ns(),
                     aborted=shutdown.aborted)


async def record_into(plan: RunPlan, bus: Bus, writer: ParquetWriter, subscription: Subscription,
                      stats: dict[str, VenueStats], shutdown: Shutdown, raw: RawRecorder | None,
                      recorder: Recorder, *, clock: Clock, connect: Connect,
                      backoff: Backoff) -> None:
    """The writers and consumers, then the feeds; at the end, the ``stopped`` rows and the bus
    closed so that the writers drain and return."""
    async with trio.open_nursery() as sinks:
        await sinks.start(writer.run, subscription)

        raw_scope = trio.CancelScope()
        if raw is not None:
            async def run_raw(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                              ) -> None:
                with raw_scope:
                    await raw.run(task_status=task_status)
            await sinks.start(run_raw)
        for consumer in plan.consumers:
            sub = bus.subscribe(consumer.name, consumer.kinds, policy=consumer.policy,
                                max_bytes=consumer.buffer_bytes)
            if consumer.bind is not None:
                consumer.bind(bus)
            await sinks.start(consumer.run, sub)
        try:
            with shutdown.feeds:
                await run_feeds(plan, bus, stats, shutdown.feeds, clock=clock,
                                recorder=recorder, connect=connect, backoff=backoff)
        finally:
            end_ns = clock.now_ns()
            for consumer in plan.consumers:
                if consumer.finish is not None:
                    consumer.finish(end_ns)
            if raw is not None:
                raw.stop(end_ns)
                raw_scope.cancel()
            writer.end_ns = end_ns
            publish_produced(bus, clock, end_ns)
            bus.close()


async def run_feeds(plan: RunPlan, bus: Bus, stats: dict[str, VenueStats],
                    feeds_scope: trio.CancelScope, *, clock: Clock, recorder: Recorder,
                    connect: Connect, backoff: Backoff) -> None:
    """One connector per venue, the status view and the duration timer, until cancelled."""
    async with trio.open_nursery() as feeds:
        for venue in plan.venues:
            feeds.start_soon(partial(run_connector, venue, bus, stats[venue.proto.name],
                                     clock=clock, recorder=recorder, connect=connect,
                                     backoff=backoff))
        feeds.start_soon(plan.status_view, list(stats.values()), bus, clock,
                         plan.status_interval_s)
        if plan.duration_s is not None:
            feeds.start_soon(stop_after, plan.duration_s, feeds_scope)


def started_row(venue: str, ts: int, symbols: Sequence[str], channels: Sequence[str],
                url: str) -> Health:
    """The ``started`` health row: what was asked of a venue (a replay writes the same one)."""
    return Health(exchange=venue, ts_local=ts, symbol=None, event=HealthKind.STARTED,
                  detail=f"symbols={','.join(symbols)} channels={','.join(channels)} url={url}")


def publish_produced(bus: Bus, clock: Clock, now: int | None = None) -> None:
    """One ``stopped`` health row per venue: events produced per table during the run."""
    now = clock.now_ns() if now is None else now
    per_venue: dict[str, dict[str, int]] = {}
    for (exchange, kind), n in bus.published.items():
        counts = per_venue.setdefault(exchange, {})
        table = table_of_kind(kind)
        counts[table] = counts.get(table, 0) + n
    for exchange, counts in sorted(per_venue.items()):
        counts["health"] = counts.get("health", 0) + 1  # this row
        analyzer = any(t not in RECORDER_TABLES for t in counts)  # e.g. the spread analyzer
        own = () if analyzer else ("tob", "l2", "trades")
        tables = [*own, *sorted(t for t in counts if t not in RECORDER_TABLES), "health"]
        detail = " ".join(f"{t}={counts.get(t, 0)}" for t in tables)
        bus.publish([Health(exchange=exchange, ts_local=now, symbol=None,
                            event=HealthKind.STOPPED, detail=f"produced {detail}")], force=True)


__all__ = ["Consumer", "RunPlan", "RunResult", "StatusView", "VenuePlan", "record",
           "run_connector"]
