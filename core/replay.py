"""Replay raw recordings (``--record-raw`` files) through the same plugins, books and writer.

Each venue's files are read in order (one run after another) and every record is re-enacted
exactly as the live session enacted it, with the recorded receive time: ``open`` -> the
``connected`` row and ``connection_made``; ``recv`` -> ``receive``; ``timer`` -> ``on_deadline``;
``close`` -> the ``disconnected`` row and ``connection_lost``; ``rest`` -> ``rest_response``
(the recorded outcome of a plugin REST call); ``handover`` -> the switch to the connections that
replaced the previous ones (:mod:`core.handover`); ``stop`` -> the end-of-run rows. Frames and
REST calls the protocol would send are discarded (the recording already holds what was sent and
what came back). The
protocol of each run is built from the run's ``meta`` record and the instrument metadata in its
``http`` records, so the output is deterministic: the same files give the same rows.

Venues are replayed one after the other (their tables are separate partitions, so the
interleaving does not matter), as fast as the writer takes the rows (the replay waits for room in
the writer's buffer instead of dropping).

Must not: read clocks for row times; every time comes from the recording.
"""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import msgspec
import trio

from core.bus import Bus, Policy
from core.handover import Handover
from core.plugins import ExchangeRegistry
from core.protocol import ExchangeProtocol, Instrument, ProtocolConfig
from core.recording import RawRecord
from core.schema import Event, Health, HealthKind
from core.supervisor import publish_produced, started_row
from core.testing.captures import open_text
from core.writers.parquet import DEFAULT_FLUSH_INTERVAL_S, DEFAULT_FLUSH_ROWS, ParquetWriter

log = logging.getLogger(__name__)

_RAW_NAME = re.compile(r"raw-(?P<run>.+)-(?P<n>\d+)\.jsonl(\.gz)?$")
_decoder = msgspec.json.Decoder(RawRecord)


class ReplayError(RuntimeError):
    """The recording cannot be replayed (unknown plugin, no meta record, ...)."""


class ReplayClock:
    """The time of the record being replayed; stamps end-of-run rows."""

    def __init__(self) -> None:
        self.ts = 0

    def now_ns(self) -> int:
        return self.ts


@dataclass
class VenueReplay:
    venue: str
    files: list[Path] = field(default_factory=list)


def find_raw_files(path: Path) -> dict[str, list[Path]]:
    """Venue -> its raw files in recording order (run, then file number)."""
    files = [path] if path.is_file() else sorted(path.rglob("raw-*.jsonl*"))
    by_venue: dict[str, list[tuple[str, int, Path]]] = {}
    for f in files:
        m = _RAW_NAME.search(f.name)
        if m is None:
            raise ReplayError(f"{f} is not a raw recording file (raw-<run>-<n>.jsonl.gz)")
        venue = _venue_of(f)
        by_venue.setdefault(venue, []).append((m["run"], int(m["n"]), f))
    return {v: [f for _, _, f in sorted(items)] for v, items in sorted(by_venue.items())}


def _venue_of(f: Path) -> str:
    for part in reversed(f.parts):
        if part.startswith("exchange="):
            return part.split("=", 1)[1]
    for line in open_text(f):
        return _decoder.decode(line).exchange
    raise ReplayError(f"{f} is empty")


def read_raw(f: Path) -> Iterator[RawRecord]:
    """Records of one file; a final gzip member cut short by a crash ends the file quietly."""
    try:
        for line in open_text(f):
            if line.strip():
                yield _decoder.decode(line)
    except EOFError:
        log.warning("%s ends with an incomplete block (the recorder was killed); "
                    "replaying what precedes it", f)


CURRENT = "current"
SHADOW = "shadow"
RETIRED = "retired"


@dataclass(eq=False)
class _Conn:
    """One recorded connection: its lane, the protocol its records go to, and its role."""

    lane: str
    proto: ExchangeProtocol
    role: str
    open: bool = True


