"""The six-venue perpetual recording (``--plugins bybit,htx,bitget,gateio,binance,okx``) against
six fake venues on loopback speaking each venue's real protocol: one ``tob`` table in which every
venue's BTC-USDT sizes are in BTC, whether the venue quotes base coin (Bybit, Bitget, Binance)
or contracts (HTX x 0.001, Gate x 0.0001, OKX x 0.01), and the live spread analyzer over all six
(30 ordered pairs, each with its venues' default taker fees)."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import polars as pl
import trio

from core.clock import TrioClock
from core.run import async_main
from core.sim.market import Market, Script, load_text
from core.sim.server import Simulation
from core.sim.speaker import load_speakers
from tests.session.sims import (
    BINANCE_BTC,
    BITGET_BTC,
    BYBIT_BTC,
    GATE_BTC,
    HTX_BTC,
    OKX_BTC,
    endpoints,
    serving,
    walk,
)
from tests.session.test_binance_e2e import RecordingBinance
from tests.session.test_okx_e2e import RecordingOkx, swap_steps

CEILING_S = 40
VENUES = ("bybit", "htx", "bitget", "gateio", "binance", "okx")
# the best bid and ask of the four venues whose first row is checked, in BTC
BOOKS = {
    "bybit": (("100.0", "1"), ("101.0", "2")),  # base coin on the wire
    "bitget": (("50000.0", "1"), ("50001.0", "0.01")),  # base coin on the wire
    "htx": (("99.9", "0.8"), ("100.0", "0.5")),  # 800 and 500 contracts of 0.001 BTC
    "gateio": (("63700.0", "0.12"), ("63700.1", "0.03")),  # 1200 and 300 of 0.0001 BTC
}


async def test_six_venue_command_writes_one_tob_table_in_btc(tmp_path: Path) -> None:
    market = Market([BYBIT_BTC, BITGET_BTC, HTX_BTC, GATE_BTC, BINANCE_BTC, OKX_BTC])
    for venue, (bid, ask) in BOOKS.items():
        load_text(market, venue, "BTC-USDT", [bid], [ask])
    bids, asks, binance_steps = walk("BTC-USDT", 63700.0, 150)  # changes through the run
    load_text(market, "binance", "BTC-USDT", bids, asks)
    bids, asks, okx_steps = swap_steps("BTC-USDT", 63700.0, "0.01", 150)  # contracts of 0.01
    load_text(market, "okx", "BTC-USDT", bids, asks)
    registered = load_speakers()
    binance, okx = RecordingBinance(market), RecordingOkx(market)
    sim = Simulation(market, {**{v: registered.get(v)(market) for v in BOOKS},
                              "binance": binance, "okx": okx}, clock=TrioClock())
    out = tmp_path / "data"
    with trio.fail_after(CEILING_S):
        async with serving(sim) as (nursery, urls):
            nursery.start_soon(partial(sim.play, Script("binance", binance_steps, interval_s=0.02),
                                       after_acks=2))
            nursery.start_soon(partial(sim.play, Script("okx", okx_steps, interval_s=0.02),
                                       after_acks=3))
            code = await async_main([
                "--plugins", ",".join(VENUES), "--symbols", "BTC-USDT",
                "--channels", "tob,l2,trades", "--out", str(out), "--duration", "3",
                "--no-live", *endpoints(urls)], handle_signals=False)
    assert code == 0

    tob = pl.scan_parquet(out / "tob" / "**" / "*.parquet", hive_partitioning=True).collect()
    assert set(tob["exchange"].unique()) == set(VENUES)
    assert set(tob["symbol"].unique()) == {"BTC-USDT"}
    first = {ex: rows.sort("ts_local").select("bid_sz", "ask_sz").row(0)
             for (ex,), rows in tob.group_by(["exchange"])}
    assert first["bybit"] == (1.0, 2.0)  # base coin on the wire
    assert first["bitget"] == (1.0, 0.01)
    assert first["htx"] == (0.8, 0.5)  # 800 and 500 contracts of 0.001 BTC
    assert first["gateio"] == (0.12, 0.03)  # 1200 and 300 contracts of 0.0001 BTC
    assert first["okx"] == (0.1, 0.2)  # 10 and 20 contracts of 0.01 BTC
    # Binance quotes base coin; OKX contracts of 0.01 BTC: each row is the fake venue's top
    for venue, speaker in (("binance", binance), ("okx", okx)):
        tops = tob.filter(pl.col("exchange") == venue).select(
            "bid_px", "bid_sz", "ask_px", "ask_sz", "seq").rows()
        assert len(tops) > 10, venue
        for *top, seq in tops:
            assert tuple(top) == speaker.tops[("BTC-USDT", seq)], (venue, seq)

    health = pl.scan_parquet(out / "health" / "**" / "*.parquet", hive_partitioning=True)
    bad = health.filter(pl.col("event").is_in(["gap", "decode_error", "plugin_error",
                                               "subscribe_error", "checksum_mismatch"]))
    assert bad.collect().height == 0
    # the live spread analyzer ran over the six venues' quotes: 6 x 5 ordered pairs, each with
    # a net edge (every venue has a default taker fee)
    spreads = pl.read_parquet(out / "spreads" / "**" / "*.parquet")
    pairs = spreads.select("buy_exchange", "sell_exchange").unique()
    assert pairs.height == 30
    assert spreads.filter(pl.col("net_bps").is_null()).height == 0
