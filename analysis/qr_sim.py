"""Queue-reactive simulators used to validate the estimators, to make demo data, and to simulate
order-book paths from fitted intensity tables.

The model is the queue-reactive model of Huang, Lehalle & Rosenbaum ("Simulating and analyzing
order book data: the queue-reactive model", JASA 110(509), 2015).

* :func:`simulate_queue`: one Model I queue with unit jumps by exact Gillespie simulation (draw the
  holding time Exp(Λ(n)), then the event type in proportion to the rates). Optional independent
  "restarts" at rate r cut the current interval without an event, as a p_ref change does. The
  output is the interval table the estimators read (one row per event or cut: state before,
  type, time since the previous event or cut).
* :func:`simulate_l2`: an L2 message stream (absolute sizes per price, ``l2`` table layout) plus a
  trades table and the ground truth of every event and every reference-price move. Queues around
  the reference price follow Model I intensities in AES units, n = ceil(q_lots / AES_i), with
  geometric event sizes in lots; the reference price is the deterministic half-tick rule of
  :mod:`core.refprice` applied to the simulated best bid and ask, so the truth labels use exactly
  the pipeline's definition.
* :func:`simulate_paths`: the same book for fitted intensity tables, with event sizes drawn from
  recorded ones (or unit sizes); it records only the time, mid and reference price after every
  event.

**Model III** (both book simulators). When an event empties Q_{±1} and the rule leaves p_ref
where it was (the mid moved half a tick), p_ref moves one tick in the direction of the mid move
with probability θ. After such a move:

* with probability θ^reinit the whole book is re-drawn from the queues' invariant laws around the
  new p_ref (published as a snapshot message);
* otherwise the queues are **shifted**: an order is placed on the other side at the price that
  just emptied (its size drawn from the invariant law of Q_{±1}, at least one unit), in the same
  message as the depletion. The spread is one tick again, centred one tick further, so the
  half-tick rule moves p_ref by exactly one tick; every queue keeps its price, which relabels it
  one position toward the new centre (a raw size is re-quantised with its new limit's AES), and
  the queue that enters the window at the far end is re-drawn from its invariant law in that same
  message. On the recorded data the placed order is a ``cross_ref`` insertion (an order at or
  beyond p_ref) and the change's trigger is the depletion.

HLR's own shift keeps the emptied queue empty and moves only the labels; a deterministic rule
applied to the book cannot see such a move, so the simulator realises it with the placed order.

The intensities of the validation tables are in :func:`validation_rates`. Rates are per second.
Only numpy and polars; no I/O. A fixed ``numpy.random.Generator`` makes runs reproducible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import polars as pl

from core.codec import MS_NS, S_NS
from core.refprice import ref_half_ticks

FloatArray = npt.NDArray[np.float64]

TYPES = ("L", "C", "M")
N_MAX = 60


@dataclass(frozen=True)
class QueueRates:
    """Intensities λ^L(n), λ^C(n), λ^M(n) for n = 0..n_max (per second)."""

    L: FloatArray
    C: FloatArray
    M: FloatArray

    @property
    def n_max(self) -> int:
        return self.L.size - 1

    @property
    def total(self) -> FloatArray:
        return np.asarray(self.L + self.C + self.M, dtype=np.float64)

    def rate(self, kind: str) -> FloatArray:
        return {"L": self.L, "C": self.C, "M": self.M, "D": self.C + self.M}[kind]


def validation_rates(n_max: int = N_MAX) -> dict[int, QueueRates]:
    """The intensities of the validation tests (shapes as HLR report them: λ^L flat at Q1 and
    lower at n = 0, decreasing beyond; λ^C concave at Q1, linear with a spike at n = 1 at Q2;
    λ^M decreasing); λ^L(n_max) = 0, λ^C(0) = λ^M(0) = 0.

    ======  =====================  ======================  ================
    queue   λ^L(n)                 λ^C(n), n ≥ 1           λ^M(n), n ≥ 1
    ======  =====================  ======================  ================
    Q1      0.4 if n = 0, else 0.8  0.15·n^0.7              0.6·e^(−0.3n)
    Q2      0.6·e^(−0.05n)         0.05·n + 0.1·1{n = 1}   0.05·e^(−0.3n)
    Q3      0.5                    0.04·n                  0
    ======  =====================  ======================  ================
    """
    n = np.arange(n_max + 1, dtype=np.float64)
    pos = n >= 1
    out = {}
    l1 = np.where(n == 0, 0.4, 0.8)
    c1 = np.where(pos, 0.15 * n**0.7, 0.0)
    m1 = np.where(pos, 0.6 * np.exp(-0.3 * n), 0.0)
    l2 = 0.6 * np.exp(-0.05 * n)
    c2 = np.where(pos, 0.05 * n + 0.1 * (n == 1), 0.0)
    m2 = np.where(pos, 0.05 * np.exp(-0.3 * n), 0.0)
    l3 = np.full(n.size, 0.5)
    c3 = np.where(pos, 0.04 * n, 0.0)
    m3 = np.zeros(n.size)
    for i, (lam_l, lam_c, lam_m) in enumerate(((l1, c1, m1), (l2, c2, m2), (l3, c3, m3)), 1):
        lam_l = lam_l.copy()
        lam_l[-1] = 0.0
        out[i] = QueueRates(lam_l, lam_c, lam_m)
    return out


def stationary(rates: QueueRates) -> FloatArray:
    """Invariant law of the unit-jump birth–death queue: π(n) ∝ ∏_{j<n} λ^L(j) / λ^D(j+1)."""
    down = rates.C + rates.M
    w = np.ones(rates.L.size)
    for n in range(1, rates.L.size):
        w[n] = w[n - 1] * (rates.L[n - 1] / down[n] if down[n] > 0 else 0.0)
    return np.asarray(w / w.sum(), dtype=np.float64)


def simulate_queue(rates: QueueRates, duration_s: float, rng: np.random.Generator, *,
                   n0: int | None = None, restart_rate: float = 0.0,
                   queue: int = 1, side: str = "ask") -> pl.DataFrame:
    """Exact simulation of one unit-jump Model I queue.

    Returns the interval table: ``limit``, ``side``, ``n`` (state before the row),
    ``type`` (L/C/M, or "cut" for a restart or the end of the run) and ``dt`` (seconds since the
    previous event or cut at this queue). Σ dt over rows with state n is the exact time spent in
    n. The start state defaults to a draw from the invariant law.
    """
    tot = rates.total
    p_l = np.divide(rates.L, tot, out=np.zeros_like(tot), where=tot > 0)
    p_lc = np.divide(rates.L + rates.C, tot, out=np.zeros_like(tot), where=tot > 0)
    pi = stationary(rates)
    n = int(rng.choice(pi.size, p=pi)) if n0 is None else n0
    tot_l, p_l_l, p_lc_l = tot.tolist(), p_l.tolist(), p_lc.tolist()
    states: list[int] = []
    kinds: list[int] = []  # 0 L, 1 C, 2 M, 3 cut
    dts: list[float] = []
    t = 0.0
    chunk = 1 << 16
    exps = rng.standard_exponential(chunk).tolist()
    unif = rng.random(chunk).tolist()
    k = 0
    while True:
        if k == chunk:
            exps = rng.standard_exponential(chunk).tolist()
            unif = rng.random(chunk).tolist()
            k = 0
        lam = tot_l[n]
        rate = lam + restart_rate
        wait = exps[k] / rate
        u = unif[k] * rate
        k += 1
        if t + wait >= duration_s:
            states.append(n)
            kinds.append(3)
            dts.append(duration_s - t)
            break
        t += wait
        states.append(n)
        dts.append(wait)
        if u >= lam:
            kinds.append(3)
            continue
        u /= lam
        if u < p_l_l[n]:
            kinds.append(0)
            n += 1
        elif u < p_lc_l[n]:
            kinds.append(1)
            n -= 1
        else:
            kinds.append(2)
            n -= 1
    names = np.array([*TYPES, "cut"])
    return pl.DataFrame({
        "limit": pl.Series([queue] * len(states), dtype=pl.Int32),
        "side": pl.Series([side] * len(states), dtype=pl.String),
        "n": pl.Series(states, dtype=pl.Int64),
        "type": pl.Series(names[np.asarray(kinds, dtype=np.int64)], dtype=pl.String),
        "dt": pl.Series(dts, dtype=pl.Float64),
    })


# -- the simulated book --------------------------------------------------------------------------


@dataclass
class L2SimConfig:
    """Parameters of :func:`simulate_l2`. Levels beyond those in ``rates`` reuse the last one."""

    duration_s: float = 600.0
    k: int = 3  # simulated queues per side (the window the intensities apply to)
    depth_beyond: int = 3  # extra levels kept beyond the window (static until they enter it)
    tick: float = 0.01
    lot: float = 0.01  # base units per lot
    p0: float = 18.0  # initial reference price (rounded to a half tick)
    aes_lots: tuple[float, ...] = (3.0, 5.0, 5.0)  # mean event size per level, in lots
    rates: dict[int, QueueRates] = field(default_factory=validation_rates)
    theta: float = 0.7
    theta_reinit: float = 0.85
    latency_ms: float = 30.0  # ts_local − ts_exchange
    trade_jitter_ms: float = 20.0  # trades are stamped t + U(−j, j)
    t0_ns: int = 1_700_000_000 * S_NS
    exchange: str = "coinbase"
    symbol: str = "ETC-USD"
    resnapshot_rate: float = 0.0  # mid-stream snapshots of an unchanged book, per second
    duplicate_rate: float = 0.0  # re-sent copies of the previous message, per second
    zero_delta_rate: float = 0.0  # rows re-stating a level's current size, per second
    breaks: tuple[tuple[float, float], ...] = ()  # (start_s, length_s): feed lost, then snapshot


@dataclass
class L2Sim:
    """Output of :func:`simulate_l2`: ``l2``, ``trades`` and ``health`` tables in the recorder's
    layout; ``truth`` (one row per event: msg_id, ts, limit, side, type, size_lots, q_before);
    ``pref`` (msg_id, ref_half after every message); ``moves`` (one row per depletion of Q±1 that
    left p_ref in place: msg_id of the depletion, its direction and the Model III outcome
    ``none``, ``shift`` or ``reinit``)."""

    l2: pl.DataFrame
    trades: pl.DataFrame
    health: pl.DataFrame
    truth: pl.DataFrame
    pref: pl.DataFrame
    moves: pl.DataFrame
    config: L2SimConfig


Row = tuple[str, int, int]  # side, price in ticks, size in lots


class _Draws:
    """Buffered uniform and exponential variates (a scalar draw per call is slow)."""

    CHUNK = 1 << 14

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self._u: list[float] = []
        self._e: list[float] = []

    def uniform(self) -> float:
        if not self._u:
            self._u = self.rng.random(self.CHUNK).tolist()
        return self._u.pop()

    def exponential(self) -> float:
        if not self._e:
            self._e = self.rng.standard_exponential(self.CHUNK).tolist()
        return self._e.pop()

    def geometric(self, mean: float) -> int:
        """Geometric on 1, 2, ... with the given mean (1 when the mean is at most 1)."""
        if mean <= 1:
            return 1
        return max(1, math.ceil(math.log1p(-self.uniform()) / math.log1p(-1.0 / mean)))

    def pick(self, values: list[int]) -> int:
        """One of ``values``, uniformly."""
        return values[min(int(self.uniform() * len(values)), len(values) - 1)]

    def choice(self, p: FloatArray) -> int:
        return min(int(np.searchsorted(np.cumsum(p), self.uniform() * p.sum(), side="right")),
                   p.size - 1)


@dataclass
class _Layout:
    """Static per-run tables: per queue column c (0..K−1 bids Q_{−1}..Q_{−K}, K..2K−1 asks
    Q_1..Q_K) its level and rates, per level its AES and invariant law."""

    k: int
    levels: list[int]
    col_level: list[int]
    rate_l: list[list[float]]
    rate_c: list[list[float]]
    rate_m: list[list[float]]
    aes_col: list[float]
    aes: dict[int, float]
    pis: dict[int, FloatArray]
    n_max: int
    sizes: dict[int, list[int]]  # event sizes (lots) to draw from per level; empty: geometric

    @classmethod
    def of(cls, rates: dict[int, QueueRates], aes_lots: tuple[float, ...], k: int,
           depth_beyond: int, sizes: dict[int, list[int]] | None = None) -> _Layout:
        levels = [*range(1, k + depth_beyond + 1)]
        per = {i: rates.get(i, rates[max(rates)]) for i in levels}
        aes = {i: aes_lots[min(i, len(aes_lots)) - 1] for i in levels}
        col_level = [*(-(j + 1) for j in range(k)), *(j + 1 for j in range(k))]
        given = sizes or {}
        by_level = {i: given.get(i, given[max(given)] if given else []) for i in levels}
        return cls(k, levels, col_level,
                   [per[abs(i)].L.tolist() for i in col_level],
                   [per[abs(i)].C.tolist() for i in col_level],
                   [per[abs(i)].M.tolist() for i in col_level],
                   [aes[abs(i)] for i in col_level], aes,
                   {i: stationary(per[i]) for i in levels}, per[1].n_max, by_level)

    def price(self, c: int, ref: int) -> int:
        """Price (ticks) of queue column c around the half-tick reference ``ref``."""
        i = self.col_level[c]
        return (ref + 2 * i - 1) // 2 if i > 0 else (ref + 2 * i + 1) // 2


@dataclass
class _Book:
    """The simulated book in lots per price (ticks), and the reference price P (half ticks)."""

    bids: dict[int, int] = field(default_factory=dict)
    asks: dict[int, int] = field(default_factory=dict)
    ref: int = 0

    def side(self, ask: bool) -> dict[int, int]:
        return self.asks if ask else self.bids

    def set(self, ask: bool, px: int, lots: int) -> None:
        if lots:
            self.side(ask)[px] = lots
        else:
            self.side(ask).pop(px, None)

    def rows(self) -> list[Row]:
        return ([("bid", p, s) for p, s in sorted(self.bids.items(), reverse=True)]
                + [("ask", p, s) for p, s in sorted(self.asks.items())])

    def rule_ref(self) -> int:
        """The half-tick rule on the current best prices (the book is never crossed here)."""
        ref = ref_half_ticks(max(self.bids), min(self.asks), self.ref)
        assert ref is not None
        return ref

    def mid2(self) -> int:
        return max(self.bids) + min(self.asks)


def _draw_queue_lots(draws: _Draws, pi: FloatArray, aes: float, at_least_one: bool) -> int:
    p = pi.copy()
    if at_least_one:
        p[0] = 0.0
    n = draws.choice(p)
    if n == 0:
        return 0
    lo = math.floor((n - 1) * aes) + 1
    hi = max(lo, math.floor(n * aes))
    return lo + min(int(draws.uniform() * (hi - lo + 1)), hi - lo)


class _Recorder:
    """What a simulation keeps; the base keeps nothing."""

    def message(self, t_ns: int, rows: list[Row], snapshot: bool, ref: int) -> int:
        return 0

    def event(self, mid: int, t_ns: int, level: int, kind: int, size: int, before: int) -> None:
        pass

    def trade(self, t_ns: int, px: int, lots: int, maker_ask: bool) -> None:
        pass

    def health(self, t_ns: int, event: str, detail: str) -> None:
        pass

    def move(self, mid: int, direction: int, outcome: str) -> None:
        pass

    def state(self, t_ns: int, book: _Book) -> None:
        pass


@dataclass
class _Model3:
    theta: float
    theta_reinit: float


class _BookSim:
    """One simulated book. :meth:`run` draws events until ``end_ns`` in named steps:
    :meth:`next_event` (which queue, which type, when), :meth:`apply` (the book and the truth),
    :meth:`model3` (p_ref moves after a depletion), with :meth:`extra` for the stream
    artefacts and :meth:`feed_loss` for the breaks of :class:`L2SimConfig`."""

    def __init__(self, layout: _Layout, draws: _Draws, rec: _Recorder, model3: _Model3, *,
                 t0_ns: int, ref0: int) -> None:
        self.lay = layout
        self.draws = draws
        self.rec = rec
        self.m3 = model3
        self.book = _Book(ref=ref0)
        self.t_ns = t0_ns
        self.n = [0] * (2 * layout.k)  # state in AES units per column
        self.q = [0] * (2 * layout.k)  # raw lots per column
        self.draw_book(ref0)
        self.book.ref = self.book.rule_ref()
        self.relabel()
        self.emitting = True
        self.last_rows: list[Row] = []
        self.rec.state(self.t_ns, self.book)

    # -- book state ------------------------------------------------------------------------------

    def draw_book(self, ref: int) -> None:
        """Every level (window and beyond) from its invariant law around ``ref``; Q±1 never
        empty."""
        b, lay = self.book, self.lay
        b.bids.clear()
        b.asks.clear()
        for i in lay.levels:
            for ask in (True, False):
                lots = _draw_queue_lots(self.draws, lay.pis[i], lay.aes[i], at_least_one=i == 1)
                px = (ref + 2 * i - 1) // 2 if ask else (ref - 2 * i + 1) // 2
                b.set(ask, px, lots)

    def relabel(self) -> None:
        lay, b = self.lay, self.book
        for c in range(2 * lay.k):
            self.q[c] = b.side(lay.col_level[c] > 0).get(lay.price(c, b.ref), 0)
            self.n[c] = min(math.ceil(self.q[c] / lay.aes_col[c] - 1e-9), lay.n_max)

    # -- step 1: the next event ------------------------------------------------------------------

    def next_event(self, extra_rate: float) -> tuple[int, int] | None:
        """Advance the clock to the next event; return (type, column), or None for one of the
        ``extra_rate`` artefacts."""
        lay, n = self.lay, self.n
        per = [lay.rate_l[c][n[c]] + lay.rate_c[c][n[c]] + lay.rate_m[c][n[c]]
               for c in range(2 * lay.k)]
        total = sum(per)
        self.t_ns += max(1, int(self.draws.exponential() / (total + extra_rate) * S_NS))
        u = self.draws.uniform() * (total + extra_rate)
        if u >= total:
            return None
        c = 0
        while c < len(per) - 1 and u >= per[c]:
            u -= per[c]
            c += 1
        nc = n[c]
        if u < lay.rate_l[c][nc]:
            return 0, c
        return (1 if u < lay.rate_l[c][nc] + lay.rate_c[c][nc] else 2), c

    # -- step 2: apply it ------------------------------------------------------------------------

    def apply(self, kind: int, c: int) -> tuple[list[Row], int, int, int] | None:
        """Change queue c by one event; returns the message rows, the size, the size before and
        the price, or None when a decrease met an empty queue."""
        lay, b = self.lay, self.book
        i = lay.col_level[c]
        px = lay.price(c, b.ref)
        before = self.q[c]
        sizes = lay.sizes[abs(i)]
        size = self.draws.pick(sizes) if sizes else self.draws.geometric(lay.aes[abs(i)])
        if kind > 0:
            size = min(size, before)
            if size == 0:
                return None
        after = before + size if kind == 0 else before - size
        b.set(i > 0, px, after)
        self.q[c] = after
        self.n[c] = min(math.ceil(after / lay.aes_col[c] - 1e-9), lay.n_max)
        return [("ask" if i > 0 else "bid", px, after)], size, before, px

    # -- step 3: Model III -----------------------------------------------------------------------

    def model3(self, c: int, rows: list[Row]) -> str:
        """After Q±1 emptied with p_ref in place: none, a shift (rows appended to this message)
        or a re-initialisation (the caller publishes a snapshot)."""
        lay, b, d = self.lay, self.book, self.draws
        i = lay.col_level[c]
        if d.uniform() >= self.m3.theta:
            return "none"
        direction = 1 if i > 0 else -1
        moved = b.ref + 2 * direction
        if d.uniform() < self.m3.theta_reinit:
            self.draw_book(moved)
            return "reinit"
        px = lay.price(c, b.ref)  # the price that just emptied
        lots = _draw_queue_lots(d, lay.pis[1], lay.aes[1], at_least_one=True)
        b.set(i < 0, px, lots)
        rows.append(("bid" if i > 0 else "ask", px, lots))
        far = (moved + direction * (2 * lay.k - 1)) // 2  # the queue entering the window
        far_ask = direction > 0
        far_lots = _draw_queue_lots(d, lay.pis[lay.k], lay.aes[lay.k], at_least_one=False)
        if far_lots != b.side(far_ask).get(far, 0):
            b.set(far_ask, far, far_lots)
            rows.append(("ask" if far_ask else "bid", far, far_lots))
        return "shift"

    # -- the loop --------------------------------------------------------------------------------

    def event(self, kind: int, c: int) -> None:
        applied = self.apply(kind, c)
        if applied is None:
            return
        rows, size, before, px = applied
        b, lay = self.book, self.lay
        i = lay.col_level[c]
        depleted = abs(i) == 1 and kind > 0 and self.q[c] == 0
        outcome = "rule"
        new_ref = b.rule_ref()
        if depleted and new_ref == b.ref:
            outcome = self.model3(c, rows)
            new_ref = b.rule_ref() if outcome == "shift" else new_ref
        moved, b.ref = new_ref != b.ref, new_ref
        mid = 0
        if self.emitting:
            mid = self.rec.message(self.t_ns, rows, False, b.ref)
            self.last_rows = rows
            self.rec.event(mid, self.t_ns, i, kind, size, before)
            if kind == 2:
                self.rec.trade(self.t_ns, px, size, i > 0)
        if depleted and outcome != "rule":
            self.rec.move(mid, 1 if i > 0 else -1, outcome)
        if outcome == "reinit":
            b.ref = b.rule_ref()
            self.t_ns += 1
            if self.emitting:
                self.rec.message(self.t_ns, b.rows(), True, b.ref)
                self.last_rows = []
            moved = True
        if moved:
            self.relabel()
        self.rec.state(self.t_ns, b)


    def extra(self, u: float, rates: tuple[float, float, float]) -> None:
        """One stream artefact: a re-sent snapshot, a duplicated message or a row re-stating a
        queue's size (``u`` uniform over their summed rates)."""
        resnap, dup, _ = rates
        if not self.emitting:
            return
        if u < resnap:
            self.rec.message(self.t_ns, self.book.rows(), True, self.book.ref)
            self.last_rows = []
        elif u < resnap + dup:
            if self.last_rows:
                self.rec.message(self.t_ns, self.last_rows, False, self.book.ref)
        else:
            lay = self.lay
            c = min(int(self.draws.uniform() * 2 * lay.k), 2 * lay.k - 1)
            side = "ask" if lay.col_level[c] > 0 else "bid"
            self.rec.message(self.t_ns, [(side, lay.price(c, self.book.ref), self.q[c])],
                             False, self.book.ref)

    def run(self, end_ns: int, extra_rates: tuple[float, float, float] = (0.0, 0.0, 0.0),
            breaks_ns: list[tuple[int, int]] | None = None) -> None:
        """Events until ``end_ns``. During a break (start, end) nothing is published; the first
        event after it publishes a snapshot instead (feed lost, then resynced)."""
        pending = sorted(breaks_ns or [])
        until: int | None = None
        extra_rate = sum(extra_rates)
        while True:
            nxt = self.next_event(extra_rate)
            if self.t_ns >= end_ns:
                return
            if pending and self.t_ns >= pending[0][0]:
                start, length = pending.pop(0)
                until = start + length
                self.emitting = False
                self.rec.health(start, "disconnected", "simulated feed loss")
            if until is not None and self.t_ns >= until:
                until = None
                self.emitting = True
                self.rec.message(self.t_ns, self.book.rows(), True, self.book.ref)
                self.last_rows = []
                self.rec.health(self.t_ns, "resynced", "after disconnect")
                continue
            if nxt is None:
                self.extra(self.draws.uniform() * extra_rate, extra_rates)
            else:
                self.event(*nxt)


