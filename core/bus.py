"""Fan-out of normalized events from every session to every consumer, never blocking a reader.

Each consumer gets its own bounded subscription with an explicit policy:

* :attr:`Policy.LOSSLESS` (writers): one trio memory channel of *batches* (the events of one
  frame), ``buffer_batches`` deep. Publishing is ``send_nowait``: a session's reader never awaits
  a consumer. When the buffer is full the batch is dropped, counted, and reported to that very
  consumer as a ``dropped`` health event as soon as its buffer has room again, so the loss is
  itself recorded in the data. Lag is visible as ``current_buffer_used`` in :meth:`Bus.stats`.
* :attr:`Policy.CONFLATE` (live analyzers): keeps only the latest event per (kind, exchange,
  symbol); memory is bounded by the number of keys, and a slow consumer simply sees fewer,
  fresher values. Overwrites are counted.

Memory channels are point-to-point, so fan-out is done here, once per subscriber. Closing the bus
ends every consumer's ``async for`` loop after it drained what was buffered.

Must not: await anything on the publish path, or hold events without a bound.
"""

from __future__ import annotations

import enum
import math
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field

import trio

from core.schema import Event, Health, HealthKind

DEFAULT_LOSSLESS_BUFFER_BATCHES = 20_000
STATS_EVERY_MASK = 63  # lossless buffer statistics are sampled every 64 offers


_TAGS: dict[type, str] = {}


def _tag(event_type: type[Event]) -> str:
    """The event kind (msgspec tag), cached per class: the lookup is on the hot path."""
    tag = _TAGS.get(event_type)
    if tag is None:
        tag = _TAGS[event_type] = str(event_type.__struct_config__.tag)
    return tag


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
    buffer_used: int = 0
    buffer_peak: int = 0
    buffer_size: int = 0


