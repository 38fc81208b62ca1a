"""The ``coinbase`` (Advanced Trade) protocol on frames written in the venue's wire format, the
fake venue over a real websocket, and the real 2026 capture when it is present."""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import partial

import msgspec
import pytest
import trio

import plugins.coinbase
from core.bus import Bus
from core.clock import TrioClock
from core.codec import iso_to_ns
from core.plugins import load_plugins
from core.protocol import Instrument, ProtocolConfig
from core.schema import BookUpdate, Event, Health, TopOfBook, Trade
from core.session import Session
from core.sim.market import Market, Script, Step, load_text
from core.sim.server import Simulation
from core.testing.captures import read_records
from core.testing.faults import Fault, FaultPlan
from plugins.coinbase.fake import (
    CoinbaseSession,
    CoinbaseSpeaker,
    error_frame,
    heartbeat_frame,
    iso,
    l2_frame,
    ladder,
    snapshot_changes,
    subscriptions_frame,
    trades_frame,
)
from plugins.coinbase.protocol import TRADE_GAP, CoinbaseProtocol
from tests.conftest import capture_path, skip_reason

CAPTURE = capture_path("coinbase", "COINBASE.jsonl.gz")
NO_CAPTURE = skip_reason("coinbase", "COINBASE.jsonl.gz")
T0 = 1_786_309_548_000_000_000
S = 1_000_000_000


def make(symbols: tuple[str, ...] = ("BTC-USD",),
         channels: tuple[str, ...] = ("tob", "l2", "trades"),
         instruments: dict[str, Instrument] | None = None) -> CoinbaseProtocol:
    proto = CoinbaseProtocol(ProtocolConfig(symbols=symbols, channels=channels,
                                            instruments=instruments or {}))
    return proto


def connect(proto: CoinbaseProtocol, t: int = T0) -> list[dict[str, object]]:
    proto.connection_made(t)
    return [json.loads(f) for f in proto.frames_to_send()]


def feed(proto: CoinbaseProtocol, *frames: str | bytes, t: int = T0 + S) -> list[Event]:
    out: list[Event] = []
    for i, f in enumerate(frames):
        out.extend(proto.receive(f, t + i))
    return out


def of(events: list[Event], cls: type) -> list:
    return [e for e in events if isinstance(e, cls)]


def health(events: list[Event], kind: str | None = None) -> list[Health]:
    return [e for e in events if isinstance(e, Health) and (kind is None or e.event == kind)]


BIDS = ladder(65083.66, 3000, 0.01, down=True)
ASKS = ladder(65083.67, 3000, 0.01, down=False)


def live_book(symbols: tuple[str, ...] = ("BTC-USD",)) -> CoinbaseProtocol:
    """A protocol whose books are live after snapshots at sequence numbers 0.."""
    proto = make(symbols)
    connect(proto)
    feed(proto, *(l2_frame(i, sym, "snapshot", snapshot_changes(BIDS, ASKS))
                  for i, sym in enumerate(symbols)))
    assert all(proto.book.is_live(s) for s in symbols)
    return proto


# -- registration, subscription frames, instruments ------------------------------------------------


def test_plugin_registers_coinbase() -> None:
    _, registry = load_plugins(entry_points=False, extra=[plugins.coinbase])
    assert registry.get("coinbase") is CoinbaseProtocol
    assert CoinbaseProtocol.max_message_bytes == 64 * 1024 * 1024
    assert CoinbaseProtocol.silence_timeout_s == 10.0


def test_one_subscribe_frame_per_channel_heartbeats_always() -> None:
    proto = make(("ETC-USD", "BTC-USD"))
    assert connect(proto) == [
        {"type": "subscribe", "product_ids": ["ETC-USD", "BTC-USD"], "channel": "heartbeats"},
        {"type": "subscribe", "product_ids": ["ETC-USD", "BTC-USD"], "channel": "level2"},
        {"type": "subscribe", "product_ids": ["ETC-USD", "BTC-USD"], "channel": "market_trades"},
    ]
    assert [f["channel"] for f in connect(make(channels=("tob",)))] == ["heartbeats", "level2"]
    assert [f["channel"] for f in connect(make(channels=("trades",)))] == [
        "heartbeats", "market_trades"]
    # frames are text (a websocket text message), not bytes
    proto.connection_made(T0)
    assert all(isinstance(f, str) for f in proto.frames_to_send())


