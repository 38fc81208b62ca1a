"""What a recording run shows while it runs: a live terminal view (rich) or plain status lines.

:func:`choose_status_view` picks the :data:`core.supervisor.StatusView` for a run:

* stderr is a terminal and ``--no-live`` was not given: :func:`live_status`, a table redrawn in
  place a few times a second. A header with the time, the elapsed and (with ``--duration``)
  remaining time and the output folder; per venue: state (up/DOWN), messages/s over the last
  seconds, age of the last message, reconnects, gaps; per venue pair (when a spread analyzer
  runs): current gross and net edge, size and leg ages, highlighted when the net edge is positive
  on fresh quotes; per venue and symbol (when the ``funding`` channel is recorded): the funding
  rate per interval, the time to the next funding, mark and index prices. Log records are
  printed above the table instead of through it.
* otherwise: :func:`plain_status`, the plain lines of :func:`core.status.report_status` (a run
  line, then one per venue and one per funding row) every ``--status-interval`` seconds, plus one
  line per symbol with its best pair.

With a spread analyzer, the view also shows the current spread of every venue pair.

:func:`build_view` is pure (stats and a spread snapshot in, a rich renderable out), so tests render
it to a string.

Must not: touch the data path (it reads counters and snapshots only), write to stdout, or stop a
recording: a failing live view falls back to plain lines.
"""

from __future__ import annotations

import logging
import sys
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Protocol, TextIO

import trio
from rich import box
from rich.console import Console, Group, JustifyMethod, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from core.bus import Bus, SubscriptionStats
from core.clock import Clock
from core.codec import S_NS
from core.schema import Funding
from core.session import VenueStats
from core.status import (
    DEFAULT_STATUS_INTERVAL_S,
    FundingBoard,
    RunInfo,
    format_run,
    next_funding_text,
    rate_text,
    report_status,
    watch_funding,
)
from core.supervisor import StatusView

log = logging.getLogger("bookwire.status")

LIVE_REFRESH_S = 0.5  # 2 Hz: readable, and cheap next to the feeds
RATE_WINDOW_S = 3.0
MAX_PAIR_ROWS = 30
MAX_NAME_WIDTH = 20

Columns = tuple[tuple[str, JustifyMethod, bool], ...]
# (header, justify, truncate): names may be cut with an ellipsis, numbers never
VENUE_COLUMNS: Columns = (("venue", "left", True), ("state", "left", False),
                          ("msg/s", "right", False), ("last msg", "right", False),
                          ("reconn", "right", False), ("gaps", "right", False),
                          ("dec err", "right", False))
PAIR_COLUMNS: Columns = (("", "left", False), ("buy→sell", "left", True), ("ask", "right", False),
                         ("bid", "right", False), ("gross", "right", False),
                         ("net", "right", False), ("size", "right", False),
                         ("age ms", "right", False))
FUNDING_COLUMNS: Columns = (("venue", "left", True), ("symbol", "left", True),
                            ("rate/interval", "right", False), ("next funding", "right", False),
                            ("mark", "right", False), ("index", "right", False))
POSITIVE_MARK = "▲"
STALE_MARK = "✕"


class PairLike(Protocol):
    """One venue pair as a display sees it (``analysis.spread_live.PairView``)."""

    @property
    def symbol(self) -> str: ...
    @property
    def buy_exchange(self) -> str: ...
    @property
    def sell_exchange(self) -> str: ...
    @property
    def ask_px(self) -> float: ...
    @property
    def bid_px(self) -> float: ...
    @property
    def gross_bps(self) -> float: ...
    @property
    def net_bps(self) -> float | None: ...
    @property
    def size(self) -> float: ...
    @property
    def buy_age_ms(self) -> float: ...
    @property
    def sell_age_ms(self) -> float: ...
    @property
    def stale(self) -> bool: ...
    @property
    def in_episode(self) -> bool: ...


class SpreadSource(Protocol):
    """A live analyzer the view drives (``analysis.spread_live.SpreadAnalyzer``)."""

    def bind(self, bus: Bus) -> None: ...
    def finish(self, now_ns: int) -> None: ...
    def pairs_view(self, now_ns: int) -> Sequence[PairLike]: ...


