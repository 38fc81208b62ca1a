"""The top-level nursery of a recording run: outputs (writers, sinks) first, then the other
consumers, then one connector per venue (or a :class:`Feed` that replaces them: the Redis Streams
source), a status reporter, the duration timer and the signal watcher.

Consumers come in the plan (:class:`core.consumers.Consumer`, built by the command line from the
registered :class:`core.consumers.ConsumerSpec`); a plan without any output gets the Parquet
writer into ``plan.out``. The tables consumers declare are registered before anything starts.

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
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Protocol

import trio

from core.bus import DEFAULT_BUFFER_BYTES, Bus, Subscription
from core.clock import Clock, WallClock
from core.consumers import Consumer, ConsumerRun, Output
from core.parent import parent_to_watch, watch_parent
from core.protocol import ExchangeProtocol, Instrument, ProtocolConfig
from core.recording import NullRecorder, RawRecorder, Recorder
from core.schema import Health, HealthKind
from core.session import Backoff, Connect, Session, VenueStats, connect_websocket, leaves
from core.status import DEFAULT_STATUS_INTERVAL_S, RunInfo, report_status
from core.tables import RECORDER_TABLES, REGISTRY, Table, add_table, table_of_kind
from core.writers.parquet import (
    DEFAULT_FINAL_FLUSH_TIMEOUT_S,
    DEFAULT_FLUSH_INTERVAL_S,
    DEFAULT_FLUSH_ROWS,
    DEFAULT_MAX_BYTES,
    ParquetWriter,
    WriteFailed,
)

log = logging.getLogger(__name__)


@dataclass
class VenuePlan:
    """Everything needed to run one venue."""

    proto: type[ExchangeProtocol]
    url: str
    config: ProtocolConfig
    #: the REST response the instruments came from: (url, receive time ns, body)
    instruments_http: tuple[str, int, bytes] | None = None


# Shows live state while recording: (venue stats, bus, clock, interval) -> runs until cancelled.
StatusView = Callable[[list[VenueStats], Bus, Clock, float], Awaitable[None]]


@dataclass
class FeedContext:
    """What a :class:`Feed` gets: the bus, the consumers and their subscriptions, a way to add
    a venue's counters (the status view shows them), and ``stop()`` to end the run."""

    bus: Bus
    consumers: list[Consumer]
    subscriptions: dict[str, Subscription]
    add_venue: Callable[[str], VenueStats]
    clock: Clock
    stop: Callable[[], None]


class Feed(Protocol):
    """Replaces the venue connectors of a run (``--from-redis``): publishes events until
    cancelled; ``produced`` counts them per (venue, kind) for the summary."""

    produced: dict[tuple[str, str], int]

    async def run(self, ctx: FeedContext) -> None: ...


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
    #: replaces the venue connectors (the Redis Streams source); ``venues`` is then empty
    feed: Feed | None = None
    #: with a feed: the venues that must deliver market data (exit code 4 otherwise)
    selected: list[str] = field(default_factory=list)


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
            summary = "; ".join(f"{type(e).__name__}: {e}" for e in leaves(group))
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
    #: the writers and sinks of the run, in the plan's order
    outputs: list[Output]
    #: events lossless consumers lost to a full buffer (each also written as a ``dropped`` row)
    dropped: int
    dropped_by_venue: dict[str, int]
    max_stall_ms: float
    started_ns: int
    ended_ns: int
    #: the final flush was abandoned by a third signal
    aborted: bool = False
    #: the venues asked for (None: every venue in ``venues``); one that delivered no market
    #: data makes exit code 4 (a reader of Redis Streams asks for none)
    selected: list[str] | None = None

    def market_events(self, venue: str) -> int:
        return sum(n for (ex, kind), n in self.produced.items()
                   if ex == venue and kind in ("tob", "l2", "trade", "funding"))

    @property
    def writer(self) -> ParquetWriter | None:
        """The run's Parquet writer, if it has one."""
        return next((o for o in self.outputs if isinstance(o, ParquetWriter)), None)

    def failures(self) -> list[BaseException]:
        return [f for o in self.outputs for f in o.failures]

    def lost_events(self) -> int:
        return self.dropped + sum(o.lost_events() for o in self.outputs)


@dataclass
class Shutdown:
    """How far the run's end has come; the signal watcher reads and advances it."""

    feeds: trio.CancelScope
    outputs: list[Output]
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
                pending = [o.pending() for o in shutdown.outputs]
                log.warning(
                    "received %s again: still writing %d events in %d buffers; send it "
                    "once more to abandon them (counted as lost, exit code 3). Files already on "
                    "disk are complete whatever happens, kill -9 included.",
                    name, sum(p[0] for p in pending), sum(p[1] for p in pending))
            else:
                log.warning("received %s a third time: abandoning the final flush", name)
                shutdown.aborted = True
                for output in shutdown.outputs:
                    output.abort.cancel()


