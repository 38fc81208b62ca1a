"""The Redis Streams sink: every event of the selected tables to ``bookwire:<table>:<venue>``.

A lossless bus consumer. Each wake-up takes everything waiting on its subscription, encodes each
event (:mod:`core.streams.codec`) and queues the entries; a sender task writes them with pipelined
``XADD <stream> MAXLEN ~ <maxlen> * e <event>`` commands, up to :data:`BATCH_ENTRIES` per round
trip, and counts what Redis acknowledged per table and venue.

While Redis is away (refused, reset, timed out), the sender records one ``sink_error`` health row
per venue (published on the bus, so a Parquet writer in the same process keeps it, and the sink
sends it once Redis is back), and reconnects with capped, fully jittered exponential backoff. A
batch cut off mid-way is sent again whole: Redis may then hold an entry twice (at least once;
``docs/data.md`` says how readers remove duplicates). Meanwhile the queue of encoded entries stays
below ``max_pending_bytes``: the sink stops taking events from the bus, whose byte-bounded
subscription (``--redis-buffer-mb``) then drops what does not fit and reports it to this consumer
as ``dropped`` rows, which are sent on like any other health row. The websocket readers never
wait.

At the end (the bus closed) what is queued is sent within ``final_flush_timeout_s`` (abortable
through :attr:`RedisSink.abort`); what cannot be is counted as abandoned (exit code 3).

Must not: await Redis on the bus's side, or hold more than its bounds.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import trio
from coredis.tokens import PureToken

from core.bus import Bus, Subscription
from core.clock import Clock, WallClock
from core.schema import Event, Health, HealthKind
from core.streams.client import REDIS_ERRORS, Backoff, RedisURL, describe, open_client
from core.streams.codec import Encoder, stream_name
from core.tables import REGISTRY

log = logging.getLogger(__name__)

MIB = 1024 * 1024
DEFAULT_MAXLEN = 1_000_000
DEFAULT_PENDING_BYTES = 16 * MIB
BATCH_ENTRIES = 1000
#: estimated bytes of a queued entry besides its payload
ENTRY_OVERHEAD = 120
#: how often a sink waiting for room looks whether the run is ending
ROOM_CHECK_S = 0.25


@dataclass(slots=True)
class Entry:
    stream: bytes
    payload: bytes
    key: tuple[str, str] | None  # (table, venue) counted when written; None: not counted


@dataclass
class RedisSink:
    url: RedisURL
    maxlen: int = DEFAULT_MAXLEN
    #: tables sent (None: every table)
    tables: frozenset[str] | None = None
    venues: Sequence[str] = ()
    clock: Clock = field(default_factory=WallClock)
    max_pending_bytes: int = DEFAULT_PENDING_BYTES
    final_flush_timeout_s: float = 120.0
    backoff: Backoff = field(default_factory=Backoff)
    name: str = "redis"

    def __post_init__(self) -> None:
        self.failures: list[BaseException] = []
        self.events_written: dict[tuple[str, str], int] = {}
        self.entries_written = 0
        self.abandoned: dict[tuple[str, str], int] = {}
        self.end_ns: int | None = None
        self.outages = 0
        self.bus: Bus | None = None
        self._abort = trio.CancelScope()
        self._queue: deque[Entry] = deque()
        self._pending_bytes = 0
        self._work = trio.Event()
        self._room = trio.Event()
        self._closing = False
        self._down = False
        self._seen_venues: set[str] = set(self.venues)
        self._streams: dict[tuple[str, str], bytes] = {}
        self._encoder = Encoder()
        self._table_names: dict[type, str] = {}

    # -- the Output protocol --------------------------------------------------------------------

    @property
    def abort(self) -> trio.CancelScope:
        return self._abort

    def lost_events(self) -> int:
        return sum(self.abandoned.values())

    def pending(self) -> tuple[int, int]:
        return len(self._queue), 1 if self._queue else 0

    def describe(self) -> str:
        return (f"{self.entries_written:,} entries to {self.url} ({self.outages} outages, "
                f"{sum(self.abandoned.values())} abandoned)")

    def bind(self, bus: Bus) -> None:
        self.bus = bus

    # -- consuming --------------------------------------------------------------------------------

    async def run(self, subscription: Subscription, *,
                  task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            async with trio.open_nursery() as nursery:
                sender = trio.CancelScope()
                done = trio.Event()

                async def send() -> None:
                    with sender:
                        await self._sender()
                    done.set()

                nursery.start_soon(send)
                task_status.started()
                async for events in subscription:
                    self.add(events)
                    await self._wait_for_room()
                self._closing = True
                self._work.set()
                with self._abort, trio.move_on_after(self.final_flush_timeout_s):
                    await done.wait()
                sender.cancel()
        finally:
            subscription.close_receiver()
            self._give_up()

    async def _wait_for_room(self) -> None:
        """Stop taking events while the queue is full (the bus drops and reports the excess),
        until the sender made room or the bus closed (then the final flush's bound applies)."""
        while self._pending_bytes > self.max_pending_bytes:
            if self.bus is not None and self.bus.closed:
                return
            with trio.move_on_after(ROOM_CHECK_S):
                await self._room.wait()
            if self._room.is_set():
                self._room = trio.Event()

    def add(self, events: Sequence[Event]) -> None:
        """Encode and queue (synchronous). Drop reports of the bus and the sink's own rows are
        sent but not counted as delivered events (they were not produced by a venue)."""
        tables = self.tables
        queue = self._queue
        n = 0
        for e in events:
            t = type(e)
            table = self._table_names.get(t)
            if table is None:
                known = REGISTRY.of_type(t)
                table = self._table_names[t] = known.name if known is not None else "health"
            if tables is not None and table not in tables:
                continue
            venue = e.exchange
            stream = self._streams.get((table, venue))
            if stream is None:
                stream = self._streams[(table, venue)] = stream_name(table, venue).encode()
                self._seen_venues.add(venue)
            counted = not (t is Health and e.event == HealthKind.DROPPED)  # type: ignore[attr-defined]
            payload = self._encoder.encode(e)
            queue.append(Entry(stream, payload, (table, venue) if counted else None))
            n += len(payload) + ENTRY_OVERHEAD
        if n:
            self._pending_bytes += n
            self._work.set()

    # -- sending ----------------------------------------------------------------------------------

    async def _sender(self) -> None:
        attempt = 0
        while True:
            try:
                async with open_client(self.url) as client:
                    if self._down:
                        log.warning("redis sink: %s is back; sending %d queued entries",
                                    self.url, len(self._queue))
                        self._down = False
                    attempt = 0
                    while True:
                        while not self._queue:
                            if self._closing:
                                return
                            await self._work.wait()
                            self._work = trio.Event()
                        await self._send_batch(client)
            except* REDIS_ERRORS as group:
                self._went_down(describe(group))
            await trio.sleep(self.backoff.delay(attempt))
            attempt += 1

    async def _send_batch(self, client: object) -> None:
        batch = [self._queue[i] for i in range(min(BATCH_ENTRIES, len(self._queue)))]
        maxlen = self.maxlen
        async with client.pipeline(transaction=False) as pipe:  # type: ignore[attr-defined]
            for entry in batch:
                pipe.xadd(entry.stream, {b"e": entry.payload}, trim_strategy=PureToken.MAXLEN,
                          trim_operator=PureToken.APPROXIMATELY, threshold=maxlen)
        written = self.events_written
        freed = 0
        for entry in batch:
            self._queue.popleft()
            freed += len(entry.payload) + ENTRY_OVERHEAD
            if entry.key is not None:
                written[entry.key] = written.get(entry.key, 0) + 1
        self.entries_written += len(batch)
        self._pending_bytes -= freed
        self._room.set()

    def _went_down(self, reason: str) -> None:
        if self._down:
            return
        self._down = True
        self.outages += 1
        log.error("redis sink: %s went away (%s); reconnecting, events wait in a bounded queue",
                  self.url, reason)
        if self.bus is None or self.bus.closed:
            return
        now = self.clock.now_ns()
        self.bus.publish([Health(exchange=venue, ts_local=now, symbol=None,
                                 event=HealthKind.SINK_ERROR,
                                 detail=f"sink {self.url}: {reason}; reconnecting"[:2000])
                          for venue in sorted(self._seen_venues)])

    def _give_up(self) -> None:
        """What is still queued at the end is abandoned (counted; exit code 3)."""
        if not self._queue:
            return
        for entry in self._queue:
            if entry.key is not None:
                self.abandoned[entry.key] = self.abandoned.get(entry.key, 0) + 1
        log.error("redis sink: %d entries not sent to %s before the end; counted as lost",
                  len(self._queue), self.url)
        self._queue.clear()
        self._pending_bytes = 0


__all__ = ["BATCH_ENTRIES", "DEFAULT_MAXLEN", "DEFAULT_PENDING_BYTES", "RedisSink"]
