"""The generic trio session: one venue protocol over one websocket, reconnecting forever.

Per connection, a nursery runs four small tasks around the reader loop:

* **reader** (the session's own task): ``get_message`` -> stamp ``ts_local`` -> ``proto.receive``
  -> ``bus.publish`` (synchronous, never awaits a consumer) -> queue the protocol's reply frames.
  It goes straight back to ``get_message``, so trio-websocket keeps answering pings.
* **sender**: sends queued frames, paced to the venue's ``max_sends_per_s``; urgent frames
  (pong replies) go through a second, unpaced sender so a subscription burst never delays them.
* **timer**: sleeps until ``proto.next_deadline()`` and calls ``proto.on_deadline`` (app-level
  pings, overdue snapshots); woken early when a frame brings the next deadline forward.
* **watchdog**: no frame at all (pongs included) for ``silence_timeout_s`` means a dead socket,
  which is closed and reconnected; a quiet symbol on a live socket is the protocol's business.
* **pinger** (only where the venue wants protocol-level pings): websocket ping, pong expected
  within ``WS_PONG_TIMEOUT_S``.
* **rest** (:mod:`core.rest_calls`): the protocol's REST calls, bounded in number, time and size.

Venues with several websocket endpoints (lanes) or a connection age limit are run by
:mod:`core.connections`, which drives one session per socket.

Any failure of the connection (refused, TLS/handshake error, closed by the venue, silence, a
missing pong, a connect timeout) is caught at the nursery boundary with ``except*``, recorded as
a ``disconnected`` health event carrying the reason, and followed by a reconnect after a capped
exponential backoff with full jitter (the attempt and its delay are logged). Every connect,
frame, timer firing and close also goes to the recorder, so that a replay reproduces the same
events. After a reconnect the protocol resubscribes and books
resync from the new snapshots. Exceptions from plugin code are *not* caught here: they escape to
the supervisor, which records them and restarts the connector with a fresh protocol.

Must not: block the reader on anything but the socket; catch exceptions it cannot name.
"""

from __future__ import annotations

import logging
import random
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field

import trio
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    ConnectionTimeout,
    DisconnectionTimeout,
    HandshakeError,
    WebSocketConnection,
    open_websocket_url,
)

from core.bus import Bus
from core.clock import Clock, WallClock
from core.protocol import ExchangeProtocol
from core.recording import NullRecorder, Recorder
from core.rest_calls import RestCalls, RestOverflow
from core.schema import Event, Health, HealthKind

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0
DISCONNECT_TIMEOUT_S = 2.0
BACKOFF_INITIAL_S = 0.5
BACKOFF_MAX_S = 30.0
STABLE_CONNECTION_S = 30.0  # a connection that lived this long resets the backoff
WS_MESSAGE_QUEUE = 64  # frames trio-websocket may read ahead while a big one is processed
OUTBOX_FRAMES = 10_000
TIMER_IDLE_WAIT_S = 1.0
TIMER_MIN_WAIT_S = 0.001
WS_PONG_TIMEOUT_S = 10.0
S_NS = 1_000_000_000


class SilenceTimeout(Exception):
    """No frame at all arrived for the venue's silence timeout."""


class PongTimeout(Exception):
    """A protocol-level websocket ping went unanswered."""


class OutboxOverflow(Exception):
    """The protocol queued more frames than the sender could ever send in time."""


# What a failing connection may raise; everything else is a bug and goes to the supervisor.
CONNECTION_ERRORS = (
    ConnectionClosed, ConnectionRejected, ConnectionTimeout, DisconnectionTimeout,
    HandshakeError, OSError, trio.BrokenResourceError, trio.TooSlowError, SilenceTimeout,
    PongTimeout, OutboxOverflow, RestOverflow,
)

Connect = Callable[[str, int, Sequence[tuple[str, str]]],
                   AbstractAsyncContextManager[WebSocketConnection]]


@asynccontextmanager
async def connect_websocket(url: str, max_message_bytes: int,
                            headers: Sequence[tuple[str, str]] = ()
                            ) -> AsyncIterator[WebSocketConnection]:
    """Default ``Connect``: trio-websocket with TLS verification on (the default context)."""
    async with open_websocket_url(url, max_message_size=max_message_bytes,
                                  extra_headers=list(headers),
                                  message_queue_size=WS_MESSAGE_QUEUE,
                                  connect_timeout=CONNECT_TIMEOUT_S,
                                  disconnect_timeout=DISCONNECT_TIMEOUT_S) as ws:
        yield ws


@dataclass
class Backoff:
    """Capped exponential backoff with full jitter: uniform(0, min(cap, initial * 2**attempt))."""

    initial_s: float = BACKOFF_INITIAL_S
    max_s: float = BACKOFF_MAX_S
    rng: random.Random = field(default_factory=random.Random)

    def delay(self, attempt: int) -> float:
        return self.rng.uniform(0.0, min(self.max_s, self.initial_s * (2 ** min(attempt, 30))))


