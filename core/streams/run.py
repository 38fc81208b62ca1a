"""``python -m core.run --from-redis URL --consume TABLES --group NAME --out DIR``: record what
other processes publish to Redis Streams (:mod:`core.streams.source`) with this process's writer
and analyzers.

Everything is checked before the first read (exit code 2): the URL and the other flags, the
output folder, the consumers' options, and that Redis answers. Then the run is an ordinary
:func:`core.supervisor.record` whose feed is the source; acknowledgements go on in a task beside
it and the last ones are sent after the writer's final flush.

Must not: acknowledge anything itself (the source does, once the writer reports the rows on disk).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

import trio

from core.checks import UsageError, check_out, check_positive, raise_if, split_list
from core.consumers import RunContext
from core.live_view import choose_status_view
from core.plugins import ExchangeRegistry
from core.status import RunInfo
from core.streams.client import check_reachable, parse_url
from core.streams.source import StreamSource, default_consumer
from core.summary import EXIT_USAGE, outcome, summary_lines
from core.supervisor import RunPlan, RunResult, record
from core.tables import REGISTRY
from core.wiring import build_consumers, check_consumers, sink_values, spread_view
from core.writers.parquet import MIB, ParquetWriter

log = logging.getLogger("bookwire")


def source_from_args(args: argparse.Namespace, url_text: str,
                     tables: Sequence[str]) -> tuple[StreamSource | None, list[str]]:
    problems: list[str] = []
    source = None
    try:
        url = parse_url(url_text, "--from-redis")
    except ValueError as exc:
        return None, [str(exc)]
    if not args.group:
        problems.append("--group is empty; give the consumer group's name")
    problems += check_positive("--claim-idle", args.claim_idle)
    if not problems and all(t in REGISTRY for t in tables) and tables:
        source = StreamSource(url, args.group, args.consumer or default_consumer(args.group),
                              list(tables), claim_idle_s=args.claim_idle)
    return source, problems


def consumed_tables(text: str) -> tuple[list[str], list[str]]:
    tables = split_list(text)
    unknown = [t for t in tables if t not in REGISTRY]
    if unknown or not tables:
        return tables, [f"--consume {text}: unknown tables {', '.join(unknown) or '(none)'}; "
                        f"valid choices: {', '.join(REGISTRY.names())}"]
    return tables, []


async def plan_from_redis(args: argparse.Namespace, registry: ExchangeRegistry,
                          source: StreamSource | None = None,
                          tables: Sequence[str] | None = None) -> tuple[RunPlan, StreamSource]:
    """Check everything (UsageError, exit code 2) and make the plan; ``source`` when the caller
    made it (sharded capture)."""
    problems: list[str] = []
    if tables is None:
        tables, problems = consumed_tables(args.consume)
    if source is None:
        source, more = source_from_args(args, args.from_redis, tables)
        problems += more
    for flag, value, what in (("--duration", args.duration, "seconds"),
                              ("--flush-interval", args.flush_interval, "seconds"),
                              ("--status-interval", args.status_interval, "seconds"),
                              ("--buffer-mb", args.buffer_mb, "MiB"),
                              ("--final-flush-timeout", args.final_flush_timeout, "seconds")):
        problems += check_positive(flag, value, what)
    ctx = RunContext(args=args, venues=[], channels=[t for t in tables if t != "health"],
                     symbols=[], out=args.out, captures=False,
                     buffer_bytes=int(args.buffer_mb * MIB) if args.buffer_mb > 0 else 1)
    sinks = [s for s in sink_values(args, registry.consumers) if not s.startswith("redis")] or \
        ["parquet"]
    consumers, more = build_consumers(registry.consumers, ctx, sinks)
    problems += more
    if not any(isinstance(c.output, ParquetWriter) for c in consumers):
        problems.append("--from-redis writes Parquet: the parquet writer must be available "
                        "(--sink parquet)")
    raise_if(problems)
    assert source is not None
    raise_if(check_out(args.out))
    problems = await check_consumers(consumers)
    try:
        await check_reachable(source.url, "--from-redis")
    except ValueError as exc:
        problems.append(str(exc))
    raise_if(problems)
    plan = RunPlan(venues=[], out=args.out, duration_s=args.duration,
                   flush_interval_s=args.flush_interval, status_interval_s=args.status_interval,
                   buffer_bytes=int(args.buffer_mb * MIB),
                   writer_max_bytes=int(args.buffer_mb * MIB),
                   final_flush_timeout_s=args.final_flush_timeout, consumers=consumers,
                   feed=source, status_view=choose_status_view(
                       args.no_live, spread_view(consumers),  # type: ignore[arg-type]
                       run=RunInfo(out=args.out, duration_s=args.duration)))
    return plan, source


async def record_from_redis(plan: RunPlan, source: StreamSource) -> RunResult:
    """The run, with acknowledgements beside it and the last ones after the final flush."""
    async with trio.open_nursery() as nursery:
        await nursery.start(source.ack_loop)
        result = await record(plan)
        with trio.CancelScope(shield=True), trio.move_on_after(30):
            await source.flush_acks()
        nursery.cancel_scope.cancel()
    return result


def source_lines(source: StreamSource) -> list[str]:
    bad = sum(source.undecodable.values())
    return [f"redis: read {source.entries_read:,} entries from {len(source._streams)} streams "
            f"of {source.url} as {source.consumer} in group {source.group}, acknowledged "
            f"{source.entries_acked:,}, {bad} did not decode, {source.unacked:,} left pending"]


async def run_from_redis(args: argparse.Namespace, registry: ExchangeRegistry, prog: str, *,
                         handle_signals: bool = True) -> int:
    try:
        plan, source = await plan_from_redis(args, registry)
    except UsageError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    plan.handle_signals = handle_signals
    log.info("recording %s (group %s) to %s", source.url, source.group, plan.out)
    result = await record_from_redis(plan, source)
    for failure in result.failures()[:1]:
        print(f"{prog}: error: {failure}; stopped", file=sys.stderr)
    for line in [*source_lines(source), *summary_lines(result)]:
        print(line, file=sys.stderr)
    return outcome(result).code


__all__ = ["plan_from_redis", "record_from_redis", "run_from_redis"]
