"""Live cross-exchange spreads and fee-adjusted opportunity episodes, computed while recording.

For every ordered pair of venues quoting the same canonical symbol, *buy on i at ask_i, sell on
j at bid_j* (``docs/spreads.md`` describes the tables and options):

* gross edge [bps] = ``1e4 * (bid_j / ask_i - 1)``;
* net edge [bps] = gross − ``1e4 * (taker_i + taker_j)`` (null when a venue has no known fee);
* executable size = ``min(ask_sz_i, bid_sz_j)`` in base units, notional = size × ask_i;
* each leg's quote age = now − ``ts_local`` of that leg's last quote, where *now* is the
  ``ts_local`` of the event being processed. A leg older than its venue's staleness cap makes
  the pair stale: it is never an opportunity.

Two tables come out of it, as events published back to the bus so the Parquet writer persists
them in the usual layout (``<out>/<table>/exchange=spread/date=<UTC date>/``):

* ``spreads``: a row each time a pair's edge changes (its ask or bid price);
* ``opportunities``: a row per episode of net edge above a threshold with both legs fresh; gaps
  shorter than ``merge_gap_ms`` (50 ms) are merged, the mean weights each value by how long it
  held, and an episode still open at shutdown is closed then and written.

Two layers:

* :class:`SpreadState` is pure: no trio, no clock, no I/O. Every time it uses is an argument (the
  events' ``ts_local``, or ``now_ns`` given to :meth:`SpreadState.close`).
* :class:`SpreadAnalyzer` is the trio consumer around it, on a keep-latest (``CONFLATE``)
  subscription to ``tob`` and ``health``, so it can never slow the feeds: when it falls behind it
  simply sees fewer, fresher quotes. It publishes its rows to the bus once the run's status view
  has bound it (the supervisor calls ``bind``), and ``finish`` closes the open episodes at
  shutdown while the bus is still open.

It is a plugin like any other: this module implements ``bookwire_register_tables`` (the two
tables) and ``bookwire_register_consumers`` (the analyzer, its policy and its flags
``--no-spreads``, ``--spread-threshold-bps``, ``--spread-stale-ms``, ``--fees``,
``--taker-fee-bps``), and is found through the ``bookwire`` entry point ``spreads``. Importing it
registers nothing.

Must not: read a clock in :class:`SpreadState`, await anything but its subscription, or hold
unbounded state (memory is bounded by venues² × symbols × thresholds).
"""

from __future__ import annotations

import argparse
import logging
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import polars as pl
import trio

from analysis.fees import parse_fee_overrides, resolve_fees, taker_rates
from analysis.load import QUOTE_BREAKS
from core import hookimpl
from core.bus import Bus, Policy, Subscription
from core.codec import MS_NS
from core.consumers import ANALYZER, Consumer, ConsumerSpec, RunContext
from core.schema import VENUE_BREAKS, Event, Health, HealthKind, TopOfBook
from core.tables import TS, Table, add_table

log = logging.getLogger(__name__)

DEFAULT_STALE_MS: Final = 250.0
DEFAULT_MERGE_GAP_MS: Final = 50.0
DEFAULT_THRESHOLDS_BPS: Final = (0.0,)
#: the ``exchange`` partition of both tables (a pair spans two venues, so no venue owns its rows)
SPREAD_EXCHANGE: Final = "spread"
SPREADS_TABLE: Final = "spreads"
OPPORTUNITIES_TABLE: Final = "opportunities"
MAX_PENDING_ROWS: Final = 100_000
#: health events after which a venue's last quote is no longer maintained (its book is invalid or
#: its connection is new); the next top of book from that venue makes the leg usable again. The
#: offline ``analysis.spreads`` uses the same set.
INVALIDATING: Final = QUOTE_BREAKS
#: events about the whole connection: they apply to every symbol of the venue
CONNECTION_WIDE: Final = VENUE_BREAKS | {HealthKind.CONNECTED}


# -- the two tables ----------------------------------------------------------------------------


class Spread(Event, frozen=True, kw_only=True, gc=False, tag="spread"):
    """One pair's edge after it changed. ``exchange`` is always :data:`SPREAD_EXCHANGE`."""

    symbol: str
    buy_exchange: str
    sell_exchange: str
    ask_px: float
    bid_px: float
    gross_bps: float
    net_bps: float | None
    size: float
    buy_age_ms: float
    sell_age_ms: float


