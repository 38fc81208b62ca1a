"""Scripted faults for fake venues: what real venues do to a connector, on cue.

A :class:`FaultPlan` is handed to a fake venue (:class:`core.sim.server.FakeVenue`, through
:class:`core.sim.server.Simulation`); each :class:`Fault` fires once, on one connection (the
first by default), after that connection has sent ``after`` data frames (snapshots, deltas,
trades); a frame fault also lets ``skip`` matching deltas through first. Faults act on frame
*kinds* that every speaker labels, so they work for every venue:

========================  ===================================================================
``tcp_close``             close the TCP connection, no websocket close frame
``ws_close``              a websocket close frame (1001 going away)
``handshake``             accept TCP and never answer the websocket handshake
``stall``                 stop reading and writing; the connection stays open
``missing_pongs``         stop answering pings (websocket and app-level) and stop sending
``drop_delta``            the venue applies a book delta and never sends it
``duplicate_delta``       a book delta sent twice
``reorder_delta``         two book deltas of a symbol sent in swapped order
``bad_checksum``          a book delta whose checksum is wrong (venues that send checksums)
``invalid_json``          an extra text frame that is not JSON
``invalid_utf8``          an extra text frame whose bytes are not UTF-8
``truncated_gzip``        an extra binary frame: half of a compressed frame
``gzip_bomb``             an extra binary frame inflating to ``bomb_bytes`` (64 MiB default)
``wrong_types``           an extra copy of a book delta with every array replaced by a string
``non_finite``            an extra copy of a book delta with a size replaced by NaN
``oversized``             an extra frame one byte larger than ``max_bytes``
``refuse_permanent``      the venue refuses ``symbol``'s subscription for good
``refuse_transient``      the venue refuses ``symbol``'s subscription once, "too many requests"
========================  ===================================================================

Extra frames are sent *before* the delta they ride on, so a connector that drops them loses
nothing. Compressed frames use the venue's compression (:attr:`VenueSpeaker.compression`: a gzip
member, or raw deflate). A venue with several websocket endpoints (lanes) can have a fault aimed
at one of them: ``path`` picks the endpoint, and ``conn`` then counts that endpoint's
connections only.

``bad_checksum``, ``wrong_types`` and ``non_finite`` ask the speaker for a bad copy
(:meth:`core.sim.speaker.SpeakerSession.mutate`); where a venue has no such thing the fault is
not applicable and :attr:`Fault.applied` stays False.

:mod:`core.testing.scenario` runs a protocol against fake venues with a plan and checks the
outcome; ``docs/simulate.md`` lists the recovery bounds.
"""

from __future__ import annotations

import gzip
import zlib
from dataclasses import dataclass

from core.sim.server import Abort, Action, Mute, RawFrame, Stall
from core.sim.speaker import DATA_KINDS, PERMANENT, TRANSIENT, Out, SpeakerSession, VenueSpeaker

CONNECTION_FAULTS = frozenset({"tcp_close", "ws_close", "stall", "missing_pongs"})
DELTA_FAULTS = frozenset({"drop_delta", "duplicate_delta", "reorder_delta", "bad_checksum",
                          "invalid_json", "invalid_utf8", "truncated_gzip", "gzip_bomb",
                          "wrong_types", "non_finite", "oversized"})
REFUSALS = frozenset({"refuse_permanent", "refuse_transient"})
ALL_FAULTS = ("tcp_close", "ws_close", "handshake", "stall", "missing_pongs", "drop_delta",
              "duplicate_delta", "reorder_delta", "bad_checksum", "invalid_json",
              "invalid_utf8", "truncated_gzip", "gzip_bomb", "wrong_types", "non_finite",
              "oversized", "refuse_permanent", "refuse_transient")
DEFAULT_BOMB_BYTES = 64 * 1024 * 1024


@dataclass
class Fault:
    """One fault. ``symbol`` picks whose deltas a frame fault rides on (None: any symbol)."""

    name: str
    conn: int = 0
    after: int = 0
    symbol: str | None = None
    path: str | None = None  # only connections to this websocket path (``conn`` counts those)
    skip: int = 0  # frame faults: let this many matching deltas through first
    max_bytes: int = 4 * 1024 * 1024  # ``oversized``: the client's limit
    bomb_bytes: int = DEFAULT_BOMB_BYTES
    #: when the fault fired (the venue clock's ns); ``done`` once it has
    fired_ns: int | None = None
    done: bool = False
    applied: bool = False  # False: it never fired, or the venue has nothing to corrupt
    _held: Out | None = None

    def __post_init__(self) -> None:
        if self.name not in ALL_FAULTS:
            raise ValueError(f"unknown fault {self.name!r}; known: {', '.join(ALL_FAULTS)}")