# -- L2 message streams --------------------------------------------------------------------------


class _Stream(_Recorder):
    """Row buffers of the l2, trades and health tables and the truth tables."""

    def __init__(self, cfg: L2SimConfig, draws: _Draws) -> None:
        self.cfg = cfg
        self.draws = draws
        self.l2: dict[str, list[object]] = {c: [] for c in ("ts_exchange", "side", "price",
                                                            "size", "is_snapshot", "msg_id")}
        self.trades: dict[str, list[object]] = {c: [] for c in ("ts_exchange", "price", "size",
                                                                "side", "trade_id")}
        self.health_rows: dict[str, list[object]] = {c: [] for c in ("ts_local", "symbol",
                                                                     "event", "detail")}
        self.truth: dict[str, list[object]] = {c: [] for c in ("msg_id", "ts", "limit", "side",
                                                               "type", "size_lots", "q_before")}
        self.moves: dict[str, list[object]] = {c: [] for c in ("msg_id", "direction",
                                                               "outcome")}
        self.pref_ids: list[int] = []
        self.pref_val: list[int] = []
        self.msg_id = 0

    def message(self, t_ns: int, rows: list[Row], snapshot: bool, ref: int) -> int:
        self.msg_id += 1
        cfg = self.cfg
        for side, px, lots in rows:
            self.l2["ts_exchange"].append(t_ns)
            self.l2["side"].append(side)
            self.l2["price"].append(round(px * cfg.tick, 10))
            self.l2["size"].append(round(lots * cfg.lot, 10))
            self.l2["is_snapshot"].append(snapshot)
            self.l2["msg_id"].append(self.msg_id)
        self.pref_ids.append(self.msg_id)
        self.pref_val.append(ref)
        return self.msg_id

    def event(self, mid: int, t_ns: int, level: int, kind: int, size: int, before: int) -> None:
        t = self.truth
        for name, value in (("msg_id", mid), ("ts", t_ns), ("limit", level),
                            ("side", "ask" if level > 0 else "bid"), ("type", TYPES[kind]),
                            ("size_lots", size), ("q_before", before)):
            t[name].append(value)

    def trade(self, t_ns: int, px: int, lots: int, maker_ask: bool) -> None:
        cfg = self.cfg
        jitter = cfg.trade_jitter_ms * (2 * self.draws.uniform() - 1)
        tr = self.trades
        tr["ts_exchange"].append(t_ns + int(jitter * MS_NS))
        tr["price"].append(round(px * cfg.tick, 10))
        tr["size"].append(round(lots * cfg.lot, 10))
        tr["side"].append("buy" if maker_ask else "sell")  # the taker's side
        tr["trade_id"].append(str(len(tr["trade_id"]) + 1))

    def health(self, t_ns: int, event: str, detail: str) -> None:
        """Health rows as the recorder writes them: connection-wide events name no symbol."""
        h = self.health_rows
        h["ts_local"].append(t_ns + int(self.cfg.latency_ms * MS_NS))
        h["symbol"].append(None if event in ("connected", "disconnected") else self.cfg.symbol)
        h["event"].append(event)
        h["detail"].append(detail)

    def move(self, mid: int, direction: int, outcome: str) -> None:
        for name, value in (("msg_id", mid), ("direction", direction), ("outcome", outcome)):
            self.moves[name].append(value)

    def frames(self) -> L2Sim:
        cfg = self.cfg
        lat = int(cfg.latency_ms * MS_NS)
        ts = pl.Datetime("ns", "UTC")
        l2 = pl.DataFrame(self.l2, schema={"ts_exchange": pl.Int64, "side": pl.String,
                                           "price": pl.Float64, "size": pl.Float64,
                                           "is_snapshot": pl.Boolean, "msg_id": pl.Int64})
        l2 = l2.select(
            (pl.col("ts_exchange") + lat).cast(ts).alias("ts_local"),
            pl.col("ts_exchange").cast(ts),
            pl.lit(cfg.exchange).alias("exchange"), pl.lit(cfg.symbol).alias("symbol"),
            "side", "price", "size", "is_snapshot", pl.col("msg_id").alias("seq"), "msg_id")
        tr = pl.DataFrame(self.trades, schema={"ts_exchange": pl.Int64, "price": pl.Float64,
                                               "size": pl.Float64, "side": pl.String,
                                               "trade_id": pl.String})
        tr = tr.sort("ts_exchange").select(
            (pl.col("ts_exchange") + lat).cast(ts).alias("ts_local"),
            pl.col("ts_exchange").cast(ts),
            pl.lit(cfg.exchange).alias("exchange"), pl.lit(cfg.symbol).alias("symbol"),
            "price", "size", "side", "trade_id")
        he = pl.DataFrame(self.health_rows, schema={"ts_local": pl.Int64, "symbol": pl.String,
                                                    "event": pl.String, "detail": pl.String})
        he = he.select(pl.col("ts_local").cast(ts), pl.lit(cfg.exchange).alias("exchange"),
                       "symbol", "event", "detail")
        truth = pl.DataFrame(self.truth, schema={
            "msg_id": pl.Int64, "ts": pl.Int64, "limit": pl.Int32, "side": pl.String,
            "type": pl.String, "size_lots": pl.Int64, "q_before": pl.Int64})
        pref = pl.DataFrame({"msg_id": self.pref_ids, "ref_half": self.pref_val},
                            schema={"msg_id": pl.Int64, "ref_half": pl.Int64})
        moves = pl.DataFrame(self.moves, schema={"msg_id": pl.Int64, "direction": pl.Int8,
                                                 "outcome": pl.String})
        return L2Sim(l2, tr, he, truth, pref, moves, cfg)


