"""The fake Binance venue, sans-IO: what it answers to requests, the update ids every connection
shares with the REST depth snapshot, its routed endpoints, errors, websocket pings and the age
cut, the mark price stream, the polled open interest and the server time; and the plugin reading
its exchangeInfo, snapshots and funding values. Plain synchronous tests."""

from __future__ import annotations

import json
from dataclasses import replace
from decimal import Decimal
from urllib.parse import urlencode

from core.protocol import ProtocolConfig
from core.schema import Funding
from core.sim.market import Listing, Market, PerpUpdate, load_text
from core.sim.perp import FundingSchedule, simulate_perps
from core.sim.simulator import SimParams
from core.sim.speaker import WS_PING, RestReply
from plugins.binance.fake import (
    FIRST_UPDATE_ID,
    MARKET,
    PUBLIC,
    BinanceSession,
    BinanceSpeaker,
)
from plugins.binance.protocol import BinanceProtocol

S = 1_000_000_000
T0 = 1_786_000_000 * S
BTC = Listing("binance", "BTC-USDT", tick=Decimal("0.10"), lot=Decimal("0.001"))
ETH = Listing("binance", "ETH-USDT", tick=Decimal("0.01"), lot=Decimal("0.001"))


def venue() -> tuple[Market, BinanceSpeaker]:
    market = Market([BTC, ETH])
    load_text(market, "binance", "BTC-USDT", [("65000.00", "1.500"), ("64999.90", "2")],
              [("65000.10", "0.250"), ("65000.20", "3")])
    load_text(market, "binance", "ETH-USDT", [("3000.00", "4")], [("3000.01", "5")])
    return market, BinanceSpeaker(market)


def subscribe(session: BinanceSession, *streams: str, req_id: int = 1) -> list[object]:
    outs = session.receive(json.dumps({"method": "SUBSCRIBE", "params": list(streams),
                                       "id": req_id}), T0)
    return [json.loads(o.frame) for o in outs if isinstance(o.frame, str)]


def depth(speaker: BinanceSpeaker, symbol: str = "BTCUSDT", limit: int = 1000
          ) -> bytes | RestReply | None:
    return speaker.rest("/fapi/v1/depth?" + urlencode({"symbol": symbol, "limit": limit}))


def test_subscriptions_are_acknowledged_and_listed() -> None:
    _, speaker = venue()
    session = speaker.open(T0, PUBLIC)
    assert subscribe(session, "btcusdt@bookTicker", "btcusdt@depth@100ms") == [
        {"result": None, "id": 1}]
    [listed] = [json.loads(o.frame) for o in session.receive(  # type: ignore[arg-type]
        '{"method":"LIST_SUBSCRIPTIONS","id":7}', T0)]
    assert listed == {"result": ["btcusdt@bookTicker", "btcusdt@depth@100ms"], "id": 7}
    assert [json.loads(o.frame) for o in session.receive(  # type: ignore[arg-type]
        '{"method":"UNSUBSCRIBE","params":["btcusdt@bookTicker"],"id":8}', T0)] == [
        {"result": None, "id": 8}]
    assert list(session.streams) == ["btcusdt@depth@100ms"]


def test_malformed_requests_get_binance_s_errors() -> None:
    _, speaker = venue()
    session = speaker.open(T0, PUBLIC)

    def answer(frame: str) -> dict[str, object]:
        [out] = session.receive(frame, T0)
        assert out.kind == "error"
        return json.loads(out.frame)  # type: ignore[arg-type]

    assert answer("{not json")["error"] == {
        "code": 3, "msg": "Invalid JSON: expected value at line 1 column 1"}
    assert answer('{"method":"SUBSCRIBE","params":[],"id":-1}')["error"]["code"] == 2  # type: ignore[index]
    unknown = answer('{"method":"SUBSCRIB","params":[],"id":2}')
    assert unknown["id"] == 2 and "unknown variant `SUBSCRIB`" in unknown["error"]["msg"]  # type: ignore[index]
    assert answer('{"method":"SUBSCRIBE","params":[1],"id":3}')["error"]["code"] == 1  # type: ignore[index]
    assert answer('{"method":"SUBSCRIBE","params":["btcusdt@nope"],"id":4}')["error"][  # type: ignore[index]
        "code"] == 2


