"""Raw-frame recording: the exact bytes each venue sent, every frame we sent, every connect and
close, every timer firing and every REST response a plugin used, so that a run can be replayed
through the same plugins later (``--replay``).

The session calls the :class:`Recorder` methods synchronously on its reader path; they only
append to a memory buffer. :class:`RawRecorder.run` (a task in the supervisor's nursery) writes
the buffers every ``flush_interval_s`` in a worker thread, each flush as one complete gzip member
appended to the venue's current file::

    <out>/raw/exchange=<venue>/date=<YYYY-MM-DD>/raw-<run>-<n>.jsonl.gz

One JSON object per line (format in ``docs/data.md``): ``ts`` (UTC ns), ``conn``, ``kind``
(``meta``, ``http``, ``open``, ``recv``, ``send``, ``timer``, ``rest``, ``handover``,
``close``, ``stop``), ``exchange``, and ``text`` for text frames or ``b64`` for binary frames
kept byte-exact. Every file starts with the venue's ``meta`` and ``http`` records, so each file
replays on its own.

:class:`NullRecorder` is the default and does nothing. Must not: do file I/O on the trio thread.
"""

from __future__ import annotations

import base64
import gzip
import logging
import time
from pathlib import Path
from typing import Protocol

import msgspec
import trio

log = logging.getLogger(__name__)

DEFAULT_RAW_FLUSH_S = 1.0
RAW_ROLL_BYTES = 512 * 1024 * 1024  # compressed bytes per file before a new one starts
DAY_NS = 86_400 * 1_000_000_000


class Recorder(Protocol):
    def opened(self, venue: str, conn: int, url: str, ts_ns: int, *, lane: str = "") -> None: ...
    def received(self, venue: str, conn: int, ts_ns: int, frame: str | bytes) -> None: ...
    def sent(self, venue: str, conn: int, ts_ns: int, frame: str | bytes) -> None: ...
    def timer(self, venue: str, conn: int, ts_ns: int) -> None: ...
    def rest(self, venue: str, conn: int, ts_ns: int, key: str, url: str, status: int,
             body: bytes, error: str | None, *, sent_ns: int | None = None) -> None: ...
    def handover(self, venue: str, conn: int, ts_ns: int, detail: str) -> None: ...
    def closed(self, venue: str, conn: int, ts_ns: int, reason: str, *,
               lane: str = "") -> None: ...


class NullRecorder:
    def opened(self, venue: str, conn: int, url: str, ts_ns: int, *, lane: str = "") -> None:
        pass

    def received(self, venue: str, conn: int, ts_ns: int, frame: str | bytes) -> None:
        pass

    def sent(self, venue: str, conn: int, ts_ns: int, frame: str | bytes) -> None:
        pass

    def timer(self, venue: str, conn: int, ts_ns: int) -> None:
        pass

    def rest(self, venue: str, conn: int, ts_ns: int, key: str, url: str, status: int,
             body: bytes, error: str | None, *, sent_ns: int | None = None) -> None:
        pass

    def handover(self, venue: str, conn: int, ts_ns: int, detail: str) -> None:
        pass

    def closed(self, venue: str, conn: int, ts_ns: int, reason: str, *,
               lane: str = "") -> None:
        pass


class RawRecord(msgspec.Struct, omit_defaults=True):
    """One line of a raw file."""

    ts: int
    conn: int
    kind: str
    exchange: str
    url: str | None = None
    text: str | None = None
    b64: str | None = None
    reason: str | None = None
    symbols: list[str] | None = None
    channels: list[str] | None = None
    options: dict[str, str] | None = None
    lane: str | None = None  # open/close of a venue with several websocket endpoints
    key: str | None = None  # rest: the plugin's name for the call
    status: int | None = None  # rest: the HTTP status (0: no response)
    sent: int | None = None  # rest: when the request was sent (UTC ns)


_encoder = msgspec.json.Encoder()


def frame_fields(frame: str | bytes) -> tuple[str | None, str | None]:
    """``(text, b64)`` of a frame: text frames as they are, binary frames base64-encoded."""
    if isinstance(frame, bytes):
        return None, base64.b64encode(frame).decode()
    return frame, None


class _VenueFile:
    """Where one venue's raw lines go, and the lines every new file must start with."""

    def __init__(self) -> None:
        self.lines: list[bytes] = []
        self.preamble: list[bytes] = []
        self.day: int | None = None
        self.path: Path | None = None
        self.size = 0


