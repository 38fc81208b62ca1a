"""Compact status lines on stderr while recording: one run line (elapsed and, with
``--duration``, remaining time; the output folder; rows and bytes written), then one line per
venue (messages/s, age of the last message, reconnects, gaps, decode errors, refused
subscriptions), per lagging consumer and, when the ``funding`` channel is recorded, per venue and
symbol its funding rate and the time to its next funding.

Reads counters only, and the latest ``funding`` row of each venue and symbol through its own
keep-latest bus subscription (:class:`FundingBoard`, :func:`watch_funding`); never touches the
data path.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import trio

from core.bus import Bus, Policy
from core.clock import Clock
from core.codec import S_NS
from core.schema import Event, Funding
from core.session import VenueStats

log = logging.getLogger("bookwire.status")

DEFAULT_STATUS_INTERVAL_S = 10.0


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


# -- funding ------------------------------------------------------------------------------------


class FundingBoard:
    """The latest ``funding`` row of every venue and symbol, for the status views."""

    def __init__(self) -> None:
        self._latest: dict[tuple[str, str], Funding] = {}

    def update(self, events: Sequence[Event]) -> None:
        for e in events:
            if isinstance(e, Funding):
                self._latest[(e.exchange, e.symbol)] = e

    def rows(self) -> list[Funding]:
        """Every venue's latest row, by symbol then venue."""
        return [self._latest[k] for k in sorted(self._latest, key=lambda k: (k[1], k[0]))]


async def watch_funding(bus: Bus, board: FundingBoard) -> None:
    """Keep ``board`` up to date from a keep-latest subscription of ``funding`` events, until the
    bus closes or the task is cancelled."""
    async for batch in bus.subscribe("status-funding", ["funding"], policy=Policy.CONFLATE):
        board.update(batch)


def rate_text(f: Funding) -> str:
    """``+0.0100 %/8h`` (the rate per interval, in percent); ``n/a`` without a rate."""
    if f.funding_rate is None:
        return "n/a"
    per = "" if f.funding_interval_s is None else "/" + interval_text(f.funding_interval_s)
    return f"{f.funding_rate * 100:+.4f} %{per}"


def interval_text(seconds: int) -> str:
    if seconds % 3600 == 0:
        return f"{seconds // 3600}h"
    if seconds % 60 == 0:
        return f"{seconds // 60}m"
    return f"{seconds}s"


def next_funding_text(f: Funding, now_ns: int) -> str:
    """``in 3:12:05`` to the next funding (``due`` once it passed, ``n/a`` without a time)."""
    if f.next_funding_time is None:
        return "n/a"
    left = (f.next_funding_time - now_ns) / S_NS
    return "due" if left <= 0 else f"in {clock_time(left)}"


def format_funding(f: Funding, now_ns: int) -> str:
    parts = [f"funding {f.exchange} {f.symbol}: {rate_text(f)}, next "
             f"{next_funding_text(f, now_ns)}"]
    if f.mark_px is not None:
        parts.append(f"mark {f.mark_px:.10g}")
    if f.index_px is not None:
        parts.append(f"index {f.index_px:.10g}")
    if f.open_interest is not None:
        parts.append(f"open interest {f.open_interest:,.6g}")
    return ", ".join(parts)


async def report_status(stats: Sequence[VenueStats], bus: Bus, clock: Clock,
                        interval_s: float = DEFAULT_STATUS_INTERVAL_S, *,
                        run: RunInfo | None = None, started: float | None = None,
                        funding: FundingBoard | None = None) -> None:
    """Log the status lines every ``interval_s`` until cancelled. ``started``: the trio time the
    run started (default: now), for the elapsed time of the run line; ``funding``: the latest
    funding rows, one line each."""
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
        for f in funding.rows() if funding is not None else ():
            log.info("%s", format_funding(f, now_ns))
        for sub in bus.stats():
            if sub.dropped_events or sub.buffer_used:
                log.info("consumer %s: lag %d/%d batches, dropped %d events", sub.name,
                         sub.buffer_used, sub.buffer_size, sub.dropped_events)
        last_t = now_t