def test_every_connection_and_the_rest_snapshot_share_the_update_ids() -> None:
    market, speaker = venue()
    first, second = speaker.open(T0, PUBLIC), speaker.open(T0, PUBLIC)
    for session in (first, second):
        subscribe(session, "btcusdt@depth@100ms", "btcusdt@bookTicker")
    snapshot = json.loads(depth(speaker))  # type: ignore[arg-type]
    assert snapshot["lastUpdateId"] == FIRST_UPDATE_ID
    assert snapshot["bids"] == [["65000.00", "1.500"], ["64999.90", "2.000"]]
    pushes: list[list[dict[str, object]]] = [[], []]
    for n, (side, ticks, lots) in enumerate([("bid", 650000, 2000), ("ask", 650001, 0)]):
        event = market.apply("binance", "BTC-USDT", T0 + (n + 1) * S, [(side, ticks, lots)])
        speaker.observe(event)
        for session, got in zip((first, second), pushes, strict=True):
            got += [json.loads(o.frame) for o in session.market(event, event.ts_ns)]  # type: ignore[arg-type]
    assert pushes[0] == pushes[1]
    diffs = [p for p in pushes[0] if p["e"] == "depthUpdate"]
    assert [(d["U"], d["u"], d["pu"]) for d in diffs] == [
        (FIRST_UPDATE_ID + 1, FIRST_UPDATE_ID + 3, FIRST_UPDATE_ID),
        (FIRST_UPDATE_ID + 4, FIRST_UPDATE_ID + 6, FIRST_UPDATE_ID + 3)]
    assert diffs[0]["b"] == [["65000.00", "2.000"]] and diffs[1]["a"] == [["65000.10", "0.000"]]
    tickers = [p for p in pushes[0] if p["e"] == "bookTicker"]
    assert [(t["u"], t["B"], t["a"]) for t in tickers] == [
        (FIRST_UPDATE_ID + 3, "2.000", "65000.10"), (FIRST_UPDATE_ID + 6, "2.000", "65000.20")]
    after = json.loads(depth(speaker))  # type: ignore[arg-type]
    assert after["lastUpdateId"] == diffs[-1]["u"]
    assert after["asks"][0] == ["65000.20", "3.000"] and after["T"] == (T0 + 2 * S) // 1_000_000
    assert speaker.depth_calls == {"BTCUSDT": 2}


def test_streams_push_only_on_their_routed_endpoint() -> None:
    market, speaker = venue()
    public, market_lane, legacy = (speaker.open(T0, p) for p in (PUBLIC, MARKET, "/ws"))
    for session in (public, market_lane, legacy):
        assert subscribe(session, "btcusdt@aggTrade", "btcusdt@depth@100ms") == [
            {"result": None, "id": 1}]  # acknowledged everywhere, as Binance does
    trade = market.print_trade("binance", "BTC-USDT", T0 + S, 650000, 25, "sell")
    change = market.apply("binance", "BTC-USDT", T0 + S, [("bid", 650000, 1)])
    for event in (trade, change):
        speaker.observe(event)
    kinds = {name: [json.loads(o.frame)["e"] for e in (trade, change)  # type: ignore[arg-type]
                    for o in session.market(e, T0 + S)]
             for name, session in (("public", public), ("market", market_lane),
                                   ("legacy", legacy))}
    assert kinds == {"public": ["depthUpdate"], "market": ["aggTrade"], "legacy": []}
    assert speaker.serves(PUBLIC) and speaker.serves(MARKET) and not speaker.serves("/stream")
    [agg] = [json.loads(o.frame) for o in market_lane.market(trade, T0 + S)]  # type: ignore[arg-type]
    assert (agg["a"], agg["p"], agg["q"], agg["m"]) == (trade.trade_id, "65000.00", "0.025",
                                                        True)


def test_unlisted_symbols_are_silent_and_their_snapshot_is_refused() -> None:
    market, speaker = venue()
    speaker.refuse("ETH-USDT")
    session = speaker.open(T0, PUBLIC)
    assert subscribe(session, "ethusdt@depth@100ms") == [{"result": None, "id": 1}]
    event = market.apply("binance", "ETH-USDT", T0 + S, [("bid", 300000, 1)])
    speaker.observe(event)
    assert session.market(event, T0 + S) == []
    for refused in (depth(speaker, "ETHUSDT"), depth(speaker, "DOGEUSDT")):
        assert refused == RestReply(400, b'{"code":-1121,"msg":"Invalid symbol."}')
    assert isinstance(depth(speaker, limit=7), RestReply)  # not one of Binance's limits
    assert speaker.rest("/fapi/v1/nothing") is None


def test_a_transient_refusal_is_a_disconnect() -> None:
    _, speaker = venue()
    speaker.refuse("BTC-USDT", "transient")
    session = speaker.open(T0, PUBLIC)
    [out] = session.receive('{"method":"SUBSCRIBE","params":["btcusdt@bookTicker"],"id":1}', T0)
    assert out.close == (1008, "too many requests")
    assert subscribe(speaker.open(T0, PUBLIC), "btcusdt@bookTicker") == [
        {"result": None, "id": 1}]  # once only


def test_websocket_pings_and_the_age_cut() -> None:
    _, speaker = venue()
    speaker.ping_interval_ns, speaker.max_age_ns = 10 * S, 25 * S
    session = speaker.open(T0, PUBLIC)
    assert session.next_deadline() == T0 + 10 * S
    [ping] = session.on_deadline(T0 + 10 * S)
    assert ping.kind == WS_PING and isinstance(ping.frame, bytes)
    session.on_deadline(T0 + 20 * S)
    assert session.next_deadline() == T0 + 25 * S
    [cut] = session.on_deadline(T0 + 25 * S)
    assert cut.close is not None and speaker.cut == [session.conn_id]


