"""End to end: the CLI (``core.run.async_main``) against the loopback fake Bitget (websocket +
REST contracts), checking the Parquet tables value by value; a wrong checksum on BTC-USDT must
show up in the ``health`` table as ``checksum_mismatch`` followed by ``resynced``, while ETH-USDT
is recorded untouched."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import polars as pl
import trio

from core.run import async_main
from core.testing.fake_servers import serve_http, serve_ws
from tests.fakes.bitget import BookScript, FakeBitget, TradeRow, Wire, book_states
from tests.tables import msg_rank

CEILING_S = 60
CONTRACTS_PATH = "/api/v2/mix/market/contracts?productType=USDT-FUTURES"
CONTRACTS = json.dumps({"code": "00000", "msg": "success", "requestTime": 1, "data": [
    {"symbol": f"{b}USDT", "baseCoin": b, "quoteCoin": "USDT", "pricePlace": p,
     "priceEndStep": "1", "volumePlace": "3", "sizeMultiplier": "0.001",
     "symbolType": "perpetual", "symbolStatus": "normal"} for b, p in (("BTC", "1"), ("ETH", "2"))
]}).encode()
BTC_SEQ0 = 2**53 + 11  # above 2^53: must survive as an exact Int64
TS0 = 1_786_310_818_000


def btc_script() -> BookScript:
    bids: Wire = [(f"{50000 - i}.{i % 10}", f"{i + 1}.0{i % 10}") for i in range(28)]
    asks: Wire = [(f"{50001 + i}.0", f"0.{i + 1:02d}") for i in range(28)]
    updates: list[tuple[Wire, Wire]] = [
        ([(f"{50000 - (i % 5)}.{i % 5}", f"{i + 2}.50")],
         [(f"{50001 + (i % 3)}.0", "0" if i % 4 == 3 else f"0.{i + 3}")])
        for i in range(14)]
    return BookScript(bids, asks, updates, seq0=BTC_SEQ0, seq_step=2, ts0_ms=TS0, ts_step_ms=7)


def eth_script() -> BookScript:
    bids: Wire = [("3000.10", "4"), ("3000.00", "5.5")]
    asks: Wire = [("3000.20", "1.25"), ("3000.40", "2")]
    updates: list[tuple[Wire, Wire]] = [
        ([("3000.10", "3.5")], []),
        ([], [("3000.20", "0"), ("3000.30", "0.75")]),
        ([("3000.05", "1")], [("3000.40", "2.5")]),
    ]
    return BookScript(bids, asks, updates, seq0=9000, seq_step=1, ts0_ms=TS0 + 5)


BTC_TRADES: list[TradeRow] = [(TS0 + 100, "50000.1", "0.010", "buy", "7001"),
                              (TS0 + 101, "50000.0", "0.5", "sell", "7002"),
                              (TS0 + 150, "50001.0", "1.25", "buy", "7003"),
                              (TS0 + 160, "49999.9", "0.002", "sell", "7004")]


def read(out: Path, table: str) -> pl.DataFrame:
    files = sorted(out.glob(f"{table}/exchange=bitget/date=*/*.parquet"))
    assert files, f"no {table} files under {out}"
    for f in files:  # partitioned by the UTC date of ts_local
        day = pl.read_parquet(f)["ts_local"].dt.date().unique().to_list()
        assert [f"date={d.isoformat()}" for d in day] == [f.parent.name]
    return pl.concat([pl.read_parquet(f) for f in files]).sort("ts_local", maintain_order=True)


def ms(t: int) -> datetime:
    return datetime.fromtimestamp(t / 1000, UTC)


def l2_rows(bids: Wire, asks: Wire) -> list[tuple[str, float, float]]:
    return ([("bid", float(p), float(s)) for p, s in bids]
            + [("ask", float(p), float(s)) for p, s in asks])


def rebuild(l2: pl.DataFrame) -> tuple[dict[float, float], dict[float, float]]:
    """The book a reader gets by applying the l2 table message by message."""
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


async def test_cli_records_bitget_with_checksum_resync(tmp_path: Path) -> None:
    fake = FakeBitget(books={"BTCUSDT": btc_script(), "ETHUSDT": eth_script()},
                      trades={"BTCUSDT": BTC_TRADES}, trade_snapshot_n=2,
                      bad_checksum_at={"BTCUSDT": 3}, push_interval_s=0.05)
    out = tmp_path / "data"
    with trio.fail_after(CEILING_S):
        async with trio.open_nursery() as nursery:
            ws_url = await nursery.start(serve_ws, fake.handler)
            rest_url = await nursery.start(serve_http, {CONTRACTS_PATH: CONTRACTS})
            code = await async_main([
                "--plugins", "bitget", "--symbols", "BTC-USDT,ETH-USDT",
                "--channels", "tob,l2,trades", "--out", str(out), "--duration", "4",
                "--endpoint", f"bitget={ws_url}", "--endpoint", f"bitget.rest={rest_url}",
                "--cache-dir", str(tmp_path / "cache"),
            ], handle_signals=False)
            nursery.cancel_scope.cancel()
    assert code == 0
    # Fully played out: the venue applied every BTC update and the resync happened once.
    assert fake.live["BTCUSDT"].position == 14
    assert fake.subscriptions[("books", "BTCUSDT")] == 2
    assert fake.subscriptions[("books", "ETHUSDT")] == 1
    assert fake.received[0][1:3] == [
        '{"op":"unsubscribe","args":[{"instType":"USDT-FUTURES","channel":"books",'
        '"instId":"BTCUSDT"}]}',
        '{"op":"subscribe","args":[{"instType":"USDT-FUTURES","channel":"books",'
        '"instId":"BTCUSDT"}]}']

    # -- health: the mismatch and the resync of BTC only ----------------------------------------
    health = read(out, "health")
    by_symbol = {sym: health.filter(pl.col("symbol") == sym).select("event", "detail").rows()
                 for sym in ("BTC-USDT", "ETH-USDT")}
    btc_events = [e for e, _ in by_symbol["BTC-USDT"]]
    assert btc_events.count("subscribed") == 4  # books1, books, trade, then books again
    assert btc_events.count("snapshot") == 2  # tob and l2 books became valid
    assert btc_events.count("checksum_mismatch") == 1
    assert btc_events.count("resynced") == 1
    assert btc_events.index("checksum_mismatch") < btc_events.index("resynced")
    mismatch = dict(by_symbol["BTC-USDT"])["checksum_mismatch"]
    assert mismatch == f"seq={BTC_SEQ0 + 8}"
    assert dict(by_symbol["BTC-USDT"])["resynced"].startswith("after checksum_mismatch; ")
    assert sorted(e for e, _ in by_symbol["ETH-USDT"]) == [
        "snapshot", "snapshot", "subscribed", "subscribed", "subscribed"]
    assert "gap" not in health["event"].to_list()
    assert "decode_error" not in health["event"].to_list()
    assert health.filter(pl.col("event") == "connected").height == 1

    # -- l2: ETH exact, BTC exact up to the mismatch and consistent after -----------------------
    l2 = read(out, "l2")
    eth = l2.filter(pl.col("symbol") == "ETH-USDT")
    script = eth_script()
    want_eth = [(s, p, z, True, 9000, 1) for s, p, z in l2_rows(script.bids, script.asks)]
    for i, (ub, ua) in enumerate(script.updates):
        want_eth += [(s, p, z, False, 9001 + i, 2 + i) for s, p, z in l2_rows(ub, ua)]
    assert msg_rank(eth).select("side", "price", "size", "is_snapshot", "seq",
                                "msg_id").rows() == want_eth
    assert eth.group_by("msg_id", maintain_order=True).agg(pl.col("ts_exchange").first())[
        "ts_exchange"].to_list() == [ms(TS0 + 5 + 10 * i) for i in range(4)]

    btc = l2.filter(pl.col("symbol") == "BTC-USDT")
    script = btc_script()
    want_btc = [(s, p, z, True, BTC_SEQ0, 1) for s, p, z in l2_rows(script.bids, script.asks)]
    for i, (ub, ua) in enumerate(script.updates[:3]):
        want_btc += [(s, p, z, False, BTC_SEQ0 + 2 * (i + 1), 2 + i)
                     for s, p, z in l2_rows(ub, ua)]
    rows = msg_rank(btc).select("side", "price", "size", "is_snapshot", "seq", "msg_id").rows()
    assert rows[:len(want_btc)] == want_btc
    resync = msg_rank(btc).filter(pl.col("msg_id") == 5)
    assert resync["is_snapshot"].unique().to_list() == [True]
    resync_seq = resync["seq"].unique().item()
    assert resync_seq > BTC_SEQ0 + 6
    assert (resync_seq - BTC_SEQ0) % 2 == 0
    assert btc["seq"].dtype == pl.Int64
    assert btc["seq"].max() == BTC_SEQ0 + 2 * 14
    venue_bids, venue_asks = fake.live["BTCUSDT"].sides()
    assert rebuild(btc) == ({float(p): float(s) for p, s in venue_bids},
                            {float(p): float(s) for p, s in venue_asks})

    # -- tob from books1: every change of the top, exact ----------------------------------------
    tob = read(out, "tob")
    for sym, script in (("BTC-USDT", btc_script()), ("ETH-USDT", eth_script())):
        want: list[tuple] = []
        for bids, asks, seq, ts in book_states(script):
            top = (float(bids[0][0]), float(bids[0][1]), float(asks[0][0]), float(asks[0][1]))
            if not want or want[-1][:4] != top:
                want.append((*top, seq, ms(ts)))
        got = tob.filter(pl.col("symbol") == sym).select(
            "bid_px", "bid_sz", "ask_px", "ask_sz", "seq", "ts_exchange").rows()
        assert got == want

    # -- trades: snapshot then updates, oldest first, each once ----------------------------------
    trades = read(out, "trades")
    assert trades.select("symbol", "ts_exchange", "price", "size", "side", "trade_id").rows() == [
        ("BTC-USDT", ms(ts), float(px), float(Decimal(sz)), side, tid)
        for ts, px, sz, side, tid in BTC_TRADES]
