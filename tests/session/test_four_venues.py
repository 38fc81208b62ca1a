"""The four-venue arbitrage recording (issue command), against four loopback fakes speaking
each venue's real protocol: one ``tob`` table in which every venue's BTC-USDT sizes are in BTC,
whether the venue quotes base coin (Bybit, Bitget) or contracts (HTX x 0.001, Gate x 0.0001)."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import trio

from core.run import async_main
from core.sim.market import Market, load_text
from tests.session.sims import BITGET_BTC, BYBIT_BTC, GATE_BTC, HTX_BTC, endpoints, serving
from tests.session.sims import simulation as simulate_venues

CEILING_S = 40
# the best bid and ask of each venue, in BTC
BOOKS = {
    "bybit": (("100.0", "1"), ("101.0", "2")),  # base coin on the wire
    "bitget": (("50000.0", "1"), ("50001.0", "0.01")),  # base coin on the wire
    "htx": (("99.9", "0.8"), ("100.0", "0.5")),  # 800 and 500 contracts of 0.001 BTC
    "gateio": (("63700.0", "0.12"), ("63700.1", "0.03")),  # 1200 and 300 of 0.0001 BTC
}


async def test_four_venue_command_writes_one_tob_table_in_btc(tmp_path: Path) -> None:
    market = Market([BYBIT_BTC, BITGET_BTC, HTX_BTC, GATE_BTC])
    for venue, (bid, ask) in BOOKS.items():
        load_text(market, venue, "BTC-USDT", [bid], [ask])
    sim = simulate_venues(market)
    out = tmp_path / "data"
    with trio.fail_after(CEILING_S):
        async with serving(sim) as (_, urls):
            code = await async_main([
                "--plugins", "bybit,htx,bitget,gateio", "--symbols", "BTC-USDT",
                "--channels", "tob,l2,trades", "--out", str(out), "--duration", "3",
                "--no-live", *endpoints(urls)], handle_signals=False)
    assert code == 0

    tob = pl.scan_parquet(out / "tob" / "**" / "*.parquet", hive_partitioning=True).collect()
    assert set(tob["exchange"].unique()) == {"bybit", "htx", "bitget", "gateio"}
    assert set(tob["symbol"].unique()) == {"BTC-USDT"}
    first = {ex: rows.sort("ts_local").select("bid_sz", "ask_sz").row(0)
             for (ex,), rows in tob.group_by(["exchange"])}
    assert first == {
        "bybit": (1.0, 2.0),
        "bitget": (1.0, 0.01),
        "htx": (0.8, 0.5),
        "gateio": (0.12, 0.03),
    }
    # every venue's book was valid, nothing went wrong on the wire
    health = pl.scan_parquet(out / "health" / "**" / "*.parquet", hive_partitioning=True)
    bad = health.filter(pl.col("event").is_in(["gap", "decode_error", "plugin_error",
                                               "subscribe_error", "checksum_mismatch"]))
    assert bad.collect().height == 0
    # the live spread analyzer ran over the four venues' quotes: 4 x 3 ordered pairs
    spreads = pl.read_parquet(out / "spreads" / "**" / "*.parquet")
    assert spreads.select("buy_exchange", "sell_exchange").unique().height == 12
