"""The HTX plugin against the loopback fake HTX server (real sockets, gzip frames, server pings).

Timing runs on trio's ``autojump_clock``: pings every 5 s and the ping-expiry close take no real
time.
"""

from __future__ import annotations

import gzip
import json

import pytest
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, open_websocket_url

from core.clock import TrioClock
from core.protocol import Instrument, ProtocolConfig
from core.schema import BookUpdate, Event, Health, HealthKind, TopOfBook, Trade
from core.testing.fake_servers import serve_ws
from plugins.htx.protocol import HtxProtocol
from tests.fakes.htx import (
    PING_EXPIRED_CODE,
    PING_EXPIRED_REASON,
    FakeHtx,
    depth_tick,
    trade_tick,
)

BTC_BOOK = "market.BTC-USDT.depth.size_20.high_freq"
ETH_BOOK = "market.ETH-USDT.depth.size_20.high_freq"
BTC_TRADES = "market.BTC-USDT.trade.detail"
INSTRUMENTS = {
    "BTC-USDT": Instrument(symbol="BTC-USDT", native="BTC-USDT", contract_size=0.001),
    "ETH-USDT": Instrument(symbol="ETH-USDT", native="ETH-USDT", contract_size=0.01),
    "NOPE-USDT": Instrument(symbol="NOPE-USDT", native="NOPE-USDT", contract_size=1.0),
}
CEILING_S = 120.0  # trio seconds (virtual under autojump_clock)


def script() -> dict[str, list[dict]]:
    return {
        BTC_BOOK: [
            depth_tick("snapshot", [[100.0, 5], [99.5, 2]], [[100.5, 3], [101.0, 8]]),
            depth_tick("update", [[100.0, 6]], []),
            depth_tick("update", [], [[100.4, 1]]),  # the fake skips a version here, once
            depth_tick("update", [[99.5, 0]], []),
        ],
        ETH_BOOK: [
            depth_tick("snapshot", [[2000.0, 10]], [[2000.5, 20]]),
            depth_tick("update", [[2000.1, 4]], []),
        ],
        BTC_TRADES: [trade_tick([(11, 100.5, 3, "buy"), (12, 100.0, 250, "sell")], 0.001)],
    }


async def pump(ws: WebSocketConnection, proto: HtxProtocol, clock: TrioClock,
               events: list[Event], until_s: float) -> None:
    """Feed every frame through the protocol and send its replies until ``until_s``."""
    for frame in proto.frames_to_send():
        await ws.send_message(frame)
    with trio.move_on_after(until_s):
        while True:
            frame = await ws.get_message()
            events.extend(proto.receive(frame, clock.now_ns()))
            for out in proto.urgent_frames_to_send() + proto.frames_to_send():
                await ws.send_message(out)


