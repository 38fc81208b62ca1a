"""The generic session against a loopback fake Bybit speaking the real v5 protocol.

Real sockets, real time, short timeouts; every test has a trio-clock ceiling.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from functools import partial

import trio

from core.bus import Bus, Subscription
from core.clock import WallClock
from core.protocol import ProtocolConfig
from core.recording import NullRecorder
from core.schema import BookUpdate, Event, Health
from core.session import Backoff, Session, VenueStats, connect_websocket
from core.supervisor import VenuePlan, run_connector
from core.testing.fake_servers import serve_ws
from plugins.bybit.protocol import BybitProtocol
from tests.fakes.bybit import ConnectionPlan, FakeBybit, book_msg

CEILING_S = 15


class FastBybit(BybitProtocol):
    """Bybit with test-sized timers."""

    silence_timeout_s = 0.6
    ping_interval_s = 0.2


def script(first_bid: str) -> dict:
    return {"orderbook.50.BTCUSDT": [
        book_msg("BTCUSDT", "snapshot", [[first_bid, "1"], ["99", "2"]], [["101", "1"]], u=1,
                 ts_ms=1000),
        book_msg("BTCUSDT", "delta", [["99", "3"]], [], u=2, ts_ms=1001),
        book_msg("BTCUSDT", "delta", [], [["101", "0"], ["102", "5"]], u=3, ts_ms=1002),
    ]}


async def collect_until(sub: Subscription,
                        done: Callable[[list[Event]], bool]) -> list[Event]:
    out: list[Event] = []
    async for batch in sub:
        out.extend(batch)
        if done(out):
            return out
    return out


def health_events(events: Sequence[Event], name: str) -> list[Health]:
    return [e for e in events if isinstance(e, Health) and e.event == name]


async def test_reconnects_resubscribes_and_rebuilds_the_book() -> None:
    fake = FakeBybit(scripts=[script("100"), script("100.5")],
                     plans=[ConnectionPlan(close_after_pushes=2)])
    bus = Bus()
    sub = bus.subscribe("test")
    proto = FastBybit(ProtocolConfig(symbols=("BTC-USDT",), channels=("l2",)))
    with trio.fail_after(CEILING_S):
        async with trio.open_nursery() as nursery:
            url = await nursery.start(serve_ws, fake.handler)
            session = Session(proto, bus, url=url,
                              backoff=Backoff(initial_s=0.05, rng=random.Random(1)))
            nursery.start_soon(session.run)
            events = await collect_until(
                sub, lambda ev: len([e for e in ev if isinstance(e, BookUpdate)]) >= 5)
            nursery.cancel_scope.cancel()
    assert fake.connections == 2
    subscribes = [[m for m in conn if m.get("op") == "subscribe"] for conn in fake.received]
    assert [len(s) for s in subscribes] == [1, 1]  # resubscribed on the new connection
    [disconnected] = health_events(events, "disconnected")
    assert "closed by peer: code=1000" in disconnected.detail
    assert len(health_events(events, "connected")) == 2
    assert len(health_events(events, "resynced")) == 1  # the second snapshot, after disconnect
    updates = [e for e in events if isinstance(e, BookUpdate)]
    # connection 1: snapshot + 1 delta (closed after 2 pushes); connection 2: full script
    assert [(u.is_snapshot, u.seq) for u in updates] == [
        (True, 1), (False, 2), (True, 1), (False, 2), (False, 3)]
    book = proto.l2.book("BTC-USDT")
    assert book.best_bid() == (100.5, 1.0) and book.best_ask() == (102.0, 5.0)
    assert dict(book.bids) == {100.5: 1.0, 99.0: 3.0}


async def test_silent_server_is_detected_and_reconnected() -> None:
    fake = FakeBybit(scripts=[script("100")], plans=[ConnectionPlan(silent_after_pushes=1)])
    bus = Bus()
    sub = bus.subscribe("test")
    proto = FastBybit(ProtocolConfig(symbols=("BTC-USDT",), channels=("l2",)))
    with trio.fail_after(CEILING_S):
        async with trio.open_nursery() as nursery:
            url = await nursery.start(serve_ws, fake.handler)
            session = Session(proto, bus, url=url, backoff=Backoff(initial_s=0.05))
            nursery.start_soon(session.run)
            events = await collect_until(sub, lambda ev: len(health_events(ev, "resynced")) == 1)
            nursery.cancel_scope.cancel()
    [lost] = health_events(events, "disconnected")
    assert lost.detail.startswith("SilenceTimeout: no frame for")
    # the client kept pinging the silent socket: pings were sent but not answered
    assert sum(1 for m in fake.received[0] if m.get("op") == "ping") >= 1
    assert fake.connections == 2


async def test_pongs_keep_a_quiet_socket_alive() -> None:
    """No data at all, but pongs arrive: the watchdog must not call the socket dead."""
    fake = FakeBybit(scripts=[{}])
    bus = Bus()
    proto = FastBybit(ProtocolConfig(symbols=("BTC-USDT",), channels=("trades",)))
    with trio.fail_after(CEILING_S):
        async with trio.open_nursery() as nursery:
            url = await nursery.start(serve_ws, fake.handler)
            session = Session(proto, bus, url=url)
            nursery.start_soon(session.run)
            await trio.sleep(2.0)  # > 3 silence timeouts
            nursery.cancel_scope.cancel()
    assert fake.connections == 1
    assert session.stats.reconnects == 0
    assert sum(1 for m in fake.received[0] if m.get("op") == "ping") >= 5


class ExplodingBybit(FastBybit):
    """Plugin code with a bug tripped by its first book frame (after it named the book)."""

    exploded = 0

    def handle(self, payload: str | bytes, recv_ns: int) -> list[Event]:
        text = payload if isinstance(payload, str) else payload.decode()
        if "orderbook.50.BTCUSDT" in text and ExplodingBybit.exploded == 0:
            ExplodingBybit.exploded += 1
            self.book_frame(self.l2, "BTC-USDT")
            raise KeyError("boom")
        return super().handle(payload, recv_ns)


class BrokenOnConnect(FastBybit):
    """Plugin code with a bug outside frame handling, on the first connection only."""

    broke = 0

    def connection_made(self, now_ns: int) -> list[Event]:
        if BrokenOnConnect.broke == 0:
            BrokenOnConnect.broke += 1
            raise KeyError("boom")
        return super().connection_made(now_ns)


async def run_plugin(proto: type[FastBybit], fake: FakeBybit, n_updates: int,
                     stats: VenueStats) -> list[Event]:
    bus = Bus()
    sub = bus.subscribe("test")
    config = ProtocolConfig(symbols=("BTC-USDT",), channels=("l2",))
    with trio.fail_after(CEILING_S):
        async with trio.open_nursery() as nursery:
            url = await nursery.start(serve_ws, fake.handler)
            plan = VenuePlan(proto=proto, url=url, config=config)
            nursery.start_soon(partial(run_connector, plan, bus, stats, clock=WallClock(),
                                       recorder=NullRecorder(), connect=connect_websocket,
                                       backoff=Backoff(initial_s=0.05)))
            events = await collect_until(
                sub, lambda ev: len([e for e in ev if isinstance(e, BookUpdate)]) >= n_updates)
            nursery.cancel_scope.cancel()
    return events


async def test_an_exception_while_handling_a_frame_is_that_frames_decode_error() -> None:
    """The frame is dropped and counted, its book resynced; the connection is kept."""
    fake = FakeBybit(scripts=[script("100")])
    stats = VenueStats("bybit")
    events = await run_plugin(ExplodingBybit, fake, 3, stats)
    [err] = health_events(events, "decode_error")
    assert "KeyError" in err.detail and "boom" in err.detail
    gap = health_events(events, "gap")[0]  # (the fake may replay its script twice: more gaps)
    assert gap.symbol == "BTC-USDT" and "KeyError" in gap.detail
    assert health_events(events, "plugin_error") == []
    assert stats.plugin_errors == 0 and fake.connections == 1


async def test_a_plugin_bug_outside_frames_is_recorded_and_the_connector_restarts() -> None:
    fake = FakeBybit(scripts=[script("100")])
    stats = VenueStats("bybit")
    events = await run_plugin(BrokenOnConnect, fake, 3, stats)
    [err] = health_events(events, "plugin_error")
    assert "KeyError" in err.detail and "boom" in err.detail
    assert stats.plugin_errors == 1 and fake.connections == 2


async def test_a_consumer_that_never_reads_cannot_stall_the_reader() -> None:
    """A writer stuck forever: the reader still takes every frame off the socket (so the venue
    keeps us), the loss is counted, and the other consumer receives everything."""
    n = 300
    msgs = [book_msg("BTCUSDT", "snapshot", [["100", "1"]], [["101", "1"]], 1, 1000)]
    msgs += [book_msg("BTCUSDT", "delta", [["100", str(2 + i % 5)]], [], i + 2, 1000 + i)
             for i in range(n - 1)]
    fake = FakeBybit(scripts=[{"orderbook.50.BTCUSDT": msgs}], push_interval_s=0.0)
    bus = Bus()
    stuck = bus.subscribe("stuck-writer", max_bytes=4 * 2_000)  # never read: about 4 frames
    healthy = bus.subscribe("healthy", ["l2"])
    proto = FastBybit(ProtocolConfig(symbols=("BTC-USDT",), channels=("l2",)))
    with trio.fail_after(CEILING_S):
        async with trio.open_nursery() as nursery:
            url = await nursery.start(serve_ws, fake.handler)
            session = Session(proto, bus, url=url)
            nursery.start_soon(session.run)
            got = await collect_until(healthy, lambda ev: len(ev) >= n)
            nursery.cancel_scope.cancel()
    assert len(got) == n and session.stats.reconnects == 0
    assert session.stats.messages >= n + 1  # every frame was read (plus the ack)
    # every event is either in its bounded queue or counted as dropped
    assert stuck.stats.dropped_events + stuck.stats.delivered_events == sum(bus.published.values())
    assert stuck.stats.dropped_events >= n - 4 * 2_000 // 240
    assert stuck.stats.buffer_peak <= 4 * 2_000  # bounded in bytes: it never grew past its size
