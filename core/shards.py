"""Sharded capture on one host: ``--processes N --sink redis://HOST:PORT ...``.

The venues (or, with more processes than venues, groups of each venue's symbols) are split
between N child processes, each an ordinary ``python -m core.run`` capture that publishes to the
given Redis (``--sink redis://...`` only: no Parquet of its own, no spread analyzer). This process
is the one writer: it reads every shard's streams with a consumer group of its own
(:mod:`core.streams.source`, created at the end of each stream before any child starts, so older
entries are not read again), writes Parquet into ``--out``, runs the live spread analyzer across
all shards, and shows every venue in the live view.

Stopping (Ctrl-C, SIGTERM, the end of ``--duration``, or every child gone): the children get
SIGTERM (they run in their own process group, so a terminal's Ctrl-C reaches this process only,
and each stops by itself within a second if this process dies: :mod:`core.parent`) and flush
what they hold to Redis; then this process reads the streams until nothing is left,
writes, acknowledges and exits. The exit code is the lowest non-zero one of this process and its
children (a child killed by a signal counts as 1); a child that exits before it is asked to
(its venues were not recorded to the end) makes it at most 1.

The same layout on several hosts is the recipe in ``docs/scaling.md``: captures with ``--sink
redis://...`` anywhere, one ``--from-redis`` writer.

Must not: leave a child running when it returns.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

import trio

from core.checks import UsageError, check_positive, raise_if
from core.parent import child_environment
from core.plugins import ExchangeRegistry
from core.streams.client import parse_url
from core.streams.codec import stream_name
from core.streams.run import plan_from_redis, record_from_redis, source_lines
from core.streams.source import StreamSource
from core.summary import EXIT_FAILED, EXIT_USAGE, outcome, summary_lines
from core.supervisor import FeedContext

log = logging.getLogger("bookwire")

#: beyond the children's own final flush, how long to wait for them to exit
EXIT_GRACE_S = 15.0
#: reading what the children left in Redis after they stopped
DRAIN_TIMEOUT_S = 120.0


def split(venues: Sequence[str], symbols: Sequence[str], n: int
          ) -> list[tuple[list[str], list[str]]]:
    """N shards of (venues, symbols): venues round-robin, or each venue's symbols in groups when
    there are more processes than venues (never more shards than venue-symbol pairs)."""
    if n <= len(venues):
        return [(list(venues[i::n]), list(symbols)) for i in range(n)]
    shards = []
    for i, venue in enumerate(venues):
        k = min(n // len(venues) + (1 if i < n % len(venues) else 0), len(symbols))
        shards += [([venue], list(symbols[j::k])) for j in range(k)]
    return shards


def child_argv(args: argparse.Namespace, venues: Sequence[str], symbols: Sequence[str],
               sink: str) -> list[str]:
    """A capture of ``venues`` x ``symbols`` to Redis, with the flags of this run that apply."""
    argv = ["--plugins", ",".join(venues), "--symbols", ",".join(symbols),
            "--channels", args.channels, "--out", str(args.out), "--sink", sink, "--no-live",
            "--log-level", args.log_level, "--status-interval", str(args.status_interval),
            "--buffer-mb", str(args.buffer_mb),
            "--final-flush-timeout", str(args.final_flush_timeout)]
    if hasattr(args, "no_spreads"):
        argv.append("--no-spreads")
    for flag in ("redis_maxlen", "redis_buffer_mb", "redis_tables"):
        value = getattr(args, flag, None)
        if value is not None:
            argv += [f"--{flag.replace('_', '-')}", str(value)]
    argv += [a for e in args.endpoint if e.partition("=")[0].partition(".")[0] in venues
             for a in ("--endpoint", e)]
    argv += [a for o in args.opt if o.partition(".")[0] in venues for a in ("--opt", o)]
    if args.cache_dir is not None:
        argv += ["--cache-dir", str(args.cache_dir)]
    if args.record_raw:
        argv.append("--record-raw")
    return argv


@dataclass
class ShardFeed:
    """The feed of the writer process: the children, and the source reading what they publish."""

    source: StreamSource
    children: list[list[str]]
    venues: list[str]
    stop_timeout_s: float
    codes: list[int] = field(default_factory=list)
    produced: dict[tuple[str, str], int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.produced = self.source.produced
        self._procs: list[trio.Process] = []
        self.usage_error = False
        self.ended_early: list[int] = []  # capture processes that exited before being asked

    async def run(self, ctx: FeedContext) -> None:
        for venue in self.venues:
            ctx.add_venue(venue)
        try:
            async with trio.open_nursery() as nursery:
                for argv in self.children:
                    proc = await trio.lowlevel.open_process(
                        [sys.executable, "-m", "core.run", *argv], start_new_session=True,
                        env=child_environment())  # it stops when this process is gone
                    self._procs.append(proc)
                    log.info("shard %d (pid %d): %s", len(self._procs), proc.pid,
                             " ".join(argv[:4]))
                for index, proc in enumerate(self._procs, start=1):
                    nursery.start_soon(self._watch, ctx, index, proc)
                nursery.start_soon(self._all_gone, ctx)
                await self.source.run(ctx)
        finally:
            with trio.CancelScope(shield=True):
                await self._stop_children()
                self.source.stop_when_idle = True
                self.source.recover_pending()
                with trio.move_on_after(DRAIN_TIMEOUT_S) as drain:
                    await self.source.run(ctx)
                if drain.cancelled_caught:
                    log.error("shards: Redis still had entries after %g s; they stay pending "
                              "for the next --from-redis run of this group", DRAIN_TIMEOUT_S)

    async def _watch(self, ctx: FeedContext, index: int, proc: trio.Process) -> None:
        """A child that exits before it is asked to: a usage error (its own checks failed)
        stops the run at once; any other exit is logged (its code counts at the end)."""
        code = await proc.wait()
        if code == EXIT_USAGE:
            log.error("shards: capture process %d refused its flags (exit code 2); stopping",
                      index)
            self.usage_error = True
            ctx.stop()
        else:
            self.ended_early.append(index)
            log.error("shards: capture process %d (pid %d) exited with %d before the end of "
                      "the run", index, proc.pid, code)

    async def _all_gone(self, ctx: FeedContext) -> None:
        """When every child has exited on its own, the run is over."""
        for proc in self._procs:
            await proc.wait()
        log.warning("shards: every capture process has exited; finishing")
        ctx.stop()

    async def _stop_children(self) -> None:
        for proc in self._procs:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
        with trio.move_on_after(self.stop_timeout_s):
            for proc in self._procs:
                await proc.wait()
        for proc in self._procs:
            if proc.returncode is None:
                log.error("shards: pid %d did not stop in %g s; killing it", proc.pid,
                          self.stop_timeout_s)
                proc.kill()
                await proc.wait()
        self.codes = [p.returncode if p.returncode >= 0 else EXIT_FAILED
                      for p in self._procs if p.returncode is not None]


async def run_sharded(args: argparse.Namespace, registry: ExchangeRegistry, prog: str, *,
                      handle_signals: bool = True) -> int:
    from core.run import parse_endpoints, parse_options, validate

    try:
        problems: list[str] = []
        try:
            venues, channels, symbols = validate(args, registry)
        except UsageError as exc:
            problems += exc.problems
            venues, channels, symbols = [], [], []
        for check in (lambda: parse_endpoints(args.endpoint, registry, venues),
                      lambda: parse_options(args.opt, venues, registry)):
            try:
                check()
            except UsageError as exc:
                problems += exc.problems
        if args.processes < 1:
            problems.append(f"--processes must be at least 1, not {args.processes}")
        problems += check_positive("--claim-idle", args.claim_idle)
        redis = [s for s in args.sink if s.startswith("redis:")]
        if len(redis) != 1:
            problems.append("--processes needs one --sink redis://HOST:PORT[/DB] for the "
                            "capture processes to publish to")
        raise_if(problems)
        url = parse_url(redis[0])
        tables = [*channels, "health"]  # a channel fills the table of its name
        source = StreamSource(url, f"bookwire-{args.group}-{secrets_suffix()}", "writer", tables,
                              claim_idle_s=args.claim_idle, group_start="$")
        plan, source = await plan_from_redis(args, registry, source=source, tables=tables)
    except UsageError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ValueError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    await source.ensure_groups([stream_name(t, v) for t in tables for v in venues])
    shards = split(venues, symbols, args.processes)
    feed = ShardFeed(source, [child_argv(args, v, s, redis[0]) for v, s in shards], venues,
                     stop_timeout_s=args.final_flush_timeout + EXIT_GRACE_S)
    plan.feed = feed
    plan.selected = list(venues)
    plan.handle_signals = handle_signals
    log.info("recording %s in %d processes through %s to %s", ", ".join(venues), len(shards),
             url, plan.out)
    result = await record_from_redis(plan, source)
    for failure in result.failures()[:1]:
        print(f"{prog}: error: {failure}; stopped", file=sys.stderr)
    for line in [*source_lines(source), *summary_lines(result)]:
        print(line, file=sys.stderr)
    if feed.usage_error:
        return EXIT_USAGE
    codes = [c for c in (outcome(result).code, *feed.codes) if c]
    if feed.codes:
        print(f"capture processes exited with {', '.join(map(str, feed.codes))}",
              file=sys.stderr)
    if feed.ended_early:  # its venues were not recorded to the end: never a success
        print(f"{prog}: error: capture process(es) {', '.join(map(str, feed.ended_early))} "
              "stopped before the end of the run", file=sys.stderr)
        codes.append(EXIT_FAILED)
    return min(codes) if codes else 0


def secrets_suffix() -> str:
    import secrets

    return secrets.token_hex(4)


__all__ = ["ShardFeed", "child_argv", "run_sharded", "split"]
