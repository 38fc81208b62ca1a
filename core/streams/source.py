"""The Redis Streams source: events of other processes, read with a consumer group, fed to this
process's writer and analyzers (``--from-redis``).

It is a :class:`core.supervisor.Feed`: it replaces the venue connectors of a run. Every
:data:`DISCOVER_EVERY_S` it looks for streams of the consumed tables (``SCAN`` for
``bookwire:<table>:*``) and joins the group on each new one (``XGROUP CREATE ... 0 MKSTREAM``: a new
group starts at the beginning of what the stream holds). On start it first takes back what it was
given before and did not acknowledge (its own pending entries, ``XREADGROUP ... 0``), then claims
entries another reader of the group left pending for longer than ``claim_idle_s``
(``XAUTOCLAIM``), then reads new entries (``XREADGROUP ... >``, blocking briefly).

Each read of a stream is one batch: its events go to the Parquet writer with a token
(:meth:`core.writers.parquet.ParquetWriter.feed`, which waits while the writer is full: nothing is
dropped, Redis holds the rest), and to the run's other consumers (the spread analyzer). The entry
ids of a batch are acknowledged (``XACK``) only once the writer reports every row of the batch in
a renamed file. Delivery is therefore at least once: entries read but not yet in a file when a
reader dies are read again by the next (rows then appear twice; ``docs/data.md`` says how to
remove duplicates). Stopping loses nothing: what is not acknowledged stays pending in Redis.

An entry that does not decode is counted per stream and kind of problem, logged once per kind,
written down as a ``decode_error`` health row of its venue, and acknowledged (reading it again
cannot help); it never stops the source.

Must not: acknowledge an entry before its rows are on disk, or drop an event it read.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import socket
from collections import deque
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import trio
from coredis.exceptions import StreamDuplicateConsumerGroupError

from core.bus import Subscription, estimate_bytes
from core.clock import Clock, WallClock
from core.schema import Event, Health, HealthKind
from core.session import VenueStats
from core.streams.client import REDIS_ERRORS, Backoff, RedisURL, describe, open_client
from core.streams.codec import PREFIX, Decoder, Undecodable, parse_stream
from core.supervisor import FeedContext
from core.tables import REGISTRY
from core.writers.parquet import ParquetWriter

log = logging.getLogger(__name__)

DISCOVER_EVERY_S = 1.0
READ_COUNT = 2000
BLOCK_MS = 200
ACK_BATCH = 5000
MARKET_KINDS = frozenset({"tob", "l2", "trade"})


def default_consumer(group: str) -> str:
    return f"{group}-{socket.gethostname()}"


@dataclass
class StreamSource:
    url: RedisURL
    group: str
    consumer: str
    tables: Sequence[str]
    claim_idle_s: float = 60.0
    clock: Clock = field(default_factory=WallClock)
    backoff: Backoff = field(default_factory=Backoff)
    read_count: int = READ_COUNT
    block_ms: int = BLOCK_MS
    #: "0" (default): a group new to a stream reads what it holds; "$": only later entries
    group_start: str = "0"

    def __post_init__(self) -> None:
        self.produced: dict[tuple[str, str], int] = {}
        self.undecodable: dict[tuple[str, str], int] = {}
        self.entries_read = 0
        self.entries_acked = 0
        #: stop once a read of every stream comes back empty (set to drain the streams)
        self.stop_when_idle = False
        self._decoder = Decoder([REGISTRY.get(t) for t in self.tables])
        self._streams: dict[bytes, tuple[str, str]] = {}  # key -> (table, venue)
        self._tokens = itertools.count(1)
        self._batches: dict[Hashable, tuple[bytes, list[bytes]]] = {}
        #: (stream, id) fed to the writer and not acknowledged yet (never fed twice by this
        #: process; ids are only unique within a stream)
        self._inflight: set[tuple[bytes, bytes]] = set()
        self._to_ack: deque[tuple[bytes, list[bytes]]] = deque()
        self._ack_wakeup = trio.Event()
        self._logged: set[tuple[str, str]] = set()
        self._writer: ParquetWriter | None = None
        self._others: list[Subscription] = []
        self._ctx: FeedContext | None = None
        self._recovered = False

    # -- wiring ---------------------------------------------------------------------------------

    def attach(self, ctx: FeedContext) -> None:
        """Find the run's Parquet writer (fed directly, with tokens) and the other consumers
        (offered every event, as the bus would)."""
        self._ctx = ctx
        writer_sub = None
        for c in ctx.consumers:
            if isinstance(c.output, ParquetWriter) and self._writer is None:
                self._writer = c.output
                writer_sub = ctx.subscriptions[c.name]
        if self._writer is None:
            raise RuntimeError("--from-redis needs the Parquet writer (--sink parquet)")
        self._writer.on_written = self._written
        self._others = [s for s in ctx.subscriptions.values() if s is not writer_sub]

    # -- reading --------------------------------------------------------------------------------

    async def run(self, ctx: FeedContext) -> None:
        """Read until cancelled (or, with :attr:`stop_when_idle`, until nothing is left)."""
        self.attach(ctx)
        attempt = 0
        while True:
            try:
                async with open_client(self.url) as client:
                    attempt = 0
                    if await self._read_all(client):
                        return
            except* REDIS_ERRORS as group:
                log.error("redis source: %s: %s; reconnecting", self.url, describe(group))
            await trio.sleep(self.backoff.delay(attempt))
            attempt += 1

    async def _read_all(self, client: Any) -> bool:
        """Pending entries first, then new ones; True once idle with :attr:`stop_when_idle`."""
        await self._discover(client)
        if not self._recovered:
            await self._read_own_pending(client)
            await self._claim(client)
            self._recovered = True
        next_discovery = trio.current_time() + DISCOVER_EVERY_S
        while True:
            if trio.current_time() >= next_discovery:
                await self._discover(client)
                next_discovery = trio.current_time() + DISCOVER_EVERY_S
            if not self._streams:
                if self.stop_when_idle:
                    return True
                await trio.sleep(DISCOVER_EVERY_S / 4)
                continue
            block = None if self.stop_when_idle else self.block_ms
            got = await self._read(client, ">", block)
            if not got and self.stop_when_idle:
                await self._discover(client)
                if not await self._read(client, ">", None):
                    return True

    async def _discover(self, client: Any) -> None:
        for table in self.tables:
            async for key in client.scan_iter(match=f"{PREFIX}:{table}:*", type_="stream"):
                if key in self._streams:
                    continue
                parsed = parse_stream(key)
                if parsed is None or parsed[0] != table:
                    continue
                await self._join(client, key)
                self._streams[key] = parsed
                log.info("redis source: reading %s", key.decode())

    async def _join(self, client: Any, key: bytes) -> None:
        with contextlib.suppress(StreamDuplicateConsumerGroupError):  # it exists already
            await client.xgroup_create(key, self.group, identifier=self.group_start,
                                       mkstream=True)

    async def ensure_groups(self, keys: Sequence[str]) -> None:
        """Create the group on streams that may not exist yet (``group_start`` applies)."""
        async with open_client(self.url) as client:
            for key in keys:
                await self._join(client, key.encode())

    def recover_pending(self) -> None:
        """Read this reader's pending entries again before new ones (after a cancelled read:
        entries Redis delivered that never reached the writer); what was fed is skipped."""
        self._recovered = False

    async def _read_own_pending(self, client: Any) -> None:
        """Entries this reader was given before (a restart under the same name, or a read that
        was cancelled) and did not acknowledge: read from id 0 until none is left, skipping those
        this process already gave the writer."""
        cursors = dict.fromkeys(self._streams, b"0")
        while cursors:
            got = await client.xreadgroup(self.group, self.consumer, count=self.read_count,
                                          streams=dict(cursors))
            done = set(cursors)
            for key, entries in (got or {}).items():
                if entries:
                    cursors[key] = entries[-1].identifier
                    done.discard(key)
                    fresh = [e for e in entries if (key, e.identifier) not in self._inflight]
                    if fresh:
                        await self._take(key, fresh)
            for key in done:
                del cursors[key]

    async def _claim(self, client: Any) -> None:
        """Entries other readers of the group left pending for ``claim_idle_s``."""
        idle_ms = int(self.claim_idle_s * 1000)
        for key in list(self._streams):
            start = b"0-0"
            while True:
                result = await client.xautoclaim(key, self.group, self.consumer,
                                                 min_idle_time=idle_ms, start=start,
                                                 count=self.read_count)
                start, entries = result[0], result[1]
                entries = [e for e in entries if e is not None]
                if entries:
                    log.warning("redis source: claimed %d entries of %s left pending by a "
                                "reader of group %s", len(entries), key.decode(), self.group)
                    await self._take(key, entries)
                if start in (b"0-0", "0-0"):
                    break

    async def _read(self, client: Any, start: str, block: int | None) -> bool:
        got = await client.xreadgroup(self.group, self.consumer, count=self.read_count,
                                      block=block, streams=dict.fromkeys(self._streams, start))
        any_entries = False
        for key, entries in (got or {}).items():
            if entries:
                any_entries = True
                await self._take(key, entries)
        return any_entries

    async def _take(self, key: bytes, entries: Sequence[Any]) -> None:
        """Decode one read of one stream and hand it on (see the module docstring)."""
        table, venue = self._streams.get(key) or parse_stream(key) or ("", "")
        decode = self._decoder.decode
        events: list[Event] = []
        bad: dict[str, int] = {}
        sample = ""
        for entry in entries:
            try:
                events.append(decode(table, entry.field_values))
            except Undecodable as exc:
                bad[exc.kind] = bad.get(exc.kind, 0) + 1
                sample = sample or f"{entry.identifier!r}: {exc}"
                if (key.decode(), exc.kind) not in self._logged:
                    self._logged.add((key.decode(), exc.kind))
                    log.error("redis source: %s entry %r does not decode (%s); counted, "
                              "later ones of this kind are not logged", key.decode(),
                              entry.identifier, exc)
        self.entries_read += len(entries)
        if bad:
            for kind, n in bad.items():
                self.undecodable[(key.decode(), kind)] = \
                    self.undecodable.get((key.decode(), kind), 0) + n
            events.append(Health(
                exchange=venue, ts_local=self.clock.now_ns(), symbol=None,
                event=HealthKind.DECODE_ERROR,
                detail=(f"redis stream {key.decode()}: {sum(bad.values())} entries do not decode "
                        f"({', '.join(f'{k}={n}' for k, n in sorted(bad.items()))}); e.g. "
                        f"{sample}")[:2000]))
        self._count(events)
        token = next(self._tokens)
        ids = [e.identifier for e in entries]
        self._batches[token] = (key, ids)
        self._inflight.update((key, i) for i in ids)
        assert self._writer is not None
        await self._writer.feed(events, token)
        if events and self._others:
            nbytes = estimate_bytes(events)
            for sub in self._others:
                sub.offer(events, nbytes)

    def _count(self, events: Sequence[Event]) -> None:
        """What was read, per (venue, kind), for the summary, and each venue's counters for the
        status view (the drop reports of another process are not counted: its writer did not
        count them either)."""
        produced = self.produced
        ctx = self._ctx
        venues = self._venue_names()
        for e in events:
            kind = str(type(e).__struct_config__.tag)
            if kind == "health" and e.event == HealthKind.DROPPED:  # type: ignore[attr-defined]
                continue
            key = (e.exchange, kind)
            produced[key] = produced.get(key, 0) + 1
            if ctx is not None and e.exchange in venues:
                update_stats(ctx.add_venue(e.exchange), e, kind)

    def _venue_names(self) -> set[str]:
        """Venues are the exchanges of market data streams (not an analyzer's partition)."""
        return {v for t, v in self._streams.values() if t in ("tob", "l2", "trades")}

    # -- acknowledging --------------------------------------------------------------------------

    def _written(self, token: Hashable) -> None:
        batch = self._batches.pop(token, None)
        if batch is not None:
            self._to_ack.append(batch)
            self._ack_wakeup.set()

    @property
    def unacked(self) -> int:
        return sum(len(ids) for _, ids in self._batches.values()) + \
            sum(len(ids) for _, ids in self._to_ack)

    async def ack_loop(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                       ) -> None:
        """Acknowledge what the writer reported, until cancelled; reconnects like the reader."""
        task_status.started()
        attempt = 0
        while True:
            try:
                async with open_client(self.url) as client:
                    attempt = 0
                    while True:
                        while not self._to_ack:
                            await self._ack_wakeup.wait()
                            self._ack_wakeup = trio.Event()
                        await self._ack(client)
            except* REDIS_ERRORS as group:
                log.error("redis source: acknowledging on %s: %s; reconnecting", self.url,
                          describe(group))
            await trio.sleep(self.backoff.delay(attempt))
            attempt += 1

    async def flush_acks(self) -> None:
        """The last acknowledgements, after the writer's final flush."""
        if not self._to_ack:
            return
        try:
            async with open_client(self.url) as client:
                while self._to_ack:
                    await self._ack(client)
        except* REDIS_ERRORS as group:
            log.error("redis source: %d entries in files could not be acknowledged (%s); they "
                      "will be read again", sum(len(i) for _, i in self._to_ack), describe(group))

    async def _ack(self, client: Any) -> None:
        per_stream: dict[bytes, list[bytes]] = {}
        taken = 0
        while self._to_ack and taken < ACK_BATCH:
            key, ids = self._to_ack[0]
            per_stream.setdefault(key, []).extend(ids)
            taken += len(ids)
            self._to_ack.popleft()
        try:
            async with client.pipeline(transaction=False) as pipe:
                for key, ids in per_stream.items():
                    pipe.xack(key, self.group, ids)
        except BaseException:
            for key, ids in per_stream.items():  # not acknowledged: try again
                self._to_ack.appendleft((key, ids))
            raise
        self.entries_acked += taken
        for key, ids in per_stream.items():
            self._inflight.difference_update((key, i) for i in ids)


def update_stats(st: VenueStats, e: Event, kind: str) -> None:
    """A venue's live counters from its events (what its own process's session counted)."""
    if kind in MARKET_KINDS:
        st.messages += 1
        if st.last_frame_ns is None or e.ts_local > st.last_frame_ns:
            st.last_frame_ns = e.ts_local
        return
    if kind != "health":
        return
    h: Any = e
    if h.event == HealthKind.CONNECTED:
        if st.conn_id:
            st.reconnects += 1
        st.conn_id += 1
        st.connected = True
        st.connected_since_ns = h.ts_local
    elif h.event in (HealthKind.DISCONNECTED, HealthKind.STOPPED):
        if st.connected_since_ns is not None:
            st.connected_total_ns += max(h.ts_local - st.connected_since_ns, 0)
        st.connected = False
        st.connected_since_ns = None
    else:
        st.count_health(h)


__all__ = ["StreamSource", "default_consumer", "update_stats"]
