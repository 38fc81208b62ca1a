"""The Bitget protocol against the fake Bitget server over a real loopback websocket (trio).

The test drives :class:`BitgetProtocol` itself (receive, reply, deadlines on trio's virtual
clock), so these checks cover the wire exchange with the fake venue without the session.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import trio
from trio.testing import MockClock
from trio_websocket import ConnectionClosed, WebSocketConnection, open_websocket_url

from core.protocol import ProtocolConfig
from core.schema import BookUpdate, Event, Health, HealthKind, TopOfBook, Trade
from core.testing.fake_servers import serve_ws
from plugins.bitget.protocol import BitgetProtocol
from tests.fakes.bitget import BookScript, FakeBitget, Wire, book_states

S = 1_000_000_000
MS = 1_000_000
T0 = 1_700_000_000 * S
CEILING_S = 600  # virtual seconds under autojump_clock

def btc_script() -> BookScript:
    bids: Wire = [(f"{30000 - i}.{i % 10}0", f"{i + 1}.000") for i in range(30)]
    asks: Wire = [(f"{30001 + i}.5", f"0.{i + 1:02d}0") for i in range(30)]
    updates: list[tuple[Wire, Wire]] = [
        ([("30000.00", "7.5")], []),
        ([], [("30001.5", "0")]),
        ([("29999.10", "0"), ("30000.50", "0.25")], [("30001.9", "1.10")]),
        ([("29998.20", "4.000")], [("30002.5", "0.030")]),
        ([], [("30003.5", "0.5"), ("30004.5", "0")]),
        ([("30000.50", "0")], []),
        ([("29990.00", "3")], [("30001.5", "2")]),
        ([("30000.00", "8")], []),
    ]
    return BookScript(bids, asks, updates, seq0=2**53 + 1, seq_step=3, ts0_ms=1_700_000_100_000)


def eth_script() -> BookScript:
    bids: Wire = [("2000.10", "1.5"), ("2000.00", "2"), ("1999.90", "3.25")]
    asks: Wire = [("2000.20", "0.5"), ("2000.30", "1")]
    updates: list[tuple[Wire, Wire]] = [
        ([("2000.10", "0")], []),
        ([], [("2000.20", "0.75")]),
        ([("2000.15", "0.1")], [("2000.40", "9")]),
    ]
    return BookScript(bids, asks, updates, seq0=77, seq_step=1, ts0_ms=1_700_000_200_000)


class Driver:
    """Feeds frames from the fake into the protocol and sends its replies, on trio's clock."""

    def __init__(self, proto: BitgetProtocol, ws: WebSocketConnection) -> None:
        self.proto = proto
        self.ws = ws
        self.base = trio.current_time()
        self.events: list[Event] = []
        self.sent: list[str] = []
        self.started_ns = 0

    def now(self) -> int:
        return T0 + int((trio.current_time() - self.base) * S)

    async def flush(self) -> None:
        for frame in self.proto.frames_to_send():
            self.sent.append(frame)
            await self.ws.send_message(frame)

    async def start(self) -> None:
        self.started_ns = self.now()
        self.events += self.proto.connection_made(self.started_ns)
        await self.flush()

    async def run_until(self, done: Callable[[list[Event]], bool], limit_s: float) -> None:
        with trio.fail_after(limit_s):
            while not done(self.events):
                deadline = self.proto.next_deadline()
                wait = 1.0 if deadline is None else max(0.0, (deadline - self.now()) / S)
                with trio.move_on_after(wait):
                    frame = await self.ws.get_message()
                    self.events += self.proto.receive(frame, self.now())
                    await self.flush()
                    continue
                self.events += self.proto.on_deadline(self.now())
                await self.flush()

    def health(self, symbol: str | None = None) -> list[tuple[str | None, str]]:
        return [(e.symbol, e.event) for e in self.events
                if isinstance(e, Health) and (symbol is None or e.symbol == symbol)]


def book_of(proto: BitgetProtocol, sym: str) -> tuple[list[tuple[float, float]], ...]:
    book = proto.l2.book(sym)
    return book.top_bids(1000), book.top_asks(1000)


def venue_book(fake: FakeBitget, inst: str) -> tuple[list[tuple[float, float]], ...]:
    bids, asks = fake.live[inst].sides()
    return ([(float(p), float(s)) for p, s in bids], [(float(p), float(s)) for p, s in asks])


def updates(events: list[Event], sym: str) -> list[BookUpdate]:
    return [e for e in events if isinstance(e, BookUpdate) and e.symbol == sym]


