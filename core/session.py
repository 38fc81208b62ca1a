"""The generic trio session: one venue protocol over one websocket, reconnecting forever.

Per connection, a nursery runs small tasks around the reader loop:

* **reader** (the session's own task): ``get_message`` -> stamp ``ts_local`` -> ``proto.receive``
  -> ``bus.publish`` (synchronous, never awaits a consumer) -> queue the protocol's reply frames.
  It goes straight back to ``get_message``, so trio-websocket keeps answering pings.
* **sender**: sends queued frames, paced to the venue's ``max_sends_per_s``; urgent frames
  (pong replies) go through a second, unpaced sender so a subscription burst never delays them.
* **timer**: sleeps until ``proto.next_deadline()`` and calls ``proto.on_deadline`` (app-level
  pings, overdue snapshots); woken early when a frame brings the next deadline forward.
* **liveness**: a socket silent for the venue's *liveness interval* (its app-level ping period,
  else half its silence timeout) is probed with a websocket ping; when neither the pong nor any
  frame arrives within ``pong_timeout_s`` the socket is dead. A venue with app-level pings must
  also answer one: no frame at all for ``ping_interval_s + pong_timeout_s`` is dead too, even if
  its websocket layer still answers pings; any venue silent past ``silence_timeout_s`` is dead.
  So a dead socket is found at most :func:`dead_socket_bound_s` after its last frame (Bybit
  20 + 5 s, Bitget 30 + 5 s, Gate 15 + 5 s; HTX 10 + 5 s for a dead TCP connection, 20 s for a
  venue that stops talking; Coinbase 10 s), and its books are marked untrusted at that moment,
  before the dead socket is closed.
* **rest** (:mod:`core.rest_calls`): the protocol's REST calls, bounded in number, time and size.

Venues with several websocket endpoints (lanes) or a connection age limit are run by
:mod:`core.connections`, which drives one session per socket.

**Connect.** The whole connect of one attempt (TCP, TLS, websocket handshake and the venue's
first answer to the subscriptions: a ``subscribed``/``subscribe_error`` row or market data) has
one deadline, ``CONNECT_TIMEOUT_S + proto.subscribe_timeout_s`` from the start of the attempt; a
venue that accepts the TCP connection and never answers the handshake is retried, not waited on.
The default ``connect`` owns the TCP/TLS stream it opens and closes it on every way out
(:func:`open_websocket_over`), so an abandoned connection never stays open.

Any failure of the connection (refused, TLS/handshake error, closed by the venue, a dead socket,
the connect deadline) is caught at the nursery boundary with ``except*``, recorded as a
``disconnected`` health event carrying the reason (published as soon as the failure is known,
before the socket is closed), and followed by a reconnect after a capped exponential backoff with
full jitter; one log line per attempt names the cause and the delay. Every connect, frame, timer
firing and close also goes to the recorder, so that a replay reproduces the same events. After a
reconnect the protocol resubscribes and books resync from the new snapshots. Exceptions from
plugin code are *not* caught here: they escape to the supervisor.

Must not: block the reader on anything but the socket; catch exceptions it cannot name.
"""

from __future__ import annotations

import logging
import math
import os
import random
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Final

import httpx
import trio
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    ConnectionTimeout,
    DisconnectionTimeout,
    HandshakeError,
    WebSocketConnection,
    wrap_client_stream,
)

from core.bus import Bus
from core.clock import Clock, WallClock
from core.codec import S_NS
from core.protocol import ExchangeProtocol
from core.recording import NullRecorder, Recorder
from core.rest_calls import RestCalls, RestOverflow
from core.schema import Event, Health, HealthKind
from core.subscriptions import SUBSCRIBE_RETRY
from core.wsclient import open_lean_over, open_url_stream

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0  # TCP + TLS + websocket handshake; the subscription answer adds its own
DISCONNECT_TIMEOUT_S = 2.0
PONG_TIMEOUT_S = 5.0
BACKOFF_INITIAL_S = 0.5
BACKOFF_MAX_S = 30.0
STABLE_CONNECTION_S = 30.0  # a connection that lived this long resets the backoff
WS_MESSAGE_QUEUE = 64  # frames trio-websocket may read ahead while a big one is processed
OUTBOX_FRAMES = 10_000
TIMER_IDLE_WAIT_S = 1.0
TIMER_MIN_WAIT_S = 0.001

