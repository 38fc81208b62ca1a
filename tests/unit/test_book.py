"""The order book and keeper against a naive reference book, on random snapshot + delta streams."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.book import BookKeeper, OrderBook
from core.codec import BadValue
from core.schema import BookUpdate, Health, TopOfBook

PRICES = st.integers(min_value=1, max_value=60).map(lambda t: t * 0.5)
SIZES = st.one_of(st.just(0.0), st.integers(min_value=1, max_value=50).map(float))
LEVELS = st.lists(st.tuples(PRICES, SIZES), max_size=25)


class NaiveBook:
    """The obvious implementation: dicts, and a full scan for the best price."""

    def __init__(self) -> None:
        self.bids: dict[float, float] = {}
        self.asks: dict[float, float] = {}

    def replace(self, bids: list, asks: list) -> None:
        self.bids = {p: s for p, s in bids if s > 0}
        self.asks = {p: s for p, s in asks if s > 0}

    def apply(self, bids: list, asks: list) -> None:
        for side, levels in ((self.bids, bids), (self.asks, asks)):
            for p, s in levels:
                if s > 0:
                    side[p] = s
                else:
                    side.pop(p, None)

    def best_bid(self) -> tuple[float, float] | None:
        return (max(self.bids), self.bids[max(self.bids)]) if self.bids else None

    def best_ask(self) -> tuple[float, float] | None:
        return (min(self.asks), self.asks[min(self.asks)]) if self.asks else None


@settings(max_examples=300, deadline=None)
@given(snapshot=st.tuples(LEVELS, LEVELS), deltas=st.lists(st.tuples(LEVELS, LEVELS),
                                                           max_size=40))
def test_order_book_matches_naive_reference(snapshot: tuple, deltas: list) -> None:
    book, ref = OrderBook(), NaiveBook()
    book.replace(*snapshot)
    ref.replace(*snapshot)
    for bids, asks in [snapshot, *deltas]:
        if (bids, asks) is not snapshot:
            book.apply(bids, asks)
            ref.apply(bids, asks)
        assert book.bids == ref.bids and book.asks == ref.asks
        assert book.best_bid() == ref.best_bid()
        assert book.best_ask() == ref.best_ask()
        assert book.top_bids(5) == sorted(ref.bids.items(), reverse=True)[:5]
        assert book.top_asks(5) == sorted(ref.asks.items())[:5]
        assert len(book) == len(ref.bids) + len(ref.asks)


BID_LEVELS = st.lists(st.tuples(st.integers(1, 30).map(lambda t: t * 0.5), SIZES), max_size=12)
ASK_LEVELS = st.lists(st.tuples(st.integers(31, 60).map(lambda t: t * 0.5), SIZES), max_size=12)


@settings(max_examples=200, deadline=None)
@given(snapshot=st.tuples(BID_LEVELS, ASK_LEVELS),
       deltas=st.lists(st.tuples(BID_LEVELS, ASK_LEVELS), max_size=30),
       scale=st.sampled_from([None, (1.0, 100.0), (10.0, 1.0), (0.3, 1.0)]))
def test_keeper_delta_applies_like_the_naive_reference(snapshot: tuple, deltas: list,
                                                       scale: tuple[float, float] | None) -> None:
    """The keeper applies plain books in its own loop, and contract sizes with ``scale``: both
    must leave the book the naive reference has, and publish the levels as converted."""
    mul, div = scale or (1.0, 1.0)
    keeper = BookKeeper("x", publish_tob=False, publish_l2=True)
    keeper.snapshot("S", *snapshot, ts_local=1, ts_exchange=None, seq=None)
    ref = NaiveBook()
    ref.replace(*snapshot)
    for i, (bids, asks) in enumerate(deltas):
        events = keeper.delta("S", bids, asks, ts_local=2 + i, ts_exchange=None, seq=None,
                              scale=scale)
        want_bids = [(p, s * mul / div) for p, s in bids]
        want_asks = [(p, s * mul / div) for p, s in asks]
        ref.apply(want_bids, want_asks)
        book = keeper.book("S")
        assert book.bids == ref.bids and book.asks == ref.asks
        assert book.best_bid() == ref.best_bid() and book.best_ask() == ref.best_ask()
        assert book.top_bids(5) == sorted(ref.bids.items(), reverse=True)[:5]
        assert book.top_asks(5) == sorted(ref.asks.items())[:5]
        if bids or asks:
            (event,) = events
            assert isinstance(event, BookUpdate)
            assert event.bids == tuple(want_bids) and event.asks == tuple(want_asks)
        else:
            assert events == []


@settings(max_examples=200, deadline=None)
@given(
    mid=st.integers(min_value=20, max_value=40),
    steps=st.lists(st.tuples(st.booleans(), LEVELS, LEVELS, st.integers(0, 3)), max_size=40),
)
def test_keeper_never_publishes_crossed_or_out_of_sequence(mid: int, steps: list) -> None:
    """Random streams with random sequence jumps: every published top of book is uncrossed,
    equals the reference book's, and nothing is published between a break and a snapshot."""
    keeper = BookKeeper("x")
    ref = NaiveBook()
    bids0 = [(mid - 1.0, 1.0)]
    asks0 = [(mid + 1.0, 1.0)]
    keeper.snapshot("S", bids0, asks0, ts_local=0, ts_exchange=None, seq=0)
    ref.replace(bids0, asks0)
    seq, live = 0, True
    for i, (is_snapshot, bids, asks, jump) in enumerate(steps, start=1):
        if is_snapshot:
            seq += 1
            bids = [(p, s) for p, s in bids if p < mid]
            asks = [(p, s) for p, s in asks if p > mid]
            events = keeper.snapshot("S", bids, asks, ts_local=i, ts_exchange=None, seq=seq)
            ref.replace(bids, asks)
            live = True
        else:
            prev, seq = seq, seq + 1 + jump
            events = keeper.delta("S", bids, asks, ts_local=i, ts_exchange=None, seq=seq,
                                  prev_seq=seq - 1)
            if live:
                if jump:
                    live = False
                else:
                    ref.apply(bids, asks)
                    bb, ba = ref.best_bid(), ref.best_ask()
                    if bb and ba and bb[0] >= ba[0]:
                        live = False
            del prev
        published = [e for e in events if isinstance(e, BookUpdate | TopOfBook)]
        if not live:
            assert published == []
            assert [e.event for e in events if isinstance(e, Health)] in ([], ["gap"],
                                                                          ["crossed"])
            continue
        assert keeper.is_live("S")
        for e in published:
            if isinstance(e, TopOfBook):
                bb, ba = ref.best_bid(), ref.best_ask()
                assert (e.bid_px, e.bid_sz) == (bb if bb else (None, None))
                assert (e.ask_px, e.ask_sz) == (ba if ba else (None, None))
                if e.bid_px is not None and e.ask_px is not None:
                    assert e.bid_px < e.ask_px


