"""One venue over several sockets: lanes, and connections replaced before the venue's age limit.

:class:`core.session.Session` runs one protocol over one websocket. Two venue traits need more,
and :meth:`Session.run` hands such venues to :func:`run_connections`:

* **Lanes** (:attr:`ExchangeProtocol.lanes`): the venue serves some channels on another
  endpoint (Binance USD-M: books on ``/public``, trades on ``/market``). One *connection* of the
  venue is then a *group* of sockets, one per lane, each with its own protocol instance (the
  lane's channels only) and its own :class:`Session`. The sockets of a group live and die
  together: when one fails, the others are closed too, every one of them that was open records
  its ``disconnected`` row, and the whole group reconnects after the usual backoff. So the
  health ledger keeps its meaning: a venue's books are trusted while its connection is up.
* **Connection age limit** (:attr:`ExchangeProtocol.max_connection_age_s`): shortly before the
  venue would cut the group (``lead_s``), a *shadow* group is opened with fresh protocol
  instances. Its events are held back (:class:`core.handover.Handover`) until every book that
  is live on the current group is live on the shadow too and both have streamed for
  ``min_overlap_s``; then the runner *switches*: the held-back state is published (one
  ``handover`` health row, each book republished whole, trades not already published), the old
  sockets are closed without a ``disconnected`` row, and the shadow becomes current. A shadow
  that fails, or is not ready within ``max_wait_s``, is dropped and retried after ``retry_s``;
  when the cut is too close for another try, the runner switches anyway and the books that are
  not ready get a ``gap`` row. If the current group dies while a shadow is connected, the shadow
  takes over at once (the books it has are ``resynced``).

Each socket's session shares the venue's :class:`VenueStats` (connection numbers stay unique per
venue) and writes to the raw recorder under its own connection number and lane; the switch is
recorded (``handover``), so that ``--replay`` reproduces every row.

Must not: block a reader (holding back is bounded and synchronous), or leave a socket without an
owning nursery: every socket runs in the runner's nursery, inside its own cancel scope.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

import trio

from core.bus import Bus, HealthCounter
from core.handover import Handover
from core.protocol import ExchangeProtocol, Lane
from core.recording import Recorder
from core.schema import Event
from core.session import CONNECTION_ERRORS, STABLE_CONNECTION_S, Session, describe

log = logging.getLogger(__name__)

#: start the replacement this long before the age limit (at most a quarter of the limit), unless
#: the protocol says otherwise (``handover_lead_s``)
HANDOVER_LEAD_S: Final = 600.0
#: give a replacement this long to have every book live (at most half the lead)
HANDOVER_MAX_WAIT_S: Final = 120.0
#: both groups stream at least this long before the switch (at most a tenth of the lead)
HANDOVER_MIN_OVERLAP_S: Final = 2.0
#: pause after a replacement that failed (at most a tenth of the lead)
HANDOVER_RETRY_S: Final = 10.0
#: how often a pending switch re-checks its conditions when nothing else wakes it
CHECK_EVERY_S: Final = 0.25

CURRENT: Final = "current"
SHADOW: Final = "shadow"
RETIRED: Final = "retired"


@dataclass(frozen=True)
class Timing:
    """When to start, and how long to wait for, a replacement group."""

    max_age_s: float
    lead_s: float
    max_wait_s: float
    min_overlap_s: float
    retry_s: float

    @classmethod
    def for_age(cls, max_age_s: float, lead_s: float | None = None) -> Timing:
        lead = min(HANDOVER_LEAD_S, max_age_s / 4) if lead_s is None else lead_s
        return cls(max_age_s=max_age_s, lead_s=lead,
                   max_wait_s=min(HANDOVER_MAX_WAIT_S, lead / 2),
                   min_overlap_s=min(HANDOVER_MIN_OVERLAP_S, lead / 10),
                   retry_s=min(HANDOVER_RETRY_S, lead / 10))


@dataclass
class _Route(Bus):
    """What one socket's session publishes into: routed by the socket's role."""

    link: _Link | None = None
    runner: ConnectionRunner | None = None

    def publish(self, batch: Sequence[Event], on_health: HealthCounter | None = None, *,
                force: bool = False) -> None:
        if batch and self.link is not None and self.runner is not None:
            self.runner.route(self.link, batch, on_health)


class _LinkRecorder:
    """The venue's recorder, with this socket's connection number and lane on every record."""

    link: _Link

    def __init__(self, inner: Recorder) -> None:
        self.inner = inner

    def opened(self, venue: str, conn: int, url: str, ts_ns: int, *, lane: str = "") -> None:
        self.link.conn = conn
        self.link.opened_at = trio.current_time()
        self.inner.opened(venue, conn, url, ts_ns, lane=self.link.lane.name)
        self.link.group.note_opened()

    def received(self, venue: str, conn: int, ts_ns: int, frame: str | bytes) -> None:
        self.inner.received(venue, self.link.conn or conn, ts_ns, frame)

    def sent(self, venue: str, conn: int, ts_ns: int, frame: str | bytes) -> None:
        self.inner.sent(venue, self.link.conn or conn, ts_ns, frame)

    def timer(self, venue: str, conn: int, ts_ns: int) -> None:
        self.inner.timer(venue, self.link.conn or conn, ts_ns)

    def rest(self, venue: str, conn: int, ts_ns: int, key: str, url: str, status: int,
             body: bytes, error: str | None, *, sent_ns: int | None = None) -> None:
        self.inner.rest(venue, self.link.conn or conn, ts_ns, key, url, status, body, error,
                        sent_ns=sent_ns)

    def handover(self, venue: str, conn: int, ts_ns: int, detail: str) -> None:
        self.inner.handover(venue, conn, ts_ns, detail)

    def closed(self, venue: str, conn: int, ts_ns: int, reason: str, *,
               lane: str = "") -> None:
        # a socket that never opened in this attempt is recorded as connection 0
        self.inner.closed(venue, self.link.conn or 0, ts_ns, reason, lane=self.link.lane.name)
        self.link.conn = None


@dataclass(eq=False)
class _Link:
    """One socket of a group: its lane, protocol, session and state in the current attempt."""

    lane: Lane
    proto: ExchangeProtocol
    group: _Group
    session: Session
    role: str = CURRENT
    conn: int | None = None  # the open connection's number
    opened_at: float | None = None  # trio time
    reason: str | None = None  # why it failed
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)


@dataclass(eq=False)
class _Group:
    """The sockets that together are one connection of the venue."""

    links: list[_Link] = field(default_factory=list)
    running: bool = False
    ended: trio.Event = field(default_factory=trio.Event)
    all_open: trio.Event = field(default_factory=trio.Event)
    changed: trio.Event = field(default_factory=trio.Event)
    failed: _Link | None = None
    successor: _Group | None = None
    shadow: _Group | None = None

    def note_opened(self) -> None:
        self.changed.set()
        if all(link.conn is not None for link in self.links):
            self.all_open.set()

    def reset(self) -> None:
        self.ended = trio.Event()
        self.all_open = trio.Event()
        self.failed = None
        for link in self.links:
            link.reason = None
            link.opened_at = None
            link.scope = trio.CancelScope()

    def first_open(self) -> float:
        return min(link.opened_at for link in self.links if link.opened_at is not None)

    def last_open(self) -> float:
        return max(link.opened_at for link in self.links if link.opened_at is not None)

    def conns(self) -> str:
        return ",".join(str(link.conn) for link in self.links if link.conn is not None) or "-"


class ConnectionRunner:
    """Runs one venue's groups (see the module docstring) in place of ``Session.run``."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.proto_cls = type(session.proto)
        self.name = session.proto.name
        self.plan = self.proto_cls.lane_plan(session.proto.config)
        self.handover = Handover(self.name)
        age = session.proto.max_connection_age_s
        self.timing = Timing.for_age(age, session.proto.handover_lead_s) if age else None
        self._nursery: trio.Nursery | None = None

    # -- the loop --------------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        group = self._new_group(first=True)
        attempt = 0
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            try:
                while True:
                    started = trio.current_time()
                    successor = await self._serve(group)
                    if successor is not None:
                        group, attempt = successor, 0
                        continue
                    if trio.current_time() - started >= STABLE_CONNECTION_S:
                        attempt = 0
                    delay = self.session.backoff.delay(attempt)
                    attempt += 1
                    self.session.stats.reconnects += 1
                    log.info("%s: reconnecting in %.2f s (attempt %d)", self.name, delay, attempt)
                    await trio.sleep(delay)
            finally:
                self._stop(group)
                nursery.cancel_scope.cancel()

    async def _serve(self, group: _Group) -> _Group | None:
        """Run ``group`` until it ends: return the group that replaced it, or None if it
        failed (after recording the failure)."""
        assert self._nursery is not None
        if not group.running:  # a promoted shadow is running already
            group.reset()
            group.running = True
            for link in group.links:
                self._nursery.start_soon(self._run_link, group, link)
        async with trio.open_nursery() as watch:
            if self.timing is not None:
                watch.start_soon(self._watch, group, self.timing)
            await group.ended.wait()
            watch.cancel_scope.cancel()
        if group.successor is not None:
            return group.successor
        group.running = False
        failed = group.failed
        assert failed is not None and failed.reason is not None
        for link in group.links:
            link.scope.cancel()
        failed.session._lost(failed.reason)
        for link in group.links:  # the others were up: they go down with it
            if link is not failed and link.conn is not None:
                link.session._lost(
                    f"{failed.reason} (on the {failed.lane.name or 'other'} socket)")
        shadow, group.shadow = group.shadow, None
        if shadow is not None:
            if not shadow.ended.is_set():
                self._switch(group, shadow, old_lost=True)
                return shadow
            self._drop(shadow, "the replacement failed too")
        return None

    async def _run_link(self, group: _Group, link: _Link) -> None:
        with link.scope:
            try:
                link.session._reported = False  # a new attempt: its end is recorded once
                await link.session._connection()
                link.reason = "connection ended"
            except* CONNECTION_ERRORS as exc:
                link.reason = describe(exc)
        if link.reason is not None and group.failed is None:
            group.failed = link
            group.ended.set()
        group.changed.set()

    # -- handover --------------------------------------------------------------------------------

    async def _watch(self, group: _Group, timing: Timing) -> None:
        """Replace ``group`` shortly before the venue's age limit."""
        await group.all_open.wait()
        cut = group.first_open() + timing.max_age_s
        await trio.sleep_until(cut - timing.lead_s)
        while True:
            shadow = self._new_group(first=False)
            for link in shadow.links:
                link.role = SHADOW
            group.shadow = shadow
            shadow.running = True
            assert self._nursery is not None
            for link in shadow.links:
                self._nursery.start_soon(self._run_link, shadow, link)
            started = trio.current_time()
            ready = False
            with trio.move_on_at(started + timing.max_wait_s):
                while not shadow.ended.is_set():
                    if shadow.all_open.is_set() and \
                            trio.current_time() >= shadow.last_open() + timing.min_overlap_s and \
                            self.handover.ready(self._protos(group), self._protos(shadow)):
                        ready = True
                        break
                    shadow.changed = trio.Event()
                    with trio.move_on_after(CHECK_EVERY_S):
                        await shadow.changed.wait()
            if group.ended.is_set():
                return  # the current group died meanwhile: _serve promotes or drops the shadow
            last_chance = trio.current_time() + timing.max_wait_s + timing.retry_s >= cut
            if not shadow.ended.is_set() and (ready or last_chance):
                group.shadow = None
                self._switch(group, shadow, old_lost=False)
                group.successor = shadow
                group.ended.set()
                return
            why = (shadow.failed.reason if shadow.failed is not None and shadow.failed.reason
                   else f"books not ready within {timing.max_wait_s:g} s")
            group.shadow = None
            self._drop(shadow, why)
            await trio.sleep(timing.retry_s)

    def _switch(self, old: _Group, new: _Group, *, old_lost: bool) -> None:
        now = self.session.clock.now_ns()
        age = trio.current_time() - old.first_open() if any(
            link.opened_at is not None for link in old.links) else 0.0
        detail = f"conn {old.conns()} -> {new.conns()} after {age:.0f} s"
        events = self.handover.switch(now, self._protos(old), self._protos(new),
                                      old_lost=old_lost, detail=detail)
        first = next((link.conn for link in new.links if link.conn is not None), 0)
        self.session.recorder.handover(self.name, first, now, detail)
        for link in old.links:
            link.role = RETIRED
            link.scope.cancel()
        for link in new.links:
            link.role = CURRENT
        self.session.bus.publish(events)
        self.session.stats.connected = any(link.conn is not None for link in new.links)
        log.info("%s: handover %s%s", self.name, detail, " (old connection lost)" if old_lost
                 else "")

    def _drop(self, shadow: _Group, reason: str) -> None:
        """Give up a replacement group: close it without a row, forget what it held."""
        now = self.session.clock.now_ns()
        for link in shadow.links:
            link.role = RETIRED
            link.scope.cancel()
            if link.conn is not None:
                link.session.recorder.closed(self.name, link.conn, now,
                                             f"replacement dropped: {reason}")
        shadow.running = False
        self.handover.discard()
        log.warning("%s: replacement connection dropped: %s", self.name, reason)

    def _stop(self, group: _Group) -> None:
        """End of run: the open sockets' ``disconnected`` rows, as ``Session.run`` writes."""
        for link in group.links:
            if link.conn is not None:
                link.session._lost("stopped")
        if group.shadow is not None:
            self._drop(group.shadow, "stopped")

    # -- routing ---------------------------------------------------------------------------------

    def route(self, link: _Link, batch: Sequence[Event],
              on_health: HealthCounter | None = None) -> None:
        """Events of one socket's session: published, held back or dropped by its role."""
        if link.role == CURRENT:
            events = self.handover.current(batch)
            if events:
                self.session.bus.publish(events, on_health)
        elif link.role == SHADOW:
            self.handover.hold(batch)
            link.group.changed.set()

    # -- helpers ---------------------------------------------------------------------------------

    def _new_group(self, *, first: bool) -> _Group:
        group = _Group()
        base = self.session.url
        for lane, config in self.plan:
            reuse = first and not self.proto_cls.lanes  # the supervisor's protocol, one socket
            proto = self.session.proto if reuse else self.proto_cls(config)
            url = base.rstrip("/") + lane.path if lane.path else base
            route = _Route(runner=self)
            recorder = _LinkRecorder(self.session.recorder)
            session = Session(proto, route, url=url, clock=self.session.clock,
                              stats=self.session.stats, recorder=recorder,
                              connect=self.session.connect, backoff=self.session.backoff,
                              rest_transport=self.session.rest_transport)
            link = _Link(lane=lane, proto=proto, group=group, session=session)
            route.link = recorder.link = link
            group.links.append(link)
        return group

    @staticmethod
    def _protos(group: _Group) -> list[ExchangeProtocol]:
        return [link.proto for link in group.links]


async def run_connections(session: Session, *,
                          task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """``Session.run`` for venues with lanes or a connection age limit."""
    await ConnectionRunner(session).run(task_status=task_status)


__all__ = ["ConnectionRunner", "Timing", "run_connections"]