def simulate_l2(cfg: L2SimConfig, rng: np.random.Generator) -> L2Sim:
    """Simulate an L2 + trades stream; see the module docstring for the model."""
    draws = _Draws(rng)
    layout = _Layout.of(cfg.rates, cfg.aes_lots, cfg.k, cfg.depth_beyond)
    out = _Stream(cfg, draws)
    out.health(cfg.t0_ns, "connected", "simulated feed")
    out.health(cfg.t0_ns, "subscribed", "level2,market_trades")
    sim = _BookSim(layout, draws, out, _Model3(cfg.theta, cfg.theta_reinit), t0_ns=cfg.t0_ns,
                   ref0=2 * round(cfg.p0 / cfg.tick) + 1)
    out.message(sim.t_ns, sim.book.rows(), True, sim.book.ref)
    out.health(cfg.t0_ns, "snapshot", "initial")
    breaks = [(cfg.t0_ns + int(a * S_NS), int(b * S_NS)) for a, b in cfg.breaks]
    end_ns = cfg.t0_ns + int(cfg.duration_s * S_NS)
    sim.run(end_ns, (cfg.resnapshot_rate, cfg.duplicate_rate, cfg.zero_delta_rate), breaks)
    out.health(end_ns, "stopped", "end of simulation")
    return out.frames()


