"""Pure helpers shared by venue protocols: frame inflation and timestamp/number conversion.

No I/O, no clocks, no trio. Everything here is called on the hot path, so it stays small.
"""

from __future__ import annotations

import gzip
import zlib
from datetime import datetime

MS_NS = 1_000_000
S_NS = 1_000_000_000


class FrameError(ValueError):
    """A frame could not be turned into text (bad compression, bad encoding)."""


def inflate(frame: bytes, compression: str | None) -> bytes:
    """Return the decompressed payload of a binary frame.

    ``compression`` is ``"gzip"``, ``"deflate"`` (raw deflate, as OKX sends) or ``None``.
    """
    try:
        if compression == "gzip":
            return gzip.decompress(frame)
        if compression == "deflate":
            return zlib.decompress(frame, -zlib.MAX_WBITS)
    except (OSError, zlib.error, EOFError) as exc:
        raise FrameError(f"cannot inflate {compression} frame: {exc}") from exc
    return frame


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
