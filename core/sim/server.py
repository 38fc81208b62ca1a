"""The one generic trio server behind every fake venue: websockets over any trio stream.

:class:`FakeVenue` carries one :class:`core.sim.speaker.VenueSpeaker`: per client stream it runs
the websocket server handshake (``wsproto``), feeds client messages to a speaker session, sends
what the session answers, the market events the session turns into frames, and the session's
timed frames (server pings, heartbeats). The websocket layer is written here rather than taken
from a server library so that a fault plan (:mod:`core.testing.faults`) can do what a hostile
venue does: never answer the handshake, close the TCP connection without a close frame, stall,
stop answering pings, send frames no library would send (invalid UTF-8 text), oversized ones, or
drop, repeat and reorder data frames.

:class:`Simulation` runs a :class:`core.sim.market.Market` (the pump hands each event to its
venue) and serves its venues either on loopback TCP (:meth:`Simulation.serve_tcp`, websocket
and REST, for ``--simulate``) or over in-memory streams (:meth:`Simulation.connect`, the session's
``connect`` seam, and :meth:`Simulation.rest_transport`, the REST calls' transport, for tests on
trio's mock clock).

A venue with several websocket endpoints is served on one port: the handshake's path is handed
to the speaker (:meth:`core.sim.speaker.VenueSpeaker.open`), and a path the speaker does not
serve is refused with HTTP 404. Sessions may ask for websocket-level pings (``ws_ping``); the
client's pongs are counted per connection.

Every per-connection buffer is bounded: a client that does not read is disconnected (code 1008)
rather than buffered without limit. Loopback only: nothing here opens a connection outward.
"""

from __future__ import annotations

import logging
import socket
import struct
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Protocol, cast
from urllib.parse import urlsplit

import httpx
import trio
import trio.testing
from trio_websocket import WebSocketConnection
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    Pong,
    RejectConnection,
    Request,
    TextMessage,
)
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from core.clock import TrioClock
from core.sim.market import Market, MarketEvent, Script
from core.sim.speaker import DATA_KINDS, WS_PING, Out, RestReply, SpeakerSession, VenueSpeaker
from core.testing.fake_servers import serve_http

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
RECEIVE_BYTES = 65536
OUTBOX_FRAMES = 50_000  # frames queued for one client before it counts as not reading
KEEP_RECEIVED = 10_000  # client frames a session keeps for tests to read
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
SIM_DOMAIN = "sim"  # memory-stream URLs look like ws://bybit.sim/v5/public/linear


# -- what a fault plan can make a connection do -----------------------------------------------