class Subscription:
    """Base of the two policies; consumers use ``async for batch in subscription``."""

    def __init__(self, name: str, kinds: frozenset[str] | None) -> None:
        self.name = name
        self.kinds = kinds  # None: every kind
        self.stats = SubscriptionStats(name=name, policy=self.policy.value)

    policy: Policy

    def wants(self, event: Event) -> bool:
        return self.kinds is None or _tag(type(event)) in self.kinds

    def offer(self, batch: Sequence[Event]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Publisher side: no more events; the consumer's loop ends after draining."""
        raise NotImplementedError

    def close_receiver(self) -> None:
        """Consumer side: this consumer stops reading; later events are counted as dropped."""
        raise NotImplementedError

    def __aiter__(self) -> AsyncIterator[Sequence[Event]]:
        return self

    async def __anext__(self) -> Sequence[Event]:
        raise NotImplementedError


class LosslessSubscription(Subscription):
    policy = Policy.LOSSLESS

    def __init__(self, name: str, kinds: frozenset[str] | None, buffer_batches: int) -> None:
        super().__init__(name, kinds)
        if not 0 < buffer_batches < math.inf:
            raise ValueError("a lossless subscription needs a finite, positive buffer")
        self._send, self._recv = trio.open_memory_channel[Sequence[Event]](buffer_batches)
        self.stats.buffer_size = buffer_batches
        self._unreported_drops = 0
        self._drop_exchanges: set[str] = set()
        self._offers = 0

    def offer(self, batch: Sequence[Event]) -> None:
        if self.kinds is not None:
            batch = [e for e in batch if _tag(type(e)) in self.kinds]
        if not batch:
            return
        if self._unreported_drops:
            self._report_drops(batch[0].ts_local)
        try:
            self._send.send_nowait(batch)
        except trio.WouldBlock:
            self.stats.buffer_used = self.stats.buffer_peak = self.stats.buffer_size
            self.stats.dropped_events += len(batch)
            self.stats.dropped_batches += 1
            self._unreported_drops += len(batch)
            self._drop_exchanges.update(e.exchange for e in batch)
            return
        except trio.BrokenResourceError:
            # the consumer has stopped reading for good: count what it will never see
            self.stats.dropped_events += len(batch)
            self.stats.dropped_batches += 1
            return
        except trio.ClosedResourceError:
            return
        self.stats.delivered_events += len(batch)
        self._offers += 1
        if self._offers & STATS_EVERY_MASK == 0:  # statistics() allocates: sample it
            self._sample()

    def _sample(self) -> None:
        used = self._send.statistics().current_buffer_used
        self.stats.buffer_used = used
        if used > self.stats.buffer_peak:
            self.stats.buffer_peak = used

    def _report_drops(self, ts_local: int) -> None:
        note = [Health(exchange=ex, ts_local=ts_local, symbol=None, event=HealthKind.DROPPED,
                       detail=f"{self._unreported_drops} events dropped for consumer "
                              f"{self.name!r}: buffer of {self.stats.buffer_size} batches full")
                for ex in sorted(self._drop_exchanges)]
        try:
            self._send.send_nowait(note)
        except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
            return
        self._unreported_drops = 0
        self._drop_exchanges.clear()

    async def offer_wait(self, batch: Sequence[Event]) -> None:
        """Like :meth:`offer`, but wait for room instead of dropping (replay only)."""
        if self.kinds is not None:
            batch = [e for e in batch if _tag(type(e)) in self.kinds]
        if batch:
            await self._send.send(batch)
            self.stats.delivered_events += len(batch)

    @property
    def unreported_drops(self) -> int:
        return self._unreported_drops

    def close(self) -> None:
        self._send.close()

    def close_receiver(self) -> None:
        self._recv.close()

    async def __anext__(self) -> Sequence[Event]:
        try:
            batch = await self._recv.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise StopAsyncIteration from None
        self.stats.buffer_used = self._recv.statistics().current_buffer_used
        return batch


class ConflatingSubscription(Subscription):
    policy = Policy.CONFLATE

    def __init__(self, name: str, kinds: frozenset[str] | None) -> None:
        super().__init__(name, kinds)
        self._latest: dict[tuple[str, str, str | None], Event] = {}
        self._wakeup = trio.Event()
        self._closed = False

    def offer(self, batch: Sequence[Event]) -> None:
        if self._closed:
            return
        latest = self._latest
        n = 0
        for e in batch:
            tag = _tag(type(e))
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

    async def __anext__(self) -> Sequence[Event]:
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


@dataclass
class Bus:
    """Publish side shared by every session; subscribe side, one per consumer."""

    subscriptions: list[Subscription] = field(default_factory=list)
    published: dict[tuple[str, str], int] = field(default_factory=dict)  # (exchange, kind) -> n
    closed: bool = False

    def subscribe(self, name: str, kinds: Iterable[str] | None = None, *,
                  policy: Policy = Policy.LOSSLESS,
                  buffer_batches: int = DEFAULT_LOSSLESS_BUFFER_BATCHES) -> Subscription:
        ks = frozenset(kinds) if kinds is not None else None
        sub: Subscription
        if policy is Policy.LOSSLESS:
            sub = LosslessSubscription(name, ks, buffer_batches)
        else:
            sub = ConflatingSubscription(name, ks)
        self.subscriptions.append(sub)
        return sub

    def publish(self, batch: Sequence[Event]) -> None:
        """Hand one frame's events to every subscriber. Synchronous; never blocks."""
        if not batch or self.closed:
            return
        self._count(batch)
        for sub in self.subscriptions:
            sub.offer(batch)

    def _count(self, batch: Sequence[Event]) -> None:
        counts = self.published
        for e in batch:
            key = (e.exchange, _tag(type(e)))
            counts[key] = counts.get(key, 0) + 1

    async def publish_wait(self, batch: Sequence[Event]) -> None:
        """Publish, waiting for room in lossless buffers instead of dropping (replay only:
        there is no live socket to keep reading, so backpressure is the right answer)."""
        if not batch or self.closed:
            return
        self._count(batch)
        for sub in self.subscriptions:
            if isinstance(sub, LosslessSubscription):
                await sub.offer_wait(batch)
            else:
                sub.offer(batch)

    def close(self) -> None:
        self.closed = True
        for sub in self.subscriptions:
            sub.close()

    def stats(self) -> list[SubscriptionStats]:
        for s in self.subscriptions:
            if isinstance(s, LosslessSubscription):
                s._sample()
        return [s.stats for s in self.subscriptions]
