"""Read recorded websocket sessions: bookwire's raw format and the cryptofeed capture format.

Both are JSON lines (optionally gzip-compressed). A record is normalized to :class:`Record`:
``kind`` is ``open``/``recv``/``send``/``close``/``http``; ``frame`` is the text or the raw bytes.

Pure file reading; no network.
"""

from __future__ import annotations

import base64
import gzip
from collections.abc import Iterator
from pathlib import Path

import msgspec

_KIND = {"connect": "open", "recv": "recv", "send": "send", "http": "http", "close": "close",
         "open": "open", "disconnect": "close"}


class Record(msgspec.Struct, frozen=True):
    kind: str
    ts_ns: int
    conn: str
    frame: str | bytes | None = None
    url: str | None = None
    exchange: str | None = None


class _Line(msgspec.Struct):
    # bookwire raw format
    kind: str | None = None
    ts: int | float | None = None
    conn: str | int | None = None
    text: str | None = None
    b64: str | None = None
    url: str | None = None
    exchange: str | None = None
    # cryptofeed format
    t: str | None = None
    data: str | None = None
    addr: str | None = None


_decoder = msgspec.json.Decoder(_Line)


def open_text(path: str | Path) -> Iterator[str]:
    p = Path(path)
    opener = gzip.open if p.suffix == ".gz" else open
    with opener(p, "rt", encoding="utf-8") as fh:
        yield from fh


def read_records(path: str | Path) -> Iterator[Record]:
    """Yield every frame-level record of a capture, in file order."""
    for line in open_text(path):
        if not line.strip():
            continue
        raw = _decoder.decode(line)
        kind = _KIND.get(raw.kind or raw.t or "")
        if kind is None:
            continue  # header lines and unknown record types
        ts = raw.ts or 0
        ts_ns = int(ts) if isinstance(ts, int) else round(ts * 1e9)
        frame: str | bytes | None
        if raw.b64 is not None:
            frame = base64.b64decode(raw.b64)
        else:
            frame = raw.text if raw.text is not None else raw.data
        yield Record(kind=kind, ts_ns=ts_ns, conn=str(raw.conn), frame=frame,
                     url=raw.url or raw.addr, exchange=raw.exchange)
