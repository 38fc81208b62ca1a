"""Replay of an L2 message stream into queue-reactive events.

The pass runs over the messages once, in receipt order (ts_local, msg_id, row order), in named
steps (:class:`_Pass`):

1. **clock and breaks** (:meth:`_Pass.advance`): the live time τ advances over the interval since
   the previous message when that interval was live and no feed break (health events in
   :data:`analysis.load.BREAK_EVENTS`) lies in it; a break closes the open segments and makes the
   book untrusted until the next snapshot;
2. **snapshot** (:meth:`_Pass.snapshot`): the rows of one snapshot message replace the book and
   create no event;
3. **updates** (:meth:`_Pass.updates`): an update row sets the absolute size at a price;
   Δ = new − old in integer lots. Δ > 0 is an insertion L, Δ < 0 a decrease D, Δ = 0 nothing
   (counted). Every row of a message is classified against the reference price P **before** the
   message; a bid at or above p_ref, or an ask at or below it, is a ``cross_ref`` insertion inside
   the spread: counted, not an event;
4. **reference price and live state** (:meth:`_Pass.settle`): P follows the half-tick rule of
   :mod:`core.refprice` after the message; the book is *live* (exposure and events count) while it
   is trusted and labelled: not crossed, locked or one-sided, and not at start-up before the first
   odd spread (the rule restarts after every untrusted stretch). A change of P cuts every queue's
   current interval and relabels the queues.

After the pass, :func:`split_decreases` turns each decrease into M (the volume of trades matched to
it) and C (the rest) when a trades table is given; without one the decreases stay D. The matcher
(:func:`match_trades`) pairs each trade with decreases at the same maker side and price whose
time lies within the window, **nearest in time first** over all candidate pairs (so a cancel just
before a market order cannot take that order's trade when the decrease it belongs to is nearer),
each trade's and each decrease's volume used once. :func:`measure_lags` gives the trade-minus-
decrease lag distribution (nearest decrease within ±250 ms of each trade) from which
:func:`window_from_lags` sets the default window: the median lag ± 3 robust standard deviations.

Outputs are raw (integer lots, no AES yet): events with their pre/post queue sizes and the live
time Δt since the previous event or cut at the same queue; the cuts (p_ref change, loss of the
live state, end of data) with the queue size; the changes of the 2K-queue state vector; and per
message the clock, reference price, spread, mid and live flags. Exposure and AES units are derived
afterwards (:mod:`analysis.qr_tables`), so this pass runs once.

Pure: arrays in, arrays out; no I/O, no polars.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

import numpy as np
import numpy.typing as npt

from core.book import OrderBook
from core.codec import MS_NS
from core.refprice import RefPriceTracker

I64 = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

TYPE_CODES: Final = {"L": 0, "C": 1, "M": 2, "D": 3}
L, C, M, D = 0, 1, 2, 3

#: the lag distribution is measured on trades whose nearest decrease is this close
PILOT_WINDOW_NS: Final = 250 * MS_NS
#: fewer measured lags than this: the fallback window is used
MIN_LAGS: Final = 30
#: the window when the lags cannot be measured (too few trades matched)
FALLBACK_WINDOW_NS: Final = 100 * MS_NS
#: the window is the median lag ± this many robust standard deviations (1.4826 × MAD)
LAG_SPREAD: Final = 3.0


# -- inputs --------------------------------------------------------------------------------------


@dataclass
class ReplayInput:
    """Rows sorted in receipt order. ``clock`` is the time used for exposure and for matching
    (exchange time where available); ``order`` is receipt time (ts_local), used to place health
    breaks between messages. Prices in integer ticks, sizes in integer lots."""

    order: I64
    clock: I64
    msg_id: I64
    is_ask: BoolArray
    price: I64
    size: I64
    is_snapshot: BoolArray
    breaks: I64 = field(default_factory=lambda: np.zeros(0, dtype=np.int64))


@dataclass
class TradesInput:
    clock: I64
    price: I64
    size: I64
    maker_is_ask: BoolArray


# -- outputs -------------------------------------------------------------------------------------


@dataclass
class Messages:
    """Per message: clocks, id, reference price P after it (−1 when not live), live flags,
    spread in ticks (−1 when one-sided or crossed) and best bid + best ask in ticks (−1)."""

    clock: I64
    order: I64
    msg_id: I64
    ref: I64
    live: BoolArray  # the state after the message is trusted and labelled
    interval_live: BoolArray  # the interval from this message to the next counts as exposure
    spread: I64
    mid2: I64

    @classmethod
    def empty(cls, n: int, msg_id: I64) -> Messages:
        return cls(np.zeros(n, np.int64), np.zeros(n, np.int64), msg_id,
                   np.full(n, -1, np.int64), np.zeros(n, bool), np.zeros(n, bool),
                   np.full(n, -1, np.int64), np.full(n, -1, np.int64))


@dataclass
class Events:
    """Queue events; ``col`` is the queue (level −K..−1, 1..K as 0..2K−1), ``dt`` the live ns
    since the previous event or cut at that queue. For decreases (type D before the split), the
    side, price and clock are kept for the trade matcher."""

    msg: list[int] = field(default_factory=list)
    col: list[int] = field(default_factory=list)
    type: list[int] = field(default_factory=list)
    size: list[int] = field(default_factory=list)
    before: list[int] = field(default_factory=list)
    after: list[int] = field(default_factory=list)
    dt: list[int] = field(default_factory=list)
    # decreases only (parallel lists of their own, indexed by the event's position)
    dec_index: list[int] = field(default_factory=list)
    dec_is_ask: list[bool] = field(default_factory=list)
    dec_price: list[int] = field(default_factory=list)
    dec_clock: list[int] = field(default_factory=list)
    dec_level: list[int] = field(default_factory=list)

    def add(self, m: int, c: int, kind: int, size: int, before: int, after: int,
            dt: int) -> None:
        self.msg.append(m)
        self.col.append(c)
        self.type.append(kind)
        self.size.append(size)
        self.before.append(before)
        self.after.append(after)
        self.dt.append(dt)

    def __len__(self) -> int:
        return len(self.msg)


@dataclass
class Cuts:
    """Intervals ended without an event (p_ref change, loss of the live state, end of data)."""

    msg: list[int] = field(default_factory=list)
    col: list[int] = field(default_factory=list)
    q: list[int] = field(default_factory=list)
    dt: list[int] = field(default_factory=list)


@dataclass
class StateChanges:
    """(message, queue column, raw lots): the 2K-queue state after each change."""

    msg: list[int] = field(default_factory=list)
    col: list[int] = field(default_factory=list)
    val: list[int] = field(default_factory=list)


@dataclass
class RefChanges:
    """p_ref changes: message index, direction, trigger, spread before and after (ticks)."""

    msg: list[int] = field(default_factory=list)
    dir: list[int] = field(default_factory=list)
    trigger: list[str] = field(default_factory=list)
    spread_before: list[int] = field(default_factory=list)
    spread_after: list[int] = field(default_factory=list)


@dataclass
class CrossRefs:
    """Insertions inside the spread at or beyond p_ref: message, side, price (ticks), Δ."""

    msg: list[int] = field(default_factory=list)
    is_ask: list[bool] = field(default_factory=list)
    price: list[int] = field(default_factory=list)
    delta: list[int] = field(default_factory=list)


@dataclass
class ReplayResult:
    k: int
    messages: Messages
    events: Events
    cuts: Cuts
    changes: StateChanges
    ref_changes: RefChanges
    cross_refs: CrossRefs
    counts: dict[str, int]
    match: dict[str, object] = field(default_factory=dict)

    def level_of(self, col: int) -> int:
        return col - self.k if col < self.k else col - self.k + 1


def column(i: int, k: int) -> int:
    """Queue column of level i (−K..−1, 1..K)."""
    return k + i if i < 0 else k - 1 + i


def message_bounds(inp: ReplayInput) -> tuple[I64, I64]:
    """Start and end row of every message: a new message starts where msg_id or the snapshot
    flag changes."""
    n_rows = inp.msg_id.size
    if n_rows == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    new = np.ones(n_rows, dtype=bool)
    new[1:] = (inp.msg_id[1:] != inp.msg_id[:-1]) | (inp.is_snapshot[1:] != inp.is_snapshot[:-1])
    starts = np.flatnonzero(new).astype(np.int64)
    return starts, np.append(starts[1:], n_rows).astype(np.int64)


# -- the pass ------------------------------------------------------------------------------------


@dataclass
class _Rows:
    """The input columns as Python lists (fast scalar access)."""

    clock: list[int]
    order: list[int]
    is_ask: list[bool]
    price: list[int]
    size: list[int]
    snapshot: list[bool]

    @classmethod
    def of(cls, inp: ReplayInput) -> _Rows:
        clock = np.maximum.accumulate(inp.clock).tolist() if inp.clock.size else []
        return cls(clock, inp.order.tolist(), inp.is_ask.tolist(), inp.price.tolist(),
                   inp.size.tolist(), inp.is_snapshot.tolist())


@dataclass
class _Queues:
    """The 2K labelled queues: current raw size, live time of their last event or cut, and
    whether a segment (a stretch with fixed labels) is open."""

    k: int
    cur: list[int]
    last_tau: list[int]
    seg_open: bool = False

    @classmethod
    def new(cls, k: int) -> _Queues:
        return cls(k, [0] * (2 * k), [0] * (2 * k))


@dataclass
class _BestBefore:
    """Best prices before a message and what the message did to them (p_ref-change triggers)."""

    bid: tuple[float, float] | None
    ask: tuple[float, float] | None
    dep_bid: bool = False
    dep_ask: bool = False
    ins_bid: bool = False
    ins_ask: bool = False

    def note(self, is_ask: bool, x: int, d: int, new_sz: int) -> None:
        if d < 0 and new_sz == 0:  # the best level of a side emptied
            if is_ask and self.ask is not None and x == self.ask[0]:
                self.dep_ask = True
            elif not is_ask and self.bid is not None and x == self.bid[0]:
                self.dep_bid = True
        if d > 0:
            if is_ask and (self.ask is None or x < self.ask[0]):
                self.ins_ask = True
            elif not is_ask and (self.bid is None or x > self.bid[0]):
                self.ins_bid = True

    def trigger(self, direction: int) -> str:
        if direction > 0:
            return "depletion" if self.dep_ask else "insertion" if self.ins_bid else "other"
        return "depletion" if self.dep_bid else "insertion" if self.ins_ask else "other"

    def spread(self) -> int:
        return int(self.ask[0] - self.bid[0]) if self.bid is not None and self.ask is not None \
            else -1


class _Pass:
    """State of one replay; :meth:`run` calls the steps of the module docstring per message."""

    def __init__(self, inp: ReplayInput, k: int) -> None:
        self.k = k
        self.rows = _Rows.of(inp)
        self.starts, self.ends = message_bounds(inp)
        n_msgs = int(self.starts.size)
        self.msgs = Messages.empty(n_msgs, inp.msg_id[self.starts])
        self.events = Events()
        self.cuts = Cuts()
        self.changes = StateChanges()
        self.ref_changes = RefChanges()
        self.cross_refs = CrossRefs()
        self.counts = {"messages": n_msgs, "rows": int(inp.msg_id.size), "snapshots": 0,
                       "breaks": 0, "zero_delta": 0, "cross_ref": 0, "outside_window": 0,
                       "untrusted_rows": 0, "crossed": 0, "one_sided": 0, "pref_changes": 0,
                       "events": 0}
        self.breaks = np.sort(inp.breaks).tolist()
        self.next_break = 0
        self.book = OrderBook()
        self.tracker: RefPriceTracker | None = None
        self.ref = -1
        self.live = False
        self.trusted = False
        self.queues = _Queues.new(k)
        self.tau = 0  # live ns so far
        self.prev_clock = 0
        self.prev_live = False

    # -- driver ------------------------------------------------------------------------------

    def run(self) -> ReplayResult:
        for m in range(self.msgs.msg_id.size):
            self.message(m)
        self.close_segments(self.msgs.msg_id.size - 1)
        self.counts["events"] = len(self.events)
        return ReplayResult(self.k, self.msgs, self.events, self.cuts, self.changes,
                            self.ref_changes, self.cross_refs, self.counts)

    def message(self, m: int) -> None:
        s, e = int(self.starts[m]), int(self.ends[m])
        t_clk = self.rows.clock[s]
        self.msgs.clock[m] = t_clk
        self.msgs.order[m] = self.rows.order[s]
        self.advance(m, t_clk, self.rows.order[s])
        ref_before = self.ref if self.live else None
        spread_before = int(self.msgs.spread[m - 1]) if m > 0 else -1
        if self.rows.snapshot[s]:
            self.snapshot(m, s, e)
            pre_live = False
        elif not self.trusted:
            self.counts["untrusted_rows"] += e - s
            self.prev_clock, self.prev_live = t_clk, False
            return
        else:
            pre_live = self.live
        best = _BestBefore(self.book.best_bid(), self.book.best_ask())
        if not self.rows.snapshot[s]:
            self.updates(m, s, e, pre_live, t_clk, best)
        self.settle(m, self.rows.snapshot[s], ref_before, spread_before, best)
        self.msgs.live[m] = self.live
        self.msgs.ref[m] = self.ref if self.live else -1
        self.prev_clock, self.prev_live = t_clk, self.live

    # -- step 1: clock and breaks ----------------------------------------------------------------

    def advance(self, m: int, t_clk: int, t_ord: int) -> None:
        broken = False
        while self.next_break < len(self.breaks) and self.breaks[self.next_break] <= t_ord:
            broken = True
            self.next_break += 1
        if m > 0 and self.prev_live and not broken:
            self.tau += t_clk - self.prev_clock
            self.msgs.interval_live[m - 1] = True
        if broken:
            self.counts["breaks"] += 1
            self.close_segments(m - 1)  # the cut belongs to the last live message
            self.trusted = False
            self.live = False

    # -- step 2: snapshot ------------------------------------------------------------------------

    def snapshot(self, m: int, s: int, e: int) -> None:
        self.counts["snapshots"] += 1
        if self.trusted:
            self.close_segments(m)
        else:
            self.tracker = None  # the reference price restarts after an untrusted stretch
        r = self.rows
        self.book.replace([(r.price[j], r.size[j]) for j in range(s, e) if not r.is_ask[j]],
                          [(r.price[j], r.size[j]) for j in range(s, e) if r.is_ask[j]])
        self.trusted = True
        self.live = False

    # -- step 3: updates -------------------------------------------------------------------------

    def updates(self, m: int, s: int, e: int, pre_live: bool, t_clk: int,
                best: _BestBefore) -> None:
        r = self.rows
        book = self.book
        for j in range(s, e):
            x, new_sz, is_ask = r.price[j], r.size[j], r.is_ask[j]
            old = (book.asks if is_ask else book.bids).get(x, 0)
            d = new_sz - old
            if d == 0:
                self.counts["zero_delta"] += 1
                continue
            if pre_live:
                self.classify(m, is_ask, x, old, new_sz, t_clk)
                best.note(is_ask, x, d, new_sz)
            if is_ask:
                book.set_ask(x, new_sz)
            else:
                book.set_bid(x, new_sz)

    def classify(self, m: int, is_ask: bool, x: int, old: int, new_sz: int,
                 t_clk: int) -> None:
        """One row with Δ ≠ 0 of a live book: an event at its queue, a cross_ref insertion, or a
        change beyond the K queues."""
        k, ref = self.k, self.ref
        if is_ask:
            i = (2 * x - ref + 1) // 2
            valid = i >= 1
        else:
            i = -((ref - 2 * x + 1) // 2)
            valid = i <= -1
        d = new_sz - old
        if not valid:
            self.counts["cross_ref"] += 1
            xr = self.cross_refs
            xr.msg.append(m)
            xr.is_ask.append(is_ask)
            xr.price.append(x)
            xr.delta.append(d)
            return
        if not -k <= i <= k:
            self.counts["outside_window"] += 1
            return
        c = column(i, k)
        q = self.queues
        dtl = self.tau - q.last_tau[c]
        q.last_tau[c] = self.tau
        ev = self.events
        if d < 0:
            ev.dec_index.append(len(ev))
            ev.dec_is_ask.append(is_ask)
            ev.dec_price.append(x)
            ev.dec_clock.append(t_clk)
            ev.dec_level.append(i)
        ev.add(m, c, L if d > 0 else D, abs(d), old, new_sz, dtl)
        q.cur[c] = new_sz
        self.changes.msg.append(m)
        self.changes.col.append(c)
        self.changes.val.append(new_sz)

    # -- step 4: reference price and live state --------------------------------------------------

    def settle(self, m: int, was_snapshot: bool, ref_before: int | None, spread_before: int,
               best: _BestBefore) -> None:
        bb, ba = self.book.best_bid(), self.book.best_ask()
        if bb is None or ba is None or ba[0] <= bb[0]:
            if self.live:
                self.close_segments(m)
                self.live = False
            self.counts["one_sided" if bb is None or ba is None else "crossed"] += 1
            return
        b, a = int(bb[0]), int(ba[0])
        self.msgs.spread[m] = a - b
        self.msgs.mid2[m] = a + b
        if self.tracker is None:
            self.tracker = RefPriceTracker(1.0)
        new_ref = self.tracker.update(b, a)
        if new_ref is None:
            self.live = False
        elif not self.live:
            if was_snapshot and ref_before is not None and new_ref != ref_before:
                # a snapshot replaced a live book and moved the reference
                self.record_change(m, 1 if new_ref > ref_before else -1, "snapshot",
                                   spread_before, a - b)
            self.ref = new_ref
            self.relabel(m)
            self.live = True
        elif new_ref != self.ref:
            direction = 1 if new_ref > self.ref else -1
            self.record_change(m, direction, best.trigger(direction), best.spread(), a - b)
            self.close_segments(m)
            self.ref = new_ref
            self.relabel(m)

    def record_change(self, m: int, direction: int, trigger: str, before: int,
                      after: int) -> None:
        rc = self.ref_changes
        rc.msg.append(m)
        rc.dir.append(direction)
        rc.trigger.append(trigger)
        rc.spread_before.append(before)
        rc.spread_after.append(after)
        self.counts["pref_changes"] += 1

    def relabel(self, m: int) -> None:
        """Label the 2K queues around the current P and open a segment."""
        q, k, ref = self.queues, self.k, self.ref
        bids, asks = self.book.bids, self.book.asks
        for c in range(2 * k):
            i = c - k if c < k else c - k + 1
            v = asks.get((ref + 2 * i - 1) // 2, 0) if i > 0 else \
                bids.get((ref + 2 * i + 1) // 2, 0)
            if v != q.cur[c]:
                q.cur[c] = v
                self.changes.msg.append(m)
                self.changes.col.append(c)
                self.changes.val.append(v)
            q.last_tau[c] = self.tau
        q.seg_open = True

    def close_segments(self, at: int) -> None:
        """Cut every queue's current interval (no event) at message ``at``."""
        q = self.queues
        if not q.seg_open:
            return
        for c in range(2 * self.k):
            d = self.tau - q.last_tau[c]
            if d > 0:
                self.cuts.msg.append(at)
                self.cuts.col.append(c)
                self.cuts.q.append(q.cur[c])
                self.cuts.dt.append(d)
        q.seg_open = False


