"""The sans-IO contract every venue plugin implements, and the shared machinery around it.

A venue protocol is pure protocol code. The generic trio session (:mod:`core.session`) owns the
socket, the timers, reconnects and backoff; it drives a protocol object through these calls::

    proto = BybitProtocol(ProtocolConfig(symbols=("BTC-USDT",), channels=("tob", "l2")))
    events = proto.connection_made(now_ns)      # per-connection state reset
    send(proto.frames_to_send())                # subscribe frames (paced by the session)
    events = proto.receive(frame, recv_ns)      # text or bytes in, normalized events out
    send(proto.urgent_frames_to_send())         # pongs: unpaced, ahead of the queue
    send(proto.frames_to_send())                # resubscribe, pings, ... (paced)
    when = proto.next_deadline()                # ns on the same clock as recv_ns, or None
    events = proto.on_deadline(now_ns)          # app-level ping due, snapshot overdue, ...
    events = proto.connection_lost(now_ns)      # every book untrusted until the next snapshot

Subclasses set the class attributes and implement :meth:`subscribe` and :meth:`handle`.
:meth:`receive` is the template around ``handle``: it inflates compressed frames (bounded by
``max_inflated_bytes``) and turns *any* exception raised while the plugin handles a frame
(malformed JSON, a wrong type, a value outside its range, a bug tripped by odd input) into that
frame's counted ``decode_error`` health event, logged once per kind with a sample. The frame is
dropped; if the plugin had announced it as a book frame (:meth:`book_frame`), that symbol's book
is invalidated (a ``gap`` row) and resynced, because an update it never applied may be missing
from it. Exceptions from the other calls (``on_deadline``, ``connection_made``, ...) are plugin
bugs: they propagate, and the supervisor records them and restarts the connector.

After every frame and every deadline the base class drains the keepers' resync requests into
:meth:`resync`, so a plugin cannot forget to act on a gap.

Optional, for venues that need them (see ``plugins/README.md``):

* **REST calls** (a book snapshot, later funding rates or server time): the plugin queues a GET
  with :meth:`request_rest`; the session (:mod:`core.rest_calls`) drains
  :meth:`rest_requests_to_send`, performs it against the venue's REST base URL with a timeout, a
  body-size bound and a bounded number in flight, and hands the outcome back through
  :meth:`rest_response` (wrapped like :meth:`receive`: whatever :meth:`handle_rest` raises is a
  ``decode_error``) as a :class:`RestResponse`. Failures come back as a response with ``error``
  set; the plugin decides whether and when to retry (through its deadlines).
* **Lanes**: a venue that serves some channels on another websocket endpoint declares
  :attr:`lanes`; each lane gets its own connection and protocol instance (:meth:`lane_plan`).
* **Clock offsets**: a venue that declares :attr:`server_time_path` (and
  :meth:`parse_server_time`) has its clock measured against ours NTP-style when a connection
  opens and every ``config.clock_sync_s`` seconds (:mod:`core.clock_sync`); each burst of
  samples is a ``clock_offset`` health row. The base class schedules the samples through its
  deadlines and the REST seam above, so plugins only declare the endpoint.
* **Connection age limit**: :attr:`max_connection_age_s` makes the session open a replacement
  connection shortly before the venue cuts the old one, and switch without a gap
  (:mod:`core.connections`).

Rules for plugins: no trio, no sockets, no clock reads (time only arrives as arguments), no
logging of whole payloads on the hot path.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import msgspec

from core.book import BookKeeper
from core.clock_sync import KEY_PREFIX as CLOCK_KEY
from core.clock_sync import ClockSampler, Estimate, estimate_detail
from core.codec import DEFAULT_MAX_INFLATED_BYTES, S_NS, FrameError, inflate
from core.options import OptionSpec, option_problems, option_value
from core.schema import Event, Health, HealthKind
from core.subscriptions import RetryQueue

log = logging.getLogger(__name__)

MAX_SAMPLE_CHARS = 300


class Instrument(msgspec.Struct, frozen=True, kw_only=True):
    """Static facts about one tradable symbol, from the venue's instruments endpoint."""

    symbol: str  # canonical BASE-QUOTE
    native: str  # the venue's own name
    contract_size: float = 1.0  # base units per contract (1.0 where sizes already are base units)
    tick_size: float | None = None
    lot_size: float | None = None
    status: str = "trading"
    #: seconds between two fundings of a perpetual, where the instrument list says
    funding_interval_s: int | None = None
    #: a funding time on the venue's schedule (UTC ns), where the instrument list says
    next_funding_ns: int | None = None


