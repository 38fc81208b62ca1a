"""End to end: the CLI against the loopback fake OKX (websocket with raw-deflate binary pushes +
REST instruments), checking the Parquet tables value by value with sizes in base units (contracts
x ``ctVal``). One ``books`` update of BTC-USDT carries a wrong checksum: that book alone is
resubscribed and ``resynced``; idle updates and a sequence reset are no gaps."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from decimal import Decimal
from itertools import groupby
from pathlib import Path

import polars as pl
import trio

from core.bus import Bus
from core.protocol import ProtocolConfig
from core.run import async_main
from core.schema import Event, Health
from core.session import Backoff, Session
from core.testing.fake_servers import serve_http, serve_ws
from plugins.okx.protocol import OkxProtocol
from tests.fakes.okx import FakeOkx, Swap, okx_script

CEILING_S = 40


def read(out: Path, table: str, *, by_time: bool = True) -> pl.DataFrame:
    files = sorted(out.glob(f"{table}/exchange=okx/date=*/*.parquet"))
    assert files, f"no {table} files under {out}"
    rows = pl.concat([pl.read_parquet(f) for f in files])
    return rows.sort("ts_local", maintain_order=True) if by_time else rows


def base(sz: str, swap: Swap) -> float:
    return float(Decimal(sz) * Decimal(swap.script.ct_val))


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


async def test_cli_records_okx_in_base_units_with_a_checksum_resync(tmp_path: Path) -> None:
    fake = FakeOkx({"BTC-USDT-SWAP": okx_script(65000.0, "0.01", 90, idle_at=(10, 11),
                                                reset_at=45),
                    "ETH-USDT-SWAP": okx_script(3000.0, "0.1", 90)},
                   bad_checksum_at={"BTC-USDT-SWAP": 25}, deflate=True)
    out = tmp_path / "data"
    with trio.fail_after(CEILING_S):
        async with trio.open_nursery() as nursery:
            ws_url = await nursery.start(serve_ws, fake.handler)
            rest_url = await nursery.start(serve_http, fake.rest)
            await nursery.start(fake.run)
            code = await async_main([
                "--plugins", "okx", "--symbols", "BTC-USDT,ETH-USDT",
                "--channels", "tob,l2,trades", "--out", str(out), "--duration", "3.2",
                "--endpoint", f"okx={ws_url}", "--endpoint", f"okx.rest={rest_url}",
                "--cache-dir", str(tmp_path / "cache"), "--no-live", "--record-raw",
            ], handle_signals=False)
            nursery.cancel_scope.cancel()
    assert code == 0 and fake.done.is_set()
    assert fake.subscriptions[("books", "BTC-USDT-SWAP")] == 2
    assert fake.subscriptions[("books", "ETH-USDT-SWAP")] == 1

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
    for inst, swap in fake.live.items():
        sym = inst.removesuffix("-SWAP")
        rows = l2.filter(pl.col("symbol") == sym)
        bids, asks = swap.sides()
        assert rebuild(rows) == ({float(p): base(s, swap) for p, s in bids},
                                 {float(p): base(s, swap) for p, s in asks})
        runs = [k for k, _ in groupby(rows["msg_id"].to_list())]
        assert runs == sorted(set(runs))
        tops = tob.filter(pl.col("symbol") == sym).select(
            "bid_px", "bid_sz", "ask_px", "ask_sz", "seq").rows()
        assert tops
        for bid, bid_sz, ask, ask_sz, seq in tops:
            b, bq, a, aq = swap.tops[seq]
            assert (bid, bid_sz, ask, ask_sz) == (float(b), base(bq, swap), float(a),
                                                  base(aq, swap))
        got = trades.filter(pl.col("symbol") == sym).select(
            "trade_id", "price", "size", "side", "ts_exchange").rows()
        venue = [(t.id, float(t.px), base(t.sz, swap), t.side,
                  datetime.fromtimestamp(t.ms / 1000, UTC)) for t in swap.trades]
        # every trade from the subscription on (the market ran before it), each once, exact
        first = [v[0] for v in venue].index(got[0][0])
        assert got == venue[first:] and first <= 3
    # the reset: BTC's seq went down and the book carried on
    seqs = l2.filter(pl.col("symbol") == "BTC-USDT")["seq"].to_list()
    assert seqs[-1] < seqs[0]

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


async def test_text_pings_are_sent_and_pongs_keep_a_quiet_socket_alive() -> None:
    fake = FakeOkx({})  # nothing to subscribe to: only ping and pong on the wire
    bus = Bus()
    sub = bus.subscribe("test")
    proto = PingingOkx(ProtocolConfig(symbols=("BTC-USDT",), channels=("trades",)))
    events: list[Event] = []

    async def collect() -> None:
        async for batch in sub:
            events.extend(batch)

    with trio.fail_after(CEILING_S):
        async with trio.open_nursery() as nursery:
            url = await nursery.start(serve_ws, fake.handler)
            nursery.start_soon(collect)
            nursery.start_soon(Session(proto, bus, url=url,
                                       backoff=Backoff(rng=random.Random(1))).run)
            await trio.sleep(1.2)
            nursery.cancel_scope.cancel()
    assert fake.pings >= 8 and fake.conns[0].received.count("ping") == fake.pings
    assert len(fake.conns) == 1  # never reconnected: the pongs prove the socket alive
    rows = [e.event for e in events if isinstance(e, Health)]
    assert rows[:1] == ["connected"] and "disconnected" not in rows
