"""The Bitget protocol against the fake Bitget venue, over in-memory streams on trio's mock clock.

The real session drives :class:`BitgetProtocol` (receive, reply, deadlines in virtual time), so
these checks cover the wire exchange with the fake venue: checksums, sequence breaks, ``books1``,
trades, refusals and the text ping/pong.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from decimal import Decimal

import pytest
import trio
from trio.testing import MockClock
from trio_websocket import ConnectionClosed

from core.bus import Bus
from core.clock import TrioClock
from core.protocol import ProtocolConfig
from core.schema import BookUpdate, Event, Health, HealthKind, TopOfBook, Trade
from core.session import Session
from core.sim.market import Listing, Market, Script, Step, load_text
from core.sim.server import Simulation
from core.testing.faults import Fault, FaultPlan
from plugins.bitget.fake import FIRST_SEQ, BitgetSpeaker
from plugins.bitget.protocol import BitgetProtocol

S = 1_000_000_000
MS = 1_000_000
T0 = 1_700_000_000 * S
CEILING_S = 600  # virtual seconds
S0 = FIRST_SEQ  # the venue's seq of each book before the first change (above 2^53)
D = Decimal
BTC = Listing("bitget", "BTC-USDT", D("0.01"), D("0.001"))
ETH = Listing("bitget", "ETH-USDT", D("0.01"), D("0.01"))
Wire = list[tuple[str, str]]

BTC_BIDS: Wire = [(f"{30000 - i}.{i % 10}0", f"{i + 1}.000") for i in range(30)]
BTC_ASKS: Wire = [(f"{30001 + i}.50", f"0.{i + 1:02d}0") for i in range(30)]
BTC_UPDATES: list[tuple[Wire, Wire]] = [
    ([("30000.00", "7.5")], []),
    ([], [("30001.50", "0")]),
    ([("29999.10", "0"), ("30000.50", "0.25")], [("30001.90", "1.10")]),
    ([("29998.20", "4.000")], [("30002.50", "0.030")]),
    ([], [("30003.50", "0.5"), ("30004.50", "0")]),
    ([("30000.50", "0")], []),
    ([("29990.00", "3")], [("30001.50", "2")]),
    ([("30000.00", "8")], []),
]
ETH_BIDS: Wire = [("2000.10", "1.5"), ("2000.00", "2"), ("1999.90", "3.25")]
ETH_ASKS: Wire = [("2000.20", "0.5"), ("2000.30", "1")]
ETH_UPDATES: list[tuple[Wire, Wire]] = [
    ([("2000.10", "0")], []),
    ([], [("2000.20", "0.75")]),
    ([("2000.15", "0.1")], [("2000.40", "9")]),
]


def venue(*faults: Fault, trades: Sequence[tuple[str, str, str]] = (),
          recent: Sequence[tuple[str, str, str]] = (), eth: bool = True
          ) -> tuple[Simulation, Script]:
    """BTC (30 levels a side) and ETH books, then their updates (and ``trades`` of BTC);
    ``recent`` trades happened before anyone subscribed (the venue's trade snapshot)."""
    market = Market([BTC, ETH])
    load_text(market, "bitget", "BTC-USDT", BTC_BIDS, BTC_ASKS)
    load_text(market, "bitget", "ETH-USDT", ETH_BIDS, ETH_ASKS)
    for i, (px, size, side) in enumerate(recent):
        market.print_trade("bitget", "BTC-USDT", T0 - (len(recent) - i) * MS, BTC.ticks(px),
                           BTC.lots(size), side)  # type: ignore[arg-type]
    steps = [Step("BTC-USDT", bids=b, asks=a) for b, a in BTC_UPDATES]
    if eth:
        for i, (b, a) in enumerate(ETH_UPDATES):
            steps.insert(2 * i + 1, Step("ETH-USDT", bids=b, asks=a))
    steps += [Step("BTC-USDT", trades=[t]) for t in trades]
    sim = Simulation(market, {"bitget": BitgetSpeaker(market)}, clock=TrioClock(T0),
                     faults={"bitget": FaultPlan(*faults)})
    return sim, Script("bitget", steps, interval_s=0.05)


async def run(sim: Simulation, script: Script | None, proto: BitgetProtocol,
              seconds: float, before_stop: Callable[[], None] | None = None) -> list[Event]:
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
            if script is not None:
                nursery.start_soon(sim.play, script)
            assert sim.clock is not None
            nursery.start_soon(Session(proto, bus, url=sim.url("bitget"), clock=sim.clock,
                                       connect=sim.connect).run)
            await trio.sleep(seconds)
            if before_stop is not None:
                before_stop()
            nursery.cancel_scope.cancel()
    return events


def health(events: list[Event], symbol: str | None = None) -> list[tuple[str | None, str]]:
    return [(e.symbol, e.event) for e in events if isinstance(e, Health) and e.symbol is not None
            and (symbol is None or e.symbol == symbol)]


def book_of(proto: BitgetProtocol, sym: str) -> tuple[list[tuple[float, float]], ...]:
    book = proto.l2.book(sym)
    return book.top_bids(1000), book.top_asks(1000)


def venue_book(sim: Simulation, sym: str) -> tuple[list[tuple[float, float]], ...]:
    return tuple(sim.speakers["bitget"].true_view(sym))


def updates(events: list[Event], sym: str) -> list[BookUpdate]:
    return [e for e in events if isinstance(e, BookUpdate) and e.symbol == sym]


def client_frames(sim: Simulation) -> list[str | bytes]:
    return sim.speakers["bitget"].sessions[0].received


async def test_checksum_mismatch_resyncs_one_symbol_on_the_wire(autojump_clock: MockClock
                                                                ) -> None:
    sim, script = venue(Fault("bad_checksum", symbol="BTC-USDT", skip=2))
    proto = BitgetProtocol(ProtocolConfig(symbols=("BTC-USDT", "ETH-USDT"), channels=("l2",)))
    events = await run(sim, script, proto, 5.0)
    assert script.done

    assert health(events, "BTC-USDT") == [
        ("BTC-USDT", HealthKind.SUBSCRIBED), ("BTC-USDT", HealthKind.SNAPSHOT),
        ("BTC-USDT", HealthKind.CHECKSUM_MISMATCH), ("BTC-USDT", HealthKind.SUBSCRIBED),
        ("BTC-USDT", HealthKind.RESYNCED)]
    assert health(events, "ETH-USDT") == [("ETH-USDT", HealthKind.SUBSCRIBED),
                                          ("ETH-USDT", HealthKind.SNAPSHOT)]
    assert client_frames(sim) == [
        '{"op":"subscribe","args":[{"instType":"USDT-FUTURES","channel":"books","instId":'
        '"BTCUSDT"},{"instType":"USDT-FUTURES","channel":"books","instId":"ETHUSDT"}]}',
        '{"op":"unsubscribe","args":[{"instType":"USDT-FUTURES","channel":"books","instId":'
        '"BTCUSDT"}]}',
        '{"op":"subscribe","args":[{"instType":"USDT-FUTURES","channel":"books","instId":'
        '"BTCUSDT"}]}']
    # ETH: the snapshot and every update, seq exact.
    eth = updates(events, "ETH-USDT")
    assert [(u.seq, u.is_snapshot) for u in eth] == [
        (S0, True), (S0 + 1, False), (S0 + 2, False), (S0 + 3, False)]
    ids = [u.msg_id for u in eth]
    assert ids == sorted(set(ids)) and ids[0] >= eth[0].ts_local  # increasing, time-seeded
    assert eth[3].bids == ((2000.15, 0.1),)
    assert eth[3].asks == ((2000.4, 9.0),)
    # BTC: snapshot, updates 0 and 1, then (update 2 rejected) a fresh snapshot of the book as
    # the venue has it by then, and every update after it, seq consecutive.
    btc = updates(events, "BTC-USDT")
    seqs = [(u.seq, u.is_snapshot) for u in btc]
    assert seqs[:3] == [(S0, True), (S0 + 1, False), (S0 + 2, False)]
    resync_seq, resync_snapshot = seqs[3]
    assert resync_snapshot and resync_seq >= S0 + 3
    assert seqs[4:] == [(s, False) for s in range(resync_seq + 1, S0 + len(BTC_UPDATES) + 1)]
    assert book_of(proto, "BTC-USDT") == venue_book(sim, "BTC-USDT")
    assert book_of(proto, "ETH-USDT") == venue_book(sim, "ETH-USDT")
    assert proto.decode_errors == {}


async def test_lost_update_is_a_gap_and_resyncs(autojump_clock: MockClock) -> None:
    sim, script = venue(Fault("drop_delta", symbol="BTC-USDT", skip=4), eth=False)
    proto = BitgetProtocol(ProtocolConfig(symbols=("BTC-USDT",), channels=("l2",)))
    events = await run(sim, script, proto, 5.0)
    assert health(events) == [
        ("BTC-USDT", HealthKind.SUBSCRIBED), ("BTC-USDT", HealthKind.SNAPSHOT),
        ("BTC-USDT", HealthKind.GAP), ("BTC-USDT", HealthKind.SUBSCRIBED),
        ("BTC-USDT", HealthKind.RESYNCED)]
    gap = next(e for e in events if isinstance(e, Health) and e.event == HealthKind.GAP)
    assert gap.detail == f"book at seq={S0 + 4}, update needs {S0 + 5} (seq={S0 + 6})"
    assert book_of(proto, "BTC-USDT") == venue_book(sim, "BTC-USDT")


async def test_books1_trades_and_unknown_symbol(autojump_clock: MockClock) -> None:
    recent = [("30000.50", "0.1", "sell"), ("30001.50", "0.2", "buy"), ("30000.50", "0.3", "sell")]
    later = [("30001.50", "0.4", "buy"), ("30000.50", "0.5", "sell")]
    sim, script = venue(trades=later, recent=recent, eth=False)
    proto = BitgetProtocol(ProtocolConfig(symbols=("BTC-USDT", "NOPE-USDT"),
                                          channels=("tob", "trades")))
    deadlines: list[int | None] = []
    events = await run(sim, script, proto, 5.0,
                       before_stop=lambda: deadlines.append(proto.next_deadline()))
    assert script.done
    # no snapshot deadline left for NOPE-USDT: only the first 30 s ping is due
    assert deadlines == [T0 + 30 * S]
    assert sorted(health(events)) == sorted([
        ("BTC-USDT", HealthKind.SUBSCRIBED), ("BTC-USDT", HealthKind.SUBSCRIBED),
        ("NOPE-USDT", HealthKind.SUBSCRIBE_ERROR), ("NOPE-USDT", HealthKind.SUBSCRIBE_ERROR),
        ("BTC-USDT", HealthKind.SNAPSHOT)])
    errors = [e.detail for e in events
              if isinstance(e, Health) and e.event == HealthKind.SUBSCRIBE_ERROR]
    assert all("30001" in x and "NOPEUSDT" in x for x in errors)
    trades = [(t.price, t.size, t.side, t.trade_id) for t in events if isinstance(t, Trade)]
    assert trades == [(float(px), float(sz), side, str(1001 + i))
                      for i, (px, sz, side) in enumerate([*recent, *later])]
    # books1: the best level at subscription, then every change of it
    book = ({D(p): s for p, s in BTC_BIDS}, {D(p): s for p, s in BTC_ASKS})
    want: list[tuple[float, float, float, float]] = []
    for ub, ua in [([], []), *BTC_UPDATES]:
        for side, levels in ((book[0], ub), (book[1], ua)):
            for px, size in levels:
                if D(size) == 0:
                    side.pop(D(px), None)
                else:
                    side[D(px)] = size
        bid, ask = max(book[0]), min(book[1])
        top = (float(bid), float(book[0][bid]), float(ask), float(book[1][ask]))
        if not want or want[-1] != top:
            want.append(top)
    got = [(t.bid_px, t.bid_sz, t.ask_px, t.ask_sz) for t in events if isinstance(t, TopOfBook)]
    assert got == want
    assert len(got) >= 5


async def test_server_closes_without_ping(autojump_clock: MockClock) -> None:
    sim, _ = venue()
    with trio.fail_after(CEILING_S):
        async with trio.open_nursery() as nursery:
            await nursery.start(sim.run)
            async with sim.connect(sim.url("bitget"), 1 << 20) as ws:
                start = trio.current_time()
                with pytest.raises(ConnectionClosed) as info:
                    await ws.get_message()
                elapsed = trio.current_time() - start
            nursery.cancel_scope.cancel()
    assert 120.0 <= elapsed < 121.0
    assert info.value.reason is not None and info.value.reason.reason == "no ping received"
    assert sim.speakers["bitget"].closed_for_no_ping == [0]  # type: ignore[attr-defined]


async def test_text_pings_keep_the_connection_open(autojump_clock: MockClock) -> None:
    sim, _ = venue(recent=[("30000.50", "1", "buy")])
    proto = BitgetProtocol(ProtocolConfig(symbols=("BTC-USDT",), channels=("trades",)))
    events = await run(sim, None, proto, 400.0)
    assert sim.speakers["bitget"].closed_for_no_ping == []  # type: ignore[attr-defined]
    assert len(sim.venues["bitget"].connections) == 1
    # One ping every 30 s, each answered, so the 120 s server timeout never fires.
    assert client_frames(sim).count("ping") == 400 // 30
    assert health(events) == [("BTC-USDT", HealthKind.SUBSCRIBED)]
    assert [t.trade_id for t in events if isinstance(t, Trade)] == ["1001"]
    assert proto.decode_errors == {}
