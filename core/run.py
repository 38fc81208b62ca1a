"""Command line: ``bookwire --plugins bybit,htx --symbols BTC-USDT --channels tob,l2`` (the same
as ``python -m core.run ...``).

Parses and checks the whole request before anything connects (:mod:`core.checks`: plugins,
channels, symbols, endpoints, venue options, the output folder, then every venue's instruments;
each problem is one line naming the flag and the valid choices, exit code 2), loads plugins
through their entry points (venues, tables, and the consumers: writers, sinks and analyzers, whose
own flags join the parser), checks the consumers (a sink's server must answer), fetches instrument
metadata, then hands a :class:`core.supervisor.RunPlan` to :func:`core.supervisor.record`.
``--from-redis`` reads another process's events instead of connecting (:mod:`core.streams.run`);
``--processes N`` runs the capture in N child processes (:mod:`core.shards`). Exit code 0
after Ctrl-C, SIGTERM or the end of ``--duration``; 1 when the run could not write its data.

Flags beyond the documented contract are listed in ``docs/cli.md``.
"""

from __future__ import annotations

import argparse
import difflib
import gc
import logging
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import trio

from core import clock_sync, simulate, tls
from core.checks import (
    UsageError,
    check_channels,
    check_out,
    check_plugins,
    check_positive,
    check_symbols,
    parse_endpoint_flags,
    parse_option_flags,
    program,
    raise_if,
    split_list,
)
from core.consumers import ConsumerRegistry, RunContext
from core.instruments import (
    InstrumentsResult,
    InstrumentsUnavailable,
    default_cache_dir,
    load_instruments,
)
from core.live_view import choose_status_view
from core.logs import configure_logging
from core.plugins import ExchangeRegistry, load_plugins
from core.protocol import ExchangeProtocol, Instrument, ProtocolConfig
from core.replay import ReplayError, replay
from core.schema import CHANNELS
from core.session import TRANSPORTS, current_transport, use_transport
from core.status import RunInfo
from core.summary import EXIT_FAILED, EXIT_OK, EXIT_USAGE, outcome, summary_lines
from core.supervisor import RunPlan, VenuePlan, record
from core.wiring import build_consumers, check_consumers, sink_values, spread_view
from core.writers.parquet import (
    DEFAULT_FINAL_FLUSH_TIMEOUT_S,
    DEFAULT_FLUSH_INTERVAL_S,
    MIB,
    WriteFailed,
)

log = logging.getLogger("bookwire")

DEFAULT_BUFFER_MB = 256


def build_parser(consumers: ConsumerRegistry | None = None) -> argparse.ArgumentParser:
    """Every flag: the core's, then each registered consumer's own (loaded from the installed
    plugins when ``consumers`` is not given)."""
    if consumers is None:
        consumers = load_plugins()[1].consumers
    p = argparse.ArgumentParser(
        prog=program(),
        description="Record normalized order books and trades from crypto venues to Parquet.",
        epilog=f"example: {program()} --plugins bybit,htx --symbols BTC-USDT "
               "--channels tob,l2,trades --out data --duration 600")
    p.add_argument("--plugins", help="comma-separated venue plugins (see --list-plugins)")
    p.add_argument("--symbols", default="BTC-USDT",
                   help="comma-separated canonical BASE-QUOTE symbols (default: BTC-USDT)")
    p.add_argument("--channels", default="tob,l2",
                   help=f"comma-separated channels from {','.join(CHANNELS)} (default: tob,l2)")
    p.add_argument("--out", default="data", type=Path, help="output folder (default: ./data)")
    p.add_argument("--duration", type=float, default=None,
                   help="stop after this many seconds (default: until interrupted)")
    p.add_argument("--endpoint", action="append", default=[], metavar="VENUE=URL",
                   help="replace a venue's websocket URL (VENUE=URL) or REST base URL "
                        "(VENUE.rest=URL); repeatable")
    p.add_argument("--opt", action="append", default=[], metavar="VENUE.KEY=VALUE",
                   help="venue option, e.g. bybit.l2_depth=200; repeatable")
    p.add_argument("--list-plugins", action="store_true", help="list plugins and exit")
    p.add_argument("--log-level", default="INFO",
                   choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="default: INFO")
    p.add_argument("--cache-dir", type=Path, default=None,
                   help="instrument metadata cache (default: $BOOKWIRE_CACHE_DIR or "
                        "~/.cache/bookwire)")
    p.add_argument("--flush-interval", type=float, default=DEFAULT_FLUSH_INTERVAL_S,
                   help=f"seconds between Parquet flushes (default: {DEFAULT_FLUSH_INTERVAL_S:g})")
    p.add_argument("--buffer-mb", type=float, default=DEFAULT_BUFFER_MB, metavar="MB",
                   help="memory bound of the writer's queue and of its own buffers, each, in "
                        f"MiB; beyond it events are dropped and counted (default: "
                        f"{DEFAULT_BUFFER_MB})")
    p.add_argument("--final-flush-timeout", type=float, default=DEFAULT_FINAL_FLUSH_TIMEOUT_S,
                   metavar="SECONDS",
                   help="at the end, give up writing what is left after this long; it is "
                        f"counted as lost (default: {DEFAULT_FINAL_FLUSH_TIMEOUT_S:g})")
    p.add_argument("--transport", choices=TRANSPORTS, default=current_transport(),
                   help="websocket client: trio-websocket (default) or lean, a one-pass "
                        "frame parser that costs less per message (docs/performance.md)")
    p.add_argument("--status-interval", type=float, default=10.0,
                   help="seconds between status lines on stderr (default: 10)")
    p.add_argument("--no-live", action="store_true",
                   help="plain status lines on stderr even when it is a terminal")
    p.add_argument("--record-raw", action="store_true",
                   help="also record every raw frame under <out>/raw for --replay")
    p.add_argument("--replay", type=Path, default=None, metavar="PATH",
                   help="rebuild the tables from raw recordings (a file or folder) instead of "
                        "connecting; writes to --out")
    p.add_argument("--sink", action="append", default=[], metavar="SINK",
                   help="where events go, repeatable: parquet (files under --out) or "
                        "redis://HOST:PORT[/DB] (Redis Streams) (default: parquet)")
    add_source_arguments(p)
    consumers.add_arguments(p)
    simulate.add_arguments(p)
    clock_sync.add_arguments(p)
    return p


