"""Command line: ``python -m core.run --plugins bybit,htx --symbols BTC-USDT --channels tob,l2``.

Parses and validates the request (unknown plugin, channel or symbol: a message naming the valid
choices and exit code 2), loads plugins through their entry points, fetches instrument metadata,
then hands a :class:`core.supervisor.RunPlan` to :func:`core.supervisor.record`. Exit code 0
after Ctrl-C, SIGTERM or the end of ``--duration``; 1 when the run could not write its data.

Flags beyond the documented contract are listed in ``docs/cli.md``.
"""

from __future__ import annotations

import argparse
import difflib
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import trio

from analysis.spread_live import analyzer_from_options
from core import simulate
from core.instruments import InstrumentsUnavailable, default_cache_dir, load_instruments
from core.live_view import choose_status_view
from core.plugins import ExchangeRegistry, load_plugins
from core.protocol import ExchangeProtocol, Instrument, ProtocolConfig
from core.replay import ReplayError, replay
from core.schema import CHANNELS
from core.supervisor import RunPlan, VenuePlan, record
from core.symbols import is_canonical
from core.writers.parquet import DEFAULT_FLUSH_INTERVAL_S, WriteFailed

log = logging.getLogger("bookwire")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class UsageError(Exception):
    """A request that cannot run as given; the message names the valid choices."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m core.run",
        description="Record normalized order books and trades from crypto venues to Parquet.",
        epilog="example: python -m core.run --plugins bybit,htx --symbols BTC-USDT "
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
    p.add_argument("--status-interval", type=float, default=10.0,
                   help="seconds between status lines on stderr (default: 10)")
    p.add_argument("--no-live", action="store_true",
                   help="plain status lines on stderr even when it is a terminal")
    p.add_argument("--no-spreads", action="store_true",
                   help="do not run the live cross-venue spread analyzer")
    p.add_argument("--spread-threshold-bps", default="0", metavar="LIST",
                   help="comma-separated net-edge thresholds in bps for opportunity episodes "
                        "(default: 0)")
    p.add_argument("--spread-stale-ms", action="append", default=[], metavar="[VENUE=]MS",
                   help="quote staleness cap in ms, for every venue or one; repeatable "
                        "(default: 250)")
    p.add_argument("--fees", type=Path, default=None, metavar="FILE",
                   help="TOML fee file merged over the documented defaults (analysis/fees.toml)")
    p.add_argument("--taker-fee-bps", action="append", default=[], metavar="VENUE=BPS",
                   help="taker fee of one venue in bps, e.g. bybit=5.5; repeatable")
    p.add_argument("--record-raw", action="store_true",
                   help="also record every raw frame under <out>/raw for --replay")
    p.add_argument("--replay", type=Path, default=None, metavar="PATH",
                   help="rebuild the tables from raw recordings (a file or folder) instead of "
                        "connecting; writes to --out")
    simulate.add_arguments(p)
    return p


def leaves(group: BaseException) -> list[BaseException]:
    """The leaf exceptions of a (nested) exception group."""
    if isinstance(group, BaseExceptionGroup):
        return [leaf for e in group.exceptions for leaf in leaves(e)]
    return [group]


def split_list(text: str | None) -> list[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def list_plugins(registry: ExchangeRegistry) -> str:
    lines = []
    for name in registry.names():
        proto = registry.get(name)
        lines.append(f"{name:<20} channels: {','.join(sorted(proto.channels)):<16} "
                     f"{proto.description}")
    return "\n".join(lines)


def parse_endpoints(items: Sequence[str], registry: ExchangeRegistry,
                    plugins: Sequence[str]) -> tuple[dict[str, str], dict[str, str]]:
    ws: dict[str, str] = {}
    rest: dict[str, str] = {}
    for item in items:
        key, sep, url = item.partition("=")
        if not sep or not url:
            raise UsageError(f"--endpoint {item!r}: expected VENUE=URL or VENUE.rest=URL")
        venue, _, kind = key.partition(".")
        if venue not in registry:
            raise UsageError(f"--endpoint {item!r}: unknown plugin {venue!r}; valid choices: "
                             f"{', '.join(registry.names())}")
        if kind not in ("", "rest", "ws"):
            raise UsageError(f"--endpoint {item!r}: expected VENUE=URL or VENUE.rest=URL")
        if venue not in plugins:
            log.warning("--endpoint for %s, which is not among --plugins", venue)
        (rest if kind == "rest" else ws)[venue] = url
    return ws, rest


def parse_options(items: Sequence[str], plugins: Sequence[str]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {p: {} for p in plugins}
    for item in items:
        key, sep, value = item.partition("=")
        venue, dot, name = key.partition(".")
        if not sep or not dot or not name:
            raise UsageError(f"--opt {item!r}: expected VENUE.KEY=VALUE")
        if venue not in out:
            raise UsageError(f"--opt {item!r}: {venue!r} is not among --plugins "
                             f"({', '.join(plugins)})")
        out[venue][name] = value
    return out


def validate(args: argparse.Namespace, registry: ExchangeRegistry
             ) -> tuple[list[str], list[str], list[str]]:
    plugins = split_list(args.plugins)
    if not plugins:
        raise UsageError(f"--plugins is required; valid choices: {', '.join(registry.names())}")
    for name in plugins:
        if name not in registry:
            raise UsageError(f"unknown plugin {name!r}; valid choices: "
                             f"{', '.join(registry.names())}")
    channels = split_list(args.channels)
    if not channels:
        raise UsageError(f"--channels is empty; valid choices: {', '.join(CHANNELS)}")
    for ch in channels:
        if ch not in CHANNELS:
            raise UsageError(f"unknown channel {ch!r}; valid choices: {', '.join(CHANNELS)}")
        for name in plugins:
            if ch not in registry.get(name).channels:
                raise UsageError(f"plugin {name!r} does not serve channel {ch!r}; it serves: "
                                 f"{', '.join(sorted(registry.get(name).channels))}")
    symbols = split_list(args.symbols)
    if not symbols:
        raise UsageError("--symbols is empty; give canonical BASE-QUOTE symbols like BTC-USDT")
    for sym in symbols:
        if not is_canonical(sym):
            raise UsageError(f"symbol {sym!r} is not canonical BASE-QUOTE in upper case "
                             f"(for example BTC-USDT)")
    if args.duration is not None and args.duration <= 0:
        raise UsageError("--duration must be a positive number of seconds")
    return plugins, channels, symbols


def check_listed(proto: type[ExchangeProtocol], symbols: Sequence[str],
                 instruments: dict[str, Instrument]) -> None:
    """With instruments known, a symbol the venue does not list is a usage error."""
    if not instruments:
        return
    for sym in symbols:
        if sym not in instruments:
            close = difflib.get_close_matches(sym, list(instruments), n=5, cutoff=0.6)
            hint = f"; close matches: {', '.join(close)}" if close else ""
            raise UsageError(f"{proto.name} does not list symbol {sym!r} "
                             f"({len(instruments)} symbols known){hint}")


async def plan_run(args: argparse.Namespace, registry: ExchangeRegistry) -> RunPlan:
    plugins, channels, symbols = validate(args, registry)
    spreads = None
    if not args.no_spreads and "tob" in channels and len(plugins) >= 2:
        try:
            spreads = analyzer_from_options(plugins, thresholds_bps=args.spread_threshold_bps,
                                            stale_ms=args.spread_stale_ms, fees_file=args.fees,
                                            taker_fee_bps=args.taker_fee_bps)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    ws_urls, rest_urls = parse_endpoints(args.endpoint, registry, plugins)
    options = parse_options(args.opt, plugins)
    cache_dir = args.cache_dir or default_cache_dir()
    venues: list[VenuePlan] = []
    instruments: dict[str, dict[str, Instrument]] = {}
    for name in plugins:
        proto = registry.get(name)
        try:
            result = await load_instruments(proto, rest_urls.get(name), cache_dir,
                                            required=proto.requires_instruments)
        except InstrumentsUnavailable as exc:
            raise UsageError(str(exc)) from None
        check_listed(proto, symbols, result.instruments)
        instruments[name] = result.instruments
        config = ProtocolConfig(symbols=tuple(symbols), channels=tuple(channels),
                                instruments=result.instruments, options=options[name])
        try:
            proto(config)  # constructor validates options
        except ValueError as exc:
            raise UsageError(f"{name}: {exc}") from None
        http = None
        if result.body is not None and result.url is not None:
            http = (result.url, time.time_ns(), result.body)
        venues.append(VenuePlan(proto=proto, url=ws_urls.get(name, proto.default_url),
                                config=config, instruments_http=http))
    return RunPlan(venues=venues, out=args.out, duration_s=args.duration,
                   flush_interval_s=args.flush_interval, status_interval_s=args.status_interval,
                   instruments=instruments, record_raw=args.record_raw,
                   consumers=[spreads.consumer()] if spreads is not None else [],
                   status_view=choose_status_view(args.no_live, spreads))


async def async_main(argv: Sequence[str] | None = None, *, handle_signals: bool = True) -> int:
    """The CLI inside an already running trio loop (tests call this directly)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    _, registry = load_plugins()
    if args.list_plugins:
        print(list_plugins(registry))
        return EXIT_OK
    if args.replay is not None:
        return await run_replay(args, registry, parser.prog)
    if args.simulate:
        return await simulate.run_simulated(args, argv, registry, async_main,
                                            handle_signals=handle_signals)
    try:
        plan = await plan_run(args, registry)
    except UsageError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    plan.handle_signals = handle_signals
    log.info("recording %s to %s", ", ".join(v.proto.name for v in plan.venues), plan.out)
    failures: list[BaseException] = []
    try:
        await record(plan)
    except* WriteFailed as group:
        failures.extend(leaves(group))
    for exc in failures:
        print(f"{parser.prog}: error: {exc}; stopped", file=sys.stderr)
    return EXIT_FAILED if failures else EXIT_OK


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
    return trio.run(async_main, argv)


if __name__ == "__main__":
    sys.exit(main())
