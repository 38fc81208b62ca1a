"""The generic session against the fake Bybit venue, over in-memory streams on trio's mock clock.

No sockets: the session's ``connect`` seam (:meth:`core.sim.server.Simulation.connect`) joins the
real session and trio-websocket client to the fake venue through ``trio.testing`` memory
streams, and ``MockClock(autojump_threshold=0)`` runs pings, silence and backoff in virtual time.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from decimal import Decimal
from functools import partial

import trio
from trio.testing import MockClock

from core.bus import Bus, Subscription
from core.clock import TrioClock
from core.protocol import ProtocolConfig
from core.recording import NullRecorder
from core.schema import BookUpdate, Event, Health
from core.session import Backoff, Session, VenueStats
from core.sim.market import Listing, Market, Script, Step, load_text
from core.sim.server import Simulation
from core.supervisor import VenuePlan, run_connector
from core.testing.faults import Fault, FaultPlan
from plugins.bybit.fake import BybitSpeaker
from plugins.bybit.protocol import BybitProtocol

CEILING_S = 60  # virtual seconds
BTC = Listing("bybit", "BTC-USDT", tick=Decimal("0.1"), lot=Decimal("0.001"))


class FastBybit(BybitProtocol):
    """Bybit with test-sized timers."""

    silence_timeout_s = 0.6
    ping_interval_s = 0.2


def bybit(steps: Sequence[Step] = (), faults: FaultPlan | None = None,
          interval_s: float = 0.1) -> tuple[Simulation, Script]:
    """A fake Bybit whose BTC-USDT book starts at 100 / 99 x 101 and then plays ``steps``."""
    market = Market([BTC])
    load_text(market, "bybit", "BTC-USDT", [("100", "1"), ("99", "2")], [("101", "1")])
    script = Script("bybit", list(steps), interval_s=interval_s)
    sim = Simulation(market, {"bybit": BybitSpeaker(market)}, clock=TrioClock(),
                     faults={"bybit": faults} if faults else None)
    return sim, script


def session(sim: Simulation, bus: Bus, proto: BybitProtocol, **kw: object) -> Session:
    assert sim.clock is not None
    return Session(proto, bus, url=sim.url("bybit"), clock=sim.clock, connect=sim.connect,
                   **kw)  # type: ignore[arg-type]


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


def sent_ops(sim: Simulation, conn: int, op: str) -> int:
    frames = sim.speakers["bybit"].sessions[conn].received
    return sum(1 for f in frames if json.loads(f).get("op") == op)


def l2_config() -> ProtocolConfig:
    return ProtocolConfig(symbols=("BTC-USDT",), channels=("l2",))


async def test_reconnects_resubscribes_and_rebuilds_the_book(autojump_clock: MockClock) -> None:
    steps = [Step("BTC-USDT", bids=[("99", "3")]),
             Step("BTC-USDT", asks=[("101", "0"), ("102", "5")]),  # lost with the connection
             Step("BTC-USDT", bids=[("100", "0"), ("100.5", "1")], pause_s=1.0)]
    # the venue closes the first connection where the second delta should go
    sim, script = bybit(steps, FaultPlan(Fault("ws_close", after=2)))
    bus = Bus()
    sub = bus.subscribe("test")
    proto = FastBybit(l2_config())
    with trio.fail_after(CEILING_S):
        async with trio.open_nursery() as nursery:
            await nursery.start(sim.run)
            nursery.start_soon(sim.play, script)
            s = session(sim, bus, proto, backoff=Backoff(initial_s=0.05, rng=random.Random(1)))
            nursery.start_soon(s.run)
            events = await collect_until(
                sub, lambda ev: len([e for e in ev if isinstance(e, BookUpdate)]) >= 4)
            nursery.cancel_scope.cancel()
    venue = sim.venues["bybit"]
    assert len(venue.connections) == 2
    assert [sent_ops(sim, i, "subscribe") for i in (0, 1)] == [1, 1]  # resubscribed
    [disconnected] = health_events(events, "disconnected")
    assert disconnected.detail == "closed by peer: code=1001 GOING_AWAY going away"
    assert len(health_events(events, "connected")) == 2
    assert len(health_events(events, "resynced")) == 1  # the second snapshot, after disconnect
    updates = [e for e in events if isinstance(e, BookUpdate)]
    # connection 1: snapshot + the first delta; connection 2: a snapshot that holds the delta
    # sent while it was down, then the last delta (u counts per connection)
    assert [(u.is_snapshot, u.seq) for u in updates] == [
        (True, 10001), (False, 10002), (True, 10001), (False, 10002)]
    assert updates[2].asks == ((102.0, 5.0),)
    book = proto.l2.book("BTC-USDT")
    assert dict(book.bids) == {100.5: 1.0, 99.0: 3.0} and dict(book.asks) == {102.0: 5.0}
    assert sim.speakers["bybit"].true_view("BTC-USDT") == (
        [(100.5, 1.0), (99.0, 3.0)], [(102.0, 5.0)])


async def test_silent_server_is_detected_and_reconnected(autojump_clock: MockClock) -> None:
    steps = [Step("BTC-USDT", bids=[("99", "3")])]
    sim, script = bybit(steps, FaultPlan(Fault("missing_pongs", after=1)))
    bus = Bus()
    sub = bus.subscribe("test")
    proto = FastBybit(l2_config())
    with trio.fail_after(CEILING_S):
        async with trio.open_nursery() as nursery:
            await nursery.start(sim.run)
            nursery.start_soon(sim.play, script)
            nursery.start_soon(session(sim, bus, proto, backoff=Backoff(initial_s=0.05)).run)
            events = await collect_until(sub, lambda ev: len(health_events(ev, "resynced")) == 1)
            nursery.cancel_scope.cancel()
    [lost] = health_events(events, "disconnected")
    assert lost.detail.startswith("SilenceTimeout: no frame for")
    # the client kept pinging the silent socket: pings were sent but not answered
    assert sent_ops(sim, 0, "ping") >= 1
    assert len(sim.venues["bybit"].connections) == 2


async def test_pongs_keep_a_quiet_socket_alive(autojump_clock: MockClock) -> None:
    """No data at all, but pongs arrive: the session must not call the socket dead."""
    sim, _ = bybit()
    bus = Bus()
    proto = FastBybit(ProtocolConfig(symbols=("BTC-USDT",), channels=("trades",)))
    with trio.fail_after(CEILING_S):
        async with trio.open_nursery() as nursery:
            await nursery.start(sim.run)
            s = session(sim, bus, proto)
            nursery.start_soon(s.run)
            await trio.sleep(30.0)  # 50 silence timeouts
            nursery.cancel_scope.cancel()
    assert len(sim.venues["bybit"].connections) == 1
    assert s.stats.reconnects == 0
    assert sent_ops(sim, 0, "ping") >= 100


class ExplodingBybit(FastBybit):
    """Plugin code with a bug tripped by its first book frame (after it named the book)."""

    exploded = 0

    def handle(self, payload: str | bytes, recv_ns: int) -> list[Event]:
        text = payload if isinstance(payload, str) else payload.decode()
        if "orderbook" in text and ExplodingBybit.exploded == 0:
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


async def run_plugin(proto: type[FastBybit], stats: VenueStats) -> tuple[list[Event], int]:
    """Run ``proto`` against the fake until three book updates arrived; the events and the
    number of connections the fake saw."""
    ExplodingBybit.exploded = BrokenOnConnect.broke = 0  # each run's first frame/connect fails
    steps = [Step("BTC-USDT", bids=[("99", "3")], pause_s=1.0),
             Step("BTC-USDT", asks=[("102", "5")])]
    sim, script = bybit(steps)
    bus = Bus()
    sub = bus.subscribe("test")
    with trio.fail_after(CEILING_S):
        async with trio.open_nursery() as nursery:
            await nursery.start(sim.run)
            nursery.start_soon(sim.play, script)
            assert sim.clock is not None
            plan = VenuePlan(proto=proto, url=sim.url("bybit"), config=l2_config())
            nursery.start_soon(partial(run_connector, plan, bus, stats, clock=sim.clock,
                                       recorder=NullRecorder(), connect=sim.connect,
                                       backoff=Backoff(initial_s=0.05)))
            events = await collect_until(
                sub, lambda ev: len([e for e in ev if isinstance(e, BookUpdate)]) >= 3)
            nursery.cancel_scope.cancel()
    return events, len(sim.venues["bybit"].connections)


async def test_an_exception_while_handling_a_frame_is_that_frames_decode_error(
        autojump_clock: MockClock) -> None:
    """The frame is dropped and counted, its book resynced; the connection is kept."""
    stats = VenueStats("bybit")
    events, connections = await run_plugin(ExplodingBybit, stats)
    [err] = health_events(events, "decode_error")
    assert "KeyError" in err.detail and "boom" in err.detail
    gap = health_events(events, "gap")[0]
    assert gap.symbol == "BTC-USDT" and "KeyError" in gap.detail
    assert health_events(events, "plugin_error") == []
    assert stats.plugin_errors == 0 and connections == 1


async def test_a_plugin_bug_outside_frames_is_recorded_and_the_connector_restarts(
        autojump_clock: MockClock) -> None:
    stats = VenueStats("bybit")
    events, connections = await run_plugin(BrokenOnConnect, stats)
    [err] = health_events(events, "plugin_error")
    assert "KeyError" in err.detail and "boom" in err.detail
    assert stats.plugin_errors == 1 and connections == 2


async def test_a_consumer_that_never_reads_cannot_stall_the_reader(
        autojump_clock: MockClock) -> None:
    """A writer stuck forever: the reader still takes every frame off the socket (so the venue
    keeps us), the loss is counted, and the other consumer receives everything."""
    n = 300
    steps = [Step("BTC-USDT", bids=[("100", str(2 + i % 5))]) for i in range(n - 1)]
    sim, script = bybit(steps, interval_s=0.0001)
    bus = Bus()
    stuck = bus.subscribe("stuck-writer", max_bytes=4 * 2_000)  # never read: about 4 frames
    healthy = bus.subscribe("healthy", ["l2"])
    proto = FastBybit(l2_config())
    with trio.fail_after(CEILING_S):
        async with trio.open_nursery() as nursery:
            await nursery.start(sim.run)
            nursery.start_soon(sim.play, script)
            s = session(sim, bus, proto)
            nursery.start_soon(s.run)
            got = await collect_until(healthy, lambda ev: len(ev) >= n)
            nursery.cancel_scope.cancel()
    assert len(got) == n and s.stats.reconnects == 0
    assert s.stats.messages >= n + 1  # every frame was read (plus the ack)
    # every event is either in its bounded queue or counted as dropped
    assert stuck.stats.dropped_events + stuck.stats.delivered_events == sum(bus.published.values())
    assert stuck.stats.dropped_events >= n - 4 * 2_000 // 240
    assert stuck.stats.buffer_peak <= 4 * 2_000  # bounded in bytes: it never grew past its size
