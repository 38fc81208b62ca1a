"""Binance USD-M protocol, synchronously, on frames written in the venue's wire format (the shapes
of the documentation's examples, with realistic ids and times).

The depth procedure: diffs buffered until the REST snapshot, stale diffs dropped, the first one
bridging ``U <= lastUpdateId <= u``, then ``pu`` == previous ``u``; a break resyncs that symbol
alone with a new snapshot."""

from __future__ import annotations

import json

import msgspec
import pytest

from core.codec import MS_NS, S_NS
from core.protocol import ProtocolConfig
from core.schema import BookUpdate, Event, Health, TopOfBook, Trade
from core.testing.conformance import check_protocol
from plugins.binance.protocol import MAX_STREAMS_PER_REQUEST, BinanceProtocol

T_MS = 1_786_310_818_000
T0 = T_MS * MS_NS


def config(*symbols: str, channels: tuple[str, ...] = ("tob", "l2", "trades")) -> ProtocolConfig:
    return ProtocolConfig(symbols=symbols or ("BTC-USDT",), channels=channels)


def proto(*symbols: str, channels: tuple[str, ...] = ("tob", "l2", "trades")) -> BinanceProtocol:
    p = BinanceProtocol(config(*symbols, channels=channels))
    p.connection_made(T0)
    p.frames_to_send()
    return p


def diff(symbol: str, first: int, last: int, prev: int, bids: list[list[str]],
         asks: list[list[str]], ms: int = 0) -> str:
    """A ``depthUpdate`` push as Binance sends it on ``<symbol>@depth@100ms``."""
    return json.dumps({"e": "depthUpdate", "E": T_MS + ms + 2, "T": T_MS + ms, "s": symbol,
                       "U": first, "u": last, "pu": prev, "b": bids, "a": asks})


def rest_depth(last: int, bids: list[list[str]], asks: list[list[str]]) -> bytes:
    """The body of ``GET /fapi/v1/depth``."""
    return json.dumps({"lastUpdateId": last, "E": T_MS + 50, "T": T_MS + 49, "bids": bids,
                       "asks": asks}).encode()


def l2_rows(events: list[Event]) -> list[tuple]:
    return [(e.symbol, e.is_snapshot, e.seq, e.bids, e.asks) for e in events
            if isinstance(e, BookUpdate)]


def health(events: list[Event]) -> list[tuple]:
    return [(e.event, e.symbol) for e in events if isinstance(e, Health)]


def call(p: BinanceProtocol) -> tuple[str, str]:
    [req] = p.rest_requests_to_send()
    return req.key, req.path


def test_conformance() -> None:
    check_protocol(BinanceProtocol, config("BTC-USDT", "ETH-USDT"))


def test_subscribe_requests_name_every_stream_in_lower_case() -> None:
    p = BinanceProtocol(config("BTC-USDT", "ETH-USDT"))
    p.connection_made(T0)
    [frame] = p.frames_to_send()
    assert json.loads(frame) == {"method": "SUBSCRIBE", "id": 1, "params": [
        "btcusdt@bookTicker", "btcusdt@depth@100ms", "btcusdt@aggTrade",
        "ethusdt@bookTicker", "ethusdt@depth@100ms", "ethusdt@aggTrade"]}


def test_unknown_options_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown option 'l2_depth'; valid keys: funding_poll_s"):
        BinanceProtocol(ProtocolConfig(symbols=("BTC-USDT",), channels=("tob",),
                                       options={"l2_depth": "20"}))


def test_lanes_split_books_and_trades() -> None:
    plan = BinanceProtocol.lane_plan(config("BTC-USDT"))
    assert [(lane.path, c.channels) for lane, c in plan] == [
        ("/public/ws", ("tob", "l2")), ("/market/ws", ("trades",))]
    assert [lane.path for lane, _ in BinanceProtocol.lane_plan(
        config("BTC-USDT", channels=("trades",)))] == ["/market/ws"]


def test_many_streams_go_in_several_requests_and_too_many_are_refused() -> None:
    symbols = tuple(f"C{i}-USDT" for i in range(120))
    p = BinanceProtocol(config(*symbols, channels=("tob", "l2")))
    p.connection_made(T0)
    frames = [json.loads(f) for f in p.frames_to_send()]
    assert [len(f["params"]) for f in frames] == [MAX_STREAMS_PER_REQUEST] * 2 + [40]
    assert [f["id"] for f in frames] == [1, 2, 3]
    with pytest.raises(ValueError, match="1024 streams per connection"):
        BinanceProtocol(config(*(f"C{i}-USDT" for i in range(600)), channels=("tob", "l2")))
    BinanceProtocol(config(*(f"C{i}-USDT" for i in range(600)), channels=("trades",)))


