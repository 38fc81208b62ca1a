"""End to end: the CLI against the loopback fake Binance (two routed websocket endpoints + REST
depth snapshots and exchangeInfo), checking the Parquet tables value by value. One diff is never
delivered for BTC-USDT: its book must record a ``gap``, take a new REST snapshot and be
``resynced``, while ETH-USDT is untouched; the venue's websocket pings are answered."""

from __future__ import annotations

from datetime import UTC, datetime
from itertools import groupby
from pathlib import Path

import polars as pl
import trio

from core.run import async_main
from core.testing.fake_servers import serve_http, serve_ws
from tests.fakes.binance import MARKET, PUBLIC, FakeBinance, Market, walk_script
from tests.tables import msg_rank

CEILING_S = 40


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


def venue_book(market: Market) -> tuple[dict[float, float], dict[float, float]]:
    bids, asks = market.sides()
    return ({float(p): float(s) for p, s in bids}, {float(p): float(s) for p, s in asks})


def check_books(out: Path, fake: FakeBinance) -> None:
    """l2 rebuilds the venue's final book; every tob row is the venue's top at its update id;
    msg_id increases in the order messages were written (buffered diffs applied after a REST
    snapshot keep their earlier receive times, so not in ``ts_local`` order)."""
    l2 = read(out, "l2", by_time=False)
    tob = read(out, "tob")
    for native, market in fake.markets.items():
        sym = f"{native.removesuffix('USDT')}-USDT"
        rows = l2.filter(pl.col("symbol") == sym)
        assert rebuild(rows) == venue_book(market)
        runs = [k for k, _ in groupby(rows["msg_id"].to_list())]
        assert runs == sorted(set(runs)), f"{sym}: msg_id not strictly increasing"
        tops = tob.filter(pl.col("symbol") == sym).select(
            "bid_px", "bid_sz", "ask_px", "ask_sz", "seq").rows()
        assert tops, sym
        for *top, seq in tops:
            assert tuple(top) == market.tops[seq], (sym, seq)


def check_trades(out: Path, fake: FakeBinance) -> None:
    """Every trade once, none missing between the first and the last, values exact."""
    trades = read(out, "trades")
    for native, market in fake.markets.items():
        sym = f"{native.removesuffix('USDT')}-USDT"
        got = trades.filter(pl.col("symbol") == sym).select(
            "trade_id", "price", "size", "side", "ts_exchange").rows()
        ids = [int(r[0]) for r in got]
        assert len(ids) == len(set(ids)), f"{sym}: duplicated trades"
        assert ids == list(range(ids[0], ids[0] + len(ids))), f"{sym}: missing trades"
        venue = {t.id: t for t in market.trades}
        assert ids[-1] == market.trades[-1].id  # through the last one
        for trade_id, price, size, side, ts in got:
            t = venue[int(trade_id)]
            assert (price, size, side) == (float(t.price), float(t.qty),
                                           "sell" if t.buyer_maker else "buy")
            assert ts == datetime.fromtimestamp(t.ms / 1000, UTC)


async def test_cli_records_binance_with_a_resync(tmp_path: Path) -> None:
    fake = FakeBinance({"BTCUSDT": walk_script(65000.0, 80), "ETHUSDT": walk_script(3000.0, 80)},
                       tick_s=0.02, drop_diffs={(0, "BTCUSDT"): {30}}, ping_every_s=0.25)
    out = tmp_path / "data"
    with trio.fail_after(CEILING_S):
        async with trio.open_nursery() as nursery:
            ws_url = await nursery.start(serve_ws, fake.handler)
            rest_url = await nursery.start(serve_http, fake.rest)
            await nursery.start(fake.run)
            code = await async_main([
                "--plugins", "binance", "--symbols", "BTC-USDT,ETH-USDT",
                "--channels", "tob,l2,trades", "--out", str(out), "--duration", "3",
                "--endpoint", f"binance={ws_url}", "--endpoint", f"binance.rest={rest_url}",
                "--cache-dir", str(tmp_path / "cache"), "--no-live", "--record-raw",
            ], handle_signals=False)
            nursery.cancel_scope.cancel()
    assert code == 0
    assert fake.done.is_set()  # the venue played every update before the end of the run

    # two sockets, each on its endpoint with its streams, the venue's pings answered
    assert sorted((c.path, frozenset(c.streams)) for c in fake.conns) == [
        (MARKET, frozenset({"btcusdt@aggTrade", "ethusdt@aggTrade"})),
        (PUBLIC, frozenset({"btcusdt@bookTicker", "btcusdt@depth@100ms",
                            "ethusdt@bookTicker", "ethusdt@depth@100ms"}))]
    assert all(c.pongs >= 5 for c in fake.conns)
    # one snapshot each, then BTC's resync
    assert fake.depth_calls == {"BTCUSDT": 2, "ETHUSDT": 1}

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

    check_books(out, fake)
    check_trades(out, fake)
    # the resync's snapshot: a full book at the venue's update id, seq exact in Int64
    l2 = msg_rank(read(out, "l2").filter(pl.col("symbol") == "BTC-USDT"))
    snaps = l2.filter(pl.col("is_snapshot")).unique("msg_id", maintain_order=True)
    assert snaps.height == 2 and l2["seq"].dtype == pl.Int64
    assert all(seq >= 7_000_000_000 for seq in snaps["seq"].to_list())

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
    fake = FakeBinance({"BTCUSDT": walk_script(65000.0, 100), "ETHUSDT": walk_script(3000.0, 100)},
                       tick_s=0.02, cut_first={MARKET: 0.6})
    out = tmp_path / "data"
    with trio.fail_after(CEILING_S):
        async with trio.open_nursery() as nursery:
            ws_url = await nursery.start(serve_ws, fake.handler)
            rest_url = await nursery.start(serve_http, fake.rest)
            await nursery.start(fake.run)
            code = await async_main([
                "--plugins", "binance", "--symbols", "BTC-USDT,ETH-USDT",
                "--channels", "tob,l2,trades", "--out", str(out), "--duration", "3.5",
                "--endpoint", f"binance={ws_url}", "--endpoint", f"binance.rest={rest_url}",
                "--no-live"], handle_signals=False)
            nursery.cancel_scope.cancel()
    assert code == 0 and fake.done.is_set()
    assert sorted(c.path for c in fake.conns) == [MARKET, MARKET, PUBLIC, PUBLIC]
    assert fake.depth_calls == {"BTCUSDT": 2, "ETHUSDT": 2}

    health = read(out, "health")
    venue = health.filter(pl.col("symbol").is_null()).select("event", "detail").rows()
    assert [e for e, _ in venue if e in ("connected", "disconnected")] == [
        "connected", "connected", "disconnected", "disconnected", "connected", "connected",
        "disconnected", "disconnected"]
    lost = [d for e, d in venue if e == "disconnected"]
    assert lost[0].startswith("closed by peer") and lost[1].endswith("(on the market socket)")
    for sym in ("BTC-USDT", "ETH-USDT"):
        resynced = health.filter((pl.col("symbol") == sym) & (pl.col("event") == "resynced"))
        assert resynced.height == 2  # tob and l2
        assert all(d.startswith("after disconnect;") for d in resynced["detail"].to_list())
    check_books(out, fake)
    trades = read(out, "trades")
    assert trades.height == trades.unique(["symbol", "trade_id"]).height
