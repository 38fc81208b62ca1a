"""End to end: the CLI against the fake OKX on loopback (``plugins/okx/fake.py``: websocket with
raw-deflate binary pushes + REST instruments), checking the Parquet tables value by value with
sizes in base units (contracts x ``ctVal``). One ``books`` update of BTC-USDT carries a wrong
checksum: that book alone is resubscribed and ``resynced``; idle updates and a sequence reset are
no gaps."""

from __future__ import annotations

import json
import random
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal
from functools import partial
from itertools import groupby
from pathlib import Path

import polars as pl
import trio

from core.bus import Bus
from core.clock import TrioClock
from core.codec import MS_NS, S_NS
from core.protocol import ProtocolConfig
from core.run import async_main
from core.schema import Event, Health
from core.session import Backoff, Session
from core.sim.market import Market, MarketEvent, Script, Step, TradePrint, load_text
from core.sim.server import Simulation
from core.testing.faults import Fault, FaultPlan
from plugins.okx.fake import FIRST_SEQ, OkxSpeaker
from plugins.okx.protocol import OkxProtocol
from tests.session.sims import OKX_BTC, OKX_ETH, endpoints, interleave, serving

CEILING_S = 40
SYMBOLS = ("BTC-USDT", "ETH-USDT")
RESET_TO = 1_000
Wire = list[tuple[str, str]]
Top = tuple[float, float, float, float]


class RecordingOkx(OkxSpeaker):
    """The fake OKX, remembering the top of book at every ``seqId`` and every trade."""

    def __init__(self, market: Market) -> None:
        super().__init__(market)
        self.tops: dict[tuple[str, int], Top] = {}
        self.trades: dict[str, list[TradePrint]] = {s: [] for s in self.symbols()}
        for symbol in self.symbols():
            self._remember_top(symbol)

    def observe(self, event: MarketEvent) -> None:
        super().observe(event)
        if isinstance(event, TradePrint):
            self.trades[event.symbol].append(event)
        else:
            self._remember_top(event.symbol)

    def _remember_top(self, symbol: str) -> None:
        listing = self.listing_of(symbol)
        book = self.book(symbol)
        (bp, bq), (ap, aq) = book.top("bid", 1)[0], book.top("ask", 1)[0]
        self.tops[(symbol, self.seq.get(symbol, FIRST_SEQ))] = (
            float(listing.price(bp)), float(listing.size(bq)), float(listing.price(ap)),
            float(listing.size(aq)))


def swap_steps(symbol: str, mid: float, ct_val: str, steps: int, idle_at: int | None = None
               ) -> tuple[Wire, Wire, list[Step]]:
    """A book of 30 levels a side (more than the 25 the checksum covers), one level changed per
    step, a trade every other step; sizes written in contracts of ``ct_val`` and given to the
    market in base units. Before step ``idle_at`` the market pauses long enough for idle
    updates."""
    def px(x: float) -> str:
        return f"{x:.1f}"

    def base(contracts: int | str) -> str:
        return str(Decimal(contracts) * Decimal(ct_val))

    bids: Wire = [(px(mid - 0.1 * i), base(10 + i)) for i in range(30)]
    asks: Wire = [(px(mid + 0.1 * (i + 1)), base(20 + i)) for i in range(30)]
    out: list[Step] = []
    for n in range(steps):
        if n % 3 == 0:
            b, a = [(px(mid - 0.1 * (n % 7)), base(5 + n))], []
        elif n % 3 == 1:
            b, a = [], [(px(mid + 0.1 * (1 + n % 4)), base(7 + n))]
        else:
            b, a = [(px(mid - 0.1 * 29), base(0 if n % 2 else 3))], []
        trades = [(px(mid), base(1 + n % 4), "buy" if n % 4 == 0 else "sell")] \
            if n % 2 == 0 else []
        out.append(Step(symbol, bids=b, asks=a, trades=trades,
                        pause_s=0.7 if n == idle_at else 0.0))
    return bids, asks, out