def test_subscription_reply_is_a_subscribed_row_per_symbol() -> None:
    p = BinanceProtocol(config("BTC-USDT", "ETH-USDT", channels=("tob",)))
    p.connection_made(T0)
    p.frames_to_send()
    events = p.receive('{"result":null,"id":1}', T0 + 1)
    assert [(e.event, e.symbol, e.detail) for e in events if isinstance(e, Health)] == [
        ("subscribed", "BTC-USDT", "btcusdt@bookTicker"),
        ("subscribed", "ETH-USDT", "ethusdt@bookTicker")]


def test_rejected_subscription_is_reported_for_its_symbols() -> None:
    p = BinanceProtocol(config("BTC-USDT", channels=("trades",)))
    p.connection_made(T0)
    p.frames_to_send()
    for frame in ('{"error":{"code":2,"msg":"Invalid request: unknown variant"},"id":1}',):
        [e] = p.receive(frame, T0 + 1)
        assert isinstance(e, Health)
        assert (e.event, e.symbol) == ("subscribe_error", "BTC-USDT")
        assert e.detail == "SUBSCRIBE rejected: code 2: Invalid request: unknown variant"
    # the older flat error shape, for a request no longer pending
    [e] = p.receive('{"code":1,"msg":"Invalid value type: expected Boolean","id":7}', T0 + 2)
    assert (e.event, e.detail) == ("venue_error", "request 7: code 1: Invalid value type: "
                                                  "expected Boolean")


def test_ping_is_list_subscriptions_and_its_reply_is_silent() -> None:
    p = proto()
    deadline = p.next_deadline()
    assert deadline is not None
    p.on_deadline(T0 + 30 * S_NS)
    [ping] = [json.loads(f) for f in p.frames_to_send()]
    assert ping["method"] == "LIST_SUBSCRIPTIONS"
    assert p.receive(json.dumps({"result": ["btcusdt@aggTrade"], "id": ping["id"]}),
                     T0 + 31 * S_NS) == []


def test_book_ticker_is_the_top_of_book() -> None:
    p = proto(channels=("tob",))
    frame = ('{"e":"bookTicker","u":400900217,"E":1786310818005,"T":1786310818003,'
             '"s":"BTCUSDT","b":"25.35190000","B":"31.21000000","a":"25.36520000",'
             '"A":"40.66000000"}')
    events = p.receive(frame, T0 + 10)
    tob = [e for e in events if isinstance(e, TopOfBook)]
    assert [(t.bid_px, t.bid_sz, t.ask_px, t.ask_sz, t.seq, t.ts_exchange) for t in tob] == [
        (25.3519, 31.21, 25.3652, 40.66, 400900217, 1786310818003 * MS_NS)]
    assert health(events) == [("snapshot", "BTC-USDT")]
    assert p.receive(frame.replace("400900217", "400900218"), T0 + 11) == []  # unchanged top
    empty_ask = p.receive(frame.replace('"a":"25.36520000","A":"40.66000000"',
                                        '"a":"0","A":"0"'), T0 + 12)
    [t] = [e for e in empty_ask if isinstance(e, TopOfBook)]
    assert (t.ask_px, t.ask_sz) == (None, None)


def test_agg_trade_taker_side_comes_from_the_maker_flag() -> None:
    p = proto(channels=("trades",))
    sold = ('{"e":"aggTrade","E":1786310818010,"s":"BTCUSDT","a":5933014,"p":"65000.10",'
            '"q":"0.125","f":100,"l":105,"T":1786310818007,"m":true}')
    [t] = p.receive(sold, T0 + 1)
    assert isinstance(t, Trade)
    assert (t.symbol, t.price, t.size, t.side, t.trade_id, t.ts_exchange) == (
        "BTC-USDT", 65000.1, 0.125, "sell", "5933014", 1786310818007 * MS_NS)
    [t] = p.receive(sold.replace('"m":true', '"m":false').replace("5933014", "5933015"), T0 + 2)
    assert (t.side, t.trade_id) == ("buy", "5933015")
    [bad] = p.receive(sold.replace('"q":"0.125"', '"q":"-1"'), T0 + 3)
    assert isinstance(bad, Health) and bad.event == "decode_error"