async def test_plugin_against_fake_server(autojump_clock: trio.abc.Clock) -> None:
    fake = FakeHtx(script(), listed={"BTC-USDT", "ETH-USDT"}, gap_at={BTC_BOOK: 2})
    proto = HtxProtocol(ProtocolConfig(symbols=("BTC-USDT", "ETH-USDT", "NOPE-USDT"),
                                       channels=("tob", "l2", "trades"),
                                       instruments=INSTRUMENTS))
    events: list[Event] = []
    with trio.fail_after(CEILING_S):
        async with trio.open_nursery() as nursery:
            url = await nursery.start(serve_ws, fake.handler)
            clock = TrioClock()
            async with open_websocket_url(url) as ws:
                events.extend(proto.connection_made(clock.now_ns()))
                await pump(ws, proto, clock, events, until_s=16.0)
            nursery.cancel_scope.cancel()

    health = [(e.event, e.symbol) for e in events if isinstance(e, Health)]
    assert health.count((HealthKind.SUBSCRIBE_ERROR, "NOPE-USDT")) == 2  # book and trades
    assert health.count((HealthKind.SUBSCRIBED, "BTC-USDT")) == 2  # book and trades, once each
    assert health.count((HealthKind.SUBSCRIBED, "ETH-USDT")) == 2
    assert health.count((HealthKind.GAP, "BTC-USDT")) == 1
    assert health.count((HealthKind.RESYNCED, "BTC-USDT")) == 1
    assert (HealthKind.GAP, "ETH-USDT") not in health

    # Resync: unsub + sub of the BTC book topic alone, after the original four subscriptions.
    sent = fake.received[0]
    subs = [(next(iter(m)), m[next(iter(m))]) for m in sent if "sub" in m or "unsub" in m]
    assert subs == [("sub", BTC_BOOK), ("sub", BTC_TRADES), ("sub", ETH_BOOK),
                    ("sub", "market.ETH-USDT.trade.detail"),
                    ("sub", "market.NOPE-USDT.depth.size_20.high_freq"),
                    ("sub", "market.NOPE-USDT.trade.detail"),
                    ("unsub", BTC_BOOK), ("sub", BTC_BOOK)]

    btc = [e for e in events if isinstance(e, BookUpdate) and e.symbol == "BTC-USDT"]
    # snapshot, update 1001; gap at 1003 (book invalid); then the replay: snapshot + 3 updates.
    assert [(b.is_snapshot, b.seq) for b in btc] == [
        (True, 1000), (False, 1001), (True, 1004), (False, 1005), (False, 1006), (False, 1007)]
    assert btc[0].bids == ((100.0, 0.005), (99.5, 0.002))
    assert btc[0].asks == ((100.5, 0.003), (101.0, 0.008))
    assert btc[-1].bids == ((99.5, 0.0),)
    assert proto.book.book("BTC-USDT").top_bids(3) == [(100.0, 0.006)]
    assert proto.book.book("BTC-USDT").top_asks(3) == [(100.4, 0.001), (100.5, 0.003),
                                                       (101.0, 0.008)]
    tob = [e for e in events if isinstance(e, TopOfBook) and e.symbol == "BTC-USDT"]
    assert (tob[-1].bid_px, tob[-1].bid_sz, tob[-1].ask_px, tob[-1].ask_sz) == (
        100.0, 0.006, 100.4, 0.001)

    eth = [e for e in events if isinstance(e, BookUpdate) and e.symbol == "ETH-USDT"]
    assert [(b.is_snapshot, b.bids, b.asks) for b in eth] == [
        (True, ((2000.0, 0.1),), ((2000.5, 0.2),)), (False, ((2000.1, 0.04),), ())]

    trades = [(t.trade_id, t.price, t.size, t.side) for t in events if isinstance(t, Trade)]
    assert trades == [("11", 100.5, 0.003, "buy"), ("12", 100.0, 0.25, "sell")]

    # Three server pings in 16 s, each answered with its own number; the socket stayed open.
    assert fake.pongs_ok == 3
    assert fake.pongs_bad == []
    assert fake.closed == []
    assert proto.decode_errors == {}


async def answer_first_ping_only(ws: WebSocketConnection, pings: list[int]) -> None:
    while True:
        msg = json.loads(gzip.decompress(await ws.get_message()))
        pings.append(msg["ping"])
        if len(pings) == 1:
            await ws.send_message(json.dumps({"pong": msg["ping"]}))


async def test_fake_closes_when_pongs_stop(autojump_clock: trio.abc.Clock) -> None:
    fake = FakeHtx({"market.BTC-USDT.trade.detail": []})
    pings: list[int] = []
    with trio.fail_after(CEILING_S):
        async with trio.open_nursery() as nursery:
            url = await nursery.start(serve_ws, fake.handler)
            async with open_websocket_url(url) as ws:
                start = trio.current_time()
                await ws.send_message(json.dumps({"sub": "market.BTC-USDT.trade.detail",
                                                  "id": "1"}))
                ack = json.loads(gzip.decompress(await ws.get_message()))
                assert ack["status"] == "ok"
                assert ack["subbed"] == "market.BTC-USDT.trade.detail"
                with pytest.raises(ConnectionClosed) as closed:
                    await answer_first_ping_only(ws, pings)
                elapsed = trio.current_time() - start
            nursery.cancel_scope.cancel()
    assert closed.value.reason is not None
    assert closed.value.reason.code == PING_EXPIRED_CODE
    assert closed.value.reason.reason == PING_EXPIRED_REASON
    # Pings at 5 (answered), 10, 15, 20, 25 s; four unanswered when the 30 s one is due.
    assert pings == [1_700_000_005_000, 1_700_000_010_000, 1_700_000_015_000,
                     1_700_000_020_000, 1_700_000_025_000]
    assert 29.9 <= elapsed <= 30.5
    assert fake.pongs_ok == 1
    assert fake.closed == [(PING_EXPIRED_CODE, PING_EXPIRED_REASON)]