def okx_market() -> tuple[Simulation, Script, RecordingOkx, Fault]:
    market = Market([OKX_BTC, OKX_ETH])
    btc_bids, btc_asks, btc = swap_steps("BTC-USDT", 65000.0, "0.01", 90, idle_at=10)
    eth_bids, eth_asks, eth = swap_steps("ETH-USDT", 3000.0, "0.1", 90)
    load_text(market, "okx", "BTC-USDT", btc_bids, btc_asks)
    load_text(market, "okx", "ETH-USDT", eth_bids, eth_asks)
    speaker = RecordingOkx(market)
    speaker.deflate = True
    speaker.idle_ns = S_NS // 4
    speaker.reset_sequence("BTC-USDT", RESET_TO, after_changes=45)
    bad = Fault("bad_checksum", symbol="BTC-USDT", skip=25)
    sim = Simulation(market, {"okx": speaker}, clock=TrioClock(),
                     faults={"okx": FaultPlan(bad)})
    return sim, Script("okx", interleave(btc, eth), interval_s=0.01), speaker, bad


def read(out: Path, table: str, *, by_time: bool = True) -> pl.DataFrame:
    files = sorted(out.glob(f"{table}/exchange=okx/date=*/*.parquet"))
    assert files, f"no {table} files under {out}"
    rows = pl.concat([pl.read_parquet(f) for f in files])
    return rows.sort("ts_local", maintain_order=True) if by_time else rows


def rebuild(l2: pl.DataFrame) -> tuple[dict[float, float], dict[float, float]]:
    bids: dict[float, float] = {}
    asks: dict[float, float] = {}
    for (_, snap), group in l2.group_by(["msg_id", "is_snapshot"], maintain_order=True):
        if snap:
            bids.clear()
            asks.clear()
        for side, price, size in group.select("side", "price", "size").rows():
            book = bids if side == "bid" else asks
            if size == 0:
                book.pop(price, None)
            else:
                book[price] = size
    return bids, asks


def books_subscribed(speaker: OkxSpeaker) -> Counter[str]:
    """How many times each instrument's ``books`` was subscribed, over every connection."""
    count: Counter[str] = Counter()
    for session in speaker.sessions:
        for frame in session.received:
            if frame == "ping":
                continue
            msg = json.loads(frame)
            if msg["op"] == "subscribe":
                count.update(a["instId"] for a in msg["args"] if a["channel"] == "books")
    return count


