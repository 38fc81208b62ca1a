"""Reference-price rule and shortened book (queue-reactive spec §3.3, §3.4, validation D)."""

from __future__ import annotations

import pytest

from core.book import OrderBook
from core.refprice import (
    CrossedBook,
    RefPriceTracker,
    ShortBook,
    level_index,
    level_price_half,
    ref_half_series,
    ref_half_ticks,
    short_book,
    short_book_from_levels,
    short_book_from_order_book,
    to_ticks,
)

# -- D: the deterministic rule, in half ticks -------------------------------------------------


def test_odd_spread_gives_the_mid() -> None:
    # bid 100, ask 101 ticks: mid 100.5 ticks = 201 half ticks, whatever came before
    assert ref_half_ticks(100, 101, None) == 201
    assert ref_half_ticks(100, 101, 195) == 201
    assert ref_half_ticks(100, 103, 250) == 203


def test_even_spread_after_previous_below_gives_mid_minus_half() -> None:
    # bid 100, ask 102: mid 101 ticks = 202 half ticks; previous 199 is below -> 201
    assert ref_half_ticks(100, 102, 199) == 201
    assert ref_half_ticks(100, 102, 201) == 201


def test_even_spread_after_previous_above_gives_mid_plus_half() -> None:
    assert ref_half_ticks(100, 102, 205) == 203
    assert ref_half_ticks(100, 102, 203) == 203


def test_startup_waits_for_an_odd_spread() -> None:
    assert ref_half_ticks(100, 102, None) is None
    series = ref_half_series([100, 100, 101, 101], [102, 104, 102, 103])
    assert series == [None, None, 203, 203]  # third state has spread 1; fourth is even -> stays


def test_crossed_or_locked_books_are_rejected() -> None:
    with pytest.raises(CrossedBook):
        ref_half_ticks(100, 100, 199)  # locked
    with pytest.raises(CrossedBook):
        ref_half_ticks(101, 100, 199)  # crossed
    # in a series the rejected state keeps the previous reference
    assert ref_half_series([100, 101, 100], [101, 101, 102]) == [201, 201, 201]


def test_tracker_counts_rejections_and_keeps_state() -> None:
    tr = RefPriceTracker(tick=0.01)
    assert tr.update(100, 102) is None
    assert tr.update(100, 101) == 201
    assert tr.update(101, 101) == 201
    assert tr.update(102, 101) == 201
    assert tr.update(None, 101) == 201
    assert (tr.crossed, tr.one_sided) == (2, 1)
    assert tr.update(101, 103) == 203  # even, previous 201 below mid 204 -> 203
    assert tr.ref_price == pytest.approx(2.03 / 2)


def test_every_reference_is_odd_and_strictly_inside_the_spread() -> None:
    prev: int | None = 201
    for b in range(90, 110):
        for a in range(b + 1, b + 8):
            p = ref_half_ticks(b, a, prev)
            assert p is not None
            assert p % 2 == 1
            assert 2 * b < p < 2 * a
            prev = p


# -- level indices and the shortened book ------------------------------------------------------


def test_level_index_and_price_are_inverse() -> None:
    p = 201  # p_ref = 100.5 ticks
    assert level_index("ask", 101, p) == 1
    assert level_index("ask", 103, p) == 3
    assert level_index("bid", 100, p) == -1
    assert level_index("bid", 98, p) == -3
    assert level_index("ask", 100, p) is None  # ask at or below p_ref
    assert level_index("bid", 101, p) is None  # bid at or above p_ref
    for i in [*range(-5, 0), *range(1, 6)]:
        x = level_price_half(p, i) // 2
        assert level_index("ask" if i > 0 else "bid", x, p) == i
    with pytest.raises(ValueError, match="side"):
        level_index("buy", 100, p)


def test_queue_prices_are_half_a_tick_plus_whole_ticks_from_pref() -> None:
    sb = ShortBook(ref_half=201, tick=0.5, bids=(1.0, 2.0), asks=(3.0, 4.0))
    assert sb.ref_price == pytest.approx(50.25)
    assert sb.level_price(1) == pytest.approx(50.25 + 0.25)
    assert sb.level_price(2) == pytest.approx(50.25 + 0.75)
    assert sb.level_price(-1) == pytest.approx(50.25 - 0.25)
    assert sb.levels() == [-2, -1, 1, 2]
    assert sb.as_dict() == {-2: 2.0, -1: 1.0, 1: 3.0, 2: 4.0}


def test_short_book_with_empty_best_queue() -> None:
    # bid 100 ticks, ask 102 ticks, previous reference below -> P = 201: Q+1 (101) is empty
    sb = short_book(201, {100: 5.0, 98: 2.0}, {102: 7.0, 104: 1.0}, 3, 0.01)
    assert sb.asks == (0.0, 7.0, 0.0)
    assert sb.bids == (5.0, 0.0, 2.0)


def test_from_order_book_and_from_levels_agree() -> None:
    tick = 0.01
    book = OrderBook()
    bids = [(18.40, 5.0), (18.39, 1.5), (18.37, 2.0), (18.30, 9.0)]
    asks = [(18.42, 3.0), (18.43, 4.0), (18.46, 1.0)]
    book.replace(bids, asks)
    # spread 2 ticks: no reference without history
    assert short_book_from_order_book(book, tick, 3) is None
    prev = 2 * 1840 + 1  # previous reference 18.405: below the mid 18.41
    sb = short_book_from_order_book(book, tick, 3, prev_half=prev)
    assert sb is not None
    assert sb.ref_half == 3681
    assert sb.ref_price == pytest.approx(18.405)
    assert sb.bids == (5.0, 1.5, 0.0)
    assert sb.asks == (0.0, 3.0, 4.0)
    sb2 = short_book_from_levels([p for p, _ in bids], [s for _, s in bids],
                                 [p for p, _ in asks], [s for _, s in asks], tick, 3,
                                 prev_half=prev)
    assert sb2 == sb


def test_from_levels_rejects_crossed_and_one_sided() -> None:
    with pytest.raises(CrossedBook):
        short_book_from_levels([10.0], [1.0], [10.0], [1.0], 0.5, 2, prev_half=41)
    assert short_book_from_levels([], [], [10.0], [1.0], 0.5, 2) is None


def test_tracker_from_book() -> None:
    tr = RefPriceTracker(tick=0.5)
    book = OrderBook()
    book.replace([(100.0, 1.0)], [(100.5, 2.0), (101.5, 3.0)])
    sb = tr.update_from_book(book, 2)
    assert sb is not None
    assert sb.ref_half == 401
    assert sb.asks == (2.0, 0.0)
    book.apply([], [(100.5, 0.0)])  # best ask leaves: spread 3 ticks -> mid 100.75
    sb = tr.update_from_book(book, 2)
    assert sb is not None
    assert sb.ref_price == pytest.approx(100.75)
    assert sb.asks == (0.0, 3.0)
    book.apply([(101.5, 1.0)], [])  # crossed
    assert tr.update_from_book(book, 2) is None
    assert tr.crossed == 1
    assert tr.ref_half == 403


def test_to_ticks_absorbs_float_noise() -> None:
    assert to_ticks(438.51, 0.01) == 43851
    assert to_ticks(0.3, 0.1) == 3
    with pytest.raises(ValueError, match="positive"):
        to_ticks(1.0, 0.0)