async def stop_after(seconds: float, cancel_scope: trio.CancelScope) -> None:
    await trio.sleep(seconds)
    log.info("duration of %g s reached: flushing and stopping", seconds)
    cancel_scope.cancel()


def with_default_output(plan: RunPlan, clock: Clock) -> list[Consumer]:
    """The plan's consumers, outputs first; the Parquet writer into ``plan.out`` when the plan
    has no output."""
    consumers = list(plan.consumers)
    if not any(c.output is not None for c in consumers):
        from core.writers.plugin import parquet_consumer

        consumers.append(parquet_consumer(
            plan.out, flush_interval_s=plan.flush_interval_s, flush_rows=plan.flush_rows,
            max_bytes=plan.writer_max_bytes, buffer_bytes=plan.buffer_bytes,
            final_flush_timeout_s=plan.final_flush_timeout_s, clock=clock))
    return sorted(consumers, key=lambda c: c.output is None)


def register_tables(consumers: Iterable[Consumer]) -> None:
    """The tables of the rows consumers publish, before any writer can see such a row."""
    for c in consumers:
        for table in c.tables:
            add_table(table)


async def record(plan: RunPlan, *, clock: Clock | None = None,
                 connect: Connect = connect_websocket,
                 backoff: Backoff | None = None) -> RunResult:
    """Run a recording until cancelled, signalled or out of time; return what it did."""
    clock = clock or WallClock()
    backoff = backoff or Backoff()
    consumers = with_default_output(plan, clock)
    register_tables(consumers)
    outputs = [c.output for c in consumers if c.output is not None]
    bus = Bus(table_of_kind=table_of_kind)
    stats = {v.proto.name: VenueStats(v.proto.name) for v in plan.venues}
    writer = next((o for o in outputs if isinstance(o, ParquetWriter)), None)
    run_id = writer.run_id if writer is not None else ParquetWriter(plan.out).run_id
    raw = RawRecorder(plan.out, run_id) if plan.record_raw else None
    recorder: Recorder = raw if raw is not None else NullRecorder()
    started_ns = clock.now_ns()
    if raw is not None:
        for v in plan.venues:
            raw.meta(v.proto.name, started_ns, v.url, list(v.config.symbols),
                     list(v.config.channels), dict(v.config.options))
            if v.instruments_http is not None:
                raw.http(v.proto.name, *v.instruments_http)
    subscriptions = {c.name: bus.subscribe(c.name, c.kinds, policy=c.policy,
                                           max_bytes=c.buffer_bytes, coalesce_s=c.coalesce_s)
                     for c in consumers}
    for v in plan.venues:  # what was asked of each venue, before anything can fail
        bus.publish([started_row(v.proto.name, started_ns, v.config.symbols, v.config.channels,
                                 v.url)], force=True)
    probe = StallProbe()
    shutdown = Shutdown(feeds=trio.CancelScope(), outputs=outputs)
    run = Run(plan=plan, bus=bus, consumers=consumers, subscriptions=subscriptions, stats=stats,
              shutdown=shutdown, raw=raw, recorder=recorder, clock=clock, connect=connect,
              backoff=backoff)
    if plan.run_info is not None and writer is not None:
        plan.run_info.written = lambda: (sum(writer.rows_written.values()), writer.bytes_written)
    async with trio.open_nursery() as outer:
        outer.start_soon(probe.run)
        if plan.handle_signals:
            outer.start_soon(watch_signals, shutdown)
            if (parent := parent_to_watch()) is not None:  # a capture process of --processes
                outer.start_soon(watch_parent, parent)
        try:
            await record_into(run)
        # A write failure stops the run; the output keeps it (output.failures) for the
        # summary and the exit code.
        except* WriteFailed:
            pass
        finally:
            outer.cancel_scope.cancel()  # the writers are done: stop watching signals
    produced = dict(bus.published)
    if plan.feed is not None:
        for key, n in plan.feed.produced.items():
            produced[key] = produced.get(key, 0) + n
    ends = [o.end_ns for o in outputs if o.end_ns is not None]
    return RunResult(venues=stats, produced=produced, outputs=outputs,
                     dropped=bus.dropped_events(), dropped_by_venue=bus.dropped_by_venue(),
                     max_stall_ms=probe.max_ns / 1e6,
                     started_ns=started_ns, ended_ns=ends[0] if ends else clock.now_ns(),
                     aborted=shutdown.aborted,
                     selected=None if plan.feed is None else list(plan.selected))