def add_source_arguments(p: argparse.ArgumentParser) -> None:
    """Reading another process's events from Redis Streams, and capturing in several processes."""
    g = p.add_argument_group("Redis Streams source and sharded capture")
    g.add_argument("--from-redis", default=None, metavar="URL",
                   help="read events from Redis Streams (redis://HOST:PORT[/DB]) with a consumer "
                        "group instead of connecting to venues; writes to --out")
    g.add_argument("--consume", default="tob,l2,trades,health", metavar="TABLES",
                   help="with --from-redis: the tables to read (default: tob,l2,trades,health)")
    g.add_argument("--group", default="bookwire", metavar="NAME",
                   help="with --from-redis: the consumer group (default: bookwire)")
    g.add_argument("--consumer", default=None, metavar="NAME",
                   help="with --from-redis: this reader's name in the group (default: the "
                        "group name and the host name)")
    g.add_argument("--claim-idle", type=float, default=60.0, metavar="SECONDS",
                   help="with --from-redis: on start, take over entries another reader of the "
                        "group left unacknowledged for this long (default: 60)")
    g.add_argument("--processes", type=int, default=None, metavar="N",
                   help="capture in N child processes (venues, or symbol groups, split between "
                        "them) publishing to the --sink redis://...; this process writes Parquet "
                        "and runs the analyzers")


def leaves(group: BaseException) -> list[BaseException]:
    """The leaf exceptions of a (nested) exception group."""
    if isinstance(group, BaseExceptionGroup):
        return [leaf for e in group.exceptions for leaf in leaves(e)]
    return [group]


def list_plugins(registry: ExchangeRegistry) -> str:
    lines = []
    for name in registry.names():
        proto = registry.get(name)
        lines.append(f"{name:<20} channels: {','.join(sorted(proto.channels)):<22} "
                     f"{proto.description}")
        lines.extend(f"{'':<20} --opt {name}.{key}: {spec.valid_values()} "
                     f"(default {spec.default})" for key, spec in sorted(proto.options.items()))
    lines.extend(f"{spec.name:<20} {spec.role}, {spec.policy.value}"
                 f"{', --sink ' + '|'.join(spec.schemes) if spec.schemes else ''}: "
                 f"{spec.description}" for spec in registry.consumers.specs())
    lines.extend(f"{name:<20} NOT LOADED: {reason}"
                 for name, reason in sorted(registry.failed.items()))
    return "\n".join(lines)


def parse_endpoints(items: Sequence[str], registry: ExchangeRegistry,
                    plugins: Sequence[str]) -> tuple[dict[str, str], dict[str, str]]:
    """``--endpoint`` values -> (websocket URL, REST base URL) per venue; UsageError with every
    malformed item, unknown or unselected venue and bad URL."""
    ws, rest, problems = parse_endpoint_flags(items, registry, plugins)
    raise_if(problems)
    return ws, rest