ANSWERS = frozenset({HealthKind.SUBSCRIBED, HealthKind.SUBSCRIBE_ERROR, SUBSCRIBE_RETRY})


class SilenceTimeout(Exception):
    """The socket is dead: silent past its liveness interval and a ping went unanswered."""


class ConnectTimeout(Exception):
    """The connect (TCP, TLS, handshake, first subscription answer) missed its deadline."""


class OutboxOverflow(Exception):
    """The protocol queued more frames than the sender could ever send in time."""


# What a failing connection may raise; everything else is a bug and goes to the supervisor.
CONNECTION_ERRORS = (
    ConnectionClosed, ConnectionRejected, ConnectionTimeout, DisconnectionTimeout,
    HandshakeError, OSError, trio.BrokenResourceError, trio.TooSlowError, SilenceTimeout,
    ConnectTimeout, OutboxOverflow, RestOverflow,
)

Connect = Callable[[str, int, Sequence[tuple[str, str]]],
                   AbstractAsyncContextManager[WebSocketConnection]]


#: the websocket client implementations the session can use (``--transport``)
TRANSPORTS: Final = ("trio-websocket", "lean")
_transport = os.environ.get("BOOKWIRE_TRANSPORT", "trio-websocket")


def use_transport(name: str) -> None:
    """Choose the websocket client of every later connection in this process:
    ``trio-websocket`` (the default) or ``lean`` (:mod:`core.wsclient`)."""
    global _transport
    if name not in TRANSPORTS:
        raise ValueError(f"unknown transport {name!r}; valid choices: {', '.join(TRANSPORTS)}")
    _transport = name


def current_transport() -> str:
    return _transport


def open_websocket_over(stream: trio.abc.Stream, host: str, resource: str,
                        max_message_bytes: int, headers: Sequence[tuple[str, str]] = ()
                        ) -> AbstractAsyncContextManager[WebSocketConnection]:
    """A client websocket over an already open ``stream``, which is closed on every way out, by
    the transport chosen with :func:`use_transport` (or ``$BOOKWIRE_TRANSPORT``)."""
    if _transport == "lean":
        return open_lean_over(stream, host, resource, max_message_bytes,  # type: ignore[return-value]
                              headers)
    return _open_trio_websocket_over(stream, host, resource, max_message_bytes, headers)


@asynccontextmanager
async def _open_trio_websocket_over(stream: trio.abc.Stream, host: str, resource: str,
                                    max_message_bytes: int,
                                    headers: Sequence[tuple[str, str]] = ()
                                    ) -> AsyncIterator[WebSocketConnection]:
    """trio-websocket over ``stream``. The websocket close handshake gets
    ``DISCONNECT_TIMEOUT_S`` (none when the run is being cancelled); then the stream is closed
    whatever happened, and trio-websocket's reader task with it."""
    async with trio.open_nursery() as nursery:
        try:
            ws = await wrap_client_stream(
                nursery, stream, host, resource,  # type: ignore[arg-type]
                extra_headers=[(k.encode(), v.encode()) for k, v in headers],
                message_queue_size=WS_MESSAGE_QUEUE, max_message_size=max_message_bytes)
            try:
                yield ws
            finally:
                with trio.move_on_after(DISCONNECT_TIMEOUT_S):
                    await ws.aclose()
        finally:
            await trio.aclose_forcefully(stream)
            nursery.cancel_scope.cancel()


@asynccontextmanager
async def connect_websocket(url: str, max_message_bytes: int,
                            headers: Sequence[tuple[str, str]] = ()
                            ) -> AsyncIterator[WebSocketConnection]:
    """Default ``Connect``: TCP (+ TLS with verification on, the default context), then the
    websocket handshake; the stream is owned here and always closed."""
    stream, host_header, resource = await open_url_stream(url)
    async with open_websocket_over(stream, host_header, resource, max_message_bytes,
                                   headers) as ws:
        yield ws


def liveness_interval_s(proto: ExchangeProtocol | type[ExchangeProtocol]) -> float:
    """How long a healthy connection of this venue may stay silent: its app-level ping period
    (every ping is answered), else its websocket ping period, else half its silence timeout."""
    return proto.ping_interval_s or proto.ws_ping_interval_s or proto.silence_timeout_s / 2


