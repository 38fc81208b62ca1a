"""Replay of an L2 message stream into queue-reactive events (spec §3.2–§3.5).

One sequential pass over the messages, in receipt order (ts_local, msg_id, row order):

* a snapshot (all rows of one msg_id with ``is_snapshot``) replaces the book and creates no event;
* an update row sets the absolute size at a price; Δ = new − old in integer lots: Δ > 0 is an
  insertion L, Δ < 0 a decrease, Δ = 0 nothing (counted). With trades, a decrease is split by the
  matcher into M (volume of trades with that maker side and price within [t − w_pre, t + w_post],
  consumed once) then C (the rest); without trades it stays D;
* every row of a message is classified against the reference price P **before** the message, and
  P (half-tick rule, :mod:`core.refprice`) is updated after it. A bid at or above p_ref, or an ask
  at or below it, is a ``cross_ref`` insertion inside the spread: counted, not an event;
* the live mask: exposure and events count only while the book is trusted and labelled. It is not
  trusted before the first snapshot, and after a break (health events in
  :data:`analysis.load.BREAK_EVENTS`) until the next snapshot; it is unlabelled while the book is
  crossed, locked or one-sided, and at start-up until the first odd spread (the tracker restarts
  after every untrusted stretch). An interval between two messages with a break in it is dropped.

Outputs are raw (integer lots, no AES yet): events with their pre/post queue sizes and the live
time Δt since the previous event or cut at the same queue; the cuts themselves (p_ref change,
loss of the live state, end of data) with the queue size; the changes of the 2K-queue state
vector; and per-message times, reference price, spread and live flags. Exposure and AES units are
derived from these afterwards, so this pass needs to run once.

Pure: arrays in, arrays out; no I/O, no polars.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from core.book import OrderBook
from core.refprice import RefPriceTracker

I64 = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

TYPE_CODES = {"L": 0, "C": 1, "M": 2, "D": 3}


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


@dataclass
class ReplayResult:
    k: int
    # per message
    msg_clock: I64
    msg_order: I64
    msg_id: I64
    msg_ref: I64  # P after the message (−1 when not live)
    msg_live: BoolArray  # state after the message is trusted and labelled
    interval_live: BoolArray  # the interval from this message to the next counts as exposure
    msg_spread: I64  # spread in ticks after the message (−1 when one-sided)
    # queue-state changes: (message index, column, raw lots); column c = level −K..−1, 1..K
    chg_msg: list[int]
    chg_col: list[int]
    chg_val: list[int]
    # events
    ev_msg: list[int]
    ev_col: list[int]
    ev_type: list[int]
    ev_size: list[int]
    ev_before: list[int]
    ev_after: list[int]
    ev_dt: list[int]  # live ns since the previous event or cut at this queue
    # cuts
    cut_msg: list[int]
    cut_col: list[int]
    cut_q: list[int]
    cut_dt: list[int]
    # p_ref changes: message index, direction, trigger, spread before/after
    pc_msg: list[int]
    pc_dir: list[int]
    pc_trigger: list[str]
    pc_spread_before: list[int]
    pc_spread_after: list[int]
    # cross_ref insertions: message index, side is ask, price ticks, Δ
    xr_msg: list[int]
    xr_is_ask: list[bool]
    xr_price: list[int]
    xr_delta: list[int]
    counts: dict[str, int]
    match: dict[str, object]

    def level_of(self, col: int) -> int:
        return col - self.k if col < self.k else col - self.k + 1


def column(i: int, k: int) -> int:
    return k + i if i < 0 else k - 1 + i


def replay(inp: ReplayInput, k: int, trades: TradesInput | None = None, *,
           match_pre_ns: int = 100_000_000, match_post_ns: int = 100_000_000) -> ReplayResult:
    """Run the pass described in the module docstring."""
    n_rows = inp.msg_id.size
    # message boundaries: a new message starts where msg_id or the snapshot flag changes
    if n_rows:
        new = np.ones(n_rows, dtype=bool)
        new[1:] = (inp.msg_id[1:] != inp.msg_id[:-1]) | (inp.is_snapshot[1:]
                                                         != inp.is_snapshot[:-1])
        starts = np.flatnonzero(new)
    else:
        starts = np.zeros(0, dtype=np.int64)
    ends = np.append(starts[1:], n_rows)
    n_msgs = starts.size
    clock_l = np.maximum.accumulate(inp.clock).tolist() if n_rows else []
    order_l = inp.order.tolist()
    ask_l = inp.is_ask.tolist()
    px_l = inp.price.tolist()
    sz_l = inp.size.tolist()
    snap_l = inp.is_snapshot.tolist()
    brk = np.sort(inp.breaks).tolist()

    msg_clock = np.zeros(n_msgs, dtype=np.int64)
    msg_order = np.zeros(n_msgs, dtype=np.int64)
    msg_ref = np.full(n_msgs, -1, dtype=np.int64)
    msg_live = np.zeros(n_msgs, dtype=bool)
    interval_live = np.zeros(n_msgs, dtype=bool)
    msg_spread = np.full(n_msgs, -1, dtype=np.int64)

    res = ReplayResult(k, msg_clock, msg_order, inp.msg_id[starts], msg_ref, msg_live,
                       interval_live, msg_spread,
                       [], [], [], [], [], [], [], [], [], [], [], [], [], [], [], [], [], [],
                       [], [], [], [], [], {}, {})
    ev_msg, ev_col, ev_type, ev_size = res.ev_msg, res.ev_col, res.ev_type, res.ev_size
    ev_before, ev_after, ev_dt = res.ev_before, res.ev_after, res.ev_dt
    chg_msg, chg_col, chg_val = res.chg_msg, res.chg_col, res.chg_val
    counts = {"messages": int(n_msgs), "rows": int(n_rows), "snapshots": 0, "breaks": 0,
              "zero_delta": 0, "cross_ref": 0, "outside_window": 0, "untrusted_rows": 0,
              "crossed": 0, "one_sided": 0, "pref_changes": 0, "events": 0}

    # trade matcher state, keyed by (maker side is ask, price)
    t_times: dict[tuple[bool, int], list[int]] = {}
    t_rem: dict[tuple[bool, int], list[int]] = {}
    t_size: dict[tuple[bool, int], list[int]] = {}
    t_ptr: dict[tuple[bool, int], int] = {}
    if trades is not None:
        order = np.argsort(trades.clock, kind="stable")
        for tc, tp, ts_, ta in zip(trades.clock[order].tolist(), trades.price[order].tolist(),
                                   trades.size[order].tolist(),
                                   trades.maker_is_ask[order].tolist(), strict=True):
            key = (ta, tp)
            t_times.setdefault(key, []).append(tc)
            t_rem.setdefault(key, []).append(ts_)
            t_size.setdefault(key, []).append(ts_)
    best_offsets: list[int] = []
    n_dec_best = n_dec_best_no_trade = n_dec_deep = n_dec_deep_matched = 0

    def match(is_ask: bool, px: int, t: int, need: int) -> tuple[int, int | None]:
        key = (is_ask, px)
        times = t_times.get(key)
        if times is None:
            return 0, None
        rem = t_rem[key]
        p = t_ptr.get(key, 0)
        lo = t - match_pre_ns
        while p < len(times) and times[p] < lo:
            p += 1
        t_ptr[key] = p
        got = 0
        first: int | None = None
        hi = t + match_post_ns
        j = p
        while need > got and j < len(times) and times[j] <= hi:
            if rem[j] > 0:
                take = min(rem[j], need - got)
                rem[j] -= take
                got += take
                if first is None:
                    first = times[j] - t
            j += 1
        return got, first

    book = OrderBook()
    tracker: RefPriceTracker | None = None
    ref = -1
    live = False
    trusted = False
    seg_open = False
    ncol = 2 * k
    cur = [0] * ncol
    last_tau = [0] * ncol
    tau = 0
    prev_clock = 0
    prev_live = False
    bp = 0

    def close_segments(at: int) -> None:
        nonlocal seg_open
        if not seg_open:
            return
        for c in range(ncol):
            d = tau - last_tau[c]
            if d > 0:
                res.cut_msg.append(at)
                res.cut_col.append(c)
                res.cut_q.append(cur[c])
                res.cut_dt.append(d)
        seg_open = False

    def relabel() -> None:
        nonlocal seg_open
        bids, asks = book.bids, book.asks
        for c in range(ncol):
            i = c - k if c < k else c - k + 1
            if i > 0:
                v = asks.get((ref + 2 * i - 1) // 2, 0)
            else:
                v = bids.get((ref + 2 * i + 1) // 2, 0)
            if v != cur[c]:
                cur[c] = v
                chg_msg.append(m)
                chg_col.append(c)
                chg_val.append(v)
            last_tau[c] = tau
        seg_open = True

    for m in range(n_msgs):
        s, e = int(starts[m]), int(ends[m])
        t_clk = clock_l[s]
        t_ord = order_l[s]
        msg_clock[m] = t_clk
        msg_order[m] = t_ord
        broken = False
        while bp < len(brk) and brk[bp] <= t_ord:
            broken = True
            bp += 1
        if m > 0 and prev_live and not broken:
            tau += t_clk - prev_clock
            interval_live[m - 1] = True
        if broken:
            counts["breaks"] += 1
            close_segments(m - 1)  # the cut belongs to the last live message
            trusted = False
            live = False
        ref_before = ref if live else None
        spread_before = int(msg_spread[m - 1]) if m > 0 else -1
        if snap_l[s]:
            counts["snapshots"] += 1
            if trusted:
                close_segments(m)
            else:
                tracker = None
            bids = [(px_l[r], sz_l[r]) for r in range(s, e) if not ask_l[r]]
            asks = [(px_l[r], sz_l[r]) for r in range(s, e) if ask_l[r]]
            book.replace(bids, asks)
            trusted = True
            live = False
            pre_live = False
        elif not trusted:
            counts["untrusted_rows"] += e - s
            msg_live[m] = False
            prev_clock = t_clk
            prev_live = False
            continue
        else:
            pre_live = live
        bb0 = book.best_bid()
        ba0 = book.best_ask()
        dep_bid = dep_ask = ins_bid = ins_ask = False
        if not snap_l[s]:
            for r in range(s, e):
                x = px_l[r]
                new_sz = sz_l[r]
                is_ask = ask_l[r]
                side_book = book.asks if is_ask else book.bids
                old = side_book.get(x, 0)
                d = new_sz - old
                if d == 0:
                    counts["zero_delta"] += 1
                    continue
                if pre_live:
                    if is_ask:
                        i = (2 * x - ref + 1) // 2
                        valid = i >= 1
                    else:
                        i = -((ref - 2 * x + 1) // 2)
                        valid = i <= -1
                    if not valid:
                        counts["cross_ref"] += 1
                        res.xr_msg.append(m)
                        res.xr_is_ask.append(is_ask)
                        res.xr_price.append(x)
                        res.xr_delta.append(d)
                    elif -k <= i <= k:
                        c = k + i if i < 0 else k - 1 + i
                        dtl = tau - last_tau[c]
                        last_tau[c] = tau
                        if d > 0:
                            ev_msg.append(m)
                            ev_col.append(c)
                            ev_type.append(0)
                            ev_size.append(d)
                            ev_before.append(old)
                            ev_after.append(new_sz)
                            ev_dt.append(dtl)
                        else:
                            dec = -d
                            if trades is None:
                                ev_msg.append(m)
                                ev_col.append(c)
                                ev_type.append(3)
                                ev_size.append(dec)
                                ev_before.append(old)
                                ev_after.append(new_sz)
                                ev_dt.append(dtl)
                            else:
                                got, first = match(is_ask, x, t_clk, dec)
                                if abs(i) == 1:
                                    n_dec_best += 1
                                    if got == 0:
                                        n_dec_best_no_trade += 1
                                    elif first is not None:
                                        best_offsets.append(first)
                                else:
                                    n_dec_deep += 1
                                    if got > 0:
                                        n_dec_deep_matched += 1
                                q = old
                                if got > 0:
                                    ev_msg.append(m)
                                    ev_col.append(c)
                                    ev_type.append(2)
                                    ev_size.append(got)
                                    ev_before.append(q)
                                    ev_after.append(q - got)
                                    ev_dt.append(dtl)
                                    dtl = 0
                                    q -= got
                                if dec > got:
                                    ev_msg.append(m)
                                    ev_col.append(c)
                                    ev_type.append(1)
                                    ev_size.append(dec - got)
                                    ev_before.append(q)
                                    ev_after.append(new_sz)
                                    ev_dt.append(dtl)
                        cur[c] = new_sz
                        chg_msg.append(m)
                        chg_col.append(c)
                        chg_val.append(new_sz)
                    else:
                        counts["outside_window"] += 1
                    if d < 0 and new_sz == 0:  # the best level of a side emptied
                        if is_ask and ba0 is not None and x == ba0[0]:
                            dep_ask = True
                        elif not is_ask and bb0 is not None and x == bb0[0]:
                            dep_bid = True
                    if d > 0:
                        if is_ask and (ba0 is None or x < ba0[0]):
                            ins_ask = True
                        elif not is_ask and (bb0 is None or x > bb0[0]):
                            ins_bid = True
                if is_ask:
                    book.set_ask(x, new_sz)
                else:
                    book.set_bid(x, new_sz)
        # after the message: reference price and live state
        bb = book.best_bid()
        ba = book.best_ask()
        if bb is None or ba is None or ba[0] <= bb[0]:
            if live:
                close_segments(m)
                live = False
            if bb is None or ba is None:
                counts["one_sided"] += 1
            else:
                counts["crossed"] += 1
        else:
            b, a = int(bb[0]), int(ba[0])
            msg_spread[m] = a - b
            if tracker is None:
                tracker = RefPriceTracker(1.0)
            new_ref = tracker.update(b, a)
            if new_ref is None:
                live = False
            elif not live:
                if snap_l[s] and ref_before is not None and new_ref != ref_before:
                    # a snapshot replaced a live book and moved the reference
                    res.pc_msg.append(m)
                    res.pc_dir.append(1 if new_ref > ref_before else -1)
                    res.pc_trigger.append("snapshot")
                    res.pc_spread_before.append(spread_before)
                    res.pc_spread_after.append(a - b)
                    counts["pref_changes"] += 1
                ref = new_ref
                relabel()
                live = True
            elif new_ref != ref:
                direction = 1 if new_ref > ref else -1
                if direction > 0:
                    trig = "depletion" if dep_ask else "insertion" if ins_bid else "other"
                else:
                    trig = "depletion" if dep_bid else "insertion" if ins_ask else "other"
                sb = int(ba0[0] - bb0[0]) if bb0 is not None and ba0 is not None else -1
                res.pc_msg.append(m)
                res.pc_dir.append(direction)
                res.pc_trigger.append(trig)
                res.pc_spread_before.append(sb)
                res.pc_spread_after.append(a - b)
                counts["pref_changes"] += 1
                close_segments(m)
                ref = new_ref
                relabel()
        msg_live[m] = live
        msg_ref[m] = ref if live else -1
        prev_clock = t_clk
        prev_live = live
    close_segments(n_msgs - 1)
    counts["events"] = len(ev_msg)
    if trades is not None:
        n_tr = sum(len(v) for v in t_rem.values())
        unmatched = sum(1 for key, rem in t_rem.items()
                        for r0, size in zip(rem, t_size[key], strict=True) if r0 == size)
        res.match = {
            "trades": n_tr,
            "trades_unmatched": unmatched,
            "unmatched_trade_rate": unmatched / n_tr if n_tr else None,
            "decreases_best": n_dec_best,
            "decreases_best_no_trade": n_dec_best_no_trade,
            "decreases_deep": n_dec_deep,
            "decreases_deep_matched": n_dec_deep_matched,
            "offsets_best_ns": best_offsets,
            "window_pre_ms": match_pre_ns / 1e6,
            "window_post_ms": match_post_ns / 1e6,
        }
    res.counts = counts
    return res
