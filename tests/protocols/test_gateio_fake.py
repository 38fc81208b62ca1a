"""The Gate.io plugin against the loopback fake Gate futures server (real sockets, Gate's wire
protocol). Timing runs on trio's ``autojump_clock``: the 15 s ping and the 15 s snapshot deadline
take no real time."""

from __future__ import annotations

import json

import trio
from trio_websocket import WebSocketConnection, open_websocket_url

from core.clock import TrioClock
from core.protocol import Instrument, ProtocolConfig
from core.schema import BookUpdate, Event, Health, HealthKind, TopOfBook, Trade
from core.testing.fake_servers import serve_ws
from plugins.gateio.protocol import GateioProtocol
from tests.fakes.gateio import FakeContract, GateFuturesFake

S = 1_000_000_000
START_NS = 1_700_000_000 * S
CEILING_S = 120.0  # trio seconds (virtual under autojump_clock)
INSTRUMENTS = {
    "BTC-USDT": Instrument(symbol="BTC-USDT", native="BTC_USDT", contract_size=0.0001,
                           tick_size=0.1),
    "XYZ-USDT": Instrument(symbol="XYZ-USDT", native="XYZ_USDT", contract_size=1.0,
                           tick_size=0.001),
}


async def pump(ws: WebSocketConnection, proto: GateioProtocol, clock: TrioClock,
               events: list[Event], until_s: float) -> None:
    """Drive the protocol like the session does: frames in, replies out, deadlines on time."""

    async def flush() -> None:
        for out in proto.frames_to_send():
            await ws.send_message(out)

    end = trio.current_time() + until_s
    await flush()
    while trio.current_time() < end:
        wait = end - trio.current_time()
        deadline = proto.next_deadline()
        if deadline is not None:
            wait = min(wait, max(0.0, (deadline - clock.now_ns()) / S) + 1e-6)
        with trio.move_on_after(wait):
            frame = await ws.get_message()
            events.extend(proto.receive(frame, clock.now_ns()))
            await flush()
            continue
        now = clock.now_ns()
        deadline = proto.next_deadline()
        if deadline is not None and deadline <= now:
            events.extend(proto.on_deadline(now))
            await flush()


def health(events: list[Event]) -> list[tuple[str, str | None]]:
    return [(e.event, e.symbol) for e in events if isinstance(e, Health)]


async def run_against(fake: GateFuturesFake, symbols: tuple[str, ...],
                      until_s: float) -> tuple[GateioProtocol, list[Event]]:
    proto = GateioProtocol(ProtocolConfig(symbols=symbols, channels=("tob", "l2", "trades"),
                                          instruments=INSTRUMENTS))
    events: list[Event] = []
    with trio.fail_after(CEILING_S):
        async with trio.open_nursery() as nursery:
            url = await nursery.start(serve_ws, fake.handler)
            clock = TrioClock(START_NS)
            async with open_websocket_url(url) as ws:
                events.extend(proto.connection_made(clock.now_ns()))
                await pump(ws, proto, clock, events, until_s)
            nursery.cancel_scope.cancel()
    return proto, events


async def test_plugin_against_fake_server(autojump_clock: trio.abc.Clock) -> None:
    fake = GateFuturesFake({"BTC_USDT": FakeContract(bid=63700.0, tick=0.1)}, break_at=2)
    proto, events = await run_against(fake, ("BTC-USDT", "XYZ-USDT"), until_s=20.0)

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
    sent = [(m["channel"], m.get("event"), m.get("payload")) for m in fake.received]
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
    assert [m["time"] for m in fake.received[:6]] == [1_700_000_000] * 6
    assert [m["time"] for m in fake.received[-3:]] == [1_700_000_015] * 3
    assert fake.pings == 1

    btc = [e for e in events if isinstance(e, BookUpdate) and e.symbol == "BTC-USDT"]
    # snapshot 1001, delta 1002-1003, then a delta 1005-1006 after a break (1004 never sent). The
    # resync reaches the fake before its next push (0.02 s later), so the new stream starts at
    # 1007: snapshot, delta 1008-1009, the empty delta 1010-1011 (nothing published, the id
    # advances), and the removal 1012-1013.
    assert [(b.is_snapshot, b.seq) for b in btc] == [
        (True, 1001), (False, 1003), (True, 1007), (False, 1009), (False, 1013)]
    assert btc[0].bids == ((63700.0, 0.1), (63699.9, 0.2))
    assert btc[0].asks == ((63700.1, 0.03), (63700.2, 0.04))
    assert btc[1].bids == ((63700.0, 0.09),)
    assert btc[1].asks == ((63700.3, 0.0005), (63700.1, 0.025))
    assert btc[-1].bids == ((63700.0, 0.0),)
    assert proto.l2.book("BTC-USDT").top_bids(5) == [(63699.9, 0.2)]
    assert proto.l2.book("BTC-USDT").top_asks(5) == [(63700.1, 0.025), (63700.2, 0.04),
                                                     (63700.3, 0.0005)]

    tob = [(t.bid_px, t.bid_sz, t.ask_px, t.ask_sz) for t in events
           if isinstance(t, TopOfBook) and t.symbol == "BTC-USDT"]
    assert tob == [(63700.0, 0.12, 63700.1, 0.03), (63700.0, 0.15, 63700.1, 0.03)]

    trades = [(t.trade_id, t.price, t.size, t.side) for t in events if isinstance(t, Trade)]
    assert trades == [("501", 63700.0, 0.0025, "sell"), ("502", 63700.1, 0.004, "buy")]
    assert not [e for e in events if getattr(e, "symbol", None) == "XYZ-USDT"
                and not isinstance(e, Health)]


async def test_acks_without_echo_are_attributed_in_order(autojump_clock: trio.abc.Clock) -> None:
    fake = GateFuturesFake({"BTC_USDT": FakeContract(bid=100.0, tick=0.5)}, echo=False)
    proto, events = await run_against(fake, ("XYZ-USDT", "BTC-USDT"), until_s=1.0)
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
    assert [(b.is_snapshot, b.seq) for b in btc] == [(True, 1001), (False, 1003), (False, 1007)]
    assert proto.decode_errors == {}


async def test_fake_refuses_a_second_subscription(autojump_clock: trio.abc.Clock) -> None:
    fake = GateFuturesFake({"BTC_USDT": FakeContract(bid=100.0, tick=0.5)})
    request = {"time": 1_700_000_000, "id": 9, "channel": "futures.book_ticker",
               "event": "subscribe", "payload": ["BTC_USDT"]}
    with trio.fail_after(CEILING_S):
        async with trio.open_nursery() as nursery:
            url = await nursery.start(serve_ws, fake.handler)
            async with open_websocket_url(url) as ws:
                await ws.send_message(json.dumps(request))
                replies = [json.loads(await ws.get_message()) for _ in range(3)]
                await ws.send_message(json.dumps(request))
                refusal = json.loads(await ws.get_message())
            nursery.cancel_scope.cancel()
    assert replies[0]["result"] == {"status": "success"}
    assert (replies[0]["id"], replies[0]["payload"]) == (9, ["BTC_USDT"])
    assert [r["result"]["B"] for r in replies[1:]] == [1200, 1500]
    assert refusal["error"] == {"code": 2, "message": "Alert sub BTC_USDT"}
    assert refusal["result"] == {"status": "fail"}