# -- numbers for the view ----------------------------------------------------------------------


@dataclass(frozen=True)
class VenueRow:
    venue: str
    up: bool
    rate: float  # messages per second
    last_age_s: float | None  # None: no message yet
    reconnects: int
    gaps: int
    decode_errors: int
    subscribed: int = 0  # subscriptions the venue accepted
    refused: int = 0  # subscriptions it refused for good
    refusal: str = ""  # the last refusal, as the venue worded it


class RateMeter:
    """Messages per second per venue over a sliding window of a few seconds."""

    def __init__(self, window_s: float = RATE_WINDOW_S) -> None:
        self.window_s = window_s
        self._samples: dict[str, deque[tuple[float, int]]] = {}

    def rate(self, venue: str, t: float, messages: int) -> float:
        samples = self._samples.setdefault(venue, deque())
        samples.append((t, messages))
        while len(samples) > 2 and t - samples[1][0] >= self.window_s:
            samples.popleft()
        t0, m0 = samples[0]
        return (messages - m0) / (t - t0) if t > t0 else 0.0


def venue_rows(stats: Sequence[VenueStats], meter: RateMeter, t: float,
               now_ns: int) -> list[VenueRow]:
    return [VenueRow(venue=s.venue, up=s.connected, rate=meter.rate(s.venue, t, s.messages),
                     last_age_s=None if s.last_frame_ns is None
                     else max(now_ns - s.last_frame_ns, 0) / S_NS,
                     reconnects=s.reconnects, gaps=s.gaps, decode_errors=s.decode_errors,
                     subscribed=s.subscribed, refused=s.subscribe_errors,
                     refusal=s.last_subscribe_error)
            for s in stats]


# -- rendering (pure) ----------------------------------------------------------------------------


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.1f} s"


def _bps(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.2f}"


def _table(title: str, columns: Columns, rows: Sequence[Sequence[str | Text]],
           styles: Sequence[str] = ()) -> Table:
    """A compact table; columns that must not be cut get the width of their widest cell, so
    that only names shrink (with an ellipsis) when the terminal is narrow."""
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, expand=False,
                  pad_edge=False)
    for i, (name, justify, truncate) in enumerate(columns):
        width = max([len(name), *(len(str(r[i])) for r in rows)])
        table.add_column(name, justify=justify, no_wrap=True, overflow="ellipsis",
                         min_width=None if truncate else width,
                         max_width=MAX_NAME_WIDTH if truncate else None)
    for i, row in enumerate(rows):
        table.add_row(*row, style=styles[i] if i < len(styles) else "")
    return table


def _state(r: VenueRow) -> Text:
    if not r.up:
        return Text("DOWN", style="bold red")
    if r.refused and not r.subscribed:
        return Text("REFUSED", style="bold red")  # connected, and every subscription refused
    return Text("up*", style="yellow") if r.refused else Text("up", style="green")


def venue_table(rows: Sequence[VenueRow]) -> Table:
    cells = [(r.venue, _state(r), f"{r.rate:.1f}", _age(r.last_age_s), str(r.reconnects),
              str(r.gaps), str(r.decode_errors)) for r in rows]
    return _table("venues", VENUE_COLUMNS, cells)


def refusal_lines(rows: Sequence[VenueRow]) -> list[str]:
    """One line per venue that refused subscriptions (``up*`` and ``REFUSED`` in the table)."""
    return [f"{r.venue}: {r.refused} subscription(s) refused; last: {r.refusal}"
            for r in rows if r.refused]


def _px(value: float) -> str:
    return format(value, ".10g")


