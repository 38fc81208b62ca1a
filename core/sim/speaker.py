"""The sans-IO contract of a *venue speaker*: what a fake venue says, frame by frame.

A speaker is the server-side mirror of a venue plugin. Built from the
:class:`core.sim.market.Market` it serves, it lists the venue's instruments (``listing`` for the
market, ``rest`` for the REST endpoint) and opens a :class:`SpeakerSession` per websocket
connection. The generic trio server
(:mod:`core.sim.server`) drives a session with these calls and sends what they return::

    outs = session.opened(now_ns)               # greetings, if the venue sends any
    outs = session.receive(frame, now_ns)       # a client frame: acks, errors, snapshots, pongs
    speaker.observe(event)                      # a market event, once per venue (counters)
    outs = session.market(event, now_ns)        # ... and per connection: deltas and trades
                                                #   of the streams it subscribed
    when = session.next_deadline()              # server pings, heartbeats, periodic snapshots
    outs = session.on_deadline(now_ns)          # ... when they are due

A speaker also answers REST GETs (:meth:`VenueSpeaker.rest_at`, with the time of the request): its
instrument list, its server time (:attr:`VenueSpeaker.server_time_path`; ``clock_skew_ns`` makes
the fake's clock run ahead of the simulation's, for clock-offset tests) and whatever else the venue
serves over REST. A speaker whose venue lists perpetuals says so (:attr:`VenueSpeaker.perpetual`):
``--simulate`` then runs a funding / mark / index / open-interest process for it
(:mod:`core.sim.perp`), whose :class:`core.sim.market.PerpUpdate` events reach its sessions like
book events.

Each :class:`Out` is a frame (text or bytes) with its *kind* (``ack``, ``error``, ``snapshot``,
``delta``, ``trade``, ``ping``, ``pong``, ``heartbeat``, ``info``) and symbol, or a close
instruction; faults (:mod:`core.testing.faults`) act on those kinds, not on venue formats. The
kind ``ws_ping`` is a websocket-level ping (its frame is the ping's payload), for venues whose
server pings at the websocket layer; the server counts the client's pongs.

A venue with several websocket endpoints (Binance's routed ``/public`` and ``/market`` paths)
is one speaker: each session knows the path it was opened on (:attr:`SpeakerSession.path`) and
:meth:`VenueSpeaker.serves` says which paths exist (others get HTTP 404 at the handshake). The
REST side (:meth:`VenueSpeaker.rest`) is computed from the market's state when it is asked, so
it can serve a book snapshot as well as the instrument list, with a status other than 200 where
the venue answers with an error (:class:`RestReply`).
:meth:`SpeakerSession.mutate` makes venue-aware bad copies of a frame (``wrong_types``,
``non_finite``, ``checksum``) for the fault kit.

Speakers register through the ``bookwire_register_fake_venues`` hook, next to their plugin
(``plugins/<venue>/fake.py``), so a third-party plugin ships its own.

Pure like the plugins: no trio, no sockets, no clock reads (time arrives as ``now_ns``).
"""

from __future__ import annotations

import gzip
import json
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, NamedTuple

from core.codec import MS_NS
from core.sim.market import Ladder, Listing, Market, MarketEvent, TrueBook

#: subscription refusals a speaker can be told to make (fault kit)
PERMANENT = "permanent"
TRANSIENT = "transient"
TRANSIENT_TEXT = "too many requests, please retry later"


@dataclass(frozen=True, slots=True)
class Out:
    """One thing a session wants sent: a frame of some kind, or a close."""

    frame: str | bytes | None = None
    kind: str = "info"
    symbol: str | None = None
    close: tuple[int, str] | None = None


DATA_KINDS = frozenset({"snapshot", "delta", "trade"})
#: an :class:`Out` of this kind is sent as a websocket ping frame carrying ``frame`` (bytes)
WS_PING = "ws_ping"


class RestReply(NamedTuple):
    """A REST answer with its HTTP status (a plain ``bytes`` body means 200)."""

    status: int
    body: bytes