class _Run:
    """Replays one venue's records, run after run.

    Records are routed by connection number. A venue whose one connection is several sockets
    (lanes), or whose connections are replaced before an age limit, is replayed exactly as
    :mod:`core.connections` ran it live: an ``open`` while the same lane has a current connection
    starts a replacement (a *shadow*) with a fresh protocol; the shadow's events are held back by
    the same :class:`core.handover.Handover` and published at the recorded ``handover``.
    """

    def __init__(self, venue: str, registry: ExchangeRegistry, bus: Bus,
                 clock: ReplayClock) -> None:
        if venue not in registry:
            raise ReplayError(f"no plugin named {venue!r} is installed; installed: "
                              f"{', '.join(registry.names())}")
        self.proto_cls: type[ExchangeProtocol] = registry.get(venue)
        self.venue = venue
        self.bus = bus
        self.clock = clock
        self.config: ProtocolConfig | None = None
        self.instruments: dict[str, Instrument] = {}
        self.run_id: str | None = None
        self.started: set[str | None] = set()
        self.stop_ts: int | None = None
        self.records = 0
        # venues run by core.connections get its routing (trade de-duplication, handovers)
        self.routed = bool(self.proto_cls.lanes or self.proto_cls.max_connection_age_s)
        self.lane_protos: dict[str, ExchangeProtocol] = {}
        self.conns: dict[int, _Conn] = {}
        self.handover = Handover(venue)

    async def file(self, f: Path) -> None:
        m = _RAW_NAME.search(f.name)
        run_id = m["run"] if m else f.name
        if run_id != self.run_id:
            self.run_id = run_id
            self._restart()
            self.instruments = {}
            self.config = None
        for rec in read_raw(f):
            self.records += 1
            self.clock.ts = rec.ts
            await self.record(rec)

    async def record(self, rec: RawRecord) -> None:
        kind = rec.kind
        started = bool(self.lane_protos or self.conns)
        if kind == "meta":
            if not started:
                self.config = ProtocolConfig(symbols=tuple(rec.symbols or ()),
                                             channels=tuple(rec.channels or ()),
                                             options=dict(rec.options or {}))
            if self.run_id not in self.started:  # files of one run repeat their meta record
                self.started.add(self.run_id)
                await self._publish([started_row(self.venue, rec.ts, rec.symbols or [],
                                                 rec.channels or [], rec.url or "")])
            return
        if kind == "http":
            if not started and rec.text is not None:
                self.instruments = self.proto_cls.parse_instruments(rec.text.encode())
            return
        if kind in ("send", "stop"):
            if kind == "stop":
                self.stop_ts = rec.ts
            return
        if kind == "open":
            await self._open(rec)
        elif kind == "close":
            await self._close(rec)
        elif kind == "handover":
            await self._handover(rec)
        else:
            conn = self.conns.get(rec.conn)
            if conn is None or conn.role == RETIRED or not conn.open:
                return  # a connection given up (a dropped replacement, a retired one)
            proto = conn.proto
            if kind == "recv":
                frame = base64.b64decode(rec.b64) if rec.b64 is not None else rec.text or ""
                await self._call(conn, proto.receive, frame, rec.ts)
            elif kind == "timer":
                await self._call(conn, proto.on_deadline, rec.ts)
            elif kind == "rest":
                body = base64.b64decode(rec.b64) if rec.b64 is not None else \
                    (rec.text or "").encode()
                await self._call(conn, partial(proto.rest_response, sent_ns=rec.sent),
                                 rec.key or "", rec.status or 0, body, rec.ts, rec.reason)

    async def _open(self, rec: RawRecord) -> None:
        lane = rec.lane or ""
        busy = any(c.role == CURRENT and c.open and c.lane == lane for c in self.conns.values())
        if busy:  # a replacement opened beside the current connection
            conn = _Conn(lane, self.proto_cls(self._lane_config(lane)), SHADOW)
        else:
            conn = _Conn(lane, self._lane_proto(lane), CURRENT)
        self.conns[rec.conn] = conn
        await self._emit(conn.role, [Health(exchange=self.venue, ts_local=rec.ts, symbol=None,
                                            event=HealthKind.CONNECTED,
                                            detail=f"{rec.url} conn={rec.conn}")])
        await self._call(conn, conn.proto.connection_made, rec.ts)

    async def _close(self, rec: RawRecord) -> None:
        conn = self.conns.get(rec.conn)
        if conn is None or rec.conn == 0:  # an attempt that never opened, or before a restart
            conn = _Conn(rec.lane or "", self._lane_proto(rec.lane or ""), CURRENT, open=False)
        elif conn.role == SHADOW:  # the replacement was given up: nothing was published
            for c in self.conns.values():
                if c.role == SHADOW:
                    c.role = RETIRED
            self.handover.discard()
            return
        elif conn.role == RETIRED or not conn.open:
            return
        conn.open = False
        await self._emit(CURRENT, [Health(exchange=self.venue, ts_local=rec.ts, symbol=None,
                                          event=HealthKind.DISCONNECTED,
                                          detail=rec.reason or "")])
        await self._call(conn, conn.proto.connection_lost, rec.ts)

    async def _handover(self, rec: RawRecord) -> None:
        lanes = [lane.name for lane, _ in self.proto_cls.lane_plan(self._full_config())]
        shadows = {c.lane: c for c in self.conns.values() if c.role == SHADOW}
        currents = [c for c in self.conns.values() if c.role == CURRENT]
        old = [self._lane_proto(lane) for lane in lanes]
        new = [shadows[lane].proto if lane in shadows else
               self.proto_cls(self._lane_config(lane)) for lane in lanes]
        old_lost = not any(c.open for c in currents)
        events = self.handover.switch(rec.ts, old, new, old_lost=old_lost,
                                      detail=rec.reason or "")
        for c in currents:
            c.role = RETIRED
        for c in shadows.values():
            c.role = CURRENT
        self.lane_protos = dict(zip(lanes, new, strict=True))
        await self._publish(events)

    def _restart(self) -> None:
        """A fresh start of the venue (a new run, or after a plugin error)."""
        self.lane_protos = {}
        self.conns = {}
        self.handover = Handover(self.venue)

    def _full_config(self) -> ProtocolConfig:
        if self.config is None:
            raise ReplayError(f"{self.venue}: frames before any meta record; the file was "
                              "not written by --record-raw")
        return ProtocolConfig(symbols=self.config.symbols, channels=self.config.channels,
                              options=self.config.options, instruments=self.instruments)

    def _lane_config(self, lane: str) -> ProtocolConfig:
        for plan_lane, config in self.proto_cls.lane_plan(self._full_config()):
            if plan_lane.name == lane:
                return config
        raise ReplayError(f"{self.venue}: recorded lane {lane!r} is not one of the plugin's")

    def _lane_proto(self, lane: str) -> ExchangeProtocol:
        proto = self.lane_protos.get(lane)
        if proto is None:
            proto = self.lane_protos[lane] = self.proto_cls(self._lane_config(lane))
        return proto

    async def _call(self, conn: _Conn, method: object, *args: object) -> None:
        try:
            events = method(*args)  # type: ignore[operator]
        # Same boundary as the live supervisor: a plugin bug is recorded and the venue restarts
        # with a fresh protocol, so the replay reproduces the live run's rows.
        except Exception as exc:
            detail = f"{type(exc).__name__}: {exc}"
            await self._publish([Health(exchange=self.venue, ts_local=self.clock.ts, symbol=None,
                                        event=HealthKind.PLUGIN_ERROR, detail=detail[:2000])])
            self._restart()
            return
        conn.proto.frames_to_send()
        conn.proto.urgent_frames_to_send()
        conn.proto.rest_requests_to_send()
        await self._emit(conn.role, events)

    async def _emit(self, role: str, events: Sequence[Event]) -> None:
        if not events:
            return
        if not self.routed:
            await self._publish(events)
        elif role == CURRENT:
            await self._publish(self.handover.current(events))
        elif role == SHADOW:
            self.handover.hold(events)

    async def _publish(self, events: Sequence[Event]) -> None:
        if events:
            await self.bus.publish_wait(events)


