"""The Redis Streams sink as a plugin: ``--sink redis://HOST:PORT[/DB]`` (entry point ``redis``).

Options: ``--redis-maxlen N`` (``XADD ... MAXLEN ~ N`` per stream), ``--redis-buffer-mb MB`` (the
bound of its bus subscription while Redis is slow or away), ``--redis-tables LIST`` (the tables
sent; default every table). The server must answer before the first venue connection (exit code
2 otherwise).

Must not: connect at registration time.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from core import hookimpl
from core.bus import Policy
from core.consumers import SINK, Consumer, ConsumerSpec, RunContext
from core.streams.client import check_reachable, parse_url
from core.streams.sink import DEFAULT_MAXLEN, MIB, RedisSink
from core.tables import REGISTRY

DEFAULT_BUFFER_MB = 64


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--redis-maxlen", type=int, default=DEFAULT_MAXLEN, metavar="N",
                   help="keep about N entries per stream (XADD MAXLEN ~ N; default: "
                        f"{DEFAULT_MAXLEN:,})")
    p.add_argument("--redis-buffer-mb", type=float, default=DEFAULT_BUFFER_MB, metavar="MB",
                   help="what may wait for Redis, in MiB, while it is slow or away; beyond it "
                        f"events are dropped and counted (default: {DEFAULT_BUFFER_MB})")
    p.add_argument("--redis-tables", default=None, metavar="LIST",
                   help="comma-separated tables to send (default: every table)")


def build(ctx: RunContext) -> list[Consumer]:
    args = ctx.args
    maxlen = getattr(args, "redis_maxlen", DEFAULT_MAXLEN)
    buffer_mb = getattr(args, "redis_buffer_mb", DEFAULT_BUFFER_MB)
    problems = []
    if not maxlen or maxlen <= 0:
        problems.append(f"--redis-maxlen must be a positive number of entries, not {maxlen}")
    if not buffer_mb or buffer_mb <= 0:
        problems.append(f"--redis-buffer-mb must be a positive number of MiB, not {buffer_mb}")
    tables: frozenset[str] | None = None
    text = getattr(args, "redis_tables", None)
    if text is not None:
        tables = frozenset(t.strip() for t in text.split(",") if t.strip())
        unknown = sorted(t for t in tables if t not in REGISTRY)
        if unknown or not tables:
            problems.append(f"--redis-tables {text}: unknown tables {', '.join(unknown)}; valid "
                            f"choices: {', '.join(REGISTRY.names())}")
    urls = []
    for value in ctx.sinks:
        try:
            urls.append(parse_url(value))
        except ValueError as exc:
            problems.append(str(exc))
    if problems:
        raise ValueError("\n".join(problems))
    kinds = None if tables is None else frozenset(REGISTRY.get(t).kind for t in tables)
    consumers = []
    for url in dict.fromkeys(urls):
        sink = RedisSink(url, maxlen=maxlen, tables=tables, venues=list(ctx.venues),
                         final_flush_timeout_s=getattr(args, "final_flush_timeout", 120.0),
                         name=f"redis {url}")

        async def check(url: object = url) -> None:
            await check_reachable(url, "--sink")  # type: ignore[arg-type]

        consumers.append(Consumer(name=sink.name, run=sink.run, kinds=kinds,
                                  policy=Policy.LOSSLESS, buffer_bytes=int(buffer_mb * MIB),
                                  bind=sink.bind, output=sink, check=check, role=SINK))
    return consumers


SPEC = ConsumerSpec(name="redis", role=SINK, policy=Policy.LOSSLESS, factory=build,
                    schemes=("redis",), add_arguments=add_arguments,
                    description="every event to Redis Streams bookwire:<table>:<venue> "
                                "(--sink redis://HOST:PORT[/DB])")


@hookimpl
def bookwire_register_consumers(register: Callable[[ConsumerSpec], None]) -> None:
    register(SPEC)


__all__ = ["SPEC", "bookwire_register_consumers"]