class RawRecorder:
    def __init__(self, out: Path, run_id: str, *,
                 flush_interval_s: float = DEFAULT_RAW_FLUSH_S) -> None:
        self.out = Path(out) / "raw"
        self.run_id = run_id
        self.flush_interval_s = flush_interval_s
        self._venues: dict[str, _VenueFile] = {}
        self._file_no = 0
        self.records = 0

    # -- what to record (synchronous, buffering only) ------------------------------------------

    def meta(self, venue: str, ts_ns: int, url: str, symbols: list[str], channels: list[str],
             options: dict[str, str]) -> None:
        """What this venue was asked for; needed to replay its frames."""
        line = self._line(RawRecord(ts=ts_ns, conn=0, kind="meta", exchange=venue, url=url,
                                    symbols=symbols, channels=channels, options=options))
        vf = self._venue(venue)
        vf.preamble.append(line)
        vf.lines.append(line)

    def http(self, venue: str, url: str, ts_ns: int, body: bytes) -> None:
        text, b64 = _body_fields(body)
        line = self._line(RawRecord(ts=ts_ns, conn=0, kind="http", exchange=venue, url=url,
                                    text=text, b64=b64))
        vf = self._venue(venue)
        vf.preamble.append(line)
        vf.lines.append(line)

    def opened(self, venue: str, conn: int, url: str, ts_ns: int, *, lane: str = "") -> None:
        self._add(venue, RawRecord(ts=ts_ns, conn=conn, kind="open", exchange=venue, url=url,
                                   lane=lane or None))

    def received(self, venue: str, conn: int, ts_ns: int, frame: str | bytes) -> None:
        text, b64 = frame_fields(frame)
        self._add(venue, RawRecord(ts=ts_ns, conn=conn, kind="recv", exchange=venue,
                                   text=text, b64=b64))

    def sent(self, venue: str, conn: int, ts_ns: int, frame: str | bytes) -> None:
        text, b64 = frame_fields(frame)
        self._add(venue, RawRecord(ts=ts_ns, conn=conn, kind="send", exchange=venue,
                                   text=text, b64=b64))

    def timer(self, venue: str, conn: int, ts_ns: int) -> None:
        self._add(venue, RawRecord(ts=ts_ns, conn=conn, kind="timer", exchange=venue))

    def rest(self, venue: str, conn: int, ts_ns: int, key: str, url: str, status: int,
             body: bytes, error: str | None, *, sent_ns: int | None = None) -> None:
        """A plugin REST call's outcome, body byte-exact (replayed into ``rest_response``)."""
        text, b64 = _body_fields(body)
        self._add(venue, RawRecord(ts=ts_ns, conn=conn, kind="rest", exchange=venue, url=url,
                                   key=key, status=status, sent=sent_ns, reason=error,
                                   text=text, b64=b64))

    def handover(self, venue: str, conn: int, ts_ns: int, detail: str) -> None:
        """The connections opened last (``conn`` is the first of them) replaced the previous
        ones (see :mod:`core.connections`)."""
        self._add(venue, RawRecord(ts=ts_ns, conn=conn, kind="handover", exchange=venue,
                                   reason=detail))

    def closed(self, venue: str, conn: int, ts_ns: int, reason: str, *,
               lane: str = "") -> None:
        self._add(venue, RawRecord(ts=ts_ns, conn=conn, kind="close", exchange=venue,
                                   reason=reason, lane=lane or None))

    def stop(self, ts_ns: int) -> None:
        """End of run (the replay stamps its end-of-run rows with this time)."""
        for venue in self._venues:
            self._add(venue, RawRecord(ts=ts_ns, conn=0, kind="stop", exchange=venue))

    # -- writing -------------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Flush periodically until cancelled, then flush what is left (shielded)."""
        task_status.started()
        try:
            while True:
                await trio.sleep(self.flush_interval_s)
                await self.flush()
        finally:
            with trio.CancelScope(shield=True):
                await self.flush()

    async def flush(self) -> None:
        batches = []
        for venue, vf in self._venues.items():
            if vf.lines:
                batches.append((venue, vf, vf.lines))
                vf.lines = []
        if batches:
            await trio.to_thread.run_sync(self._write, batches)

    def _write(self, batches: list[tuple[str, _VenueFile, list[bytes]]]) -> None:
        for venue, vf, lines in batches:
            day = _day_of(lines[-1])
            if vf.path is None or day != vf.day or vf.size >= RAW_ROLL_BYTES:
                self._file_no += 1
                date = time.strftime("%Y-%m-%d", time.gmtime(day * 86_400))
                directory = self.out / f"exchange={venue}" / f"date={date}"
                directory.mkdir(parents=True, exist_ok=True)
                vf.path = directory / f"raw-{self.run_id}-{self._file_no:06d}.jsonl.gz"
                vf.day, vf.size = day, 0
                if vf.preamble and lines[: len(vf.preamble)] != vf.preamble:
                    lines = vf.preamble + lines
            member = gzip.compress(b"".join(lines), compresslevel=6)
            with vf.path.open("ab") as fh:
                fh.write(member)
            vf.size += len(member)

    # -- internals -----------------------------------------------------------------------------

    def _venue(self, venue: str) -> _VenueFile:
        vf = self._venues.get(venue)
        if vf is None:
            vf = self._venues[venue] = _VenueFile()
        return vf

    def _line(self, record: RawRecord) -> bytes:
        self.records += 1
        return _encoder.encode(record) + b"\n"

    def _add(self, venue: str, record: RawRecord) -> None:
        self._venue(venue).lines.append(self._line(record))


def _body_fields(body: bytes) -> tuple[str | None, str | None]:
    """``(text, b64)`` of a body: UTF-8 as text, anything else base64-encoded."""
    try:
        return body.decode("utf-8"), None
    except UnicodeDecodeError:
        return None, base64.b64encode(body).decode()


def _day_of(line: bytes) -> int:
    ts = msgspec.json.decode(line, type=RawRecord).ts
    return ts // DAY_NS
