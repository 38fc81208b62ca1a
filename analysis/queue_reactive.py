"""``python -m analysis.queue_reactive``: queue-reactive statistics of one venue's L2 book.

Reads the ``l2`` table (and ``trades`` and ``health`` when present) of one exchange and symbol,
replays the book (:mod:`analysis.qr_replay`), and writes the tables of the queue-reactive model
of Huang, Lehalle & Rosenbaum (2015) plus figures into ``--out``:

* ``pref.parquet`` (p_ref series) and ``pref_changes.parquet``;
* ``events.parquet`` (ts, limit i, side, type, size, n_before, n_after, p_ref, ...);
* ``book_short.parquet`` (the 2K queues after every live message, raw and in AES units);
* ``aes.json``; ``intensities.parquet`` (limit, side or pooled, type, n, N, T, λ̂, Garwood and
  studentized block-bootstrap intervals, λ̂ with the AES 2% smaller and larger, sparse flag,
  symmetry test); ``invariant.parquet``;
* ``intervals.parquet`` (the time between events per queue with the pre-event state, cut
  intervals marked) and ``hlr.parquet`` (HLR's 1/mean Δt × share, cut intervals kept and
  discarded, and the per-sign 1/mean Δt that measures the total rate);
* ``diagnostics.json`` and ``summary.md`` (applicability warnings first);
  ``lambda_level<i>.png`` per level with a published cell, ``lambda_levels.png`` (levels 1–3)
  and ``invariant.png``.

Without trades, decreases are not split: the tables hold L and D = C + M. ``--trades required``
turns that into an error instead. With trades, the matching window comes from the measured
trade-minus-decrease lags unless ``--match-pre-ms``/``--match-post-ms`` set it.

Reads lazily and collects once; never shows a figure.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

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
from analysis.progress import Progress, add_quiet_arg
from analysis.qr_replay import ReplayInput, ReplayResult, TradesInput, replay
from analysis.qr_tables import QRTables, build
from analysis.ticks import infer_step, to_units
from core.codec import MS_NS

PROG = "python -m analysis.queue_reactive"
#: health rows some venues write when their trade ids jump (trades missing)
TRADE_GAP = "trade_gap"
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
    p.add_argument("--match-pre-ms", type=float,
                   help="trade matching window before a decrease (ms); default: measured "
                        "from the trade-minus-decrease lags of the data")
    p.add_argument("--match-post-ms", type=float,
                   help="trade matching window after a decrease (ms); default: measured")
    p.add_argument("--clock", choices=("auto", "exchange", "local"), default="auto",
                   help="time for exposure and matching: exchange time (auto when every row "
                        "has it) or receipt time")
    p.add_argument("--aes", type=Path, help="aes.json of another run, to reuse its AES")
    p.add_argument("--boot", type=int, default=999,
                   help="bootstrap resamples (default 999; 0 skips the bootstrap)")
    p.add_argument("--block-s", type=float,
                   help="bootstrap block length in seconds (default: the live time in 50 "
                        "blocks, at least 60 s)")
    add_quiet_arg(p)
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


def trade_gaps(data: Path, exchange: str, symbol: str, start: datetime | None,
               end: datetime | None) -> pl.LazyFrame:
    """Health rows saying trades are missing (``trade_gap``) for this symbol."""
    if exchange not in venues(data, "health"):
        return pl.LazyFrame(schema={"ts_local": pl.Int64})
    return (scan(data, "health", exchanges=[exchange], symbol=symbol, start=start, end=end)
            .filter(pl.col("event") == TRADE_GAP).select(pl.col("ts_local").cast(pl.Int64)))


def explain_empty(data: Path, exchange: str, symbol: str, args: argparse.Namespace) -> str:
    have = symbols(data, "l2", [exchange])
    if symbol not in have:
        return (f"no l2 rows for {symbol} on {exchange}; symbols there: "
                f"{', '.join(have) or 'none'}")
    return f"no l2 rows for {exchange} {symbol} between {args.start} and {args.end}"


def match_window(pre_ms: float | None, post_ms: float | None) -> tuple[int, int] | None:
    """The window the flags set (ns before, after), or None to measure it. One flag alone sets
    both sides."""
    if pre_ms is None and post_ms is None:
        return None
    pre = pre_ms if pre_ms is not None else post_ms
    post = post_ms if post_ms is not None else pre_ms
    assert pre is not None and post is not None
    if pre < 0 or post < 0:
        raise UsageProblem("--match-pre-ms and --match-post-ms must not be negative")
    return round(pre * MS_NS), round(post * MS_NS)


def run(args: argparse.Namespace, progress: Progress | None = None) -> QRTables:
    """Load, replay and tabulate; returns the tables (also written by :func:`main`)."""
    return estimate(args, progress)[1]


def estimate(args: argparse.Namespace,
             progress: Progress | None = None) -> tuple[ReplayResult, QRTables]:
    """:func:`run`, also returning the replay (per-message clock, mid and p_ref)."""
    progress = progress or Progress(PROG, quiet=True)
    venues_l2 = venues(args.data, "l2")
    if args.exchange not in venues_l2:
        raise MissingData(f"no l2 data for exchange {args.exchange!r} under {args.data}; "
                          f"available: {', '.join(venues_l2) or 'none'}")
    l2_lf = load_l2(args.data, args.exchange, args.symbol, args.start, args.end)
    tr_lf = None if args.trades == "off" else load_trades(args.data, args.exchange,
                                                          args.symbol, args.start, args.end)
    br_lf = breaks(args.data, args.exchange, args.symbol, start=args.start, end=args.end) \
        .select(pl.col("ts_local").cast(pl.Int64))
    gaps_lf = trade_gaps(args.data, args.exchange, args.symbol, args.start, args.end)
    progress.note(f"reading l2{', trades' if tr_lf is not None else ''} and health of "
                  f"{args.exchange} {args.symbol}")
    frames = pl.collect_all([l2_lf, br_lf, gaps_lf] + ([tr_lf] if tr_lf is not None else []))
    l2, brk, gaps = frames[0], frames[1], frames[2]
    trades = frames[3] if len(frames) > 3 and frames[3].height else None
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
    res, tables = analyse(l2, trades, brk["ts_local"].to_numpy(), k=args.k, tick=args.tick,
                        lot=args.lot, clock=args.clock, aes=injected, n_boot=args.boot,
                        window=match_window(args.match_pre_ms, args.match_post_ms),
                        block_s=args.block_s, progress=progress)
    tables.diagnostics.update({"exchange": args.exchange, "symbol": args.symbol,
                               "trade_gap_rows": gaps.height})
    if gaps.height and trades is not None:
        tables.diagnostics["warnings"].append(
            f"{gaps.height} trade_gap row(s): the venue's trade ids jumped, so some market "
            "orders have no trade and were counted as cancellations")
    tables.aes.update({"exchange": args.exchange, "symbol": args.symbol})
    if tables.diagnostics["counts"]["events"] == 0:
        raise MissingData(f"no queue events for {args.exchange} {args.symbol}: the book was "
                          "never live with a reference price (see the health table)")
    return res, tables


def analyse(l2: pl.DataFrame, trades: pl.DataFrame | None, breaks_ns: np.ndarray, *, k: int,
            tick: float | None = None, lot: float | None = None, clock: str = "auto",
            aes: dict[int, float] | None = None, n_boot: int = 999,
            window: tuple[int, int] | None = None, block_s: float | None = None,
            progress: Progress | None = None) -> tuple[ReplayResult, QRTables]:
    """Replay collected rows and build the tables.

    ``l2`` has columns order (ts_local ns), ts_ex (ts_exchange ns, nullable), msg_id, is_ask,
    price, size, is_snapshot, sorted in receipt order; ``trades`` has order, ts_ex, price, size,
    maker_is_ask. ``aes`` maps limit -> AES in base units (injected instead of estimated).
    ``window`` is the trade-matching window (ns before, after); None measures it.
    """
    progress = progress or Progress(PROG, quiet=True)
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
    progress.note(f"replaying {l2.height} l2 rows (tick {tick:g}, lot {lot:g}, K = {k})")
    res = replay(inp, k, tin, window_ns=window)
    injected = None if aes is None else {lim: v / lot for lim, v in aes.items()}
    progress.note(f"tables from {res.counts['events']} events ({n_boot} bootstrap resamples)")
    tables = build(res, lot=lot, tick=tick, aes_injected=injected, n_boot=n_boot,
                   block_s=block_s)
    tables.diagnostics.update({"tick": tick, "lot": lot, "k": k,
                               "clock": "exchange" if use_exchange else "local",
                               "trades": trades is not None})
    tables.aes.update({"tick": tick})
    return res, tables


def read_aes(path: Path) -> dict[int, float]:
    """AES per limit in base units from another run's aes.json (limits without one skipped)."""
    try:
        doc = json.loads(path.read_text())
        other_lot = float(doc["lot"])
        return {int(k): float(v["mean"]) * other_lot for k, v in doc["limits"].items()
                if v.get("mean") is not None}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
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
    written.append(write_summary(tables, out))
    written += write_figures(tables, out, k)
    return written


