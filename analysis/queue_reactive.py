"""``python -m analysis.queue_reactive``: queue-reactive statistics of one venue's L2 book.

Reads the ``l2`` table (and ``trades`` and ``health`` when present) of one exchange and symbol,
replays the book (:mod:`analysis.qr_replay`), and writes the tables of the queue-reactive spec
§3.7 plus figures into ``--out``:

* ``pref.parquet`` (p_ref series) and ``pref_changes.parquet``;
* ``events.parquet`` (ts, limit i, side, type, size, n_before, n_after, p_ref, ...);
* ``book_short.parquet`` (the 2K queues after every live message, raw and in AES units);
* ``aes.json``; ``intensities.parquet`` (limit, side or pooled, type, n, N, T, λ̂, Garwood and
  hour-bootstrap intervals, sparse flag, symmetry test); ``invariant.parquet``;
* ``intervals.parquet`` (the notebook-compatible time between events per queue with the
  pre-event state, cut intervals marked) and ``hlr.parquet`` (HLR's 1/mean Δt × share, cut
  intervals kept and discarded, and the notebook's per-sign estimate);
* ``diagnostics.json``; ``lambda_level<i>.png`` per level, ``lambda_levels.png`` (levels 1–3)
  and ``invariant.png``.

Without trades, decreases are not split: the tables hold L and D = C + M. ``--trades required``
turns that into an error instead.

Reads lazily and collects once; never shows a figure.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl

from analysis import plots
from analysis.cli import (
    UsageProblem,
    add_data_args,
    common_parser,
    main_guard,
    parse_time,
)
from analysis.load import MissingData, breaks, scan, symbols, venues
from analysis.qr_replay import ReplayInput, ReplayResult, TradesInput, replay
from analysis.qr_tables import QRTables, build
from analysis.ticks import infer_step, to_units

PROG = "python -m analysis.queue_reactive"
EXAMPLE = (f"{PROG} --data data --exchange coinbase --symbol ETC-USD --out out/qr "
           "--start 2024-05-01T00:00:00Z --end 2024-05-02T00:00:00Z")


def parser() -> argparse.ArgumentParser:
    p = common_parser(PROG, "Queue-reactive statistics (HLR 2015) from a recorded L2 book.",
                      EXAMPLE)
    add_data_args(p)
    p.add_argument("--exchange", required=True)
    p.add_argument("--symbol", required=True, help="canonical symbol, e.g. ETC-USD")
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.add_argument("--start", type=parse_time, help="first time to use (UTC)")
    p.add_argument("--end", type=parse_time, help="last time to use (UTC)")
    p.add_argument("--k", type=int, default=10, help="queues per side (default 10; HLR use 3)")
    p.add_argument("--tick", type=float, help="price tick (default: inferred from the prices)")
    p.add_argument("--lot", type=float,
                   help="size increment in base units (default: inferred from the sizes)")
    p.add_argument("--trades", choices=("auto", "required", "off"), default="auto",
                   help="split decreases into C and M with the trades table (default auto: "
                        "if present)")
    p.add_argument("--match-pre-ms", type=float, default=100.0,
                   help="trade matching window before a decrease (ms)")
    p.add_argument("--match-post-ms", type=float, default=100.0,
                   help="trade matching window after a decrease (ms)")
    p.add_argument("--clock", choices=("auto", "exchange", "local"), default="auto",
                   help="time for exposure and matching: exchange time (auto when every row "
                        "has it) or receipt time")
    p.add_argument("--aes", type=Path, help="aes.json of another run, to reuse its AES")
    p.add_argument("--boot", type=int, default=200, help="bootstrap resamples (default 200)")
    return p


def load_l2(data: Path, exchange: str, symbol: str, start: datetime | None,
            end: datetime | None) -> pl.LazyFrame:
    return (scan(data, "l2", exchanges=[exchange], symbol=symbol, start=start, end=end)
            .with_row_index("_row")
            .sort("ts_local", "msg_id", "_row")
            .select(pl.col("ts_local").cast(pl.Int64).alias("order"),
                    pl.col("ts_exchange").cast(pl.Int64).alias("ts_ex"),
                    "msg_id", (pl.col("side") == "ask").alias("is_ask"), "price", "size",
                    "is_snapshot"))


def load_trades(data: Path, exchange: str, symbol: str, start: datetime | None,
                end: datetime | None) -> pl.LazyFrame | None:
    if exchange not in venues(data, "trades"):
        return None
    return (scan(data, "trades", exchanges=[exchange], symbol=symbol, start=start, end=end)
            .select(pl.col("ts_local").cast(pl.Int64).alias("order"),
                    pl.col("ts_exchange").cast(pl.Int64).alias("ts_ex"),
                    "price", "size", (pl.col("side") == "buy").alias("maker_is_ask")))


def explain_empty(data: Path, exchange: str, symbol: str, args: argparse.Namespace) -> str:
    have = symbols(data, "l2", [exchange])
    if symbol not in have:
        return (f"no l2 rows for {symbol} on {exchange}; symbols there: "
                f"{', '.join(have) or 'none'}")
    return f"no l2 rows for {exchange} {symbol} between {args.start} and {args.end}"


def run(args: argparse.Namespace) -> QRTables:
    """Load, replay and tabulate; returns the tables (also written by :func:`main`)."""
    venues_l2 = venues(args.data, "l2")
    if args.exchange not in venues_l2:
        raise MissingData(f"no l2 data for exchange {args.exchange!r} under {args.data}; "
                          f"available: {', '.join(venues_l2) or 'none'}")
    l2_lf = load_l2(args.data, args.exchange, args.symbol, args.start, args.end)
    tr_lf = None if args.trades == "off" else load_trades(args.data, args.exchange,
                                                          args.symbol, args.start, args.end)
    br_lf = breaks(args.data, args.exchange, args.symbol, start=args.start, end=args.end) \
        .select(pl.col("ts_local").cast(pl.Int64))
    frames = pl.collect_all([l2_lf, br_lf] + ([tr_lf] if tr_lf is not None else []))
    l2, brk = frames[0], frames[1]
    trades = frames[2] if len(frames) > 2 and frames[2].height else None
    if l2.height == 0:
        raise MissingData(explain_empty(args.data, args.exchange, args.symbol, args))
    if not l2["is_snapshot"].any():
        raise MissingData(f"no snapshot in the l2 rows of {args.exchange} {args.symbol}: the "
                          "book cannot be rebuilt")
    if trades is None:
        if args.trades == "required":
            raise MissingData(f"no trades for {args.exchange} {args.symbol}: C and M cannot be "
                              "told apart (use --trades auto to report L and D)")
        if args.trades == "auto":
            print(f"{PROG}: note: no trades for {args.exchange} {args.symbol}; decreases are "
                  "reported as D = C + M", file=sys.stderr)
    injected = read_aes(args.aes) if args.aes else None
    _, tables = analyse(l2, trades, brk["ts_local"].to_numpy(), k=args.k, tick=args.tick,
                        lot=args.lot, clock=args.clock, aes=injected, n_boot=args.boot,
                        match_pre_ms=args.match_pre_ms, match_post_ms=args.match_post_ms)
    tables.diagnostics.update({"exchange": args.exchange, "symbol": args.symbol})
    tables.aes.update({"exchange": args.exchange, "symbol": args.symbol})
    if tables.diagnostics["counts"]["events"] == 0:
        raise MissingData(f"no queue events for {args.exchange} {args.symbol}: the book was "
                          "never live with a reference price (see the health table)")
    return tables


def analyse(l2: pl.DataFrame, trades: pl.DataFrame | None, breaks_ns: np.ndarray, *, k: int,
            tick: float | None = None, lot: float | None = None, clock: str = "auto",
            aes: dict[int, float] | None = None, n_boot: int = 200,
            match_pre_ms: float = 100.0, match_post_ms: float = 100.0,
            ) -> tuple[ReplayResult, QRTables]:
    """Replay collected rows and build the tables.

    ``l2`` has columns order (ts_local ns), ts_ex (ts_exchange ns, nullable), msg_id, is_ask,
    price, size, is_snapshot, sorted in receipt order; ``trades`` has order, ts_ex, price, size,
    maker_is_ask. ``aes`` maps limit -> AES in base units (injected instead of estimated).
    """
    tick = tick or infer_step(l2["price"].to_numpy())
    if not tick:
        raise UsageProblem("cannot infer the tick size from the prices; pass --tick")
    sizes = [l2["size"].to_numpy()] + ([trades["size"].to_numpy()] if trades is not None else [])
    lot = lot or infer_step(np.concatenate(sizes))
    if not lot:
        raise UsageProblem("cannot infer the size increment; pass --lot")
    use_exchange = clock == "exchange" or (clock == "auto" and l2["ts_ex"].null_count() == 0)
    clk = (l2["ts_ex"].fill_null(l2["order"]) if use_exchange else l2["order"]).to_numpy()
    inp = ReplayInput(order=l2["order"].to_numpy(), clock=clk,
                      msg_id=l2["msg_id"].fill_null(-1).to_numpy(),
                      is_ask=l2["is_ask"].to_numpy(), price=to_units(l2["price"], tick),
                      size=to_units(l2["size"], lot), is_snapshot=l2["is_snapshot"].to_numpy(),
                      breaks=np.asarray(breaks_ns, dtype=np.int64))
    tin = None
    if trades is not None:
        tclock = (trades["ts_ex"].fill_null(trades["order"]) if use_exchange
                  else trades["order"]).to_numpy()
        tin = TradesInput(clock=tclock, price=to_units(trades["price"], tick),
                          size=to_units(trades["size"], lot),
                          maker_is_ask=trades["maker_is_ask"].to_numpy())
    res = replay(inp, k, tin, match_pre_ns=int(match_pre_ms * 1e6),
                 match_post_ns=int(match_post_ms * 1e6))
    injected = None if aes is None else {lim: v / lot for lim, v in aes.items()}
    tables = build(res, lot=lot, tick=tick, aes_injected=injected, n_boot=n_boot)
    tables.diagnostics.update({"tick": tick, "lot": lot, "k": k,
                               "clock": "exchange" if use_exchange else "local",
                               "trades": trades is not None})
    tables.aes.update({"tick": tick})
    return res, tables


def read_aes(path: Path) -> dict[int, float]:
    """AES per limit in base units from another run's aes.json."""
    try:
        doc = json.loads(path.read_text())
        other_lot = float(doc["lot"])
        return {int(k): float(v["mean"]) * other_lot for k, v in doc["limits"].items()}
    except (ValueError, KeyError, TypeError) as exc:
        raise UsageProblem(f"cannot read AES from {path}: {exc}") from exc


