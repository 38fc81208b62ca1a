"""The ``coinbase-exchange`` (legacy feed) protocol on frames written in the feed's wire format,
and against the fake feed over in-memory streams (the 5-second subscribe rule included)."""

from __future__ import annotations

import json

import pytest
import trio
from trio_websocket import ConnectionClosed

import plugins.coinbase_exchange
from core.bus import Bus
from core.clock import TrioClock
from core.codec import iso_to_ns
from core.plugins import load_plugins
from core.protocol import Instrument, ProtocolConfig
from core.schema import BookUpdate, Event, Health, TopOfBook, Trade
from core.session import Session
from core.sim.market import Market, Script, Step, load_text
from core.sim.server import Simulation
from plugins.coinbase_exchange.fake import (
    ExchangeSpeaker,
    error_frame,
    heartbeat_frame,
    iso,
    l2update_frame,
    ladder,
    match_frame,
    snapshot_frame,
    subscriptions_frame,
    ticker_frame,
)
from plugins.coinbase_exchange.protocol import CoinbaseExchangeProtocol

T0 = 1_786_309_548_000_000_000
S = 1_000_000_000
BIDS = ladder(13.21, 1321, 0.01, down=True)  # down to 0.01: every price positive
ASKS = ladder(13.22, 3679, 0.01, down=False)


def make(symbols: tuple[str, ...] = ("ETC-USD",),
         channels: tuple[str, ...] = ("tob", "l2", "trades"),
         options: dict[str, str] | None = None,
         instruments: dict[str, Instrument] | None = None) -> CoinbaseExchangeProtocol:
    return CoinbaseExchangeProtocol(ProtocolConfig(
        symbols=symbols, channels=channels, options=options or {},
        instruments=instruments or {}))


def connect(proto: CoinbaseExchangeProtocol, t: int = T0) -> list[dict[str, object]]:
    proto.connection_made(t)
    return [json.loads(f) for f in proto.frames_to_send()]


def feed(proto: CoinbaseExchangeProtocol, *frames: str | bytes, t: int = T0 + S) -> list[Event]:
    out: list[Event] = []
    for i, f in enumerate(frames):
        out.extend(proto.receive(f, t + i))
    return out


def of(events: list[Event], cls: type) -> list:
    return [e for e in events if isinstance(e, cls)]


def health(events: list[Event]) -> list[tuple[str | None, str, str]]:
    return [(e.symbol, e.event, e.detail) for e in events if isinstance(e, Health)]


def live(symbols: tuple[str, ...] = ("ETC-USD",)) -> CoinbaseExchangeProtocol:
    """A protocol whose books are live after their snapshots."""
    proto = make(symbols)
    connect(proto)
    feed(proto, *(snapshot_frame(s, BIDS, ASKS, iso()) for s in symbols))
    assert all(proto.book.is_live(s) for s in symbols)
    return proto


def test_plugin_registers_coinbase_exchange() -> None:
    _, registry = load_plugins(entry_points=False, extra=[plugins.coinbase_exchange])
    assert registry.get("coinbase-exchange") is CoinbaseExchangeProtocol
    assert CoinbaseExchangeProtocol.name == "coinbase-exchange"
    assert CoinbaseExchangeProtocol.default_url == "wss://ws-feed.exchange.coinbase.com"


def test_subscribe_frames_are_ready_at_connection_made_one_per_product() -> None:
    proto = make(("ETC-USD", "BTC-USD"))
    assert connect(proto) == [
        {"type": "subscribe", "product_ids": ["ETC-USD"],
         "channels": ["heartbeat", "level2_batch", "ticker", "matches"]},
        {"type": "subscribe", "product_ids": ["BTC-USD"],
         "channels": ["heartbeat", "level2_batch", "ticker", "matches"]},
    ]
    assert connect(make(channels=("trades",)))[0]["channels"] == ["heartbeat", "matches"]
    assert connect(make(channels=("tob",)))[0]["channels"] == ["heartbeat", "ticker"]
    assert connect(make(channels=("tob",), options={"tob_from": "book"}))[0]["channels"] == [
        "heartbeat", "level2_batch"]
    with pytest.raises(ValueError, match="tob_from"):
        make(options={"tob_from": "ticker_batch"})


