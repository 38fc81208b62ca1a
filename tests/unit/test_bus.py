"""Bus policies: bounded lossless delivery with recorded drops, and keep-latest conflation."""

from __future__ import annotations

import pytest
import trio

from core.bus import Bus, Policy
from core.schema import Health, TopOfBook, Trade


def tob(ex: str, sym: str, bid: float, ts: int = 0) -> TopOfBook:
    return TopOfBook(exchange=ex, ts_local=ts, symbol=sym, ts_exchange=None, bid_px=bid,
                     bid_sz=1.0, ask_px=bid + 1, ask_sz=1.0)


def trade(n: int) -> Trade:
    return Trade(exchange="x", ts_local=n, symbol="A-B", ts_exchange=None, price=1.0, size=1.0,
                 side="buy", trade_id=str(n))


async def test_lossless_delivers_batches_in_order_and_filters_kinds() -> None:
    bus = Bus()
    trades = bus.subscribe("trades-only", ["trade"], buffer_batches=10)
    everything = bus.subscribe("all", buffer_batches=10)
    bus.publish([trade(1), tob("x", "A-B", 1.0)])
    bus.publish([trade(2)])
    bus.close()
    got = [list(b) async for b in trades]
    assert [[e.trade_id for e in b] for b in got] == [["1"], ["2"]]
    assert sum([len(b) async for b in everything]) == 3
    assert bus.published == {("x", "trade"): 2, ("x", "tob"): 1}


async def test_full_lossless_buffer_drops_counts_and_records_the_loss() -> None:
    bus = Bus()
    sub = bus.subscribe("slow", buffer_batches=2)
    for i in range(5):  # nobody reads: the publisher must never block
        bus.publish([trade(i)])
    assert sub.stats.dropped_events == 3 and sub.stats.dropped_batches == 3
    assert sub.stats.buffer_peak == 2
    received = []
    async for batch in sub:
        received.extend(batch)
        if len(received) == 2:
            bus.publish([trade(99)])  # room again: the drop is reported before this batch
            bus.close()
    kinds = [type(e).__name__ for e in received]
    assert kinds == ["Trade", "Trade", "Health", "Trade"]
    drop = received[2]
    assert isinstance(drop, Health) and drop.event == "dropped" and drop.exchange == "x"
    assert drop.detail.startswith("3 events dropped for consumer 'slow'")


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


def test_lossless_requires_a_finite_buffer() -> None:
    with pytest.raises(ValueError, match="finite"):
        Bus().subscribe("bad", buffer_batches=0)
