"""Pure helpers shared by venue protocols: frame inflation, and the numbers and timestamps that
enter from the wire, checked where they enter.

Values are validated at the edge, so that nothing downstream (books, rows, Parquet columns) ever
sees a value it cannot hold:

* prices finite and positive, sizes finite and non-negative (:data:`Price`, :data:`Size`,
  :func:`levels_from_text`, :func:`check_level`);
* sequence ids within Int64 (:data:`Seq`), the ``seq`` and ``msg_id`` columns' type;
* exchange timestamps between 2000-01-01 and 2100-01-01 UTC (:data:`TsMs`, :func:`ms_to_ns`,
  :func:`iso_to_ns`), so their nanoseconds fit Int64 with room to spare.

The ``Annotated`` types are for msgspec wire Structs: msgspec checks them in C while decoding
(decoders built with ``strict=False`` also turn decimal strings such as ``"65114.2"`` into floats
and ints, which is much cheaper than ``float()`` per value afterwards). A value outside its type
raises ``msgspec.ValidationError``; the helpers raise :class:`BadValue`. Either is turned into a
counted ``decode_error`` by :meth:`core.protocol.ExchangeProtocol.receive`.

No I/O, no clocks, no trio. Everything here is called on the hot path, so it stays small.
"""

from __future__ import annotations

import calendar
import math
import sys
import zlib
from collections.abc import Sequence
from datetime import datetime
from functools import lru_cache
from typing import Annotated, Final

import msgspec

MS_NS: Final = 1_000_000
US_NS: Final = 1_000
S_NS: Final = 1_000_000_000
INF: Final = math.inf
FLOAT_MAX: Final = sys.float_info.max  # msgspec bounds must be finite: <= this excludes inf
INT64_MIN: Final = -(1 << 63)
INT64_MAX: Final = (1 << 63) - 1
#: the sane window of exchange timestamps: 2000-01-01 .. 2100-01-01 UTC
MIN_TS_NS: Final = 946_684_800 * S_NS
MAX_TS_NS: Final = 4_102_444_800 * S_NS

