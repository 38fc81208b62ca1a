"""The top-level nursery of a recording run: writers first, then one connector per venue, a
status reporter, the duration timer and the signal watcher.

Shutdown order (Ctrl-C, SIGTERM or the end of ``--duration``): cancel the feeds; publish a
``stopped`` health row per venue with the number of events it produced per table; close the bus;
the writers drain what is buffered, flush, and return. Nothing is cut off mid-write.

An exception from plugin code is recorded (``plugin_error``), logged with its traceback, and the
connector restarts with a fresh protocol object after a backoff, while the other venues keep
running. Network failures never get this far: the session handles them.

Must not: pass ``strict_exception_groups=False``, or leave a task without an owning nursery.
"""

from __future__ import annotations

import logging
import signal
import traceback
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Protocol

import trio

from core.bus import DEFAULT_LOSSLESS_BUFFER_BATCHES, Bus, Policy, Subscription
from core.clock import Clock, WallClock
from core.protocol import ExchangeProtocol, Instrument, ProtocolConfig
from core.recording import NullRecorder, RawRecorder, Recorder
from core.schema import Health, HealthKind
from core.session import Backoff, Connect, Session, VenueStats, connect_websocket, leaves
from core.status import DEFAULT_STATUS_INTERVAL_S, report_status
from core.writers.parquet import DEFAULT_FLUSH_INTERVAL_S, DEFAULT_FLUSH_ROWS, ParquetWriter
from core.writers.tables import TABLES, table_of_tag

log = logging.getLogger(__name__)


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
    buffer_batches: int = DEFAULT_LOSSLESS_BUFFER_BATCHES
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
    writer_buffer_batches: int = DEFAULT_LOSSLESS_BUFFER_BATCHES
    handle_signals: bool = True
    instruments: Mapping[str, Mapping[str, Instrument]] = field(default_factory=dict)
    consumers: list[Consumer] = field(default_factory=list)
    status_view: StatusView = report_status
    record_raw: bool = False


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


async def watch_signals(cancel_scope: trio.CancelScope) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            log.warning("received %s: flushing and stopping", signal.Signals(signum).name)
            cancel_scope.cancel()
            return


async def stop_after(seconds: float, cancel_scope: trio.CancelScope) -> None:
    await trio.sleep(seconds)
    log.info("duration of %g s reached: flushing and stopping", seconds)
    cancel_scope.cancel()


async def record(plan: RunPlan, *, clock: Clock | None = None,
                 connect: Connect = connect_websocket,
                 backoff: Backoff | None = None) -> dict[str, VenueStats]:
    """Run a recording until cancelled, signalled or out of time; return per-venue stats."""
    clock = clock or WallClock()
    backoff = backoff or Backoff()
    bus = Bus()
    writer = ParquetWriter(plan.out, flush_rows=plan.flush_rows,
                           flush_interval_s=plan.flush_interval_s, clock=clock)
    subscription = bus.subscribe("parquet", policy=Policy.LOSSLESS,
                                 buffer_batches=plan.writer_buffer_batches)
    stats = {v.proto.name: VenueStats(v.proto.name) for v in plan.venues}
    raw = RawRecorder(plan.out, writer.run_id) if plan.record_raw else None
    recorder: Recorder = raw if raw is not None else NullRecorder()
    if raw is not None:
        for v in plan.venues:
            raw.meta(v.proto.name, clock.now_ns(), v.url, list(v.config.symbols),
                     list(v.config.channels), dict(v.config.options))
            if v.instruments_http is not None:
                raw.http(v.proto.name, *v.instruments_http)
    async with trio.open_nursery() as outer:
        await outer.start(writer.run, subscription)
        raw_scope = trio.CancelScope()
        if raw is not None:
            async def run_raw(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
                              ) -> None:
                with raw_scope:
                    await raw.run(task_status=task_status)
            await outer.start(run_raw)
        for consumer in plan.consumers:
            sub = bus.subscribe(consumer.name, consumer.kinds, policy=consumer.policy,
                                buffer_batches=consumer.buffer_batches)
            if consumer.bind is not None:
                consumer.bind(bus)
            await outer.start(consumer.run, sub)
        try:
            async with trio.open_nursery() as feeds:
                for venue in plan.venues:
                    feeds.start_soon(partial(run_connector, venue, bus,
                                             stats[venue.proto.name], clock=clock,
                                             recorder=recorder, connect=connect,
                                             backoff=backoff))
                feeds.start_soon(plan.status_view, list(stats.values()), bus, clock,
                                 plan.status_interval_s)
                if plan.handle_signals:
                    feeds.start_soon(watch_signals, feeds.cancel_scope)
                if plan.duration_s is not None:
                    feeds.start_soon(stop_after, plan.duration_s, feeds.cancel_scope)
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
    return stats


def publish_produced(bus: Bus, clock: Clock, now: int | None = None) -> None:
    """One ``stopped`` health row per venue: events produced per table during the run."""
    now = clock.now_ns() if now is None else now
    per_venue: dict[str, dict[str, int]] = {}
    for (exchange, kind), n in bus.published.items():
        counts = per_venue.setdefault(exchange, {})
        table = table_of_tag(kind)
        counts[table] = counts.get(table, 0) + n
    for exchange, counts in sorted(per_venue.items()):
        counts["health"] = counts.get("health", 0) + 1  # this row
        analyzer = any(t not in TABLES for t in counts)  # e.g. the spread analyzer's rows
        own = () if analyzer else ("tob", "l2", "trades")
        tables = [*own, *sorted(t for t in counts if t not in TABLES), "health"]
        detail = " ".join(f"{t}={counts.get(t, 0)}" for t in tables)
        bus.publish([Health(exchange=exchange, ts_local=now, symbol=None,
                            event=HealthKind.STOPPED, detail=f"produced {detail}")])


__all__ = ["Consumer", "RunPlan", "StatusView", "VenuePlan", "record", "run_connector"]