def frame_silence_limit_s(proto: ExchangeProtocol | type[ExchangeProtocol],
                          pong_timeout_s: float = PONG_TIMEOUT_S) -> float:
    """No frame at all for this long means the venue is gone, even if its websocket layer still
    answers pings: a venue with app-level pings must have answered one (ping period + pong
    deadline); any other venue gets its silence timeout."""
    if proto.ping_interval_s:
        return min(proto.silence_timeout_s, proto.ping_interval_s + pong_timeout_s)
    return proto.silence_timeout_s


def dead_socket_bound_s(proto: ExchangeProtocol | type[ExchangeProtocol],
                        pong_timeout_s: float = PONG_TIMEOUT_S) -> float:
    """At most this long after its last frame, a dead socket of this venue is detected (a dead
    TCP connection: the websocket probe; a venue whose app hangs: the frame silence limit)."""
    return frame_silence_limit_s(proto, pong_timeout_s)


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
    """Live counters of one venue, read by the status reporter and the end-of-run summary."""

    venue: str
    connected: bool = False
    conn_id: int = 0
    messages: int = 0
    bytes: int = 0
    last_frame_ns: int | None = None
    reconnects: int = 0
    gaps: int = 0
    decode_errors: int = 0
    plugin_errors: int = 0
    last_disconnect: str = ""
    #: ``subscribed`` rows: subscriptions the venue accepted
    subscribed: int = 0
    #: ``subscribe_error`` rows: subscriptions the venue refused for good
    subscribe_errors: int = 0
    #: ``subscribe_retry`` rows: refusals for a transient reason, retried later
    subscribe_retries: int = 0
    #: market data events (tob, l2, trades) the venue's frames produced
    data_events: int = 0
    last_subscribe_error: str = ""
    resyncs: int = 0
    #: time spent connected, closed connections only (see :meth:`connected_ns`)
    connected_total_ns: int = 0
    connected_since_ns: int | None = None

    @property
    def ever_subscribed(self) -> bool:
        return self.subscribed > 0

    @property
    def delivered_data(self) -> bool:
        """Whether this venue ever delivered market data (tob, l2 or trades) in this run."""
        return self.data_events > 0

    def connected_ns(self, now_ns: int) -> int:
        """Total time connected, the current connection included."""
        since = self.connected_since_ns
        return self.connected_total_ns + (now_ns - since if since is not None else 0)

    def count(self, events: Sequence[Event]) -> None:
        """Count a batch by walking it (the session lets the bus do this in its own walk)."""
        self.data_events += len(events)
        for e in events:
            if isinstance(e, Health):
                self.count_health(e)

    def count_health(self, e: Health) -> None:
        """Called by the bus for each health event this venue publishes, in the walk it makes
        anyway (the session adds the batch's length to ``data_events`` beforehand)."""
        self.data_events -= 1
        kind = e.event
        if kind in (HealthKind.GAP, HealthKind.CHECKSUM_MISMATCH, HealthKind.CROSSED):
            self.gaps += 1
        elif kind == HealthKind.DECODE_ERROR:
            self.decode_errors += 1
        elif kind == HealthKind.RESYNCED:
            self.resyncs += 1
        elif kind == HealthKind.SUBSCRIBED:
            self.subscribed += 1
        elif kind == HealthKind.SUBSCRIBE_ERROR:
            self.subscribe_errors += 1
            self.last_subscribe_error = f"{e.symbol or ''} {e.detail}".strip()
        elif kind == SUBSCRIBE_RETRY:
            self.subscribe_retries += 1


