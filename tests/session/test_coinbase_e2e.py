"""The CLI end to end for both Coinbase plugins (Advanced Trade ``coinbase`` and the legacy feed
``coinbase-exchange``): REST products and websocket from loopback fakes, Parquet out, checked
value by value.

Real sockets and real time (a 2 s recording); the run has a trio-clock ceiling.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from importlib.metadata import entry_points
from pathlib import Path

import polars as pl
import pytest
import trio

from core.run import async_main
from core.testing.fake_servers import serve_http, serve_ws
from tests.fakes.coinbase import BASE_TIME, FakeAdvancedTrade, Step, iso
from tests.fakes.coinbase_exchange import FakeExchange, XStep
from tests.tables import msg_rank

PRODUCTS = "/api/v3/brokerage/market/products"
CEILING_S = 30.0
DURATION_S = 2.0


def products() -> bytes:
    return json.dumps({"products": [
        {"product_id": "ETC-USD", "price": "13.21", "base_increment": "0.00000001",
         "quote_increment": "0.01", "status": "online", "trading_disabled": False,
         "product_type": "SPOT", "alias": "", "alias_to": ["ETC-USDC"]},
        {"product_id": "BTC-USD", "price": "65086.18", "base_increment": "0.00000001",
         "quote_increment": "0.01", "status": "online", "trading_disabled": False,
         "product_type": "SPOT", "alias": "", "alias_to": ["BTC-USDC"]},
    ], "num_products": 2, "pagination": {"has_next": False}}).encode()


def venue() -> FakeAdvancedTrade:
    bids = [("13.21", "10.5"), ("13.20", "4"), ("13.18", "0.25")]
    asks = [("13.22", "3.1"), ("13.24", "7.75")]
    return FakeAdvancedTrade(
        books={"ETC-USD": (bids, asks)},
        recent_trades=[("ETC-USD", "9000", "13.21", "2", "BUY", iso())],
        script_after=frozenset({"level2", "market_trades"}),
        steps=[
            Step("ETC-USD", [("offer", "13.22", "0"), ("offer", "13.23", "1.5")]),
            Step(trades=[("ETC-USD", "9002", "13.21", "0.4", "BUY", iso(21)),
                         ("ETC-USD", "9001", "13.22", "1.5", "SELL", iso(20))]),
            Step("ETC-USD", [("bid", "13.19", "6")]),
        ])


def read(out: Path, table: str, exchange: str = "coinbase") -> tuple[str, pl.DataFrame]:
    dates = sorted((out / table / f"exchange={exchange}").glob("date=*"))
    assert len(dates) == 1, dates
    files = sorted(dates[0].glob("*.parquet"))
    assert files
    frame = pl.concat([pl.read_parquet(f) for f in files]).sort("ts_local", maintain_order=True)
    return dates[0].name.removeprefix("date="), frame


def at(seq: int) -> datetime:
    """The fake's ``event_time`` of the frame with this sequence number."""
    return BASE_TIME + timedelta(microseconds=seq)


@pytest.fixture
def only_coinbase(monkeypatch: pytest.MonkeyPatch) -> None:
    """Load the two coinbase entry points alone, whatever state the other venues are in."""
    others = [ep.name for ep in entry_points(group="bookwire")
              if ep.name not in ("coinbase", "coinbase-exchange")]
    monkeypatch.setenv("BOOKWIRE_DISABLE_PLUGINS", ",".join(others))


@pytest.mark.usefixtures("only_coinbase")
async def test_cli_records_coinbase_to_parquet(tmp_path: Path) -> None:
    fake = venue()
    out = tmp_path / "data"
    with trio.fail_after(CEILING_S):
        async with trio.open_nursery() as nursery:
            ws_url = await nursery.start(serve_ws, fake.handler)
            rest_url = await nursery.start(serve_http, {PRODUCTS: products()})
            code = await async_main([
                "--plugins", "coinbase", "--symbols", "ETC-USD", "--channels", "tob,l2,trades",
                "--out", str(out), "--duration", str(DURATION_S),
                "--endpoint", f"coinbase={ws_url}", "--endpoint", f"coinbase.rest={rest_url}",
                "--cache-dir", str(tmp_path / "cache")], handle_signals=False)
            nursery.cancel_scope.cancel()
    assert code == 0

    # One subscribe frame per channel, heartbeats included.
    assert [json.loads(m) for m in fake.received] == [
        {"type": "subscribe", "product_ids": ["ETC-USD"], "channel": c}
        for c in ("heartbeats", "level2", "market_trades")]
    # Frames 0..4: heartbeats ack, snapshot (1), level2 ack, trades snapshot, trades ack;
    # then the steps at 5, 6, 7.
    date, l2 = read(out, "l2")
    assert date == l2["ts_local"][0].strftime("%Y-%m-%d")
    assert msg_rank(l2).select("symbol", "side", "price", "size", "is_snapshot", "seq",
                              "msg_id").rows() == [
        ("ETC-USD", "bid", 13.21, 10.5, True, 1, 1),
        ("ETC-USD", "bid", 13.20, 4.0, True, 1, 1),
        ("ETC-USD", "bid", 13.18, 0.25, True, 1, 1),
        ("ETC-USD", "ask", 13.22, 3.1, True, 1, 1),
        ("ETC-USD", "ask", 13.24, 7.75, True, 1, 1),
        ("ETC-USD", "ask", 13.22, 0.0, False, 5, 2),
        ("ETC-USD", "ask", 13.23, 1.5, False, 5, 2),
        ("ETC-USD", "bid", 13.19, 6.0, False, 7, 3),
    ]
    assert l2["ts_exchange"].to_list() == [at(1)] * 5 + [at(5)] * 2 + [at(7)]

    _, tob = read(out, "tob")
    assert tob.select("symbol", "bid_px", "bid_sz", "ask_px", "ask_sz", "seq").rows() == [
        ("ETC-USD", 13.21, 10.5, 13.22, 3.1, 1),
        ("ETC-USD", 13.21, 10.5, 13.23, 1.5, 5),
    ]
    assert tob["ts_exchange"].to_list() == [at(1), at(5)]

    # market_trades reports the maker's side: SELL -> a buying taker, BUY -> a selling taker.
    # The snapshot's trade 9000 predates the run and is not recorded.
    _, trades = read(out, "trades")
    assert trades.select("symbol", "price", "size", "side", "trade_id").rows() == [
        ("ETC-USD", 13.22, 1.5, "buy", "9001"),
        ("ETC-USD", 13.21, 0.4, "sell", "9002"),
    ]
    assert trades["ts_exchange"].to_list() == [at(20), at(21)]
    assert trades["ts_exchange"][0].tzinfo is not None
    assert trades["ts_exchange"][0] == datetime(2026, 8, 9, 21, 5, 48, 20, tzinfo=UTC)

    _, health = read(out, "health")
    events = health.filter(pl.col("symbol") == "ETC-USD").select("event", "detail").rows()
    assert events == [("snapshot", "levels=5 seq=1"), ("subscribed", "level2"),
                      ("subscribed", "market_trades")]
    for kind in ("gap", "decode_error", "subscribe_error", "no_snapshot",
                 "venue_error", "trade_gap"):
        assert kind not in health["event"].to_list()
    assert health.filter(pl.col("event") == "disconnected")["detail"].to_list() == ["stopped"]