#: a price: finite and > 0
Price = Annotated[float, msgspec.Meta(gt=0.0, le=FLOAT_MAX)]
#: a size: finite and >= 0 (0 removes a level)
Size = Annotated[float, msgspec.Meta(ge=0.0, le=FLOAT_MAX)]
#: a finite number of either sign (e.g. Gate's signed trade sizes)
Finite = Annotated[float, msgspec.Meta(ge=-FLOAT_MAX, le=FLOAT_MAX)]
#: a sequence or update id that fits the Int64 columns
Seq = Annotated[int, msgspec.Meta(ge=INT64_MIN, le=INT64_MAX)]
#: exchange time in ms / s / us since the epoch, inside the sane window
TsMs = Annotated[int, msgspec.Meta(ge=MIN_TS_NS // MS_NS, le=MAX_TS_NS // MS_NS)]
TsS = Annotated[int, msgspec.Meta(ge=MIN_TS_NS // S_NS, le=MAX_TS_NS // S_NS)]
TsUs = Annotated[int, msgspec.Meta(ge=MIN_TS_NS // US_NS, le=MAX_TS_NS // US_NS)]
#: one ``[price, size]`` level as decoded from the wire
WireLevel = tuple[Price, Size]
Level = tuple[float, float]
#: the most a compressed frame may inflate to unless the venue says otherwise
DEFAULT_MAX_INFLATED_BYTES = 16 * 1024 * 1024
_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "deflate": -zlib.MAX_WBITS}


class FrameError(ValueError):
    """A frame could not be turned into text (bad compression, bad encoding)."""


class BadValue(ValueError):
    """A number or timestamp from the wire that no row may hold (non-finite, negative, out of
    range, unparseable)."""


def inflate(frame: bytes, compression: str | None,
            max_bytes: int = DEFAULT_MAX_INFLATED_BYTES) -> bytes:
    """Return the decompressed payload of a binary frame, never more than ``max_bytes``.

    ``compression`` is ``"gzip"`` (one gzip member, as HTX sends), ``"deflate"`` (raw deflate,
    as OKX sends) or ``None``. A frame that would inflate past ``max_bytes`` (a decompression
    bomb), is truncated, or carries trailing bytes raises :class:`FrameError`; at most
    ``max_bytes`` are ever allocated. zlib is used directly: it is cheaper per frame than the
    ``gzip`` module and lets the output be bounded.
    """
    if compression is None:
        return frame
    wbits = _WBITS.get(compression)
    if wbits is None:
        raise FrameError(f"unknown compression {compression!r}")
    d = zlib.decompressobj(wbits)
    try:
        out = d.decompress(frame, max_bytes)
    except zlib.error as exc:
        raise FrameError(f"cannot inflate {compression} frame: {exc}") from exc
    if d.unconsumed_tail:
        raise FrameError(f"{compression} frame of {len(frame)} bytes inflates past the "
                         f"limit of {max_bytes} bytes")
    if not d.eof:
        raise FrameError(f"truncated {compression} frame ({len(frame)} bytes)")
    if d.unused_data:
        raise FrameError(f"{len(d.unused_data)} bytes after the end of the {compression} data")
    return out


def ms_to_ns(ms: int | float | str | None) -> int | None:
    """Milliseconds since the epoch (int, float or decimal string) to integer ns, checked to lie
    in the sane window (:data:`MIN_TS_NS` .. :data:`MAX_TS_NS`); anything else is
    :class:`BadValue`."""
    if ms is None or ms == "":
        return None
    try:
        ns = round(ms * MS_NS) if isinstance(ms, float) else int(ms) * MS_NS
    except (ValueError, TypeError, OverflowError) as exc:
        raise BadValue(f"bad millisecond timestamp {ms!r}") from exc
    if not MIN_TS_NS <= ns <= MAX_TS_NS:
        raise BadValue(f"timestamp {ms!r} ms is outside {MIN_TS_NS // MS_NS}..{MAX_TS_NS // MS_NS}")
    return ns


def check_ts_ns(ns: int) -> int:
    """``ns`` itself when it lies in the sane window, else :class:`BadValue`."""
    if not MIN_TS_NS <= ns <= MAX_TS_NS:
        raise BadValue(f"timestamp {ns} ns is outside {MIN_TS_NS}..{MAX_TS_NS}")
    return ns


@lru_cache(maxsize=4096)
def _utc_seconds(head: str) -> int:
    """``YYYY-MM-DDTHH:MM:SS`` (UTC) to epoch seconds; cached, as it changes once a second."""
    return calendar.timegm(datetime.fromisoformat(head).timetuple())


def iso_to_ns(text: str | None) -> int | None:
    """RFC 3339 timestamp with up to nanosecond digits (``2026-08-09T21:05:48.483587501Z``) to ns.

    ``datetime`` keeps only microseconds, so the fraction is read separately to keep all digits.
    The common UTC form is parsed by slicing with the whole-seconds part cached; other offsets
    go through ``datetime``. Unparseable text and times outside the sane window are
    :class:`BadValue`.
    """
    if not text:
        return None
    n = len(text)
    if 21 <= n <= 30 and text[19] == "." and text[-1] in "Zz":
        digits = text[20:-1]
        if digits.isdigit() and digits.isascii():
            try:
                seconds = _utc_seconds(text[:19])
            except ValueError as exc:
                raise BadValue(f"bad timestamp {text[:40]!r}") from exc
            return check_ts_ns(seconds * S_NS + int(digits.ljust(9, "0")))
    return _iso_to_ns_general(text)


def _iso_to_ns_general(text: str) -> int:
    main, _, frac_zone = text.partition(".")
    digits = ""
    zone = ""
    if frac_zone:
        i = 0
        while i < len(frac_zone) and frac_zone[i].isdigit():
            i += 1
        digits, zone = frac_zone[:i], frac_zone[i:]
    elif main.endswith(("Z", "z")):
        main, zone = main[:-1], "Z"
    if zone in ("Z", "z", ""):
        zone = "+00:00"
    if len(digits) > 9:
        raise BadValue(f"bad timestamp {text[:40]!r}: more than nanosecond digits")
    try:
        seconds = datetime.fromisoformat(main + zone).timestamp()
    except ValueError as exc:
        raise BadValue(f"bad timestamp {text[:40]!r}") from exc
    frac_ns = int(digits.ljust(9, "0")) if digits else 0
    return check_ts_ns(round(seconds) * S_NS + frac_ns)


def levels_from_text(levels: Sequence[Sequence[str]], scale: float = 1.0) -> list[Level]:
    """``[["65114.20", "6.054"], ...]`` to ``[(65114.2, 6.054), ...]``, sizes times ``scale``.

    For venues whose levels must stay text (checksummed books); wherever the text is not needed,
    decode straight to :data:`WireLevel` instead, which is cheaper. Every price must be finite and
    positive and every size finite and non-negative, else :class:`BadValue`.
    """
    try:
        first = levels[0] if levels else None
        if type(first) is list and len(first) > 2:  # [price, size, ...] rows (OKX): no retry
            if scale == 1.0:
                out = [(float(p), float(s)) for p, s, *_ in levels]
            else:
                out = [(float(p), float(s) * scale) for p, s, *_ in levels]
        else:
            try:  # [price, size] pairs: the common case, unpacked without a starred target
                if scale == 1.0:
                    out = [(float(p), float(s)) for p, s in levels]
                else:
                    out = [(float(p), float(s) * scale) for p, s in levels]
            except ValueError:  # [price, size, ...] with extra fields (or a bad number: retried)
                if scale == 1.0:
                    out = [(float(p), float(s)) for p, s, *_ in levels]
                else:
                    out = [(float(p), float(s) * scale) for p, s, *_ in levels]
    except (ValueError, TypeError) as exc:
        raise BadValue(f"bad price level: {exc}") from exc
    for p, s in out:
        if not (0.0 < p < INF and 0.0 <= s < INF):
            raise BadValue(f"bad price level ({p!r}, {s!r})")
    return out


def check_level(price: float, size: float) -> Level:
    """One level, checked like :func:`levels_from_text` checks each of its levels."""
    if not (0.0 < price < INF and 0.0 <= size < INF):
        raise BadValue(f"bad price level ({price!r}, {size!r})")
    return price, size


def check_price(value: float) -> float:
    """A finite, positive price (a trade's, a ticker's), else :class:`BadValue`."""
    if not 0.0 < value < INF:
        raise BadValue(f"bad price {value!r}")
    return value


def check_size(value: float) -> float:
    """A finite, non-negative size, else :class:`BadValue`."""
    if not 0.0 <= value < INF:
        raise BadValue(f"bad size {value!r}")
    return value