def test_parse_instruments_tick_and_lot_size() -> None:
    body = json.dumps({"products": [
        {"product_id": "ETC-USD", "price": "13.21", "base_increment": "0.00000001",
         "quote_increment": "0.01", "status": "online", "trading_disabled": False,
         "product_type": "SPOT", "alias": "", "alias_to": ["ETC-USDC"]},
        {"product_id": "SHIB-USD", "base_increment": "1", "quote_increment": "0.00000001",
         "status": "online", "trading_disabled": False, "product_type": "SPOT"},
        {"product_id": "MKR-USD", "base_increment": "0.000001", "quote_increment": "0.01",
         "status": "delisted", "trading_disabled": True, "product_type": "SPOT"},
    ], "num_products": 3}).encode()
    inst = CoinbaseProtocol.parse_instruments(body)
    assert CoinbaseProtocol.instruments_path() == "/api/v3/brokerage/market/products"
    assert inst["ETC-USD"] == Instrument(symbol="ETC-USD", native="ETC-USD", tick_size=0.01,
                                         lot_size=1e-8, status="trading")
    assert inst["SHIB-USD"].tick_size == 1e-8
    assert inst["SHIB-USD"].lot_size == 1.0
    assert inst["MKR-USD"].status == "delisted"

    proto = make(("ETC-USD", "NOPE-USD", "MKR-USD"), instruments=inst)
    events = proto.connection_made(T0)
    assert [(e.symbol, e.event, e.detail) for e in events] == [
        ("NOPE-USD", "subscribe_error", "not listed by the products endpoint; not subscribed"),
        ("MKR-USD", "subscribe_error", "delisted; not subscribed"),
    ]
    frames = [json.loads(f) for f in proto.frames_to_send()]
    assert {tuple(f["product_ids"]) for f in frames} == {("ETC-USD",)}
    # reported once per run, not on every reconnect
    proto.connection_lost(T0 + S)
    assert proto.connection_made(T0 + 2 * S) == []


# -- book: snapshot and updates --------------------------------------------------------------------


def test_large_snapshot_then_updates_exact_values() -> None:
    proto = make()
    connect(proto)
    snap_time = "2026-08-09T21:05:48.170326Z"
    events = feed(proto, l2_frame(13, "BTC-USD", "snapshot", snapshot_changes(BIDS, ASKS),
                                  event_time=snap_time), t=T0 + 5)
    assert [(h.symbol, h.event, h.detail) for h in health(events)] == [
        ("BTC-USD", "snapshot", "levels=6000 seq=13")]
    (snap,) = of(events, BookUpdate)
    assert snap.is_snapshot and snap.msg_id == snap.ts_local and snap.seq == 13
    assert snap.ts_exchange == iso_to_ns(snap_time) == 1_786_309_548_170_326_000
    assert snap.ts_local == T0 + 5
    assert len(snap.bids) == 3000 and len(snap.asks) == 3000
    assert snap.bids[0] == (65083.66, 0.5) and snap.bids[-1] == (65053.67, 1.39)
    assert snap.asks[0] == (65083.67, 0.5) and snap.asks[1] == (65083.68, 0.51)
    (tob,) = of(events, TopOfBook)
    assert (tob.bid_px, tob.bid_sz, tob.ask_px, tob.ask_sz, tob.seq) == (
        65083.66, 0.5, 65083.67, 0.5, 13)

    # The best bid leaves and an offer improves by one tick; event_time carries ns digits.
    t_upd = iso(1000, nanos=789)
    events = feed(proto, l2_frame(14, "BTC-USD", "update",
                                  [("bid", "65083.66", "0"), ("offer", "65083.66", "1.25")],
                                  event_time=t_upd), t=T0 + 6)
    (upd,) = of(events, BookUpdate)
    assert (upd.is_snapshot, upd.msg_id > snap.msg_id, upd.seq) == (False, True, 14)
    assert upd.bids == ((65083.66, 0.0),) and upd.asks == ((65083.66, 1.25),)
    assert upd.ts_exchange == iso_to_ns(t_upd) and upd.ts_exchange % 1000 == 789
    (tob,) = of(events, TopOfBook)
    assert (tob.bid_px, tob.bid_sz, tob.ask_px, tob.ask_sz) == (65083.65, 0.51, 65083.66, 1.25)

    # A deep change: an l2 row, no top-of-book row.
    events = feed(proto, l2_frame(15, "BTC-USD", "update", [("bid", "65000.00", "3.5")]))
    assert [type(e) for e in events] == [BookUpdate]
    book = proto.book.book("BTC-USD")
    assert len(book) == 6001  # one level left, two new
    assert book.bids[65000.0] == 3.5
    assert book.top_asks(2) == [(65083.66, 1.25), (65083.67, 0.5)]


def test_tob_only_publishes_no_l2_rows_and_l2_only_no_tob() -> None:
    for channels, want in ((("tob",), {TopOfBook}), (("l2",), {BookUpdate})):
        proto = make(channels=channels)
        connect(proto)
        events = feed(proto, l2_frame(0, "BTC-USD", "snapshot", snapshot_changes(BIDS, ASKS)),
                      l2_frame(1, "BTC-USD", "update", [("bid", "65083.66", "2")]))
        assert {type(e) for e in events if not isinstance(e, Health)} == want