class DepthView:
    """What a client subscribed to ``depth`` levels of a book has been told so far.

    Venues with a depth window (``orderbook.50``, ``size_20``, ``ob.X.50``) send only the levels
    inside it: a level that leaves the window is sent with size 0, one that enters with its size.
    ``depth=None`` follows the whole book.
    """

    __slots__ = ("asks", "bids", "depth")

    def __init__(self, depth: int | None) -> None:
        self.depth = depth
        self.bids: dict[int, int] = {}
        self.asks: dict[int, int] = {}

    def snapshot(self, book: TrueBook) -> tuple[Ladder, Ladder]:
        bids, asks = book.top("bid", self.depth), book.top("ask", self.depth)
        self.bids, self.asks = dict(bids), dict(asks)
        return bids, asks

    def diff(self, book: TrueBook) -> tuple[Ladder, Ladder]:
        """The changes since the last snapshot/diff (absolute sizes, 0 removes); the view moves."""
        out: list[Ladder] = []
        for side, old in (("bid", self.bids), ("ask", self.asks)):
            new = dict(book.top(side, self.depth))  # type: ignore[arg-type]
            changes = [(p, 0) for p in old if p not in new]
            changes += [(p, q) for p, q in new.items() if old.get(p) != q]
            if side == "bid":
                self.bids = new
                changes.sort(key=lambda lv: -lv[0])
            else:
                self.asks = new
                changes.sort(key=lambda lv: lv[0])
            out.append(changes)
        return out[0], out[1]

    def ladders(self) -> tuple[Ladder, Ladder]:
        """The view as the client should have it, best first."""
        return (sorted(self.bids.items(), key=lambda lv: -lv[0]),
                sorted(self.asks.items(), key=lambda lv: lv[0]))


class SpeakerSession:
    """One client connection of a fake venue. Subclasses implement the venue's protocol."""

    def __init__(self, speaker: VenueSpeaker, conn_id: int, now_ns: int) -> None:
        self.speaker = speaker
        self.conn_id = conn_id
        self.opened_ns = now_ns
        #: the websocket path this connection was opened on, and how many connections to that
        #: path came before it (set by :meth:`VenueSpeaker.open`)
        self.path = "/"
        self.path_index = 0
        #: every client frame, in order (tests read them)
        self.received: list[str | bytes] = []
        #: (symbol, channel) -> the view of the book this connection was told
        self.views: dict[tuple[str, str], DepthView] = {}

    # -- driven by the server ------------------------------------------------------------------

    def opened(self, now_ns: int) -> list[Out]:
        return []

    def receive(self, frame: str | bytes, now_ns: int) -> list[Out]:
        raise NotImplementedError

    def market(self, event: MarketEvent, now_ns: int) -> list[Out]:
        raise NotImplementedError

    def next_deadline(self) -> int | None:
        return None

    def on_deadline(self, now_ns: int) -> list[Out]:
        return []

    # -- fault kit --------------------------------------------------------------------------------

    def mutate(self, out: Out, how: str) -> Out | None:
        """A bad copy of a data frame: ``wrong_types`` (every array becomes a string),
        ``non_finite`` (a size becomes NaN), or None when this venue has no such thing (the
        base class knows JSON text and gzip-JSON frames; venues with checksums add
        ``checksum``)."""
        if out.frame is None:
            return None
        raw = out.frame
        gz = False
        if isinstance(raw, bytes) and raw[:2] == b"\x1f\x8b":
            raw, gz = gzip.decompress(raw), True
        try:
            doc = json.loads(raw)
        except ValueError:
            return None
        if how == "wrong_types":
            bad = _arrays_to_strings(doc)
        elif how == "non_finite":
            bad, done = _first_size_nan(doc)
            if not done:
                return None
        else:
            return None
        text = json.dumps(bad, separators=(",", ":"))
        frame: str | bytes = gzip.compress(text.encode()) if gz else text
        return Out(frame, out.kind, out.symbol)

    # -- helpers -----------------------------------------------------------------------------

    def refusal(self, symbol: str) -> str | None:
        return self.speaker.refusal(symbol)

    def view(self, symbol: str, channel: str, depth: int | None) -> DepthView:
        key = (symbol, channel)
        v = self.views.get(key)
        if v is None or v.depth != depth:
            v = self.views[key] = DepthView(depth)
        return v