def test_bridge_and_pu_chain() -> None:
    p = proto(channels=("l2",))
    # diffs are buffered; the first one triggers the snapshot call
    assert p.receive(diff("BTCUSDT", 150, 155, 149, [["99.0", "1"]], []), T0 + 1) == []
    key, path = call(p)
    assert path == "/fapi/v1/depth?symbol=BTCUSDT&limit=1000"
    assert p.receive(diff("BTCUSDT", 156, 160, 155, [["99.5", "2"]], []), T0 + 2) == []
    assert p.receive(diff("BTCUSDT", 161, 165, 160, [], [["101.0", "3"]]), T0 + 3) == []
    assert p.rest_requests_to_send() == []  # one call at a time
    # snapshot at 158: the diff ending at 155 is stale, the one at 156..160 bridges it
    events = p.rest_response(key, 200, rest_depth(158, [["100.0", "1.5"], ["99.0", "1"]],
                                                   [["101.0", "2"]]), T0 + 4)
    assert l2_rows(events) == [
        ("BTC-USDT", True, 158, ((100.0, 1.5), (99.0, 1.0)), ((101.0, 2.0),)),
        ("BTC-USDT", False, 160, ((99.5, 2.0),), ()),
        ("BTC-USDT", False, 165, (), ((101.0, 3.0),)),
    ]
    assert health(events) == [("snapshot", "BTC-USDT")]
    # the buffered diffs keep their own receive times, msg_id keeps their order
    rows = [e for e in events if isinstance(e, BookUpdate)]
    assert [e.ts_local for e in rows] == [T0 + 4, T0 + 2, T0 + 3]
    assert rows[0].msg_id < rows[1].msg_id < rows[2].msg_id
    assert rows[0].ts_exchange == (T_MS + 49) * MS_NS
    # live: pu == previous u
    events = p.receive(diff("BTCUSDT", 166, 170, 165, [["99.5", "0"]], []), T0 + 5)
    assert l2_rows(events) == [("BTC-USDT", False, 170, ((99.5, 0.0),), ())]
    assert p.l2.book("BTC-USDT").top_bids(5) == [(100.0, 1.5), (99.0, 1.0)]


def test_snapshot_newer_than_every_buffered_diff_bridges_the_next_one() -> None:
    p = proto(channels=("l2",))
    p.receive(diff("BTCUSDT", 150, 155, 149, [["99.0", "1"]], []), T0 + 1)
    key, _ = call(p)
    events = p.rest_response(key, 200, rest_depth(158, [["100.0", "1"]], [["101.0", "1"]]),
                             T0 + 2)
    assert [r[:3] for r in l2_rows(events)] == [("BTC-USDT", True, 158)]
    # the next diff started before the snapshot: U <= 158 <= u, its pu is not 158
    events = p.receive(diff("BTCUSDT", 156, 160, 155, [["99.0", "2"]], []), T0 + 3)
    assert [r[:3] for r in l2_rows(events)] == [("BTC-USDT", False, 160)]
    assert health(events) == []
    events = p.receive(diff("BTCUSDT", 161, 162, 160, [["99.0", "3"]], []), T0 + 4)
    assert [r[:3] for r in l2_rows(events)] == [("BTC-USDT", False, 162)]


def test_the_subscription_ack_asks_for_the_snapshot_of_a_quiet_book() -> None:
    p = proto("BTC-USDT", "ETH-USDT", channels=("tob", "l2"))
    assert p.rest_requests_to_send() == []
    p.receive('{"result":null,"id":1}', T0 + 1)
    calls = p.rest_requests_to_send()
    assert [c.path for c in calls] == ["/fapi/v1/depth?symbol=BTCUSDT&limit=1000",
                                       "/fapi/v1/depth?symbol=ETHUSDT&limit=1000"]
    events = p.rest_response(calls[0].key, 200, rest_depth(300, [["10.0", "1"]],
                                                           [["11.0", "1"]]), T0 + 2)
    assert [r[:3] for r in l2_rows(events)] == [("BTC-USDT", True, 300)]
    # the book stayed quiet: the next diff starts right after the snapshot (pu == 300)
    events = p.receive(diff("BTCUSDT", 301, 303, 300, [["10.0", "2"]], []), T0 + 3)
    assert [r[:3] for r in l2_rows(events)] == [("BTC-USDT", False, 303)]
    assert health(events) == []


def test_first_diff_after_the_snapshot_that_does_not_bridge_it_is_a_gap() -> None:
    p = proto(channels=("l2",))
    p.receive(diff("BTCUSDT", 150, 155, 149, [], []), T0 + 1)
    key, _ = call(p)
    p.rest_response(key, 200, rest_depth(158, [["100.0", "1"]], [["101.0", "1"]]), T0 + 2)
    events = p.receive(diff("BTCUSDT", 161, 165, 160, [], []), T0 + 3)
    assert health(events) == [("gap", "BTC-USDT")]
    assert "lastUpdateId=158" in next(e for e in events if isinstance(e, Health)).detail