def _json_default(o: object) -> object:
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    raise TypeError(type(o).__name__)


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def summary_lines(tables: QRTables) -> list[str]:
    d = tables.diagnostics
    lines = [f"# {d.get('exchange')} {d.get('symbol')}: queue-reactive statistics", ""]
    warnings = d.get("warnings") or []
    if warnings:
        lines += ["## Warnings", ""] + [f"* {w}" for w in warnings] + [""]
    c = d["counts"]
    lines += ["## Data", "",
              f"Live time {float(d['live_seconds']) / 3600:.2f} h, tick {d.get('tick')}, lot "
              f"{d.get('lot')}, clock {d.get('clock')}, K = {d.get('k')}. {c['events']} events, "
              f"{c['pref_changes']} p_ref changes, {c['snapshots']} snapshots, {c['breaks']} "
              f"breaks, {c['cross_ref']} cross_ref insertions, {c['zero_delta']} unchanged-size "
              "rows.", "",
              f"Spread one tick {100 * float(d.get('spread_1_share') or 0):.1f}% of the live "
              "time; Q±1 empty "
              f"{100 * float((d.get('q_best_empty_share') or {}).get('bid', 0)):.1f}% (bid), "
              f"{100 * float((d.get('q_best_empty_share') or {}).get('ask', 0)):.1f}% (ask).",
              "", "## Limits", "", "| limit | events | AES (lots) | published cells | status |",
              "|---|---|---|---|---|"]
    for lim, st in d["limits"].items():
        lines.append(f"| {lim} | {st['events']} | {_fmt(st['aes_lots'], 2)} | "
                     f"{st['published_cells']} | {st['status']} |")
    tm = d.get("trade_match")
    if tm:
        lags = tm.get("trade_minus_nearest_decrease_ms") or {}
        lines += ["", "## Trade matching", "",
                  f"Window {tm['window_pre_ms']:.1f} ms before to {tm['window_post_ms']:.1f} ms "
                  f"after a decrease ({tm['window_rule']}; from {tm['lag_sample']} measured "
                  f"lags: trade − nearest decrease p1 {_fmt(lags.get('p1'), 1)}, p50 "
                  f"{_fmt(lags.get('p50'), 1)}, p99 {_fmt(lags.get('p99'), 1)} ms). "
                  f"{tm['trades']} trades, {tm['trades_unmatched']} unmatched."]
    m3, pr = d.get("model3", {}), d.get("pref", {})
    lines += ["", "## Reference-price moves", "",
              f"θ̂ = {_fmt(m3.get('theta'))} ± {_fmt(m3.get('theta_se'))} "
              f"({m3.get('moves')} moves, {m3.get('stays')} stays after "
              f"{m3.get('depletions')} best-queue depletions), θ̂^reinit = "
              f"{_fmt(m3.get('theta_reinit'))} ± {_fmt(m3.get('theta_reinit_se'))}; "
              f"η = {_fmt(pr.get('eta'))}; 10-minute volatility of the mid "
              f"{_fmt(pr.get('rv_mid_10min_bps'), 2)} bps over {pr.get('windows')} windows.",
              "", "## Bootstrap", "",
              f"{d['bootstrap']['variant']}: {d['bootstrap']['blocks']} blocks of "
              f"{d['bootstrap']['block_s']:g} s, {d['bootstrap']['resamples']} resamples.", ""]
    return lines


