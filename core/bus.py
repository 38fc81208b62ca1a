"""Fan-out of normalized events from every session to every consumer, never blocking a reader.

Each consumer gets its own bounded subscription with an explicit policy:

* :attr:`Policy.LOSSLESS` (writers, sinks): a queue of the batches published since the consumer
  last woke up, bounded in **bytes** (an estimate per batch: a fixed cost per event plus one per
  price level). A consumer's wake-up takes *everything* waiting, as one flat list of events, so any
  number of producers cannot outrun a consumer that keeps up on average. With ``coalesce_s`` the
  consumer is woken at most that often (earlier when its queue passes half its bound): a few
  hundred wake-ups a second instead of one per frame. Publishing never awaits:
  when a batch does not fit, it is dropped and counted per (venue, table), and the loss is
  reported to that very consumer as ``dropped`` health rows (``table``, ``count``, first and last
  ``ts_local`` of what was lost) at its next wake-up. The report is carried outside the full
  queue, so it is always delivered, the final drain at close included.
* :attr:`Policy.CONFLATE` (live analyzers): keeps only the latest event per (kind, exchange,
  symbol); memory is bounded by the number of keys, and a slow consumer simply sees fewer,
  fresher values. Overwrites are counted.

Memory channels are point-to-point, so fan-out is done here, once per subscriber. Publishing walks
a batch once: it counts what each venue produced and estimates the batch's size in the same pass.
Closing the bus ends every consumer's ``async for`` loop after it drained what was waiting.

Must not: await anything on the publish path, or hold events without a bound.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field

import trio

from core.schema import BookUpdate, Event, Health, HealthKind

MIB = 1024 * 1024
#: default bound of a lossless subscription (``--buffer-mb``)
DEFAULT_BUFFER_BYTES = 256 * MIB
#: estimated resident bytes of one event, and of one price level of a BookUpdate
EVENT_BYTES = 240
LEVEL_BYTES = 112

_TAGS: dict[type, str] = {}


def tag_of(event_type: type[Event]) -> str:
    """The event kind (msgspec tag), cached per class: the lookup is on the hot path."""
    tag = _TAGS.get(event_type)
    if tag is None:
        tag = _TAGS[event_type] = str(event_type.__struct_config__.tag)
    return tag


def estimate_bytes(batch: Iterable[Event]) -> int:
    """The size estimate the bus uses for ``batch`` (see the module docstring)."""
    n = 0
    for e in batch:
        n += EVENT_BYTES
        if type(e) is BookUpdate:
            n += LEVEL_BYTES * (len(e.bids) + len(e.asks))
    return n


class Policy(enum.Enum):
    LOSSLESS = "lossless"
    CONFLATE = "conflate"


@dataclass
class SubscriptionStats:
    name: str
    policy: str
    delivered_events: int = 0
    dropped_events: int = 0
    dropped_batches: int = 0
    overwritten_events: int = 0
    buffer_used: int = 0  # bytes waiting (lossless) or keys held (conflate)
    buffer_peak: int = 0
    buffer_size: int = 0  # the bound in bytes (lossless); 0 for conflate


@dataclass
class DropRecord:
    """What one consumer lost of one (venue, kind) since the last report."""

    count: int = 0
    first_ts: int = 0
    last_ts: int = 0


class Subscription:
    """Base of the two policies; consumers use ``async for events in subscription``."""

    policy: Policy

    def __init__(self, name: str, kinds: frozenset[str] | None) -> None:
        self.name = name
        self.kinds = kinds  # None: every kind
        self.stats = SubscriptionStats(name=name, policy=self.policy.value)

    def wants(self, event: Event) -> bool:
        return self.kinds is None or tag_of(type(event)) in self.kinds

    def offer(self, batch: Sequence[Event], nbytes: int, *, force: bool = False) -> None:
        """Take ``batch`` (never awaits); ``force`` ignores the byte bound (the few rows that
        close a run's ledger must not be lost to a full queue)."""
        raise NotImplementedError

    def close(self) -> None:
        """Publisher side: no more events; the consumer's loop ends after draining."""
        raise NotImplementedError

    def close_receiver(self) -> None:
        """Consumer side: this consumer stops reading; later events are counted as dropped."""
        raise NotImplementedError

    def __aiter__(self) -> AsyncIterator[list[Event]]:
        return self

    async def __anext__(self) -> list[Event]:
        raise NotImplementedError


class LosslessSubscription(Subscription):
    policy = Policy.LOSSLESS

    def __init__(self, name: str, kinds: frozenset[str] | None, max_bytes: int,
                 table_of_kind: Callable[[str], str] | None = None,
                 coalesce_s: float = 0.0) -> None:
        super().__init__(name, kinds)
        #: let at least this long pass between two deliveries (unless the queue is half full),
        #: so that a consumer wakes up a few hundred times a second, not once per frame
        self.coalesce_s = coalesce_s
        self._last_delivery: float | None = None
        self._pressure = trio.Event()  # set when the queue passes half its bound
        if max_bytes <= 0:
            raise ValueError("a lossless subscription needs a positive buffer size in bytes")
        self.max_bytes = max_bytes
        self.stats.buffer_size = max_bytes
        self._queue: deque[Sequence[Event]] = deque()
        self._bytes = 0
        self._wakeup = trio.Event()
        self._room = trio.Event()  # set whenever the consumer drained the queue
        self._closed = False
        self._receiver_closed = False
        self._table_of_kind = table_of_kind or (lambda kind: kind)
        self._drops: dict[tuple[str, str], DropRecord] = {}
        self.dropped_by_venue: dict[str, int] = {}

    def offer(self, batch: Sequence[Event], nbytes: int, *, force: bool = False) -> None:
        if self._closed:
            return
        if self.kinds is not None:
            batch = [e for e in batch if tag_of(type(e)) in self.kinds]
            if not batch:
                return
            nbytes = estimate_bytes(batch)
        if self._receiver_closed:
            self._drop(batch, report=False)
            return
        # A batch larger than the whole buffer is still taken when nothing waits: a full-book
        # snapshot must not be lost to its own size.
        if self._queue and self._bytes + nbytes > self.max_bytes and not force:
            self._drop(batch, report=True)
            return
        self._queue.append(batch)
        self._bytes += nbytes
        if self._bytes > self.stats.buffer_peak:
            self.stats.buffer_peak = self._bytes
            if self._bytes > self.max_bytes // 2:
                self._pressure.set()
        self.stats.delivered_events += len(batch)
        self._wakeup.set()

    def _drop(self, batch: Sequence[Event], *, report: bool) -> None:
        self.stats.dropped_events += len(batch)
        self.stats.dropped_batches += 1
        per_venue = self.dropped_by_venue
        for e in batch:
            per_venue[e.exchange] = per_venue.get(e.exchange, 0) + 1
        if not report:
            return
        drops = self._drops
        for e in batch:
            key = (e.exchange, tag_of(type(e)))
            rec = drops.get(key)
            if rec is None:
                rec = drops[key] = DropRecord(first_ts=e.ts_local)
            rec.count += 1
            rec.last_ts = e.ts_local
        self._wakeup.set()

    @property
    def unreported_drops(self) -> int:
        return sum(r.count for r in self._drops.values())

    @property
    def buffered_bytes(self) -> int:
        return self._bytes

    def _drop_report(self) -> list[Event]:
        """One ``dropped`` health row per (venue, table) lost since the last report."""
        rows: list[Event] = []
        for (exchange, kind), rec in sorted(self._drops.items()):
            table = self._table_of_kind(kind)
            rows.append(Health(
                exchange=exchange, ts_local=rec.first_ts, symbol=None, event=HealthKind.DROPPED,
                detail=(f"table={table} count={rec.count} first_ts={rec.first_ts} "
                        f"last_ts={rec.last_ts} consumer={self.name}: buffer of "
                        f"{self.max_bytes // MIB} MiB full")))
        self._drops.clear()
        return rows

    async def offer_wait(self, batch: Sequence[Event], nbytes: int) -> None:
        """Like :meth:`offer`, but wait for room instead of dropping (replay only)."""
        while self._queue and self._bytes + nbytes > self.max_bytes and not self._closed \
                and not self._receiver_closed:
            await self._room.wait()
        self.offer(batch, nbytes)

    def close(self) -> None:
        self._closed = True
        self._wakeup.set()

    def close_receiver(self) -> None:
        self._receiver_closed = True
        self._queue.clear()
        self._bytes = 0
        self._room.set()

    async def __anext__(self) -> list[Event]:
        if self._last_delivery is not None and not self._closed:
            due = self._last_delivery + self.coalesce_s
            if trio.current_time() < due and self._bytes <= self.max_bytes // 2:
                with trio.move_on_at(due):
                    await self._pressure.wait()
        while not self._queue and not self._drops:
            if self._closed or self._receiver_closed:
                raise StopAsyncIteration
            await self._wakeup.wait()
            self._wakeup = trio.Event()
        if self.coalesce_s:
            self._last_delivery = trio.current_time()
            if self._pressure.is_set():
                self._pressure = trio.Event()
        events: list[Event] = []
        if self._drops:
            events.extend(self._drop_report())
        queue = self._queue
        while queue:
            events.extend(queue.popleft())
        self._bytes = 0
        self.stats.buffer_used = 0
        self._room.set()
        self._room = trio.Event()
        return events


class ConflatingSubscription(Subscription):
    policy = Policy.CONFLATE

    def __init__(self, name: str, kinds: frozenset[str] | None) -> None:
        super().__init__(name, kinds)
        self._latest: dict[tuple[str, str, str | None], Event] = {}
        self._wakeup = trio.Event()
        self._closed = False

    def offer(self, batch: Sequence[Event], nbytes: int, *, force: bool = False) -> None:
        if self._closed:
            return
        latest = self._latest
        n = 0
        for e in batch:
            tag = tag_of(type(e))
            if self.kinds is not None and tag not in self.kinds:
                continue
            key = (tag, e.exchange, getattr(e, "symbol", None))
            if key in latest:
                del latest[key]
                self.stats.overwritten_events += 1
            latest[key] = e
            n += 1
        if n:
            self.stats.buffer_used = len(latest)
            self.stats.buffer_peak = max(self.stats.buffer_peak, len(latest))
            self._wakeup.set()

    def close(self) -> None:
        self._closed = True
        self._wakeup.set()

    def close_receiver(self) -> None:
        self.close()
        self._latest.clear()

    async def __anext__(self) -> list[Event]:
        while not self._latest:
            if self._closed:
                raise StopAsyncIteration
            await self._wakeup.wait()
            self._wakeup = trio.Event()
        batch = list(self._latest.values())
        self._latest.clear()
        self.stats.delivered_events += len(batch)
        self.stats.buffer_used = 0
        return batch


# Called with every health event a publisher's batch carries (e.g. a venue's gap counter).
HealthCounter = Callable[[Health], None]


@dataclass
class Bus:
    """Publish side shared by every session; subscribe side, one per consumer.

    ``table_of_kind`` names the table of an event kind in ``dropped`` rows (the table registry
    provides it; by default the kind itself)."""

    subscriptions: list[Subscription] = field(default_factory=list)
    published: dict[tuple[str, str], int] = field(default_factory=dict)  # (exchange, kind) -> n
    closed: bool = False
    table_of_kind: Callable[[str], str] | None = None

    def subscribe(self, name: str, kinds: Iterable[str] | None = None, *,
                  policy: Policy = Policy.LOSSLESS, max_bytes: int = DEFAULT_BUFFER_BYTES,
                  coalesce_s: float = 0.0) -> Subscription:
        ks = frozenset(kinds) if kinds is not None else None
        sub: Subscription
        if policy is Policy.LOSSLESS:
            sub = LosslessSubscription(name, ks, max_bytes, self.table_of_kind, coalesce_s)
        else:
            sub = ConflatingSubscription(name, ks)
        self.subscriptions.append(sub)
        return sub

    def publish(self, batch: Sequence[Event], on_health: HealthCounter | None = None, *,
                force: bool = False) -> None:
        """Hand one frame's events to every subscriber. Synchronous; never blocks. ``force``
        is for the handful of rows that close a run's ledger (``stopped``): they are queued
        even past the byte bound."""
        if not batch or self.closed:
            return
        nbytes = self._account(batch, on_health)
        for sub in self.subscriptions:
            sub.offer(batch, nbytes, force=force)

    def _account(self, batch: Sequence[Event], on_health: HealthCounter | None) -> int:
        """The one walk over a batch: counts per (venue, kind), health callbacks, bytes."""
        counts = self.published
        nbytes = 0
        tags = _TAGS
        for e in batch:
            t = type(e)
            tag = tags.get(t) or tag_of(t)
            key = (e.exchange, tag)
            counts[key] = counts.get(key, 0) + 1
            nbytes += EVENT_BYTES
            if t is BookUpdate:
                nbytes += LEVEL_BYTES * (len(e.bids) + len(e.asks))  # type: ignore[attr-defined]
            elif t is Health and on_health is not None:
                on_health(e)  # type: ignore[arg-type]
        return nbytes

    async def publish_wait(self, batch: Sequence[Event]) -> None:
        """Publish, waiting for room in lossless buffers instead of dropping (replay only:
        there is no live socket to keep reading, so backpressure is the right answer)."""
        if not batch or self.closed:
            return
        nbytes = self._account(batch, None)
        for sub in self.subscriptions:
            if isinstance(sub, LosslessSubscription):
                await sub.offer_wait(batch, nbytes)
            else:
                sub.offer(batch, nbytes)

    def close(self) -> None:
        self.closed = True
        for sub in self.subscriptions:
            sub.close()

    def stats(self) -> list[SubscriptionStats]:
        for s in self.subscriptions:
            if isinstance(s, LosslessSubscription):
                s.stats.buffer_used = s.buffered_bytes
        return [s.stats for s in self.subscriptions]

    def dropped_events(self) -> int:
        """Events lost by lossless consumers (reported or not)."""
        return sum(s.stats.dropped_events for s in self.subscriptions
                   if isinstance(s, LosslessSubscription))

    def dropped_by_venue(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for s in self.subscriptions:
            if isinstance(s, LosslessSubscription):
                for venue, n in s.dropped_by_venue.items():
                    out[venue] = out.get(venue, 0) + n
        return out