def pair_tables(pairs: Sequence[PairLike], max_rows: int = MAX_PAIR_ROWS) -> list[Table]:
    """One table per symbol, pairs as given (best first), edges in bps, leg ages as
    ``buy/sell`` ms. A positive net edge on fresh legs is bold green and marked ``▲``; a pair
    with a leg older than its staleness cap is dim and marked ``✕``."""
    by_symbol: dict[str, tuple[list[tuple[str, ...]], list[str]]] = {}
    for p in pairs[:max_rows]:
        cells, styles = by_symbol.setdefault(p.symbol, ([], []))
        positive = p.net_bps is not None and p.net_bps > 0 and not p.stale
        mark = STALE_MARK if p.stale else (POSITIVE_MARK if positive else "")
        styles.append("bold green" if positive else ("dim" if p.stale else ""))
        cells.append((mark, f"{p.buy_exchange}→{p.sell_exchange}", _px(p.ask_px),
                      _px(p.bid_px), _bps(p.gross_bps), _bps(p.net_bps), f"{p.size:g}",
                      f"{p.buy_age_ms:.0f}/{p.sell_age_ms:.0f}"))
    tables = [_table(f"{symbol} spreads (bps)", PAIR_COLUMNS, cells, styles)
              for symbol, (cells, styles) in by_symbol.items()]
    if tables:
        legend = (f"buy→sell: buy at the first venue's ask, sell at the second's bid\n"
                  f"{POSITIVE_MARK} net > 0 on fresh quotes   {STALE_MARK} a leg is stale")
        if len(pairs) > max_rows:
            legend += f"   ({len(pairs) - max_rows} more pairs not shown)"
        tables[-1].caption = legend
        tables[-1].caption_justify = "left"
    return tables


def funding_table(rows: Sequence[Funding], now_ns: int) -> Table:
    """Each venue's latest funding: rate per interval in percent (positive: longs pay), the time
    to the next funding, mark and index prices."""
    cells = [(f.exchange, f.symbol, rate_text(f), next_funding_text(f, now_ns),
              "" if f.mark_px is None else _px(f.mark_px),
              "" if f.index_px is None else _px(f.index_px)) for f in rows]
    return _table("funding", FUNDING_COLUMNS, cells)


