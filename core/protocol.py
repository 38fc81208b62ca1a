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
:meth:`receive` is the template around ``handle``: it inflates compressed frames, turns decode
failures into counted ``decode_error`` health events (logged once per kind with a sample), and
never lets a malformed frame escape as an exception. An exception raised by plugin code for any
other reason is a plugin bug: it propagates, and the supervisor records it and restarts the
connector.

Rules for plugins: no trio, no sockets, no clock reads (time only arrives as arguments), no
logging of whole payloads on the hot path.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import ClassVar

import msgspec

from core.book import BookKeeper
from core.codec import DEFAULT_MAX_INFLATED_BYTES, FrameError, inflate
from core.schema import Event, Health, HealthKind

log = logging.getLogger(__name__)

S_NS = 1_000_000_000
MAX_SAMPLE_CHARS = 300


class Instrument(msgspec.Struct, frozen=True, kw_only=True):
    """Static facts about one tradable symbol, from the venue's instruments endpoint."""

    symbol: str  # canonical BASE-QUOTE
    native: str  # the venue's own name
    contract_size: float = 1.0  # base units per contract (1.0 where sizes already are base units)
    tick_size: float | None = None
    lot_size: float | None = None
    status: str = "trading"


class ProtocolConfig(msgspec.Struct, frozen=True, kw_only=True):
    """What the user asked of one venue."""

    symbols: tuple[str, ...]
    channels: tuple[str, ...]
    instruments: Mapping[str, Instrument] = msgspec.field(default_factory=dict)
    options: Mapping[str, str] = msgspec.field(default_factory=dict)


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

    def __init__(self, config: ProtocolConfig) -> None:
        self.config = config
        self._outbox: list[str] = []
        self._urgent: list[str] = []
        self.decode_errors: dict[str, int] = {}
        self.now_ns = 0  # time of the last call, for events created deep inside handlers
        #: the plugin's books; their snapshot deadlines and disconnects are handled here
        self.keepers: list[BookKeeper] = []
        self._next_ping_ns: int | None = None

    # -- symbols ----------------------------------------------------------------------------

    @classmethod
    def to_native(cls, symbol: str) -> str:
        """Canonical ``BTC-USDT`` to the venue's name; default: ``BTCUSDT``."""
        return symbol.replace("-", "")

    @classmethod
    def to_canonical(cls, native: str) -> str:
        """The venue's name to canonical. Override where the default guess is not exact."""
        return native

    # -- instruments (optional; pure request/parse, the session does the HTTP) -----------------

    @classmethod
    def instruments_path(cls) -> str | None:
        """Path (with query) of the REST instruments endpoint under the REST base URL."""
        return None

    @classmethod
    def parse_instruments(cls, body: bytes) -> dict[str, Instrument]:
        """Parse the instruments endpoint's body into canonical symbol -> Instrument."""
        raise NotImplementedError

    def instrument(self, symbol: str) -> Instrument | None:
        return self.config.instruments.get(symbol)

    def contract_size(self, symbol: str) -> float:
        inst = self.config.instruments.get(symbol)
        return inst.contract_size if inst is not None else 1.0

    # -- session-facing calls ------------------------------------------------------------------

    def connection_made(self, now_ns: int) -> list[Event]:
        """A new connection is open: reset per-connection state and queue subscribe frames."""
        self.now_ns = now_ns
        self._outbox.clear()
        self._urgent.clear()
        self._outbox.extend(self.subscribe(now_ns))
        if self.ping_interval_s:
            self._next_ping_ns = now_ns + int(self.ping_interval_s * S_NS)
        return []

    def receive(self, frame: str | bytes, recv_ns: int) -> list[Event]:
        """One websocket message in, normalized events out (replies go to the outbox)."""
        self.now_ns = recv_ns
        payload: str | bytes = frame
        if isinstance(frame, bytes) and self.compression is not None:
            try:
                payload = inflate(frame, self.compression, self.max_inflated_bytes)
            except FrameError as exc:
                return [self.decode_error("inflate", frame, exc, recv_ns)]
        try:
            return self.handle(payload, recv_ns)
        except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError) as exc:
            return [self.decode_error(type(exc).__name__, payload, exc, recv_ns)]

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
        app-level ping or the earliest overdue snapshot of any keeper."""
        best = self._next_ping_ns  # called after every frame: no allocation
        for keeper in self.keepers:
            t = keeper.next_deadline()
            if t is not None and (best is None or t < best):
                best = t
        return best

    def on_deadline(self, now_ns: int) -> list[Event]:
        """Send the app-level ping when due; report snapshots that are overdue (their keepers
        queue resyncs, which the plugin drains with ``take_resyncs``)."""
        self.now_ns = now_ns
        if self._next_ping_ns is not None and now_ns >= self._next_ping_ns:
            self.send(self.ping_frame(now_ns))
            assert self.ping_interval_s is not None
            self._next_ping_ns = now_ns + int(self.ping_interval_s * S_NS)
        return [e for keeper in self.keepers for e in keeper.overdue(now_ns)]

    def connection_lost(self, now_ns: int) -> list[Event]:
        """The connection is gone; books must resync from the next connection's snapshots."""
        self.now_ns = now_ns
        for keeper in self.keepers:
            keeper.connection_lost()
        self._next_ping_ns = None
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

    # -- helpers for subclasses -----------------------------------------------------------------

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