def test_parse_products_tick_size() -> None:
    body = json.dumps([
        {"id": "ETC-USD", "base_currency": "ETC", "quote_currency": "USD",
         "quote_increment": "0.01", "base_increment": "0.00000001", "display_name": "ETC-USD",
         "min_market_funds": "1", "margin_enabled": False, "post_only": False,
         "limit_only": False, "cancel_only": False, "status": "online", "status_message": "",
         "trading_disabled": False, "fx_stablecoin": False, "auction_mode": False},
        {"id": "MKR-USD", "quote_increment": "0.01", "base_increment": "0.000001",
         "status": "delisted", "trading_disabled": True},
    ]).encode()
    inst = CoinbaseExchangeProtocol.parse_instruments(body)
    assert CoinbaseExchangeProtocol.instruments_path() == "/products"
    assert inst["ETC-USD"] == Instrument(symbol="ETC-USD", native="ETC-USD", tick_size=0.01,
                                         lot_size=1e-8, status="trading")
    assert inst["MKR-USD"].status == "delisted"
    proto = make(("ETC-USD", "ZZZ-USD"), instruments=inst)
    assert health(proto.connection_made(T0)) == [
        ("ZZZ-USD", "subscribe_error", "not listed by /products; not subscribed")]
    assert [json.loads(f)["product_ids"] for f in proto.frames_to_send()] == [["ETC-USD"]]


def test_snapshot_then_l2updates_exact_values() -> None:
    proto = make()
    connect(proto)
    events = feed(proto, snapshot_frame("ETC-USD", BIDS, ASKS, "2026-08-09T21:05:48.1Z"))
    assert health(events) == [("ETC-USD", "snapshot", "levels=5000 seq=None")]
    (snap,) = of(events, BookUpdate)
    assert (snap.is_snapshot, snap.seq, snap.msg_id) == (True, None, T0 + S)
    assert snap.ts_exchange == 1_786_309_548_100_000_000
    assert (len(snap.bids), len(snap.asks)) == (1321, 3679)
    assert snap.bids[:2] == ((13.21, 0.5), (13.2, 0.51)) and snap.asks[0] == (13.22, 0.5)
    assert of(events, TopOfBook) == []  # tob comes from the ticker by default

    t = "2026-08-09T21:05:49.075687Z"
    events = feed(proto, l2update_frame("ETC-USD", [["sell", "13.22", "0"],
                                                    ["buy", "13.215", "4.2"],
                                                    ["sell", "13.30", "7"]], t))
    (upd,) = of(events, BookUpdate)
    assert upd.bids == ((13.215, 4.2),) and upd.asks == ((13.22, 0.0), (13.3, 7.0))
    assert (upd.ts_exchange, upd.seq) == (iso_to_ns(t), None) and upd.msg_id > snap.msg_id
    book = proto.book.book("ETC-USD")
    assert book.best_bid() == (13.215, 4.2) and book.best_ask() == (13.23, 0.51)
    assert book.asks[13.3] == 7.0


def test_tob_from_book_option() -> None:
    proto = make(channels=("tob",), options={"tob_from": "book"})
    connect(proto)
    events = feed(proto, snapshot_frame("ETC-USD", BIDS, ASKS),
                  l2update_frame("ETC-USD", [["buy", "13.21", "9"]], iso(5)),
                  ticker_frame("ETC-USD", 7, ("1", "1", "2", "2"), iso(6)))
    assert [(e.bid_px, e.bid_sz, e.ask_px, e.ask_sz, e.ts_exchange) for e in events
            if isinstance(e, TopOfBook)] == [
        (13.21, 0.5, 13.22, 0.5, None), (13.21, 9.0, 13.22, 0.5, iso_to_ns(iso(5)))]
    assert of(events, BookUpdate) == []


def test_ticker_is_the_top_of_book_published_on_change_only() -> None:
    proto = make(channels=("tob",))
    connect(proto)
    t = "2026-08-09T21:05:50.123456Z"
    events = feed(proto,
                  ticker_frame("ETC-USD", 90, ("13.21", "10.5", "13.22", "3.1"), None),
                  ticker_frame("ETC-USD", 91, ("13.21", "10.5", "13.22", "3.1"), t, "13.22", 7),
                  ticker_frame("ETC-USD", 95, ("13.21", "10.5", "13.23", "1.0"), t, "13.22", 8))
    assert events == [
        TopOfBook(exchange="coinbase-exchange", ts_local=T0 + S, symbol="ETC-USD",
                  ts_exchange=None, bid_px=13.21, bid_sz=10.5, ask_px=13.22, ask_sz=3.1, seq=90),
        TopOfBook(exchange="coinbase-exchange", ts_local=T0 + S + 2, symbol="ETC-USD",
                  ts_exchange=iso_to_ns(t), bid_px=13.21, bid_sz=10.5, ask_px=13.23, ask_sz=1.0,
                  seq=95),
    ]