class Opportunity(Event, frozen=True, kw_only=True, gc=False, tag="opportunity"):
    """One episode of net edge above ``threshold_bps``; ``ts_local`` is its ``end``."""

    start: int
    end: int
    duration_ms: float
    symbol: str
    buy_exchange: str
    sell_exchange: str
    threshold_bps: float
    peak_net_bps: float
    mean_net_bps: float
    size: float
    notional: float
    updates: int


SPREADS_SCHEMA: Final[dict[str, pl.DataType]] = {
    "ts_local": TS, "symbol": pl.String(), "buy_exchange": pl.String(),
    "sell_exchange": pl.String(), "ask_px": pl.Float64(), "bid_px": pl.Float64(),
    "gross_bps": pl.Float64(), "net_bps": pl.Float64(), "size": pl.Float64(),
    "buy_age_ms": pl.Float64(), "sell_age_ms": pl.Float64(),
}
OPPORTUNITIES_SCHEMA: Final[dict[str, pl.DataType]] = {
    "start": TS, "end": TS, "duration_ms": pl.Float64(), "symbol": pl.String(),
    "buy_exchange": pl.String(), "sell_exchange": pl.String(), "threshold_bps": pl.Float64(),
    "peak_net_bps": pl.Float64(), "mean_net_bps": pl.Float64(), "size": pl.Float64(),
    "notional": pl.Float64(), "updates": pl.Int64(),
}


SPREADS: Final = Table(SPREADS_TABLE, Spread, SPREADS_SCHEMA, "live cross-venue edges, one row "
                       "per change of a pair's edge (partition `exchange=spread`)", {
    "ts_local": "`ts_local` of the event that changed the edge",
    "symbol": "canonical `BASE-QUOTE`",
    "buy_exchange": "venue *i*: buy at its ask",
    "sell_exchange": "venue *j*: sell at its bid",
    "ask_px": "ask of the buy venue",
    "bid_px": "bid of the sell venue",
    "gross_bps": "gross edge, `1e4 * (bid_px / ask_px - 1)`",
    "net_bps": "net edge after both taker fees; null when a venue has no known fee",
    "size": "executable size, base units",
    "buy_age_ms": "age of the buy leg's quote at `ts_local`",
    "sell_age_ms": "age of the sell leg's quote at `ts_local`",
})
OPPORTUNITIES: Final = Table(OPPORTUNITIES_TABLE, Opportunity, OPPORTUNITIES_SCHEMA,
                             "episodes of net edge above a threshold on fresh quotes "
                             "(partition `exchange=spread`)", {
    "start": "first instant of the episode",
    "end": "last instant of the episode (also its `ts_local`)",
    "duration_ms": "`end - start` in ms",
    "symbol": "canonical `BASE-QUOTE`",
    "buy_exchange": "venue bought at its ask",
    "sell_exchange": "venue sold at its bid",
    "threshold_bps": "the threshold the net edge was above",
    "peak_net_bps": "highest net edge of the episode",
    "mean_net_bps": "time-weighted mean net edge",
    "size": "executable size at the peak, base units",
    "notional": "size times ask at the peak, quote currency",
    "updates": "number of edge changes in the episode",
})
TABLES: Final = (SPREADS, OPPORTUNITIES)


def register_tables() -> None:
    """Register both tables (idempotent). Plugin loading does it through the hook, and the
    supervisor for every consumer that declares them; call it only when neither runs."""
    for table in TABLES:
        add_table(table)


# -- configuration -----------------------------------------------------------------------------