@dataclass(frozen=True, slots=True)
class RawFrame:
    """Bytes written to the socket as they are (a hand-made websocket frame)."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Abort:
    """Close the TCP connection without a websocket close frame."""


@dataclass(frozen=True, slots=True)
class Stall:
    """Stop reading and writing this connection; keep it open."""


@dataclass(frozen=True, slots=True)
class Mute:
    """Stop answering pings (websocket and app-level) and stop sending; keep reading."""


Action = Out | RawFrame | Abort | Stall | Mute


class ConnectionFaults(Protocol):
    """What a fault plan decides for one venue (see :mod:`core.testing.faults`)."""

    def hold_handshake(self, conn: int, path: str = "/", path_index: int = 0) -> bool:
        """Never answer this connection's websocket handshake (``conn``: the venue's connection
        number; ``path_index``: how many connections to ``path`` came before it)."""
        ...

    def on_out(self, conn: int, out: Out, session: SpeakerSession) -> list[Action]:
        """What to do instead of sending ``out`` on connection ``conn`` (``[out]``: send it)."""
        ...


class NoFaults:
    def hold_handshake(self, conn: int, path: str = "/", path_index: int = 0) -> bool:
        return False

    def on_out(self, conn: int, out: Out, session: SpeakerSession) -> list[Action]:
        return [out]


@dataclass
class ConnectionRecord:
    """What happened on one client connection (tests read these)."""

    index: int
    opened_ns: int = 0  # TCP (or memory stream) accepted
    path: str = ""  # the websocket path of the handshake
    ended_ns: int | None = None  # the server stopped serving it
    accepted: bool = False
    client_closed: bool = False  # the client sent a close frame or closed TCP
    eof: bool = False  # the client's side of TCP is closed
    server_closed: str = ""  # why the server ended it, if it did
    frames_out: int = 0  # messages sent
    pings_out: int = 0  # websocket pings sent (``ws_ping``)
    pongs_in: int = 0  # websocket pongs received
    data_out: dict[str, int] = field(default_factory=dict)  # symbol -> data frames sent
    ended: trio.Event = field(default_factory=trio.Event)


class _Closed(Exception):
    """This connection is over."""


class FakeVenue:
    """One fake venue: a speaker served to any number of client streams."""

    def __init__(self, speaker: VenueSpeaker, clock: Callable[[], int], *,
                 faults: ConnectionFaults | None = None,
                 max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
                 outbox_frames: int = OUTBOX_FRAMES) -> None:
        self.speaker = speaker
        self.name = speaker.name
        self.now_ns = clock
        self.faults: ConnectionFaults = faults or NoFaults()
        self.max_message_bytes = max_message_bytes
        self.outbox_frames = outbox_frames
        self.connections: list[ConnectionRecord] = []
        self._live: list[_Connection] = []
        self.connected = trio.Event()  # set at the first accepted connection
        self.acks = 0  # subscription acknowledgements sent (``ack`` frames)
        self._acked = trio.Event()

    async def wait_acks(self, n: int) -> None:
        """Wait until this venue has acknowledged ``n`` subscription requests in all."""
        while self.acks < n:
            await self._acked.wait()

    def _ack(self) -> None:
        self.acks += 1
        self._acked.set()
        self._acked = trio.Event()

    def publish(self, event: MarketEvent) -> None:
        """A market event of this venue: every open connection's session gets it."""
        now = self.now_ns()
        self.speaker.observe(event)
        for conn in self._live:
            if conn.session is not None and not (conn.stalled or conn.muted):
                conn.queue(conn.session.market(event, now))

    async def serve_stream(self, stream: trio.abc.Stream) -> None:
        """Serve one client connection until either side ends it."""
        record = ConnectionRecord(len(self.connections), opened_ns=self.now_ns())
        self.connections.append(record)
        conn = _Connection(self, record, stream)
        self._live.append(conn)
        try:
            await conn.run()
        finally:
            self._live.remove(conn)
            record.ended_ns = self.now_ns()
            record.ended.set()
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(stream)

    async def serve_tcp(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED
                        ) -> None:
        """Listen on loopback; ``task_status.started`` gets ``ws://127.0.0.1:PORT/path``."""
        listeners = await trio.open_tcp_listeners(0, host=HOST)
        port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            await nursery.start(trio.serve_listeners, self.serve_stream, listeners)
            task_status.started(f"ws://{HOST}:{port}{self.speaker.path}")

    async def serve_rest(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED
                         ) -> None:
        """The venue's REST endpoint (instruments, server time, ...) on loopback; started with
        its base URL."""
        await serve_http(lambda target: self.speaker.rest_at(target, self.now_ns()),
                         task_status=task_status)