def test_a_break_resyncs_that_symbol_alone_with_a_new_snapshot() -> None:
    p = proto("BTC-USDT", "ETH-USDT", channels=("l2",))
    live = {}
    for native, base in (("BTCUSDT", 100), ("ETHUSDT", 500)):
        p.receive(diff(native, base, base + 5, base - 1, [], []), T0 + 1)
        live[native] = call(p)[0]
    for native, base in (("BTCUSDT", 100), ("ETHUSDT", 500)):
        p.rest_response(live[native], 200, rest_depth(base + 3, [["10.0", "1"]],
                                                      [["11.0", "1"]]), T0 + 2)
    assert p.l2.is_live("BTC-USDT") and p.l2.is_live("ETH-USDT")
    # BTC: u=105 then an update whose pu is 107, not 105: the update 106..107 was lost
    events = p.receive(diff("BTCUSDT", 108, 110, 107, [["10.0", "2"]], []), T0 + 3)
    assert health(events) == [("gap", "BTC-USDT")]
    assert p.l2.is_live("ETH-USDT") and not p.l2.is_live("BTC-USDT")
    # a new call for BTC only, at once (its stream is active), under a new call number
    key, path = call(p)
    assert path == "/fapi/v1/depth?symbol=BTCUSDT&limit=1000" and key != live["BTCUSDT"]
    # ETH carries on
    events = p.receive(diff("ETHUSDT", 506, 507, 505, [["10.0", "4"]], []), T0 + 4)
    assert [r[:3] for r in l2_rows(events)] == [("ETH-USDT", False, 507)]
    # BTC buffers again meanwhile
    p.receive(diff("BTCUSDT", 111, 112, 110, [["10.0", "3"]], []), T0 + 5)
    p.receive(diff("BTCUSDT", 113, 115, 112, [["10.5", "1"]], []), T0 + 6)
    assert p.rest_requests_to_send() == []
    # a late answer to the first call is ignored
    assert p.rest_response(live["BTCUSDT"], 200, rest_depth(1, [], []), T0 + 7) == []
    events = p.rest_response(key, 200, rest_depth(113, [["10.0", "3"]], [["11.0", "1"]]),
                             T0 + 8)
    assert [r[:3] for r in l2_rows(events)] == [("BTC-USDT", True, 113),
                                                  ("BTC-USDT", False, 115)]
    [resynced] = [e for e in events if isinstance(e, Health)]
    assert resynced.event == "resynced" and resynced.detail.startswith("after gap;")


def test_snapshot_older_than_the_buffered_stream_is_asked_again_later() -> None:
    p = proto(channels=("l2",))
    p.receive(diff("BTCUSDT", 150, 155, 149, [], []), T0 + 1)
    key, _ = call(p)
    events = p.rest_response(key, 200, rest_depth(120, [["100.0", "1"]], [["101.0", "1"]]),
                             T0 + 2)
    assert events == [] and not p.l2.is_live("BTC-USDT")  # never published
    p.receive(diff("BTCUSDT", 156, 160, 155, [["99.0", "1"]], []), T0 + 3)
    assert p.rest_requests_to_send() == []  # backing off: 0.5 s
    p.receive(diff("BTCUSDT", 161, 165, 160, [["100.0", "2"]], []), T0 + S_NS)
    key, _ = call(p)
    events = p.rest_response(key, 200, rest_depth(157, [["100.0", "1"]], [["101.0", "1"]]),
                             T0 + S_NS + 1)
    assert [r[:3] for r in l2_rows(events)] == [
        ("BTC-USDT", True, 157), ("BTC-USDT", False, 160), ("BTC-USDT", False, 165)]


