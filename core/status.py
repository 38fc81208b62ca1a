"""Compact status lines on stderr while recording: one run line (elapsed and, with
``--duration``, remaining time; the output folder; rows and bytes written), then one line per
venue (messages/s, age of the last message, reconnects, gaps, decode errors, refused
subscriptions) and per lagging consumer.

Reads counters only; never touches the data path.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import trio

from core.bus import Bus
from core.clock import Clock
from core.session import VenueStats

log = logging.getLogger("bookwire.status")

DEFAULT_STATUS_INTERVAL_S = 10.0
S_NS = 1_000_000_000


@dataclass
class RunInfo:
    """What the status views say about the run as a whole. ``written`` is filled in by the
    supervisor once the writer exists: (rows written, bytes on disk) so far."""

    out: Path
    duration_s: float | None = None
    written: Callable[[], tuple[int, int]] | None = None


def size_text(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def clock_time(seconds: float) -> str:
    """``H:MM:SS`` (whole seconds, rounded down)."""
    total = max(int(seconds), 0)
    return f"{total // 3600}:{total // 60 % 60:02d}:{total % 60:02d}"


def format_run(run: RunInfo, elapsed_s: float) -> str:
    """``elapsed 0:01:40, left 0:08:20 of 0:10:00, out data`` (``until stopped`` without a
    duration)."""
    if run.duration_s is None:
        span = "until stopped"
    else:
        span = (f"left {clock_time(max(run.duration_s - elapsed_s, 0.0))} of "
                f"{clock_time(run.duration_s)}")
    text = f"elapsed {clock_time(elapsed_s)}, {span}, out {run.out}"
    if run.written is not None:
        rows, size = run.written()
        text += f", {rows:,} rows, {size_text(size)} on disk"
    return text


def format_status(stats: VenueStats, rate: float, now_ns: int) -> str:
    age = "never" if stats.last_frame_ns is None else \
        f"{(now_ns - stats.last_frame_ns) / S_NS:.1f}s ago"
    state = "up" if stats.connected else "DOWN"
    if stats.connected and stats.subscribe_errors and not stats.subscribed:
        state = "REFUSED"  # connected, and every subscription refused
    line = (f"{stats.venue}: {state} {rate:.1f} msg/s, last {age}, reconnects "
            f"{stats.reconnects}, gaps {stats.gaps}, decode errors {stats.decode_errors}")
    if stats.subscribe_errors:
        line += (f", refused subscriptions {stats.subscribe_errors} "
                 f"(last: {stats.last_subscribe_error})")
    return line


async def report_status(stats: Sequence[VenueStats], bus: Bus, clock: Clock,
                        interval_s: float = DEFAULT_STATUS_INTERVAL_S, *,
                        run: RunInfo | None = None, started: float | None = None) -> None:
    """Log the status lines every ``interval_s`` until cancelled. ``started``: the trio time the
    run started (default: now), for the elapsed time of the run line."""
    last = {s.venue: s.messages for s in stats}
    last_t = trio.current_time()
    t0 = last_t if started is None else started
    while True:
        await trio.sleep(interval_s)
        now_t = trio.current_time()
        elapsed = max(now_t - last_t, 1e-9)
        now_ns = clock.now_ns()
        if run is not None:
            log.info("run: %s", format_run(run, now_t - t0))
        for s in stats:
            # (a venue may appear during the run: read from Redis Streams)
            rate = (s.messages - last.get(s.venue, s.messages)) / elapsed
            log.info("%s", format_status(s, rate, now_ns))
            last[s.venue] = s.messages
        for sub in bus.stats():
            if sub.dropped_events or sub.buffer_used:
                log.info("consumer %s: lag %d/%d batches, dropped %d events", sub.name,
                         sub.buffer_used, sub.buffer_size, sub.dropped_events)
        last_t = now_t