def replay(inp: ReplayInput, k: int, trades: TradesInput | None = None, *,
           window_ns: tuple[int, int] | None = None) -> ReplayResult:
    """Run the pass, then split decreases with the trades (module docstring).

    ``window_ns`` = (before, after): trades stamped within [t − before, t + after] of a decrease
    at time t can match it; None measures the window from the data (:func:`window_from_lags`).
    """
    res = _Pass(inp, k).run()
    if trades is not None:
        lags = measure_lags(res.events, trades)
        rule = "flag" if window_ns is not None else "measured"
        if window_ns is None:
            window_ns, rule = window_from_lags(lags)
        res.match = split_decreases(res, trades, window_ns)
        res.match.update(window_rule=rule, lag_sample=int(lags.size),
                         lags_ns=lags.tolist())
    return res


# -- trade matching ------------------------------------------------------------------------------


def _trade_order(trades: TradesInput) -> npt.NDArray[np.intp]:
    return np.argsort(trades.clock, kind="stable")


def _group(events: Events) -> dict[tuple[bool, int], tuple[list[int], I64]]:
    """Decreases by (maker side is ask, price): their positions in the decrease lists and their
    times (in time order)."""
    out: dict[tuple[bool, int], list[int]] = {}
    for j, key in enumerate(zip(events.dec_is_ask, events.dec_price, strict=True)):
        out.setdefault(key, []).append(j)
    t = np.asarray(events.dec_clock, dtype=np.int64)
    return {key: (idx, t[idx]) for key, idx in out.items()}