@dataclass(frozen=True)
class SpreadConfig:
    """Fees, staleness caps, thresholds. Venues are plugin names."""

    #: venue -> taker fee as a fraction (0.00055 = 5.5 bps); a venue missing here has no net edge
    taker_fees: Mapping[str, float] = field(default_factory=dict)
    #: venue -> staleness cap in ms, for venues that differ from ``default_stale_ms``
    stale_ms: Mapping[str, float] = field(default_factory=dict)
    default_stale_ms: float = DEFAULT_STALE_MS
    #: one episode stream per threshold (net edge strictly above it)
    thresholds_bps: tuple[float, ...] = DEFAULT_THRESHOLDS_BPS
    merge_gap_ms: float = DEFAULT_MERGE_GAP_MS

    def __post_init__(self) -> None:
        caps = [self.default_stale_ms, *self.stale_ms.values()]
        if any(not c > 0 for c in caps):
            raise ValueError("staleness caps must be positive milliseconds")
        if not self.thresholds_bps:
            raise ValueError("at least one opportunity threshold is needed")
        if self.merge_gap_ms < 0:
            raise ValueError("merge_gap_ms must not be negative")

    def stale_ns(self, venue: str) -> int:
        return round(self.stale_ms.get(venue, self.default_stale_ms) * MS_NS)

    def fee_bps(self, buy: str, sell: str) -> float | None:
        """Both legs' taker fees in bps, or None when either venue's fee is unknown."""
        fb, fs = self.taker_fees.get(buy), self.taker_fees.get(sell)
        return None if fb is None or fs is None else 1e4 * (fb + fs)


def parse_thresholds(text: str) -> tuple[float, ...]:
    """``"0,2,5,10"`` -> ``(0.0, 2.0, 5.0, 10.0)`` (sorted, without duplicates)."""
    try:
        values = sorted({float(t) for t in text.split(",") if t.strip()})
    except ValueError:
        raise ValueError(f"--spread-threshold-bps {text!r}: expected comma-separated bps, "
                         "e.g. 0,2,5,10") from None
    if not values:
        raise ValueError("at least one threshold in bps is needed, e.g. 0")
    return tuple(values)


def parse_stale_ms(items: Iterable[str]) -> tuple[float | None, dict[str, float]]:
    """``["300", "htx=500"]`` -> ``(300.0, {"htx": 500.0})``: a bare number sets the default."""
    default: float | None = None
    per_venue: dict[str, float] = {}
    for item in items:
        venue, sep, text = item.rpartition("=")
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if not value > 0 or (sep and not venue.strip()):
            raise ValueError(f"--spread-stale-ms {item!r}: expected MS or VENUE=MS with MS > 0")
        if sep:
            per_venue[venue.strip()] = value
        else:
            default = value
    return default, per_venue


# -- pure arithmetic -----------------------------------------------------------------------------


def gross_bps(ask_px: float, bid_px: float) -> float:
    """Edge of buying at ``ask_px`` and selling at ``bid_px``, in basis points of the ask."""
    return 1e4 * (bid_px / ask_px - 1.0)


def net_bps(gross: float, fee_bps: float | None) -> float | None:
    return None if fee_bps is None else gross - fee_bps


def age_ms(now_ns: int, ts_ns: int) -> float:
    return (now_ns - ts_ns) / MS_NS


# -- state -------------------------------------------------------------------------------------


@dataclass(slots=True)
class Leg:
    """A venue's last top of book on one symbol."""

    ts: int
    bid_px: float | None
    bid_sz: float | None
    ask_px: float | None
    ask_sz: float | None


@dataclass(slots=True)
class _Episode:
    """Net edge above one threshold; ``end`` is set while a gap waits to be merged or not."""

    start: int
    seg_t: int  # when the current net value began
    seg_net: float
    peak: float
    size: float
    notional: float
    integral: float = 0.0  # bps x ns over the time above the threshold
    active_ns: int = 0
    updates: int = 1
    end: int | None = None

    def observe(self, t: int, net: float, size: float, notional: float) -> None:
        """The edge is (still, or again) above the threshold at ``t`` with value ``net``."""
        if self.end is not None:  # back above within the merge gap: one episode
            self.end = None
            self.seg_t, self.seg_net = t, net
            self.updates += 1
        elif net != self.seg_net:
            self._accumulate(t)
            self.seg_t, self.seg_net = t, net
            self.updates += 1
        if net > self.peak:
            self.peak, self.size, self.notional = net, size, notional

    def stop(self, t: int) -> None:
        """The edge left the episode at ``t`` (below threshold, a stale or invalid leg)."""
        if self.end is None:
            self._accumulate(t)
            self.end = t

    def _accumulate(self, t: int) -> None:
        dt = max(t - self.seg_t, 0)
        self.integral += self.seg_net * dt
        self.active_ns += dt