def test_the_plugin_reads_the_fake_s_listings() -> None:
    _, speaker = venue()
    body = speaker.rest("/fapi/v1/exchangeInfo")
    assert isinstance(body, bytes)
    instruments = BinanceProtocol.parse_instruments(body)
    assert {s: (i.native, i.tick_size, i.lot_size) for s, i in instruments.items()} == {
        "BTC-USDT": ("BTCUSDT", 0.1, 0.001), "ETH-USDT": ("ETHUSDT", 0.01, 0.001)}


def test_mark_price_pushes_open_interest_over_rest_and_server_time() -> None:
    market, speaker = venue()
    schedule = FundingSchedule(3600, T0 - 1800 * S, (Decimal("-0.25"), Decimal("1.5")))
    simulate_perps(market, ["binance"], SimParams(seed=3), T0, {"binance": schedule})
    perp = market.perps[("binance", "BTC-USDT")]
    public, lane = speaker.open(T0, PUBLIC), speaker.open(T0, MARKET)
    subscribe(public, "btcusdt@depth@100ms", "btcusdt@bookTicker")
    subscribe(lane, "btcusdt@markPrice@1s", "ethusdt@markPrice")
    change = market.apply("binance", "BTC-USDT", T0, [("bid", 650000, 2000)])
    speaker.observe(change)
    assert [o.kind for o in public.market(change, T0)] == ["delta", "snapshot"]
    speaker.observe(perp)
    assert public.market(perp, T0) == []  # never the last depth diff again

    [push] = [json.loads(o.frame) for o in lane.market(perp, T0)]  # type: ignore[arg-type]
    assert push == {"e": "markPriceUpdate", "E": T0 // 1_000_000, "s": "BTCUSDT",
                    "p": f"{BTC.price(perp.mark_ticks):.8f}",
                    "P": f"{BTC.price(perp.index_ticks):.8f}",
                    "i": f"{BTC.price(perp.index_ticks):.8f}", "r": "0.00015000",
                    "T": (T0 + 1800 * S) // 1_000_000}
    # <symbol>@markPrice pushes at most every 3 s, @markPrice@1s at every update
    eth = market.perps[("binance", "ETH-USDT")]
    got = [[json.loads(o.frame)["s"] for o in lane.market(  # type: ignore[arg-type]
        replace(eth, ts_ns=T0 + k * S), T0 + k * S)] for k in range(5)]
    assert got == [["ETHUSDT"], [], [], ["ETHUSDT"], []]

    # the plugin's funding lane reads the push and polls the open interest from the fake
    config = ProtocolConfig(symbols=("BTC-USDT",), channels=("funding",))
    [(_, lane_config)] = BinanceProtocol.lane_plan(config)
    proto = BinanceProtocol(lane_config)
    proto.connection_made(T0)
    proto.frames_to_send()
    [row] = proto.receive(json.dumps(push), T0 + 1)
    assert isinstance(row, Funding) and row.open_interest is None
    proto.on_deadline(T0 + 2)
    [req] = proto.rest_requests_to_send()
    body = speaker.rest_at(req.path, T0 + 2 * S)
    assert isinstance(body, bytes) and json.loads(body) == {
        "openInterest": BTC.size_text(perp.open_interest_lots), "symbol": "BTCUSDT",
        "time": (T0 + 2 * S) // 1_000_000}
    [row] = proto.rest_response(req.key, 200, body, T0 + 3, None)
    assert isinstance(row, Funding)
    assert (row.funding_rate, row.next_funding_time, row.mark_px, row.index_px,
            row.open_interest, row.funding_interval_s) == (
        0.00015, T0 + 1800 * S, float(BTC.price(perp.mark_ticks)),
        float(BTC.price(perp.index_ticks)), float(BTC.size(perp.open_interest_lots)), None)
    assert speaker.open_interest_calls == {"BTCUSDT": 1}
    speaker.refuse("ETH-USDT")
    for native in ("ETHUSDT", "DOGEUSDT"):
        assert speaker.rest_at(f"/fapi/v1/openInterest?symbol={native}", T0) == RestReply(
            400, b'{"code":-1121,"msg":"Invalid symbol."}')
    missing = speaker.rest_at("/fapi/v1/openInterest", T0)
    assert isinstance(missing, RestReply) and json.loads(missing.body)["code"] == -1102

    speaker.clock_skew_ns = -15_000_000
    body = speaker.rest_at("/fapi/v1/time?x=1", T0)
    assert isinstance(body, bytes)
    assert BinanceProtocol.parse_server_time(body) == T0 - 15_000_000


def test_a_perpetual_update_is_its_own_event() -> None:
    """A PerpUpdate a test builds by hand reaches the streams like a simulated one."""
    _, speaker = venue()
    lane = speaker.open(T0, MARKET)
    subscribe(lane, "btcusdt@markPrice@1s", "btcusdt@aggTrade")
    update = PerpUpdate("binance", "BTC-USDT", T0, Decimal("-0.000075"), 28800, T0 + 60 * S,
                        650010, 650000, 12345)
    [out] = lane.market(update, T0)
    push = json.loads(out.frame)  # type: ignore[arg-type]
    assert out.kind == "snapshot" and (push["p"], push["i"], push["r"]) == (
        "65001.00000000", "65000.00000000", "-0.00007500")