def test_update_that_crosses_the_book_resyncs_that_product() -> None:
    proto = live_book(("BTC-USD", "ETH-USD"))
    events = feed(proto, l2_frame(2, "ETH-USD", "update", [("bid", "65090.00", "1")]))
    assert [(h.symbol, h.event) for h in health(events)] == [("ETH-USD", "crossed")]
    assert [json.loads(f) for f in proto.frames_to_send()] == [
        {"type": "unsubscribe", "product_ids": ["ETH-USD"], "channel": "level2"},
        {"type": "subscribe", "product_ids": ["ETH-USD"], "channel": "level2"},
    ]
    assert proto.book.is_live("BTC-USD") and not proto.book.is_live("ETH-USD")


# -- sequence_num ----------------------------------------------------------------------------------


def test_sequence_gap_invalidates_every_book_and_resubscribes_level2() -> None:
    proto = live_book(("BTC-USD", "ETH-USD"))
    proto.frames_to_send()
    # sequence_num 2 and 3 never arrive; the next frame is a heartbeat.
    events = feed(proto, heartbeat_frame(4, 41692), t=T0 + 7 * S)
    assert [(h.symbol, h.event) for h in health(events)] == [
        (None, "gap"), ("BTC-USD", "gap"), ("ETH-USD", "gap")]
    assert health(events)[0].detail == (
        "sequence_num 1 -> 4: 2 message(s) lost on the connection")
    assert not of(events, BookUpdate) and not of(events, TopOfBook)
    assert [json.loads(f) for f in proto.frames_to_send()] == [
        {"type": "unsubscribe", "product_ids": ["BTC-USD", "ETH-USD"], "channel": "level2"},
        {"type": "subscribe", "product_ids": ["BTC-USD", "ETH-USD"], "channel": "level2"},
    ]
    # Until the new snapshot, updates are skipped and trades still flow.
    events = feed(proto, l2_frame(5, "BTC-USD", "update", [("bid", "65083.66", "9")]),
                  trades_frame(6, "update", [("BTC-USD", "7", "65083.67", "0.1", "SELL",
                                              iso(6))]))
    assert [type(e) for e in events] == [Trade]
    new_bids = [("65083.60", "1.5")]
    events = feed(proto, l2_frame(7, "BTC-USD", "snapshot", snapshot_changes(new_bids, ASKS)))
    assert [(h.symbol, h.event, h.detail) for h in health(events)] == [
        ("BTC-USD", "resynced", "after gap; 1 updates skipped; seq=7")]
    (snap,) = of(events, BookUpdate)
    assert snap.is_snapshot and snap.bids == ((65083.6, 1.5),)
    (tob,) = of(events, TopOfBook)
    assert (tob.bid_px, tob.bid_sz, tob.ask_px) == (65083.6, 1.5, 65083.67)
    assert not proto.book.is_live("ETH-USD")


def test_sequence_going_back_is_a_break_too() -> None:
    proto = live_book()
    events = feed(proto, heartbeat_frame(0, 1))
    assert [(h.symbol, h.event) for h in health(events)] == [(None, "gap"), ("BTC-USD", "gap")]
    assert health(events)[0].detail == "sequence_num went back from 0 to 0"


def test_heartbeats_and_unsubscribed_channels_are_accepted_and_counted() -> None:
    proto = live_book()
    ticker = json.dumps({"channel": "ticker", "client_id": "", "timestamp": iso(3),
                         "sequence_num": 3, "events": [{"type": "update", "tickers": []}]})
    events = feed(proto, heartbeat_frame(1, 41691), heartbeat_frame(2, 41692), ticker,
                  heartbeat_frame(4, 41693))
    assert events == []
    assert proto.decode_errors == {}


def test_a_new_connection_restarts_the_sequence() -> None:
    proto = live_book()
    proto.connection_lost(T0 + S)
    assert not proto.book.is_live("BTC-USD")
    connect(proto, T0 + 2 * S)
    events = feed(proto, heartbeat_frame(0, 5), l2_frame(1, "BTC-USD", "snapshot",
                                                         snapshot_changes(BIDS, ASKS)))
    assert [(h.symbol, h.event, h.detail) for h in health(events)] == [
        ("BTC-USD", "resynced", "after disconnect; 0 updates skipped; seq=1")]


# -- subscriptions and errors ----------------------------------------------------------------------


def test_subscriptions_acks_become_subscribed_once_per_product() -> None:
    proto = make(("BTC-USD", "ETH-USD"))
    connect(proto)
    events = feed(
        proto,
        subscriptions_frame(0, {"heartbeats": ["heartbeats"]}),
        subscriptions_frame(1, {"heartbeats": ["heartbeats"], "level2": ["BTC-USD", "ETH-USD"]}),
        subscriptions_frame(2, {"heartbeats": ["heartbeats"], "level2": ["ETH-USD", "BTC-USD"],
                                "market_trades": ["BTC-USD", "ETH-USD"]}))
    assert [(h.symbol, h.event, h.detail) for h in health(events)] == [
        ("BTC-USD", "subscribed", "level2"), ("ETH-USD", "subscribed", "level2"),
        ("BTC-USD", "subscribed", "market_trades"), ("ETH-USD", "subscribed", "market_trades")]


