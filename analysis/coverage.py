"""Data-quality coverage from the ``health`` ledger: when was each book trustworthy?

``python -m analysis.coverage --data DIR`` prints, per venue and symbol that was asked for, the
share of the recording with a trusted book, the numbers of gaps, resyncs and reconnects, and the
longest outage, and draws a timeline PNG of trusted and untrusted intervals.

* **What was asked for.** Every venue with rows in any table (``health``, ``tob``, ``l2``,
  ``trades``) plus those named with ``--venues``, except a name with only ``health`` rows and no
  ``started`` row in a recording that has them (a consumer's rows, such as the live spread
  analyzer's ``exchange=spread``); per venue, the symbols its ``started`` row
  lists (the recorder writes one per venue before connecting) and the symbols its rows name (a
  health row with a symbol, such as ``subscribed``, ``subscribe_error``, ``snapshot``, or a
  market-data row). A venue whose rows name no symbol at all is reported for every symbol the
  recording names; ``--symbols`` gives the list for every venue instead.
* **The span** is the whole recording: from its first row in any table to its last row in any
  table (the recorder's ``stopped`` rows included), or ``--start``/``--end``. Every venue and
  symbol is measured over that same span, so a venue that never connected is 0% trusted and a
  feed that died early is untrusted to the end.
* **The rule** (``core.schema``, stated in ``docs/data.md``): a symbol's book is trusted from a
  ``snapshot`` or ``resynced`` row for it until the next ``gap``, ``checksum_mismatch`` or
  ``crossed`` row for it, or a connection-wide break of its venue (``disconnected``,
  ``plugin_error``, ``dropped``, ``stopped``) **whatever that row's symbol column holds** (a
  ``dropped`` row means the tables miss updates, so a book rebuilt from them is wrong until the
  next snapshot; it is written when the consumer has room again, so the interval it masks starts
  a little late).

Reads the tables lazily (only the health rows and per-venue bounds are collected); writes only
the PNG it is asked for.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl

from analysis import plots
from analysis.cli import UsageProblem, parse_time
from analysis.load import scan, venues
from analysis.progress import Progress, add_quiet_arg
from core.codec import S_NS
from core.schema import SYMBOL_BREAKS, TRUST_EVENTS, VENUE_BREAKS, HealthKind

PROG = "python -m analysis.coverage"
TABLES = ("health", "tob", "l2", "trades")


class CoverageError(RuntimeError):
    """Nothing to report (no data, no such venue)."""


@dataclass
class SymbolCoverage:
    exchange: str
    symbol: str | None
    start_ns: int
    end_ns: int
    connected: bool = False
    trusted: list[tuple[int, int]] = field(default_factory=list)
    gaps: int = 0
    resyncs: int = 0
    reconnects: int = 0
    note: str = ""

    @property
    def observed_s(self) -> float:
        return (self.end_ns - self.start_ns) / S_NS

    @property
    def trusted_s(self) -> float:
        return sum(b - a for a, b in self.trusted) / S_NS

    def untrusted(self) -> list[tuple[int, int]]:
        out, cursor = [], self.start_ns
        for a, b in self.trusted:
            if a > cursor:
                out.append((cursor, a))
            cursor = max(cursor, b)
        if cursor < self.end_ns:
            out.append((cursor, self.end_ns))
        return out

    @property
    def longest_outage_s(self) -> float:
        return max((b - a for a, b in self.untrusted()), default=0) / S_NS


@dataclass
class Recording:
    """What the coverage is computed from: the health rows (sorted per venue in write order),
    the symbols each venue's rows name, and the span."""

    health: pl.DataFrame
    named: dict[str, set[str]]
    start_ns: int
    end_ns: int