def measure_lags(events: Events, trades: TradesInput,
                 pilot_ns: int = PILOT_WINDOW_NS) -> I64:
    """Trade time minus the time of the nearest decrease with the same maker side and price, for
    every trade whose nearest decrease is within ``pilot_ns`` (ns)."""
    by_key = _group(events)
    lags: list[int] = []
    for tc, tp, ta in zip(trades.clock.tolist(), trades.price.tolist(),
                          trades.maker_is_ask.tolist(), strict=True):
        found = by_key.get((ta, tp))
        if found is None:
            continue
        times = found[1]
        p = int(np.searchsorted(times, tc))
        best: int | None = None
        for q in (p - 1, p):
            if 0 <= q < times.size:
                lag = tc - int(times[q])
                if best is None or abs(lag) < abs(best):
                    best = lag
        if best is not None and abs(best) <= pilot_ns:
            lags.append(best)
    return np.asarray(lags, dtype=np.int64)


def window_from_lags(lags: I64) -> tuple[tuple[int, int], str]:
    """The default window from measured lags: the median ± 3 robust standard deviations
    (1.4826 × the median absolute deviation), always holding a lag of 0 ± 1 ms. The robust scale
    keeps the core of the distribution (trades and the decreases they caused) and leaves out the
    nearest decreases of trades that have none of their own. Falls back to ±100 ms when fewer
    than :data:`MIN_LAGS` lags were measured. Returns ((before, after) in ns, rule)."""
    if lags.size < MIN_LAGS:
        return (FALLBACK_WINDOW_NS, FALLBACK_WINDOW_NS), "fallback"
    v = lags.astype(np.float64)
    med = float(np.median(v))
    scale = 1.4826 * float(np.median(np.abs(v - med)))
    before = max(float(MS_NS), -(med - LAG_SPREAD * scale))
    after = max(float(MS_NS), med + LAG_SPREAD * scale)
    return (round(before), round(after)), "measured"