class ProtocolConfig(msgspec.Struct, frozen=True, kw_only=True):
    """What the user asked of one venue."""

    symbols: tuple[str, ...]
    channels: tuple[str, ...]
    instruments: Mapping[str, Instrument] = msgspec.field(default_factory=dict)
    options: Mapping[str, str] = msgspec.field(default_factory=dict)
    #: the REST base URL for plugin REST calls (``--endpoint VENUE.rest=URL``); None: the
    #: protocol's ``default_rest_url``
    rest_url: str | None = None
    #: seconds between clock-offset bursts against the venue's server time (0: none); see
    #: :mod:`core.clock_sync`
    clock_sync_s: float = 0.0


class RestRequest(msgspec.Struct, frozen=True, kw_only=True):
    """An HTTP GET a plugin wants performed (see :meth:`ExchangeProtocol.request_rest`)."""

    key: str  # the plugin's own name for the call; comes back with the response
    path: str  # path and query under the venue's REST base URL


class RestResponse(msgspec.Struct, frozen=True, kw_only=True):
    """The outcome of a :class:`RestRequest`, handed to :meth:`ExchangeProtocol.handle_rest`."""

    key: str  # the request's key
    status: int  # the HTTP status; 0 when no response came
    body: bytes  # the body (bounded by ``max_rest_body_bytes``); empty when the call failed
    sent_ns: int  # when the request was sent (with ``recv_ns``: a round trip, a clock offset)
    recv_ns: int  # when the outcome was known; the ``ts_local`` of the events it produces
    error: str | None = None  # why the call failed (timeout, connection, size, status), or None


class Lane(msgspec.Struct, frozen=True, kw_only=True):
    """One websocket endpoint of a venue that spreads its channels over several."""

    name: str  # short name, used in logs and raw recordings ("public")
    path: str  # appended to the venue's websocket URL ("/public/ws")
    channels: frozenset[str]  # the channels this endpoint serves


class SymbolError(ValueError):
    """A symbol that the venue does not list, or that is not canonical ``BASE-QUOTE``."""