async def test_cli_records_okx_in_base_units_with_a_checksum_resync(tmp_path: Path) -> None:
    sim, script, speaker, bad = okx_market()
    out = tmp_path / "data"
    with trio.fail_after(CEILING_S):
        async with serving(sim) as (nursery, urls):
            nursery.start_soon(partial(sim.play, script, after_acks=6))
            code = await async_main([
                "--plugins", "okx", "--symbols", "BTC-USDT,ETH-USDT",
                "--channels", "tob,l2,trades", "--out", str(out), "--duration", "4.5",
                *endpoints(urls), "--cache-dir", str(tmp_path / "cache"), "--no-live",
                "--record-raw"], handle_signals=False)
    assert code == 0 and script.done and bad.applied
    assert books_subscribed(speaker) == {"BTC-USDT-SWAP": 2, "ETH-USDT-SWAP": 1}
    assert speaker.idle_updates >= 2  # both books were quiet for a while

    health = read(out, "health")
    btc = health.filter(pl.col("symbol") == "BTC-USDT").select("event", "detail").rows()
    names = [e for e, _ in btc]
    assert names.count("checksum_mismatch") == 1 and names.count("resynced") == 1
    assert names.index("checksum_mismatch") < names.index("resynced")
    eth = health.filter(pl.col("symbol") == "ETH-USDT")["event"].to_list()
    assert sorted(set(eth)) == ["snapshot", "subscribed"]
    all_events = health["event"].to_list()
    assert "gap" not in all_events and "decode_error" not in all_events  # idle, reset: fine
    assert all_events.count("connected") == 1

    l2 = read(out, "l2", by_time=False)
    tob = read(out, "tob")
    trades = read(out, "trades")
    for sym in SYMBOLS:
        listing = sim.market.listing("okx", sym)
        book = speaker.book(sym)
        rows = l2.filter(pl.col("symbol") == sym)
        assert rebuild(rows) == (
            {float(listing.price(p)): float(listing.size(q)) for p, q in book.top("bid")},
            {float(listing.price(p)): float(listing.size(q)) for p, q in book.top("ask")})
        runs = [k for k, _ in groupby(rows["msg_id"].to_list())]
        assert runs == sorted(set(runs))
        tops = tob.filter(pl.col("symbol") == sym).select(
            "bid_px", "bid_sz", "ask_px", "ask_sz", "seq").rows()
        assert tops
        for *top, seq in tops:
            assert tuple(top) == speaker.tops[(sym, seq)], (sym, seq)
        got = trades.filter(pl.col("symbol") == sym).select(
            "trade_id", "price", "size", "side", "ts_exchange").rows()
        venue = [(str(t.trade_id), float(listing.price(t.ticks)), float(listing.size(t.lots)),
                  t.taker, datetime.fromtimestamp(t.ts_ns // MS_NS / 1000, UTC))
                 for t in speaker.trades[sym]]
        assert got == venue and len(got) == 45  # every trade, each once, exact
    # the reset: BTC's seq went down and the book carried on
    seqs = l2.filter(pl.col("symbol") == "BTC-USDT")["seq"].to_list()
    assert seqs[-1] < seqs[0] and RESET_TO < seqs[-1] < FIRST_SEQ

    # the binary (deflated) frames are kept byte-exact: the replay rebuilds every table
    replayed = tmp_path / "replayed"
    assert await async_main(["--replay", str(out / "raw"), "--out", str(replayed)],
                            handle_signals=False) == 0
    for table in ("tob", "l2", "trades", "health"):
        assert read(out, table, by_time=False).equals(read(replayed, table, by_time=False))


class PingingOkx(OkxProtocol):
    ping_interval_s = 0.1
    silence_timeout_s = 0.5
    max_sends_per_s = 50.0  # pings are paced like every other frame


async def test_text_pings_are_sent_and_pongs_keep_a_quiet_socket_alive(
        autojump_clock: trio.testing.MockClock) -> None:
    market = Market([OKX_BTC])  # a quiet market: only ping and pong on the wire
    load_text(market, "okx", "BTC-USDT", [("100.0", "0.01")], [("100.1", "0.01")])
    speaker = OkxSpeaker(market)
    clock = TrioClock()
    sim = Simulation(market, {"okx": speaker}, clock=clock)
    bus = Bus()
    sub = bus.subscribe("test")
    proto = PingingOkx(ProtocolConfig(symbols=("BTC-USDT",), channels=("trades",)))
    events: list[Event] = []

    async def collect() -> None:
        async for batch in sub:
            events.extend(batch)

    with trio.fail_after(CEILING_S):
        async with trio.open_nursery() as nursery:
            await nursery.start(sim.run)
            nursery.start_soon(collect)
            nursery.start_soon(Session(proto, bus, url=sim.url("okx"), connect=sim.connect,
                                       clock=clock, backoff=Backoff(rng=random.Random(1))).run)
            await trio.sleep(1.2)
            nursery.cancel_scope.cancel()
    [conn] = speaker.sessions  # never reconnected: the pongs prove the socket alive
    assert conn.pings >= 8 and conn.received.count("ping") == conn.pings  # type: ignore[attr-defined]
    rows = [e.event for e in events if isinstance(e, Health)]
    assert rows[:1] == ["connected"] and "disconnected" not in rows