def load_recording(data: Path, *, exchange: str | None = None, start: datetime | None = None,
                   end: datetime | None = None) -> Recording:
    have = {t: venues(data, t) for t in TABLES}
    if not have["health"]:
        raise CoverageError(f"no health table under {data} (expected "
                            f"{data}/health/exchange=<venue>/date=<day>/*.parquet)")
    if exchange is not None and not any(exchange in v for v in have.values()):
        raise CoverageError(f"no health rows for exchange {exchange!r} under {data}")
    lazy = []
    for table, vs in have.items():
        pick = [v for v in vs if exchange is None or v == exchange]
        if not pick:
            continue
        lf = scan(data, table, exchanges=pick, start=start, end=end)
        lazy.append(lf.group_by("exchange").agg(
            pl.col("ts_local").min().cast(pl.Int64).alias("first"),
            pl.col("ts_local").max().cast(pl.Int64).alias("last"),
            pl.col("symbol").drop_nulls().unique().alias("symbols")))
    health_lf = (scan(data, "health", exchanges=[v for v in have["health"]
                                                  if exchange is None or v == exchange],
                      start=start, end=end)
                 .select(pl.col("ts_local").cast(pl.Int64).alias("ts"), "exchange", "symbol",
                         "event", "detail"))
    *bounds, health = pl.collect_all([*lazy, health_lf])
    both = pl.concat(bounds)
    if both.height == 0 or both["first"].drop_nulls().is_empty():
        raise CoverageError(f"no rows under {data} in the time asked for")
    named: dict[str, set[str]] = {}
    for ex, syms in both.select("exchange", "symbols").iter_rows():
        named.setdefault(ex, set()).update(syms or [])
    # the recorder's ``started`` rows say exactly what each venue was asked for
    started: set[str] = set()
    for ex, detail in health.filter(pl.col("event") == HealthKind.STARTED).select(
            "exchange", "detail").iter_rows():
        asked = dict(f.split("=", 1) for f in (detail or "").split() if "=" in f)
        named.setdefault(ex, set()).update(filter(None, asked.get("symbols", "").split(",")))
        started.add(ex)
    if started:  # health rows alone, without a ``started`` row, are a consumer's (``spread``)
        market = set().union(*(set(vs) for t, vs in have.items() if t != "health"))
        named = {ex: syms for ex, syms in named.items() if ex in started or ex in market}
    t0 = int(both["first"].min()) if start is None else _ns(start)
    t1 = int(both["last"].max()) if end is None else _ns(end)
    # files of one venue are in write order; a stable sort keeps same-time rows in that order
    health = health.with_row_index("row").sort(["exchange", "ts", "row"])
    return Recording(health, named, t0, t1)


def _ns(t: datetime) -> int:
    return int(t.timestamp()) * S_NS + t.microsecond * 1000


def asked_for(rec: Recording, extra_venues: Sequence[str] = (),
              symbols: Sequence[str] | None = None) -> dict[str, list[str | None]]:
    """Venue -> symbols to report (see the module docstring); a venue with no symbol at all in
    the recording maps to ``[None]``."""
    all_named = sorted(set().union(*rec.named.values())) if rec.named else []
    out: dict[str, list[str | None]] = {}
    for v in sorted(set(rec.named) | set(extra_venues)):
        if symbols is not None:
            out[v] = list(symbols)
        else:
            mine = sorted(rec.named.get(v, set()))
            out[v] = list(mine or all_named) or [None]
    return out


def coverage(rec: Recording, wanted: dict[str, list[str | None]]) -> list[SymbolCoverage]:
    """Walk each venue's ledger in time order and build per-symbol trusted intervals."""
    result: list[SymbolCoverage] = []
    rows_by_venue = {str(ex): rows for (ex,), rows in rec.health.group_by(["exchange"],
                                                                          maintain_order=True)}
    for venue, syms in wanted.items():
        cov = {s: SymbolCoverage(venue, s, rec.start_ns, rec.end_ns) for s in syms}
        rows = rows_by_venue.get(venue)
        reconnects, connected = (0, False) if rows is None else _walk(rows, cov, rec.start_ns)
        for s in syms:
            c = cov[s]
            c.reconnects, c.connected = reconnects, connected
            c.note = _note(c, rows is not None, connected)
            result.append(c)
    return result


def _walk(rows: pl.DataFrame, cov: dict[str | None, SymbolCoverage],
          start_ns: int) -> tuple[int, bool]:
    """Apply one venue's health rows to its symbols' coverage; (reconnects, ever connected)."""
    since: dict[str | None, int | None] = dict.fromkeys(cov)
    reconnects, connected = 0, False
    for t, event, sym, detail in rows.select("ts", "event", "symbol", "detail").iter_rows():
        connected = connected or event == HealthKind.CONNECTED
        if event in VENUE_BREAKS:  # connection-wide, whatever the symbol column says
            reconnects += event == HealthKind.DISCONNECTED and detail != "stopped"
            for s, c in cov.items():
                _close(c, since, s, t)
        elif sym in cov:
            c = cov[sym]
            if event in TRUST_EVENTS:
                c.resyncs += event == HealthKind.RESYNCED
                if since[sym] is None:
                    since[sym] = max(t, start_ns)
            elif event in SYMBOL_BREAKS:
                c.gaps += 1
                _close(c, since, sym, t)
    for s, c in cov.items():
        _close(c, since, s, c.end_ns)
    return reconnects, connected


def _note(c: SymbolCoverage, has_rows: bool, connected: bool) -> str:
    if not has_rows:
        return "no health rows: never connected"
    if not connected:
        return "never connected"
    if c.symbol is None:
        return "no symbol subscribed"
    return "" if c.trusted else "never trusted"