def test_matches_carry_the_takers_side_and_trade_ids_are_checked() -> None:
    proto = make(channels=("trades",))
    connect(proto)
    t1, t2 = "2026-08-09T21:05:51.1Z", "2026-08-09T21:05:51.2Z"
    events = feed(proto,
                  match_frame("ETC-USD", 500, "13.20", "1", "buy", iso(), kind="last_match"),
                  match_frame("ETC-USD", 501, "13.22", "2.5", "sell", t1),
                  match_frame("ETC-USD", 503, "13.21", "0.75", "buy", t2),
                  match_frame("ETC-USD", 503, "13.21", "0.75", "buy", t2))
    assert [e for e in events if isinstance(e, Trade)] == [
        Trade(exchange="coinbase-exchange", ts_local=T0 + S + 1, symbol="ETC-USD",
              ts_exchange=iso_to_ns(t1), price=13.22, size=2.5, side="buy", trade_id="501"),
        Trade(exchange="coinbase-exchange", ts_local=T0 + S + 2, symbol="ETC-USD",
              ts_exchange=iso_to_ns(t2), price=13.21, size=0.75, side="sell", trade_id="503"),
    ]
    assert health(events) == [("ETC-USD", "trade_gap", "trade_id 501 -> 503: 1 trade(s) missing")]
    # After a reconnect the last_match is newer than the last trade seen: it fills the outage.
    proto.connection_lost(T0 + 2 * S)
    connect(proto, T0 + 3 * S)
    events = feed(proto, match_frame("ETC-USD", 505, "13.25", "1", "sell", iso(9),
                                     kind="last_match"))
    assert [(type(e).__name__, getattr(e, "trade_id", None)) for e in events] == [
        ("Health", None), ("Trade", "505")]
    assert of(events, Trade)[0].side == "buy"


def test_heartbeats_produce_nothing() -> None:
    proto = live()
    events = feed(proto, heartbeat_frame("ETC-USD", 90, 20, iso()),
                  heartbeat_frame("ETC-USD", 91, 20, iso(1_000_000)))
    assert events == []


def test_subscriptions_and_product_errors() -> None:
    proto = make(("ETC-USD", "FOO-USD", "FOO-USDC"), channels=("l2", "trades"))
    connect(proto)
    events = feed(
        proto,
        subscriptions_frame({"heartbeat": ["ETC-USD"], "level2_batch": ["ETC-USD"],
                             "matches": ["ETC-USD"]}),
        error_frame("FOO-USD is not a valid product"),
        subscriptions_frame({"heartbeat": ["ETC-USD"], "level2_batch": ["ETC-USD"],
                             "matches": ["ETC-USD"]}))
    assert health(events) == [
        ("ETC-USD", "subscribed", "heartbeat,level2_batch,matches"),
        ("FOO-USD", "subscribe_error", "Failed to subscribe: FOO-USD is not a valid product"),
    ]
    assert health(feed(proto, error_frame("FOO-USDC is not a valid product"))) == [
        ("FOO-USDC", "subscribe_error", "Failed to subscribe: FOO-USDC is not a valid product")]
    assert proto.book.next_deadline() == T0 + 15 * S  # ETC's snapshot only
    proto.connection_lost(T0 + S)
    assert [f["product_ids"] for f in connect(proto, T0 + 2 * S)] == [["ETC-USD"]]
    # An error that names nothing is put on the oldest unacknowledged product.
    events = feed(proto, error_frame("Invalid channel"))
    assert health(events) == [
        ("ETC-USD", "subscribe_error", "Failed to subscribe: Invalid channel")]
    assert health(feed(proto, error_frame("slow down", message="Rate limited"))) == [
        (None, "venue_error", "Rate limited: slow down")]