def match_trades(events: Events, trades: TradesInput,
                 window_ns: tuple[int, int]) -> tuple[list[int], list[int | None], list[int]]:
    """Matched volume per decrease, the lag (trade − decrease, ns) of its nearest matched trade,
    and the volume left over per trade (in trade-time order).

    Candidate pairs are a trade and a decrease with the same maker side and price and
    −before ≤ trade − decrease ≤ after; they are taken nearest in time first (ties: the earlier
    decrease), each taking what is left of both volumes."""
    before, after = window_ns
    order = _trade_order(trades)
    t_clock = trades.clock[order].tolist()
    t_left = trades.size[order].tolist()
    by_key = _group(events)
    dec_t = events.dec_clock
    dec_need = [events.size[i] for i in events.dec_index]
    pairs: list[tuple[int, int, int, int]] = []  # (|lag|, decrease time, trade, decrease)
    for ti, (tc, tp, ta) in enumerate(zip(t_clock, trades.price[order].tolist(),
                                          trades.maker_is_ask[order].tolist(), strict=True)):
        found = by_key.get((ta, tp))
        if found is None:
            continue
        idx, times = found
        lo = int(np.searchsorted(times, tc - after, side="left"))
        hi = int(np.searchsorted(times, tc + before, side="right"))
        for q in range(lo, hi):
            j = idx[q]
            pairs.append((abs(tc - dec_t[j]), dec_t[j], ti, j))
    pairs.sort()
    got = [0] * len(dec_need)
    nearest: list[int | None] = [None] * len(dec_need)
    for _, dt_dec, ti, j in pairs:
        take = min(t_left[ti], dec_need[j] - got[j])
        if take <= 0:
            continue
        t_left[ti] -= take
        got[j] += take
        if nearest[j] is None:
            nearest[j] = t_clock[ti] - dt_dec
    return got, nearest, t_left


