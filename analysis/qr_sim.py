"""Queue-reactive simulators used to validate the estimators and to make demo data.

* :func:`simulate_queue`: one Model I queue with unit jumps by exact Gillespie simulation (draw the
  holding time Exp(Λ(n)), then the event type in proportion to the rates). Optional independent
  "restarts" at rate r cut the current interval without an event, as a p_ref change does. The
  output is the interval table the estimators read (one row per event or cut: state before,
  type, time since the previous event or cut).
* :func:`simulate_l2`: an L2 message stream (absolute sizes per price, ``l2`` table layout) plus a
  trades table and the ground truth of every event. Queues around the reference price follow
  Model I intensities in AES units, n = ceil(q_lots / AES_i), with geometric event sizes in
  lots; the reference price is the deterministic half-tick rule of :mod:`core.refprice` applied to
  the simulated best bid and ask, so the truth labels use exactly the pipeline's definition.
  Model III's exogenous part is added on top: when an event empties Q_{±1}, with probability θ the
  price moves one tick in the direction of the mid move; with probability θ^reinit the book is
  redrawn from the invariant laws around the new centre (published as a snapshot), otherwise the
  queues keep their prices (HLR's shift is a relabelling, which the rule performs by itself) and
  only the new outer queue, beyond the window, is redrawn.

The rates of §3.8 of the queue-reactive spec are in :func:`spec_rates`. Rates are per second.
Only numpy and polars; no I/O. A fixed ``numpy.random.Generator`` makes runs reproducible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import polars as pl

from core.refprice import RefPriceTracker, level_index

FloatArray = npt.NDArray[np.float64]

TYPES = ("L", "C", "M")
N_MAX = 60
NS = 1_000_000_000


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


def spec_rates(n_max: int = N_MAX) -> dict[int, QueueRates]:
    """Q1–Q3 of the spec's §3.8 table (λ^L(n_max) = 0, λ^C(0) = λ^M(0) = 0)."""
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


# -- L2 message streams --------------------------------------------------------------------------


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
    rates: dict[int, QueueRates] = field(default_factory=spec_rates)
    theta: float = 0.7
    theta_reinit: float = 0.85
    latency_ms: float = 30.0  # ts_local − ts_exchange
    trade_jitter_ms: float = 20.0  # trades are stamped t + U(−j, j)
    t0_ns: int = 1_700_000_000 * NS
    exchange: str = "coinbase"
    symbol: str = "ETC-USD"
    resnapshot_rate: float = 0.0  # mid-stream snapshots of an unchanged book, per second
    duplicate_rate: float = 0.0  # re-sent copies of the previous message, per second
    zero_delta_rate: float = 0.0  # rows re-stating a level's current size, per second
    breaks: tuple[tuple[float, float], ...] = ()  # (start_s, length_s): feed lost, then snapshot


@dataclass
class L2Sim:
    """Output of :func:`simulate_l2`: ``l2``, ``trades`` and ``health`` tables in the recorder's
    layout, and ``truth`` (one row per event: msg_id, level, side, type, size_lots, q_before)."""

    l2: pl.DataFrame
    trades: pl.DataFrame
    health: pl.DataFrame
    truth: pl.DataFrame
    pref: pl.DataFrame  # msg_id, ref_half after every message
    config: L2SimConfig


def _geometric(rng: np.random.Generator, mean: float) -> int:
    return int(rng.geometric(1.0 / mean)) if mean > 1 else 1


def _draw_queue_lots(rng: np.random.Generator, pi: FloatArray, aes: float,
                     at_least_one: bool) -> int:
    p = pi.copy()
    if at_least_one:
        p[0] = 0.0
        p /= p.sum()
    n = int(rng.choice(p.size, p=p))
    if n == 0:
        return 0
    lo = math.floor((n - 1) * aes) + 1
    hi = max(lo, math.floor(n * aes))
    return int(rng.integers(lo, hi + 1))


class _Stream:
    """Row buffers for the three output tables."""

    def __init__(self, cfg: L2SimConfig) -> None:
        self.cfg = cfg
        self.l2: dict[str, list[object]] = {c: [] for c in
                                            ("ts_exchange", "side", "price", "size",
                                             "is_snapshot", "msg_id")}
        self.trades: dict[str, list[object]] = {c: [] for c in
                                                ("ts_exchange", "price", "size", "side",
                                                 "trade_id")}
        self.health: dict[str, list[object]] = {c: [] for c in ("ts_local", "event", "detail")}
        self.msg_id = 0

    def message(self, ts: int, rows: list[tuple[str, int, int]], snapshot: bool) -> int:
        self.msg_id += 1
        cfg = self.cfg
        for side, px, lots in rows:
            self.l2["ts_exchange"].append(ts)
            self.l2["side"].append(side)
            self.l2["price"].append(round(px * cfg.tick, 10))
            self.l2["size"].append(round(lots * cfg.lot, 10))
            self.l2["is_snapshot"].append(snapshot)
            self.l2["msg_id"].append(self.msg_id)
        return self.msg_id

    def frames(self) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
        cfg = self.cfg
        lat = int(cfg.latency_ms * 1e6)
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
        he = pl.DataFrame(self.health, schema={"ts_local": pl.Int64, "event": pl.String,
                                               "detail": pl.String})
        he = he.select(pl.col("ts_local").cast(ts), pl.lit(cfg.exchange).alias("exchange"),
                       pl.lit(cfg.symbol).alias("symbol"), "event", "detail")
        return l2, tr, he