def _close(c: SymbolCoverage, since: dict[str | None, int | None], sym: str | None,
           t: int) -> None:
    start = since[sym]
    if start is not None:
        end = min(t, c.end_ns)
        if end > start:
            c.trusted.append((start, end))
        since[sym] = None


def summary(covs: list[SymbolCoverage]) -> pl.DataFrame:
    return pl.DataFrame({
        "exchange": [c.exchange for c in covs],
        "symbol": [c.symbol for c in covs],
        "connected": [c.connected for c in covs],
        "observed_s": [round(c.observed_s, 3) for c in covs],
        "trusted_share": [round(c.trusted_s / c.observed_s, 4) if c.observed_s else 0.0
                          for c in covs],
        "gaps": [c.gaps for c in covs],
        "resyncs": [c.resyncs for c in covs],
        "reconnects": [c.reconnects for c in covs],
        "longest_outage_s": [round(c.longest_outage_s, 3) for c in covs],
        "note": [c.note for c in covs],
    }, schema_overrides={"symbol": pl.String})


def plot_timeline(covs: list[SymbolCoverage], png: Path) -> Path:
    """Trusted (green) and untrusted (red) intervals per venue and symbol on a UTC time axis."""
    fig = plots.new_figure(11, 0.5 * len(covs) + 1.9)
    ax = fig.subplots()

    def days(ns: int) -> float:  # matplotlib's date numbers: days since 1970-01-01
        return ns / (86_400 * S_NS)

    for i, c in enumerate(covs):
        for iv, colour, name in ((c.untrusted(), "tab:red", "untrusted"),
                                 (c.trusted, "tab:green", "trusted")):
            ax.broken_barh([(days(a), days(b) - days(a)) for a, b in iv], (i - 0.4, 0.8),
                           facecolors=colour, label=name if i == 0 else None)
    ax.set_yticks(range(len(covs)), [f"{c.exchange} {c.symbol or '(no symbol)'}" for c in covs])
    ax.set_ylim(-0.7, len(covs) - 0.3)
    start, end = min(c.start_ns for c in covs), max(c.end_ns for c in covs)
    ax.set_xlim(days(start), days(end))
    plots.utc_time_axis(ax, np.array([start, end], dtype="datetime64[ns]"))
    ax.set_ylabel("venue and symbol")
    ax.set_title("Book coverage over the whole recording: trusted and untrusted intervals",
                 fontsize=10)
    ax.legend(loc="upper right", fontsize=8)
    ax.grid(True, axis="x", linestyle="--", alpha=0.4)
    return plots.save(fig, png)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Per venue and symbol asked for: trusted-book share of the whole "
                    "recording, gaps, resyncs, reconnects and the longest outage, from the "
                    "health table; plus a timeline PNG.",
        epilog=f"example:\n  {PROG} --data data --png data/coverage.png "
               "--venues bybit,htx --symbols BTC-USDT",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="the recorder's --out folder")
    p.add_argument("--exchange", default=None, help="only this venue")
    p.add_argument("--venues", default="",
                   help="comma-separated venues that were asked for, reported even without "
                        "rows (default: every venue with rows)")
    p.add_argument("--symbols", default=None,
                   help="comma-separated symbols asked of every venue (default: the symbols "
                        "each venue's rows name)")
    p.add_argument("--start", type=parse_time, help="start of the span (UTC; default: the "
                                                    "recording's first row)")
    p.add_argument("--end", type=parse_time, help="end of the span (UTC; default: the "
                                                  "recording's last row)")
    p.add_argument("--png", type=Path, default=None,
                   help="timeline picture (default: <data>/coverage.png)")
    add_quiet_arg(p)
    return p


def _list(text: str | None) -> list[str]:
    return [x.strip() for x in (text or "").split(",") if x.strip()]


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    progress = Progress(PROG, quiet=args.quiet)
    try:
        if args.start and args.end and args.end <= args.start:
            raise UsageProblem("--end must be after --start")
        progress.note(f"reading the health ledger and the tables' bounds under {args.data}")
        rec = load_recording(args.data, exchange=args.exchange, start=args.start, end=args.end)
        symbols = _list(args.symbols) if args.symbols is not None else None
        extra = [v for v in _list(args.venues) if args.exchange in (None, v)]
        covs = coverage(rec, asked_for(rec, extra, symbols))
    except (CoverageError, UsageProblem) as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1 if isinstance(exc, CoverageError) else 2
    with pl.Config(tbl_rows=-1, tbl_cols=-1, tbl_width_chars=200):
        print(summary(covs))
    png = args.png or args.data / "coverage.png"
    plot_timeline(covs, png)
    print(f"timeline: {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