@dataclass
class VenueStats:
    """Live counters of one venue, read by the status reporter."""

    venue: str
    connected: bool = False
    conn_id: int = 0
    #: time spent connected, closed connections only (see :meth:`connected_ns`)
    connected_total_ns: int = 0
    connected_since_ns: int | None = None
    messages: int = 0
    bytes: int = 0
    last_frame_ns: int | None = None
    reconnects: int = 0
    gaps: int = 0
    resyncs: int = 0
    decode_errors: int = 0
    plugin_errors: int = 0
    last_disconnect: str = ""

    def connected_ns(self, now_ns: int) -> int:
        """Total time connected, the current connection included."""
        since = self.connected_since_ns
        return self.connected_total_ns + (now_ns - since if since is not None else 0)

    def count_health(self, e: Health) -> None:
        """Called by the bus for each health event this venue publishes (no extra walk)."""
        if e.event in (HealthKind.GAP, HealthKind.CHECKSUM_MISMATCH, HealthKind.CROSSED):
            self.gaps += 1
        elif e.event == HealthKind.DECODE_ERROR:
            self.decode_errors += 1
        elif e.event == HealthKind.RESYNCED:
            self.resyncs += 1


def describe(exc: BaseException) -> str:
    """A one-line reason for a lost connection, close codes included."""
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(describe(e) for e in exc.exceptions)
    if isinstance(exc, ConnectionClosed) and exc.reason is not None:
        r = exc.reason
        return f"closed by peer: code={r.code} {r.name} {r.reason or ''}".rstrip()
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    cause = exc.__cause__ or exc.__context__
    if cause is not None and not isinstance(cause, trio.Cancelled):
        text += f" (caused by {describe(cause)})"
    return text


