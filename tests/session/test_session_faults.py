"""The hostile-venue findings the session must survive: a handshake or a subscription never
answered, invalid UTF-8 (the abandoned TCP connection is closed), a dead socket (books untrusted
as soon as it is found, before it is closed), and what the logs say about it.

In-memory streams on trio's mock clock, except where the point is a real TCP socket.
"""

from __future__ import annotations

import logging
from decimal import Decimal

import pytest
import trio
from trio.testing import MockClock

from core.bus import Bus
from core.clock import TrioClock
from core.codec import S_NS
from core.protocol import ProtocolConfig
from core.schema import Event, Health, HealthKind
from core.session import CONNECT_TIMEOUT_S, Backoff, Session, dead_socket_bound_s
from core.sim.market import Listing, Market, Script, Step, load_text
from core.sim.server import Simulation
from core.testing.faults import Fault, FaultPlan
from plugins.bybit.fake import BybitSpeaker
from plugins.bybit.protocol import BybitProtocol

CEILING_S = 120  # virtual seconds
BTC = Listing("bybit", "BTC-USDT", tick=Decimal("0.1"), lot=Decimal("0.001"))
CONFIG = ProtocolConfig(symbols=("BTC-USDT",), channels=("tob", "l2"))


def simulation(*faults: Fault, steps: int = 200) -> tuple[Simulation, Script]:
    market = Market([BTC])
    load_text(market, "bybit", "BTC-USDT", [("100", "1"), ("99", "2")], [("101", "1")])
    script = Script("bybit", [Step("BTC-USDT", bids=[("99", str(3 + i % 4))])
                              for i in range(steps)], interval_s=0.2)
    sim = Simulation(market, {"bybit": BybitSpeaker(market)}, clock=TrioClock(),
                     faults={"bybit": FaultPlan(*faults)})
    return sim, script


async def run(sim: Simulation, script: Script, seconds: float, *, tcp: bool = False
              ) -> tuple[Session, list[Event]]:
    bus = Bus()
    sub = bus.subscribe("test")
    events: list[Event] = []

    async def collect() -> None:
        async for batch in sub:
            events.extend(batch)

    with trio.fail_after(CEILING_S):
        async with trio.open_nursery() as nursery:
            await nursery.start(sim.run)
            nursery.start_soon(sim.play, script)
            nursery.start_soon(collect)
            assert sim.clock is not None
            if tcp:
                urls = await nursery.start(sim.serve_tcp)
                session = Session(BybitProtocol(CONFIG), bus, url=urls["bybit"][0],
                                  clock=sim.clock, backoff=Backoff(initial_s=0.05))
            else:
                session = Session(BybitProtocol(CONFIG), bus, url=sim.url("bybit"),
                                  clock=sim.clock, connect=sim.connect,
                                  backoff=Backoff(initial_s=0.05))
            nursery.start_soon(session.run)
            await trio.sleep(seconds)
            nursery.cancel_scope.cancel()
    return session, events


def health(events: list[Event], kind: str) -> list[Health]:
    return [e for e in events if isinstance(e, Health) and e.event == kind]


async def test_a_handshake_never_answered_is_retried_at_the_connect_deadline(
        autojump_clock: MockClock) -> None:
    sim, script = simulation(Fault("handshake"))
    _, events = await run(sim, script, 60)
    [lost] = health(events, HealthKind.DISCONNECTED)[:1]
    deadline = CONNECT_TIMEOUT_S + BybitProtocol.subscribe_timeout_s
    assert lost.detail == f"ConnectTimeout: no websocket handshake within {deadline:g} s"
    conns = sim.venues["bybit"].connections
    assert len(conns) == 2 and not conns[0].accepted and conns[1].accepted
    assert conns[0].eof  # the attempt's stream was closed, not left open
    assert (conns[1].opened_ns - conns[0].opened_ns) / S_NS < deadline + 1
    assert health(events, HealthKind.SNAPSHOT)  # and the second attempt recorded data


async def test_subscriptions_never_answered_are_part_of_the_connect_deadline(
        autojump_clock: MockClock) -> None:
    # the venue accepts the websocket, then answers nothing at all (not even pings)
    sim, script = simulation(Fault("missing_pongs", after=0))
    session, events = await run(sim, script, 60)
    [lost, *_] = health(events, HealthKind.DISCONNECTED)
    deadline = CONNECT_TIMEOUT_S + BybitProtocol.subscribe_timeout_s
    assert lost.detail == f"ConnectTimeout: no answer to the subscriptions within {deadline:g} s"
    assert session.stats.ever_subscribed and session.stats.delivered_data


async def test_invalid_utf8_closes_the_old_tcp_connection_before_reconnecting() -> None:
    """Real sockets: the venue sees the abandoned connection closed (EOF) before the next one."""
    sim, script = simulation(Fault("invalid_utf8", after=3))
    _, events = await run(sim, script, 2.0, tcp=True)
    [lost, *_] = health(events, HealthKind.DISCONNECTED)
    assert "code=1007" in lost.detail
    first, second = sim.venues["bybit"].connections[:2]
    # closed by the client: a plain TCP close (trio-websocket) or a closing handshake (lean)
    assert (first.eof or first.client_closed) and first.ended_ns is not None
    assert first.ended_ns <= second.opened_ns
    assert len(health(events, HealthKind.RESYNCED)) == 2  # tob and l2 back after the reconnect


async def test_a_dead_socket_is_untrusted_when_found_not_when_closed(
        autojump_clock: MockClock) -> None:
    sim, script = simulation(Fault("stall", after=5))
    _, events = await run(sim, script, 60)
    last_frame = max(e.ts_local for e in events if not isinstance(e, Health)
                     and e.ts_local < health(events, HealthKind.DISCONNECTED)[0].ts_local)
    [lost, *_] = health(events, HealthKind.DISCONNECTED)
    [_, reconnected, *_] = health(events, HealthKind.CONNECTED)
    found_s = (lost.ts_local - last_frame) / S_NS
    assert found_s <= dead_socket_bound_s(BybitProtocol)  # 20 s ping interval + 5 s pong
    # the books were untrusted at once; closing the stalled socket took its own time after
    assert reconnected.ts_local - lost.ts_local >= 1.9 * S_NS
    assert lost.detail.startswith("SilenceTimeout: no frame for")


async def test_one_log_line_per_reconnect_and_a_normal_stop_is_not_a_warning(
        autojump_clock: MockClock, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="core.session")
    sim, script = simulation(Fault("ws_close", after=3), Fault("tcp_close", conn=1, after=3))
    session, _ = await run(sim, script, 10)
    lines = [r for r in caplog.records if r.name == "core.session"]
    warnings = [r.getMessage() for r in lines if r.levelno >= logging.WARNING]
    assert len(warnings) == session.stats.reconnects == 2
    assert warnings[0].startswith("bybit: closed by peer: code=1001 GOING_AWAY going away; "
                                  "reconnecting in ")
    assert "(attempt 1)" in warnings[0] and "(attempt 2)" in warnings[1]
    assert "code=1006" in warnings[1]
    stopped = [r for r in lines if "stopped" in r.getMessage()]
    assert stopped and all(r.levelno < logging.WARNING for r in stopped)
