"""The HTX plugin against the fake HTX venue (gzip frames, server pings), over in-memory streams.

Timing runs on trio's ``MockClock``: pings every 5 s and the ping-expiry close take no real
time.
"""

from __future__ import annotations

import gzip
import json
from decimal import Decimal

import pytest
import trio
from trio.testing import MockClock
from trio_websocket import ConnectionClosed, WebSocketConnection

from core.bus import Bus
from core.clock import TrioClock
from core.protocol import Instrument, ProtocolConfig
from core.schema import BookUpdate, Event, Health, HealthKind, TopOfBook, Trade
from core.session import Session
from core.sim.market import Listing, Market, Script, Step, load_text
from core.sim.server import Simulation
from core.testing.faults import Fault, FaultPlan
from plugins.htx.fake import PING_EXPIRED_CODE, PING_EXPIRED_REASON, HtxSession, HtxSpeaker
from plugins.htx.protocol import HtxProtocol

BTC_BOOK = "market.BTC-USDT.depth.size_20.high_freq"
ETH_BOOK = "market.ETH-USDT.depth.size_20.high_freq"
BTC_TRADES = "market.BTC-USDT.trade.detail"
D = Decimal
LISTINGS = [Listing("htx", "BTC-USDT", D("0.1"), D("0.001"), D("0.001")),
            Listing("htx", "ETH-USDT", D("0.1"), D("0.01"), D("0.01"))]
INSTRUMENTS = {
    "BTC-USDT": Instrument(symbol="BTC-USDT", native="BTC-USDT", contract_size=0.001),
    "ETH-USDT": Instrument(symbol="ETH-USDT", native="ETH-USDT", contract_size=0.01),
    "NOPE-USDT": Instrument(symbol="NOPE-USDT", native="NOPE-USDT", contract_size=1.0),
}
CEILING_S = 120.0  # virtual seconds


def venue(*faults: Fault) -> tuple[Simulation, Script]:
    """BTC (contracts of 0.001): 5 and 2 bid, 3 and 8 offered; ETH (0.01): 10 bid, 20 offered.
    Then book updates and two BTC trades (3 and 250 contracts)."""
    market = Market(LISTINGS)
    load_text(market, "htx", "BTC-USDT", [("100.0", "0.005"), ("99.5", "0.002")],
              [("100.5", "0.003"), ("101.0", "0.008")])
    load_text(market, "htx", "ETH-USDT", [("2000.0", "0.1")], [("2000.5", "0.2")])
    script = Script("htx", [
        Step("BTC-USDT", bids=[("100.0", "0.006")]),
        Step("ETH-USDT", bids=[("2000.1", "0.04")]),
        Step("BTC-USDT", asks=[("100.4", "0.001")]),  # lost: the venue skips a version
        Step("BTC-USDT", bids=[("99.5", "0")]),
        Step("BTC-USDT", trades=[("100.5", "0.003", "buy"), ("100.0", "0.25", "sell")]),
        Step("BTC-USDT", asks=[("101.0", "0.009")], pause_s=1.0),  # after the resync
        Step("BTC-USDT", bids=[("99.0", "0.001")]),
    ], interval_s=0.05)
    sim = Simulation(market, {"htx": HtxSpeaker(market)}, clock=TrioClock(),
                     faults={"htx": FaultPlan(*faults)})
    return sim, script


