"""Bus policies: byte-bounded lossless delivery with recorded drops, and keep-latest conflation."""

from __future__ import annotations

import pytest
import trio

from core.bus import EVENT_BYTES, LEVEL_BYTES, Bus, Policy, estimate_bytes
from core.schema import BookUpdate, Health, TopOfBook, Trade
from core.tables import table_of_kind


def tob(ex: str, sym: str, bid: float, ts: int = 0) -> TopOfBook:
    return TopOfBook(exchange=ex, ts_local=ts, symbol=sym, ts_exchange=None, bid_px=bid,
                     bid_sz=1.0, ask_px=bid + 1, ask_sz=1.0)


def trade(n: int, ex: str = "x") -> Trade:
    return Trade(exchange=ex, ts_local=n, symbol="A-B", ts_exchange=None, price=1.0, size=1.0,
                 side="buy", trade_id=str(n))


def book(levels: int) -> BookUpdate:
    return BookUpdate(exchange="x", ts_local=1, symbol="A-B", ts_exchange=None, seq=1, msg_id=1,
                      is_snapshot=True, bids=((1.0, 1.0),) * levels, asks=())


async def test_lossless_delivers_everything_waiting_in_order_and_filters_kinds() -> None:
    bus = Bus()
    trades = bus.subscribe("trades-only", ["trade"])
    everything = bus.subscribe("all")
    bus.publish([trade(1), tob("x", "A-B", 1.0)])
    bus.publish([trade(2)])
    bus.close()
    got = [list(b) async for b in trades]
    # one wake-up takes every batch waiting, as one list, in publish order
    assert [[e.trade_id for e in b] for b in got] == [["1", "2"]]
    assert [len(b) async for b in everything] == [3]
    assert bus.published == {("x", "trade"): 2, ("x", "tob"): 1}


def test_size_estimate_counts_events_and_levels() -> None:
    assert estimate_bytes([trade(1), book(10)]) == 2 * EVENT_BYTES + 10 * LEVEL_BYTES


async def test_full_buffer_drops_counts_and_reports_the_loss_outside_the_queue() -> None:
    bus = Bus(table_of_kind=table_of_kind)
    sub = bus.subscribe("slow", max_bytes=2 * EVENT_BYTES)
    for i in range(5):  # nobody reads: the publisher must never block
        bus.publish([trade(100 + i)])
    bus.publish([trade(7, ex="y")])
    assert sub.stats.dropped_events == 4 and sub.stats.dropped_batches == 4
    assert sub.stats.buffer_peak == 2 * EVENT_BYTES
    first = await sub.__anext__()
    # the drop report comes first, then the two events that fitted
    assert [type(e).__name__ for e in first] == ["Health", "Health", "Trade", "Trade"]
    x, y = first[0], first[1]
    assert isinstance(x, Health) and isinstance(y, Health)
    assert (x.event, x.exchange, x.ts_local) == ("dropped", "x", 102)
    assert x.detail.startswith("table=trades count=3 first_ts=102 last_ts=104 consumer=slow")
    assert (y.exchange, y.detail.split()[:2]) == ("y", ["table=trades", "count=1"])
    assert sub.unreported_drops == 0


async def test_a_drop_report_is_delivered_at_close_even_if_nothing_else_arrives() -> None:
    bus = Bus(table_of_kind=table_of_kind)
    sub = bus.subscribe("slow", max_bytes=EVENT_BYTES)
    bus.publish([trade(1)])
    bus.publish([trade(2)])  # dropped
    bus.close()
    got = [e for b in [b async for b in sub] for e in b]
    assert [(type(e).__name__, getattr(e, "event", None)) for e in got] == [
        ("Health", "dropped"), ("Trade", None)]


def test_a_batch_larger_than_the_buffer_is_taken_when_nothing_waits() -> None:
    bus = Bus()
    sub = bus.subscribe("w", max_bytes=EVENT_BYTES * 2)
    bus.publish([book(1000)])  # a full-book snapshot: never lost to its own size
    assert sub.stats.dropped_events == 0
    bus.publish([trade(1)])
    assert sub.stats.dropped_events == 1


async def test_a_consumer_that_stopped_reading_counts_what_it_misses() -> None:
    bus = Bus()
    sub = bus.subscribe("gone")
    sub.close_receiver()
    bus.publish([trade(1), trade(2)])
    assert sub.stats.dropped_events == 2 and bus.dropped_events() == 2
    assert bus.dropped_by_venue() == {"x": 2}


async def test_publish_wait_applies_backpressure_instead_of_dropping() -> None:
    bus = Bus()
    sub = bus.subscribe("w", max_bytes=EVENT_BYTES)
    got: list[str] = []

    async def consume() -> None:
        async for batch in sub:
            got.extend(e.trade_id for e in batch if isinstance(e, Trade))
            await trio.sleep(0.001)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(consume)
        for i in range(20):
            await bus.publish_wait([trade(i)])
        bus.close()
    assert got == [str(i) for i in range(20)] and sub.stats.dropped_events == 0


def test_health_events_are_counted_in_the_same_walk() -> None:
    bus = Bus()
    seen: list[str] = []
    bus.publish([trade(1), Health(exchange="x", ts_local=1, symbol=None, event="gap")],
                seen.append)  # type: ignore[arg-type]
    assert [h.event for h in seen] == ["gap"]  # type: ignore[attr-defined]


async def test_conflate_keeps_latest_per_key_and_never_grows() -> None:
    bus = Bus()
    sub = bus.subscribe("spread", ["tob"], policy=Policy.CONFLATE)
    for i in range(1000):
        bus.publish([tob("a", "BTC-USDT", float(i)), tob("b", "BTC-USDT", float(-i))])
    bus.publish([trade(1)])
    assert sub.stats.buffer_used == 2 and sub.stats.overwritten_events == 1998
    bus.close()
    batches = [b async for b in sub]
    assert [[(e.exchange, e.bid_px) for e in b] for b in batches] == [
        [("a", 999.0), ("b", -999.0)]]


async def test_conflate_consumer_wakes_on_publish() -> None:
    bus = Bus()
    sub = bus.subscribe("spread", ["tob"], policy=Policy.CONFLATE)
    seen: list[float] = []

    async def consume() -> None:
        async for batch in sub:
            seen.extend(e.bid_px for e in batch)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(consume)
        await trio.sleep(0.01)
        bus.publish([tob("a", "X-Y", 1.0)])
        await trio.sleep(0.01)
        bus.publish([tob("a", "X-Y", 2.0)])
        await trio.sleep(0.01)
        bus.close()
    assert seen == [1.0, 2.0]


def test_lossless_requires_a_positive_bound() -> None:
    with pytest.raises(ValueError, match="positive"):
        Bus().subscribe("bad", max_bytes=0)
