"""Replay of hand-made L2 streams: every event, cut and exposure second is known in advance."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from analysis.qr_replay import ReplayInput, ReplayResult, TradesInput, replay
from analysis.qr_tables import build, exposure_frames, quantize, state_matrix

S = 1_000_000_000
MS = 1_000_000

# (t seconds, msg_id, snapshot, [(side, price, size)])
STREAM = [
    (0, 1, True, [("bid", 100, 5), ("bid", 99, 3), ("ask", 101, 4), ("ask", 102, 6),
                  ("ask", 103, 2)]),
    (1, 2, False, [("ask", 101, 7)]),  # L at +1: 4 -> 7
    (2, 3, False, [("bid", 100, 2)]),  # decrease 3 at -1; a 1-lot trade -> M 1 then C 2
    (3, 4, False, [("bid", 99, 3)]),  # Δ = 0
    (4, 5, False, [("ask", 101, 0)]),  # C 7 at +1; spread 2, p_ref stays 100.5
    (5, 6, False, [("ask", 102, 0)]),  # C 6 at +2; spread 3 -> p_ref 101.5 (depletion, up)
    (6, 7, False, [("bid", 101, 4)]),  # L at -1 (new labels): 0 -> 4; spread 2, stays
    (7, 8, False, [("ask", 103, 1)]),  # after a disconnect at 6.5 s: ignored
    (8, 9, True, [("bid", 101, 4), ("ask", 102, 1)]),  # resync: p_ref 101.5
    (10, 10, False, [("ask", 102, 3)]),  # L at +1: 1 -> 3
]
BREAKS = [int(6.5 * S)]
TRADES = [(int(2.01 * S), 100, 1, False)]  # (t, price, size, maker is ask)


def _input(stream: list[tuple[float, int, bool, list[tuple[str, int, int]]]],
           breaks: list[int]) -> ReplayInput:
    rows = [(int(t * S), mid, snap, side == "ask", px, sz)
            for t, mid, snap, levels in stream for side, px, sz in levels]
    a = np.array(rows, dtype=np.int64)
    return ReplayInput(order=a[:, 0], clock=a[:, 0], msg_id=a[:, 1], is_ask=a[:, 3] == 1,
                       price=a[:, 4], size=a[:, 5], is_snapshot=a[:, 2] == 1,
                       breaks=np.array(breaks, dtype=np.int64))


def _trades() -> TradesInput:
    t = np.array(TRADES, dtype=np.int64)
    return TradesInput(clock=t[:, 0], price=t[:, 1], size=t[:, 2], maker_is_ask=t[:, 3] == 1)


def _events(res: ReplayResult) -> list[tuple[int, int, str, int, int, int, float]]:
    out = []
    for m, c, ty, sz, qb, qa, dt in zip(res.events.msg, res.events.col, res.events.type,
                                        res.events.size, res.events.before,
                                        res.events.after, res.events.dt, strict=True):
        out.append((int(res.messages.msg_id[m]), res.level_of(c), "LCMD"[ty], sz, qb, qa, dt / S))
    return out


@pytest.fixture
def res() -> ReplayResult:
    return replay(_input(STREAM, BREAKS), 2, _trades(),
                  window_ns=(100 * MS, 100 * MS))


def test_events_are_exactly_the_expected_ones(res: ReplayResult) -> None:
    assert _events(res) == [
        (2, 1, "L", 3, 4, 7, 1.0),
        (3, -1, "M", 1, 5, 4, 2.0),
        (3, -1, "C", 2, 4, 2, 0.0),
        (5, 1, "C", 7, 7, 0, 3.0),
        (6, 2, "C", 6, 6, 0, 5.0),
        (7, -1, "L", 4, 0, 4, 1.0),
        (10, 1, "L", 2, 1, 3, 2.0),
    ]
    assert res.counts["zero_delta"] == 1
    assert res.counts["untrusted_rows"] == 1
    assert res.counts["breaks"] == 1
    assert res.counts["snapshots"] == 2


def test_without_trades_decreases_stay_undivided() -> None:
    res = replay(_input(STREAM, BREAKS), 2, None)
    ev = _events(res)
    assert [e[2] for e in ev] == ["L", "D", "D", "D", "L", "L"]
    assert ev[1] == (3, -1, "D", 3, 5, 2, 2.0)


def test_reference_price_and_its_change(res: ReplayResult) -> None:
    assert res.messages.ref.tolist() == [201, 201, 201, 201, 201, 203, 203, -1, 203, 203]
    assert res.messages.live.tolist() == [True] * 7 + [False] + [True] * 2
    assert res.ref_changes.dir == [1]
    assert res.ref_changes.trigger == ["depletion"]
    assert (res.ref_changes.spread_before, res.ref_changes.spread_after) == ([2], [3])
    assert res.messages.msg_id[res.ref_changes.msg[0]] == 6


def test_cuts_and_exposure(res: ReplayResult) -> None:
    cuts = sorted((int(res.messages.msg_id[m]), res.level_of(c), q, dt / S)
                  for m, c, q, dt in zip(res.cuts.msg, res.cuts.col, res.cuts.q, res.cuts.dt,
                                         strict=True))
    assert cuts == [
        (6, -2, 3, 5.0), (6, -1, 2, 3.0), (6, 1, 0, 1.0),  # p_ref change at 5 s
        (7, -2, 2, 1.0), (7, 1, 0, 1.0), (7, 2, 2, 1.0),  # disconnect after 6 s
        (10, -2, 0, 2.0), (10, -1, 4, 2.0), (10, 2, 0, 2.0),  # end of data
    ]
    # live intervals: 0 -> 6 s and 8 -> 10 s
    assert res.messages.interval_live.tolist() == [True] * 6 + [False, False, True, False]
    raw = state_matrix(res)
    n = quantize(raw, np.ones(4))
    total, _ = exposure_frames(res, n, 3600 * S)
    per_queue = total.group_by("limit", "side").agg(pl.col("T").sum())
    assert per_queue["T"].to_list() == pytest.approx([8.0] * 4)
    # the +1 queue: 4 lots for 1 s, 7 for 3 s, then (new labels) 0 for 2 s, 1 for 2 s
    ask1 = dict(total.filter(pl.col("limit") == 1, pl.col("side") == "ask")
                .select("n", "T").iter_rows())
    assert ask1 == pytest.approx({0: 2.0, 1: 2.0, 4: 1.0, 7: 3.0})


def test_tables_from_the_hand_made_stream(res: ReplayResult) -> None:
    tables = build(res, lot=1.0, tick=1.0, aes_injected={1: 1.0, 2: 1.0}, n_boot=10)
    # exposure from the dense state equals Σ Δt of the seed-compatible table
    iv = tables.intervals.group_by("limit", "side", "n").agg(pl.col("dt").sum())
    j = tables.exposure.join(iv, on=["limit", "side", "n"], how="full", coalesce=True)
    np.testing.assert_allclose(j["T"].fill_null(0).to_numpy(), j["dt"].fill_null(0).to_numpy())
    # λ̂ of L at limit 1, ask side, n = 7 lots: no event in 3 s; at n = 4: one L in 1 s
    cell = tables.intensities.filter(pl.col("limit") == 1, pl.col("side") == "ask",
                                     pl.col("type") == "L")
    got = {n: (nn, t) for n, nn, t in cell.select("n", "N", "T").iter_rows()}
    assert got[4] == (1, pytest.approx(1.0))
    assert got[7] == (0, pytest.approx(3.0))
    assert tables.pref["p_ref"].to_list() == [100.5, 101.5, 101.5]  # the resync restarts it
    assert tables.pref_changes["trigger"].to_list() == ["depletion"]
    assert tables.events.height == 7
    assert tables.book_short.height == 9
    assert tables.book_short.row(0, named=True)["q_p1"] == 4.0


def test_startup_waits_for_an_odd_spread_and_cross_ref_is_not_an_event() -> None:
    stream = [
        (0, 1, True, [("bid", 100, 5), ("ask", 102, 5)]),  # spread 2: no p_ref yet
        (1, 2, False, [("ask", 102, 4)]),  # not live: no event
        (2, 3, False, [("ask", 101, 2)]),  # spread 1: p_ref 100.5, live from here
        (3, 4, False, [("ask", 101, 0)]),  # C 2 at +1; spread 2, p_ref stays
        (4, 5, False, [("bid", 101, 3)]),  # bid at p_ref + ½: cross_ref; p_ref -> 101.5
        (5, 6, False, [("bid", 101, 1)]),  # D 2 at -1 under the new p_ref
    ]
    res = replay(_input(stream, []), 2, None)
    assert res.messages.ref.tolist() == [-1, -1, 201, 201, 203, 203]
    assert _events(res) == [(4, 1, "D", 2, 2, 0, 1.0), (6, -1, "D", 2, 3, 1, 1.0)]
    assert res.counts["cross_ref"] == 1
    assert (res.cross_refs.price, res.cross_refs.delta) == ([101], [3])
    assert res.ref_changes.trigger == ["insertion"]


def test_crossed_book_is_not_live_and_snapshot_moves_are_recorded() -> None:
    stream = [
        (0, 1, True, [("bid", 100, 5), ("ask", 101, 5)]),
        (1, 2, False, [("bid", 101, 1)]),  # bid at p_ref + ½ (cross_ref) locks the book
        (2, 3, False, [("bid", 101, 0)]),  # back to 100 / 101: live again (no event counted)
        (3, 4, True, [("bid", 104, 5), ("ask", 105, 5)]),  # re-snapshot of a live book moves p_ref
        (4, 5, False, [("ask", 105, 6)]),
    ]
    res = replay(_input(stream, []), 2, None)
    assert res.counts["crossed"] == 1
    assert res.messages.live.tolist() == [True, False, True, True, True]
    assert res.counts["cross_ref"] == 1
    assert _events(res) == [(5, 1, "L", 1, 5, 6, 1.0)]
    assert res.messages.interval_live.tolist() == [True, False, True, True, False]
    assert res.ref_changes.trigger == ["snapshot"]
    assert res.ref_changes.dir == [1]
