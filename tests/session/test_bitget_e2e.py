"""End to end: the CLI (``core.run.async_main``) against the loopback fake Bitget (websocket +
REST contracts), checking the Parquet tables value by value; a wrong checksum on BTC-USDT must
show up in the ``health`` table as ``checksum_mismatch`` followed by ``resynced``, while ETH-USDT
is recorded untouched."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal
from functools import partial
from pathlib import Path

import polars as pl
import trio

from core.codec import MS_NS
from core.run import async_main
from core.sim.market import Market, Script, Step, load_text
from core.sim.server import Simulation
from core.testing.faults import Fault, FaultPlan
from plugins.bitget.fake import FIRST_SEQ
from tests.session.sims import BITGET_BTC, BITGET_ETH, endpoints, serving, simulation
from tests.tables import msg_rank

CEILING_S = 60
TS0 = 1_786_310_818_000  # ms: the two trades that happened before the run
Wire = list[tuple[str, str]]

BTC_BIDS: Wire = [(f"{50000 - i}.{i % 10}", f"{i + 1}.0{i % 10}") for i in range(28)]
BTC_ASKS: Wire = [(f"{50001 + i}.0", f"0.{i + 1:02d}") for i in range(28)]
BTC_UPDATES: list[tuple[Wire, Wire]] = [
    ([(f"{50000 - (i % 5)}.{i % 5}", f"{i + 2}.50")],
     [(f"{50001 + (i % 3)}.0", "0" if i % 4 == 3 else f"0.{i + 3}")])
    for i in range(14)]
ETH_BIDS: Wire = [("3000.10", "4"), ("3000.00", "5.5")]
ETH_ASKS: Wire = [("3000.20", "1.25"), ("3000.40", "2")]
ETH_UPDATES: list[tuple[Wire, Wire]] = [
    ([("3000.10", "3.5")], []),
    ([], [("3000.20", "0"), ("3000.30", "0.75")]),
    ([("3000.05", "1")], [("3000.40", "2.5")]),
]
# (price, size, taker side): two before the run (in the venue's trade snapshot), two during
BTC_TRADES = [("50000.1", "0.010", "buy"), ("50000.0", "0.5", "sell"),
              ("50001.0", "1.25", "buy"), ("49999.9", "0.002", "sell")]
BAD_CHECKSUM_AT = 3  # the BTC update whose checksum the venue gets wrong


def bitget_market() -> tuple[Simulation, Script]:
    market = Market([BITGET_BTC, BITGET_ETH])
    load_text(market, "bitget", "BTC-USDT", BTC_BIDS, BTC_ASKS)
    load_text(market, "bitget", "ETH-USDT", ETH_BIDS, ETH_ASKS)
    listing = market.listing("bitget", "BTC-USDT")
    for i, (px, size, side) in enumerate(BTC_TRADES[:2]):
        market.print_trade("bitget", "BTC-USDT", (TS0 + i) * MS_NS, listing.ticks(px),
                           listing.lots(size), side)  # type: ignore[arg-type]
    btc = [Step("BTC-USDT", bids=b, asks=a) for b, a in BTC_UPDATES]
    eth = [Step("ETH-USDT", bids=b, asks=a) for b, a in ETH_UPDATES]
    trades = [Step("BTC-USDT", trades=[t]) for t in BTC_TRADES[2:]]
    steps = [btc[0], eth[0], btc[1], btc[2], eth[1], btc[3], trades[0], btc[4], eth[2],
             *btc[5:], trades[1]]
    plan = FaultPlan(Fault("bad_checksum", symbol="BTC-USDT", skip=BAD_CHECKSUM_AT))
    return simulation(market, faults={"bitget": plan}), Script("bitget", steps, interval_s=0.05)


def step_times(script: Script, symbol: str, *, trades: bool = False) -> list[int]:
    """When each book step (or trade step) of ``symbol`` was played."""
    return [t for step, t in zip(script.steps, script.fired, strict=True)
            if step.symbol == symbol and bool(step.trades) == trades]


def book_states(bids: Wire, asks: Wire, updates: list[tuple[Wire, Wire]]
                ) -> list[tuple[Wire, Wire]]:
    """The book (best first) initially and after each update: the reference for tob rows."""
    book = ({Decimal(p): s for p, s in bids}, {Decimal(p): s for p, s in asks})
    states = []
    for ub, ua in [([], []), *updates]:
        for side, levels in ((book[0], ub), (book[1], ua)):
            for px, size in levels:
                if Decimal(size) == 0:
                    side.pop(Decimal(px), None)
                else:
                    side[Decimal(px)] = size
        states.append(([(str(k), book[0][k]) for k in sorted(book[0], reverse=True)],
                       [(str(k), book[1][k]) for k in sorted(book[1])]))
    return states


def read(out: Path, table: str) -> pl.DataFrame:
    files = sorted(out.glob(f"{table}/exchange=bitget/date=*/*.parquet"))
    assert files, f"no {table} files under {out}"
    for f in files:  # partitioned by the UTC date of ts_local
        day = pl.read_parquet(f)["ts_local"].dt.date().unique().to_list()
        assert [f"date={d.isoformat()}" for d in day] == [f.parent.name]
    return pl.concat([pl.read_parquet(f) for f in files]).sort("ts_local", maintain_order=True)


def ms(t_ns: int) -> datetime:
    return datetime.fromtimestamp(t_ns // MS_NS / 1000, UTC)


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
    sim, script = bitget_market()
    out = tmp_path / "data"
    with trio.fail_after(CEILING_S):
        async with serving(sim) as (nursery, urls):
            nursery.start_soon(partial(sim.play, script, after_acks=6))
            code = await async_main([
                "--plugins", "bitget", "--symbols", "BTC-USDT,ETH-USDT",
                "--channels", "tob,l2,trades", "--out", str(out), "--duration", "4",
                *endpoints(urls), "--cache-dir", str(tmp_path / "cache"),
            ], handle_signals=False)
    assert code == 0
    # Fully played out: the venue applied every update and the resync happened once.
    assert script.done
    [conn] = sim.speakers["bitget"].sessions
    subscribed = Counter((a["channel"], a["instId"]) for f in conn.received if f != "ping"
                         for a in json.loads(f)["args"] if json.loads(f)["op"] == "subscribe")
    assert subscribed[("books", "BTCUSDT")] == 2
    assert subscribed[("books", "ETHUSDT")] == 1
    assert conn.received[1:3] == [
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
    assert mismatch == f"seq={FIRST_SEQ + BAD_CHECKSUM_AT + 1}"
    assert dict(by_symbol["BTC-USDT"])["resynced"].startswith("after checksum_mismatch; ")
    assert sorted(e for e, _ in by_symbol["ETH-USDT"]) == [
        "snapshot", "snapshot", "subscribed", "subscribed", "subscribed"]
    assert "gap" not in health["event"].to_list()
    assert "decode_error" not in health["event"].to_list()
    assert health.filter(pl.col("event") == "connected").height == 1

    # -- l2: ETH exact, BTC exact up to the mismatch and consistent after -----------------------
    l2 = read(out, "l2")
    eth = l2.filter(pl.col("symbol") == "ETH-USDT")
    want_eth = [(s, p, z, True, FIRST_SEQ, 1) for s, p, z in l2_rows(ETH_BIDS, ETH_ASKS)]
    for i, (ub, ua) in enumerate(ETH_UPDATES):
        want_eth += [(s, p, z, False, FIRST_SEQ + 1 + i, 2 + i) for s, p, z in l2_rows(ub, ua)]
    assert msg_rank(eth).select("side", "price", "size", "is_snapshot", "seq", "msg_id").rows() == \
        sorted(want_eth, key=lambda r: (r[5], r[0] != "bid", -r[1] if r[0] == "bid" else r[1]))
    assert eth.group_by("msg_id", maintain_order=True).agg(pl.col("ts_exchange").first())[
        "ts_exchange"].to_list()[1:] == [ms(t) for t in step_times(script, "ETH-USDT")]

    btc = l2.filter(pl.col("symbol") == "BTC-USDT")
    want_btc = [(s, p, z, True, FIRST_SEQ, 1) for s, p, z in l2_rows(BTC_BIDS, BTC_ASKS)]
    for i, (ub, ua) in enumerate(BTC_UPDATES[:BAD_CHECKSUM_AT]):
        want_btc += [(s, p, z, False, FIRST_SEQ + 1 + i, 2 + i) for s, p, z in l2_rows(ub, ua)]
    rows = msg_rank(btc).select("side", "price", "size", "is_snapshot", "seq", "msg_id").rows()
    assert rows[:len(want_btc)] == want_btc
    resync = msg_rank(btc).filter(pl.col("msg_id") == BAD_CHECKSUM_AT + 2)
    assert resync["is_snapshot"].unique().to_list() == [True]
    assert resync["seq"].unique().item() > FIRST_SEQ + BAD_CHECKSUM_AT
    assert btc["seq"].dtype == pl.Int64
    assert btc["seq"].max() == FIRST_SEQ + len(BTC_UPDATES)
    venue = sim.market.book("bitget", "BTC-USDT")
    listing = sim.market.listing("bitget", "BTC-USDT")
    assert rebuild(btc) == ({float(listing.price(p)): float(listing.size(q))
                             for p, q in venue.top("bid")},
                            {float(listing.price(p)): float(listing.size(q))
                             for p, q in venue.top("ask")})

    # -- tob from books1: every change of the top, exact ----------------------------------------
    tob = read(out, "tob")
    for sym, (bids, asks, updates) in (("BTC-USDT", (BTC_BIDS, BTC_ASKS, BTC_UPDATES)),
                                       ("ETH-USDT", (ETH_BIDS, ETH_ASKS, ETH_UPDATES))):
        times = [None, *step_times(script, sym)]
        want: list[tuple] = []
        for i, (b, a) in enumerate(book_states(bids, asks, updates)):
            top = (float(b[0][0]), float(b[0][1]), float(a[0][0]), float(a[0][1]))
            if not want or want[-1][:4] != top:
                want.append((*top, FIRST_SEQ + i))
                if times[i] is not None:
                    assert tob.filter((pl.col("symbol") == sym) & (pl.col("seq") == FIRST_SEQ + i))[
                        "ts_exchange"].to_list() == [ms(times[i])]
        got = tob.filter(pl.col("symbol") == sym).select(
            "bid_px", "bid_sz", "ask_px", "ask_sz", "seq").rows()
        assert got == want

    # -- trades: snapshot then updates, oldest first, each once ----------------------------------
    trades = read(out, "trades")
    times = [(TS0 + i) * MS_NS for i in range(2)] + step_times(script, "BTC-USDT", trades=True)
    assert trades.select("symbol", "ts_exchange", "price", "size", "side", "trade_id").rows() == [
        ("BTC-USDT", ms(t), float(px), float(Decimal(sz)), side, str(1001 + i))
        for i, ((px, sz, side), t) in enumerate(zip(BTC_TRADES, times, strict=True))]
