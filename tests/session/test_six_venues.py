"""The six-venue perpetual recording (``--plugins bybit,htx,bitget,gateio,binance,okx``) against
six loopback fakes speaking each venue's real protocol: one ``tob`` table in which every venue's
BTC-USDT sizes are in BTC, whether the venue quotes base coin (Bybit, Bitget, Binance) or
contracts (HTX x 0.001, Gate x 0.0001, OKX x 0.01), and the live spread analyzer over all six
(30 ordered pairs, each with its venues' default taker fees)."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import trio

from core.run import async_main
from core.testing.fake_servers import serve_http, serve_ws
from tests.fakes.binance import FakeBinance, walk_script
from tests.fakes.bitget import FakeBitget
from tests.fakes.bybit import FakeBybit
from tests.fakes.fixtures import BITGET_CONTRACTS, gate_contracts, htx_script
from tests.fakes.fixtures import BITGET_CONTRACTS_PATH as BITGET_PATH
from tests.fakes.fixtures import GATE_CONTRACTS_PATH as GATE_PATH
from tests.fakes.fixtures import HTX_CONTRACT_INFO_PATH as HTX_PATH
from tests.fakes.fixtures import INSTRUMENTS as BYBIT_INSTRUMENTS
from tests.fakes.fixtures import bitget_btc_script as bitget_btc
from tests.fakes.fixtures import btc_script as bybit_btc
from tests.fakes.fixtures import htx_contract_info as htx_contracts
from tests.fakes.gateio import FakeContract, GateFuturesFake
from tests.fakes.htx import FakeHtx
from tests.fakes.okx import FakeOkx, okx_script

CEILING_S = 40
VENUES = ("bybit", "htx", "bitget", "gateio", "binance", "okx")


async def test_six_venue_command_writes_one_tob_table_in_btc(tmp_path: Path) -> None:
    binance = FakeBinance({"BTCUSDT": walk_script(63700.0, 150)})  # ticks through the run
    okx = FakeOkx({"BTC-USDT-SWAP": okx_script(63700.0, "0.01", 150)})
    fakes = {
        "bybit": FakeBybit(scripts=[bybit_btc()]),
        "htx": FakeHtx(htx_script(), listed={"BTC-USDT"}),
        "bitget": FakeBitget(books={"BTCUSDT": bitget_btc()}, push_interval_s=0.02),
        "gateio": GateFuturesFake({"BTC_USDT": FakeContract(bid=63700.0, tick=0.1)}),
        "binance": binance,
        "okx": okx,
    }
    out = tmp_path / "data"

    def rest(target: str) -> bytes | None:
        static = {"/v5/market/instruments-info?category=linear&limit=1000": BYBIT_INSTRUMENTS,
                  HTX_PATH: htx_contracts(), BITGET_PATH: BITGET_CONTRACTS,
                  GATE_PATH: gate_contracts()}
        if target in static:
            return static[target]
        return binance.rest(target) or okx.rest(target)

    with trio.fail_after(CEILING_S):
        async with trio.open_nursery() as nursery:
            argv = ["--plugins", ",".join(VENUES), "--symbols", "BTC-USDT",
                    "--channels", "tob,l2,trades", "--out", str(out), "--duration", "3",
                    "--no-live"]
            for venue, fake in fakes.items():
                url = await nursery.start(serve_ws, fake.handler)
                argv += ["--endpoint", f"{venue}={url}"]
            rest_url = await nursery.start(serve_http, rest)
            for venue in fakes:
                argv += ["--endpoint", f"{venue}.rest={rest_url}"]
            await nursery.start(binance.run)
            await nursery.start(okx.run)
            code = await async_main(argv, handle_signals=False)
            nursery.cancel_scope.cancel()
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
    # Binance quotes base coin; OKX contracts of 0.01 BTC: each row is the fake venue's top
    binance_tops = tob.filter(pl.col("exchange") == "binance").select(
        "bid_px", "bid_sz", "ask_px", "ask_sz", "seq").rows()
    assert binance_tops and all(tuple(r[:4]) == binance.markets["BTCUSDT"].tops[r[4]]
                                for r in binance_tops)
    swap = okx.live["BTC-USDT-SWAP"]
    okx_tops = tob.filter(pl.col("exchange") == "okx").select(
        "bid_px", "bid_sz", "ask_px", "ask_sz", "seq").rows()
    assert okx_tops
    for bid, bid_sz, ask, ask_sz, seq in okx_tops:
        b, bq, a, aq = swap.tops[seq]
        assert (bid, bid_sz, ask, ask_sz) == (float(b), int(bq) / 100, float(a), int(aq) / 100)

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