class ExchangeProtocol:
    """Base class of venue protocols. See the module docstring for the call sequence."""

    #: plugin name, used in ``--plugins``, tables and logs
    name: ClassVar[str]
    #: channels this venue serves, a subset of ``core.schema.CHANNELS``
    channels: ClassVar[frozenset[str]]
    #: default websocket URL (replaced with ``--endpoint NAME=URL``)
    default_url: ClassVar[str]
    #: default REST base URL for instruments (replaced with ``--endpoint NAME.rest=URL``)
    default_rest_url: ClassVar[str | None] = None
    #: how binary frames are compressed: "gzip", "deflate" or None
    compression: ClassVar[str | None] = None
    #: the largest websocket message the session accepts for this venue
    max_message_bytes: ClassVar[int] = 4 * 1024 * 1024
    #: the most one compressed frame may inflate to; past it the frame is a ``decode_error``
    max_inflated_bytes: ClassVar[int] = DEFAULT_MAX_INFLATED_BYTES
    #: no frame at all for this long (pongs included) means the socket is dead
    silence_timeout_s: ClassVar[float] = 30.0
    #: the client's app-level ping period (None: the venue needs none); see :meth:`ping_frame`
    ping_interval_s: ClassVar[float | None] = None
    #: send protocol-level websocket pings this often (None: the venue's app-level ping suffices)
    ws_ping_interval_s: ClassVar[float | None] = None
    #: extra HTTP headers for the websocket handshake
    ws_headers: ClassVar[tuple[tuple[str, str], ...]] = ()
    #: the venue's limit on client messages per second per connection (None: no pacing)
    max_sends_per_s: ClassVar[float | None] = None
    #: how long the venue may take to answer the subscriptions of a new connection (the session
    #: adds it to its connect deadline)
    subscribe_timeout_s: ClassVar[float] = 10.0
    #: sizes cannot be converted without instrument metadata (contract sizes)
    requires_instruments: ClassVar[bool] = False
    #: one line for ``--list-plugins``
    description: ClassVar[str] = ""
    #: the ``--opt`` keys this venue accepts, with their defaults and valid values
    options: ClassVar[Mapping[str, OptionSpec]] = {}
    #: the venue closes connections older than this (None: no limit); the session replaces a
    #: connection shortly before, overlapping old and new so that no update is lost
    max_connection_age_s: ClassVar[float | None] = None
    #: how long before that limit the replacement starts (None: 10 minutes, at most a quarter
    #: of the limit)
    handover_lead_s: ClassVar[float | None] = None
    #: separate websocket endpoints per group of channels (empty: one socket at the URL)
    lanes: ClassVar[tuple[Lane, ...]] = ()
    #: plugin REST calls: the most one response body may hold (past it the call fails), the
    #: time one call may take, and how many may be in flight at once per connection
    max_rest_body_bytes: ClassVar[int] = 8 * 1024 * 1024
    rest_timeout_s: ClassVar[float] = 10.0
    max_rest_in_flight: ClassVar[int] = 2
    #: path (with query) of the venue's REST server-time endpoint, for clock offsets (None:
    #: the venue has none); see :meth:`parse_server_time`
    server_time_path: ClassVar[str | None] = None

    def __init__(self, config: ProtocolConfig) -> None:
        problems = option_problems(self.name, self.options, config.options)
        if problems:  # a protocol built directly (tests, replay) is held to the CLI's rules
            raise ValueError("; ".join(problems))
        self.config = config
        self._outbox: list[str] = []
        self._urgent: list[str] = []
        self.decode_errors: dict[str, int] = {}
        self.now_ns = 0  # time of the last call, for events created deep inside handlers
        #: the plugin's books; their snapshot deadlines and disconnects are handled here
        self.keepers: list[BookKeeper] = []
        #: requests the venue refused for now (a plugin that retries sets a queue and implements
        #: :meth:`resubscribe`); their deadlines are handled here
        self.retry: RetryQueue[Any] | None = None
        self._next_ping_ns: int | None = None
        #: the book the frame being handled updates, if the plugin said so (see book_frame)
        self._frame_book: tuple[BookKeeper, str] | None = None
        self._rest: list[RestRequest] = []
        self._clock: ClockSampler | None = None
        if config.clock_sync_s > 0 and self.server_time_path:
            self._clock = ClockSampler(self.server_time_path, config.clock_sync_s)

    # -- symbols ----------------------------------------------------------------------------

    @classmethod
    def to_native(cls, symbol: str) -> str:
        """Canonical ``BTC-USDT`` to the venue's name; default: ``BTCUSDT``."""
        return symbol.replace("-", "")

    @classmethod
    def to_canonical(cls, native: str) -> str:
        """The venue's name to canonical. Override where the default guess is not exact."""
        return native

    # -- options ------------------------------------------------------------------------------

    def option(self, key: str) -> str:
        """The value of a declared option (see :attr:`options`); ValueError when it is invalid."""
        return option_value(self.name, self.options, self.config.options, key)

    # -- instruments (optional; pure request/parse, the session does the HTTP) -----------------

    @classmethod
    def instruments_path(cls) -> str | None:
        """Path (with query) of the REST instruments endpoint under the REST base URL."""
        return None

    @classmethod
    def parse_instruments(cls, body: bytes) -> dict[str, Instrument]:
        """Parse the instruments endpoint's body into canonical symbol -> Instrument."""
        raise NotImplementedError

    @classmethod
    def parse_server_time(cls, body: bytes) -> int:
        """The venue's time (UTC ns) in the body of :attr:`server_time_path`."""
        raise NotImplementedError

    def instrument(self, symbol: str) -> Instrument | None:
        return self.config.instruments.get(symbol)

    def contract_size(self, symbol: str) -> float:
        inst = self.config.instruments.get(symbol)
        return inst.contract_size if inst is not None else 1.0

    # -- lanes ----------------------------------------------------------------------------------

    @classmethod
    def lane_plan(cls, config: ProtocolConfig) -> list[tuple[Lane, ProtocolConfig]]:
        """The connections one connection of this venue consists of: each lane that serves a
        requested channel, with the config of its own protocol instance (only its channels).
        A venue without :attr:`lanes` is one unnamed lane with the whole config."""
        if not cls.lanes:
            return [(Lane(name="", path="", channels=frozenset(config.channels)), config)]
        plan: list[tuple[Lane, ProtocolConfig]] = []
        for lane in cls.lanes:
            mine = tuple(c for c in config.channels if c in lane.channels)
            if mine:  # (one lane measures the venue's clock: the first)
                plan.append((lane, msgspec.structs.replace(
                    config, channels=mine, clock_sync_s=0.0 if plan else config.clock_sync_s)))
        return plan

    # -- session-facing calls ------------------------------------------------------------------

    def connection_made(self, now_ns: int) -> list[Event]:
        """A new connection is open: reset per-connection state and queue subscribe frames."""
        self.now_ns = now_ns
        self._outbox.clear()
        self._urgent.clear()
        self._rest.clear()
        self._outbox.extend(self.subscribe(now_ns))
        if self._clock is not None:
            self._clock.start(now_ns)
        if self.ping_interval_s:
            self._next_ping_ns = now_ns + int(self.ping_interval_s * S_NS)
        return []

    def receive(self, frame: str | bytes, recv_ns: int) -> list[Event]:
        """One websocket message in, normalized events out (replies go to the outbox)."""
        self.now_ns = recv_ns
        self._frame_book = None
        payload: str | bytes = frame
        if type(frame) is bytes and self.compression is not None:
            try:
                payload = inflate(frame, self.compression, self.max_inflated_bytes)
            except FrameError as exc:
                return [self.decode_error("inflate", frame, exc, recv_ns)]
        try:
            events = self.handle(payload, recv_ns)
        # Whatever handling one frame raises is that frame's fault, not the connection's: the
        # frame becomes a decode_error and the connector keeps running.
        except Exception as exc:
            events = self._reject(payload, exc, recv_ns)
        for keeper in self.keepers:  # (the resync drain, inlined: it runs after every frame)
            if keeper.pending_resyncs:
                self._drain_resyncs(recv_ns)
                break
        return events

    def _reject(self, payload: str | bytes, exc: Exception, recv_ns: int) -> list[Event]:
        kind = type(exc).__name__
        events: list[Event] = [self.decode_error(kind, payload, exc, recv_ns)]
        if self._frame_book is not None:
            keeper, symbol = self._frame_book
            self._frame_book = None
            events += keeper.invalidate(symbol, HealthKind.GAP,
                                        f"book frame dropped ({kind}); resyncing", recv_ns)
        return events

    def _drain_resyncs(self, now_ns: int) -> None:
        for keeper in self.keepers:
            if keeper.pending_resyncs:
                self.resync(keeper, keeper.take_resyncs(), now_ns)

    def rest_response(self, key: str, status: int, body: bytes, recv_ns: int,
                      error: str | None = None, *, sent_ns: int | None = None) -> list[Event]:
        """The outcome of a :meth:`request_rest` call, normalized events out. ``status`` is the
        HTTP status (0 when no response came), ``error`` says why the call failed (timeout,
        connection error, body too large, a status other than 200), else None; ``sent_ns`` when
        the request left (default ``recv_ns``). Like :meth:`receive`, anything
        :meth:`handle_rest` raises becomes a ``decode_error``."""
        self.now_ns = recv_ns
        self._frame_book = None
        response = RestResponse(key=key, status=status, body=body, recv_ns=recv_ns, error=error,
                                sent_ns=recv_ns if sent_ns is None else sent_ns)
        if key.startswith(CLOCK_KEY):
            return self._clock_sample(response)
        try:
            events = self.handle_rest(response)
        except Exception as exc:  # the response's fault, never the connection's
            events = self._reject(body, exc, recv_ns)
        self._drain_resyncs(recv_ns)
        return events

    def _clock_sample(self, r: RestResponse) -> list[Event]:
        """A server-time sample: the next one queued, the burst's row once it is complete."""
        events: list[Event] = []
        server_ns: int | None = None
        error = r.error
        if error is None:
            try:
                server_ns = self.parse_server_time(r.body)
            except Exception as exc:  # the body's fault: a decode_error, the sample failed
                events.append(self.decode_error("server_time", r.body, exc, r.recv_ns))
                error = f"{type(exc).__name__}: {exc}"
        clock = self._clock
        if clock is None:  # (a replay of a run whose settings differ: the rows still follow)
            assert self.server_time_path is not None
            clock = self._clock = ClockSampler(self.server_time_path, 3600.0)
        nxt, result = clock.answer(r.key, r.sent_ns, r.recv_ns, server_ns, error)
        if nxt is not None:
            self.request_rest(*nxt)
        if isinstance(result, Estimate):
            events.append(self.health(HealthKind.CLOCK_OFFSET,
                                      estimate_detail(result, clock.path), ts_local=r.recv_ns))
        elif result:
            events.append(self.health(
                HealthKind.CLOCK_OFFSET, f"no estimate: {len(result)} samples failed; last: "
                f"{result[-1]}"[:500] + f" path={clock.path}", ts_local=r.recv_ns))
        return events

    def rest_requests_to_send(self) -> list[RestRequest]:
        """Queued REST calls, performed by the session (:mod:`core.rest_calls`)."""
        out, self._rest = self._rest, []
        return out

    def frames_to_send(self) -> list[str]:
        """Queued frames, sent in order and paced to ``max_sends_per_s``."""
        out, self._outbox = self._outbox, []
        return out

    def urgent_frames_to_send(self) -> list[str]:
        """Queued replies that must not wait behind paced frames (pongs)."""
        out, self._urgent = self._urgent, []
        return out

    def next_deadline(self) -> int | None:
        """When :meth:`on_deadline` next wants to run (ns, same clock as ``recv_ns``): the next
        app-level ping, clock-offset burst, refused request to send again, or the earliest
        overdue snapshot of any keeper."""
        best = self._next_ping_ns  # called after every frame: no allocation
        clock = self._clock
        if clock is not None and clock.next_ns is not None and (best is None
                                                                 or clock.next_ns < best):
            best = clock.next_ns
        for keeper in self.keepers:
            t = keeper.next_deadline()
            if t is not None and (best is None or t < best):
                best = t
        if self.retry:  # (an empty queue is false: nothing to compute)
            t = self.retry.next_deadline()
            if t is not None and (best is None or t < best):
                best = t
        return best

    def on_deadline(self, now_ns: int) -> list[Event]:
        """Send the app-level ping and start a clock-offset burst when due; report snapshots
        that are overdue (their keepers queue resyncs, which the plugin drains with
        ``take_resyncs``); hand refused requests whose delay is over to :meth:`resubscribe`."""
        self.now_ns = now_ns
        if self._next_ping_ns is not None and now_ns >= self._next_ping_ns:
            self.send(self.ping_frame(now_ns))
            assert self.ping_interval_s is not None
            self._next_ping_ns = now_ns + int(self.ping_interval_s * S_NS)
        clock = self._clock
        if clock is not None and clock.next_ns is not None and now_ns >= clock.next_ns:
            self.request_rest(*clock.begin(now_ns))
        events = [e for keeper in self.keepers for e in keeper.overdue(now_ns)]
        self._drain_resyncs(now_ns)
        if self.retry:
            due = self.retry.take_due(now_ns)
            if due:
                self.resubscribe(due, now_ns)
        return events

    def resubscribe(self, due: list[Any], now_ns: int) -> None:
        """Send again the requests of :attr:`retry` whose delay is over (oldest first), and
        expect their snapshots where they carry books. A plugin that sets :attr:`retry`
        implements it."""
        raise NotImplementedError(f"{self.name} queues retries but cannot resubscribe")

    def connection_lost(self, now_ns: int) -> list[Event]:
        """The connection is gone; books must resync from the next connection's snapshots."""
        self.now_ns = now_ns
        for keeper in self.keepers:
            keeper.connection_lost()
        self._next_ping_ns = None
        if self._clock is not None:
            self._clock.stop()
        return []

    # -- to implement ------------------------------------------------------------------------

    def subscribe(self, now_ns: int) -> list[str]:
        """Frames that subscribe every configured symbol and channel on a fresh connection."""
        raise NotImplementedError

    def handle(self, payload: str | bytes, recv_ns: int) -> list[Event]:
        """Decode one (inflated) message and return normalized events."""
        raise NotImplementedError

    def ping_frame(self, now_ns: int) -> str:
        """The venue's app-level ping frame (called every ``ping_interval_s`` when it is set)."""
        raise NotImplementedError

    def handle_rest(self, response: RestResponse) -> list[Event]:
        """The outcome of a :meth:`request_rest` call (see :meth:`rest_response`); required of
        plugins that make REST calls."""
        raise NotImplementedError

    def resync(self, keeper: BookKeeper, symbols: list[str], now_ns: int) -> None:
        """Get fresh snapshots of ``symbols`` in ``keeper`` (for example unsubscribe and
        subscribe their book topics) and call ``keeper.expect_snapshot`` for each one that was
        requested again. Called by the base class after every frame and deadline whenever a
        keeper invalidated a book or found a snapshot overdue; required of every plugin that
        keeps books."""
        raise NotImplementedError

    # -- helpers for subclasses -----------------------------------------------------------------

    def book_frame(self, keeper: BookKeeper, symbol: str) -> None:
        """Announce that the frame being handled updates ``symbol``'s book in ``keeper``: if
        handling it fails, that book is invalidated and resynced. Call it as soon as the frame's
        symbol is known, before its levels are decoded."""
        self._frame_book = (keeper, symbol)

    def request_rest(self, key: str, path: str) -> None:
        """Ask the session for an HTTP GET of ``path`` (with query) under the venue's REST base
        URL; the outcome comes back through :meth:`handle_rest` with the same ``key``. Requests
        belong to the connection: one that ends cancels its calls."""
        self._rest.append(RestRequest(key=key, path=path))

    def send(self, frame: str, *, urgent: bool = False) -> None:
        """Queue a text frame for the session to send. ``urgent`` frames (pong replies) skip
        the queue of paced frames, so a long subscription burst never delays a heartbeat."""
        (self._urgent if urgent else self._outbox).append(frame)

    def health(self, event: str, detail: str = "", symbol: str | None = None,
               ts_local: int | None = None) -> Health:
        return Health(exchange=self.name, ts_local=self.now_ns if ts_local is None else ts_local,
                      symbol=symbol, event=event, detail=detail)

    def decode_error(self, kind: str, payload: str | bytes, exc: BaseException,
                     recv_ns: int) -> Health:
        """Count a malformed frame, log the first of each kind with a sample, return its event."""
        n = self.decode_errors.get(kind, 0) + 1
        self.decode_errors[kind] = n
        sample = payload[:MAX_SAMPLE_CHARS]
        if n == 1:
            log.warning("%s: malformed frame (%s): %s; sample: %r", self.name, kind, exc, sample)
        return Health(exchange=self.name, ts_local=recv_ns, symbol=None,
                      event=HealthKind.DECODE_ERROR,
                      detail=f"{kind} #{n}: {exc}; sample: {sample!r}"[:1000])


def check_channels(proto: type[ExchangeProtocol], channels: Sequence[str]) -> list[str]:
    """The requested channels this venue does not serve."""
    return [c for c in channels if c not in proto.channels]
