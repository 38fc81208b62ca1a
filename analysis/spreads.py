"""``python -m analysis.spreads``: cross-venue top-of-book comparison for one symbol.

For every pair of venues recording ``--symbol`` in the ``tob`` table:

* three panels on the as-of aligned timeline (:mod:`analysis.align`): bid of a against ask of
  b, the reverse, and the gross edges both ways in bps (``pair_<a>_<b>.png``; long series are
  drawn per time bucket, the edges as min–max bands so short crossings stay visible);
* gross and net edges in bps both ways, crossing time shares and the mid basis over the time
  both legs were fresh (``pairs.csv``, ``basis_hourly.csv``);
* fee-adjusted opportunity episodes per direction and threshold τ (:mod:`analysis.episodes`):
  episodes per hour of the pair's common recording time, duration median/p90/max, peak and
  time-averaged net edge, a P&L upper bound, the refresh test's confirmed and artefact shares
  and the number long enough to capture (``opportunities.csv``/``.md``, every episode in
  ``episodes.parquet``);
* funding (:mod:`analysis.funding`, when the ``funding`` table has the pair's venues): each
  venue's funding rate (bps per 8 h) beside the mid basis over the same fresh time and UTC hours
  (``basis_hourly.csv``), and per episode the round trip held across it: entry and exit edges,
  taker fees both ways, the funding paid or received when it spans a funding time
  (``spans_funding``, ``funding_bps``, ``rt_net_bps`` in ``episodes.parquet``);
* lead-lag (:mod:`analysis.leadlag`): grid cross-correlation at 10 and 100 ms and the
  Hayashi–Yoshida θ̂ (``leadlag.csv``, ``leadlag_<a>_<b>.png``), and the event study
  (:mod:`analysis.event_study`) on receipt time and on clock-corrected exchange time
  (``event_study.csv``, ``event_study_<a>_<b>.png``);
* per venue (:mod:`analysis.venue_summary`): update rate, share of time at the best bid and the
  best ask across venues, how often it moves first (``venues.csv``);
* feed latency per venue, p1/p50/p99 of ts_local − ts_exchange (``latency.csv``,
  ``latency_hourly.csv``, ``latency.png``);
* ``summary.md`` with all tables, the fees and the clock offsets used.

Clock offsets for the exchange-clock timeline (``--clock exchange``, and the event study's
exchange-time run) are the recorder's ``clock_offset`` measurements (:mod:`analysis.clock_offsets`),
a venue's ``--clock-offset-ms`` overriding its own.

Fees come from :mod:`analysis.fees` (the shipped ``analysis/fees.toml``, base-tier taker rates
with their sources), replaced by ``--fees FILE`` and ``--taker-fee-bps VENUE=BPS``. A venue with
no fee gets gross edges only.

Scans lazily; a first small collect gathers per-venue aggregates (time span, S_max, latency),
then each pair's aligned timeline is collected once, then everything else. Progress goes to
stderr, one line per step (``--quiet`` turns it off).
"""

from __future__ import annotations

import argparse
import itertools
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from analysis import event_study, plots
from analysis.align import DEFAULT_STALE_CAP_MS, align_pair, staleness_caps, venue_quotes
from analysis.cli import UsageProblem, add_data_args, common_parser, main_guard, parse_time
from analysis.clock_offsets import Offset, resolve_offsets
from analysis.episodes import (
    DEFAULT_MERGE_GAP_MS,
    DEFAULT_THRESHOLDS_BPS,
    basis_hourly,
    direction,
    edge_summary,
    episode_stats,
    episodes,
    pair_edges,
)
from analysis.fees import FeeConfigError, VenueFee, parse_fee_overrides, resolve_fees
from analysis.funding import (
    funding_hourly,
    funding_times,
    load_funding,
    rates_on_grid,
    round_trips,
)
from analysis.latency import latency_hourly, latency_quantiles, latency_samples
from analysis.leadlag import grid_leadlag, grid_mid, hy_leadlag, mid_ticks
from analysis.load import (
    QUOTE_BREAKS,
    MissingData,
    breaks,
    require_venues,
    scan,
    symbols,
    venues,
)
from analysis.progress import Progress, add_quiet_arg
from analysis.venue_summary import (
    DEFAULT_LEAD_WINDOW_MS,
    best_price_shares,
    lead_counts,
    venue_table,
)
from core.codec import MS_NS

PROG = "python -m analysis.spreads"
EXAMPLE = (f"{PROG} --data data --symbol BTC-USDT --out out/spreads "
           "--taker-fee-bps gateio=4.5 --thresholds 0,2,5,10")
