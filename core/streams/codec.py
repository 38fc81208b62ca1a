"""The Redis Streams wire format of normalized events: stream names and msgpack entries.

One stream per table and venue, named ``bookwire:<table>:<venue>`` (``bookwire:tob:bybit``,
``bookwire:spreads:spread``). Each entry has one field, ``e``, whose value is the event encoded
with msgspec as a MessagePack map: the event's attributes by name, plus ``kind`` (the table's event
kind: ``tob``, ``l2``, ``trade``, ``health``, ...). Integers are nanoseconds since the Unix epoch
(UTC) or ids; prices and sizes are floats; an ``l2`` event's ``bids`` and ``asks`` are arrays of
``[price, size]`` pairs. ``docs/data.md`` documents it for readers in other languages.

Decoding is strict: an entry without the field, bytes that are not MessagePack, a map that does not
fit the event type, an event of another table than its stream's, or a price or size that is not a
finite non-negative number raises :class:`Undecodable` naming the kind of problem.

Pure: no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any, Final, Union

import msgspec

from core.schema import BookUpdate, Event, TopOfBook, Trade
from core.tables import REGISTRY, Table

PREFIX: Final = "bookwire"
FIELD: Final = b"e"


def stream_name(table: str, venue: str) -> str:
    return f"{PREFIX}:{table}:{venue}"


def parse_stream(name: str | bytes) -> tuple[str, str] | None:
    """``bookwire:<table>:<venue>`` -> (table, venue), or None for any other key."""
    text = name.decode() if isinstance(name, bytes) else name
    parts = text.split(":", 2)
    if len(parts) != 3 or parts[0] != PREFIX or not parts[1] or not parts[2]:
        return None
    return parts[1], parts[2]


class Undecodable(ValueError):
    """A stream entry that is not a valid event; ``kind`` names the problem for counting."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class Encoder:
    """Events -> entry values (reuses one msgspec encoder)."""

    def __init__(self) -> None:
        self._enc = msgspec.msgpack.Encoder()

    def encode(self, event: Event) -> bytes:
        return self._enc.encode(event)


def _finite(*values: float | None) -> bool:
    return all(v is None or (math.isfinite(v) and v >= 0) for v in values)


def _levels_ok(levels: Iterable[tuple[float, float]]) -> bool:
    return all(math.isfinite(p) and math.isfinite(s) and p >= 0 and s >= 0 for p, s in levels)


def check_values(event: Event) -> None:
    """Undecodable for a price or size that no row may hold (NaN, infinite, negative)."""
    t = type(event)
    ok = True
    if t is TopOfBook:
        e: Any = event
        ok = _finite(e.bid_px, e.bid_sz, e.ask_px, e.ask_sz)
    elif t is Trade:
        e = event
        ok = _finite(e.price, e.size) and e.side in ("buy", "sell")
    elif t is BookUpdate:
        e = event
        ok = _levels_ok(e.bids) and _levels_ok(e.asks)
    if not ok:
        raise Undecodable("bad value", f"{t.__name__} with a non-finite or negative value")


class Decoder:
    """Entry values of the given tables -> events (one reused msgspec decoder)."""

    def __init__(self, tables: Iterable[Table] | None = None) -> None:
        chosen = list(tables) if tables is not None else [REGISTRY.get(n) for n in REGISTRY.names()]
        types = tuple(dict.fromkeys(t.event_type for t in chosen))
        self._kinds = {t.name: t.kind for t in chosen}
        self._dec = msgspec.msgpack.Decoder(Union[types])  # noqa: UP007

    def decode(self, table: str, fields: Mapping[bytes, bytes]) -> Event:
        payload = fields.get(FIELD)
        if payload is None:
            raise Undecodable("no field e", f"entry has no {FIELD.decode()!r} field")
        try:
            event: Event = self._dec.decode(payload)
        except msgspec.ValidationError as exc:
            raise Undecodable("invalid", f"not a valid event: {exc}") from None
        except msgspec.DecodeError as exc:
            raise Undecodable("not msgpack", f"not MessagePack: {exc}") from None
        kind = event.__struct_config__.tag
        if self._kinds.get(table) != kind:
            raise Undecodable("wrong stream", f"a {kind!r} event in a stream of table {table!r}")
        check_values(event)
        return event


__all__ = ["FIELD", "PREFIX", "Decoder", "Encoder", "Undecodable", "check_values",
           "parse_stream", "stream_name"]
