"""The market simulator and the venue views: seeded and deterministic, books that stay sane,
prices coherent across venues with occasional dislocations, exact listings, exact depth views."""

from __future__ import annotations

import random
import statistics
from decimal import Decimal

import pytest

from core.sim.market import (
    BookChange,
    Listing,
    Market,
    Script,
    Step,
    TradePrint,
    TrueBook,
    load_text,
)
from core.sim.simulator import SimParams, reference, simulate
from core.sim.speaker import DepthView, load_speakers

S = 1_000_000_000
T0 = 1_786_000_000 * S
VENUES = ("bybit", "htx", "bitget", "gateio")


def market(seed: int = 1, symbols: tuple[str, ...] = ("BTC-USDT",), **params: float) -> Market:
    speakers = load_speakers()
    m = Market([speakers.get(v).listing(s, reference(s)[0]) for v in VENUES for s in symbols])
    simulate(m, SimParams(seed=seed, **params), T0)  # type: ignore[arg-type]
    return m


def mid(m: Market, venue: str, symbol: str = "BTC-USDT") -> float:
    book, listing = m.book(venue, symbol), m.listing(venue, symbol)
    bb, ba = book.best_bid(), book.best_ask()
    assert bb is not None and ba is not None
    return float(listing.price(bb) + listing.price(ba)) / 2


def test_the_same_seed_gives_the_same_market_whatever_the_steps() -> None:
    a, b, c = market(7), market(7), market(8)
    one_go = list(a.advance(T0 + 30 * S))
    in_steps = [e for t in range(1, 301) for e in b.advance(T0 + t * S // 10)]
    assert one_go == in_steps and len(one_go) > 1000
    assert list(c.advance(T0 + 30 * S)) != one_go


def test_a_late_wake_up_fires_one_process_at_a_time() -> None:
    """Venues render an event as a diff against the book: when a late wake-up catches up on
    several firings, each event must be seen while the book is as that firing left it."""
    speakers = load_speakers()
    m = Market([speakers.get("bybit").listing("BTC-USDT", reference("BTC-USDT")[0])])
    load_text(m, "bybit", "BTC-USDT", [("100.0", "1")], [("101.0", "2")])
    script = Script("bybit", [Step("BTC-USDT", bids=[("100.0", "1.5")]),
                              Step("BTC-USDT", bids=[("100.0", "2.5")])],
                    start_ns=T0, interval_s=0.05)
    m.add_process(script)
    listing, book = m.listing("bybit", "BTC-USDT"), m.book("bybit", "BTC-USDT")
    seen = []
    while (fired := m.fire_next(T0 + S)) is not None:  # both steps are due: one late wake-up
        seen += [(e.ts_ns, float(listing.size(book.bids[listing.ticks("100.0")]))) for e in fired]
    assert seen == [(T0 + S // 20, 1.5), (T0 + S // 10, 2.5)]


def test_books_stay_uncrossed_deep_and_on_their_grid() -> None:
    m = market(3, ("BTC-USDT", "ETH-USDT"))
    for t in range(1, 121):
        list(m.advance(T0 + t * S))
        for key, book in m.books.items():
            assert not book.is_crossed(), key
            assert book.depth("bid") >= 20 and book.depth("ask") >= 20, key
            assert all(q > 0 for q in (*book.bids.values(), *book.asks.values())), key


def test_event_rate_and_trade_sizes_look_like_a_liquid_perpetual() -> None:
    m = market(5, events_per_s=20.0)
    events = list(m.advance(T0 + 300 * S))
    changes = [e for e in events if isinstance(e, BookChange)]
    trades = [e for e in events if isinstance(e, TradePrint)]
    per_venue_s = len(changes) / len(VENUES) / 300
    assert 15 < per_venue_s <= 20.5  # Poisson events; a few change nothing
    sizes = [float(m.listing(t.venue, t.symbol).size(t.lots)) for t in trades]
    assert 0.05 < statistics.median(sizes) < 1.0  # BTC
    assert {t.taker for t in trades} == {"buy", "sell"}


def test_prices_are_coherent_across_venues_with_occasional_dislocations() -> None:
    m = market(11, events_per_s=5.0)
    spreads_bps = []
    for t in range(1, 1801):  # half an hour, once a second
        list(m.advance(T0 + t * S))
        mids = [mid(m, v) for v in VENUES]
        spreads_bps.append((max(mids) / min(mids) - 1) * 1e4)
    assert statistics.median(spreads_bps) < 1.5  # mostly a tick or two apart
    assert max(spreads_bps) < 30
    assert sum(s > 3 for s in spreads_bps) >= 5  # ... and now and then a dislocation
    start, end = mid(m, "bybit"), reference("BTC-USDT")[0]
    assert abs(start / end - 1) < 0.05  # the fair price wanders, not runs away


def test_listings_convert_exactly_and_refuse_off_grid_values() -> None:
    gate = Listing("gateio", "BTC-USDT", Decimal("0.1"), Decimal("0.0001"), Decimal("0.0001"))
    assert gate.ticks("63700.1") == 637001 and gate.price_text(637001) == "63700.1"
    assert gate.lots("0.0025") == 25 and gate.contracts(25) == 25
    assert gate.lots_of_contracts(25) == 25
    bybit = Listing("bybit", "BTC-USDT", Decimal("0.10"), Decimal("0.001"))
    assert bybit.price_text(651142) == "65114.20" and bybit.size_text(6054) == "6.054"
    with pytest.raises(ValueError, match="not a multiple of the tick"):
        gate.ticks("63700.05")
    with pytest.raises(ValueError, match="not a multiple of the lot"):
        bybit.lots("0.0005")


@pytest.mark.parametrize("depth", [None, 1, 5, 20])
def test_a_depth_view_told_by_its_diffs_is_the_book_window(depth: int | None) -> None:
    rng = random.Random(depth or 0)
    book = TrueBook()
    for i in range(30):
        book.set("bid", 1000 - i, rng.randint(1, 9))
        book.set("ask", 1001 + i, rng.randint(1, 9))
    view = DepthView(depth)
    bids, asks = view.snapshot(book)
    client = {"bid": dict(bids), "ask": dict(asks)}
    for _ in range(2000):
        side = rng.choice(("bid", "ask"))
        best = book.best_bid() if side == "bid" else book.best_ask()
        assert best is not None
        price = best + (-1 if side == "bid" else 1) * rng.randint(-1, 25)
        other = book.best_ask() if side == "bid" else book.best_bid()
        if other is not None and (price >= other if side == "bid" else price <= other):
            continue
        book.set(side, price, rng.choice((0, 0, rng.randint(1, 9))))  # type: ignore[arg-type]
        for s, changes in zip(("bid", "ask"), view.diff(book), strict=True):
            for p, q in changes:
                if q:
                    client[s][p] = q
                else:
                    client[s].pop(p, None)
        assert client["bid"] == dict(book.top("bid", depth))
        assert client["ask"] == dict(book.top("ask", depth))
