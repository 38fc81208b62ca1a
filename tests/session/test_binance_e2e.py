"""End to end: the CLI against the fake Binance on loopback (two routed websocket endpoints + REST
depth snapshots and exchangeInfo, ``plugins/binance/fake.py``), checking the Parquet tables value
by value. One diff is never delivered for BTC-USDT: its book must record a ``gap``, take a new
REST snapshot and be ``resynced``, while ETH-USDT is untouched; the venue's websocket pings are
answered."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import partial
from itertools import groupby
from pathlib import Path

import polars as pl
import trio

from core.clock import TrioClock
from core.codec import MS_NS, S_NS
from core.run import async_main
from core.sim.market import Market, MarketEvent, Script, TradePrint, load_text
from core.sim.server import Simulation
from core.testing.faults import Fault, FaultPlan
from plugins.binance.fake import FIRST_UPDATE_ID, MARKET, PUBLIC, BinanceSpeaker
from tests.session.sims import BINANCE_BTC, BINANCE_ETH, endpoints, interleave, serving, walk
from tests.tables import msg_rank

CEILING_S = 40
SYMBOLS = ("BTC-USDT", "ETH-USDT")
Top = tuple[float, float, float, float]


class RecordingBinance(BinanceSpeaker):
    """The fake Binance, remembering the top of book at every update id and every trade."""

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
        listing = self.market.listing(self.name, symbol)
        book = self.book(symbol)
        (bp, bq), (ap, aq) = book.top("bid", 1)[0], book.top("ask", 1)[0]
        self.tops[(symbol, self.books[symbol].u)] = (
            float(listing.price(bp)), float(listing.size(bq)), float(listing.price(ap)),
            float(listing.size(aq)))


def binance_market(updates: int, speaker: type[RecordingBinance] = RecordingBinance,
                   faults: FaultPlan | None = None) -> tuple[Simulation, Script]:
    """BTC-USDT near 65000 and ETH-USDT near 3000, each walking ``updates`` steps (10 ms apart,
    the two symbols in turn), with trades; served by ``speaker``."""
    market = Market([BINANCE_BTC, BINANCE_ETH])
    runs = []
    for symbol, bid in (("BTC-USDT", 65000.0), ("ETH-USDT", 3000.0)):
        bids, asks, steps = walk(symbol, bid, updates)
        load_text(market, "binance", symbol, bids, asks)
        runs.append(steps)
    sim = Simulation(market, {"binance": speaker(market)}, clock=TrioClock(),
                     faults={"binance": faults} if faults is not None else None)
    return sim, Script("binance", interleave(*runs), interval_s=0.01)


def read(out: Path, table: str, *, by_time: bool = True) -> pl.DataFrame:
    """One table of the binance partition, sorted by ``ts_local`` or as written."""
    files = sorted(out.glob(f"{table}/exchange=binance/date=*/*.parquet"))
    assert files, f"no {table} files under {out}"
    rows = pl.concat([pl.read_parquet(f) for f in files])
    return rows.sort("ts_local", maintain_order=True) if by_time else rows


def rebuild(l2: pl.DataFrame) -> tuple[dict[float, float], dict[float, float]]:
    """The book a reader gets by applying one symbol's l2 rows message by message."""
    bids: dict[float, float] = {}
    asks: dict[float, float] = {}
    for (_, snap), group in l2.sort("msg_id", maintain_order=True).group_by(
            ["msg_id", "is_snapshot"], maintain_order=True):
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


def venue_book(speaker: BinanceSpeaker, symbol: str) -> tuple[dict[float, float],
                                                               dict[float, float]]:
    listing = speaker.market.listing("binance", symbol)
    book = speaker.book(symbol)
    return ({float(listing.price(p)): float(listing.size(q)) for p, q in book.top("bid")},
            {float(listing.price(p)): float(listing.size(q)) for p, q in book.top("ask")})