class VenueSpeaker:
    """A fake venue: its listings and REST endpoint, and a session per connection."""

    #: the plugin name this speaker fakes
    name: ClassVar[str]
    #: the websocket path of the real endpoint (kept in the loopback URL); a venue whose
    #: protocol appends lane paths to its base URL leaves it empty
    path: ClassVar[str] = "/"
    #: the session class
    session_class: ClassVar[type[SpeakerSession]] = SpeakerSession
    #: how the venue compresses binary frames ("gzip" or "deflate"); the fault kit's compressed
    #: frames (``truncated_gzip``, ``gzip_bomb``) use it
    compression: ClassVar[str] = "gzip"
    #: the venue lists perpetuals: ``--simulate`` gives it funding, mark, index and open interest
    perpetual: ClassVar[bool] = False
    #: path of the venue's REST server-time endpoint (None: it has none)
    server_time_path: ClassVar[str | None] = None

    def __init__(self, market: Market) -> None:
        self.market = market
        #: how far the fake's server clock runs ahead of the simulation's (ns)
        self.clock_skew_ns = 0
        self.sessions: list[SpeakerSession] = []
        self._refuse: dict[str, tuple[str, int | None]] = {}
        #: every refusal made: (symbol, "permanent" | "transient")
        self.refused: list[tuple[str, str]] = []

    # -- listings ----------------------------------------------------------------------------

    @classmethod
    def listing(cls, symbol: str, price: float) -> Listing:
        """How this venue lists ``symbol`` (tick, lot, contract size) near ``price``."""
        raise NotImplementedError

    def symbols(self) -> list[str]:
        return self.market.symbols(self.name)

    def listed(self, symbol: str) -> bool:
        return (self.name, symbol) in self.market.listings

    def rest(self, target: str) -> bytes | RestReply | None:
        """The answer to a REST GET of ``target`` (path with query): a body (status 200), a
        :class:`RestReply` (another status), or None (404). Computed when asked, so a book
        snapshot is the market's book at that moment."""
        return None

    def rest_at(self, target: str, now_ns: int) -> bytes | RestReply | None:
        """The body of a REST GET made at ``now_ns``: the server time at
        :attr:`server_time_path`, else :meth:`rest`."""
        if self.server_time_path is not None and \
                target.split("?", 1)[0] == self.server_time_path:
            return self.server_time(now_ns + self.clock_skew_ns)
        return self.rest(target)

    def server_time(self, venue_ns: int) -> bytes:
        """The server-time body for the venue's clock reading ``venue_ns``."""
        raise NotImplementedError

    # -- connections -----------------------------------------------------------------------------

    def serves(self, path: str) -> bool:
        """Whether the venue has a websocket endpoint at ``path`` (others get HTTP 404)."""
        return True

    def observe(self, event: MarketEvent) -> None:
        """Every market event of this venue, once, before any session sees it (venue-wide
        counters such as sequence numbers advance here, whoever is subscribed)."""

    def open(self, now_ns: int, path: str = "/") -> SpeakerSession:
        """A new connection, opened on the websocket ``path``."""
        session = self.session_class(self, len(self.sessions), now_ns)
        session.path = path
        session.path_index = sum(1 for s in self.sessions if s.path == path)
        self.sessions.append(session)
        return session

    # -- subscription refusals (fault kit) -------------------------------------------------------

    def refuse(self, symbol: str, kind: str = PERMANENT, times: int | None = None) -> None:
        """Refuse subscriptions of ``symbol``: ``permanent`` ones always, ``transient`` ones
        (the venue's "too many requests") ``times`` times (default once)."""
        self._refuse[symbol] = (kind, times if times is not None or kind == PERMANENT else 1)

    def refusal(self, symbol: str) -> str | None:
        """Whether to refuse this subscription now (counts transient refusals down)."""
        entry = self._refuse.get(symbol)
        if entry is None:
            return None
        kind, times = entry
        if times is not None:
            if times <= 0:
                return None
            self._refuse[symbol] = (kind, times - 1)
        self.refused.append((symbol, kind))
        return kind

    # -- what a correct client must hold -----------------------------------------------------------

    def true_view(self, symbol: str, channel: str = "l2") -> tuple[list[tuple[float, float]],
                                                                   list[tuple[float, float]]]:
        """The book a correct client holds for ``symbol`` on its latest connection, as floats in
        base units (the venue's depth window applied), best first."""
        listing = self.market.listing(self.name, symbol)
        for session in reversed(self.sessions):
            view = session.views.get((symbol, channel))
            if view is not None:
                bids, asks = view.ladders()
                return _floats(listing, bids), _floats(listing, asks)
        raise KeyError(f"{self.name}: no connection subscribed {channel} of {symbol}")


