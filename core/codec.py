"""Pure helpers shared by venue protocols: frame inflation and timestamp/number conversion.

No I/O, no clocks, no trio. Everything here is called on the hot path, so it stays small.
"""

from __future__ import annotations

import zlib
from datetime import datetime

MS_NS = 1_000_000
S_NS = 1_000_000_000
#: the most a compressed frame may inflate to unless the venue says otherwise
DEFAULT_MAX_INFLATED_BYTES = 16 * 1024 * 1024
_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "deflate": -zlib.MAX_WBITS}


class FrameError(ValueError):
    """A frame could not be turned into text (bad compression, bad encoding)."""


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
    """Milliseconds since the epoch (int, float or decimal string) to integer ns."""
    if ms is None or ms == "":
        return None
    return int(ms) * MS_NS if not isinstance(ms, float) else round(ms * MS_NS)


def iso_to_ns(text: str | None) -> int | None:
    """RFC 3339 timestamp with up to nanosecond digits (``2026-08-09T21:05:48.483587501Z``) to ns.

    ``datetime`` keeps only microseconds, so the fraction is parsed by hand to keep all digits.
    """
    if not text:
        return None
    main, _, frac_zone = text.partition(".")
    if frac_zone:
        digits = ""
        for ch in frac_zone:
            if ch.isdigit():
                digits += ch
            else:
                break
        zone = frac_zone[len(digits) :]
    else:
        digits = ""
        zone = ""
        if main.endswith("Z"):
            main, zone = main[:-1], "Z"
    if zone in ("Z", "z", ""):
        zone = "+00:00"
    seconds = datetime.fromisoformat(main + zone).timestamp()
    frac_ns = int((digits + "000000000")[:9]) if digits else 0
    return round(seconds) * S_NS + frac_ns


def levels_from_text(
    levels: list[list[str]] | list[tuple[str, str]], scale: float = 1.0
) -> list[tuple[float, float]]:
    """``[["65114.20", "6.054"], ...]`` to ``[(65114.2, 6.054), ...]``, sizes times ``scale``."""
    if scale == 1.0:
        return [(float(p), float(s)) for p, s, *_ in levels]
    return [(float(p), float(s) * scale) for p, s, *_ in levels]
