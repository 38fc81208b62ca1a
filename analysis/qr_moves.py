"""Reference-price moves of the queue-reactive model (Model III) measured on a replayed book.

Huang, Lehalle & Rosenbaum (2015) let p_ref move one tick in the direction of the mid with
probability θ when the mid moves because a best queue Q_{±1} emptied; after a move the book is
re-drawn from its invariant law with probability θ^reinit (an exogenous price change), and
otherwise the queues keep their prices (a shift by one position). This module estimates both from
the events of :mod:`analysis.qr_replay`:

* **θ̂**: each depletion of Q_{±1} (a decrease that leaves it empty) is followed either by a p_ref
  move in the direction the mid moved (ask emptied: up; bid emptied: down) or by an insertion that
  refills the emptied queue first, or by a p_ref move the other way (the price did not continue).
  θ̂ = moves / (moves + stays). The end of the live state or of the data first leaves the
  depletion unresolved (not counted).
* **θ̂^reinit**: a move counts as a re-initialisation when the message that moved p_ref changed at
  least half of the queues (same side and price) that are in the K-queue window both before and
  after the move; a shift leaves them as they were. A venue that spreads a re-drawing of the book
  over several messages makes this a lower bound.

Pure numpy on the replay's arrays; no I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from analysis.qr_replay import L, ReplayResult

REINIT_CHANGED_SHARE: Final = 0.5


@dataclass(frozen=True)
class MoveStats:
    depletions: int
    moves: int
    stays: int
    unresolved: int
    reinits: int

    @property
    def theta(self) -> float | None:
        n = self.moves + self.stays
        return self.moves / n if n else None

    @property
    def theta_se(self) -> float | None:
        n = self.moves + self.stays
        th = self.theta
        return math.sqrt(th * (1 - th) / n) if th is not None and n else None

    @property
    def theta_reinit(self) -> float | None:
        return self.reinits / self.moves if self.moves else None

    @property
    def theta_reinit_se(self) -> float | None:
        th = self.theta_reinit
        return math.sqrt(th * (1 - th) / self.moves) if th is not None else None

    def as_dict(self) -> dict[str, float | int | None]:
        return {"depletions": self.depletions, "moves": self.moves, "stays": self.stays,
                "unresolved": self.unresolved, "reinits": self.reinits, "theta": self.theta,
                "theta_se": self.theta_se, "theta_reinit": self.theta_reinit,
                "theta_reinit_se": self.theta_reinit_se}


def _window(ref: int, raw: npt.NDArray[np.int64], k: int) -> dict[tuple[bool, int], int]:
    """(is_ask, price in ticks) -> raw lots of the 2K queues around the half-tick P."""
    out = {}
    for c in range(2 * k):
        i = c - k if c < k else c - k + 1
        px = (ref + 2 * i - 1) // 2 if i > 0 else (ref + 2 * i + 1) // 2
        out[(i > 0, px)] = int(raw[c])
    return out


def changed_share(res: ReplayResult, raw: npt.NDArray[np.int64], m: int) -> float | None:
    """Share of the queues in both windows (before and after message ``m``) whose size ``m``
    changed; None when there is no live state before ``m``."""
    msgs = res.messages
    if m == 0 or msgs.ref[m - 1] < 0 or msgs.ref[m] < 0:
        return None
    before = _window(int(msgs.ref[m - 1]), raw[m - 1], res.k)
    after = _window(int(msgs.ref[m]), raw[m], res.k)
    common = before.keys() & after.keys()
    if not common:
        return None
    return sum(before[q] != after[q] for q in common) / len(common)


def move_stats(res: ReplayResult, raw: npt.NDArray[np.int64]) -> MoveStats:
    """θ̂ and θ̂^reinit counts (module docstring); ``raw`` is the state matrix of
    :func:`analysis.qr_tables.state_matrix`."""
    ev, rc, k = res.events, res.ref_changes, res.k
    msg = np.asarray(ev.msg, dtype=np.int64)
    col = np.asarray(ev.col, dtype=np.int64)
    kind = np.asarray(ev.type, dtype=np.int64)
    after = np.asarray(ev.after, dtype=np.int64)
    best = (col == k - 1) | (col == k)
    dep = np.flatnonzero(best & (kind != L) & (after == 0))
    ch_msg = np.asarray(rc.msg, dtype=np.int64)
    ch_dir = np.asarray(rc.dir, dtype=np.int64)
    not_live = np.flatnonzero(~res.messages.live)
    refill_pos = {c: np.flatnonzero((col == c) & (kind == L)) for c in (k - 1, k)}
    moves = stays = unresolved = reinits = 0
    for e in dep.tolist():
        m, c = int(msg[e]), int(col[e])
        want = 1 if c == k else -1
        j = int(np.searchsorted(ch_msg, m, side="left"))
        r = int(ch_msg[j]) if j < ch_msg.size else None
        pos = refill_pos[c]
        p = int(np.searchsorted(pos, e, side="right"))
        f = int(msg[pos[p]]) if p < pos.size else None
        q = int(np.searchsorted(not_live, m, side="left"))
        dead = int(not_live[q]) if q < not_live.size else None
        first = min(x for x in (r, f, dead, 1 << 62) if x is not None)
        if f is not None and f == first and (r is None or f < r):
            stays += 1  # refilled before any move
        elif r is not None and r == first and (dead is None or r < dead):
            if ch_dir[j] != want:
                stays += 1  # the price moved back the other way
                continue
            moves += 1
            share = changed_share(res, raw, r)
            reinits += share is not None and share >= REINIT_CHANGED_SHARE
        else:
            unresolved += 1
    return MoveStats(int(dep.size), moves, stays, unresolved, reinits)
