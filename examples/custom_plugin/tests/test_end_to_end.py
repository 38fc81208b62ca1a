"""End to end on loopback, through the installed entry point: bookwire's command line records
Kraken from the plugin's fake venue and the Parquet tables hold exactly what the venue said; and
``python -m core.run --plugins kraken --simulate`` records offline."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from decimal import Decimal
from functools import partial
from pathlib import Path

import polars as pl
import trio
from bookwire_kraken.fake import KrakenSpeaker

from core.clock import TrioClock
from core.run import async_main
from core.sim.market import Listing, Market, Script, Step, load_text
from core.sim.server import Simulation

CEILING_S = 60
US_NS = 1_000
BTC = Listing("kraken", "BTC-USD", tick=Decimal("0.1"), lot=Decimal("0.00000001"))
ETH = Listing("kraken", "ETH-USD", tick=Decimal("0.01"), lot=Decimal("0.00000001"))


@asynccontextmanager
async def serving(sim: Simulation) -> AsyncIterator[tuple[trio.Nursery, str]]:
    """The simulation on loopback; yields a nursery and the fake venue's websocket URL."""
    async with trio.open_nursery() as nursery:
        await nursery.start(sim.run)
        urls = await nursery.start(sim.serve_tcp)
        yield nursery, urls["kraken"][0]
        nursery.cancel_scope.cancel()


def table(out: Path, name: str) -> pl.DataFrame:
    files = sorted(out.glob(f"{name}/exchange=kraken/date=*/*.parquet"))
    assert files, f"no {name} files under {out}"
    return pl.concat([pl.read_parquet(f) for f in files]).sort("ts_local", maintain_order=True)


def at_us(t_ns: int) -> datetime:
    """A venue time as the table holds it (Kraken writes microseconds)."""
    return datetime.fromtimestamp(t_ns // US_NS / 1e6, UTC)


async def test_the_command_records_the_fake_venue_value_by_value(
        tmp_path: Path, entry_point: dict[str, str]) -> None:
    market = Market([BTC, ETH])
    load_text(market, "kraken", "BTC-USD", [("65000.1", "0.5"), ("64999.0", "2")],
              [("65000.2", "0.1"), ("65000.5", "1.25")])
    load_text(market, "kraken", "ETH-USD", [("3000.10", "4")], [("3000.20", "1")])
    script = Script("kraken", [
        Step("BTC-USD", bids=[("65000.1", "0.75")]),
        Step("BTC-USD", trades=[("65000.2", "0.1", "buy")]),
        Step("BTC-USD", asks=[("65000.2", "0")]),
        Step("ETH-USD", bids=[("3000.15", "0.00000001")]),
    ], interval_s=0.05)
    sim = Simulation(market, {"kraken": KrakenSpeaker(market)}, clock=TrioClock())
    out = tmp_path / "data"
    with trio.fail_after(CEILING_S):
        async with serving(sim) as (nursery, url):
            # (played once the venue has acknowledged ticker, book and trade of both symbols)
            nursery.start_soon(partial(sim.play, script, after_acks=6))
            code = await async_main([
                "--plugins", "kraken", "--symbols", "BTC-USD,ETH-USD",
                "--channels", "tob,l2,trades", "--out", str(out), "--duration", "2",
                "--endpoint", f"kraken={url}", "--no-live", "--cache-dir", str(tmp_path / "c")],
                handle_signals=False)
    assert code == 0 and script.done
    step1, step2, step3, step4 = script.fired

    tob = table(out, "tob")
    assert tob.select("symbol", "bid_px", "bid_sz", "ask_px", "ask_sz").rows() == [
        ("BTC-USD", 65000.1, 0.5, 65000.2, 0.1), ("ETH-USD", 3000.1, 4.0, 3000.2, 1.0),
        ("BTC-USD", 65000.1, 0.75, 65000.2, 0.1), ("BTC-USD", 65000.1, 0.75, 65000.5, 1.25),
        ("ETH-USD", 3000.15, 1e-8, 3000.2, 1.0)]

    l2 = table(out, "l2").filter(pl.col("symbol") == "BTC-USD")
    assert l2.select("side", "price", "size", "is_snapshot").rows() == [
        ("bid", 65000.1, 0.5, True), ("bid", 64999.0, 2.0, True),
        ("ask", 65000.2, 0.1, True), ("ask", 65000.5, 1.25, True),
        ("bid", 65000.1, 0.75, False), ("ask", 65000.2, 0.0, False)]
    assert l2.filter(~pl.col("is_snapshot"))["ts_exchange"].to_list() == [at_us(step1),
                                                                          at_us(step3)]
    assert l2["seq"].null_count() == l2.height  # Kraken's book has no sequence number
    eth = table(out, "l2").filter((pl.col("symbol") == "ETH-USD") & ~pl.col("is_snapshot"))
    assert eth.select("side", "price", "size", "ts_exchange").rows() == [
        ("bid", 3000.15, 1e-8, at_us(step4))]

    trades = table(out, "trades")
    assert trades.select("symbol", "price", "size", "side", "trade_id", "ts_exchange").rows() \
        == [("BTC-USD", 65000.2, 0.1, "buy", "1001", at_us(step2))]

    health = table(out, "health")
    for symbol in ("BTC-USD", "ETH-USD"):
        events = health.filter(pl.col("symbol") == symbol)["event"].to_list()
        assert sorted(events) == ["snapshot", "snapshot", "subscribed", "subscribed",
                                  "subscribed"], symbol
    assert not set(health["event"]) & {"gap", "checksum_mismatch", "decode_error",
                                       "venue_error", "subscribe_error"}


def test_simulate_records_kraken_offline(tmp_path: Path, entry_point: dict[str, str]) -> None:
    out = tmp_path / "data"
    result = subprocess.run(
        [sys.executable, "-m", "core.run", "--plugins", "kraken", "--simulate",
         "--symbols", "BTC-USD,ETH-USD", "--channels", "tob,l2,trades", "--sim-rate", "40",
         "--duration", "3", "--no-live", "--out", str(out)],
        env=entry_point, capture_output=True, text=True, timeout=CEILING_S, check=False)
    assert result.returncode == 0, result.stderr
    tob = table(out, "tob")
    assert set(tob["symbol"]) == {"BTC-USD", "ETH-USD"}
    assert (tob["bid_px"] < tob["ask_px"]).all()
    assert 10_000 < tob.filter(pl.col("symbol") == "BTC-USD")["bid_px"].median() < 1_000_000
    assert table(out, "trades").height > 0
    health = table(out, "health")
    assert not set(health["event"]) & {"gap", "checksum_mismatch", "decode_error", "crossed"}
    # every book update was verified against the venue's checksum; the rows rebuild a book
    # cut to the subscribed depth of 10 levels a side
    l2 = table(out, "l2")
    for (symbol,), rows in l2.group_by(["symbol"]):
        book: dict[tuple[str, float], float] = {}
        for side, price, size, snapshot, first in rows.with_columns(
                first=pl.col("msg_id") != pl.col("msg_id").shift(1)).select(
                "side", "price", "size", "is_snapshot", "first").rows():
            if snapshot and first:
                book.clear()
            if size:
                book[(side, price)] = size
            else:
                book.pop((side, price), None)
        assert 0 < sum(1 for s, _ in book if s == "bid") <= 10, symbol
        assert 0 < sum(1 for s, _ in book if s == "ask") <= 10, symbol