async def test_plugin_against_the_fake_venue(autojump_clock: MockClock) -> None:
    sim, script = venue(Fault("drop_delta", symbol="BTC-USDT", skip=1))
    proto = HtxProtocol(ProtocolConfig(symbols=("BTC-USDT", "ETH-USDT", "NOPE-USDT"),
                                       channels=("tob", "l2", "trades"),
                                       instruments=INSTRUMENTS))
    bus = Bus()
    sub = bus.subscribe("test")
    events: list[Event] = []

    async def collect() -> None:
        async for batch in sub:
            events.extend(batch)

    with trio.fail_after(CEILING_S):
        async with trio.open_nursery() as nursery:
            await nursery.start(sim.run)
            nursery.start_soon(collect)
            nursery.start_soon(sim.play, script)
            assert sim.clock is not None
            session = Session(proto, bus, url=sim.url("htx"), clock=sim.clock,
                              connect=sim.connect)
            nursery.start_soon(session.run)
            await trio.sleep(16.0)
            nursery.cancel_scope.cancel()
    assert script.done

    health = [(e.event, e.symbol) for e in events if isinstance(e, Health)]
    assert health.count((HealthKind.SUBSCRIBE_ERROR, "NOPE-USDT")) == 2  # book and trades
    assert health.count((HealthKind.SUBSCRIBED, "BTC-USDT")) == 2  # book and trades, once each
    assert health.count((HealthKind.SUBSCRIBED, "ETH-USDT")) == 2
    assert health.count((HealthKind.GAP, "BTC-USDT")) == 1
    assert health.count((HealthKind.RESYNCED, "BTC-USDT")) == 1
    assert (HealthKind.GAP, "ETH-USDT") not in health

    # Resync: unsub + sub of the BTC book topic alone, after the original six subscriptions.
    [conn] = sim.speakers["htx"].sessions
    assert isinstance(conn, HtxSession)
    sent = [json.loads(f) for f in conn.received]
    subs = [(next(iter(m)), m[next(iter(m))]) for m in sent if "sub" in m or "unsub" in m]
    assert subs == [("sub", BTC_BOOK), ("sub", BTC_TRADES), ("sub", ETH_BOOK),
                    ("sub", "market.ETH-USDT.trade.detail"),
                    ("sub", "market.NOPE-USDT.depth.size_20.high_freq"),
                    ("sub", "market.NOPE-USDT.trade.detail"),
                    ("unsub", BTC_BOOK), ("sub", BTC_BOOK)]

    btc = [e for e in events if isinstance(e, BookUpdate) and e.symbol == "BTC-USDT"]
    # snapshot 1000, update 1001; 1002 lost, so 1003 is a gap (book invalid); the resync's
    # snapshot continues the connection's chain (1004), then the two later updates.
    assert [(b.is_snapshot, b.seq) for b in btc] == [
        (True, 1000), (False, 1001), (True, 1004), (False, 1005), (False, 1006)]
    assert btc[0].bids == ((100.0, 0.005), (99.5, 0.002))
    assert btc[0].asks == ((100.5, 0.003), (101.0, 0.008))
    assert btc[2].bids == ((100.0, 0.006),)  # the lost update and the removal are in it
    assert btc[2].asks == ((100.4, 0.001), (100.5, 0.003), (101.0, 0.008))
    assert proto.book.book("BTC-USDT").top_bids(3) == [(100.0, 0.006), (99.0, 0.001)]
    assert proto.book.book("BTC-USDT").top_asks(3) == [(100.4, 0.001), (100.5, 0.003),
                                                       (101.0, 0.009)]
    tob = [e for e in events if isinstance(e, TopOfBook) and e.symbol == "BTC-USDT"]
    assert (tob[-1].bid_px, tob[-1].bid_sz, tob[-1].ask_px, tob[-1].ask_sz) == (
        100.0, 0.006, 100.4, 0.001)

    eth = [e for e in events if isinstance(e, BookUpdate) and e.symbol == "ETH-USDT"]
    assert [(b.is_snapshot, b.bids, b.asks) for b in eth] == [
        (True, ((2000.0, 0.1),), ((2000.5, 0.2),)), (False, ((2000.1, 0.04),), ())]

    trades = [(t.trade_id, t.price, t.size, t.side) for t in events if isinstance(t, Trade)]
    assert trades == [("10010000", 100.5, 0.003, "buy"), ("10020000", 100.0, 0.25, "sell")]

    # Three server pings in 16 s, each answered with its own number; the socket stayed open.
    assert conn.pongs_ok == 3
    assert conn.pongs_bad == []
    assert sim.venues["htx"].connections[0].server_closed == ""
    assert proto.decode_errors == {}


async def answer_first_ping_only(ws: WebSocketConnection, pings: list[int]) -> None:
    while True:
        msg = json.loads(gzip.decompress(await ws.get_message()))
        pings.append(msg["ping"])
        if len(pings) == 1:
            await ws.send_message(json.dumps({"pong": msg["ping"]}))


async def test_the_fake_closes_when_pongs_stop(autojump_clock: MockClock) -> None:
    sim, _ = venue()
    pings: list[int] = []
    with trio.fail_after(CEILING_S):
        async with trio.open_nursery() as nursery:
            await nursery.start(sim.run)
            async with sim.connect(sim.url("htx"), 1 << 20) as ws:
                start = trio.current_time()
                await ws.send_message(json.dumps({"sub": BTC_TRADES, "id": "1"}))
                ack = json.loads(gzip.decompress(await ws.get_message()))
                assert ack["status"] == "ok"
                assert ack["subbed"] == BTC_TRADES
                with pytest.raises(ConnectionClosed) as closed:
                    await answer_first_ping_only(ws, pings)
                elapsed = trio.current_time() - start
            nursery.cancel_scope.cancel()
    assert closed.value.reason is not None
    assert closed.value.reason.code == PING_EXPIRED_CODE
    assert closed.value.reason.reason == PING_EXPIRED_REASON
    # Pings at 5 (answered), 10, 15, 20, 25 s; four unanswered when the 30 s one is due.
    assert [p - pings[0] for p in pings] == [0, 5000, 10_000, 15_000, 20_000]
    assert 29.9 <= elapsed <= 30.5
    [conn] = sim.speakers["htx"].sessions
    assert isinstance(conn, HtxSession) and conn.pongs_ok == 1
    assert sim.venues["htx"].connections[0].server_closed == \
        f"close {PING_EXPIRED_CODE} {PING_EXPIRED_REASON}"
