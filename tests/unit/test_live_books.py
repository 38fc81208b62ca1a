"""The live book mirror and its reference-price view, fed hand-made l2 and health events."""

from __future__ import annotations

from core.live_books import LiveBooks
from core.protocol import Instrument
from core.schema import BookUpdate, Health


def l2(n: int, bids: tuple, asks: tuple, snapshot: bool = False) -> BookUpdate:
    return BookUpdate(exchange="coinbase", ts_local=n, symbol="ETC-USD", ts_exchange=None,
                      seq=n, msg_id=n, is_snapshot=snapshot, bids=bids, asks=asks)


def test_short_book_follows_updates_with_the_venue_tick() -> None:
    inst = {"coinbase": {"ETC-USD": Instrument(symbol="ETC-USD", native="ETC-USD",
                                               tick_size=0.01)}}
    live = LiveBooks(instruments=inst)
    live.apply([l2(1, ((20.00, 5.0), (19.99, 3.0)), ((20.03, 2.0), (20.05, 1.0)), True)])
    view = live.short_book("coinbase", "ETC-USD", 3)  # spread 3 ticks (odd): p_ref = mid
    assert view is not None and view.ref_price == 20.015
    assert view.bids == (0.0, 5.0, 3.0)  # Q-1 at 20.01 empty, Q-2 at 20.00, Q-3 at 19.99
    assert view.asks == (0.0, 2.0, 0.0)  # Q+1 at 20.02 empty, Q+2 at 20.03, Q+3 at 20.04
    # a bid at 20.01 makes the spread 2 ticks (even): the mid 20.02 is a legal price, so p_ref
    # is mid -/+ half a tick, whichever is nearer the previous 20.015: it stays at 20.015
    live.apply([l2(2, ((20.01, 1.0),), ())])
    view = live.short_book("coinbase", "ETC-USD", 2)
    assert view is not None and view.ref_half == 4003
    assert view.bids == (1.0, 5.0) and view.asks == (0.0, 2.0)
    # the ask at 20.03 leaves, 20.05 is best: spread 4 ticks, mid 20.03, nearer candidate 20.025
    live.apply([l2(3, (), ((20.03, 0.0),))])
    view = live.short_book("coinbase", "ETC-USD", 2)
    assert view is not None and view.ref_half == 4005
    assert view.bids == (0.0, 1.0) and view.asks == (0.0, 0.0)


def test_books_are_dropped_on_breaks_until_the_next_snapshot() -> None:
    live = LiveBooks(ticks={("coinbase", "ETC-USD"): 0.01})
    live.apply([l2(1, ((20.00, 5.0),), ((20.03, 2.0),), True)])
    live.apply([Health(exchange="coinbase", ts_local=2, symbol="ETC-USD", event="gap")])
    assert live.short_book("coinbase", "ETC-USD", 2) is None
    live.apply([l2(3, ((20.01, 1.0),), ())])  # an update without a snapshot is not a book
    assert live.short_book("coinbase", "ETC-USD", 2) is None
    live.apply([l2(4, ((20.00, 5.0),), ((20.03, 2.0),), True)])
    assert live.short_book("coinbase", "ETC-USD", 2) is not None
    live.apply([Health(exchange="coinbase", ts_local=5, symbol=None, event="disconnected")])
    assert live.books == {}
