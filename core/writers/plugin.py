"""The Parquet writer as a plugin: ``--sink parquet`` (the default output) writes every table
under ``--out`` (:mod:`core.writers.parquet`).

Registered through the ``bookwire`` entry point ``parquet`` like any third-party consumer. Its
settings are the run's flags ``--flush-interval``, ``--buffer-mb`` and ``--final-flush-timeout``.

Must not: do I/O at registration time.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from core import hookimpl
from core.bus import DEFAULT_BUFFER_BYTES, Policy
from core.clock import Clock
from core.consumers import WRITER, Consumer, ConsumerSpec, RunContext
from core.writers.parquet import (
    DEFAULT_FINAL_FLUSH_TIMEOUT_S,
    DEFAULT_FLUSH_INTERVAL_S,
    DEFAULT_FLUSH_ROWS,
    DEFAULT_MAX_BYTES,
    MIB,
    ParquetWriter,
)

NAME = "parquet"
#: the Parquet writer takes what waits at most every 2 ms (its rows are buffered for seconds
#: anyway): a few hundred wake-ups a second at any message rate
WRITER_COALESCE_S = 0.002


def parquet_consumer(out: Path, *, flush_interval_s: float = DEFAULT_FLUSH_INTERVAL_S,
                     flush_rows: int = DEFAULT_FLUSH_ROWS, max_bytes: int = DEFAULT_MAX_BYTES,
                     buffer_bytes: int = DEFAULT_BUFFER_BYTES,
                     final_flush_timeout_s: float = DEFAULT_FINAL_FLUSH_TIMEOUT_S,
                     clock: Clock | None = None) -> Consumer:
    """A Parquet writer into ``out`` on a lossless subscription of ``buffer_bytes``."""
    writer = ParquetWriter(out, flush_rows=flush_rows, flush_interval_s=flush_interval_s,
                           clock=clock, max_bytes=max_bytes,
                           final_flush_timeout_s=final_flush_timeout_s)
    return Consumer(name=NAME, run=writer.run, policy=Policy.LOSSLESS, buffer_bytes=buffer_bytes,
                    output=writer, role=WRITER, coalesce_s=WRITER_COALESCE_S)


def build(ctx: RunContext) -> Consumer | None:
    if not ctx.sinks:
        return None
    if len(ctx.sinks) > 1:
        raise ValueError("--sink parquet is given twice; give it once")
    args = ctx.args
    buffer_mb = getattr(args, "buffer_mb", None)
    return parquet_consumer(
        ctx.out, flush_interval_s=getattr(args, "flush_interval", DEFAULT_FLUSH_INTERVAL_S),
        max_bytes=int(buffer_mb * MIB) if buffer_mb else DEFAULT_MAX_BYTES,
        buffer_bytes=ctx.buffer_bytes,
        final_flush_timeout_s=getattr(args, "final_flush_timeout", DEFAULT_FINAL_FLUSH_TIMEOUT_S))


SPEC = ConsumerSpec(name=NAME, role=WRITER, policy=Policy.LOSSLESS, factory=build,
                    schemes=("parquet",), default=True,
                    description="every table as Parquet files in a hive layout under --out")


@hookimpl
def bookwire_register_consumers(register: Callable[[ConsumerSpec], None]) -> None:
    register(SPEC)


__all__ = ["NAME", "SPEC", "bookwire_register_consumers", "parquet_consumer"]