MS = MS_NS
PLOT_BUCKETS = 4000
DEFAULT_RTT_MS = 100.0
DEFAULT_GRIDS_MS = (10.0, 100.0)
EDGE_COLUMNS = ("t", "dt", "dt_fresh", "fresh", "a_ts", "b_ts", "a_age", "b_age", "a_bid_px",
                "a_ask_px", "b_bid_px",
                "b_ask_px", "gross_ab", "gross_ba", "net_ab", "net_ba", "notional_ab",
                "notional_ba", "ratio_ab", "ratio_ba", "basis", "a_funding_bps",
                "b_funding_bps")


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas: {text}") from exc


def parser() -> argparse.ArgumentParser:
    p = common_parser(PROG, "Pairwise cross-venue spreads, opportunities, lead-lag and latency "
                      "from recorded top of book.", EXAMPLE)
    add_data_args(p)
    p.add_argument("--symbol", required=True, help="canonical symbol, e.g. BTC-USDT")
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.add_argument("--venues", help="comma-separated venues (default: every venue with the symbol)")
    p.add_argument("--start", type=parse_time, help="first time to use (UTC)")
    p.add_argument("--end", type=parse_time, help="last time to use (UTC)")
    p.add_argument("--fees", type=Path, help="TOML fee file merged over analysis/fees.toml")
    p.add_argument("--taker-fee-bps", action="append", default=[], metavar="VENUE=BPS",
                   help="taker fee of one venue in bps (repeatable), e.g. bybit=5.5")
    p.add_argument("--thresholds", type=_floats, default=DEFAULT_THRESHOLDS_BPS,
                   help="net-edge thresholds τ in bps (default 0,2,5,10)")
    p.add_argument("--merge-gap-ms", type=float, default=DEFAULT_MERGE_GAP_MS,
                   help="merge episodes closer than this (default 50)")
    p.add_argument("--stale-cap-ms", type=float, default=DEFAULT_STALE_CAP_MS,
                   help="cap of the per-venue staleness limit S_max (default 250)")
    p.add_argument("--order-rtt-ms", type=float, default=DEFAULT_RTT_MS,
                   help="order round trip for capturability (default 100)")
    p.add_argument("--grid-ms", type=_floats, default=DEFAULT_GRIDS_MS,
                   help="lead-lag grid steps in ms (default 10,100)")
    p.add_argument("--no-leadlag", action="store_true",
                   help="skip the lead-lag estimators and the event study")
    p.add_argument("--clock", choices=("local", "exchange"), default="local",
                   help="timeline: receipt time ts_local (default) or exchange time "
                        "ts_exchange + the venue's clock offset (robustness run)")
    add_quiet_arg(p)
    p.add_argument("--clock-offset-ms", action="append", default=[], metavar="VENUE=MS",
                   help="clock offset of a venue for the exchange-clock timeline (local minus "
                        "venue clock), overriding the recorder's clock_offset measurements; "
                        "default: their median, else 0")
    p.add_argument("--lead-window-ms", type=float, default=DEFAULT_LEAD_WINDOW_MS,
                   help="a venue's move leads when another venue follows within this window "
                        "and none moved within it before (venue table; default 100)")
    return p


@dataclass
class VenueInfo:
    name: str
    rows: int
    first: int
    last: int
    smax: int
    lat_p50_ns: int | None


def venue_overview(tob: pl.LazyFrame, cap_ms: float) -> tuple[pl.LazyFrame, ...]:
    span = (tob.group_by("exchange")
            .agg(pl.len().alias("rows"), pl.col("ts_local").min().cast(pl.Int64).alias("first"),
                 pl.col("ts_local").max().cast(pl.Int64).alias("last"))
            .sort("exchange"))
    return (span, staleness_caps(tob, cap_ms), latency_quantiles(tob), latency_hourly(tob),
            latency_samples(tob))