def parse_options(items: Sequence[str], plugins: Sequence[str],
                  registry: ExchangeRegistry | None = None) -> dict[str, dict[str, str]]:
    """``--opt`` values -> options per venue; UsageError with every malformed item, unselected
    venue, unknown key and invalid value (keys and values are checked when ``registry`` is
    given)."""
    options, problems = parse_option_flags(items, registry or ExchangeRegistry(), plugins)
    raise_if(problems)
    return options


def validate(args: argparse.Namespace, registry: ExchangeRegistry
             ) -> tuple[list[str], list[str], list[str]]:
    """Plugins, channels and symbols of the request; UsageError with every problem found in
    them and in the numeric flags."""
    plugins = split_list(args.plugins)
    channels = split_list(args.channels)
    symbols = split_list(args.symbols)
    raise_if([*check_plugins(plugins, registry), *check_channels(channels, plugins, registry),
              *check_symbols(symbols), *check_positive("--duration", args.duration),
              *check_positive("--flush-interval", args.flush_interval),
              *check_positive("--status-interval", args.status_interval),
              *check_positive("--buffer-mb", args.buffer_mb, "MiB"),
              *check_positive("--final-flush-timeout", args.final_flush_timeout),
              *clock_sync.check_interval(args.clock_sync_interval)])
    return plugins, channels, symbols


def check_listed(proto: type[ExchangeProtocol], symbols: Sequence[str],
                 instruments: Mapping[str, Instrument]) -> None:
    """With instruments known, a symbol the venue does not list is a usage error (every such
    symbol is named)."""
    if not instruments:
        return
    problems = []
    for sym in symbols:
        if sym not in instruments:
            close = difflib.get_close_matches(sym, list(instruments), n=5, cutoff=0.6)
            hint = f"; close matches: {', '.join(close)}" if close else ""
            problems.append(f"--symbols: {proto.name} does not list symbol {sym!r} "
                            f"({len(instruments)} symbols known){hint}")
    raise_if(problems)


async def fetch_instruments(plugins: Sequence[str], registry: ExchangeRegistry,
                            rest_urls: Mapping[str, str], cache_dir: Path,
                            symbols: Sequence[str]) -> dict[str, InstrumentsResult]:
    """Every venue's instruments, fetched concurrently; UsageError naming every venue that has
    neither a reachable REST endpoint nor a cache, all at once."""
    results: dict[str, InstrumentsResult] = {}
    missing: dict[str, str] = {}

    async def one(name: str) -> None:
        proto = registry.get(name)
        try:
            results[name] = await load_instruments(proto, rest_urls.get(name), cache_dir,
                                                   required=proto.requires_instruments,
                                                   symbols=symbols)
        except InstrumentsUnavailable as exc:
            missing[name] = str(exc)

    async with trio.open_nursery() as nursery:
        for name in plugins:
            nursery.start_soon(one, name)
    raise_if([missing[name] for name in plugins if name in missing])
    return results


async def plan_run(args: argparse.Namespace, registry: ExchangeRegistry) -> RunPlan:
    """Check the whole request, then fetch instruments: a UsageError (exit 2) for anything wrong,
    before the first websocket connection."""
    problems: list[str] = []
    try:
        plugins, channels, symbols = validate(args, registry)
    except UsageError as exc:  # go on checking the other flags against the venues that exist
        problems.extend(exc.problems)
        plugins = list(dict.fromkeys(p for p in split_list(args.plugins) if p in registry))
        channels, symbols = split_list(args.channels), split_list(args.symbols)
    ws_urls: dict[str, str] = {}
    rest_urls: dict[str, str] = {}
    options: dict[str, dict[str, str]] = {p: {} for p in plugins}
    try:
        ws_urls, rest_urls = parse_endpoints(args.endpoint, registry, plugins)
    except UsageError as exc:
        problems.extend(exc.problems)
    try:
        options = parse_options(args.opt, plugins, registry)
    except UsageError as exc:
        problems.extend(exc.problems)
    ctx = RunContext(args=args, venues=plugins, channels=channels, symbols=symbols, out=args.out,
                     buffer_bytes=int(args.buffer_mb * MIB) if args.buffer_mb > 0 else 1)
    consumers, consumer_problems = build_consumers(registry.consumers, ctx,
                                                   sink_values(args, registry.consumers))
    problems.extend(consumer_problems)
    writes_out = not any(c.output is not None for c in consumers) or \
        any(c.output is not None and c.name == "parquet" for c in consumers)
    if writes_out:  # reported with the other flags' mistakes; the folder is made below
        problems.extend(check_out(args.out, create=False))
    raise_if(problems)
    raise_if(await check_consumers(consumers))
    if writes_out:
        raise_if(check_out(args.out))
    cache_dir = args.cache_dir or default_cache_dir()
    fetched = await fetch_instruments(plugins, registry, rest_urls, cache_dir, symbols)
    venues: list[VenuePlan] = []
    instruments: dict[str, dict[str, Instrument]] = {}
    for name in plugins:
        proto = registry.get(name)
        result = fetched[name]
        try:
            check_listed(proto, symbols, result.instruments)
        except UsageError as exc:
            problems.extend(exc.problems)
            continue
        instruments[name] = result.instruments
        config = ProtocolConfig(symbols=tuple(symbols), channels=tuple(channels),
                                instruments=result.instruments, options=options[name],
                                rest_url=rest_urls.get(name),
                                clock_sync_s=args.clock_sync_interval)
        try:
            proto(config)  # the constructor's own checks (options were checked above)
        except ValueError as exc:
            problems.append(f"{name}: {exc}")
            continue
        http = None
        if result.body is not None and result.url is not None:
            http = (result.url, time.time_ns(), result.body)
        venues.append(VenuePlan(proto=proto, url=ws_urls.get(name, proto.default_url),
                                config=config, instruments_http=http))
    raise_if(problems)
    ctx.instruments.update(instruments)
    run_info = RunInfo(out=args.out, duration_s=args.duration)
    return RunPlan(venues=venues, out=args.out, duration_s=args.duration,
                   flush_interval_s=args.flush_interval, status_interval_s=args.status_interval,
                   buffer_bytes=int(args.buffer_mb * MIB),
                   writer_max_bytes=int(args.buffer_mb * MIB),
                   final_flush_timeout_s=args.final_flush_timeout,
                   instruments=instruments, record_raw=args.record_raw,
                   consumers=consumers,
                   status_view=choose_status_view(
                       args.no_live, spread_view(consumers),  # type: ignore[arg-type]
                       run=run_info),
                   run_info=run_info)