# -- paths from fitted tables --------------------------------------------------------------------


@dataclass
class PathConfig:
    """Parameters of :func:`simulate_paths`. Queues are in lots with n = ceil(q / AES); event
    sizes are drawn from ``sizes`` (per level, lots; the last level's for deeper ones), or are
    geometric with mean AES when none are given (one lot each with the default AES of 1: unit
    jumps)."""

    duration_s: float
    rates: dict[int, QueueRates]
    theta: float = 0.0
    theta_reinit: float = 0.0
    k: int = 3
    depth_beyond: int = 3
    p0_ticks: int = 1000  # initial reference price, in ticks
    aes_lots: tuple[float, ...] = (1.0,)
    sizes: dict[int, list[int]] | None = None


class _PathRecorder(_Recorder):
    """The time, best bid + best ask (ticks) and p_ref (half ticks) after every event."""

    def __init__(self) -> None:
        self.t: list[int] = []
        self.mid2: list[int] = []
        self.ref: list[int] = []

    def state(self, t_ns: int, book: _Book) -> None:
        self.t.append(t_ns)
        self.mid2.append(book.mid2())
        self.ref.append(book.ref)


@dataclass
class Path:
    t_ns: npt.NDArray[np.int64]
    mid2: npt.NDArray[np.int64]
    ref: npt.NDArray[np.int64]


def simulate_paths(cfg: PathConfig, n_paths: int, rng: np.random.Generator) -> list[Path]:
    """``n_paths`` independent books of ``duration_s`` each, from the rates (Model III with
    ``theta``/``theta_reinit``; θ = 0 leaves p_ref to the rule alone)."""
    layout = _Layout.of(cfg.rates, cfg.aes_lots, cfg.k, cfg.depth_beyond, cfg.sizes)
    out = []
    for _ in range(n_paths):
        rec = _PathRecorder()
        sim = _BookSim(layout, _Draws(rng), rec, _Model3(cfg.theta, cfg.theta_reinit),
                       t0_ns=0, ref0=2 * cfg.p0_ticks + 1)
        sim.run(int(cfg.duration_s * S_NS))
        out.append(Path(np.asarray(rec.t, dtype=np.int64), np.asarray(rec.mid2, dtype=np.int64),
                        np.asarray(rec.ref, dtype=np.int64)))
    return out
