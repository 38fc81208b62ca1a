"""Each venue's clock offset for the exchange-clock timeline: measured by the recorder, or given.

The recorder measures every venue's clock against its own, NTP-style, from the venue's REST
server time when a connection opens and every few minutes (``clock_offset`` health rows,
:mod:`core.clock_sync`): ``offset_ms`` is local minus venue time, so ``ts_exchange + offset`` is
the venue's time on the recorder's clock. :func:`resolve_offsets` takes, per venue, the median of
the estimates recorded in the analysed window (bursts with no estimate are skipped); a
``--clock-offset-ms VENUE=MS`` flag overrides a venue's; a venue with neither gets 0. Each
offset comes with where it came from, for the report.

A median over the window, not a curve: clock drift between two bursts (minutes apart) is far
below the offsets' own uncertainty (half a REST round trip, milliseconds), and one number per
venue keeps the exchange-clock timeline a plain shift of each venue's times.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import polars as pl

from analysis.load import scan, venues
from core.clock_sync import parse_detail
from core.schema import HealthKind


@dataclass(frozen=True)
class Offset:
    venue: str
    offset_ms: float
    source: str  # "measured", "flag" or "none"
    bursts: int = 0  # clock_offset rows with an estimate (measured)
    rtt_ms: float | None = None  # median round trip of those bursts

    def describe(self) -> str:
        if self.source == "flag":
            return f"{self.venue} {self.offset_ms:+.3f} ms (--clock-offset-ms)"
        if self.source == "measured":
            return (f"{self.venue} {self.offset_ms:+.3f} ms (median of {self.bursts} "
                    f"clock_offset bursts, round trip {self.rtt_ms:.1f} ms)")
        return f"{self.venue} 0 ms (no clock_offset rows, no --clock-offset-ms)"


def measured_offsets(data: Path, wanted: list[str], start: datetime | None = None,
                     end: datetime | None = None) -> pl.DataFrame:
    """Every ``clock_offset`` estimate of ``wanted`` venues in the window: exchange, ts_local,
    offset_ms, rtt_ms (empty when there is no health table)."""
    have = [v for v in wanted if v in venues(data, "health")]
    schema = {"exchange": pl.String(), "ts_local": pl.Datetime("ns", "UTC"),
              "offset_ms": pl.Float64(), "rtt_ms": pl.Float64()}
    if not have:
        return pl.DataFrame(schema=schema)
    rows = (scan(data, "health", exchanges=have, start=start, end=end)
            .filter(pl.col("event") == HealthKind.CLOCK_OFFSET)
            .select("exchange", "ts_local", "detail").collect())
    out = []
    for ex, ts, detail in rows.iter_rows():
        est = parse_detail(detail or "")
        if est is not None:
            out.append((ex, ts, est["offset_ms"], est["rtt_ms"]))
    return pl.DataFrame(out, schema=schema, orient="row")


def resolve_offsets(data: Path, wanted: list[str], flags: Mapping[str, float],
                    start: datetime | None = None,
                    end: datetime | None = None) -> dict[str, Offset]:
    """Per venue: the flag's offset, else the median measured one, else 0."""
    measured = measured_offsets(data, [v for v in wanted if v not in flags], start, end)
    out: dict[str, Offset] = {}
    for venue in wanted:
        if venue in flags:
            out[venue] = Offset(venue, float(flags[venue]), "flag")
            continue
        mine = measured.filter(pl.col("exchange") == venue)
        if mine.height:
            out[venue] = Offset(venue, float(mine["offset_ms"].median()),  # type: ignore[arg-type]
                                "measured", mine.height,
                                float(mine["rtt_ms"].median()))  # type: ignore[arg-type]
        else:
            out[venue] = Offset(venue, 0.0, "none")
    return out


__all__ = ["Offset", "measured_offsets", "resolve_offsets"]
