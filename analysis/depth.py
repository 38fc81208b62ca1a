"""``python -m analysis.depth``: the book around the reference price at one moment, as a bar chart.

The book is rebuilt from the ``l2`` table: the last snapshot at or before ``--at`` replaces the
book, then every update up to ``--at`` is applied in receipt order (ts_local, msg_id, row), one
message at a time. The reference price follows the half-tick rule of :mod:`core.refprice`
through those messages (it needs the history when the spread is even), and the chart shows the
K queues on each side: Q_{±i} at p_ref ± (i − ½)·tick, bids and asks in two colours, p_ref
marked. A CSV of the same K + K queues is written next to the PNG.

The book is refused when a feed break (health table) lies between that snapshot and ``--at``,
when it is crossed or one-sided at ``--at``, or when no odd spread has been seen since the
snapshot (no reference price yet).

Tick size: ``--tick``, else the largest {1, 2, 2.5, 5}·10^e step dividing every price in the
rows used (:mod:`analysis.ticks`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import polars as pl

from analysis import plots
from analysis.cli import UsageProblem, add_data_args, common_parser, main_guard, parse_time
from analysis.load import MissingData, breaks, scan, symbols, venues
from analysis.progress import Progress, add_quiet_arg
from analysis.ticks import infer_step
from core.book import OrderBook
from core.refprice import RefPriceTracker, ShortBook

PROG = "python -m analysis.depth"
EXAMPLE = (f"{PROG} --data data --exchange coinbase --symbol ETC-USD "
           "--at 2024-05-01T12:00:00Z --levels 10 --out out/depth")


@dataclass
class DepthView:
    short: ShortBook
    at: datetime
    snapshot_at: datetime
    last_update_at: datetime
    messages: int
    tick: float


def parser() -> argparse.ArgumentParser:
    p = common_parser(PROG, "Bar chart of the L2 book around the reference price at a time.",
                      EXAMPLE)
    add_data_args(p)
    p.add_argument("--exchange", required=True)
    p.add_argument("--symbol", required=True)
    p.add_argument("--at", type=parse_time, required=True, help="time (UTC unless a zone is given)")
    p.add_argument("--levels", type=int, default=10, help="queues per side (default 10)")
    p.add_argument("--tick", type=float, help="price tick (default: inferred from the prices)")
    p.add_argument("--out", type=Path, default=Path("."), help="output directory (default .)")
    add_quiet_arg(p)
    return p


def rows_since_snapshot(data: Path, exchange: str, symbol: str, at: datetime) -> pl.LazyFrame:
    """Rows of the last snapshot at or before ``at`` and every row after it up to ``at``."""
    lf = scan(data, "l2", exchanges=[exchange], symbol=symbol, end=at).with_row_index("_row")
    last = (lf.filter(pl.col("is_snapshot")).sort("ts_local", "msg_id", "_row").tail(1)
            .select(pl.col("ts_local").alias("_snap_ts"), pl.col("msg_id").alias("_snap_id")))
    return (lf.join(last, how="cross")
            .filter((pl.col("ts_local") > pl.col("_snap_ts"))
                    | ((pl.col("ts_local") == pl.col("_snap_ts"))
                       & (pl.col("msg_id") >= pl.col("_snap_id"))))
            .sort("ts_local", "msg_id", "_row")
            .select("ts_local", "msg_id", "side", "price", "size", "is_snapshot"))


def rebuild(rows: pl.DataFrame, tick: float, k: int) -> tuple[OrderBook, ShortBook | None, int]:
    """Replay the rows (first message a snapshot) through an OrderBook and the p_ref tracker."""
    book = OrderBook()
    tracker = RefPriceTracker(tick)
    short: ShortBook | None = None
    msgs = 0
    cols = [rows[c].to_list() for c in ("msg_id", "side", "price", "size", "is_snapshot")]
    start = 0
    n = rows.height
    while start < n:
        end = start + 1
        while end < n and cols[0][end] == cols[0][start] and cols[4][end] == cols[4][start]:
            end += 1
        bids = [(cols[2][r], cols[3][r]) for r in range(start, end) if cols[1][r] == "bid"]
        asks = [(cols[2][r], cols[3][r]) for r in range(start, end) if cols[1][r] == "ask"]
        if cols[4][start]:
            book.replace(bids, asks)
        else:
            book.apply(bids, asks)
        msgs += 1
        short = tracker.update_from_book(book, k)
        start = end
    return book, short, msgs


def depth_view(data: Path, exchange: str, symbol: str, at: datetime, k: int,
               tick: float | None) -> DepthView:
    have = venues(data, "l2")
    if exchange not in have:
        raise MissingData(f"no l2 data for exchange {exchange!r} under {data}; available: "
                          f"{', '.join(have) or 'none'}")
    span = (scan(data, "l2", exchanges=[exchange], symbol=symbol)
            .select(pl.col("ts_local").min().alias("first"), pl.col("ts_local").max().alias("last"),
                    pl.len().alias("rows")))
    rows_lf = rows_since_snapshot(data, exchange, symbol, at)
    brk_lf = breaks(data, exchange, symbol, end=at)
    span_df, rows, brk = pl.collect_all([span, rows_lf, brk_lf])
    first, last, n_rows = span_df.row(0)
    if n_rows == 0:
        syms = symbols(data, "l2", [exchange])
        raise MissingData(f"no l2 rows for {symbol} on {exchange}; symbols there: "
                          f"{', '.join(syms) or 'none'}")
    if at < first or at > last:
        raise MissingData(f"{at:%Y-%m-%dT%H:%M:%S.%fZ} is outside the recorded l2 data of "
                          f"{exchange} {symbol} ({first:%Y-%m-%dT%H:%M:%S}Z to "
                          f"{last:%Y-%m-%dT%H:%M:%S}Z)")
    if rows.height == 0:
        raise MissingData(f"no l2 snapshot of {exchange} {symbol} at or before "
                          f"{at:%Y-%m-%dT%H:%M:%S}Z: the book cannot be rebuilt")
    snap_at = rows["ts_local"][0]
    late = brk.filter(pl.col("ts_local") > snap_at)
    if late.height:
        t, ev = late.row(0)
        raise MissingData(f"the {exchange} {symbol} book is not trusted at "
                          f"{at:%Y-%m-%dT%H:%M:%S}Z: '{ev}' at {t:%H:%M:%S.%f} after the "
                          f"snapshot of {snap_at:%H:%M:%S.%f} and no snapshot since")
    tick = tick or infer_step(rows["price"].to_numpy())
    if not tick:
        raise UsageProblem("cannot infer the tick size from the prices; pass --tick")
    book, short, msgs = rebuild(rows, tick, k)
    bb, ba = book.best_bid(), book.best_ask()
    if bb is None or ba is None:
        raise MissingData(f"the {exchange} {symbol} book is one-sided at "
                          f"{at:%Y-%m-%dT%H:%M:%S}Z")
    if bb[0] >= ba[0]:
        raise MissingData(f"the {exchange} {symbol} book is crossed or locked at "
                          f"{at:%Y-%m-%dT%H:%M:%S}Z (bid {bb[0]}, ask {ba[0]})")
    if short is None:
        raise MissingData(f"no reference price at {at:%Y-%m-%dT%H:%M:%S}Z: the spread has "
                          "been an even number of ticks since the snapshot")
    return DepthView(short, at, snap_at, rows["ts_local"][-1], msgs, tick)


def draw(view: DepthView, exchange: str, symbol: str, out: Path) -> tuple[Path, Path]:
    sb = view.short
    levels = sb.levels()
    table = pl.DataFrame({
        "level": levels,
        "side": ["bid" if i < 0 else "ask" for i in levels],
        "price": [round(sb.level_price(i), 12) for i in levels],
        "size": [sb.size(i) for i in levels],
    })
    stamp = f"{view.at:%Y%m%dT%H%M%S}"
    stem = f"depth_{exchange}_{symbol}_{stamp}"
    out.mkdir(parents=True, exist_ok=True)
    csv = out / f"{stem}.csv"
    table.write_csv(csv)
    bids = table.filter(pl.col("side") == "bid")
    asks = table.filter(pl.col("side") == "ask")
    fig = plots.new_figure(10, 5)
    ax = fig.subplots()
    base, _, quote = symbol.partition("-")
    plots.draw_depth(ax, bids["price"].to_list(), bids["size"].to_list(),
                     asks["price"].to_list(), asks["size"].to_list(), sb.ref_price, view.tick,
                     f"{exchange} {symbol} limit order book at {view.at:%Y-%m-%d %H:%M:%S} UTC: "
                     f"depth = {sb.k} queues per side", quote or "quote currency",
                     base or "base units")
    png = plots.save(fig, out / f"{stem}.png")
    return png, csv


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.levels < 1:
        raise UsageProblem("--levels must be at least 1")
    progress = Progress(PROG, quiet=args.quiet)
    progress.note(f"rebuilding the {args.exchange} {args.symbol} book at "
                  f"{args.at:%Y-%m-%dT%H:%M:%S}Z from its last snapshot")
    view = depth_view(args.data, args.exchange, args.symbol, args.at, args.levels, args.tick)
    png, _ = draw(view, args.exchange, args.symbol, args.out)
    progress.note("done")
    sb = view.short
    print(f"{args.exchange} {args.symbol} at {args.at:%Y-%m-%dT%H:%M:%S}Z: p_ref "
          f"{sb.ref_price:.10g} (tick {view.tick:g}), best bid {sb.level_price(-1):.10g} x "
          f"{sb.size(-1):g}, best ask {sb.level_price(1):.10g} x {sb.size(1):g}; "
          f"{view.messages} messages since the snapshot -> {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main_guard(PROG, main))