def split_decreases(res: ReplayResult, trades: TradesInput,
                    window_ns: tuple[int, int]) -> dict[str, object]:
    """Replace every decrease D by M (matched trade volume) then C (the rest, Δt = 0 after an M),
    in place, and return the matching diagnostics."""
    ev = res.events
    got, nearest, t_left = match_trades(ev, trades, window_ns)
    is_dec = dict(zip(ev.dec_index, range(len(ev.dec_index)), strict=True))
    out = Events()
    best_offsets: list[int] = []
    n_best = n_best_no_trade = n_deep = n_deep_matched = 0
    for e in range(len(ev)):
        j = is_dec.get(e)
        if j is None:
            out.add(ev.msg[e], ev.col[e], ev.type[e], ev.size[e], ev.before[e], ev.after[e],
                    ev.dt[e])
            continue
        g, dec, q, dtl = got[j], ev.size[e], ev.before[e], ev.dt[e]
        if abs(ev.dec_level[j]) == 1:
            n_best += 1
            if g == 0:
                n_best_no_trade += 1
            else:
                best_offsets.append(int(nearest[j] or 0))
        else:
            n_deep += 1
            n_deep_matched += g > 0
        if g > 0:
            out.add(ev.msg[e], ev.col[e], M, g, q, q - g, dtl)
            dtl, q = 0, q - g
        if dec > g:
            out.add(ev.msg[e], ev.col[e], C, dec - g, q, ev.after[e], dtl)
    res.events = out
    res.counts["events"] = len(out)
    sizes = trades.size[_trade_order(trades)].tolist()
    unmatched = sum(1 for left, size in zip(t_left, sizes, strict=True) if left == size)
    n_tr = len(sizes)
    return {
        "trades": n_tr,
        "trades_unmatched": unmatched,
        "unmatched_trade_rate": unmatched / n_tr if n_tr else None,
        "decreases_best": n_best,
        "decreases_best_no_trade": n_best_no_trade,
        "decreases_deep": n_deep,
        "decreases_deep_matched": int(n_deep_matched),
        "offsets_best_ns": best_offsets,
        "window_pre_ms": window_ns[0] / MS_NS,
        "window_post_ms": window_ns[1] / MS_NS,
    }