async def async_main(argv: Sequence[str] | None = None, *, handle_signals: bool = True) -> int:
    """The CLI inside an already running trio loop (tests call this directly)."""
    early = argparse.ArgumentParser(add_help=False)
    early.add_argument("--log-level", default="INFO",
                       choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    configure_logging(early.parse_known_args(argv)[0].log_level)
    _, registry = load_plugins()
    parser = build_parser(registry.consumers)
    args = parser.parse_args(argv)
    if args.list_plugins:
        print(list_plugins(registry))
        return EXIT_OK
    if args.replay is not None:
        return await run_replay(args, registry, parser.prog)
    if args.simulate:
        return await simulate.run_simulated(args, argv, registry, async_main,
                                            handle_signals=handle_signals)
    if args.from_redis is not None:
        from core.streams.run import run_from_redis

        return await run_from_redis(args, registry, parser.prog,
                                    handle_signals=handle_signals)
    if args.processes is not None:
        from core.shards import run_sharded

        return await run_sharded(args, registry, parser.prog, handle_signals=handle_signals)
    try:
        plan = await plan_run(args, registry)
    except UsageError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    plan.handle_signals = handle_signals
    log.info("recording %s to %s", ", ".join(v.proto.name for v in plan.venues), plan.out)
    # Everything loaded so far (libraries, plugins, instruments) lives for the whole run: moved
    # out of the collector's reach, full collections no longer walk it, which otherwise stalls
    # the event loop for tens of milliseconds at high message rates (docs/performance.md).
    tls.warm()  # built now, and frozen with the rest: not on the loop when venues connect
    gc.freeze()
    use_transport(args.transport)
    result = await record(plan)
    for failure in result.failures()[:1]:
        print(f"{parser.prog}: error: {failure}; stopped", file=sys.stderr)
    for line in summary_lines(result):
        print(line, file=sys.stderr)
    return outcome(result).code


async def run_replay(args: argparse.Namespace, registry: ExchangeRegistry, prog: str) -> int:
    if not args.replay.exists():
        print(f"{prog}: error: --replay {args.replay}: no such file or folder", file=sys.stderr)
        return EXIT_USAGE
    failures: list[BaseException] = []
    unusable: list[BaseException] = []
    counts: dict[str, int] = {}
    try:
        counts = await replay(args.replay, registry, args.out,
                              venues=split_list(args.plugins) or None,
                              flush_interval_s=args.flush_interval)
    except* ReplayError as group:
        unusable.extend(leaves(group))
    except* WriteFailed as group:
        failures.extend(leaves(group))
    for exc in unusable:
        print(f"{prog}: error: {exc}", file=sys.stderr)
    for exc in failures:
        print(f"{prog}: error: {exc}; stopped", file=sys.stderr)
    if unusable:
        return EXIT_USAGE
    if failures:
        return EXIT_FAILED
    for venue, n in counts.items():
        log.info("replayed %d records of %s into %s", n, venue, args.out)
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return trio.run(async_main, argv)
    except KeyboardInterrupt:  # Ctrl-C before the recorder's own signal handling is up
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