def test_failed_snapshot_calls_back_off_and_an_unknown_symbol_is_given_up() -> None:
    p = proto("BTC-USDT", "XYZ-USDT", channels=("l2",))
    p.receive(diff("BTCUSDT", 150, 155, 149, [], []), T0 + 1)
    key, _ = call(p)
    events = p.rest_response(key, 429, b'{"code":-1003,"msg":"Too many requests"}', T0 + 2,
                             "HTTP 429")
    [e] = events
    assert isinstance(e, Health) and (e.event, e.symbol) == ("venue_error", "BTC-USDT")
    assert "HTTP 429" in e.detail and "asking again in 0.5 s" in e.detail
    p.receive(diff("BTCUSDT", 156, 160, 155, [], []), T0 + 3)
    assert p.rest_requests_to_send() == []
    p.receive(diff("BTCUSDT", 161, 165, 160, [], []), T0 + S_NS)
    key, _ = call(p)
    events = p.rest_response(key, 0, b"", T0 + S_NS + 1, "no response within 10 s")
    assert "asking again in 1 s" in events[0].detail  # doubled
    # an unknown symbol: reported once, never asked again, no snapshot deadline left
    p.receive(diff("XYZUSDT", 1, 2, 0, [], []), T0 + 4)
    key, path = call(p)
    assert "symbol=XYZUSDT" in path
    [e] = p.rest_response(key, 400, b'{"code":-1121,"msg":"Invalid symbol."}', T0 + 5,
                          "HTTP 400")
    assert (e.event, e.symbol) == ("subscribe_error", "XYZ-USDT")
    p.receive(diff("XYZUSDT", 3, 4, 2, [], []), T0 + 6)
    assert p.rest_requests_to_send() == []
    assert "XYZ-USDT" not in [s for s, st in p.l2.states.items() if st.snapshot_due_ns]


def test_overdue_snapshot_starts_the_procedure_again() -> None:
    p = proto(channels=("l2",))
    p.receive(diff("BTCUSDT", 150, 155, 149, [], []), T0 + 1)
    first, _ = call(p)
    events = p.on_deadline(T0 + 16 * S_NS)
    assert health(events) == [("no_snapshot", "BTC-USDT")]
    assert p.rest_response(first, 200, rest_depth(152, [], []), T0 + 16 * S_NS + 1) == []
    p.receive(diff("BTCUSDT", 156, 160, 155, [], []), T0 + 17 * S_NS)
    second, _ = call(p)
    assert second != first


def test_a_malformed_diff_on_a_live_book_is_a_decode_error_and_a_gap() -> None:
    p = proto(channels=("l2",))
    p.receive(diff("BTCUSDT", 150, 155, 149, [], []), T0 + 1)
    key, _ = call(p)
    p.rest_response(key, 200, rest_depth(152, [["100.0", "1"]], [["101.0", "1"]]), T0 + 2)
    bad = diff("BTCUSDT", 156, 160, 155, [["NaN", "1"]], [])
    events = p.receive(bad, T0 + 3)
    assert health(events) == [("decode_error", None), ("gap", "BTC-USDT")]
    garbage = p.rest_response("depth:BTC-USDT:999", 200, b"not json", T0 + 4)
    assert garbage == []  # not the pending call: ignored before decoding


def test_a_malformed_snapshot_body_is_a_decode_error() -> None:
    p = proto(channels=("l2",))
    p.receive(diff("BTCUSDT", 150, 155, 149, [], []), T0 + 1)
    key, _ = call(p)
    [e, gap] = p.rest_response(key, 200, b'{"lastUpdateId":"x","bids":[],"asks":[]}', T0 + 2)
    assert (e.event, gap.event, gap.symbol) == ("decode_error", "gap", "BTC-USDT")


def test_instruments_from_exchange_info() -> None:
    body = json.dumps({"timezone": "UTC", "symbols": [
        {"symbol": "BTCUSDT", "pair": "BTCUSDT", "contractType": "PERPETUAL",
         "status": "TRADING", "baseAsset": "BTC", "quoteAsset": "USDT", "marginAsset": "USDT",
         "filters": [{"filterType": "PRICE_FILTER", "minPrice": "556.80",
                      "maxPrice": "4529764", "tickSize": "0.10"},
                     {"filterType": "LOT_SIZE", "stepSize": "0.001", "maxQty": "1000",
                      "minQty": "0.001"}]},
        {"symbol": "BTCUSDT_261225", "pair": "BTCUSDT", "contractType": "CURRENT_QUARTER",
         "status": "TRADING", "baseAsset": "BTC", "quoteAsset": "USDT", "filters": []},
        {"symbol": "ETHUSDT", "pair": "ETHUSDT", "contractType": "PERPETUAL",
         "status": "SETTLING", "baseAsset": "ETH", "quoteAsset": "USDT", "filters": []},
    ]}).encode()
    got = BinanceProtocol.parse_instruments(body)
    assert sorted(got) == ["BTC-USDT", "ETH-USDT"]
    btc = got["BTC-USDT"]
    assert (btc.native, btc.tick_size, btc.lot_size, btc.contract_size, btc.status) == (
        "BTCUSDT", 0.1, 0.001, 1.0, "trading")
    assert got["ETH-USDT"].status == "settling"
    with pytest.raises(msgspec.ValidationError):
        BinanceProtocol.parse_instruments(b'{"symbols": [{}]}')