def test_error_for_a_one_product_request_names_the_product() -> None:
    proto = make(("FOO-USD",), channels=("l2",))
    connect(proto)
    events = feed(proto, subscriptions_frame(0, {"heartbeats": ["heartbeats"]}), error_frame())
    assert [(h.symbol, h.event, h.detail) for h in health(events)] == [
        ("FOO-USD", "subscribe_error", "level2: failure to subscribe")]
    assert proto.next_deadline() is None  # no snapshot is expected any more
    proto.connection_lost(T0 + S)
    proto.connection_made(T0 + 2 * S)
    assert proto.frames_to_send() == []  # not subscribed again


def test_error_for_a_multi_product_request_retries_one_product_per_frame() -> None:
    proto = make(("BTC-USD", "FOO-USD"), channels=("l2",))
    connect(proto)
    events = feed(proto, subscriptions_frame(0, {"heartbeats": ["heartbeats"]}), error_frame())
    assert [(h.symbol, h.event, h.detail) for h in health(events)] == [
        (None, "subscribe_error",
         "level2 BTC-USD,FOO-USD: failure to subscribe; retrying one product per request")]
    assert [json.loads(f) for f in proto.frames_to_send()] == [
        {"type": "subscribe", "product_ids": ["BTC-USD"], "channel": "level2"},
        {"type": "subscribe", "product_ids": ["FOO-USD"], "channel": "level2"},
    ]
    events = feed(proto, l2_frame(1, "BTC-USD", "snapshot", snapshot_changes(BIDS, ASKS)),
                  subscriptions_frame(2, {"heartbeats": ["heartbeats"], "level2": ["BTC-USD"]}),
                  error_frame())
    assert [(h.symbol, h.event) for h in health(events)] == [
        ("BTC-USD", "snapshot"), ("BTC-USD", "subscribed"), ("FOO-USD", "subscribe_error")]


def test_error_with_nothing_pending_is_a_venue_error() -> None:
    proto = make()
    events = feed(proto, error_frame("rate limit exceeded"))
    assert [(h.symbol, h.event, h.detail) for h in health(events)] == [
        (None, "venue_error", "rate limit exceeded")]


def test_acked_then_silent_product_is_reported_and_resubscribed() -> None:
    proto = make(("BTC-USD", "ETH-USD"), channels=("l2",))
    connect(proto)
    feed(proto, l2_frame(0, "BTC-USD", "snapshot", snapshot_changes(BIDS, ASKS)),
         subscriptions_frame(1, {"level2": ["BTC-USD", "ETH-USD"]}))
    assert proto.next_deadline() == T0 + 15 * S
    events = proto.on_deadline(T0 + 15 * S)
    assert [(h.symbol, h.event, h.detail) for h in health(events)] == [
        ("ETH-USD", "no_snapshot", "no snapshot within 15 s; retrying")]
    assert [json.loads(f) for f in proto.frames_to_send()] == [
        {"type": "unsubscribe", "product_ids": ["ETH-USD"], "channel": "level2"},
        {"type": "subscribe", "product_ids": ["ETH-USD"], "channel": "level2"},
    ]
    assert proto.next_deadline() == T0 + 45 * S  # the wait doubles


def test_usdc_product_data_served_under_the_usd_alias() -> None:
    proto = make(("BTC-USDC",), channels=("l2",))
    frames = connect(proto)
    assert frames[1]["product_ids"] == ["BTC-USDC"]
    events = feed(proto, l2_frame(0, "BTC-USD", "snapshot", snapshot_changes(BIDS, ASKS)),
                  subscriptions_frame(1, {"level2": ["BTC-USD"]}))
    assert [(h.symbol, h.event) for h in health(events)] == [
        ("BTC-USDC", "snapshot"), ("BTC-USDC", "subscribed")]
    assert of(events, BookUpdate)[0].symbol == "BTC-USDC"


# -- trades ----------------------------------------------------------------------------------------


def test_trades_carry_the_takers_side_in_trade_id_order() -> None:
    proto = make(channels=("trades",))
    connect(proto)
    t1, t2 = "2026-08-09T21:05:51.376358Z", "2026-08-09T21:05:51.426861Z"
    events = feed(proto, trades_frame(0, "update", [
        ("BTC-USD", "1068572096", "65083.66", "0.00007299", "BUY", t2),
        ("BTC-USD", "1068572095", "65083.67", "0.01034361", "SELL", t1)]))
    assert events == [
        Trade(exchange="coinbase", ts_local=T0 + S, symbol="BTC-USD", ts_exchange=iso_to_ns(t1),
              price=65083.67, size=0.01034361, side="buy", trade_id="1068572095"),
        Trade(exchange="coinbase", ts_local=T0 + S, symbol="BTC-USD", ts_exchange=iso_to_ns(t2),
              price=65083.66, size=0.00007299, side="sell", trade_id="1068572096"),
    ]