class _Connection:
    """One client stream: handshake, reader, writer and timer."""

    def __init__(self, venue: FakeVenue, record: ConnectionRecord,
                 stream: trio.abc.Stream) -> None:
        self.venue = venue
        self.record = record
        self.stream = stream
        self.ws = WSConnection(ConnectionType.SERVER)
        self.session: SpeakerSession | None = None
        self.send_lock = trio.Lock()
        self.out_send, self.out_receive = trio.open_memory_channel[Action](venue.outbox_frames)
        self.stalled = False
        self.muted = False
        self.timer_wake = trio.Event()
        self.timer_target: int | None = None
        self._parts: list[str | bytes | bytearray] = []
        self._size = 0

    async def run(self) -> None:
        try:
            async with trio.open_nursery() as nursery:
                self.nursery = nursery
                nursery.start_soon(self._writer)
                await self._reader()
                nursery.cancel_scope.cancel()
        except* (_Closed, trio.BrokenResourceError, trio.ClosedResourceError,
                 LocalProtocolError):
            pass

    # -- output ----------------------------------------------------------------------------------

    def queue(self, outs: Sequence[Out]) -> None:
        for out in outs:
            if out.kind == "ack":
                self.venue._ack()
            try:
                self.out_send.send_nowait(out)
            except trio.WouldBlock:
                self.record.server_closed = "client not reading (outbox full)"
                self.out_send = _Overflowed()  # type: ignore[assignment]
                self.nursery.cancel_scope.cancel()
                return
            except trio.ClosedResourceError:
                return
        if self.session is not None:
            deadline = self.session.next_deadline()
            target = self.timer_target
            if deadline is not None and (target is None or deadline < target):
                self.timer_wake.set()  # the session wants to be woken earlier than planned

    async def _writer(self) -> None:
        async for out in self.out_receive:
            assert isinstance(out, Out)
            actions = [out] if self.session is None else \
                self.venue.faults.on_out(self.record.index, out, self.session)
            for action in actions:
                await self._act(action)

    async def _act(self, action: Action) -> None:
        if self.stalled:
            await trio.sleep_forever()
        if isinstance(action, Stall):
            self.stalled = True
            self.record.server_closed = "stalled (fault)"
            await trio.sleep_forever()
        if isinstance(action, Mute):
            self.muted = True
            return
        if self.muted:
            return
        if isinstance(action, Abort):
            self.record.server_closed = "TCP closed without a close frame (fault)"
            _linger_zero(self.stream)
            await self.stream.aclose()
            raise _Closed
        if isinstance(action, RawFrame):
            await self._send_bytes(action.data)
            return
        if action.close is not None:
            code, reason = action.close
            self.record.server_closed = f"close {code} {reason}"
            await self._send_bytes(self.ws.send(CloseConnection(code=code, reason=reason)))
            raise _Closed
        if action.frame is None:
            return
        if action.kind == WS_PING:
            payload = action.frame.encode() if isinstance(action.frame, str) else action.frame
            await self._send_bytes(self.ws.send(Ping(payload=payload)))
            self.record.pings_out += 1
            return
        if isinstance(action.frame, str):
            data = self.ws.send(TextMessage(data=action.frame))
        else:
            data = self.ws.send(BytesMessage(data=action.frame))
        await self._send_bytes(data)
        self.record.frames_out += 1
        if action.kind in DATA_KINDS and action.symbol is not None:
            self.record.data_out[action.symbol] = self.record.data_out.get(action.symbol, 0) + 1

    async def _send_bytes(self, data: bytes) -> None:
        async with self.send_lock:
            await self.stream.send_all(data)

    # -- input ----------------------------------------------------------------------------------

    async def _hold_if_stalled(self) -> None:
        """A stalled connection reads nothing more (its client's frames pile up unread)."""
        if self.stalled:
            await trio.sleep_forever()

    async def _reader(self) -> None:
        while True:
            await self._hold_if_stalled()
            data = await self.stream.receive_some(RECEIVE_BYTES)
            await self._hold_if_stalled()
            if not data:
                self.record.eof = True
                self.record.client_closed = True
                return
            try:
                self.ws.receive_data(bytes(data))
                for event in self.ws.events():
                    await self._event(event)
            except RemoteProtocolError as exc:
                self.record.server_closed = f"client protocol error: {exc}"
                return

    async def _event(self, event: object) -> None:
        venue = self.venue
        if isinstance(event, Request):
            path = event.target.split("?", 1)[0] or "/"
            self.record.path = path
            path_index = sum(1 for c in venue.connections[:self.record.index] if c.path == path)
            if venue.faults.hold_handshake(self.record.index, path, path_index):
                self.record.server_closed = "handshake never answered (fault)"
                return
            if not venue.speaker.serves(path):
                self.record.server_closed = f"no endpoint at {path} (404)"
                await self._send_bytes(self.ws.send(RejectConnection(status_code=404)))
                raise _Closed
            await self._send_bytes(self.ws.send(AcceptConnection()))
            self.record.accepted = True
            now = venue.now_ns()
            self.session = venue.speaker.open(now, path)
            venue.connected.set()
            self.nursery.start_soon(self._timer)
            self.queue(self.session.opened(now))
        elif isinstance(event, (TextMessage, BytesMessage)):
            self._parts.append(event.data)
            self._size += len(event.data)
            if self._size > venue.max_message_bytes:
                await self._send_bytes(self.ws.send(CloseConnection(code=1009,
                                                                     reason="message too big")))
                raise _Closed
            if event.message_finished:
                parts, self._parts, self._size = self._parts, [], 0
                message: str | bytes = "".join(cast("list[str]", parts)) \
                    if isinstance(event, TextMessage) else b"".join(cast("list[bytes]", parts))
                if self.session is not None and not self.stalled:
                    received = self.session.received
                    received.append(message)
                    if len(received) > KEEP_RECEIVED:  # bounded: the latest client frames
                        del received[:KEEP_RECEIVED // 2]
                    self.queue(self.session.receive(message, venue.now_ns()))
        elif isinstance(event, Ping):
            if not self.muted:
                await self._send_bytes(self.ws.send(event.response()))
        elif isinstance(event, Pong):
            self.record.pongs_in += 1
        elif isinstance(event, CloseConnection):
            self.record.client_closed = True
            with suppress(LocalProtocolError):
                await self._send_bytes(self.ws.send(event.response()))
            raise _Closed

    async def _timer(self) -> None:
        assert self.session is not None
        session, now_ns = self.session, self.venue.now_ns
        while True:
            deadline = session.next_deadline()
            self.timer_wake = trio.Event()
            self.timer_target = deadline
            if deadline is None:
                await self.timer_wake.wait()
                continue
            wait = (deadline - now_ns()) / 1e9
            if wait > 0:
                with trio.move_on_after(wait):
                    await self.timer_wake.wait()
                continue
            self.queue(session.on_deadline(now_ns()))
            after = session.next_deadline()
            if after is not None and after <= now_ns():
                await trio.sleep(0.001)  # a session that did not move its deadline


class _RestTransport(httpx.AsyncBaseTransport):
    """REST calls to ``http://VENUE.sim/...`` answered by that venue's speaker, in memory."""

    def __init__(self, speakers: Mapping[str, VenueSpeaker]) -> None:
        self.speakers = speakers

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await trio.lowlevel.checkpoint()
        host = request.url.host.removesuffix(f".{SIM_DOMAIN}")
        speaker = self.speakers.get(host)
        target = request.url.raw_path.decode("ascii")
        answer = speaker.rest(target) if speaker is not None else None
        status, body = (404, b"not found") if answer is None else \
            (answer.status, answer.body) if isinstance(answer, RestReply) else (200, answer)
        return httpx.Response(status, stream=httpx.ByteStream(body),
                              headers={"content-length": str(len(body))})


class _Overflowed:
    def send_nowait(self, value: object) -> None:
        raise trio.ClosedResourceError


def _linger_zero(stream: trio.abc.Stream) -> None:
    """Make closing a TCP socket send RST (an abrupt close), where there is a socket."""
    sock = getattr(stream, "socket", None)
    if sock is not None:
        with suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


# -- the whole simulation -----------------------------------------------------------------------


class Simulation:
    """A market and its fake venues, pumped in time order.

    ``speakers`` maps venue names to speakers built on ``market``; ``faults`` optionally maps a
    venue to its fault plan. ``clock`` stamps frames and drives the market (a
    :class:`core.clock.TrioClock` by default, so it runs on trio's mock clock in tests).
    """

    def __init__(self, market: Market, speakers: Mapping[str, VenueSpeaker], *,
                 clock: TrioClock | None = None,
                 faults: Mapping[str, ConnectionFaults] | None = None,
                 max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> None:
        self.market = market
        self.clock = clock
        self.speakers = dict(speakers)
        self.venues: dict[str, FakeVenue] = {
            name: FakeVenue(sp, self._now, faults=(faults or {}).get(name),
                            max_message_bytes=max_message_bytes)
            for name, sp in speakers.items()}
        self._nursery: trio.Nursery | None = None
        self._kick = trio.Event()
        self.events = 0  # market events pumped
        for name, plan in (faults or {}).items():
            arm = getattr(plan, "arm", None)
            if callable(arm):
                arm(self.speakers[name])  # the venue-level faults (subscription refusals)
            stamp = getattr(plan, "clock", None)
            if callable(stamp):
                stamp(self._now)  # fault plans stamp when each fault fired

    def _now(self) -> int:
        assert self.clock is not None, "Simulation.run has not started"
        return self.clock.now_ns()

    def kick(self) -> None:
        """Processes were added or the market changed: re-read the next event time."""
        self._kick.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """Pump market events to the venues until cancelled. Start it with ``nursery.start``."""
        if self.clock is None:
            self.clock = TrioClock()
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await self._pump()

    async def _pump(self) -> None:
        market, venues = self.market, self.venues
        while True:
            self._kick = trio.Event()
            when = market.next_event_ns()
            if when is None:
                await self._kick.wait()
                continue
            wait = (when - self._now()) / 1e9
            if wait > 0:
                with trio.move_on_after(wait):
                    await self._kick.wait()
                continue
            while (events := market.fire_next(self._now())) is not None:
                for event in events:  # published before the next process moves the books
                    self.events += 1
                    venue = venues.get(event.venue)
                    if venue is not None:
                        venue.publish(event)

    # -- serving ------------------------------------------------------------------------------

    async def serve_tcp(self, *, rest: bool = True,
                        task_status: trio.TaskStatus[dict[str, tuple[str, str | None]]]
                        = trio.TASK_STATUS_IGNORED) -> None:
        """Every venue on loopback TCP; started with ``{venue: (ws URL, REST base URL)}``."""
        async with trio.open_nursery() as nursery:
            urls: dict[str, tuple[str, str | None]] = {}
            for name, venue in self.venues.items():
                ws_url = await nursery.start(venue.serve_tcp)
                rest_url = await nursery.start(venue.serve_rest) if rest else None
                urls[name] = (ws_url, rest_url)
            task_status.started(urls)

    async def play(self, script: Script, *, after_acks: int = 1, delay_s: float = 0.0) -> None:
        """Start ``script`` once its venue has acknowledged ``after_acks`` subscriptions (plus
        ``delay_s``); a test's way to play steps to a client that is listening."""
        await self.venues[script.venue].wait_acks(after_acks)
        if delay_s:
            await trio.sleep(delay_s)
        script.start(self._now())
        if script not in self.market.processes:
            self.market.add_process(script)
        self.kick()

    def url(self, venue: str) -> str:
        """The in-memory URL of a venue, for :meth:`connect`."""
        return f"ws://{venue}.{SIM_DOMAIN}{self.speakers[venue].path}"

    def rest_url(self, venue: str) -> str:
        """The in-memory REST base URL of a venue, for :meth:`rest_transport`."""
        return f"http://{venue}.{SIM_DOMAIN}"

    def rest_transport(self) -> httpx.AsyncBaseTransport:
        """An httpx transport answering REST calls to :meth:`rest_url` from the speakers,
        without sockets (the session's ``rest_transport`` seam; works on trio's mock clock)."""
        return _RestTransport(self.speakers)

    @asynccontextmanager
    async def connect(self, url: str, max_message_bytes: int,
                      headers: Sequence[tuple[str, str]] = ()
                      ) -> AsyncIterator[WebSocketConnection]:
        """The session's ``connect`` seam over in-memory streams: the fake venue named by the
        URL's host (``ws://bybit.sim/...``) serves the other end."""
        from core.session import open_websocket_over

        parts = urlsplit(url)
        host = parts.hostname or ""
        name = host.removesuffix(f".{SIM_DOMAIN}")
        if name not in self.venues or self._nursery is None:
            raise OSError(f"no simulated venue at {url}")
        client, server = trio.testing.memory_stream_pair()
        self._nursery.start_soon(self.venues[name].serve_stream, server)
        resource = parts.path or "/"
        async with open_websocket_over(client, host, resource, max_message_bytes,
                                       headers) as ws:
            yield ws


__all__ = ["Abort", "Action", "ConnectionFaults", "ConnectionRecord", "FakeVenue", "Mute",
           "RawFrame", "Simulation", "Stall"]