def write_summary(tables: QRTables, out: Path) -> Path:
    path = out / "summary.md"
    path.write_text("\n".join(summary_lines(tables)))
    return path


def write_figures(tables: QRTables, out: Path, k: int) -> list[Path]:
    """λ̂(n) panels of the published cells only; a level without any is not drawn."""
    pooled = tables.intensities.filter(pl.col("side") == "pooled")
    kinds = ["L", "C", "M"] if "C" in set(pooled["type"].to_list()) else ["L", "D"]
    published = pooled.filter(~pl.col("sparse"))
    sym = f"{tables.diagnostics.get('exchange')} {tables.diagnostics.get('symbol')}"
    paths = []
    for lim in range(1, k + 1):
        cells = published.filter(pl.col("limit") == lim)
        if cells.height == 0:
            continue
        fig = plots.new_figure(4.2 * len(kinds), 3.4)
        axes = fig.subplots(1, len(kinds), squeeze=False)[0]
        for ax, kind in zip(axes, kinds, strict=True):
            plots.draw_intensity(ax, cells, kind, f"{sym}  Q±{lim}: {plots.TYPE_LABELS[kind]}")
        paths.append(plots.save(fig, out / f"lambda_level{lim}.png"))
    levels = [lim for lim in range(1, min(k, 3) + 1)
              if published.filter(pl.col("limit") == lim).height]
    if levels:
        fig = plots.new_figure(4.0 * len(kinds), 3.0 * len(levels))
        axes = fig.subplots(len(levels), len(kinds), squeeze=False)
        for r, lim in enumerate(levels):
            cells = published.filter(pl.col("limit") == lim)
            for c, kind in enumerate(kinds):
                plots.draw_intensity(axes[r][c], cells, kind,
                                     f"Q±{lim}: {plots.TYPE_LABELS[kind]}")
        fig.suptitle(f"{sym}: queue-reactive intensities λ(n), bid and ask pooled "
                     "(cells meeting the reporting rule)")
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
    if args.block_s is not None and not args.block_s > 0:
        raise UsageProblem("--block-s must be positive")
    progress = Progress(PROG, quiet=args.quiet)
    tables = run(args, progress)
    for w in tables.diagnostics["warnings"]:
        progress.warn(w)
    progress.note(f"writing tables and figures to {args.out}")
    write(tables, args.out, args.k)
    d = tables.diagnostics
    counts = d["counts"]
    progress.note("done")
    tm = d.get("trade_match")
    window = ("" if not tm else f", trade window −{tm['window_pre_ms']:.1f}/+"
              f"{tm['window_post_ms']:.1f} ms ({tm['window_rule']})")
    print(f"{args.exchange} {args.symbol}: {counts['events']} events, "
          f"{counts['pref_changes']} p_ref changes, live {float(d['live_seconds']) / 3600:.2f} h, "
          f"tick {d['tick']}, lot {d['lot']}, clock {d['clock']}{window} -> {args.out}")
    if d["warnings"]:
        print(f"{len(d['warnings'])} warning(s): see {args.out / 'summary.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main_guard(PROG, main))