def test_trade_snapshot_fills_a_reconnect_and_trade_id_jumps_are_reported() -> None:
    proto = make(("BTC-USD", "ETH-USD"), channels=("trades",))
    connect(proto)

    def tr(p: str, tid: int, side: str = "SELL") -> tuple[str, str, str, str, str, str]:
        return (p, str(tid), "100.5", "0.25", side, iso(tid))

    # The first snapshot predates the run: nothing emitted, ids remembered.
    assert feed(proto, trades_frame(0, "snapshot", [tr("BTC-USD", 11), tr("BTC-USD", 10),
                                                   tr("ETH-USD", 5)])) == []
    events = feed(proto, trades_frame(1, "update", [tr("BTC-USD", 14), tr("BTC-USD", 12)]))
    assert [(type(e).__name__, getattr(e, "trade_id", None) or e.detail) for e in events] == [
        ("Trade", "12"), ("Health", "trade_id 12 -> 14: 1 trade(s) missing"), ("Trade", "14")]
    assert health(events)[0].event == TRADE_GAP == "trade_gap"
    proto.connection_lost(T0 + S)
    connect(proto, T0 + 2 * S)
    # After the reconnect the snapshot brings 15..16 (new) and 13..14 (old) for BTC; ETH lost 6.
    events = feed(proto, trades_frame(0, "snapshot", [
        tr("BTC-USD", 16, "BUY"), tr("BTC-USD", 15), tr("BTC-USD", 14), tr("BTC-USD", 13),
        tr("ETH-USD", 7)]))
    assert [(e.symbol, getattr(e, "trade_id", None), getattr(e, "side", None)) for e in events
            if isinstance(e, Trade)] == [
        ("BTC-USD", "15", "buy"), ("BTC-USD", "16", "sell"), ("ETH-USD", "7", "buy")]
    assert [(h.symbol, h.detail) for h in health(events)] == [
        ("ETH-USD", "trade_id 5 -> 7 across a reconnect: 1 trade(s) missing")]
    # An update repeating a trade the snapshot already emitted is not emitted twice.
    events = feed(proto, trades_frame(1, "update", [tr("BTC-USD", 17), tr("BTC-USD", 16)]))
    assert [e.trade_id for e in of(events, Trade)] == ["17"]


# -- malformed frames ------------------------------------------------------------------------------


def test_malformed_frames_are_decode_errors_never_exceptions() -> None:
    proto = live_book()
    proto.frames_to_send()
    events = feed(proto, "{not json")
    assert [(h.event, h.detail.split(":")[0]) for h in health(events)] == [
        ("decode_error", "DecodeError #1")]
    events = feed(proto, trades_frame(1, "update", [("BTC-USD", "9", "1", "1", "HOLD", iso())]))
    assert [h.event for h in health(events)] == ["decode_error"]
    assert proto.book.is_live("BTC-USD")  # a broken trades frame does not touch the book
    events = feed(proto, l2_frame(2, "BTC-USD", "update", [("ask", "65083.70", "1")]))
    assert [(h.symbol, h.event) for h in health(events)] == [
        (None, "decode_error"), ("BTC-USD", "gap")]
    assert "malformed l2_data frame (sequence_num=2)" in health(events)[1].detail
    assert json.loads(proto.frames_to_send()[0])["type"] == "unsubscribe"
    assert proto.decode_errors == {"DecodeError": 1, "ValidationError": 1, "l2_data": 1}
    assert health(feed(proto, b"\x00\x01"))[0].event == "decode_error"
    assert health(feed(proto, json.dumps({"channel": "l2_data", "sequence_num": "x"})))[
        0].event == "decode_error"


def test_a_frame_is_applied_whole_or_not_at_all() -> None:
    proto = live_book(("BTC-USD", "ETH-USD"))
    proto.frames_to_send()
    good = {"type": "update", "product_id": "BTC-USD", "updates": [
        {"side": "bid", "event_time": iso(1), "price_level": "65083.66", "new_quantity": "7"}]}
    bad_time = {"type": "update", "product_id": "ETH-USD", "updates": [
        {"side": "bid", "event_time": "yesterday", "price_level": "65083.66",
         "new_quantity": "7"}]}
    frame = json.dumps({"channel": "l2_data", "client_id": "", "timestamp": iso(2),
                        "sequence_num": 2, "events": [good, bad_time]})
    events = feed(proto, frame)
    assert [(h.symbol, h.event) for h in health(events)] == [
        (None, "decode_error"), ("BTC-USD", "gap"), ("ETH-USD", "gap")]
    assert "bad timestamp 'yesterday'" in health(events)[0].detail
    assert not of(events, BookUpdate)
    # a trade with a malformed time: nothing emitted, the trade id chain untouched
    proto = make(channels=("trades",))
    connect(proto)
    feed(proto, trades_frame(0, "update", [("BTC-USD", "5", "1", "1", "BUY", iso())]))
    events = feed(proto, trades_frame(1, "update", [
        ("BTC-USD", "7", "1", "1", "BUY", "2026-13-45T00:00:00Z"),
        ("BTC-USD", "6", "1", "1", "BUY", iso())]))
    assert [h.event for h in health(events)] == ["decode_error"]
    assert proto.last_trade_id == {"BTC-USD": 5}