async def test_checksum_mismatch_resyncs_one_symbol_on_the_wire(autojump_clock: MockClock) -> None:
    fake = FakeBitget(books={"BTCUSDT": btc_script(), "ETHUSDT": eth_script()},
                      bad_checksum_at={"BTCUSDT": 2})
    proto = BitgetProtocol(ProtocolConfig(symbols=("BTC-USDT", "ETH-USDT"), channels=("l2",)))
    with trio.fail_after(CEILING_S):
        async with trio.open_nursery() as nursery:
            url = await nursery.start(serve_ws, fake.handler)
            async with open_websocket_url(url) as ws:
                d = Driver(proto, ws)
                await d.start()
                final_btc = fake.live["BTCUSDT"].script.seq0 + 8 * 3
                await d.run_until(lambda ev: proto.l2.last_seq("BTC-USDT") == final_btc
                                  and proto.l2.last_seq("ETH-USDT") == 80, 60)
            nursery.cancel_scope.cancel()

    assert d.health("BTC-USDT") == [
        ("BTC-USDT", HealthKind.SUBSCRIBED), ("BTC-USDT", HealthKind.SNAPSHOT),
        ("BTC-USDT", HealthKind.CHECKSUM_MISMATCH), ("BTC-USDT", HealthKind.SUBSCRIBED),
        ("BTC-USDT", HealthKind.RESYNCED)]
    assert d.health("ETH-USDT") == [("ETH-USDT", HealthKind.SUBSCRIBED),
                                    ("ETH-USDT", HealthKind.SNAPSHOT)]
    assert d.sent == [
        '{"op":"subscribe","args":[{"instType":"USDT-FUTURES","channel":"books","instId":'
        '"BTCUSDT"},{"instType":"USDT-FUTURES","channel":"books","instId":"ETHUSDT"}]}',
        '{"op":"unsubscribe","args":[{"instType":"USDT-FUTURES","channel":"books","instId":'
        '"BTCUSDT"}]}',
        '{"op":"subscribe","args":[{"instType":"USDT-FUTURES","channel":"books","instId":'
        '"BTCUSDT"}]}']
    assert fake.subscriptions[("books", "BTCUSDT")] == 2
    assert fake.subscriptions[("books", "ETHUSDT")] == 1
    # ETH: the snapshot and every update, seq exact.
    eth = updates(d.events, "ETH-USDT")
    assert [(u.seq, u.is_snapshot) for u in eth] == [
        (77, True), (78, False), (79, False), (80, False)]
    ids = [u.msg_id for u in eth]
    assert ids == sorted(set(ids)) and ids[0] >= eth[0].ts_local  # increasing, time-seeded
    assert eth[3].bids == ((2000.15, 0.1),)
    assert eth[3].asks == ((2000.4, 9.0),)
    assert eth[3].ts_exchange == (1_700_000_200_000 + 30) * MS
    # BTC: snapshot, updates 0 and 1, then (update 2 rejected) a fresh snapshot and the rest.
    seq0 = 2**53 + 1
    btc = updates(d.events, "BTC-USDT")
    assert [(u.seq, u.is_snapshot) for u in btc] == [
        (seq0, True), (seq0 + 3, False), (seq0 + 6, False), (seq0 + 9, True),
        (seq0 + 12, False), (seq0 + 15, False), (seq0 + 18, False), (seq0 + 21, False),
        (seq0 + 24, False)]
    assert book_of(proto, "BTC-USDT") == venue_book(fake, "BTCUSDT")
    assert book_of(proto, "ETH-USDT") == venue_book(fake, "ETHUSDT")
    assert proto.decode_errors == {}


async def test_lost_update_is_a_gap_and_resyncs(autojump_clock: MockClock) -> None:
    fake = FakeBitget(books={"BTCUSDT": btc_script()}, lost_update_at={"BTCUSDT": 4})
    proto = BitgetProtocol(ProtocolConfig(symbols=("BTC-USDT",), channels=("l2",)))
    seq0 = 2**53 + 1
    with trio.fail_after(CEILING_S):
        async with trio.open_nursery() as nursery:
            url = await nursery.start(serve_ws, fake.handler)
            async with open_websocket_url(url) as ws:
                d = Driver(proto, ws)
                await d.start()
                await d.run_until(lambda ev: proto.l2.last_seq("BTC-USDT") == seq0 + 24, 60)
            nursery.cancel_scope.cancel()
    assert d.health() == [
        ("BTC-USDT", HealthKind.SUBSCRIBED), ("BTC-USDT", HealthKind.SNAPSHOT),
        ("BTC-USDT", HealthKind.GAP), ("BTC-USDT", HealthKind.SUBSCRIBED),
        ("BTC-USDT", HealthKind.RESYNCED)]
    gap = next(e for e in d.events if isinstance(e, Health) and e.event == HealthKind.GAP)
    assert gap.detail == f"book at seq={seq0 + 12}, update needs {seq0 + 15} (seq={seq0 + 18})"
    assert book_of(proto, "BTC-USDT") == venue_book(fake, "BTCUSDT")


