"""The end of a recording run: one summary line per venue on stderr, and the exit code.

Exit codes (``docs/cli.md``):

* 0: every selected venue delivered market data and nothing was lost;
* 1: data could not be written (a file failed; its ``write_failed`` row says which);
* 2: a usage error, before any connection (``core.run``);
* 3: data was lost: events dropped by a full buffer, rejected by the writer, or abandoned by the
  final flush, or any other difference between what the venues produced and what was written;
* 4: a selected venue never delivered market data (no ``tob``, ``l2``, ``trades`` or
  ``funding`` event).

When several apply, the lowest non-zero code wins (1, then 3, then 4).

Pure formatting over a :class:`core.supervisor.RunResult`: no I/O here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from core.codec import S_NS
from core.supervisor import RunResult
from core.tables import table_of_kind, tables_in_order

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_DATA_LOST: Final = 3
EXIT_NO_DATA: Final = 4


@dataclass(frozen=True)
class Outcome:
    code: int
    reason: str


def produced_by_table(result: RunResult) -> dict[tuple[str, str], int]:
    out: dict[tuple[str, str], int] = {}
    for (venue, kind), n in result.produced.items():
        key = (table_of_kind(kind), venue)
        out[key] = out.get(key, 0) + n
    return out


def unwritten(result: RunResult) -> int:
    """Events the venues (and live analyzers) published that some output did not deliver (of
    the tables it takes: ``output.tables``, when it has that attribute and it is not None)."""
    by_table = produced_by_table(result)
    worst = 0
    for o in result.outputs:
        tables = getattr(o, "tables", None)
        produced = sum(n for (t, _), n in by_table.items() if tables is None or t in tables)
        worst = max(worst, produced - sum(o.events_written.values()))
    return worst


def outcome(result: RunResult) -> Outcome:
    failures = result.failures()
    if failures:
        return Outcome(EXIT_FAILED, f"data could not be written: {failures[0]}")
    lost = unwritten(result)
    if lost or result.lost_events():
        parts = []
        if result.dropped:
            parts.append(f"{result.dropped} dropped by a full buffer")
        rejected = sum(sum(getattr(o, "rejected", {}).values()) for o in result.outputs)
        abandoned = sum(sum(getattr(o, "abandoned", {}).values()) for o in result.outputs)
        if rejected:
            parts.append(f"{rejected} rejected by the writer")
        if abandoned:
            parts.append(f"{abandoned} abandoned by the final flush")
        detail = ", ".join(parts) or "produced and written counts differ"
        return Outcome(EXIT_DATA_LOST, f"{max(lost, result.lost_events())} events lost "
                                       f"({detail})")
    wanted = result.venues if result.selected is None else result.selected
    silent = [v for v in wanted if result.market_events(v) == 0]
    if silent:
        return Outcome(EXIT_NO_DATA, f"no market data from {', '.join(sorted(silent))}")
    return Outcome(EXIT_OK, "every venue delivered data and nothing was lost")


def _duration(ns: int) -> str:
    s = max(ns, 0) // S_NS
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}h{m:02d}m{sec:02d}s" if h else f"{m}m{sec:02d}s"


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000  # type: ignore[assignment]
    return f"{n} B"


def summary_lines(result: RunResult) -> list[str]:
    """One line per venue, then the run's totals and its outcome."""
    writer = result.writer
    elapsed = result.ended_ns - result.started_ns
    drops = result.dropped_by_venue
    lines = []
    for venue, st in sorted(result.venues.items()):
        if writer is not None:
            rows = " ".join(f"{t}={writer.rows_written.get((t, venue), 0):,}"
                            for t in tables_in_order() if (t, venue) in writer.rows_written)
            files = (f"{writer.files_by_venue.get(venue, 0)} files, "
                     f"{_size(writer.bytes_by_venue.get(venue, 0))}")
        else:
            written = result.outputs[0].events_written if result.outputs else {}
            rows = " ".join(f"{t}={written.get((t, venue), 0):,}"
                            for t in tables_in_order() if (t, venue) in written)
            files = "no files"
        lines.append(
            f"{venue}: connected {_duration(st.connected_ns(result.ended_ns))} of "
            f"{_duration(elapsed)}, {st.messages:,} messages; rows {rows or 'none'}; "
            f"{files}; gaps {st.gaps}, resyncs "
            f"{st.resyncs}, reconnects {st.reconnects}, decode errors {st.decode_errors}, "
            f"dropped {drops.get(venue, 0)}")
    outputs = "; ".join(o.describe() for o in result.outputs) or "no output"
    lines.append(f"total: {outputs}; longest event-loop stall {result.max_stall_ms:.1f} ms")
    result_outcome = outcome(result)
    lines.append(f"exit code {result_outcome.code}: {result_outcome.reason}")
    return lines