class Session:
    """Runs one venue protocol over a websocket until cancelled. See the module docstring."""

    def __init__(self, proto: ExchangeProtocol, bus: Bus, *, url: str,
                 clock: Clock | None = None, stats: VenueStats | None = None,
                 recorder: Recorder | None = None, connect: Connect = connect_websocket,
                 backoff: Backoff | None = None) -> None:
        self.proto = proto
        self.bus = bus
        self.url = url
        self.clock = clock or WallClock()
        self.stats = stats or VenueStats(proto.name)
        self.recorder = recorder or NullRecorder()
        self.connect = connect
        self.backoff = backoff or Backoff()
        self._last_frame_trio = 0.0
        self._timer_target: int | None = None
        self._timer_wake = trio.Event()
        self._out: trio.MemorySendChannel[str] | None = None
        self._urgent: trio.MemorySendChannel[str] | None = None
        self._rest: RestCalls | None = None

    # -- public --------------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Connect, stream, reconnect; forever (until cancelled)."""
        if self.proto.lanes or self.proto.max_connection_age_s:  # several sockets at a time
            from core.connections import run_connections  # it builds on this module
            await run_connections(self, task_status=task_status)
            return
        task_status.started()
        attempt = 0
        try:
            while True:
                started = trio.current_time()
                try:
                    await self._connection()
                except* CONNECTION_ERRORS as group:
                    self._lost(describe(group))
                if trio.current_time() - started >= STABLE_CONNECTION_S:
                    attempt = 0
                delay = self.backoff.delay(attempt)
                attempt += 1
                self.stats.reconnects += 1
                log.info("%s: reconnecting in %.2f s (attempt %d)", self.proto.name, delay,
                         attempt)
                await trio.sleep(delay)
        finally:
            if self.stats.connected:
                self._lost("stopped")

    # -- one connection ------------------------------------------------------------------------

    async def _connection(self) -> None:
        proto = self.proto
        async with self.connect(self.url, proto.max_message_bytes, proto.ws_headers) as ws:
            self.stats.conn_id += 1
            self.stats.connected = True
            now = self.clock.now_ns()
            self.stats.connected_since_ns = now
            self._last_frame_trio = trio.current_time()
            self.recorder.opened(proto.name, self.stats.conn_id, self.url, now)
            self._publish([self._health(HealthKind.CONNECTED,
                                        f"{self.url} conn={self.stats.conn_id}", now)])
            self._publish(proto.connection_made(now))
            send_channel, receive_channel = trio.open_memory_channel[str](OUTBOX_FRAMES)
            urgent_send, urgent_receive = trio.open_memory_channel[str](OUTBOX_FRAMES)
            self._out, self._urgent = send_channel, urgent_send
            async with trio.open_nursery() as nursery, send_channel, urgent_send:
                nursery.start_soon(self._sender, ws, receive_channel, proto.max_sends_per_s)
                nursery.start_soon(self._sender, ws, urgent_receive, None)
                nursery.start_soon(self._timer)
                nursery.start_soon(self._watchdog)
                if proto.ws_ping_interval_s:
                    nursery.start_soon(self._pinger, ws, proto.ws_ping_interval_s)
                self._rest = RestCalls(proto, clock=self.clock, recorder=self.recorder,
                                       conn=self.stats.conn_id, deliver=self._deliver)
                await nursery.start(self._rest.run)
                self._flush()
                await self._reader(ws)

    async def _reader(self, ws: WebSocketConnection) -> None:
        proto, stats, clock = self.proto, self.stats, self.clock
        recorder = self.recorder
        while True:
            frame = await ws.get_message()
            recv_ns = clock.now_ns()
            self._last_frame_trio = trio.current_time()
            stats.messages += 1
            stats.bytes += len(frame)
            stats.last_frame_ns = recv_ns
            recorder.received(proto.name, stats.conn_id, recv_ns, frame)
            events = proto.receive(frame, recv_ns)
            if events:
                self._publish(events)
            self._flush()
            target = self._timer_target
            deadline = proto.next_deadline()
            if deadline is not None and (target is None or deadline < target):
                self._timer_wake.set()

    async def _sender(self, ws: WebSocketConnection, frames: trio.MemoryReceiveChannel[str],
                      rate: float | None) -> None:
        min_gap_s = 1.0 / rate if rate else 0.0
        last = -1e18
        async with frames:
            async for frame in frames:
                if min_gap_s:
                    wait = last + min_gap_s - trio.current_time()
                    if wait > 0:
                        await trio.sleep(wait)
                    last = trio.current_time()
                await ws.send_message(frame)
                self.recorder.sent(self.proto.name, self.stats.conn_id, self.clock.now_ns(),
                                   frame)

    async def _timer(self) -> None:
        proto, clock = self.proto, self.clock
        while True:
            now = clock.now_ns()
            deadline = proto.next_deadline()
            if deadline is not None and deadline <= now:
                self.recorder.timer(proto.name, self.stats.conn_id, now)
                self._publish(proto.on_deadline(now))
                self._flush()
                after = proto.next_deadline()
                if after is not None and after <= now:
                    await trio.sleep(TIMER_MIN_WAIT_S)  # a protocol that did not advance
                continue
            wait_s = TIMER_IDLE_WAIT_S
            if deadline is not None:
                wait_s = min(wait_s, (deadline - now) / S_NS)
            self._timer_target = deadline
            self._timer_wake = trio.Event()
            with trio.move_on_after(max(wait_s, TIMER_MIN_WAIT_S)):
                await self._timer_wake.wait()

    async def _watchdog(self) -> None:
        limit = self.proto.silence_timeout_s
        period = min(1.0, limit / 4)
        while True:
            await trio.sleep(period)
            silent = trio.current_time() - self._last_frame_trio
            if silent > limit:
                raise SilenceTimeout(f"no frame for {silent:.1f} s (limit {limit:g} s)")

    async def _pinger(self, ws: WebSocketConnection, interval_s: float) -> None:
        while True:
            await trio.sleep(interval_s)
            try:
                with trio.fail_after(WS_PONG_TIMEOUT_S):
                    await ws.ping()
            except trio.TooSlowError:
                raise PongTimeout(f"no pong within {WS_PONG_TIMEOUT_S:g} s") from None

    # -- helpers -------------------------------------------------------------------------------

    def _flush(self) -> None:
        if self._rest is not None:
            self._rest.submit(self.proto.rest_requests_to_send())
        for frames, channel in ((self.proto.urgent_frames_to_send(), self._urgent),
                                (self.proto.frames_to_send(), self._out)):
            if not frames or channel is None:
                continue
            for frame in frames:
                try:
                    channel.send_nowait(frame)
                except trio.WouldBlock:
                    raise OutboxOverflow(f"more than {OUTBOX_FRAMES} frames waiting to be "
                                         "sent") from None

    def _deliver(self, events: list[Event]) -> None:
        """A REST response's events: publish, send what the protocol queued, re-arm the timer."""
        self._publish(events)
        self._flush()
        deadline = self.proto.next_deadline()
        if deadline is not None and (self._timer_target is None or deadline < self._timer_target):
            self._timer_wake.set()

    def _publish(self, events: Sequence[Event]) -> None:
        if events:
            self.bus.publish(events, self.stats.count_health)

    def _health(self, kind: str, detail: str, ts: int | None = None) -> Health:
        return Health(exchange=self.proto.name, ts_local=self.clock.now_ns() if ts is None else ts,
                      symbol=None, event=kind, detail=detail)

    def _lost(self, reason: str) -> None:
        now = self.clock.now_ns()
        was_connected = self.stats.connected
        self.stats.connected = False
        if self.stats.connected_since_ns is not None:
            self.stats.connected_total_ns += now - self.stats.connected_since_ns
            self.stats.connected_since_ns = None
        self.stats.last_disconnect = reason
        self._out = self._urgent = None
        # a failed attempt (never connected) is recorded with connection 0
        self.recorder.closed(self.proto.name, self.stats.conn_id if was_connected else 0, now,
                             reason)
        log.warning("%s: connection lost: %s", self.proto.name, reason)
        self._publish([self._health(HealthKind.DISCONNECTED, reason, now)])
        self._publish(self.proto.connection_lost(now))
