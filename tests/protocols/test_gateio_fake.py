"""The Gate.io plugin against the fake Gate futures venue (Gate's wire protocol), over in-memory
streams. Timing runs on trio's ``MockClock``: the 15 s ping and the 15 s snapshot deadline take
no real time."""

from __future__ import annotations

import json

import trio
from trio.testing import MockClock

from core.bus import Bus
from core.clock import TrioClock
from core.protocol import Instrument, ProtocolConfig
from core.schema import BookUpdate, Event, Health, HealthKind, TopOfBook, Trade
from core.session import Session
from core.sim.market import Market, Script, Step, load_text
from core.sim.server import Simulation
from core.testing.faults import Fault, FaultPlan
from plugins.gateio.fake import GateSpeaker
from plugins.gateio.protocol import GateioProtocol
from tests.session.sims import GATE_BTC

S = 1_000_000_000
START_NS = 1_700_000_000 * S
CEILING_S = 120.0  # virtual seconds
INSTRUMENTS = {
    "BTC-USDT": Instrument(symbol="BTC-USDT", native="BTC_USDT", contract_size=0.0001,
                           tick_size=0.1),
    "XYZ-USDT": Instrument(symbol="XYZ-USDT", native="XYZ_USDT", contract_size=1.0,
                           tick_size=0.001),
}


def venue(*faults: Fault, echo: bool = True) -> tuple[Simulation, Script]:
    """BTC_USDT (contracts of 0.0001 BTC): 1000 and 2000 bid, 300 and 400 offered; XYZ_USDT is
    not listed (acknowledged and silent). Then book updates and two trades."""
    market = Market([GATE_BTC])
    load_text(market, "gateio", "BTC-USDT", [("63700.0", "0.1"), ("63699.9", "0.2")],
              [("63700.1", "0.03"), ("63700.2", "0.04")])
    script = Script("gateio", [
        Step("BTC-USDT", bids=[("63700.0", "0.09")],
             asks=[("63700.3", "0.0005"), ("63700.1", "0.025")]),
        Step("BTC-USDT", bids=[("63699.8", "0.05")]),  # lost on the first subscription
        Step("BTC-USDT", bids=[("63700.0", "0")]),
        Step("BTC-USDT", trades=[("63700.0", "0.0025", "sell"), ("63700.1", "0.004", "buy")]),
        Step("BTC-USDT", asks=[("63700.2", "0.05")], pause_s=1.0),  # after the resync
    ], interval_s=0.05)
    speaker = GateSpeaker(market)
    speaker.echo = echo
    sim = Simulation(market, {"gateio": speaker}, clock=TrioClock(START_NS),
                     faults={"gateio": FaultPlan(*faults)})
    return sim, script