def write(tables: QRTables, out: Path, k: int) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, df in (("pref", tables.pref), ("pref_changes", tables.pref_changes),
                     ("events", tables.events), ("book_short", tables.book_short),
                     ("intensities", tables.intensities), ("invariant", tables.invariant),
                     ("intervals", tables.intervals), ("hlr", tables.hlr),
                     ("exposure", tables.exposure)):
        path = out / f"{name}.parquet"
        df.write_parquet(path)
        written.append(path)
    for name, doc in (("aes", tables.aes), ("diagnostics", tables.diagnostics)):
        path = out / f"{name}.json"
        path.write_text(json.dumps(doc, indent=2, default=_json_default) + "\n")
        written.append(path)
    written += write_figures(tables, out, k)
    return written


def _json_default(o: object) -> object:
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    raise TypeError(type(o).__name__)


def write_figures(tables: QRTables, out: Path, k: int) -> list[Path]:
    pooled = tables.intensities.filter(pl.col("side") == "pooled")
    kinds = [t for t in ("L", "C", "M") if t in set(pooled["type"].to_list())] or ["L", "D"]
    if "C" not in kinds:
        kinds = ["L", "D"]
    sym = f"{tables.diagnostics.get('exchange')} {tables.diagnostics.get('symbol')}"
    paths = []
    for lim in range(1, k + 1):
        cells = pooled.filter(pl.col("limit") == lim)
        if cells.height == 0:
            continue
        fig = plots.new_figure(4.2 * len(kinds), 3.4)
        axes = fig.subplots(1, len(kinds), squeeze=False)[0]
        for ax, kind in zip(axes, kinds, strict=True):
            plots.draw_intensity(ax, cells, kind, f"{sym}  Q±{lim}: {plots.TYPE_LABELS[kind]}")
        paths.append(plots.save(fig, out / f"lambda_level{lim}.png"))
    levels = [lim for lim in range(1, min(k, 3) + 1)
              if pooled.filter(pl.col("limit") == lim).height]
    if levels:
        fig = plots.new_figure(4.0 * len(kinds), 3.0 * len(levels))
        axes = fig.subplots(len(levels), len(kinds), squeeze=False)
        for r, lim in enumerate(levels):
            cells = pooled.filter(pl.col("limit") == lim)
            for c, kind in enumerate(kinds):
                plots.draw_intensity(axes[r][c], cells, kind,
                                     f"Q±{lim}: {plots.TYPE_LABELS[kind]}")
        fig.suptitle(f"{sym}: queue-reactive intensities λ(n), bid and ask pooled")
        paths.append(plots.save(fig, out / "lambda_levels.png"))
    inv_levels = [lim for lim in range(1, min(k, 3) + 1)
                  if tables.invariant.filter(pl.col("limit") == lim).height]
    if inv_levels:
        fig = plots.new_figure(4.2 * len(inv_levels), 3.2)
        axes = fig.subplots(1, len(inv_levels), squeeze=False)[0]
        for ax, lim in zip(axes, inv_levels, strict=True):
            plots.draw_invariant(ax, tables.invariant.filter(pl.col("limit") == lim),
                                 f"{sym}  Q±{lim}: invariant distribution")
        paths.append(plots.save(fig, out / "invariant.png"))
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.k < 1:
        raise UsageProblem("--k must be at least 1")
    tables = run(args)
    write(tables, args.out, args.k)
    d = tables.diagnostics
    counts = d["counts"]
    print(f"{args.exchange} {args.symbol}: {counts['events']} events, "
          f"{counts['pref_changes']} p_ref changes, live {float(d['live_seconds']) / 3600:.2f} h, "
          f"tick {d['tick']}, lot {d['lot']}, clock {d['clock']} -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main_guard(PROG, main))