def test_zero_size_delete_of_unknown_level_is_harmless() -> None:
    book = OrderBook()
    book.replace([(1.0, 1.0)], [(2.0, 1.0)])
    book.apply([(0.5, 0.0)], [(3.0, 0.0)])
    assert book.best_bid() == (1.0, 1.0) and book.best_ask() == (2.0, 1.0) and len(book) == 2


def test_wire_text_is_kept_per_level_for_checksums() -> None:
    book = OrderBook(keep_text=True)
    book.replace([(1.0, 1.0)], [(2.0, 1.0)], [("1.00", "1.0")], [("2.0", "1")])
    book.apply([(1.0, 0.0), (1.5, 2.0)], [], [("1.00", "0"), ("1.50", "2.00")], [])
    assert book.bid_text == {1.5: "1.50:2.00"}
    assert book.ask_text == {2.0: "2.0:1"}
    assert book.top_text(5) == (["1.50:2.00"], ["2.0:1"])


def test_msg_ids_increase_per_symbol() -> None:
    keeper = BookKeeper("x")
    a = keeper.snapshot("A", [(1.0, 1.0)], [(2.0, 1.0)], ts_local=0, ts_exchange=None, seq=1)
    b = keeper.snapshot("B", [(1.0, 1.0)], [(2.0, 1.0)], ts_local=0, ts_exchange=None, seq=1)
    a2 = keeper.delta("A", [(1.0, 2.0)], [], ts_local=1, ts_exchange=None, seq=2, prev_seq=1)
    ids = [e.msg_id for e in a + b + a2 if isinstance(e, BookUpdate)]
    assert ids == [1, 1, 2]


def test_snapshot_deadlines_are_cached_and_follow_every_change() -> None:
    keeper = BookKeeper("x", snapshot_timeout_s=10)
    assert keeper.next_deadline() is None
    keeper.expect_snapshot("A", 100)
    keeper.expect_snapshot("B", 50)
    assert keeper.next_deadline() == 50 + 10 * 10**9
    keeper.snapshot("B", [(1.0, 1.0)], [(2.0, 1.0)], ts_local=60, ts_exchange=None, seq=1)
    assert keeper.next_deadline() == 100 + 10 * 10**9  # B's snapshot came
    keeper.forget("A")  # A's subscription was rejected
    assert keeper.next_deadline() is None
    keeper.expect_snapshot("A", 200)
    [late] = keeper.overdue(200 + 10 * 10**9)
    assert late.event == "no_snapshot" and keeper.take_resyncs() == ["A"]
    assert keeper.next_deadline() is None
    keeper.expect_snapshot("B", 300)  # a live book with a stale deadline must not linger
    assert keeper.overdue(300 + 10 * 10**9) == []
    assert keeper.next_deadline() is None


def test_a_scaled_update_that_would_overflow_is_refused_before_it_applies() -> None:
    book = OrderBook()
    book.apply_scaled([(10.0, 2.0)], [(11.0, 1.0)], 10.0, 1.0)
    with pytest.raises(BadValue):
        book.apply_scaled([(9.0, 1.0)], [(12.0, 1e308)], 10.0, 1.0)
    assert book.top_bids(5) == [(10.0, 20.0)] and book.top_asks(5) == [(11.0, 10.0)]
    # sizes that shrink never overflow: nothing to check
    book.apply_scaled([(9.0, 1e308)], [], 1.0, 100.0)
    assert book.top_bids(5)[-1] == (9.0, 1e306)