def plot_buckets(edges: pl.LazyFrame, t0: int, t1: int) -> pl.LazyFrame:
    width = max(1, (t1 - t0) // PLOT_BUCKETS)
    return (edges.with_columns(((pl.col("t") - t0) // width).alias("_b"))
            .group_by("_b")
            .agg(pl.col("t").first(), pl.col("a_bid_px").last(), pl.col("a_ask_px").last(),
                 pl.col("b_bid_px").last(), pl.col("b_ask_px").last(),
                 pl.col("gross_ab").min().alias("gross_ab_lo"),
                 pl.col("gross_ab").max().alias("gross_ab_hi"),
                 pl.col("gross_ba").min().alias("gross_ba_lo"),
                 pl.col("gross_ba").max().alias("gross_ba_hi"))
            .sort("_b"))


def markdown(df: pl.DataFrame, digits: int = 3) -> str:
    """A GitHub Markdown table."""
    def cell(v: Any) -> str:
        if v is None:
            return ""
        if isinstance(v, float):
            return "" if not np.isfinite(v) else f"{v:.{digits}f}"
        return str(v)
    head = "| " + " | ".join(df.columns) + " |"
    sep = "|" + "|".join("---" for _ in df.columns) + "|"
    rows = ["| " + " | ".join(cell(v) for v in r) + " |" for r in df.iter_rows()]
    return "\n".join([head, sep, *rows])


def clock_offsets(items: Sequence[str]) -> dict[str, float]:
    """``["htx=3.5"]`` -> ``{"htx": 3.5}`` (ms)."""
    out = {}
    for item in items:
        venue, sep, text = item.partition("=")
        try:
            out[venue.strip()] = float(text)
        except ValueError:
            sep = ""
        if not sep or not venue.strip():
            raise UsageProblem(f"--clock-offset-ms {item!r}: expected VENUE=MS, e.g. htx=3.5")
    return out


def recording_end(args: argparse.Namespace, present: list[str],
                  info: dict[str, VenueInfo]) -> int | None:
    """The end of the recording on the timeline: the last quote of any venue, or a later health
    row of these venues (the recorder's ``stopped``); None on the exchange clock (health rows
    have receipt times only)."""
    if args.clock != "local":
        return None
    last = max(i.last for i in info.values())
    have = set(venues(args.data, "health"))
    wanted = [v for v in present if v in have]
    if wanted:
        h = scan(args.data, "health", exchanges=wanted, start=args.start, end=args.end).select(
            pl.col("ts_local").max().cast(pl.Int64)).collect().item()
        if h is not None:
            last = max(last, int(h))
    return last


def fee_table(args: argparse.Namespace) -> dict[str, VenueFee]:
    try:
        return resolve_fees(args.fees, parse_fee_overrides(args.taker_fee_bps))
    except FeeConfigError as exc:
        raise UsageProblem(str(exc)) from exc


def run(args: argparse.Namespace, progress: Progress | None = None) -> dict[str, Any]:
    """Compute every output; returns the frames and figures' data (written by :func:`write`)."""
    progress = progress or Progress(PROG, quiet=True)
    wanted = [v.strip() for v in args.venues.split(",")] if args.venues else None
    all_venues = require_venues(args.data, "tob", wanted)
    fees = fee_table(args)
    tob = scan(args.data, "tob", exchanges=all_venues, symbol=args.symbol, start=args.start,
               end=args.end)
    progress.note(f"reading tob of {args.symbol} on {', '.join(all_venues)}: spans, staleness "
                  "limits, latency")
    span, caps, lat_q, lat_h, lat_s = pl.collect_all(list(venue_overview(tob,
                                                                         args.stale_cap_ms)))
    present = span.filter(pl.col("rows") > 0)["exchange"].to_list()
    if len(present) < 2:
        listed = symbols(args.data, "tob", all_venues)
        where = f"only on {present[0]}" if present else "on no venue"
        raise MissingData(f"{args.symbol} is {where} in the tob table (between "
                          f"{args.start or 'the start'} and {args.end or 'the end'}); two "
                          f"venues are needed; symbols recorded: {', '.join(listed) or 'none'}")
    lat_map = {ex: (None if p50 is None else int(max(p50, 0.0) * MS))
               for ex, p50 in lat_q.select("exchange", "p50_ms").iter_rows()}
    smax = dict(caps.select("exchange", "smax").iter_rows())
    info = {ex: VenueInfo(ex, rows, first, last, int(smax[ex]), lat_map.get(ex))
            for ex, rows, first, last in span.iter_rows() if rows > 0}
    have_ex = dict(lat_q.select("exchange", "min_ms").iter_rows())
    offsets = resolve_offsets(args.data, present, clock_offsets(args.clock_offset_ms),
                              args.start, args.end)
    exchange_quotes = {v: venue_quotes(tob, v, int(offsets[v].offset_ms * MS)) for v in present
                       if have_ex.get(v) is not None}
    local_quotes = {v: venue_quotes(tob, v) for v in present}
    if args.clock == "exchange":
        missing = [v for v in present if have_ex.get(v) is None]
        if missing:
            raise MissingData(f"no exchange timestamps for {', '.join(missing)}: --clock "
                              "exchange needs them")
        quotes = exchange_quotes
    else:
        quotes = local_quotes
    funding = load_funding(args.data, present, args.symbol, args.start, args.end)
    brk = {v: breaks(args.data, v, args.symbol, start=args.start, end=args.end,
                     events=QUOTE_BREAKS) for v in present}
    end_ns = recording_end(args, present, info)
    pairs = list(itertools.combinations(sorted(present), 2))
    rtt = int(args.order_rtt_ms * MS)
    lazy: list[pl.LazyFrame] = []
    index: dict[tuple[Any, ...], int] = {}

    def add(key: tuple[Any, ...], lf: pl.LazyFrame) -> None:
        index[key] = len(lazy)
        lazy.append(lf)

    for n_pair, (a, b) in enumerate(pairs, 1):
        progress.note(f"aligning pair {n_pair}/{len(pairs)}: {a} and {b}")
        fa = fees[a].taker if a in fees else None
        fb = fees[b].taker if b in fees else None
        # the aligned pair is materialised once and every per-pair table is derived from it
        edges = rates_on_grid(pair_edges(align_pair(quotes[a], quotes[b], info[a].smax,
                                                    info[b].smax, brk[a], brk[b], end_ns),
                                         fa, fb), funding, a, b).select(EDGE_COLUMNS)
        edges = edges.collect().lazy()
        t0, t1 = max(info[a].first, info[b].first), min(info[a].last, info[b].last)
        add(("plot", a, b), plot_buckets(edges, t0, t1))
        add(("summary", a, b), edge_summary(edges))
        add(("basis", a, b), basis_hourly(edges).join(
            funding_hourly(edges).select("hour", "funding_a_bps", "funding_b_bps",
                                         "funding_diff_bps"), on="hour", how="left")
            .with_columns(pl.lit(a).alias("venue_a"), pl.lit(b).alias("venue_b")))
        add(("exits", a, b), edges.select("t", "gross_ab", "gross_ba"))
        lats = [info[a].lat_p50_ns, info[b].lat_p50_ns]
        lat = None if None in lats else max(x for x in lats if x is not None)
        for d in ("ab", "ba"):
            buy, sell = (a, b) if d == "ab" else (b, a)
            view = direction(edges, d)
            for tau in args.thresholds:
                eps = episodes(view, tau, args.merge_gap_ms)
                add(("stats", buy, sell, tau), episode_stats(eps, 1.0, lat, rtt))
                add(("episodes", buy, sell, tau), eps.drop("_net_dt", "_dt").with_columns(
                    pl.lit(buy).alias("buy_venue"), pl.lit(sell).alias("sell_venue"),
                    pl.lit(tau).alias("tau_bps")))
    for v in present:  # mid changes: the event study and the venue table
        add(("moves", "local", v), local_quotes[v].select("ts", "bid_px", "ask_px"))
        if v in exchange_quotes:
            add(("moves", "exchange", v), exchange_quotes[v].select("ts", "bid_px", "ask_px"))
    if not args.no_leadlag:
        g0 = max(i.first for i in info.values())
        g1 = min(i.last for i in info.values())
        for v in present:
            add(("ticks", v), mid_ticks(quotes[v]))
            for step in args.grid_ms:
                if g1 > g0:
                    add(("grid", v, step), grid_mid(quotes[v], g0, g1, int(step * MS)))
    progress.note(f"episodes, edges{', lead-lag grids' if not args.no_leadlag else ''} "
                  f"({len(lazy)} tables)")
    frames = pl.collect_all(lazy)
    got = {key: frames[i] for key, i in index.items()}
    res = assemble(args, got, pairs, info, fees, lat_q, lat_h, lat_s, caps, progress)
    progress.note("funding round trips, event study, venue table")
    times = funding_times(funding)
    res["episodes"] = with_round_trips(res["episodes"], got, pairs, fees, times)
    res["opportunities"] = with_round_trip_stats(res["opportunities"], res["episodes"])
    clock_of = {"local": "receipt", "exchange": "exchange"}
    changes = {clock: {v: event_study.mid_changes(got[("moves", clock, v)]) for v in present
                       if ("moves", clock, v) in got} for clock in ("local", "exchange")}
    res["event_study"] = {clock_of[c]: event_study.study_all(ch) for c, ch in changes.items()
                          if len(ch) >= 2} if not args.no_leadlag else {}
    res["event_study_table"] = event_study.table(res["event_study"])
    mine = changes["exchange" if args.clock == "exchange" else "local"]
    shares = best_price_shares(quotes, {v: info[v].smax for v in present}, brk, end_ns)
    res["venues_table"] = venue_table({v: info[v].rows for v in present},
                                      {v: info[v].last - info[v].first for v in present},
                                      mine, shares, lead_counts(mine, args.lead_window_ms))
    res["offsets"] = offsets
    res["funding_times"] = times
    return res


def with_round_trips(eps: pl.DataFrame, got: dict[tuple[Any, ...], pl.DataFrame],
                     pairs: list[tuple[str, str]], fees: dict[str, VenueFee],
                     times: pl.DataFrame) -> pl.DataFrame:
    """Every episode with its round trip held across it (:func:`analysis.funding.round_trips`)."""
    parts = []
    for a, b in pairs:
        cost = 1e4 * (fees[a].taker + fees[b].taker) if a in fees and b in fees else None
        exits = got[("exits", a, b)]
        for d, buy, sell in (("ab", a, b), ("ba", b, a)):
            mine = eps.filter((pl.col("buy_venue") == buy) & (pl.col("sell_venue") == sell))
            if mine.height:
                parts.append(round_trips(mine.with_columns(
                    pl.col("start").cast(pl.Int64), pl.col("end").cast(pl.Int64)),
                    exits, d, buy, sell, times, cost))
    if not parts:
        return eps.with_columns(pl.lit(None, pl.Float64).alias("rt_exit_bps"),
                                pl.lit(0, pl.UInt32).alias("fundings"),
                                pl.lit(None, pl.Float64).alias("funding_bps"),
                                pl.lit(False).alias("spans_funding"),
                                pl.lit(None, pl.Float64).alias("rt_net_bps"))
    ts = pl.Datetime("ns", "UTC")
    return (pl.concat(parts, how="vertical_relaxed")
            .with_columns(pl.col("start").cast(ts), pl.col("end").cast(ts))
            .sort("buy_venue", "sell_venue", "tau_bps", "start"))


def with_round_trip_stats(opps: pl.DataFrame, eps: pl.DataFrame) -> pl.DataFrame:
    """``spanning_funding`` (episodes with a funding time inside) and ``rt_net_mean_bps``
    (mean net edge of the round trips) per direction and τ."""
    keys = ["buy_venue", "sell_venue", "tau_bps"]
    stats = eps.group_by(keys).agg(pl.col("spans_funding").sum().alias("spanning_funding"),
                                   pl.col("rt_net_bps").mean().alias("rt_net_mean_bps"))
    return (opps.join(stats, on=keys, how="left")
            .with_columns(pl.col("spanning_funding").fill_null(0)).sort(keys))


def assemble(args: argparse.Namespace, got: dict[tuple[Any, ...], pl.DataFrame],
             pairs: list[tuple[str, str]], info: dict[str, VenueInfo],
             fees: dict[str, VenueFee], lat_q: pl.DataFrame, lat_h: pl.DataFrame,
             lat_s: pl.DataFrame, caps: pl.DataFrame,
             progress: Progress | None = None) -> dict[str, Any]:
    progress = progress or Progress(PROG, quiet=True)
    stats_rows = []
    for (kind, *key), df in got.items():
        if kind != "stats":
            continue
        buy, sell, tau = key
        hours = max(0.0, (min(info[buy].last, info[sell].last)
                          - max(info[buy].first, info[sell].first)) / 3.6e12)
        row = df.row(0, named=True)
        row["per_hour"] = row["episodes"] / hours if hours > 0 else None
        fee_known = buy in fees and sell in fees
        stats_rows.append({"buy_venue": buy, "sell_venue": sell, "tau_bps": tau,
                           "cost_bps": (1e4 * (fees[buy].taker + fees[sell].taker)
                                        if fee_known else None),
                           "hours": hours, **row})
    opps = pl.DataFrame(stats_rows).sort("buy_venue", "sell_venue", "tau_bps")
    eps = pl.concat([df for (kind, *_), df in got.items() if kind == "episodes"],
                    how="vertical_relaxed")
    eps = eps.with_columns(pl.col("start").cast(pl.Datetime("ns", "UTC")),
                           pl.col("end").cast(pl.Datetime("ns", "UTC")),
                           (pl.col("duration_ns") / MS).alias("duration_ms")).select(
        "buy_venue", "sell_venue", "tau_bps", "start", "end", "duration_ms", "rows",
        "peak_net_bps", "mean_net_bps", "pnl_upper", "age_gap_ns", "older_leg",
        (pl.col("older_refresh_ns") / MS).alias("older_refresh_ms"), "verdict", "open_at_end",
        "rt_entry_bps")
    pair_rows = []
    for a, b in pairs:
        s = got[("summary", a, b)].row(0, named=True)
        pair_rows.append({"venue_a": a, "venue_b": b, **s})
    pair_df = pl.DataFrame(pair_rows)
    basis = pl.concat([got[("basis", a, b)] for a, b in pairs]).select(
        "venue_a", "venue_b", "hour", "basis_mean_bps", "basis_std_bps", "rows",
        "funding_a_bps", "funding_b_bps", "funding_diff_bps")
    leadlag_rows = []
    leadlag_curves: dict[tuple[str, str], dict[str, Any]] = {}
    if not args.no_leadlag:
        for n_pair, (a, b) in enumerate(pairs, 1):
            progress.note(f"lead-lag {n_pair}/{len(pairs)}: {a} and {b} (grid correlations, "
                          "Hayashi–Yoshida)")
            curves: dict[str, Any] = {"grid": []}
            row: dict[str, Any] = {"venue_a": a, "venue_b": b}
            for step in args.grid_ms:
                ga, gb = got.get(("grid", a, step)), got.get(("grid", b, step))
                if ga is None or gb is None:
                    continue
                res = grid_leadlag(ga["logmid"].to_numpy(), gb["logmid"].to_numpy(), step)
                curves["grid"].append(res)
                tag = f"{step:g}ms"
                row |= {f"xcorr_{tag}_argmax_lag_ms": res.argmax_lag_ms,
                        f"xcorr_{tag}_rho_max": res.rho_max,
                        f"xcorr_{tag}_asymmetry": res.asymmetry}
            ta, tb = got[("ticks", a)], got[("ticks", b)]
            hy = hy_leadlag(ta["ts"].to_numpy(), ta["logmid"].to_numpy(), tb["ts"].to_numpy(),
                            tb["logmid"].to_numpy())
            curves["hy"] = hy
            row |= {"hy_theta_ms": hy.theta_ms, "hy_corr_max": hy.corr_max,
                    "hy_corr_at_0": hy.corr_zero}
            leadlag_rows.append(row)
            leadlag_curves[(a, b)] = curves
    lat = lat_q.join(caps.select("exchange", (pl.col("smax") / MS).alias("smax_ms")),
                     on="exchange", how="left")
    return {"info": info, "opportunities": opps, "episodes": eps, "pairs": pair_df,
            "basis": basis,
            "leadlag": pl.DataFrame(leadlag_rows) if leadlag_rows else None,
            "leadlag_curves": leadlag_curves, "latency": lat, "latency_hourly": lat_h,
            "latency_samples": lat_s, "plots": {(a, b): got[("plot", a, b)] for a, b in pairs},
            "fees": fees, "venues": sorted(info), "pairs_list": pairs}


def draw_pair(df: pl.DataFrame, a: str, b: str, means: tuple[float | None, float | None],
              cost_bps: float | None, symbol: str, path: Path) -> Path:
    t = df["t"].to_numpy().astype("datetime64[ns]")
    unit = symbol.split("-")[-1] if "-" in symbol else "quote currency"
    fig = plots.new_figure(19, 5.6)
    ax1, ax2, ax3 = fig.subplots(1, 3)
    plots.draw_quote_pair(ax1, t, df["a_bid_px"], df["b_ask_px"], f"bid at {a}", f"ask at {b}",
                          "tab:blue", "tab:red", f"{symbol}: bid of {a} and ask of {b}", unit)
    plots.draw_quote_pair(ax2, t, df["b_bid_px"], df["a_ask_px"], f"bid at {b}", f"ask at {a}",
                          "tab:red", "tab:blue", f"{symbol}: bid of {b} and ask of {a}", unit)

    def label(buy: str, sell: str, mean: float | None) -> str:
        avg = "" if mean is None else f", time-weighted mean {mean:+.2f} bps"
        return f"buy {buy}, sell {sell}{avg}"

    plots.draw_edges(ax3, t, [(df["gross_ab_lo"], df["gross_ab_hi"], label(a, b, means[0]),
                               "tab:blue"),
                              (df["gross_ba_lo"], df["gross_ba_hi"], label(b, a, means[1]),
                               "tab:green")],
                     cost_bps, f"{symbol}: gross edge both ways (range per time bucket)")
    return plots.save(fig, path)


def draw_leadlag(curves: dict[str, Any], a: str, b: str, symbol: str, path: Path) -> Path:
    fig = plots.new_figure(12, 4.2)
    ax1, ax2 = fig.subplots(1, 2)
    for g in curves["grid"]:
        plots.draw_xcorr(ax1, g.lags_ms, g.rho, f"{g.step_ms:g} ms grid")
    ax1.set_title(f"{symbol}: corr(r_{a}(t), r_{b}(t+ℓ))", fontsize=9)
    hy = curves["hy"]
    ax2.plot(hy.thetas_ms, hy.corr, lw=1.0, color="tab:purple", label="Hayashi–Yoshida")
    if hy.theta_ms is not None:
        ax2.axvline(hy.theta_ms, color="tab:purple", ls="--", lw=0.8,
                    label=f"θ̂ = {hy.theta_ms:g} ms")
    ax2.axvline(0, color="black", lw=0.6)
    ax2.set_xlabel(f"θ (ms); θ > 0: {a} leads {b}")
    ax2.set_ylabel("HY correlation")
    ax2.set_title(f"{symbol}: HY lead-lag {a} vs {b}", fontsize=9)
    ax2.grid(True, linestyle="--", alpha=0.4)
    ax2.legend(fontsize=7)
    return plots.save(fig, path)


def draw_event_study(studies: dict[str, list[event_study.PairStudy]], a: str, b: str,
                     symbol: str, span: str, path: Path) -> Path:
    """One panel per clock: a→b and b→a against their baselines."""
    clocks = [c for c in ("receipt", "exchange") if c in studies]
    fig = plots.new_figure(6.2 * len(clocks), 4.4)
    axes = fig.subplots(1, len(clocks), squeeze=False)[0]
    for ax, clock in zip(axes, clocks, strict=True):
        by = {(s.leader, s.follower): s for s in studies[clock]}
        curves = [(f"{i} → {j}", by[(i, j)].curve, by[(i, j)].base_curve, colour)
                  for (i, j), colour in (((a, b), "tab:blue"), ((b, a), "tab:orange"))
                  if (i, j) in by]
        what = "receipt time ts_local" if clock == "receipt" else \
            "exchange time + clock offset"
        plots.draw_event_study(ax, event_study.CURVE_MS, curves,
                               f"{symbol}, {what}\n{span}")
    return plots.save(fig, path)


def write(res: dict[str, Any], args: argparse.Namespace) -> list[Path]:
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    written = []
    res["episodes"].write_parquet(out / "episodes.parquet")
    written.append(out / "episodes.parquet")
    for name in ("opportunities", "pairs", "basis", "latency", "latency_hourly", "leadlag",
                 "event_study_table", "venues_table"):
        df = res[name]
        if df is None or df.width == 0:
            continue
        path = out / {"basis": "basis_hourly.csv", "event_study_table": "event_study.csv",
                      "venues_table": "venues.csv"}.get(name, f"{name}.csv")
        df.write_csv(path)
        written.append(path)
    opp_cols = ["buy_venue", "sell_venue", "tau_bps", "cost_bps", "episodes", "per_hour",
                "dur_median_ms", "dur_p90_ms", "dur_max_ms", "peak_net_bps", "mean_net_bps",
                "pnl_upper", "confirmed_share", "artefact_share", "capturable",
                "spanning_funding", "rt_net_mean_bps"]
    md = out / "opportunities.md"
    md.write_text(markdown(res["opportunities"].select(opp_cols), 2) + "\n")
    written.append(md)
    pairs_by = {(r["venue_a"], r["venue_b"]): r for r in res["pairs"].iter_rows(named=True)}
    fees: dict[str, VenueFee] = res["fees"]
    for (a, b), df in res["plots"].items():
        s = pairs_by[(a, b)]
        cost = 1e4 * (fees[a].taker + fees[b].taker) if a in fees and b in fees else None
        written.append(draw_pair(df, a, b, (s["gross_ab_mean_bps"], s["gross_ba_mean_bps"]),
                                 cost, args.symbol, out / f"pair_{a}_{b}.png"))
    for (a, b), curves in res["leadlag_curves"].items():
        written.append(draw_leadlag(curves, a, b, args.symbol, out / f"leadlag_{a}_{b}.png"))
    if res["event_study"]:
        span = utc_span(res)
        for a, b in res["pairs_list"]:
            written.append(draw_event_study(res["event_study"], a, b, args.symbol, span,
                                            out / f"event_study_{a}_{b}.png"))
    samples = res["latency_samples"]
    lat_venues = [v for v in res["venues"] if samples.filter(pl.col("exchange") == v).height]
    if lat_venues:
        fig = plots.new_figure(7, 4)
        plots.draw_latency(fig.subplots(), lat_venues,
                           [samples.filter(pl.col("exchange") == v)["d_ms"].to_numpy()
                            for v in lat_venues])
        written.append(plots.save(fig, out / "latency.png"))
    written.append(write_summary(res, args))
    return written


def utc_span(res: dict[str, Any]) -> str:
    """``2024-05-01 12:00:00 to 13:00:00 UTC``: the venues' common recording time."""
    from datetime import UTC, datetime

    info = res["info"]
    t0 = max(i.first for i in info.values()) / 1e9
    t1 = min(i.last for i in info.values()) / 1e9
    a = datetime.fromtimestamp(t0, UTC)
    b = datetime.fromtimestamp(t1, UTC)
    right = b.strftime("%H:%M:%S") if a.date() == b.date() else b.strftime("%Y-%m-%d %H:%M:%S")
    return f"{a.strftime('%Y-%m-%d %H:%M:%S')} to {right} UTC"


def write_summary(res: dict[str, Any], args: argparse.Namespace) -> Path:
    fees: dict[str, VenueFee] = res["fees"]
    offsets: dict[str, Offset] = res["offsets"]
    clock = ("receipt time ts_local" if args.clock == "local" else
             "exchange time ts_exchange + each venue's clock offset")
    lines = [f"# {args.symbol}: cross-venue spreads", "",
             f"Venues: {', '.join(res['venues'])}. Data: {args.data}. Timeline: {clock}.", "",
             "## Clock offsets (exchange-clock timeline and event study)", ""]
    lines += [f"* {offsets[v].describe()}" for v in res["venues"] if v in offsets]
    lines += ["", "## Taker fees", ""]
    lines += [f"* {fees[v].describe()}" if v in fees else f"* {v}: no fee known (gross edges "
              "only)" for v in res["venues"]]
    pair_cols = ["venue_a", "venue_b", "gross_ab_mean_bps", "gross_ab_max_bps",
                 "cross_ab_time_share", "gross_ba_mean_bps", "gross_ba_max_bps",
                 "cross_ba_time_share", "ratio_ab_mean", "ratio_ba_mean", "basis_mean_bps",
                 "basis_std_bps", "fresh_seconds"]
    lines += ["", "## Edges and basis per pair (time with both legs fresh)",
              "gross_ab: buy on venue_a at its ask, sell on venue_b at its bid, in bps.", "",
              markdown(res["pairs"].select(pair_cols), 4), "",
              "## Opportunity episodes (net of taker fees on both legs)", "",
              (args.out / "opportunities.md").read_text().strip(), "",
              f"Episodes merge gaps < {args.merge_gap_ms:g} ms and end when a leg's quote passes "
              "its staleness limit S_max; capturable: duration > slower venue's median latency "
              f"+ {args.order_rtt_ms:g} ms order round trip. Refresh test: confirmed_share is "
              "the share of episodes still crossed when the older leg's next quote arrived "
              "(a real dislocation), artefact_share the share that ended with it (a stale-quote "
              "artefact); the rest ended before the older leg quoted again."]
    basis = res["basis"]
    lines += ["", "## Basis and funding per pair and hour (time with both legs fresh)",
              "basis: 1e4 · (mid_b / mid_a − 1); funding rates in bps per 8 h (a venue's rate "
              "per interval scaled to 8 h), funding_diff = b − a: the carry a long-b, short-a "
              "position pays per 8 h (positive: b's longs pay more, b should trade rich).", ""]
    if basis["funding_a_bps"].is_null().all() and basis["funding_b_bps"].is_null().all():
        lines.append("No funding rows for these venues (record the `funding` channel).")
    lines += ["", markdown(basis.select("venue_a", "venue_b", "hour", "basis_mean_bps",
                                        "funding_a_bps", "funding_b_bps", "funding_diff_bps",
                                        "rows"), 3)]
    eps = res["episodes"]
    spans = eps.filter(pl.col("spans_funding"))
    lines += ["", "## Round trips held across an episode",
              "Open at the episode's start (buy on buy_venue at its ask, sell on sell_venue at "
              "its bid), close at its end (the reverse, at the quotes then): rt_net = entry "
              "edge + exit edge − taker fees on four legs + funding received (the short leg's "
              "rate minus the long leg's, at every funding time inside the episode).", "",
              f"{spans.height} of {eps.height} episodes span a funding time."]
    if spans.height:
        lines += ["", markdown(spans.select(
            "buy_venue", "sell_venue", "tau_bps", "start", "end", "fundings", "rt_entry_bps",
            "rt_exit_bps", "funding_bps", "rt_net_bps").head(50), 3)]
    lines += ["", "## Venues",
              f"best_bid_share / best_ask_share: share of the time with two or more venues "
              f"fresh that the venue held the best price (ties count for each); lead_share: "
              f"its part of the moves followed by another venue within "
              f"{args.lead_window_ms:g} ms and preceded by none.", "",
              markdown(res["venues_table"], 3)]
    if res["leadlag"] is not None:
        lines += ["", "## Lead-lag (positive lag or θ: venue_a leads)", "",
                  markdown(res["leadlag"], 3)]
    table = res.get("event_study_table")
    if table is not None and table.height:
        lines += ["", "## Event study: P(the follower's mid moves the same way within τ)",
                  "After each mid change of the leader, and from random times (base); lift = "
                  "p / base; lag_ms: the most common response time.", "",
                  markdown(table, 3)]
    lines += ["", "## Feed latency ts_local − ts_exchange (ms) and staleness limit S_max", "",
              markdown(res["latency"], 2), ""]
    path = args.out / "summary.md"
    path.write_text("\n".join(lines))
    return path


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if not args.thresholds:
        raise UsageProblem("--thresholds needs at least one value")
    progress = Progress(PROG, quiet=args.quiet)
    res = run(args, progress)
    progress.note(f"writing tables and figures to {args.out}")
    write(res, args)
    progress.note("done")
    opp = res["opportunities"].filter(pl.col("tau_bps") == min(args.thresholds))
    best = opp.sort("episodes", descending=True).head(1)
    msg = ""
    if best.height and best["episodes"][0] > 0:
        r = best.row(0, named=True)
        msg = (f"; most episodes at τ = {r['tau_bps']:g} bps: buy {r['buy_venue']} sell "
               f"{r['sell_venue']} ({r['episodes']})")
    elif best.height:
        msg = f"; no opportunity episode at τ = {min(args.thresholds):g} bps net of fees"
    print(f"{args.symbol}: {len(res['pairs_list'])} pairs over {', '.join(res['venues'])}"
          f"{msg} -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main_guard(PROG, main))