async def run_against(sim: Simulation, script: Script, symbols: tuple[str, ...],
                      until_s: float) -> tuple[GateioProtocol, list[Event]]:
    proto = GateioProtocol(ProtocolConfig(symbols=symbols, channels=("tob", "l2", "trades"),
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
            nursery.start_soon(Session(proto, bus, url=sim.url("gateio"), clock=sim.clock,
                                       connect=sim.connect).run)
            await trio.sleep(until_s)
            nursery.cancel_scope.cancel()
    return proto, events


def health(events: list[Event]) -> list[tuple[str, str | None]]:
    return [(e.event, e.symbol) for e in events if isinstance(e, Health)]


async def test_plugin_against_the_fake_venue(autojump_clock: MockClock) -> None:
    sim, script = venue(Fault("drop_delta", symbol="BTC-USDT", skip=1))
    proto, events = await run_against(sim, script, ("BTC-USDT", "XYZ-USDT"), until_s=20.0)
    assert script.done

    h = health(events)
    assert h.count((HealthKind.SUBSCRIBED, "BTC-USDT")) == 4  # 3 channels + the obu resync
    assert h.count((HealthKind.SUBSCRIBED, "XYZ-USDT")) == 4  # acked; silent; resubscribed
    assert h.count((HealthKind.GAP, "BTC-USDT")) == 1
    assert h.count((HealthKind.RESYNCED, "BTC-USDT")) == 1
    assert h.count((HealthKind.NO_SNAPSHOT, "XYZ-USDT")) == 1
    assert (HealthKind.GAP, "XYZ-USDT") not in h
    assert HealthKind.SUBSCRIBE_ERROR not in [k for k, _ in h]
    assert proto.decode_errors == {}

    # What the client sent: 6 subscriptions; the gap resync of BTC's obu stream alone; at 15 s the
    # ping and the no_snapshot retry of XYZ's obu stream alone.
    received = [json.loads(m) for m in sim.speakers["gateio"].sessions[0].received]
    sent = [(m["channel"], m.get("event"), m.get("payload")) for m in received]
    assert sent == [
        ("futures.book_ticker", "subscribe", ["BTC_USDT"]),
        ("futures.book_ticker", "subscribe", ["XYZ_USDT"]),
        ("futures.obu", "subscribe", ["ob.BTC_USDT.50"]),
        ("futures.obu", "subscribe", ["ob.XYZ_USDT.50"]),
        ("futures.trades", "subscribe", ["BTC_USDT"]),
        ("futures.trades", "subscribe", ["XYZ_USDT"]),
        ("futures.obu", "unsubscribe", ["ob.BTC_USDT.50"]),
        ("futures.obu", "subscribe", ["ob.BTC_USDT.50"]),
        ("futures.ping", None, None),
        ("futures.obu", "unsubscribe", ["ob.XYZ_USDT.50"]),
        ("futures.obu", "subscribe", ["ob.XYZ_USDT.50"]),
    ]
    assert [m["time"] for m in received[:6]] == [1_700_000_000] * 6
    assert [m["time"] for m in received[-3:]] == [1_700_000_015] * 3

    btc = [e for e in events if isinstance(e, BookUpdate) and e.symbol == "BTC-USDT"]
    # snapshot at order-book id 1000, delta 1001; 1002 lost, so the delta 1003 is a break. The
    # resync's full snapshot is at 1003 (the lost change included), then the delta 1004.
    assert [(b.is_snapshot, b.seq) for b in btc] == [
        (True, 1000), (False, 1001), (True, 1003), (False, 1004)]
    assert btc[0].bids == ((63700.0, 0.1), (63699.9, 0.2))
    assert btc[0].asks == ((63700.1, 0.03), (63700.2, 0.04))
    assert btc[1].bids == ((63700.0, 0.09),)
    assert btc[1].asks == ((63700.1, 0.025), (63700.3, 0.0005))
    assert btc[2].bids == ((63699.9, 0.2), (63699.8, 0.05))
    assert proto.l2.book("BTC-USDT").top_bids(5) == [(63699.9, 0.2), (63699.8, 0.05)]
    assert proto.l2.book("BTC-USDT").top_asks(5) == [(63700.1, 0.025), (63700.2, 0.05),
                                                     (63700.3, 0.0005)]

    tob = [(t.bid_px, t.bid_sz, t.ask_px, t.ask_sz, t.seq) for t in events
           if isinstance(t, TopOfBook) and t.symbol == "BTC-USDT"]
    assert tob == [(63700.0, 0.1, 63700.1, 0.03, 1000), (63700.0, 0.09, 63700.1, 0.025, 1001),
                   (63699.9, 0.2, 63700.1, 0.025, 1003)]

    trades = [(t.trade_id, t.price, t.size, t.side) for t in events if isinstance(t, Trade)]
    assert trades == [("1001", 63700.0, 0.0025, "sell"), ("1002", 63700.1, 0.004, "buy")]
    assert not [e for e in events if getattr(e, "symbol", None) == "XYZ-USDT"
                and not isinstance(e, Health)]


async def test_acks_without_echo_are_attributed_in_order(autojump_clock: MockClock) -> None:
    sim, script = venue(echo=False)
    proto, events = await run_against(sim, script, ("XYZ-USDT", "BTC-USDT"), until_s=1.0)
    subscribed = [(e.symbol, e.detail) for e in events
                  if isinstance(e, Health) and e.event == HealthKind.SUBSCRIBED]
    assert subscribed == [
        ("XYZ-USDT", "futures.book_ticker XYZ_USDT"),
        ("BTC-USDT", "futures.book_ticker BTC_USDT"),
        ("XYZ-USDT", "futures.obu ob.XYZ_USDT.50"),
        ("BTC-USDT", "futures.obu ob.BTC_USDT.50"),
        ("XYZ-USDT", "futures.trades XYZ_USDT"),
        ("BTC-USDT", "futures.trades BTC_USDT"),
    ]
    btc = [e for e in events if isinstance(e, BookUpdate)]
    assert [(b.is_snapshot, b.seq) for b in btc] == [
        (True, 1000), (False, 1001), (False, 1002), (False, 1003)]
    assert proto.decode_errors == {}


async def test_the_fake_refuses_a_second_subscription(autojump_clock: MockClock) -> None:
    sim, _ = venue()
    request = {"time": 1_700_000_000, "id": 9, "channel": "futures.book_ticker",
               "event": "subscribe", "payload": ["BTC_USDT"]}
    with trio.fail_after(CEILING_S):
        async with trio.open_nursery() as nursery:
            await nursery.start(sim.run)
            async with sim.connect(sim.url("gateio"), 1 << 20) as ws:
                await ws.send_message(json.dumps(request))
                replies = [json.loads(await ws.get_message()) for _ in range(2)]
                await ws.send_message(json.dumps(request))
                refusal = json.loads(await ws.get_message())
            nursery.cancel_scope.cancel()
    assert replies[0]["result"] == {"status": "success"}
    assert (replies[0]["id"], replies[0]["payload"]) == (9, ["BTC_USDT"])
    assert replies[1]["result"]["B"] == 1000  # the best bid, in contracts
    assert refusal["error"] == {"code": 2, "message": "Alert sub BTC_USDT"}
    assert refusal["result"] == {"status": "fail"}