# -- the fake venue over a real websocket ----------------------------------------------------------


def _venue(*faults: Fault) -> tuple[Simulation, Script]:
    """BTC-USD (400 levels a side) and ETH-USD (200); BTC trade 100 before the run; then book
    changes of both products and a trade of each."""
    market = Market([CoinbaseSpeaker.listing("BTC-USD", 65_000.0),
                     CoinbaseSpeaker.listing("ETH-USD", 1_900.0)])
    load_text(market, "coinbase", "BTC-USD", ladder(65083.66, 400, 0.01, down=True),
              ladder(65083.67, 400, 0.01, down=False))
    load_text(market, "coinbase", "ETH-USD", ladder(1919.44, 200, 0.01, down=True),
              ladder(1919.49, 200, 0.01, down=False))
    listing = market.listing("coinbase", "BTC-USD")
    market.print_trade("coinbase", "BTC-USD", T0, listing.ticks("65083.67"), listing.lots("1"),
                       "sell", trade_id=100)
    script = Script("coinbase", [
        Step("BTC-USD", bids=[("65083.66", "0")], asks=[("65083.66", "0.75")]),
        Step("BTC-USD", trades=[("65083.66", "0.2", "buy", 101)]),
        Step("ETH-USD", bids=[("1919.45", "2.5")], pause_s=0.5),
        Step("BTC-USD", asks=[("65083.70", "0")]),
        Step("ETH-USD", asks=[("1919.49", "0"), ("1919.48", "1")]),
        Step("ETH-USD", trades=[("1919.45", "1", "sell", 55)]),
    ], interval_s=0.05)
    sim = Simulation(market, {"coinbase": CoinbaseSpeaker(market)}, clock=TrioClock(T0),
                     faults={"coinbase": FaultPlan(*faults)})
    return sim, script


async def _run(sim: Simulation, script: Script, proto: CoinbaseProtocol, seconds: float,
               before_stop: Callable[[], object] | None = None) -> list[Event]:
    bus = Bus()
    sub = bus.subscribe("test")
    events: list[Event] = []

    async def collect() -> None:
        async for batch in sub:
            events.extend(batch)

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(sim.run)
            nursery.start_soon(collect)
            nursery.start_soon(partial(sim.play, script, after_acks=3))
            assert sim.clock is not None
            nursery.start_soon(Session(proto, bus, url=sim.url("coinbase"), clock=sim.clock,
                                       connect=sim.connect).run)
            await trio.sleep(seconds)
            if before_stop is not None:
                before_stop()
            nursery.cancel_scope.cancel()
    return events


def _book_matches(proto: CoinbaseProtocol, sim: Simulation, product: str) -> bool:
    if not proto.book.is_live(product):
        return False
    bids, asks = sim.speakers["coinbase"].true_view(product)
    book = proto.book.book(product)
    return book.top_bids(1000) == bids and book.top_asks(1000) == asks


async def test_fake_venue_lost_frame_resyncs_to_the_venues_book(autojump_clock: object) -> None:
    # Frames 0..5: heartbeats ack, 2 snapshots, level2 ack, trades snapshot, trades ack; then
    # the steps. Sequence 6 (the first BTC update) is lost.
    sim, script = _venue(Fault("drop_delta"))
    proto = make(("BTC-USD", "ETH-USD"))
    matched: list[bool] = []
    events = await _run(sim, script, proto, 3.0, before_stop=lambda: matched.extend(
        _book_matches(proto, sim, p) for p in ("BTC-USD", "ETH-USD")))
    assert script.done
    assert matched == [True, True]  # both books resynced to the venue's
    kinds = [(h.symbol, h.event) for h in health(events)]
    assert kinds.count((None, "gap")) == 1
    assert ("BTC-USD", "resynced") in kinds and ("ETH-USD", "resynced") in kinds
    gap = next(h for h in health(events) if h.symbol is None and h.event == "gap")
    assert gap.detail == "sequence_num 5 -> 7: 1 message(s) lost on the connection"
    assert [(t.trade_id, t.side) for t in of(events, Trade)] == [("101", "buy"), ("55", "sell")]
    [conn] = sim.speakers["coinbase"].sessions
    assert isinstance(conn, CoinbaseSession)
    assert [json.loads(f)["type"] for f in conn.received[3:5]] == ["unsubscribe", "subscribe"]
    assert proto.decode_errors == {}