async def replay(path: Path, registry: ExchangeRegistry, out: Path, *,
                 venues: Sequence[str] | None = None, flush_rows: int = DEFAULT_FLUSH_ROWS,
                 flush_interval_s: float = DEFAULT_FLUSH_INTERVAL_S) -> dict[str, int]:
    """Replay every raw file under ``path`` into tables under ``out``; return records per
    venue."""
    files = find_raw_files(path)
    if venues:
        files = {v: f for v, f in files.items() if v in venues}
    if not files:
        raise ReplayError(f"no raw recording files under {path}")
    clock = ReplayClock()
    bus = Bus()
    writer = ParquetWriter(out, flush_rows=flush_rows, flush_interval_s=flush_interval_s,
                           clock=clock)
    sub = bus.subscribe("parquet", policy=Policy.LOSSLESS)
    counts: dict[str, int] = {}
    runs: list[_Run] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run, sub)
        try:
            for venue, venue_files in files.items():
                run = _Run(venue, registry, bus, clock)
                runs.append(run)
                for f in venue_files:
                    await run.file(f)
                counts[venue] = run.records
        finally:
            stops = [r.stop_ts for r in runs if r.stop_ts is not None]
            clock.ts = max(stops) if stops else clock.ts
            writer.end_ns = clock.ts
            publish_produced(bus, clock)
            bus.close()
    return counts