def check_books(out: Path, speaker: RecordingBinance) -> None:
    """l2 rebuilds the venue's final book; every tob row is the venue's top at its update id;
    msg_id increases in the order messages were written (buffered diffs applied after a REST
    snapshot keep their earlier receive times, so not in ``ts_local`` order)."""
    l2 = read(out, "l2", by_time=False)
    tob = read(out, "tob")
    for sym in SYMBOLS:
        rows = l2.filter(pl.col("symbol") == sym)
        assert rebuild(rows) == venue_book(speaker, sym)
        runs = [k for k, _ in groupby(rows["msg_id"].to_list())]
        assert runs == sorted(set(runs)), f"{sym}: msg_id not strictly increasing"
        tops = tob.filter(pl.col("symbol") == sym).select(
            "bid_px", "bid_sz", "ask_px", "ask_sz", "seq").rows()
        assert tops, sym
        for *top, seq in tops:
            assert tuple(top) == speaker.tops[(sym, seq)], (sym, seq)


def check_trades(out: Path, speaker: RecordingBinance) -> None:
    """Every trade once, none missing between the first and the last, values exact."""
    trades = read(out, "trades")
    for sym in SYMBOLS:
        listing = speaker.market.listing("binance", sym)
        got = trades.filter(pl.col("symbol") == sym).select(
            "trade_id", "price", "size", "side", "ts_exchange").rows()
        ids = [int(r[0]) for r in got]
        assert len(ids) == len(set(ids)), f"{sym}: duplicated trades"
        assert ids == list(range(ids[0], ids[0] + len(ids))), f"{sym}: missing trades"
        venue = {t.trade_id: t for t in speaker.trades[sym]}
        assert ids[-1] == speaker.trades[sym][-1].trade_id  # through the last one
        for trade_id, price, size, side, ts in got:
            t = venue[int(trade_id)]
            assert (price, size, side) == (float(listing.price(t.ticks)),
                                           float(listing.size(t.lots)), t.taker)
            assert ts == datetime.fromtimestamp(t.ts_ns // MS_NS / 1000, UTC)


async def test_cli_records_binance_with_a_resync(tmp_path: Path) -> None:
    dropped = Fault("drop_delta", symbol="BTC-USDT", skip=30, path=PUBLIC)
    sim, script = binance_market(80, faults=FaultPlan(dropped))
    speaker = sim.speakers["binance"]
    assert isinstance(speaker, RecordingBinance)
    speaker.ping_interval_ns = S_NS // 4
    out = tmp_path / "data"
    with trio.fail_after(CEILING_S):
        async with serving(sim) as (nursery, urls):
            nursery.start_soon(partial(sim.play, script, after_acks=2))
            code = await async_main([
                "--plugins", "binance", "--symbols", "BTC-USDT,ETH-USDT",
                "--channels", "tob,l2,trades", "--out", str(out), "--duration", "4",
                *endpoints(urls), "--cache-dir", str(tmp_path / "cache"), "--no-live",
                "--record-raw"], handle_signals=False)
    assert code == 0
    assert script.done  # the venue played every update before the end of the run
    assert dropped.applied

    # two sockets, each on its endpoint with its streams, the venue's pings answered
    assert sorted((s.path, frozenset(s.streams)) for s in speaker.sessions) == [  # type: ignore[attr-defined]
        (MARKET, frozenset({"btcusdt@aggTrade", "ethusdt@aggTrade"})),
        (PUBLIC, frozenset({"btcusdt@bookTicker", "btcusdt@depth@100ms",
                            "ethusdt@bookTicker", "ethusdt@depth@100ms"}))]
    conns = sim.venues["binance"].connections
    assert len(conns) == 2 and all(c.pongs_in >= 5 for c in conns)
    # one snapshot each, then BTC's resync
    assert speaker.depth_calls == {"BTCUSDT": 2, "ETHUSDT": 1}

    health = read(out, "health")
    events = health.filter(pl.col("event") != "rows_written")
    btc = events.filter(pl.col("symbol") == "BTC-USDT")["event"].to_list()
    assert btc.count("gap") == 1 and btc.count("resynced") == 1
    assert btc.index("gap") < btc.index("resynced")
    eth = events.filter(pl.col("symbol") == "ETH-USDT")["event"].to_list()
    assert sorted(eth) == ["snapshot", "snapshot", "subscribed", "subscribed"]
    venue_rows = events.filter(pl.col("symbol").is_null())["event"].to_list()
    assert venue_rows.count("connected") == 2  # one per endpoint
    assert venue_rows.count("disconnected") == 2  # "stopped", one per endpoint
    assert "decode_error" not in venue_rows and "venue_error" not in venue_rows
    [gap] = events.filter(pl.col("event") == "gap")["detail"].to_list()
    assert "update needs" in gap

    check_books(out, speaker)
    check_trades(out, speaker)
    # the resync's snapshot: a full book at the venue's update id, seq exact in Int64
    l2 = msg_rank(read(out, "l2").filter(pl.col("symbol") == "BTC-USDT"))
    snaps = l2.filter(pl.col("is_snapshot")).unique("msg_id", maintain_order=True)
    assert snaps.height == 2 and l2["seq"].dtype == pl.Int64
    assert all(seq >= FIRST_UPDATE_ID for seq in snaps["seq"].to_list())

    # the REST snapshots are in the raw recording, and the replay rebuilds every table
    replayed = tmp_path / "replayed"
    assert await async_main(["--replay", str(out / "raw"), "--out", str(replayed)],
                            handle_signals=False) == 0
    for table in ("tob", "l2", "trades", "health"):
        live, again = read(out, table, by_time=False), read(replayed, table, by_time=False)
        assert live.equals(again), f"{table} differs"


async def test_one_failed_socket_takes_its_group_down_and_both_reconnect(tmp_path: Path) -> None:
    """The venue closes the trades socket: the books' socket is closed with it, both record
    their ``disconnected`` row, both reconnect, and the books are resynced from new snapshots."""
    cut = Fault("ws_close", path=MARKET, after=15)
    sim, script = binance_market(100, faults=FaultPlan(cut))
    speaker = sim.speakers["binance"]
    assert isinstance(speaker, RecordingBinance)
    out = tmp_path / "data"
    with trio.fail_after(CEILING_S):
        async with serving(sim) as (nursery, urls):
            nursery.start_soon(partial(sim.play, script, after_acks=2))
            code = await async_main([
                "--plugins", "binance", "--symbols", "BTC-USDT,ETH-USDT",
                "--channels", "tob,l2,trades", "--out", str(out), "--duration", "3.5",
                *endpoints(urls), "--cache-dir", str(tmp_path / "cache"), "--no-live"],
                handle_signals=False)
    assert code == 0 and script.done and cut.applied
    assert sorted(s.path for s in speaker.sessions) == [MARKET, MARKET, PUBLIC, PUBLIC]
    assert speaker.depth_calls == {"BTCUSDT": 2, "ETHUSDT": 2}

    health = read(out, "health")
    venue = health.filter(pl.col("symbol").is_null()).select("event", "detail").rows()
    assert [e for e, _ in venue if e in ("connected", "disconnected")] == [
        "connected", "connected", "disconnected", "disconnected", "connected", "connected",
        "disconnected", "disconnected"]
    lost = [d for e, d in venue if e == "disconnected"]
    assert lost[0].startswith("closed by peer") and lost[1].endswith("(on the market socket)")
    for sym in SYMBOLS:
        resynced = health.filter((pl.col("symbol") == sym) & (pl.col("event") == "resynced"))
        assert resynced.height == 2  # tob and l2
        assert all(d.startswith("after disconnect;") for d in resynced["detail"].to_list())
    check_books(out, speaker)
    trades = read(out, "trades")
    assert trades.height == trades.unique(["symbol", "trade_id"]).height