def test_crossed_book_resyncs_by_resubscribing_level2_batch() -> None:
    proto = live(("ETC-USD", "BTC-USD"))
    events = feed(proto, l2update_frame("BTC-USD", [["buy", "13.50", "1"]], iso(3)))
    assert [h[:2] for h in health(events)] == [("BTC-USD", "crossed")]
    assert [json.loads(f) for f in proto.frames_to_send()] == [
        {"type": "unsubscribe", "product_ids": ["BTC-USD"], "channels": ["level2_batch"]},
        {"type": "subscribe", "product_ids": ["BTC-USD"], "channels": ["level2_batch"]},
    ]
    events = feed(proto, snapshot_frame("BTC-USD", BIDS, ASKS))
    assert [h[:2] for h in health(events)] == [("BTC-USD", "resynced")]


def test_silent_product_is_reported_no_snapshot_and_resubscribed() -> None:
    proto = make(("ETC-USD",), channels=("l2",))
    connect(proto)
    feed(proto, subscriptions_frame({"heartbeat": ["ETC-USD"], "level2_batch": ["ETC-USD"]}))
    assert health(proto.on_deadline(T0 + 15 * S)) == [
        ("ETC-USD", "no_snapshot", "no snapshot within 15 s; retrying")]
    assert [json.loads(f)["type"] for f in proto.frames_to_send()] == ["unsubscribe", "subscribe"]


def test_a_lost_l2update_is_not_detectable() -> None:
    """The documented limit of this feed: no sequence number on level2, so a lost batch leaves
    a wrong book and nothing says so (unless the book ends up crossed)."""
    proto = live()
    # the venue sent [["buy","13.21","0"]] and it was lost; the next batch arrives normally
    events = feed(proto, l2update_frame("ETC-USD", [["buy", "13.19", "3"]], iso(2)))
    assert health(events) == []
    assert proto.book.book("ETC-USD").best_bid() == (13.21, 0.5)  # the venue's is 13.2


def test_malformed_frames_are_decode_errors() -> None:
    proto = live()
    for bad in ('{"type":', '{"product_id":"ETC-USD"}',
                match_frame("ETC-USD", 9, "13.2", "1", "up", iso()),
                match_frame("ETC-USD", 9, "nan", "1", "buy", iso()),
                match_frame("ETC-USD", 9, "13.2", "-1", "buy", iso()),
                '{"type":"match","product_id":"ETC-USD","trade_id":9,"side":"buy"}'):
        events = feed(proto, bad)
        assert [h[1] for h in health(events)] == ["decode_error"], bad
    assert sum(proto.decode_errors.values()) == 6
    assert proto.book.is_live("ETC-USD")
    # a malformed time: the trade is dropped before it changes anything
    events = feed(proto, match_frame("ETC-USD", 9, "13.2", "1", "sell", "noon"))
    assert [h[1] for h in health(events)] == ["decode_error"]
    assert proto.last_trade_id == {}


@pytest.mark.parametrize("bad", [
    l2update_frame("ETC-USD", [["bid", "13.2", "1"]], iso()),
    l2update_frame("ETC-USD", [["buy", "13.21", "99"]], "noon"),
    l2update_frame("ETC-USD", [["buy", "13.21", "-1"]], iso()),
    l2update_frame("ETC-USD", [["buy", "", "1"]], iso()),
    '{"type":"snapshot","product_id":"ETC-USD","bids":[["x","1"]],"asks":[]}',
    '{"type":"snapshot","product_id":"ETC-USD","bids":[["1","inf"]],"asks":[]}',
])
def test_a_malformed_book_frame_resyncs_the_book(bad: str) -> None:
    """The legacy feed has no sequence numbers: a book frame that cannot be applied is a lost
    update, so the book is resynced (level2_batch unsubscribe + subscribe)."""
    proto = live()
    events = feed(proto, bad)
    assert [(h[0], h[1]) for h in health(events)] == [
        (None, "decode_error"), ("ETC-USD", "gap")]
    assert not proto.book.is_live("ETC-USD")
    assert [(f["type"], f["channels"]) for f in map(json.loads, proto.frames_to_send())] == [
        ("unsubscribe", ["level2_batch"]), ("subscribe", ["level2_batch"])]


def test_unknown_types_and_products_are_reported_once() -> None:
    proto = live()
    events = feed(proto, '{"type":"status","products":[]}', '{"type":"status","products":[]}',
                  l2update_frame("XRP-USD", [["buy", "1", "1"]], iso()),
                  l2update_frame("XRP-USD", [["buy", "1", "1"]], iso()))
    assert [h[1] for h in health(events)] == ["venue_error", "venue_error"]