def leaves(exc: BaseException) -> list[BaseException]:
    """The leaf exceptions of a (nested) exception group."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for e in exc.exceptions for leaf in leaves(e)]
    return [exc]


def describe(exc: BaseException) -> str:
    """A one-line reason for a lost connection, close codes included."""
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(describe(e) for e in exc.exceptions)
    if isinstance(exc, ConnectionClosed):
        r = exc.reason
        if r is not None:
            return f"closed by peer: code={r.code} {r.name} {r.reason or ''}".rstrip()
        return "closed: the connection failed"
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
                 backoff: Backoff | None = None, pong_timeout_s: float = PONG_TIMEOUT_S,
                 connect_timeout_s: float = CONNECT_TIMEOUT_S,
                 rest_transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.proto = proto
        self.bus = bus
        self.url = url
        self.clock = clock or WallClock()
        self.stats = stats or VenueStats(proto.name)
        self.recorder = recorder or NullRecorder()
        self.connect = connect
        #: the REST calls' transport (None: the network; tests pass an in-memory one)
        self.rest_transport = rest_transport
        self.backoff = backoff or Backoff()
        self.pong_timeout_s = pong_timeout_s
        #: one deadline for the whole connect of an attempt (see the module docstring)
        self.connect_deadline_s = connect_timeout_s + proto.subscribe_timeout_s
        self._last_frame = 0.0
        self._last_pong = 0.0
        self._probing = False
        self._timer_target: int | None = None
        self._timer_wake = trio.Event()
        self._out: trio.MemorySendChannel[str] | None = None
        self._urgent: trio.MemorySendChannel[str] | None = None
        self._connect_scope: trio.CancelScope | None = None
        self._rest: RestCalls | None = None
        self._reported = False  # this attempt's loss is already recorded

    # -- public --------------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Connect, stream, reconnect; forever (until cancelled)."""
        if self.proto.lanes or self.proto.max_connection_age_s:  # several sockets at a time
            from core.connections import run_connections  # it builds on this module
            await run_connections(self, task_status=task_status)
            return
        task_status.started()
        attempt = 0
        name = self.proto.name
        try:
            while True:
                started = trio.current_time()
                self._reported = False
                try:
                    await self._connection()
                except* CONNECTION_ERRORS as group:
                    if not self._reported:
                        self._lost(describe(group))
                if trio.current_time() - started >= STABLE_CONNECTION_S:
                    attempt = 0
                delay = self.backoff.delay(attempt)
                attempt += 1
                self.stats.reconnects += 1
                log.warning("%s: %s; reconnecting in %.2f s (attempt %d)", name,
                            self.stats.last_disconnect or "connection ended", delay, attempt)
                await trio.sleep(delay)
        finally:
            if self.stats.connected:
                self._lost("stopped")
            log.debug("%s: stopped", name)

    # -- one connection ------------------------------------------------------------------------

    async def _connection(self) -> None:
        proto = self.proto
        phase = "websocket handshake"
        scope = self._connect_scope = trio.CancelScope(
            deadline=trio.current_time() + self.connect_deadline_s)
        with scope:
            async with self.connect(self.url, proto.max_message_bytes, proto.ws_headers) as ws:
                phase = "answer to the subscriptions"
                await self._connected(ws)
        if scope.cancelled_caught:
            raise ConnectTimeout(f"no {phase} within {self.connect_deadline_s:g} s")

    async def _connected(self, ws: WebSocketConnection) -> None:
        proto = self.proto
        self.stats.conn_id += 1
        self.stats.connected = True
        now = self.clock.now_ns()
        self.stats.connected_since_ns = now
        self._last_frame = self._last_pong = trio.current_time()
        self._probing = False
        self.recorder.opened(proto.name, self.stats.conn_id, self.url, now)
        self._publish([self._health(HealthKind.CONNECTED,
                                    f"{self.url} conn={self.stats.conn_id}", now)])
        self._publish(proto.connection_made(now))
        send_channel, receive_channel = trio.open_memory_channel[str](OUTBOX_FRAMES)
        urgent_send, urgent_receive = trio.open_memory_channel[str](OUTBOX_FRAMES)
        self._out, self._urgent = send_channel, urgent_send
        try:
            async with trio.open_nursery() as nursery, send_channel, urgent_send:
                nursery.start_soon(self._sender, ws, receive_channel, proto.max_sends_per_s)
                nursery.start_soon(self._sender, ws, urgent_receive, None)
                nursery.start_soon(self._timer)
                nursery.start_soon(self._liveness, ws, nursery)
                self._rest = RestCalls(proto, clock=self.clock, recorder=self.recorder,
                                       conn=self.stats.conn_id, deliver=self._deliver,
                                       transport=self.rest_transport)
                await nursery.start(self._rest.run)
                if not self._flush():  # nothing to subscribe: nothing to wait for
                    self._answered()
                await self._reader(ws)
        except* CONNECTION_ERRORS as group:
            self._lost(describe(group))  # before the socket is closed: books untrusted now
            raise

    async def _reader(self, ws: WebSocketConnection) -> None:
        proto, stats, clock = self.proto, self.stats, self.clock
        recorder = self.recorder
        while True:
            frame = await ws.get_message()
            recv_ns = clock.now_ns()
            self._last_frame = trio.current_time()
            stats.messages += 1
            stats.bytes += len(frame)
            stats.last_frame_ns = recv_ns
            recorder.received(proto.name, stats.conn_id, recv_ns, frame)
            events = proto.receive(frame, recv_ns)
            if events:
                self._publish(events)
                if self._connect_scope is not None and _answers(events):
                    self._answered()
            self._flush()
            target = self._timer_target
            deadline = proto.next_deadline()
            if deadline is not None and (target is None or deadline < target):
                self._timer_wake.set()

    def _answered(self) -> None:
        """The venue answered the subscriptions: the connect deadline no longer applies."""
        if self._connect_scope is not None:
            self._connect_scope.deadline = math.inf
            self._connect_scope = None

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

    async def _liveness(self, ws: WebSocketConnection, nursery: trio.Nursery) -> None:
        """Declare the socket dead when frames stop for longer than the venue allows, or when a
        websocket ping sent after a quiet spell gets neither its pong nor any frame in time."""
        interval = liveness_interval_s(self.proto)
        pong_s = self.pong_timeout_s
        frame_limit = frame_silence_limit_s(self.proto, pong_s)
        probe_sent: float | None = None
        while True:
            now = trio.current_time()
            last_frame = self._last_frame
            alive = max(last_frame, self._last_pong)
            if probe_sent is not None and alive >= probe_sent:
                probe_sent = None  # answered
            silent = now - last_frame
            if silent >= frame_limit:
                raise SilenceTimeout(f"no frame for {silent:.1f} s (limit {frame_limit:g} s)")
            if probe_sent is not None and now >= probe_sent + pong_s:
                raise SilenceTimeout(f"no frame for {silent:.1f} s and no pong within "
                                     f"{pong_s:g} s of a websocket ping")
            if probe_sent is None and now - alive >= interval:
                probe_sent = now
                if not self._probing:
                    nursery.start_soon(self._probe, ws)
            wake = last_frame + frame_limit
            wake = min(wake, probe_sent + pong_s if probe_sent is not None else alive + interval)
            await trio.sleep_until(max(wake, now + TIMER_MIN_WAIT_S))

    async def _probe(self, ws: WebSocketConnection) -> None:
        self._probing = True
        try:
            await ws.ping()
            self._last_pong = trio.current_time()
        finally:
            self._probing = False

    # -- helpers -------------------------------------------------------------------------------

    def _flush(self) -> int:
        if self._rest is not None:
            self._rest.submit(self.proto.rest_requests_to_send())
        sent = 0
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
                sent += 1
        return sent

    def _deliver(self, events: list[Event]) -> None:
        """A REST response's events: publish, send what the protocol queued, re-arm the timer."""
        self._publish(events)
        self._flush()
        deadline = self.proto.next_deadline()
        if deadline is not None and (self._timer_target is None or deadline < self._timer_target):
            self._timer_wake.set()

    def _publish(self, events: Sequence[Event]) -> None:
        if events:
            self.stats.data_events += len(events)  # count_health takes the health ones back
            self.bus.publish(events, self.stats.count_health)

    def _health(self, kind: str, detail: str, ts: int | None = None) -> Health:
        return Health(exchange=self.proto.name, ts_local=self.clock.now_ns() if ts is None else ts,
                      symbol=None, event=kind, detail=detail)

    def _lost(self, reason: str) -> None:
        """Record the end of this attempt once: the ``disconnected`` row, and every book
        untrusted (``connection_lost``)."""
        if self._reported:
            return
        self._reported = True
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
        self._publish([self._health(HealthKind.DISCONNECTED, reason, now)])
        self._publish(self.proto.connection_lost(now))


def _answers(events: Sequence[Event]) -> bool:
    """Whether these events answer the subscriptions (an ack, a refusal, or data)."""
    return any(not isinstance(e, Health) or e.event in ANSWERS for e in events)