@dataclass
class Run:
    """One run's moving parts, handed from :func:`record` to its steps."""

    plan: RunPlan
    bus: Bus
    consumers: list[Consumer]
    subscriptions: dict[str, Subscription]
    stats: dict[str, VenueStats]
    shutdown: Shutdown
    raw: RawRecorder | None
    recorder: Recorder
    clock: Clock
    connect: Connect
    backoff: Backoff
    view_stats: list[VenueStats] = field(default_factory=list)

    def add_venue(self, name: str) -> VenueStats:
        st = self.stats.get(name)
        if st is None:
            st = self.stats[name] = VenueStats(name)
            self.view_stats.append(st)
        return st


async def record_into(run: Run) -> None:
    """The outputs and consumers, then the feeds; at the end, the ``stopped`` rows and the bus
    closed so that the outputs drain and return."""
    bus, clock, raw = run.bus, run.clock, run.raw
    async with trio.open_nursery() as sinks:
        raw_scope = trio.CancelScope()
        if raw is not None:
            async def run_raw(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                              ) -> None:
                with raw_scope:
                    await raw.run(task_status=task_status)
            await sinks.start(run_raw)
        for consumer in run.consumers:
            if consumer.bind is not None:
                consumer.bind(bus)
            await sinks.start(consumer.run, run.subscriptions[consumer.name])
        try:
            with run.shutdown.feeds:
                await run_feeds(run)
        finally:
            end_ns = clock.now_ns()
            for consumer in run.consumers:
                if consumer.finish is not None:
                    consumer.finish(end_ns)
            if raw is not None:
                raw.stop(end_ns)
                raw_scope.cancel()
            for output in run.shutdown.outputs:
                output.end_ns = end_ns
            publish_produced(bus, clock, end_ns,
                             consumer_tables=[t for c in run.consumers for t in c.tables])
            bus.close()


async def run_feeds(run: Run) -> None:
    """One connector per venue (or the plan's feed), the status view and the duration timer,
    until cancelled."""
    plan = run.plan
    run.view_stats[:] = list(run.stats.values())
    async with trio.open_nursery() as feeds:
        if plan.feed is not None:
            feeds.start_soon(plan.feed.run, FeedContext(
                bus=run.bus, consumers=run.consumers, subscriptions=run.subscriptions,
                add_venue=run.add_venue, clock=run.clock, stop=run.shutdown.feeds.cancel))
        for venue in plan.venues:
            feeds.start_soon(partial(run_connector, venue, run.bus, run.stats[venue.proto.name],
                                     clock=run.clock, recorder=run.recorder,
                                     connect=run.connect, backoff=run.backoff))
        feeds.start_soon(plan.status_view, run.view_stats, run.bus, run.clock,
                         plan.status_interval_s)
        if plan.duration_s is not None:
            feeds.start_soon(stop_after, plan.duration_s, run.shutdown.feeds)


def started_row(venue: str, ts: int, symbols: Sequence[str], channels: Sequence[str],
                url: str) -> Health:
    """The ``started`` health row: what was asked of a venue (a replay writes the same one)."""
    return Health(exchange=venue, ts_local=ts, symbol=None, event=HealthKind.STARTED,
                  detail=f"symbols={','.join(symbols)} channels={','.join(channels)} url={url}")


def publish_produced(bus: Bus, clock: Clock, now: int | None = None, *,
                     consumer_tables: Sequence[Table] = ()) -> None:
    """One ``stopped`` health row per venue: events produced per table during the run. A venue
    lists the recorder's tables; the partition of a consumer's rows (the spread analyzer's) lists
    the tables that consumer declared."""
    now = clock.now_ns() if now is None else now
    per_venue: dict[str, dict[str, int]] = {}
    for (exchange, kind), n in bus.published.items():
        counts = per_venue.setdefault(exchange, {})
        table = table_of_kind(kind)
        counts[table] = counts.get(table, 0) + n
    venue_tables = [t for t in RECORDER_TABLES if t != "health"]
    declared = [t.name for t in consumer_tables if t.name in REGISTRY]
    for exchange, counts in sorted(per_venue.items()):
        counts["health"] = counts.get("health", 0) + 1  # this row
        own = sorted(declared) if any(t in declared for t in counts) else venue_tables
        tables = [*own, *sorted(t for t in counts if t not in own and t != "health"), "health"]
        detail = " ".join(f"{t}={counts.get(t, 0)}" for t in tables)
        bus.publish([Health(exchange=exchange, ts_local=now, symbol=None,
                            event=HealthKind.STOPPED, detail=f"produced {detail}")], force=True)


__all__ = ["Consumer", "ConsumerRun", "Feed", "FeedContext", "RunPlan", "RunResult",
           "StatusView", "VenuePlan", "record", "run_connector"]