@dataclass(slots=True)
class _Pair:
    symbol: str
    buy: str
    sell: str
    fee_bps: float | None
    episodes: list[_Episode | None]
    last_px: tuple[float, float] | None = None  # (ask, bid) of the last spreads row
    ask_px: float | None = None
    bid_px: float | None = None
    gross: float | None = None
    net: float | None = None
    size: float | None = None
    deadline: int | None = None  # the last instant at which both legs are fresh


@dataclass(frozen=True, slots=True)
class PairView:
    """What a display needs to know about one pair at one instant."""

    symbol: str
    buy_exchange: str
    sell_exchange: str
    ask_px: float
    bid_px: float
    gross_bps: float
    net_bps: float | None
    size: float
    buy_age_ms: float
    sell_age_ms: float
    stale: bool
    in_episode: bool


class SpreadState:
    """Pairwise edges and episodes from a stream of top-of-book and health events.

    Feed events in ``ts_local`` order to :meth:`on_event`; each call returns the rows to publish
    (:class:`Spread` and :class:`Opportunity` events). :meth:`close` ends every episode at
    shutdown. Time only moves forward: an event older than the latest one seen is processed at
    the latest time.
    """

    def __init__(self, config: SpreadConfig | None = None) -> None:
        self.config = config or SpreadConfig()
        self.quotes: dict[str, dict[str, Leg]] = {}  # symbol -> venue -> leg
        self._pairs: dict[tuple[str, str, str], _Pair] = {}
        self._open: dict[tuple[str, str, str], _Pair] = {}  # pairs with an episode
        self._gap_ns = round(self.config.merge_gap_ms * MS_NS)
        self.now = 0
        self.closed = False

    # -- input ---------------------------------------------------------------------------------

    def on_event(self, event: Event) -> list[Event]:
        if self.closed:
            return []
        if isinstance(event, TopOfBook):
            return self.on_tob(event)
        if isinstance(event, Health) and event.event in INVALIDATING:
            return self.on_health(event)
        return []

    def on_tob(self, e: TopOfBook) -> list[Event]:
        t = self._tick(e.ts_local)
        out = self._advance(t)
        venues = self.quotes.setdefault(e.symbol, {})
        venues[e.exchange] = Leg(e.ts_local, e.bid_px, e.bid_sz, e.ask_px, e.ask_sz)
        self._refresh(e.symbol, e.exchange, t, out)
        return out

    def on_health(self, e: Health) -> list[Event]:
        """Forget the venue's quotes the event makes untrustworthy: one symbol's, or all of them
        for an event without a symbol or a connection-wide one (whatever its symbol column)."""
        t = self._tick(e.ts_local)
        out = self._advance(t)
        every = e.symbol is None or e.event in CONNECTION_WIDE
        for symbol, venues in self.quotes.items():
            if (every or e.symbol == symbol) and venues.pop(e.exchange, None) is not None:
                self._refresh(symbol, e.exchange, t, out)
        return out

    def close(self, now_ns: int) -> list[Event]:
        """Shutdown: end every open episode at ``now_ns`` (or where its leg went stale) and
        return the rows; later events are ignored."""
        if self.closed:
            return []
        t = self._tick(now_ns)
        out = self._advance(t)
        for pair in list(self._open.values()):
            for k, ep in enumerate(pair.episodes):
                if ep is not None:
                    ep.stop(t)
                    self._finish(pair, k, ep, out)
            del self._open[(pair.symbol, pair.buy, pair.sell)]
        self.closed = True
        return out

    @property
    def open_episodes(self) -> int:
        """Episodes running or waiting out their merge gap."""
        return sum(ep is not None for p in self._open.values() for ep in p.episodes)

    # -- output for displays ---------------------------------------------------------------------

    def pairs_view(self, now_ns: int) -> list[PairView]:
        """Every pair with a defined edge, by symbol then best net (gross where no net)."""
        views = []
        for p in self._pairs.values():
            if p.gross is None or p.ask_px is None or p.bid_px is None or p.size is None:
                continue
            venues = self.quotes[p.symbol]
            buy, sell = venues[p.buy], venues[p.sell]
            views.append(PairView(
                symbol=p.symbol, buy_exchange=p.buy, sell_exchange=p.sell, ask_px=p.ask_px,
                bid_px=p.bid_px, gross_bps=p.gross, net_bps=p.net, size=p.size,
                buy_age_ms=max(age_ms(now_ns, buy.ts), 0.0),
                sell_age_ms=max(age_ms(now_ns, sell.ts), 0.0),
                stale=p.deadline is None or now_ns > p.deadline,
                in_episode=any(ep is not None and ep.end is None for ep in p.episodes)))
        views.sort(key=lambda v: (v.symbol, -(v.net_bps if v.net_bps is not None
                                              else v.gross_bps)))
        return views

    # -- internals -------------------------------------------------------------------------------

    def _tick(self, ts: int) -> int:
        if ts > self.now:
            self.now = ts
        return self.now

    def _pair(self, symbol: str, buy: str, sell: str) -> _Pair:
        key = (symbol, buy, sell)
        p = self._pairs.get(key)
        if p is None:
            p = self._pairs[key] = _Pair(symbol, buy, sell, self.config.fee_bps(buy, sell),
                                         [None] * len(self.config.thresholds_bps))
        return p

    def _refresh(self, symbol: str, venue: str, t: int, out: list[Event]) -> None:
        """Recompute both directions of every pair of ``venue`` on ``symbol``."""
        for other in list(self.quotes.get(symbol, {})):
            if other == venue:
                continue
            self._update(self._pair(symbol, venue, other), t, out)
            self._update(self._pair(symbol, other, venue), t, out)

    def _update(self, p: _Pair, t: int, out: list[Event]) -> None:
        venues = self.quotes.get(p.symbol, {})
        buy, sell = venues.get(p.buy), venues.get(p.sell)
        if (buy is None or sell is None or buy.ask_px is None or sell.bid_px is None
                or buy.ask_px <= 0 or buy.ask_sz is None or sell.bid_sz is None):
            p.ask_px = p.bid_px = p.gross = p.net = p.size = p.deadline = None
            p.last_px = None
            self._observe(p, t, None, 0.0, 0.0)
            return
        ask, bid = buy.ask_px, sell.bid_px
        gross = gross_bps(ask, bid)
        net = net_bps(gross, p.fee_bps)
        size = min(buy.ask_sz, sell.bid_sz)
        p.ask_px, p.bid_px, p.gross, p.net, p.size = ask, bid, gross, net, size
        cfg = self.config
        p.deadline = min(buy.ts + cfg.stale_ns(p.buy), sell.ts + cfg.stale_ns(p.sell))
        if p.last_px != (ask, bid):
            p.last_px = (ask, bid)
            out.append(Spread(exchange=SPREAD_EXCHANGE, ts_local=t, symbol=p.symbol,
                              buy_exchange=p.buy, sell_exchange=p.sell, ask_px=ask, bid_px=bid,
                              gross_bps=gross, net_bps=net, size=size,
                              buy_age_ms=age_ms(t, buy.ts), sell_age_ms=age_ms(t, sell.ts)))
        fresh_net = net if t <= p.deadline else None
        self._observe(p, t, fresh_net, size, size * ask)

    def _observe(self, p: _Pair, t: int, net: float | None, size: float,
                 notional: float) -> None:
        """Open, extend or stop each threshold's episode for the edge ``net`` (None: no usable
        edge: unknown fee, a missing side, a stale or invalid leg)."""
        key = (p.symbol, p.buy, p.sell)
        for k, tau in enumerate(self.config.thresholds_bps):
            ep = p.episodes[k]
            if net is None or not net > tau:
                if ep is not None:
                    ep.stop(t)
            elif ep is None:
                p.episodes[k] = _Episode(start=t, seg_t=t, seg_net=net, peak=net, size=size,
                                         notional=notional)
                self._open[key] = p
            else:
                ep.observe(t, net, size, notional)

    def _advance(self, t: int) -> list[Event]:
        """Bring every open episode to time ``t``: stop those whose leg went stale before ``t``
        (at the exact instant it did), write those whose gap reached the merge limit."""
        out: list[Event] = []
        for key, p in list(self._open.items()):
            for k, ep in enumerate(p.episodes):
                if ep is None:
                    continue
                if ep.end is None and p.deadline is not None and t > p.deadline:
                    ep.stop(p.deadline)
                if ep.end is not None and t - ep.end >= self._gap_ns:
                    self._finish(p, k, ep, out)
            if all(ep is None for ep in p.episodes):
                del self._open[key]
        return out

    def _finish(self, p: _Pair, k: int, ep: _Episode, out: list[Event]) -> None:
        p.episodes[k] = None
        if ep.end is None or ep.active_ns <= 0:
            return  # an edge that never held for any time is not an episode
        out.append(Opportunity(
            exchange=SPREAD_EXCHANGE, ts_local=ep.end, start=ep.start, end=ep.end,
            duration_ms=age_ms(ep.end, ep.start), symbol=p.symbol, buy_exchange=p.buy,
            sell_exchange=p.sell, threshold_bps=self.config.thresholds_bps[k],
            peak_net_bps=ep.peak, mean_net_bps=ep.integral / ep.active_ns, size=ep.size,
            notional=ep.notional, updates=ep.updates))


