"""Compact per-venue status lines on stderr while recording (messages/s, age of the last
message, reconnects, gaps, refused subscriptions, drops). Reads counters only; never touches
the data path."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import trio

from core.bus import Bus
from core.clock import Clock
from core.session import VenueStats

log = logging.getLogger("bookwire.status")

DEFAULT_STATUS_INTERVAL_S = 10.0
S_NS = 1_000_000_000


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
                        interval_s: float = DEFAULT_STATUS_INTERVAL_S) -> None:
    last = {s.venue: s.messages for s in stats}
    last_t = trio.current_time()
    while True:
        await trio.sleep(interval_s)
        now_t = trio.current_time()
        elapsed = max(now_t - last_t, 1e-9)
        now_ns = clock.now_ns()
        for s in stats:
            log.info("%s", format_status(s, (s.messages - last[s.venue]) / elapsed, now_ns))
            last[s.venue] = s.messages
        for sub in bus.stats():
            if sub.dropped_events or sub.buffer_used:
                log.info("consumer %s: lag %d/%d batches, dropped %d events", sub.name,
                         sub.buffer_used, sub.buffer_size, sub.dropped_events)
        last_t = now_t