def _floats(listing: Listing, ladder: Ladder) -> list[tuple[float, float]]:
    return [(float(listing.price(p)), float(listing.size(q))) for p, q in ladder]


def _arrays_to_strings(doc: Any) -> Any:
    if isinstance(doc, list):
        return "not-an-array"
    if isinstance(doc, dict):
        return {k: _arrays_to_strings(v) for k, v in doc.items()}
    return doc


def _first_size_nan(doc: Any) -> tuple[Any, bool]:
    """Replace the size of the first ``[price, size, ...]`` level (or the first ``size``-like
    field) with NaN, in the venue's representation (a string stays a string)."""
    done = False

    def walk(node: Any) -> Any:
        nonlocal done
        if done:
            return node
        if isinstance(node, list):
            if len(node) >= 2 and all(isinstance(x, (int, float, str)) for x in node[:2]) \
                    and _numeric(node[-1]) and _numeric(node[-2]):
                done = True
                size = node[-1]
                return [*node[:-1], "NaN" if isinstance(size, str) else math.nan]
            return [walk(x) for x in node]
        if isinstance(node, dict):
            out: dict[str, Any] = {}
            for k, v in node.items():
                if not done and k in SIZE_KEYS and _numeric(v):
                    done = True
                    out[k] = "NaN" if isinstance(v, str) else math.nan
                else:
                    out[k] = walk(v)
            return out
        return node

    return walk(doc), done


SIZE_KEYS = frozenset({"new_quantity", "size", "v", "amount", "B", "A", "sz", "qty", "q"})


def _numeric(x: Any) -> bool:
    if isinstance(x, bool):
        return False
    if isinstance(x, (int, float)):
        return True
    if isinstance(x, str):
        try:
            float(x)
        except ValueError:
            return False
        return True
    return False


def ms(ns: int) -> int:
    return ns // MS_NS


@dataclass
class SpeakerRegistry:
    """Venue name -> speaker class, filled through ``bookwire_register_fake_venues``."""

    by_name: dict[str, type[VenueSpeaker]] = field(default_factory=dict)

    def register(self, speaker: type[VenueSpeaker]) -> None:
        if not (isinstance(speaker, type) and issubclass(speaker, VenueSpeaker)):
            raise TypeError(f"{speaker!r} is not a VenueSpeaker subclass")
        name = getattr(speaker, "name", None)
        if not name:
            raise TypeError(f"{speaker.__qualname__} has no name")
        if name in self.by_name and self.by_name[name] is not speaker:
            raise ValueError(f"fake venue {name!r} registered twice")
        self.by_name[name] = speaker

    def get(self, name: str) -> type[VenueSpeaker]:
        return self.by_name[name]

    def names(self) -> list[str]:
        return sorted(self.by_name)

    def __contains__(self, name: object) -> bool:
        return name in self.by_name


def load_speakers(pm: Any = None) -> SpeakerRegistry:
    """Every registered fake venue (entry points loaded like ``core.plugins.load_plugins``)."""
    from core.plugins import load_plugins

    if pm is None:
        pm, _ = load_plugins()
    registry = SpeakerRegistry()
    pm.hook.bookwire_register_fake_venues(register=registry.register)
    return registry