# -- the trio consumer ---------------------------------------------------------------------------


class SpreadAnalyzer:
    """Runs a :class:`SpreadState` on the bus.

    ``consumer()`` is what goes into ``RunPlan.consumers``; the supervisor calls ``bind(bus)``
    when the run starts (rows made before it wait in a bounded buffer) and ``finish(end_ns)``
    when the feeds stop, which closes the open episodes while the bus still accepts them.
    """

    def __init__(self, state: SpreadState | None = None, *,
                 max_pending: int = MAX_PENDING_ROWS) -> None:
        self.state = state or SpreadState()
        self.bus: Bus | None = None
        self._pending: deque[Event] = deque(maxlen=max_pending)
        self.rows_published = 0
        self.rows_lost = 0

    def consumer(self, name: str = "spreads") -> Consumer:
        return Consumer(name=name, run=self.run, kinds=KINDS, policy=Policy.CONFLATE,
                        bind=self.bind, finish=self.finish, tables=TABLES, view=self,
                        role=ANALYZER)

    def bind(self, bus: Bus) -> None:
        self.bus = bus
        pending = list(self._pending)
        self._pending.clear()
        self._emit(pending)

    def finish(self, now_ns: int) -> None:
        self._emit(self.state.close(now_ns))

    def pairs_view(self, now_ns: int) -> list[PairView]:
        return self.state.pairs_view(now_ns)

    async def run(self, subscription: Subscription, *,
                  task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        try:
            async for batch in subscription:
                self._emit(self.process(batch))
        finally:
            subscription.close_receiver()
            if not self.state.closed and self.state.open_episodes:
                log.warning("spreads: %d open episodes at the end were not written (nothing "
                            "called finish() while the bus was open)", self.state.open_episodes)

    def process(self, batch: Sequence[Event]) -> list[Event]:
        """One delivery of the subscription, in time order (keep-latest batches are keyed,
        not ordered)."""
        rows: list[Event] = []
        state = self.state
        for e in sorted(batch, key=_ts_local):
            rows.extend(state.on_event(e))
        return rows

    def _emit(self, rows: list[Event]) -> None:
        if not rows:
            return
        bus = self.bus
        if bus is None:
            overflow = len(self._pending) + len(rows) - (self._pending.maxlen or 0)
            if overflow > 0:
                self.rows_lost += overflow
            self._pending.extend(rows)
            return
        if bus.closed:
            self.rows_lost += len(rows)
            return
        bus.publish(rows)
        self.rows_published += len(rows)


def _ts_local(e: Event) -> int:
    return e.ts_local


# -- from command-line options -------------------------------------------------------------------


def analyzer_from_options(venues: Sequence[str], *, thresholds_bps: str = "0",
                          stale_ms: Sequence[str] = (), fees_file: Path | None = None,
                          taker_fee_bps: Sequence[str] = ()) -> SpreadAnalyzer:
    """The analyzer a run asks for with ``--spread-threshold-bps``, ``--spread-stale-ms``,
    ``--fees`` and ``--taker-fee-bps`` (their raw values). Logs the fee of each venue of the run
    and warns about venues without one. Raises ``ValueError`` (``FeeConfigError`` included)
    with a message for the user when an option is malformed."""
    thresholds = parse_thresholds(thresholds_bps)
    default_stale, per_venue = parse_stale_ms(stale_ms)
    table = resolve_fees(fees_file, parse_fee_overrides(taker_fee_bps))
    known: list[str] = []
    for venue in venues:
        fee = table.get(venue)
        if fee is None:
            log.warning("spreads: no taker fee known for %s: its pairs get gross edges only "
                        "(give one with --taker-fee-bps %s=BPS)", venue, venue)
        else:
            known.append(f"{venue} {fee.taker_bps:g}")
            log.debug("spreads: fee %s", fee.describe())  # tier, date and source
    if known:
        log.info("spreads: taker fees in bps: %s (--taker-fee-bps or --fees to change them)",
                 ", ".join(known))
    config = SpreadConfig(taker_fees=taker_rates(table), stale_ms=per_venue,
                          default_stale_ms=DEFAULT_STALE_MS if default_stale is None
                          else default_stale, thresholds_bps=thresholds)
    return SpreadAnalyzer(SpreadState(config))


# -- the plugin ----------------------------------------------------------------------------------

KINDS: Final = frozenset({"tob", "health"})


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-spreads", action="store_true",
                   help="do not run the live cross-venue spread analyzer")
    p.add_argument("--spread-threshold-bps", default="0", metavar="LIST",
                   help="comma-separated net-edge thresholds in bps for opportunity episodes "
                        "(default: 0)")
    p.add_argument("--spread-stale-ms", action="append", default=[], metavar="[VENUE=]MS",
                   help="quote staleness cap in ms, for every venue or one; repeatable "
                        "(default: 250)")
    p.add_argument("--fees", type=Path, default=None, metavar="FILE",
                   help="TOML fee file merged over the documented defaults (analysis/fees.toml)")
    p.add_argument("--taker-fee-bps", action="append", default=[], metavar="VENUE=BPS",
                   help="taker fee of one venue in bps, e.g. bybit=5.5; repeatable")