async def test_fake_venue_unknown_product_is_a_subscribe_error(autojump_clock: object) -> None:
    sim, script = _venue()
    proto = make(("BTC-USD", "FOO-USD"), channels=("l2",))
    events = await _run(sim, script, proto, 3.0)
    assert [(h.symbol, h.event) for h in health(events)
            if h.event not in ("snapshot", "connected", "disconnected")] == [
        (None, "subscribe_error"), ("BTC-USD", "subscribed"), ("FOO-USD", "subscribe_error")]
    assert set(proto.failed) == {"FOO-USD"}


# -- the real capture ------------------------------------------------------------------------------


@pytest.mark.skipif(CAPTURE is None, reason=NO_CAPTURE)
def test_real_capture_applies_and_agrees_with_the_ticker() -> None:
    """Every frame of the 2026 capture through the protocol: no decode error, no gap, no crossed
    book; and the built book's best bid/ask against the captured ``ticker`` channel."""
    proto = make(("BTC-USD", "ETH-USD"))
    tickers: list[tuple[str, tuple[float, float, float, float], int]] = []
    tops: dict[str, list[tuple[float, float, float, float]]] = {"BTC-USD": [], "ETH-USD": []}
    trade_vs_book: list[tuple[str, str]] = []
    events: list[Event] = []

    def top(sym: str) -> tuple[float, float, float, float]:
        book = proto.book.book(sym)
        (bp, bs), (ap, az) = book.best_bid(), book.best_ask()  # type: ignore[misc]
        return bp, bs, ap, az

    for rec in read_records(CAPTURE):
        if rec.kind == "open":
            connect(proto, rec.ts_ns)
            continue
        if rec.kind != "recv":
            continue
        assert rec.frame is not None
        msg = msgspec.json.decode(rec.frame)
        if msg["channel"] == "ticker":
            for ev in msg["events"]:
                for t in ev["tickers"]:
                    sym = t["product_id"]
                    if proto.book.is_live(sym):
                        tickers.append((sym, (float(t["best_bid"]), float(t["best_bid_quantity"]),
                                              float(t["best_ask"]), float(t["best_ask_quantity"])),
                                        len(tops[sym]) - 1))
        if msg["channel"] == "market_trades" and msg["events"][0]["type"] == "update":
            for t in msg["events"][0]["trades"]:
                if proto.book.is_live(t["product_id"]):
                    bp, _, ap, _ = top(t["product_id"])
                    px = float(t["price"])
                    where = "ask" if px >= ap else "bid" if px <= bp else "inside"
                    trade_vs_book.append((t["side"], where))
        events.extend(proto.receive(rec.frame, rec.ts_ns))
        if msg["channel"] == "l2_data":
            sym = msg["events"][0]["product_id"]
            tops[sym].append(top(sym))
            assert not proto.book.book(sym).is_crossed()

    kinds = [h.event for h in health(events)]
    assert proto.decode_errors == {}
    assert set(kinds) == {"subscribed", "snapshot"}, kinds
    assert kinds.count("snapshot") == 2
    rows = of(events, BookUpdate)
    assert len(rows) == 775 and sum(r.is_snapshot for r in rows) == 2
    assert sum(len(r.bids) + len(r.asks) for r in rows if r.is_snapshot) == 46000 + 23334
    assert len(of(events, Trade)) == 79  # updates only; the two snapshots predate the run

    # Ticker vs book. The ticker is taken at trade time and level2 is batched, so compare with
    # the book just before the ticker frame, and within one level2 update of it.
    def agree(window: int, with_sizes: bool) -> int:
        n = 0
        for sym, tk, i in tickers:
            h = tops[sym]
            near = h[max(0, i - window): i + window + 1]
            if with_sizes:
                n += tk in near
            else:
                n += (tk[0], tk[2]) in [(s[0], s[2]) for s in near]
        return n

    assert len(tickers) == 154
    assert agree(0, with_sizes=True) == 114  # 74 %: price and size, same sequence point
    assert agree(0, with_sizes=False) == 132  # 86 %: best prices, same sequence point
    assert agree(1, with_sizes=True) == 144  # 94 %: price and size, within one update
    assert agree(1, with_sizes=False) == 150  # 97 %: best prices, within one update

    # Maker side: a reported SELL is a resting seller hit at the ask by a buying taker.
    counts = {k: trade_vs_book.count(k) for k in set(trade_vs_book)}
    assert counts == {("SELL", "ask"): 48, ("BUY", "bid"): 23, ("BUY", "inside"): 5,
                      ("SELL", "inside"): 2}


# -- the one-pass path of l2_data frames -----------------------------------------------------------