async def test_books1_trades_and_unknown_symbol(autojump_clock: MockClock) -> None:
    rows = [(1_700_000_300_000 + i, f"3000{i}.5", f"0.{i + 1}", "buy" if i % 2 else "sell",
             str(900 + i)) for i in range(5)]
    script = btc_script()
    fake = FakeBitget(books={"BTCUSDT": script}, trades={"BTCUSDT": rows}, trade_snapshot_n=3)
    proto = BitgetProtocol(ProtocolConfig(symbols=("BTC-USDT", "NOPE-USDT"),
                                          channels=("tob", "trades")))
    states = book_states(script)
    with trio.fail_after(CEILING_S):
        async with trio.open_nursery() as nursery:
            url = await nursery.start(serve_ws, fake.handler)
            async with open_websocket_url(url) as ws:
                d = Driver(proto, ws)
                await d.start()
                await d.run_until(lambda ev: proto.tob.last_seq("BTC-USDT") == states[-1][2]
                                  and sum(isinstance(e, Trade) for e in ev) == 5, 60)
            nursery.cancel_scope.cancel()
    assert sorted(d.health()) == sorted([
        ("BTC-USDT", HealthKind.SUBSCRIBED), ("BTC-USDT", HealthKind.SUBSCRIBED),
        ("NOPE-USDT", HealthKind.SUBSCRIBE_ERROR), ("NOPE-USDT", HealthKind.SUBSCRIBE_ERROR),
        ("BTC-USDT", HealthKind.SNAPSHOT)])
    errors = [e.detail for e in d.events
              if isinstance(e, Health) and e.event == HealthKind.SUBSCRIBE_ERROR]
    assert all("30001" in x and "NOPEUSDT" in x for x in errors)
    assert proto.next_deadline() == d.started_ns + 30 * S  # no snapshot deadline left for NOPE-USDT
    trades = [(t.ts_exchange, t.price, t.size, t.side, t.trade_id)
              for t in d.events if isinstance(t, Trade)]
    assert trades == [(ts * MS, float(px), float(sz), side, tid) for ts, px, sz, side, tid in rows]
    want_tob: list[tuple[float, float, float, float, int]] = []
    for bids, asks, seq, _ in states:
        top = (float(bids[0][0]), float(bids[0][1]), float(asks[0][0]), float(asks[0][1]), seq)
        if not want_tob or want_tob[-1][:4] != top[:4]:
            want_tob.append(top)
    got_tob = [(t.bid_px, t.bid_sz, t.ask_px, t.ask_sz, t.seq)
               for t in d.events if isinstance(t, TopOfBook)]
    assert got_tob == want_tob
    assert len(got_tob) >= 5


async def test_server_closes_without_ping(autojump_clock: MockClock) -> None:
    fake = FakeBitget(books={"BTCUSDT": btc_script()}, ping_timeout_s=120.0)
    with trio.fail_after(CEILING_S):
        async with trio.open_nursery() as nursery:
            url = await nursery.start(serve_ws, fake.handler)
            async with open_websocket_url(url) as ws:
                start = trio.current_time()
                with pytest.raises(ConnectionClosed) as info:
                    await ws.get_message()
                elapsed = trio.current_time() - start
            nursery.cancel_scope.cancel()
    assert 120.0 <= elapsed < 121.0
    assert info.value.reason.reason == "no ping received"
    assert fake.closed_for_no_ping == [0]


async def test_text_pings_keep_the_connection_open(autojump_clock: MockClock) -> None:
    fake = FakeBitget(trades={"BTCUSDT": [(1_700_000_000_000, "1", "1", "buy", "1")]},
                      ping_timeout_s=120.0, trade_snapshot_n=1)
    proto = BitgetProtocol(ProtocolConfig(symbols=("BTC-USDT",), channels=("trades",)))
    with trio.fail_after(CEILING_S):
        async with trio.open_nursery() as nursery:
            url = await nursery.start(serve_ws, fake.handler)
            async with open_websocket_url(url) as ws:
                d = Driver(proto, ws)
                await d.start()
                await d.run_until(lambda ev: trio.current_time() - d.base >= 400, 500)
                elapsed = trio.current_time() - d.base
                assert not ws.closed
            nursery.cancel_scope.cancel()
    assert fake.closed_for_no_ping == []
    # One ping every 30 s, each answered, so the 120 s server timeout never fires.
    assert fake.received[0].count("ping") == int(elapsed // 30) >= 13
    assert d.sent.count("ping") == fake.received[0].count("ping")
    assert d.health() == [("BTC-USDT", HealthKind.SUBSCRIBED)]
    assert [t.trade_id for t in d.events if isinstance(t, Trade)] == ["1"]
    assert proto.decode_errors == {}