def simulate_l2(cfg: L2SimConfig, rng: np.random.Generator) -> L2Sim:
    """Simulate an L2 + trades stream; see the module docstring for the model."""
    k, nb = cfg.k, cfg.depth_beyond
    levels = [*range(1, k + nb + 1)]
    rates = {i: cfg.rates.get(i, cfg.rates[max(cfg.rates)]) for i in levels}
    aes = {i: cfg.aes_lots[min(i, len(cfg.aes_lots)) - 1] for i in levels}
    pis = {i: stationary(rates[i]) for i in levels}
    tracker = RefPriceTracker(cfg.tick)
    out = _Stream(cfg)
    bids: dict[int, int] = {}
    asks: dict[int, int] = {}

    def draw_book(ref_half: int) -> None:
        bids.clear()
        asks.clear()
        for i in levels:
            a = _draw_queue_lots(rng, pis[i], aes[i], at_least_one=i == 1)
            b = _draw_queue_lots(rng, pis[i], aes[i], at_least_one=i == 1)
            if a:
                asks[(ref_half + 2 * i - 1) // 2] = a
            if b:
                bids[(ref_half - 2 * i + 1) // 2] = b

    def book_rows() -> list[tuple[str, int, int]]:
        return ([("bid", p, s) for p, s in sorted(bids.items(), reverse=True)]
                + [("ask", p, s) for p, s in sorted(asks.items())])

    def update_ref() -> int:
        ref = tracker.update(max(bids) if bids else None, min(asks) if asks else None)
        assert ref is not None
        return ref

    ref0 = 2 * round(cfg.p0 / cfg.tick) + 1
    draw_book(ref0)
    t_ns = cfg.t0_ns
    end_ns = cfg.t0_ns + int(cfg.duration_s * NS)
    out.message(t_ns, book_rows(), True)
    ref = update_ref()
    out.health["ts_local"].append(t_ns + int(cfg.latency_ms * 1e6))
    out.health["event"].append("snapshot")
    out.health["detail"].append("initial")

    truth: dict[str, list[object]] = {c: [] for c in ("msg_id", "ts", "limit", "side", "type",
                                                      "size_lots", "q_before")}
    extra_rate = cfg.resnapshot_rate + cfg.duplicate_rate + cfg.zero_delta_rate
    breaks = sorted(cfg.breaks)
    break_i = 0
    in_break_until: int | None = None
    last_rows: list[tuple[str, int, int]] = []
    trade_no = 0
    ncol = 2 * k
    # column c: 0..k-1 bids Q_{-1}..Q_{-k}, k..2k-1 asks Q_1..Q_k
    col_level = [*(-(j + 1) for j in range(k)), *(j + 1 for j in range(k))]
    rl = np.array([rates[abs(i)].L for i in col_level])
    rc = np.array([rates[abs(i)].C for i in col_level])
    rm = np.array([rates[abs(i)].M for i in col_level])
    aes_col = np.array([aes[abs(i)] for i in col_level])
    nmax = rl.shape[1] - 1
    cols = np.arange(ncol)

    def col_price(c: int, ref_half: int) -> int:
        i = col_level[c]
        return (ref_half + 2 * i - 1) // 2 if i > 0 else (ref_half + 2 * i + 1) // 2

    def sizes(ref_half: int) -> npt.NDArray[np.int64]:
        return np.array([(asks if col_level[c] > 0 else bids).get(col_price(c, ref_half), 0)
                         for c in cols], dtype=np.int64)

    q = sizes(ref)
    pref_ids: list[int] = [out.msg_id]
    pref_val: list[int] = [ref]

    def emit(rows: list[tuple[str, int, int]], snapshot: bool) -> int:
        mid = out.message(t_ns, rows, snapshot)
        pref_ids.append(mid)
        pref_val.append(ref)
        return mid

    while True:
        n = np.minimum(np.ceil(q / aes_col).astype(np.int64), nmax)
        lam = np.concatenate([rl[cols, n], rc[cols, n], rm[cols, n]])
        total = float(lam.sum())
        wait = rng.exponential(1.0 / (total + extra_rate))
        t_ns += max(1, int(wait * NS))
        if t_ns >= end_ns:
            break
        if break_i < len(breaks) and t_ns >= cfg.t0_ns + int(breaks[break_i][0] * NS):
            start = cfg.t0_ns + int(breaks[break_i][0] * NS)
            in_break_until = start + int(breaks[break_i][1] * NS)
            out.health["ts_local"].append(start + int(cfg.latency_ms * 1e6))
            out.health["event"].append("disconnected")
            out.health["detail"].append("simulated feed loss")
            break_i += 1
        if in_break_until is not None and t_ns >= in_break_until:
            in_break_until = None
            emit(book_rows(), True)
            last_rows = []
            out.health["ts_local"].append(t_ns + int(cfg.latency_ms * 1e6))
            out.health["event"].append("resynced")
            out.health["detail"].append("after disconnect")
            continue
        u = rng.random() * (total + extra_rate)
        if u >= total:
            if in_break_until is not None:
                continue
            u -= total
            if u < cfg.resnapshot_rate:
                emit(book_rows(), True)
                last_rows = []
            elif u < cfg.resnapshot_rate + cfg.duplicate_rate:
                if last_rows:
                    emit(last_rows, False)
            else:
                c = int(rng.integers(ncol))
                side = "ask" if col_level[c] > 0 else "bid"
                emit([(side, col_price(c, ref), int(q[c]))], False)
            continue
        j = int(np.searchsorted(np.cumsum(lam), u, side="right"))
        j = min(j, 3 * ncol - 1)
        kind, c = divmod(j, ncol)
        i = col_level[c]
        side = "ask" if i > 0 else "bid"
        book = asks if i > 0 else bids
        px = col_price(c, ref)
        before = int(q[c])
        size = _geometric(rng, aes[abs(i)])
        if kind > 0:
            size = min(size, before)
            if size == 0:
                continue
        after = before + size if kind == 0 else before - size
        if after:
            book[px] = after
        else:
            book.pop(px, None)
        q[c] = after
        new_ref = update_ref()
        emitting = in_break_until is None
        if emitting:
            rows = [(side, px, after)]
            prev_ref, ref = ref, new_ref
            mid = emit(rows, False)
            ref = prev_ref
            last_rows = rows
            truth["msg_id"].append(mid)
            truth["ts"].append(t_ns)
            truth["limit"].append(i)
            truth["side"].append(side)
            truth["type"].append(TYPES[kind])
            truth["size_lots"].append(size)
            truth["q_before"].append(before)
            if kind == 2:
                trade_no += 1
                jitter = int(rng.uniform(-cfg.trade_jitter_ms, cfg.trade_jitter_ms) * 1e6)
                out.trades["ts_exchange"].append(t_ns + jitter)
                out.trades["price"].append(round(px * cfg.tick, 10))
                out.trades["size"].append(round(size * cfg.lot, 10))
                out.trades["side"].append("buy" if side == "ask" else "sell")
                out.trades["trade_id"].append(str(trade_no))
        relabel = new_ref != ref
        ref = new_ref
        if abs(i) == 1 and after == 0 and rng.random() < cfg.theta:
            direction = 1 if i > 0 else -1
            moved = ref + 2 * direction
            if rng.random() < cfg.theta_reinit:
                draw_book(moved)
                ref = update_ref()
                relabel = True
                t_ns += 1
                if emitting:
                    emit(book_rows(), True)
                    last_rows = []
            else:
                far = (moved + direction * (2 * k - 1)) // 2
                outer = asks if direction > 0 else bids
                beyond = level_index("ask" if direction > 0 else "bid", far, ref)
                lots = _draw_queue_lots(rng, pis[k], aes[k], at_least_one=False)
                if beyond is not None and abs(beyond) > k and lots != outer.get(far, 0):
                    if lots:
                        outer[far] = lots
                    else:
                        outer.pop(far, None)
                    t_ns += 1
                    if emitting:
                        emit([("ask" if direction > 0 else "bid", far, lots)], False)
                        last_rows = []
        if relabel:
            q = sizes(ref)
    l2, trades, health = out.frames()
    truth_df = pl.DataFrame(truth, schema={"msg_id": pl.Int64, "ts": pl.Int64, "limit": pl.Int32,
                                           "side": pl.String, "type": pl.String,
                                           "size_lots": pl.Int64, "q_before": pl.Int64})
    pref = pl.DataFrame({"msg_id": pref_ids, "ref_half": pref_val},
                        schema={"msg_id": pl.Int64, "ref_half": pl.Int64})
    return L2Sim(l2, trades, health, truth_df, pref, cfg)
