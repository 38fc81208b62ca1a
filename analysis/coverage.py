"""Data-quality coverage from the ``health`` ledger: when was each book trustworthy?

``python -m analysis.coverage --data DIR`` prints, per venue and symbol, the share of the
observed time with a trusted book, the numbers of gaps, resyncs and reconnects, and the longest
outage, and draws a timeline PNG of trusted and untrusted intervals.

The rule (the one ``docs/data.md`` states): a symbol's book is trusted from a ``snapshot`` or
``resynced`` row until the next ``gap``, ``checksum_mismatch`` or ``crossed`` row for the same
symbol, or a ``disconnected``, ``plugin_error``, ``dropped`` or ``stopped`` row for its venue (a
``dropped`` row means the tables miss updates, so a book rebuilt from them is wrong until the next
snapshot; the row is written when the consumer has room again, so the interval it masks starts a
little late). The observed time of a venue runs from its first to its last health row; time
between runs is untrusted.

Reads only the health table (lazily); writes only the PNG it is asked for.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from core.schema import SYMBOL_BREAKS, TRUST_EVENTS, VENUE_BREAKS

BREAKS = SYMBOL_BREAKS
TRUSTS = TRUST_EVENTS
NS = 1_000_000_000


class CoverageError(RuntimeError):
    """Nothing to report (no data, no such venue)."""


@dataclass
class SymbolCoverage:
    exchange: str
    symbol: str
    start_ns: int
    end_ns: int
    trusted: list[tuple[int, int]] = field(default_factory=list)
    gaps: int = 0
    resyncs: int = 0
    reconnects: int = 0

    @property
    def observed_s(self) -> float:
        return (self.end_ns - self.start_ns) / NS

    @property
    def trusted_s(self) -> float:
        return sum(b - a for a, b in self.trusted) / NS

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
        return max((b - a for a, b in self.untrusted()), default=0) / NS


def load_health(data: Path, exchange: str | None = None) -> pl.DataFrame:
    files = list((data / "health").glob("exchange=*/date=*/*.parquet"))
    if not files:
        raise CoverageError(f"no health table under {data} (expected "
                            f"{data}/health/exchange=<venue>/date=<day>/*.parquet)")
    lf = pl.scan_parquet(files, hive_partitioning=False)
    if exchange is not None:
        lf = lf.filter(pl.col("exchange") == exchange)
    df = (lf.select("ts_local", "exchange", "symbol", "event", "detail")
          .with_columns(pl.col("ts_local").dt.epoch("ns").alias("ts"))
          .collect())
    if df.is_empty():
        raise CoverageError(f"no health rows for exchange {exchange!r} under {data}")
    # files of one venue are in write order; a stable sort keeps same-time rows in that order
    return df.with_row_index("row").sort(["exchange", "ts", "row"])


def coverage(health: pl.DataFrame) -> list[SymbolCoverage]:
    """Walk each venue's ledger in time order and build per-symbol trusted intervals."""
    result: list[SymbolCoverage] = []
    for (exchange,), rows in health.group_by(["exchange"], maintain_order=True):
        ts = rows["ts"].to_list()
        events = rows["event"].to_list()
        symbols = rows["symbol"].to_list()
        details = rows["detail"].to_list()
        names = sorted({s for s in symbols if s is not None})
        cov = {s: SymbolCoverage(str(exchange), s, ts[0], ts[-1]) for s in names}
        since: dict[str, int | None] = dict.fromkeys(names)
        reconnects = 0
        for t, event, sym, detail in zip(ts, events, symbols, details, strict=True):
            if sym is not None and sym in cov:
                c = cov[sym]
                if event in TRUSTS:
                    if event == "resynced":
                        c.resyncs += 1
                    if since[sym] is None:
                        since[sym] = t
                elif event in BREAKS:
                    c.gaps += 1
                    _close(c, since, sym, t)
            elif event in VENUE_BREAKS:
                if event == "disconnected" and detail != "stopped":
                    reconnects += 1
                for s in names:
                    _close(cov[s], since, s, t)
        for s in names:
            _close(cov[s], since, s, cov[s].end_ns)
            cov[s].reconnects = reconnects
            result.append(cov[s])
    return result


def _close(c: SymbolCoverage, since: dict[str, int | None], sym: str, t: int) -> None:
    start = since[sym]
    if start is not None:
        if t > start:
            c.trusted.append((start, t))
        since[sym] = None


def summary(covs: list[SymbolCoverage]) -> pl.DataFrame:
    return pl.DataFrame({
        "exchange": [c.exchange for c in covs],
        "symbol": [c.symbol for c in covs],
        "observed_s": [round(c.observed_s, 3) for c in covs],
        "trusted_share": [round(c.trusted_s / c.observed_s, 4) if c.observed_s else 0.0
                          for c in covs],
        "gaps": [c.gaps for c in covs],
        "resyncs": [c.resyncs for c in covs],
        "reconnects": [c.reconnects for c in covs],
        "longest_outage_s": [round(c.longest_outage_s, 3) for c in covs],
    })


def plot_timeline(covs: list[SymbolCoverage], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t0 = min(c.start_ns for c in covs)
    fig, ax = plt.subplots(figsize=(10, 0.6 * len(covs) + 1.5))
    for i, c in enumerate(covs):
        ax.broken_barh([((a - t0) / NS, (b - a) / NS) for a, b in c.untrusted()], (i - 0.4, 0.8),
                       facecolors="tab:red", label="untrusted" if i == 0 else None)
        ax.broken_barh([((a - t0) / NS, (b - a) / NS) for a, b in c.trusted], (i - 0.4, 0.8),
                       facecolors="tab:green", label="trusted" if i == 0 else None)
    ax.set_yticks(range(len(covs)), [f"{c.exchange} {c.symbol}" for c in covs])
    ax.set_xlabel("seconds since the first health row")
    ax.set_title("Book coverage: trusted (green) and untrusted (red) intervals")
    ax.legend(loc="upper right")
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m analysis.coverage",
        description="Per venue and symbol: trusted-book share, gaps, resyncs, reconnects and "
                    "the longest outage, from the health table; plus a timeline PNG.",
        epilog="example: python -m analysis.coverage --data data --png data/coverage.png")
    parser.add_argument("--data", type=Path, required=True, help="the recorder's --out folder")
    parser.add_argument("--exchange", default=None, help="only this venue")
    parser.add_argument("--png", type=Path, default=None,
                        help="timeline picture (default: <data>/coverage.png)")
    args = parser.parse_args(argv)
    try:
        covs = coverage(load_health(args.data, args.exchange))
    except CoverageError as exc:
        print(f"{parser.prog}: {exc}", file=sys.stderr)
        return 1
    if not covs:
        print(f"{parser.prog}: the health table names no symbols (no subscription succeeded)",
              file=sys.stderr)
        return 1
    with pl.Config(tbl_rows=-1, tbl_cols=-1, tbl_width_chars=200):
        print(summary(covs))
    png = args.png or args.data / "coverage.png"
    plot_timeline(covs, png)
    print(f"timeline: {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