def exchange_products() -> bytes:
    return json.dumps([
        {"id": "ETC-USD", "base_currency": "ETC", "quote_currency": "USD",
         "quote_increment": "0.01", "base_increment": "0.00000001", "display_name": "ETC-USD",
         "min_market_funds": "1", "margin_enabled": False, "post_only": False,
         "limit_only": False, "cancel_only": False, "status": "online", "status_message": "",
         "trading_disabled": False, "fx_stablecoin": False, "auction_mode": False},
    ]).encode()


@pytest.mark.usefixtures("only_coinbase")
async def test_cli_records_coinbase_exchange_to_parquet(tmp_path: Path) -> None:
    fake = FakeExchange(
        books={"ETC-USD": ([("13.21", "10.5"), ("13.20", "4")],
                           [("13.22", "3.1"), ("13.24", "7.75")])},
        last_trade={"ETC-USD": 700},
        steps=[
            XStep("ETC-USD", changes=[("sell", "13.22", "0")], match=(701, "13.22", "0.5", "sell"),
                  ticker=("13.21", "10.5", "13.24", "7.75")),
            XStep("ETC-USD", changes=[("buy", "13.19", "6")], match=(702, "13.21", "0.4", "buy")),
        ])
    out = tmp_path / "data"
    with trio.fail_after(CEILING_S):
        async with trio.open_nursery() as nursery:
            ws_url = await nursery.start(serve_ws, fake.handler)
            rest_url = await nursery.start(serve_http, {"/products": exchange_products()})
            code = await async_main([
                "--plugins", "coinbase-exchange", "--symbols", "ETC-USD",
                "--channels", "tob,l2,trades", "--out", str(out), "--duration", str(DURATION_S),
                "--endpoint", f"coinbase-exchange={ws_url}",
                "--endpoint", f"coinbase-exchange.rest={rest_url}",
                "--cache-dir", str(tmp_path / "cache")], handle_signals=False)
            nursery.cancel_scope.cancel()
    assert code == 0
    assert [json.loads(m) for m in fake.received] == [
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
    assert l2["ts_exchange"].to_list() == [at(1)] * 4 + [at(2000), at(3000)]

    # tob from the ticker channel: the first ticker (no time) and the one after trade 701.
    _, tob = read(out, "tob", "coinbase-exchange")
    assert tob.select("bid_px", "bid_sz", "ask_px", "ask_sz").rows() == [
        (13.21, 10.5, 13.22, 3.1), (13.21, 10.5, 13.24, 7.75)]
    assert tob["ts_exchange"].to_list() == [None, at(2000)]

    # matches report the maker's side; last_match 700 predates the run.
    _, trades = read(out, "trades", "coinbase-exchange")
    assert trades.select("symbol", "price", "size", "side", "trade_id").rows() == [
        ("ETC-USD", 13.22, 0.5, "buy", "701"),
        ("ETC-USD", 13.21, 0.4, "sell", "702"),
    ]
    assert trades["ts_exchange"].to_list() == [at(2000), at(3000)]

    _, health = read(out, "health", "coinbase-exchange")
    events = health.filter(pl.col("symbol") == "ETC-USD").select("event", "detail").rows()
    assert events == [("subscribed", "heartbeat,level2_batch,ticker,matches"),
                      ("snapshot", "levels=4 seq=None")]
    for kind in ("gap", "decode_error", "subscribe_error", "no_snapshot",
                 "venue_error", "trade_gap"):
        assert kind not in health["event"].to_list()
    assert health.filter(pl.col("event") == "disconnected")["detail"].to_list() == ["stopped"]