class FaultPlan:
    """Faults of one fake venue; implements :class:`core.sim.server.ConnectionFaults`."""

    def __init__(self, *faults: Fault | str) -> None:
        self.faults = [f if isinstance(f, Fault) else Fault(f) for f in faults]
        self.data_frames: dict[int, int] = {}  # data frames sent, per connection
        self._clock: object = None

    def arm(self, speaker: VenueSpeaker) -> None:
        """Give the speaker its subscription refusals (before any connection)."""
        for f in self.faults:
            if f.name in REFUSALS:
                if f.symbol is None:
                    raise ValueError(f"{f.name} needs a symbol")
                speaker.refuse(f.symbol, PERMANENT if f.name == "refuse_permanent" else TRANSIENT)
                f.applied = True

    def clock(self, now_ns: object) -> None:
        """The venue's clock (a callable returning ns), to stamp :attr:`Fault.fired_ns`."""
        self._clock = now_ns

    def _now(self) -> int | None:
        return self._clock() if callable(self._clock) else None

    # -- ConnectionFaults ------------------------------------------------------------------------

    @staticmethod
    def _aims_at(f: Fault, conn: int, path: str, path_index: int) -> bool:
        if f.path is None:
            return f.conn == conn
        return f.path == path and f.conn == path_index

    def hold_handshake(self, conn: int, path: str = "/", path_index: int = 0) -> bool:
        for f in self.faults:
            if f.name == "handshake" and not f.done and self._aims_at(f, conn, path, path_index):
                f.applied = f.done = True
                f.fired_ns = self._now()
                return True
        return False

    def on_out(self, conn: int, out: Out, session: SpeakerSession) -> list[Action]:
        sent = self.data_frames.get(conn, 0)
        actions: list[Action] = [out]
        for f in self.faults:
            if f.done or not self._aims_at(f, conn, session.path, session.path_index):
                continue
            if f.name in CONNECTION_FAULTS:
                if sent >= f.after:
                    actions = self._fire_connection(f)
                    break
                continue
            if f.name not in DELTA_FAULTS or out.kind != "delta" or sent < f.after:
                continue
            if f.symbol is not None and out.symbol != f.symbol:
                continue
            if f.skip > 0 and f._held is None:
                f.skip -= 1
                continue
            actions = self._fire_frame(f, out, session)
            break
        self.data_frames[conn] = sent + sum(
            1 for a in actions if isinstance(a, Out) and a.kind in DATA_KINDS)
        return actions

    def _fire_connection(self, f: Fault) -> list[Action]:
        f.fired_ns = self._now()
        f.applied = f.done = True
        if f.name == "tcp_close":
            return [Abort()]
        if f.name == "ws_close":
            return [Out(close=(1001, "going away"), kind="close")]
        if f.name == "stall":
            return [Stall()]
        return [Mute()]

    def _fire_frame(self, f: Fault, out: Out, session: SpeakerSession) -> list[Action]:
        name = f.name
        if name == "reorder_delta":
            if f._held is None:  # hold this one; it goes out after the next
                f._held = out
                f.fired_ns = self._now()
                return []
            held, f._held = f._held, None
            f.applied = f.done = True
            return [out, held]
        f.fired_ns = self._now()
        f.done = True
        if name == "drop_delta":
            f.applied = True
            return []
        if name == "duplicate_delta":
            f.applied = True
            return [out, out]
        if name in ("bad_checksum", "wrong_types", "non_finite"):
            bad = session.mutate(out, name.removeprefix("bad_"))
            if bad is None:
                return [out]  # nothing of the kind on this venue: not applicable
            f.applied = True
            return [bad] if name == "bad_checksum" else [bad, out]
        f.applied = True
        extra: Action
        if name == "invalid_json":
            extra = Out('{"topic": not json', "garbage", out.symbol)
        elif name == "invalid_utf8":
            extra = RawFrame(text_frame(b'{"x": "\xff\xfe\xfd"}'))
        elif name == "truncated_gzip":
            member = compress(out.frame.encode() if isinstance(out.frame, str)
                              else out.frame or b"", session.speaker.compression)
            extra = Out(member[: len(member) // 2], "garbage", out.symbol)
        elif name == "gzip_bomb":
            extra = Out(gzip_bomb(f.bomb_bytes, session.speaker.compression), "garbage",
                        out.symbol)
        else:  # oversized
            extra = Out("x" * (f.max_bytes + 1), "garbage", out.symbol)
        return [extra, out]

    # -- reading the outcome ---------------------------------------------------------------------

    def fired(self) -> list[Fault]:
        return [f for f in self.faults if f.done]


def text_frame(payload: bytes) -> bytes:
    """A server (unmasked) websocket text frame carrying ``payload`` as it is."""
    n = len(payload)
    if n < 126:
        header = bytes([0x81, n])
    elif n < 1 << 16:
        header = bytes([0x81, 126]) + n.to_bytes(2, "big")
    else:
        header = bytes([0x81, 127]) + n.to_bytes(8, "big")
    return header + payload


WBITS = {"gzip": 16 + zlib.MAX_WBITS, "deflate": -zlib.MAX_WBITS}


def compress(data: bytes, compression: str = "gzip") -> bytes:
    """``data`` as one gzip member or as raw deflate (the venue's ``compression``)."""
    if compression == "gzip":
        return gzip.compress(data)
    compressor = zlib.compressobj(6, zlib.DEFLATED, WBITS[compression])
    return compressor.compress(data) + compressor.flush()


def gzip_bomb(inflated_bytes: int, compression: str = "gzip") -> bytes:
    """A small compressed frame (a gzip member, or raw deflate) that inflates to
    ``inflated_bytes`` of zeros (about 1000:1)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, WBITS[compression])
    chunk = bytes(1024 * 1024)
    parts = []
    left = inflated_bytes
    while left > 0:
        parts.append(compressor.compress(chunk[: min(left, len(chunk))]))
        left -= len(chunk)
    parts.append(compressor.flush())
    return b"".join(parts)


__all__ = ["ALL_FAULTS", "CONNECTION_FAULTS", "DELTA_FAULTS", "REFUSALS", "Fault", "FaultPlan",
           "Stall", "compress", "gzip_bomb", "text_frame"]