def _level(side: str = "bid", px: str = "65083.66", qty: str = "7",
           et: str | None = None) -> dict[str, str]:
    return {"side": side, "event_time": et or iso(1), "price_level": px, "new_quantity": qty}


def _l2(updates: list[dict[str, str]], seq: object = 1, **fields: object) -> str:
    frame: dict[str, object] = {
        "channel": "l2_data", "client_id": "", "timestamp": iso(2), "sequence_num": seq,
        "events": [{"type": "update", "product_id": "BTC-USD", "updates": updates}]}
    frame.update(fields)
    return json.dumps({k: v for k, v in frame.items() if v is not None})


L2_FRAMES = {
    "good update": _l2([_level(), _level("offer", "65083.70", "0")]),
    "good update as bytes": _l2([_level()]).encode(),
    "event times differ": _l2([_level(et=iso(3)), _level("offer", "65083.70", "2", iso(1))]),
    "no updates": _l2([]),
    "two events": _l2([], events=[
        {"type": "update", "product_id": "BTC-USD", "updates": [_level()]},
        {"type": "update", "product_id": "BTC-USD", "updates": [_level("bid", "65083.60")]}]),
    "unrequested product": _l2([], events=[
        {"type": "update", "product_id": "XRP-USD", "updates": [_level()]}]),
    "unknown event type": _l2([], events=[
        {"type": "partial", "product_id": "BTC-USD", "updates": [_level()]}]),
    "sequence jump": _l2([_level()], seq=5),
    "sequence back": _l2([_level()], seq=0),
    "NaN price": _l2([_level(px="NaN")]),
    "infinite price": _l2([_level(px="Infinity")]),
    "negative price": _l2([_level(px="-65083.66")]),
    "zero price": _l2([_level(px="0")]),
    "negative size": _l2([_level(qty="-1")]),
    "overflowing size": _l2([_level(qty="1e400")]),
    "size not a number": _l2([_level(qty="lots")]),
    "unknown side": _l2([_level(side="ask")]),
    "bad event_time": _l2([_level(et="yesterday")]),
    "event_time out of range": _l2([_level(et="1970-01-01T00:00:01.000000Z")]),
    "sequence_num as text": _l2([_level()], seq="1"),
    "sequence_num as float": _l2([_level()], seq=1.0),
    "sequence_num in exponent form": _l2([_level()], seq=1e0),
    "sequence_num beyond int64": _l2([_level()], seq=2**64),
    "no sequence_num": _l2([_level()], seq=None),
    "no events": _l2([], events=None),
    "events not a list": _l2([], events={"type": "update"}),
}


@pytest.mark.parametrize("name", sorted(L2_FRAMES))
def test_the_one_pass_l2_path_behaves_as_the_two_step_path(
        monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """Every l2_data frame gives the same events, errors, resync requests and book either way;
    bad values are decode errors that resync every book."""
    fast, slow = live_book(), live_book()
    monkeypatch.setattr(slow, "_l2_push", lambda payload, recv_ns: None)
    frame = L2_FRAMES[name]
    got = feed(fast, frame)
    assert got == feed(slow, frame)
    assert fast.decode_errors == slow.decode_errors
    assert fast.frames_to_send() == slow.frames_to_send()
    fast_book, slow_book = (p.book.states["BTC-USD"].book for p in (fast, slow))
    assert (fast_book.bids, fast_book.asks) == (slow_book.bids, slow_book.asks)
    kinds = [h.event for h in health(got)]
    if name.startswith(("good", "event times", "no updates", "two events")):
        assert not kinds and fast.book.is_live("BTC-USD")
        if name != "no updates":
            assert of(got, BookUpdate)
        assert fast._l2_push(_l2([_level()], seq=2), T0 + 2 * S) is not None
    elif name in ("unrequested product", "unknown event type"):
        assert kinds == ["venue_error"]
    elif name in ("sequence jump", "sequence back"):
        assert kinds == ["gap", "gap"]
    elif name == "no sequence_num":  # nothing to check the sequence against: applied
        assert not kinds and of(got, BookUpdate)
    elif name.startswith("sequence_num"):  # a bad envelope: the whole frame is refused
        assert kinds == ["decode_error"] and "sequence_num" in health(got)[0].detail
    else:
        assert kinds == ["decode_error", "gap"] and not fast.book.is_live("BTC-USD")


def test_the_latest_event_time_of_a_book_event_is_its_ts_exchange() -> None:
    proto = live_book()
    [update] = of(feed(proto, L2_FRAMES["event times differ"]), BookUpdate)
    assert update.ts_exchange == iso_to_ns(iso(3))
    [update] = of(feed(proto, _l2([_level(et=iso(5)), _level("offer", "65083.70", "2", iso(5))],
                                  seq=2)), BookUpdate)
    assert update.ts_exchange == iso_to_ns(iso(5))