def build_view(venues: Sequence[VenueRow], pairs: Sequence[PairLike] | None = None,
               consumers: Sequence[SubscriptionStats] = (), now_ns: int | None = None,
               run_line: str | None = None,
               funding: Sequence[Funding] = ()) -> RenderableType:
    """The whole screen: a header (time; ``run_line``: elapsed/remaining time and output
    folder), the venue table, the funding table (when funding is recorded), the pair table (when
    spreads run) and a line per consumer that lags or dropped events."""
    parts: list[RenderableType] = []
    if now_ns is not None:
        stamp = datetime.fromtimestamp(now_ns / S_NS, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        parts.append(Text(f"bookwire  {stamp}", style="bold"))
    if run_line is not None:
        parts.append(Text(run_line))
    parts.append(venue_table(venues))
    parts.extend(Text(line, style="yellow") for line in refusal_lines(venues))
    if funding and now_ns is not None:
        parts.append(funding_table(funding, now_ns))
    if pairs is not None:
        parts.extend(pair_tables(pairs) or [Text("spreads: no venue pair quoted yet")])
    parts.extend(Text(f"consumer {c.name}: lag {c.buffer_used}/{c.buffer_size} batches, "
                      f"dropped {c.dropped_events} events", style="yellow")
                 for c in consumers if c.dropped_events
                 or (c.buffer_size and c.buffer_used > c.buffer_size // 2))
    return Group(*parts)


def best_pair_lines(pairs: Sequence[PairLike]) -> list[str]:
    """One plain line per symbol: its best pair (``pairs`` come best first per symbol)."""
    lines = []
    seen: set[str] = set()
    for p in pairs:
        if p.symbol in seen:
            continue
        seen.add(p.symbol)
        state = " (stale)" if p.stale else ""
        lines.append(f"spread {p.symbol}: best {p.buy_exchange}->{p.sell_exchange} gross "
                     f"{_bps(p.gross_bps)} bps, net {_bps(p.net_bps)} bps, size {p.size:g}"
                     f"{state}")
    return lines


# -- the two views -------------------------------------------------------------------------------


@contextmanager
def _logs_above(live_stderr: TextIO) -> Iterator[None]:
    """Send the root logger's terminal handlers through rich's stderr proxy while the live view
    runs, so log records print above the table instead of tearing it."""
    swapped = [(h, h.setStream(live_stderr)) for h in logging.getLogger().handlers
               if isinstance(h, logging.StreamHandler) and h.stream is sys.__stderr__]
    try:
        yield
    finally:
        for handler, old in swapped:
            handler.setStream(old)


async def live_status(stats: Sequence[VenueStats], bus: Bus, clock: Clock,
                      interval_s: float = DEFAULT_STATUS_INTERVAL_S, *,
                      spreads: SpreadSource | None = None, console: Console | None = None,
                      refresh_s: float = LIVE_REFRESH_S, run: RunInfo | None = None) -> None:
    """Redraw the view every ``refresh_s`` until cancelled (``interval_s`` is for plain lines)."""
    console = console or Console(stderr=True)
    meter = RateMeter()
    started = trio.current_time()
    board = FundingBoard()

    def frame() -> RenderableType:
        now_ns = clock.now_ns()
        now_t = trio.current_time()
        pairs = None if spreads is None else spreads.pairs_view(now_ns)
        return build_view(venue_rows(stats, meter, now_t, now_ns), pairs, bus.stats(), now_ns,
                          None if run is None else format_run(run, now_t - started),
                          board.rows())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch_funding, bus, board)
        # The view must never stop a recording: a rendering bug falls back to the venue lines.
        try:
            first = frame()
        except Exception:
            log.exception("live view failed; status lines instead")
        else:
            with Live(first, console=console, auto_refresh=False, transient=False) as live, \
                    _logs_above(sys.stderr):
                while True:
                    await trio.sleep(refresh_s)
                    try:
                        live.update(frame(), refresh=True)
                    except Exception:
                        log.exception("live view failed; status lines instead")
                        break
        await report_status(stats, bus, clock, interval_s, run=run, started=started,
                            funding=board)


async def plain_status(stats: Sequence[VenueStats], bus: Bus, clock: Clock,
                       interval_s: float = DEFAULT_STATUS_INTERVAL_S, *,
                       spreads: SpreadSource | None = None, run: RunInfo | None = None) -> None:
    """:func:`core.status.report_status` (with the funding lines), plus the best pair per
    symbol at the same interval."""
    board = FundingBoard()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch_funding, bus, board)
        nursery.start_soon(partial(report_status, stats, bus, clock, interval_s, run=run,
                                   funding=board))
        if spreads is not None:
            await _log_best_pairs(spreads, clock, interval_s)


async def _log_best_pairs(spreads: SpreadSource, clock: Clock, interval_s: float) -> None:
    while True:
        await trio.sleep(interval_s)
        try:
            lines = best_pair_lines(spreads.pairs_view(clock.now_ns()))
        except Exception:  # a display bug must not stop the recording; the venue lines go on
            log.exception("spread status lines failed; stopping them")
            return
        for line in lines:
            log.info("%s", line)


def stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stream
        return False


def choose_status_view(no_live: bool, spreads: SpreadSource | None = None, *,
                       terminal: bool | None = None, console: Console | None = None,
                       run: RunInfo | None = None) -> StatusView:
    """The run's status view: live when stderr is a terminal and ``no_live`` is false, plain
    lines otherwise; wired to ``spreads`` when given and showing ``run`` (elapsed/remaining
    time, output folder). ``terminal`` overrides the detection and ``console`` the live view's
    output (default: a rich console on stderr)."""
    live = not no_live and (stderr_is_terminal() if terminal is None else terminal)
    view: StatusView = (partial(live_status, spreads=spreads, console=console, run=run) if live
                        else partial(plain_status, spreads=spreads, run=run))
    return view


__all__ = ["LIVE_REFRESH_S", "PairLike", "RateMeter", "SpreadSource", "VenueRow",
           "best_pair_lines", "build_view", "choose_status_view", "funding_table", "live_status",
           "pair_tables",
           "plain_status", "refusal_lines", "venue_rows", "venue_table"]
