"""The CLI end to end for both Coinbase plugins (Advanced Trade ``coinbase`` and the legacy feed
``coinbase-exchange``): REST products and websocket from the loopback fakes, Parquet out,
checked value by value.

Real sockets and real time (a 2 s recording); the run has a trio-clock ceiling.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from functools import partial
from importlib.metadata import entry_points
from pathlib import Path

import polars as pl
import pytest
import trio

from core.codec import MS_NS
from core.run import async_main
from core.sim.market import Market, Script, Step, load_text
from core.sim.server import Simulation
from tests.session.sims import COINBASE_ETC, EXCHANGE_ETC, endpoints, serving, simulation
from tests.tables import msg_rank

CEILING_S = 30.0
DURATION_S = 2.0
US_NS = 1_000


def at(t_ns: int) -> datetime:
    """A venue time as the plugins read it back (the fakes write microseconds)."""
    return datetime.fromtimestamp(t_ns // US_NS / 1e6, UTC)


def read(out: Path, table: str, exchange: str = "coinbase") -> tuple[str, pl.DataFrame]:
    dates = sorted((out / table / f"exchange={exchange}").glob("date=*"))
    assert len(dates) == 1, dates
    files = sorted(dates[0].glob("*.parquet"))
    assert files
    frame = pl.concat([pl.read_parquet(f) for f in files]).sort("ts_local", maintain_order=True)
    return dates[0].name.removeprefix("date="), frame


@pytest.fixture
def only_coinbase(monkeypatch: pytest.MonkeyPatch) -> None:
    """Load the two coinbase entry points alone, whatever state the other venues are in."""
    others = [ep.name for ep in entry_points(group="bookwire")
              if ep.name not in ("coinbase", "coinbase-exchange")]
    monkeypatch.setenv("BOOKWIRE_DISABLE_PLUGINS", ",".join(others))


def advanced_trade() -> tuple[Simulation, Script]:
    """ETC-USD: three bids, two asks; trade 9000 before the run; then the best ask taken and a
    level added, two trades, a new bid."""
    market = Market([COINBASE_ETC])
    load_text(market, "coinbase", "ETC-USD", [("13.21", "10.5"), ("13.20", "4"),
                                               ("13.18", "0.25")],
              [("13.22", "3.1"), ("13.24", "7.75")])
    listing = market.listing("coinbase", "ETC-USD")
    market.print_trade("coinbase", "ETC-USD", 1_786_310_818_000 * MS_NS, listing.ticks("13.21"),
                       listing.lots("2"), "sell", trade_id=9000)
    script = Script("coinbase", [
        Step("ETC-USD", asks=[("13.22", "0"), ("13.23", "1.5")]),
        Step("ETC-USD", trades=[("13.22", "1.5", "buy", 9001), ("13.21", "0.4", "sell", 9002)]),
        Step("ETC-USD", bids=[("13.19", "6")]),
    ], interval_s=0.05)
    return simulation(market), script


@pytest.mark.usefixtures("only_coinbase")
async def test_cli_records_coinbase_to_parquet(tmp_path: Path) -> None:
    sim, script = advanced_trade()
    out = tmp_path / "data"
    with trio.fail_after(CEILING_S):
        async with serving(sim) as (nursery, urls):
            # heartbeats, level2 and market_trades acknowledged
            nursery.start_soon(partial(sim.play, script, after_acks=3))
            code = await async_main([
                "--plugins", "coinbase", "--symbols", "ETC-USD", "--channels", "tob,l2,trades",
                "--out", str(out), "--duration", str(DURATION_S), *endpoints(urls),
                "--cache-dir", str(tmp_path / "cache")], handle_signals=False)
    assert code == 0
    assert script.done
    step1, step2, step3 = script.fired

    # One subscribe frame per channel, heartbeats included.
    [conn] = sim.speakers["coinbase"].sessions
    assert [json.loads(m) for m in conn.received] == [
        {"type": "subscribe", "product_ids": ["ETC-USD"], "channel": c}
        for c in ("heartbeats", "level2", "market_trades")]
    # Frames 0..4: heartbeats ack, snapshot (1), level2 ack, trades snapshot, trades ack; then
    # the steps' frames (a heartbeat may come in between: the sequence numbers are the venue's)
    snapshot_seq, first_seq, last_seq = conn.l2_seqs  # type: ignore[attr-defined]
    assert snapshot_seq == 1 and first_seq > 4
    date, l2 = read(out, "l2")
    assert date == l2["ts_local"][0].strftime("%Y-%m-%d")
    assert msg_rank(l2).select("symbol", "side", "price", "size", "is_snapshot", "seq",
                               "msg_id").rows() == [
        ("ETC-USD", "bid", 13.21, 10.5, True, 1, 1),
        ("ETC-USD", "bid", 13.20, 4.0, True, 1, 1),
        ("ETC-USD", "bid", 13.18, 0.25, True, 1, 1),
        ("ETC-USD", "ask", 13.22, 3.1, True, 1, 1),
        ("ETC-USD", "ask", 13.24, 7.75, True, 1, 1),
        ("ETC-USD", "ask", 13.22, 0.0, False, first_seq, 2),
        ("ETC-USD", "ask", 13.23, 1.5, False, first_seq, 2),
        ("ETC-USD", "bid", 13.19, 6.0, False, last_seq, 3),
    ]
    assert l2["ts_exchange"].to_list()[5:] == [at(step1)] * 2 + [at(step3)]
    assert l2["ts_exchange"][0] <= at(step1)

    _, tob = read(out, "tob")
    assert tob.select("symbol", "bid_px", "bid_sz", "ask_px", "ask_sz", "seq").rows() == [
        ("ETC-USD", 13.21, 10.5, 13.22, 3.1, 1),
        ("ETC-USD", 13.21, 10.5, 13.23, 1.5, first_seq),
    ]
    assert tob["ts_exchange"].to_list()[1:] == [at(step1)]

    # market_trades reports the maker's side: SELL -> a buying taker, BUY -> a selling taker.
    # The snapshot's trade 9000 predates the run and is not recorded.
    _, trades = read(out, "trades")
    assert trades.select("symbol", "price", "size", "side", "trade_id").rows() == [
        ("ETC-USD", 13.22, 1.5, "buy", "9001"),
        ("ETC-USD", 13.21, 0.4, "sell", "9002"),
    ]
    assert trades["ts_exchange"].to_list() == [at(step2), at(step2)]
    assert trades["ts_exchange"][0].tzinfo is not None

    _, health = read(out, "health")
    events = health.filter(pl.col("symbol") == "ETC-USD").select("event", "detail").rows()
    assert events == [("snapshot", "levels=5 seq=1"), ("subscribed", "level2"),
                      ("subscribed", "market_trades")]
    for kind in ("gap", "decode_error", "subscribe_error", "no_snapshot",
                 "venue_error", "trade_gap"):
        assert kind not in health["event"].to_list()
    assert health.filter(pl.col("event") == "disconnected")["detail"].to_list() == ["stopped"]


def legacy_feed() -> tuple[Simulation, Script]:
    """ETC-USD on the legacy feed: last trade 700 before the run; then the best ask taken
    (trade 701) and a new bid with trade 702."""
    market = Market([EXCHANGE_ETC])
    load_text(market, "coinbase-exchange", "ETC-USD", [("13.21", "10.5"), ("13.20", "4")],
              [("13.22", "3.1"), ("13.24", "7.75")])
    listing = market.listing("coinbase-exchange", "ETC-USD")
    market.print_trade("coinbase-exchange", "ETC-USD", 1_786_310_818_000 * MS_NS,
                       listing.ticks("13.21"), listing.lots("1"), "buy", trade_id=700)
    script = Script("coinbase-exchange", [
        Step("ETC-USD", asks=[("13.22", "0")], trades=[("13.22", "0.5", "buy", 701)]),
        Step("ETC-USD", bids=[("13.19", "6")], trades=[("13.21", "0.4", "sell", 702)]),
    ], interval_s=0.05)
    return simulation(market), script


@pytest.mark.usefixtures("only_coinbase")
async def test_cli_records_coinbase_exchange_to_parquet(tmp_path: Path) -> None:
    sim, script = legacy_feed()
    out = tmp_path / "data"
    with trio.fail_after(CEILING_S):
        async with serving(sim) as (nursery, urls):
            nursery.start_soon(sim.play, script)
            code = await async_main([
                "--plugins", "coinbase-exchange", "--symbols", "ETC-USD",
                "--channels", "tob,l2,trades", "--out", str(out), "--duration", str(DURATION_S),
                *endpoints(urls), "--cache-dir", str(tmp_path / "cache")], handle_signals=False)
    assert code == 0
    assert script.done
    step1, step2 = script.fired
    [conn] = sim.speakers["coinbase-exchange"].sessions
    assert [json.loads(m) for m in conn.received] == [
        {"type": "subscribe", "product_ids": ["ETC-USD"],
         "channels": ["heartbeat", "level2_batch", "ticker", "matches"]}]

    _, l2 = read(out, "l2", "coinbase-exchange")
    assert msg_rank(l2).select("side", "price", "size", "is_snapshot", "seq", "msg_id").rows() == [
        ("bid", 13.21, 10.5, True, None, 1),
        ("bid", 13.20, 4.0, True, None, 1),
        ("ask", 13.22, 3.1, True, None, 1),
        ("ask", 13.24, 7.75, True, None, 1),
        ("ask", 13.22, 0.0, False, None, 2),
        ("bid", 13.19, 6.0, False, None, 3),
    ]
    assert l2["ts_exchange"].to_list()[4:] == [at(step1), at(step2)]

    # tob from the ticker channel: the first ticker (no time) and the one after trade 701; the
    # one after trade 702 shows the same best levels, so no row.
    _, tob = read(out, "tob", "coinbase-exchange")
    assert tob.select("bid_px", "bid_sz", "ask_px", "ask_sz").rows() == [
        (13.21, 10.5, 13.22, 3.1), (13.21, 10.5, 13.24, 7.75)]
    assert tob["ts_exchange"].to_list() == [None, at(step1)]

    # matches report the maker's side; last_match 700 predates the run.
    _, trades = read(out, "trades", "coinbase-exchange")
    assert trades.select("symbol", "price", "size", "side", "trade_id").rows() == [
        ("ETC-USD", 13.22, 0.5, "buy", "701"),
        ("ETC-USD", 13.21, 0.4, "sell", "702"),
    ]
    assert trades["ts_exchange"].to_list() == [at(step1), at(step2)]

    _, health = read(out, "health", "coinbase-exchange")
    events = health.filter(pl.col("symbol") == "ETC-USD").select("event", "detail").rows()
    assert events == [("subscribed", "heartbeat,level2_batch,ticker,matches"),
                      ("snapshot", "levels=4 seq=None")]
    for kind in ("gap", "decode_error", "subscribe_error", "no_snapshot",
                 "venue_error", "trade_gap"):
        assert kind not in health["event"].to_list()
    assert health.filter(pl.col("event") == "disconnected")["detail"].to_list() == ["stopped"]