# -- the fake feed over a real websocket ----------------------------------------------------------


def feed_venue(with_btc: bool = False) -> tuple[Simulation, Script]:
    """ETC-USD (and BTC-USD) 300 levels a side; last trade 700 before the run; then trade 701
    taking the best ask, a BTC bid, and trade 702 with a smaller best bid."""
    listings = [ExchangeSpeaker.listing("ETC-USD", 13.0)]
    if with_btc:
        listings.append(ExchangeSpeaker.listing("BTC-USD", 65_000.0))
    market = Market(listings)
    load_text(market, "coinbase-exchange", "ETC-USD", BIDS[:300], ASKS[:300])
    listing = market.listing("coinbase-exchange", "ETC-USD")
    market.print_trade("coinbase-exchange", "ETC-USD", T0, listing.ticks("13.21"),
                       listing.lots("1"), "buy", trade_id=700)
    steps = [Step("ETC-USD", asks=[("13.22", "0")], trades=[("13.22", "0.5", "buy", 701)],
                  pause_s=3.0)]
    if with_btc:
        load_text(market, "coinbase-exchange", "BTC-USD",
                  ladder(65083.66, 300, 0.01, down=True), ladder(65083.67, 300, 0.01, down=False))
        steps.append(Step("BTC-USD", bids=[("65083.66", "2")]))
    steps.append(Step("ETC-USD", bids=[("13.21", "0.25")], trades=[("13.21", "0.25", "sell",
                                                                    702)]))
    sim = Simulation(market, {"coinbase-exchange": ExchangeSpeaker(market)},
                     clock=TrioClock(T0))
    return sim, Script("coinbase-exchange", steps, interval_s=0.05)


async def test_fake_feed_closes_a_connection_that_does_not_subscribe(
        autojump_clock: trio.testing.MockClock) -> None:
    sim, _ = feed_venue()
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(sim.run)
            start = trio.current_time()
            async with sim.connect(sim.url("coinbase-exchange"), 1 << 20) as ws:
                with pytest.raises(ConnectionClosed) as closed:
                    await ws.get_message()
            waited = trio.current_time() - start
            nursery.cancel_scope.cancel()
    assert closed.value.reason is not None and closed.value.reason.code == 1008
    assert 5.0 <= waited < 6.0
    assert sim.speakers["coinbase-exchange"].closed_unsubscribed == 1  # type: ignore[attr-defined]


async def test_fake_feed_full_session(autojump_clock: trio.testing.MockClock) -> None:
    sim, script = feed_venue(with_btc=True)
    proto = make(("ETC-USD", "BTC-USD"))
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
            nursery.start_soon(sim.play, script)
            assert sim.clock is not None
            nursery.start_soon(Session(proto, bus, url=sim.url("coinbase-exchange"),
                                       clock=sim.clock, connect=sim.connect).run)
            await trio.sleep(5.0)
            nursery.cancel_scope.cancel()
    assert script.done
    received = sim.speakers["coinbase-exchange"].sessions[0].received
    assert [json.loads(f)["product_ids"] for f in received] == [["ETC-USD"], ["BTC-USD"]]
    kinds = [h[:2] for h in health(events)]
    assert kinds.count(("ETC-USD", "snapshot")) == 1 and kinds.count(("BTC-USD", "snapshot")) == 1
    assert ("ETC-USD", "subscribed") in kinds and ("BTC-USD", "subscribed") in kinds
    assert [(t.trade_id, t.price, t.side) for t in of(events, Trade)] == [
        ("701", 13.22, "buy"), ("702", 13.21, "sell")]
    tobs = [(e.symbol, e.bid_px, e.bid_sz, e.ask_px) for e in of(events, TopOfBook)]
    assert tobs[-2:] == [("ETC-USD", 13.21, 0.5, 13.23), ("ETC-USD", 13.21, 0.25, 13.23)]
    rows = [r for r in of(events, BookUpdate) if not r.is_snapshot]
    assert [(r.symbol, r.bids, r.asks) for r in rows] == [
        ("ETC-USD", (), ((13.22, 0.0),)), ("BTC-USD", ((65083.66, 2.0),), ()),
        ("ETC-USD", ((13.21, 0.25),), ())]