def build(ctx: RunContext) -> Consumer | None:
    """The analyzer when the run records ``tob`` of two or more venues (or reads ``tob`` of any
    number of them from another process) and ``--no-spreads`` is not given."""
    args = ctx.args
    if getattr(args, "no_spreads", False) or "tob" not in ctx.channels:
        return None
    if ctx.captures and len(ctx.venues) < 2:
        return None
    return analyzer_from_options(
        ctx.venues, thresholds_bps=getattr(args, "spread_threshold_bps", "0"),
        stale_ms=getattr(args, "spread_stale_ms", []), fees_file=getattr(args, "fees", None),
        taker_fee_bps=getattr(args, "taker_fee_bps", [])).consumer()


SPEC: Final = ConsumerSpec(name="spreads", role=ANALYZER, policy=Policy.CONFLATE, factory=build,
                           kinds=KINDS, add_arguments=add_arguments,
                           description="live cross-venue spreads and opportunity episodes "
                                       "(docs/spreads.md)")


@hookimpl
def bookwire_register_tables(register: Callable[[Table], None]) -> None:
    for table in TABLES:
        register(table)


@hookimpl
def bookwire_register_consumers(register: Callable[[ConsumerSpec], None]) -> None:
    register(SPEC)


__all__ = [
    "DEFAULT_MERGE_GAP_MS",
    "DEFAULT_STALE_MS",
    "OPPORTUNITIES",
    "OPPORTUNITIES_SCHEMA",
    "OPPORTUNITIES_TABLE",
    "SPEC",
    "SPREADS",
    "SPREADS_SCHEMA",
    "SPREADS_TABLE",
    "SPREAD_EXCHANGE",
    "TABLES",
    "Opportunity",
    "PairView",
    "Spread",
    "SpreadAnalyzer",
    "SpreadConfig",
    "SpreadState",
    "analyzer_from_options",
    "gross_bps",
    "net_bps",
    "parse_stale_ms",
    "parse_thresholds",
    "register_tables",
]
