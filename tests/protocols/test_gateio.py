"""Gate.io USDT futures protocol: frames written here in Gate's v4 wire format, plus a replay of the
real 2023 capture (skipped when the shared samples are absent)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import msgspec
import pytest

import plugins.gateio
from core.plugins import load_plugins
from core.protocol import Instrument, ProtocolConfig
from core.schema import BookUpdate, Health, HealthKind, TopOfBook, Trade
from core.testing.captures import read_records
from core.testing.conformance import check_protocol
from plugins.gateio.messages import Envelope, OrderBookUpdate
from plugins.gateio.protocol import (
    VENUE_UPGRADE,
    BridgeStatus,
    GateioProtocol,
    OrderBookBridge,
    Scale,
)
from tests.conftest import capture_path, skip_reason

S = 1_000_000_000
NOW = 1_700_000_000_250_000_000
NOW_S = 1_700_000_000

BTC = Instrument(symbol="BTC-USDT", native="BTC_USDT", contract_size=0.0001, tick_size=0.1,
                 lot_size=0.0001)
ETH = Instrument(symbol="ETH-USDT", native="ETH_USDT", contract_size=0.01, tick_size=0.01,
                 lot_size=0.01)
XYZ = Instrument(symbol="XYZ-USDT", native="XYZ_USDT", contract_size=1.0, tick_size=0.001)
INSTRUMENTS = {"BTC-USDT": BTC, "ETH-USDT": ETH, "XYZ-USDT": XYZ}

CAPTURE = capture_path("gateio", "GATEIO_FUTURES.jsonl.gz")
NO_CAPTURE = skip_reason("gateio", "GATEIO_FUTURES.jsonl.gz")


def make(channels: tuple[str, ...] = ("tob", "l2", "trades"),
         symbols: tuple[str, ...] = ("BTC-USDT", "ETH-USDT"),
         instruments: dict[str, Instrument] | None = None,
         now: int = NOW, **options: str) -> GateioProtocol:
    proto = GateioProtocol(ProtocolConfig(
        symbols=symbols, channels=channels,
        instruments=INSTRUMENTS if instruments is None else instruments, options=options))
    proto.connection_made(now)
    return proto


def push(channel: str, result: Any, time_ms: int = 1_700_000_000_400) -> str:
    return json.dumps({"time": time_ms // 1000, "time_ms": time_ms, "channel": channel,
                       "event": "update", "result": result})


def reply(channel: str, event: str = "subscribe", *, req_id: int | None = None,
          payload: list[str] | None = None, error: str | None = None) -> str:
    frame: dict[str, Any] = {"time": NOW_S, "time_ms": NOW_S * 1000 + 300}
    if req_id is not None:
        frame["id"] = req_id
        frame["conn_id"] = "5e7a1c0d9b2f4a61"
    frame["channel"] = channel
    frame["event"] = event
    if payload is not None:
        frame["payload"] = payload
    if error is not None:
        frame["error"] = {"code": 2, "message": error}
    frame["result"] = {"status": "fail" if error else "success"}
    return json.dumps(frame)


def sent(proto: GateioProtocol) -> list[dict[str, Any]]:
    return [json.loads(f) for f in proto.frames_to_send()]


def obu(result: dict[str, Any]) -> str:
    return push("futures.obu", {"t": 1_700_000_000_300, **result})


def btc_snapshot(u: int = 5000) -> str:
    return obu({"full": True, "s": "ob.BTC_USDT.50", "u": u,
                "b": [["63700.1", "1000"], ["63700", "2500"]],
                "a": [["63700.2", "300"], ["63700.5", "1200"]]})


def eth_snapshot(u: int = 9000) -> str:
    return obu({"full": True, "s": "ob.ETH_USDT.50", "u": u,
                "b": [["3400.5", "70"]], "a": [["3400.6", "30"]]})


def kinds(events: list[Any]) -> list[str]:
    return [e.event if isinstance(e, Health) else type(e).__name__ for e in events]


# -- symbols, instruments, registration --------------------------------------------------------


def test_symbols_and_endpoints() -> None:
    assert GateioProtocol.to_native("BTC-USDT") == "BTC_USDT"
    assert GateioProtocol.to_canonical("BTC_USDT") == "BTC-USDT"
    assert GateioProtocol.default_url == "wss://fx-ws.gateio.ws/v4/ws/usdt"
    assert GateioProtocol.default_rest_url == "https://api.gateio.ws"
    assert GateioProtocol.instruments_path() == "/api/v4/futures/usdt/contracts"
    assert GateioProtocol.requires_instruments is True
    assert GateioProtocol.channels == {"tob", "l2", "trades", "funding"}


def test_conformance() -> None:
    check_protocol(GateioProtocol, ProtocolConfig(
        symbols=("BTC-USDT", "ETH-USDT"), channels=("tob", "l2", "trades"),
        instruments=INSTRUMENTS))


def test_registers_through_the_hook() -> None:
    _, registry = load_plugins(entry_points=False, extra=[plugins.gateio])
    assert registry.get("gateio") is GateioProtocol


def test_parse_instruments() -> None:
    body = json.dumps([
        {"name": "BTC_USDT", "type": "direct", "quanto_multiplier": "0.0001",
         "order_price_round": "0.1", "order_size_min": 1, "in_delisting": False,
         "mark_price": "63712.4", "leverage_max": "125"},
        {"name": "OLD_USDT", "type": "direct", "quanto_multiplier": "10",
         "order_price_round": "0.00001", "order_size_min": 1, "in_delisting": True},
        {"name": "DEC_USDT", "type": "direct", "quanto_multiplier": "0.01",
         "order_price_round": "0.001", "enable_decimal": True, "in_delisting": False},
    ]).encode()
    assert GateioProtocol.parse_instruments(body) == {
        "BTC-USDT": Instrument(symbol="BTC-USDT", native="BTC_USDT", contract_size=0.0001,
                               tick_size=0.1, lot_size=0.0001, status="trading"),
        "OLD-USDT": Instrument(symbol="OLD-USDT", native="OLD_USDT", contract_size=10.0,
                               tick_size=0.00001, lot_size=10.0, status="delisting"),
        "DEC-USDT": Instrument(symbol="DEC-USDT", native="DEC_USDT", contract_size=0.01,
                               tick_size=0.001, lot_size=None, status="trading"),
    }


def test_parse_instruments_rejects_a_malformed_body() -> None:
    with pytest.raises(msgspec.ValidationError):
        GateioProtocol.parse_instruments(b'[{"name": "BTC_USDT"}]')


def test_scale_gives_the_decimal_result() -> None:
    assert Scale(0.0001)(600) == 0.06
    assert Scale(0.0001)(0.5) == 0.00005
    assert Scale(0.01)(1.5) == 0.015
    assert Scale(10.0)(3) == 30.0
    assert Scale(1.0)(7) == 7.0


def test_l2_depth_option() -> None:
    proto = make(channels=("l2",), symbols=("BTC-USDT",), l2_depth="400")
    assert sent(proto)[0]["payload"] == ["ob.BTC_USDT.400"]
    with pytest.raises(ValueError, match="l2_depth"):
        make(l2_depth="20")


# -- subscribe, acks, errors -------------------------------------------------------------------


def test_subscribe_frames_carry_the_time_of_the_call() -> None:
    proto = make()
    frames = proto.frames_to_send()
    assert frames[0] == ('{"time":1700000000,"id":1,"channel":"futures.book_ticker",'
                         '"event":"subscribe","payload":["BTC_USDT"]}')
    assert [json.loads(f) for f in frames] == [
        {"time": NOW_S, "id": 1, "channel": "futures.book_ticker", "event": "subscribe",
         "payload": ["BTC_USDT"]},
        {"time": NOW_S, "id": 2, "channel": "futures.book_ticker", "event": "subscribe",
         "payload": ["ETH_USDT"]},
        {"time": NOW_S, "id": 3, "channel": "futures.obu", "event": "subscribe",
         "payload": ["ob.BTC_USDT.50"]},
        {"time": NOW_S, "id": 4, "channel": "futures.obu", "event": "subscribe",
         "payload": ["ob.ETH_USDT.50"]},
        {"time": NOW_S, "id": 5, "channel": "futures.trades", "event": "subscribe",
         "payload": ["BTC_USDT"]},
        {"time": NOW_S, "id": 6, "channel": "futures.trades", "event": "subscribe",
         "payload": ["ETH_USDT"]},
    ]
    proto.connection_lost(NOW + 60 * S)
    proto.connection_made(NOW + 65 * S)
    assert {f["time"] for f in sent(proto)} == {NOW_S + 65}


def test_acks_are_attributed_by_id_payload_or_order() -> None:
    proto = make()
    # Today's servers echo the id.
    [ev] = proto.receive(reply("futures.obu", req_id=3, payload=["ob.BTC_USDT.50"]), NOW + 1)
    assert (ev.event, ev.symbol, ev.detail) == (HealthKind.SUBSCRIBED, "BTC-USDT",
                                                "futures.obu ob.BTC_USDT.50")
    # Only the payload echoed.
    [ev] = proto.receive(reply("futures.trades", payload=["ETH_USDT"]), NOW + 2)
    assert (ev.event, ev.symbol) == (HealthKind.SUBSCRIBED, "ETH-USDT")
    # The 2023 servers echo neither: replies come in request order.
    [ev1] = proto.receive(reply("futures.book_ticker"), NOW + 3)
    [ev2] = proto.receive(reply("futures.book_ticker"), NOW + 4)
    assert (ev1.symbol, ev2.symbol) == ("BTC-USDT", "ETH-USDT")
    assert ev1.detail == "futures.book_ticker BTC_USDT"
    assert proto.decode_errors == {}


def test_subscribe_error_names_the_symbol_and_is_not_retried() -> None:
    proto = make()
    proto.frames_to_send()
    frame = reply("futures.obu", req_id=3, payload=["ob.BTC_USDT.50"],
                  error="Alert sub ob.BTC_USDT.50")
    [ev] = proto.receive(frame, NOW + S)
    assert ev == Health(exchange="gateio", ts_local=NOW + S, symbol="BTC-USDT",
                        event=HealthKind.SUBSCRIBE_ERROR,
                        detail="futures.obu subscribe ob.BTC_USDT.50 rejected: code 2: "
                               "Alert sub ob.BTC_USDT.50")
    # The failed stream no longer has a snapshot deadline; ETH's does.
    assert proto.l2.states["BTC-USDT"].snapshot_due_ns is None
    assert proto.l2.states["ETH-USDT"].snapshot_due_ns == NOW + 15 * S
    proto.connection_lost(NOW + 2 * S)
    proto.connection_made(NOW + 3 * S)
    payloads = [f["payload"][0] for f in sent(proto)]
    assert payloads == ["BTC_USDT", "ETH_USDT", "ob.ETH_USDT.50", "BTC_USDT", "ETH_USDT"]


def test_unattributed_error_is_still_a_health_event() -> None:
    proto = make()
    frame = json.dumps({"time": NOW_S, "time_ms": 0, "channel": "futures.candlesticks",
                        "event": "subscribe", "error": {"code": 1, "message": "bad payload"},
                        "result": None})
    [ev] = proto.receive(frame, NOW)
    assert (ev.event, ev.symbol, ev.detail) == (
        HealthKind.SUBSCRIBE_ERROR, None, "futures.candlesticks subscribe rejected: code 1: "
                                          "bad payload")


def test_symbols_missing_from_the_contract_list_are_not_subscribed() -> None:
    proto = GateioProtocol(ProtocolConfig(symbols=("BTC-USDT", "DOGE-USDT"), channels=("tob",),
                                          instruments={"BTC-USDT": BTC}))
    [ev] = proto.connection_made(NOW)
    assert (ev.event, ev.symbol) == (HealthKind.SUBSCRIBE_ERROR, "DOGE-USDT")
    assert "DOGE_USDT is not in the venue's contract list" in ev.detail
    assert [f["payload"] for f in sent(proto)] == [["BTC_USDT"]]
    proto.connection_lost(NOW + S)
    assert proto.connection_made(NOW + 2 * S) == []  # reported once


# -- heartbeat, system -------------------------------------------------------------------------


def test_ping_on_deadline_and_pong() -> None:
    proto = make(channels=("trades",))
    proto.frames_to_send()
    assert proto.next_deadline() == NOW + 15 * S
    assert proto.on_deadline(NOW + 14 * S) == []
    assert proto.frames_to_send() == []
    assert proto.on_deadline(NOW + 15 * S) == []
    assert proto.frames_to_send() == ['{"time":1700000015,"channel":"futures.ping"}']
    assert proto.next_deadline() == NOW + 30 * S
    pong = json.dumps({"time": NOW_S + 15, "time_ms": (NOW_S + 15) * 1000 + 2,
                       "conn_id": "5e7a1c0d9b2f4a61", "channel": "futures.pong", "event": "",
                       "result": None})
    assert proto.receive(pong, NOW + 15 * S + 1000) == []
    assert proto.decode_errors == {}
    proto.connection_lost(NOW + 20 * S)
    assert proto.next_deadline() is None


def test_system_upgrade_notice() -> None:
    proto = make()
    frame = push("futures.system", {"type": "upgrade", "msg": "reconnect please"})
    assert proto.receive(frame, NOW + S) == [
        Health(exchange="gateio", ts_local=NOW + S, symbol=None, event=VENUE_UPGRADE,
               detail="server upgrade announced: reconnect please")]


# -- book_ticker ---------------------------------------------------------------------------------


def test_book_ticker_to_top_of_book_in_base_units() -> None:
    proto = make()
    ticker = {"t": 1_700_000_000_123, "u": 5002, "s": "BTC_USDT", "b": "63700.1", "B": 12345,
              "a": "63700.2", "A": 678}
    events = proto.receive(push("futures.book_ticker", ticker), NOW + S)
    assert kinds(events) == [HealthKind.SNAPSHOT, "TopOfBook"]
    assert events[1] == TopOfBook(
        exchange="gateio", ts_local=NOW + S, symbol="BTC-USDT",
        ts_exchange=1_700_000_000_123_000_000, bid_px=63700.1, bid_sz=1.2345, ask_px=63700.2,
        ask_sz=0.0678, seq=5002)
    # Same four values under a newer id: nothing new to publish.
    ticker.update(u=5003, t=1_700_000_000_150)
    assert proto.receive(push("futures.book_ticker", ticker), NOW + 2 * S) == []
    # Sizes sent as strings (fractional contracts), and an empty ask side.
    ticker.update(u=5004, B="250.5", a="", A=0)
    [tob] = proto.receive(push("futures.book_ticker", ticker), NOW + 3 * S)
    assert (tob.bid_px, tob.bid_sz, tob.ask_px, tob.ask_sz, tob.seq) == (
        63700.1, 0.02505, None, None, 5004)
    eth = {"t": 1_700_000_000_500, "u": 77, "s": "ETH_USDT", "b": "3400.5", "B": 150,
           "a": "3400.6", "A": 3}
    tob = proto.receive(push("futures.book_ticker", eth), NOW + 4 * S)[-1]
    assert (tob.symbol, tob.bid_sz, tob.ask_sz) == ("ETH-USDT", 1.5, 0.03)


# -- futures.obu -----------------------------------------------------------------------------


def test_obu_snapshot_and_deltas_in_base_units() -> None:
    proto = make()
    events = proto.receive(btc_snapshot(), NOW + S)
    assert kinds(events) == [HealthKind.SNAPSHOT, "BookUpdate"]
    assert events[0].detail == "levels=4 seq=5000"
    assert events[1] == BookUpdate(
        exchange="gateio", ts_local=NOW + S, symbol="BTC-USDT",
        ts_exchange=1_700_000_000_300_000_000, seq=5000, msg_id=NOW + S, is_snapshot=True,
        bids=((63700.1, 0.1), (63700.0, 0.25)), asks=((63700.2, 0.03), (63700.5, 0.12)))

    # Unsorted arrays, a removal (size 0); applied by price.
    delta = obu({"s": "ob.BTC_USDT.50", "U": 5001, "u": 5003,
                 "b": [["63699.9", "700"], ["63700.1", "0"]],
                 "a": [["63700.6", "50"], ["63700.2", "450"]]})
    assert proto.receive(delta, NOW + 2 * S) == [BookUpdate(
        exchange="gateio", ts_local=NOW + 2 * S, symbol="BTC-USDT",
        ts_exchange=1_700_000_000_300_000_000, seq=5003, msg_id=NOW + 2 * S, is_snapshot=False,
        bids=((63699.9, 0.07), (63700.1, 0.0)), asks=((63700.6, 0.005), (63700.2, 0.045)))]
    book = proto.l2.book("BTC-USDT")
    assert book.top_bids(5) == [(63700.0, 0.25), (63699.9, 0.07)]
    assert book.top_asks(5) == [(63700.2, 0.045), (63700.5, 0.12), (63700.6, 0.005)]

    # A delta with no levels publishes nothing but advances the id.
    assert proto.receive(obu({"s": "ob.BTC_USDT.50", "U": 5004, "u": 5004}), NOW + 3 * S) == []
    assert proto.l2.last_seq("BTC-USDT") == 5004

    # Fractional contract sizes arrive as strings.
    [upd] = proto.receive(obu({"s": "ob.BTC_USDT.50", "U": 5005, "u": 5006,
                               "a": [["63700.2", "0.5"]]}), NOW + 4 * S)
    assert (upd.seq, upd.msg_id, upd.bids, upd.asks) == (5006, NOW + 4 * S, (),
                                                         ((63700.2, 0.00005),))
    assert book.best_ask() == (63700.2, 0.00005)
    assert proto.decode_errors == {}


def test_a_contract_count_that_overflows_in_base_units_is_a_decode_error() -> None:
    """A contract size above 1 multiplies: a count near the largest float would become inf."""
    big = Instrument(symbol="BIG-USDT", native="BIG_USDT", contract_size=10.0, tick_size=0.1)
    proto = make(symbols=("BIG-USDT",), instruments={"BIG-USDT": big})
    snap = obu({"full": True, "s": "ob.BIG_USDT.50", "u": 10,
                "b": [["1.5", "3"]], "a": [["1.6", "4"]]})
    assert kinds(proto.receive(snap, NOW + S)) == [HealthKind.SNAPSHOT, "BookUpdate"]
    huge = obu({"s": "ob.BIG_USDT.50", "U": 11, "u": 11, "b": [["1.4", "1e308"]]})
    events = proto.receive(huge, NOW + 2 * S)
    assert kinds(events) == [HealthKind.DECODE_ERROR, HealthKind.GAP]  # no row; resynced
    assert "overflows once converted to base units" in events[0].detail
    assert proto.l2.book("BIG-USDT").top_bids(5) == []  # dropped until the resync
    assert proto.decode_errors == {"BadValue": 1}


def test_obu_delta_before_the_snapshot_is_skipped() -> None:
    proto = make()
    delta = obu({"s": "ob.BTC_USDT.50", "U": 4999, "u": 5000, "b": [["63700", "1"]]})
    assert proto.receive(delta, NOW + S) == []
    assert proto.frames_to_send()  # the subscribe frames only
    assert proto.frames_to_send() == []


def test_obu_break_resyncs_that_symbol_only() -> None:
    proto = make()
    proto.frames_to_send()
    proto.receive(btc_snapshot(), NOW + S)
    proto.receive(eth_snapshot(), NOW + S)
    ok = obu({"s": "ob.BTC_USDT.50", "U": 5001, "u": 5002, "b": [["63700", "2600"]]})
    assert kinds(proto.receive(ok, NOW + 2 * S)) == ["BookUpdate"]

    gap = obu({"s": "ob.BTC_USDT.50", "U": 5004, "u": 5005, "b": [["63700", "2700"]]})
    assert proto.receive(gap, NOW + 3 * S) == [Health(
        exchange="gateio", ts_local=NOW + 3 * S, symbol="BTC-USDT", event=HealthKind.GAP,
        detail="book at seq=5002, update needs 5003 (seq=5005)")]
    assert sent(proto) == [
        {"time": NOW_S + 3, "id": 7, "channel": "futures.obu", "event": "unsubscribe",
         "payload": ["ob.BTC_USDT.50"]},
        {"time": NOW_S + 3, "id": 8, "channel": "futures.obu", "event": "subscribe",
         "payload": ["ob.BTC_USDT.50"]},
    ]
    assert proto.l2.states["BTC-USDT"].snapshot_due_ns == NOW + 18 * S

    # Nothing is published for BTC until its next full push; ETH is untouched.
    later = obu({"s": "ob.BTC_USDT.50", "U": 5006, "u": 5006, "a": [["63700.2", "1"]]})
    assert proto.receive(later, NOW + 4 * S) == []
    eth = obu({"s": "ob.ETH_USDT.50", "U": 9001, "u": 9001, "b": [["3400.5", "80"]]})
    [upd] = proto.receive(eth, NOW + 4 * S)
    assert (upd.symbol, upd.bids) == ("ETH-USDT", ((3400.5, 0.8),))
    assert proto.frames_to_send() == []
    for ack in (reply("futures.obu", "unsubscribe", req_id=7, payload=["ob.BTC_USDT.50"]),
                reply("futures.obu", req_id=8, payload=["ob.BTC_USDT.50"])):
        proto.receive(ack, NOW + 5 * S)

    events = proto.receive(btc_snapshot(u=6000), NOW + 6 * S)
    assert kinds(events) == [HealthKind.RESYNCED, "BookUpdate"]
    assert events[0].detail == "after gap; 1 updates skipped; seq=6000"
    assert (events[1].is_snapshot, events[1].seq, events[1].msg_id) == (True, 6000, NOW + 6 * S)
    assert proto.l2.states["BTC-USDT"].snapshot_due_ns is None


def test_obu_crossed_book_is_invalidated() -> None:
    proto = make()
    proto.frames_to_send()
    proto.receive(btc_snapshot(), NOW + S)
    cross = obu({"s": "ob.BTC_USDT.50", "U": 5001, "u": 5001, "b": [["63700.3", "10"]]})
    [ev] = proto.receive(cross, NOW + 2 * S)
    assert (ev.event, ev.symbol) == (HealthKind.CROSSED, "BTC-USDT")
    assert [f["payload"] for f in sent(proto)] == [["ob.BTC_USDT.50"], ["ob.BTC_USDT.50"]]


def test_silent_symbol_reports_no_snapshot_with_growing_delay() -> None:
    proto = make(channels=("l2",), symbols=("BTC-USDT", "XYZ-USDT"))
    proto.frames_to_send()
    proto.receive(reply("futures.obu", req_id=1, payload=["ob.BTC_USDT.50"]), NOW + 1)
    proto.receive(reply("futures.obu", req_id=2, payload=["ob.XYZ_USDT.50"]), NOW + 2)
    proto.receive(btc_snapshot(), NOW + S)
    assert proto.next_deadline() == NOW + 15 * S

    events = proto.on_deadline(NOW + 15 * S)
    assert events == [Health(exchange="gateio", ts_local=NOW + 15 * S, symbol="XYZ-USDT",
                             event=HealthKind.NO_SNAPSHOT,
                             detail="no snapshot within 15 s; retrying")]
    assert sent(proto) == [
        {"time": NOW_S + 15, "channel": "futures.ping"},
        {"time": NOW_S + 15, "id": 3, "channel": "futures.obu", "event": "unsubscribe",
         "payload": ["ob.XYZ_USDT.50"]},
        {"time": NOW_S + 15, "id": 4, "channel": "futures.obu", "event": "subscribe",
         "payload": ["ob.XYZ_USDT.50"]},
    ]
    assert proto.l2.states["XYZ-USDT"].snapshot_due_ns == NOW + 45 * S
    assert proto.on_deadline(NOW + 30 * S) == []  # the ping only
    [ev] = proto.on_deadline(NOW + 45 * S)
    assert (ev.event, ev.detail) == (HealthKind.NO_SNAPSHOT, "no snapshot within 30 s; retrying")
    assert proto.l2.states["XYZ-USDT"].snapshot_due_ns == NOW + 105 * S


def test_tob_only_uses_book_ticker_for_the_snapshot_deadline() -> None:
    proto = make(channels=("tob", "trades"), symbols=("BTC-USDT",))
    proto.frames_to_send()
    assert proto.tob.states["BTC-USDT"].snapshot_due_ns == NOW + 15 * S
    [ev] = proto.on_deadline(NOW + 15 * S)
    assert ev.event == HealthKind.NO_SNAPSHOT
    assert [(f.get("event"), f.get("payload")) for f in sent(proto)] == [
        (None, None), ("unsubscribe", ["BTC_USDT"]), ("subscribe", ["BTC_USDT"])]


def test_disconnect_invalidates_books_until_the_next_snapshot() -> None:
    proto = make()
    proto.receive(btc_snapshot(), NOW + S)
    proto.connection_lost(NOW + 2 * S)
    proto.connection_made(NOW + 3 * S)
    delta = obu({"s": "ob.BTC_USDT.50", "U": 5001, "u": 5001, "b": [["63700", "1"]]})
    assert proto.receive(delta, NOW + 4 * S) == []
    events = proto.receive(btc_snapshot(u=7000), NOW + 5 * S)
    assert kinds(events) == [HealthKind.RESYNCED, "BookUpdate"]
    assert events[0].detail == "after disconnect; 1 updates skipped; seq=7000"


def test_obu_for_a_stream_not_subscribed() -> None:
    proto = make()
    [ev] = proto.receive(obu({"full": True, "s": "ob.SOL_USDT.50", "u": 1, "b": [], "a": []}),
                         NOW)
    assert (ev.event, ev.detail) == (HealthKind.VENUE_ERROR,
                                     "push for unsubscribed stream 'ob.SOL_USDT.50'")


# -- trades ------------------------------------------------------------------------------------


def test_trades_signed_size_to_taker_side_in_base_units() -> None:
    proto = make()
    result = [
        {"id": 7001, "create_time": 1_700_000_001, "create_time_ms": 1_700_000_001_234,
         "contract": "BTC_USDT", "size": -25, "price": "63700.1"},
        {"id": 7002, "create_time": 1_700_000_001, "create_time_ms": 1_700_000_001_240,
         "contract": "BTC_USDT", "size": 40, "price": "63700.2"},
        {"id": 7003, "create_time": 1_700_000_001, "create_time_ms": 1_700_000_001_250,
         "contract": "BTC_USDT", "size": -3, "price": "63650", "is_internal": True},
        {"id": 88, "create_time": 1_700_000_002, "contract": "ETH_USDT", "size": "1.5",
         "price": "3400.6"},
    ]
    assert proto.receive(push("futures.trades", result), NOW + S) == [
        Trade(exchange="gateio", ts_local=NOW + S, symbol="BTC-USDT",
              ts_exchange=1_700_000_001_234_000_000, price=63700.1, size=0.0025, side="sell",
              trade_id="7001"),
        Trade(exchange="gateio", ts_local=NOW + S, symbol="BTC-USDT",
              ts_exchange=1_700_000_001_240_000_000, price=63700.2, size=0.004, side="buy",
              trade_id="7002"),
        Trade(exchange="gateio", ts_local=NOW + S, symbol="ETH-USDT",
              ts_exchange=1_700_000_002_000_000_000, price=3400.6, size=0.015, side="buy",
              trade_id="88"),
    ]


# -- malformed frames ------------------------------------------------------------------------


@pytest.mark.parametrize(("frame", "kind"), [
    ("not json at all", "DecodeError"),
    ('{"channel": "futures.trades", "event": "update", "result": {"id": 1}}', "ValidationError"),
    ('{"channel": "futures.trades", "event": "update", "result": [{"id": 1, "contract": '
     '"BTC_USDT", "size": "NaN", "price": "1", "create_time_ms": 1700000000000}]}',
     "ValidationError"),
    ('{"channel": "futures.trades", "event": "update", "result": [{"id": 1, "contract": '
     '"BTC_USDT", "size": 1, "price": "1", "create_time_ms": 1000000000000000}]}',
     "ValidationError"),
    ('{"channel": 5, "event": "update"}', "ValidationError"),
    (b"\xff\xfe{", "DecodeError"),
])
def test_malformed_frames_are_decode_errors(frame: str | bytes, kind: str) -> None:
    proto = make()
    [ev] = proto.receive(frame, NOW)
    assert ev.event == HealthKind.DECODE_ERROR
    assert ev.detail.startswith(f"{kind} #1: ")
    assert proto.decode_errors == {kind: 1}


@pytest.mark.parametrize(("channel", "result"), [
    ("futures.obu", '{"s": "ob.BTC_USDT.50", "u": 1, "b": "oops"}'),
    ("futures.obu", '{"full": true, "s": "ob.BTC_USDT.50", "u": 1, "b": [["x", "1"]], "a": []}'),
    ("futures.obu", '{"s": "ob.BTC_USDT.50", "U": 2, "u": 3, "b": [["1", "-1"]], "a": []}'),
    ("futures.obu", '{"s": "ob.BTC_USDT.50", "U": 2, "u": 3, "b": [["inf", "1"]], "a": []}'),
    ("futures.obu", '{"s": "ob.BTC_USDT.50", "U": 2, "u": 100000000000000000000}'),
    ("futures.book_ticker", '{"s": "BTC_USDT", "b": "1", "B": 1, "a": "2", "A": 1}'),
    ("futures.book_ticker", '{"s": "BTC_USDT", "u": 1, "b": "1,5", "B": 1, "a": "2", "A": 1}'),
    ("futures.book_ticker", '{"s": "BTC_USDT", "u": 1, "b": "1", "B": -1, "a": "2", "A": 1}'),
])
def test_a_malformed_book_push_resyncs_that_book(channel: str, result: str) -> None:
    """A book push that does not decode, or holds a value no row may: decode_error, and that
    symbol's book (found from the push's stream name) is resynced."""
    proto = make()
    sent(proto)
    frame = f'{{"channel": "{channel}", "event": "update", "result": {result}}}'
    events = proto.receive(frame, NOW)
    assert [(e.event, e.symbol) for e in events] == [
        (HealthKind.DECODE_ERROR, None), (HealthKind.GAP, "BTC-USDT")]
    assert [f["event"] for f in sent(proto)] == ["unsubscribe", "subscribe"]


def test_unknown_frames_are_venue_errors() -> None:
    proto = make()
    frame = push("futures.order_book_update", {"s": "BTC_USDT", "U": 1, "u": 1})
    [ev] = proto.receive(frame, NOW)
    assert ev.event == HealthKind.VENUE_ERROR
    assert ev.detail.startswith("unrecognised frame: ")


# -- REST snapshot + order_book_update bridging ------------------------------------------------


def update(first: int, last: int, b: list[tuple[str, int]] = (),  # type: ignore[assignment]
           a: list[tuple[str, int]] = ()) -> OrderBookUpdate:  # type: ignore[assignment]
    frame = {"t": 1_700_000_000_000, "s": "BTC_USDT", "U": first, "u": last,
             "b": [{"p": p, "s": s} for p, s in b], "a": [{"p": p, "s": s} for p, s in a]}
    return OrderBookBridge.decode_update(json.dumps(frame))


REST_BOOK = json.dumps({
    "id": 200, "current": 1_700_000_000.5, "update": 1_700_000_000.4,
    "asks": [{"p": "63700.2", "s": 5}, {"p": "63700.3", "s": 7}],
    "bids": [{"p": "63700.1", "s": 4}, {"p": "63700", "s": 9}],
}).encode()


def test_bridge_drops_stale_and_accepts_the_bridging_delta() -> None:
    bridge = OrderBookBridge(contract_size=0.0001)
    assert bridge.update(update(195, 198, b=[("63699", 1)])) == BridgeStatus.BUFFERED
    assert bridge.update(update(199, 199)) == BridgeStatus.BUFFERED
    assert bridge.update(update(200, 203, b=[("63700.1", 0)], a=[("63700.25", 3)])) \
        == BridgeStatus.BUFFERED
    assert bridge.load_snapshot(REST_BOOK) == BridgeStatus.BRIDGED
    assert (bridge.stale, bridge.applied, bridge.live, bridge.last_u) == (2, 1, True, 203)
    assert bridge.bids(5) == [(63700.0, 0.0009)]
    assert bridge.asks(5) == [(63700.2, 0.0005), (63700.25, 0.0003), (63700.3, 0.0007)]

    assert bridge.update(update(204, 204)) == BridgeStatus.APPLIED  # empty, advances the id
    assert bridge.last_u == 204
    assert bridge.update(update(205, 206, a=[("63700.2", 2)])) == BridgeStatus.APPLIED
    assert bridge.asks(1) == [(63700.2, 0.0002)]

    assert bridge.update(update(208, 209, b=[("63700", 1)])) == BridgeStatus.BREAK
    assert (bridge.breaks, bridge.live, len(bridge.book)) == (1, False, 0)
    assert bridge.update(update(210, 210)) == BridgeStatus.BUFFERED


def test_bridge_needs_a_delta_spanning_id_plus_one() -> None:
    bridge = OrderBookBridge()
    bridge.update(update(203, 205))
    assert bridge.load_snapshot(REST_BOOK) == BridgeStatus.BREAK  # 201 and 202 are missing
    assert bridge.breaks == 1

    bridge = OrderBookBridge()
    assert bridge.load_snapshot(REST_BOOK) == BridgeStatus.WAITING
    assert bridge.update(update(190, 195)) == BridgeStatus.STALE
    assert bridge.update(update(196, 201, b=[("63700.1", 6)])) == BridgeStatus.BRIDGED
    assert bridge.bids(1) == [(63700.1, 6.0)]


def test_bridge_aligned_when_a_delta_ends_at_the_snapshot_id() -> None:
    bridge = OrderBookBridge()
    bridge.update(update(199, 200, b=[("63700.1", 4)]))
    assert bridge.load_snapshot(REST_BOOK) == BridgeStatus.BRIDGED
    assert (bridge.applied, bridge.stale, bridge.last_u) == (0, 1, 200)
    assert bridge.update(update(202, 202)) == BridgeStatus.BREAK  # must start at 201


# -- the real 2023 capture ---------------------------------------------------------------------


@pytest.mark.skipif(CAPTURE is None, reason=NO_CAPTURE)
def test_real_capture_bridges_every_contract() -> None:
    records = sorted(read_records(CAPTURE), key=lambda r: r.ts_ns)
    contracts_body = next(r.frame for r in records
                          if r.kind == "http" and r.url and r.url.endswith("/contracts"))
    assert isinstance(contracts_body, str)
    instruments = GateioProtocol.parse_instruments(contracts_body.encode())
    raw_contracts = {c["name"]: c for c in json.loads(contracts_body)}
    assert len(instruments) == len(raw_contracts) > 100
    for name, c in raw_contracts.items():
        inst = instruments[name.replace("_", "-")]
        assert inst.contract_size == float(c["quanto_multiplier"])
        assert inst.tick_size == float(c["order_price_round"])
    assert instruments["BTC-USDT"].contract_size == 0.0001

    env = msgspec.json.Decoder(Envelope)
    bridges: dict[str, OrderBookBridge] = {}
    # Reference book in contracts, kept with plain dicts.
    ref: dict[str, tuple[dict[float, float], dict[float, float]]] = {}
    last_u: dict[str, int] = {}
    chain_breaks = crossed = updates = 0
    ticker_checked = 0

    def bridge_for(contract: str) -> OrderBookBridge:
        if contract not in bridges:
            bridges[contract] = OrderBookBridge(instruments[contract.replace("_", "-")]
                                                .contract_size)
        return bridges[contract]

    for rec in records:
        if rec.kind == "http" and rec.url and "/order_book?" in rec.url:
            assert isinstance(rec.frame, str)
            contract = rec.url.split("contract=")[1].split("&")[0]
            bridge = bridge_for(contract)
            assert bridge.load_snapshot(rec.frame) in (BridgeStatus.BRIDGED, BridgeStatus.WAITING)
            body = json.loads(rec.frame)
            ref[contract] = ({float(lv["p"]): float(lv["s"]) for lv in body["bids"]},
                             {float(lv["p"]): float(lv["s"]) for lv in body["asks"]})
        elif rec.kind == "recv":
            assert rec.frame is not None
            e = env.decode(rec.frame)
            if e.event != "update":
                continue
            if e.channel == "futures.order_book_update":
                u = OrderBookBridge.decode_update(e.result)
                updates += 1
                if u.s in last_u and last_u[u.s] + 1 != u.U:
                    chain_breaks += 1
                last_u[u.s] = u.u
                bridge = bridge_for(u.s)
                status = bridge.update(u)
                assert status != BridgeStatus.BREAK
                if status in (BridgeStatus.BRIDGED, BridgeStatus.APPLIED):
                    for side, levels in ((0, u.b), (1, u.a)):
                        for lv in levels:
                            if lv.s == 0:
                                ref[u.s][side].pop(lv.p, None)
                            else:
                                ref[u.s][side][lv.p] = lv.s
                if bridge.book.is_crossed():
                    crossed += 1
            elif e.channel == "futures.book_ticker":
                t = json.loads(bytes(e.result))
                bridge = bridges.get(t["s"])
                if bridge is not None and bridge.live and bridge.last_u == t["u"]:
                    quanto = float(raw_contracts[t["s"]]["quanto_multiplier"])
                    assert bridge.bids(1) == [(float(t["b"]), t["B"] * quanto)]
                    assert bridge.asks(1) == [(float(t["a"]), t["A"] * quanto)]
                    ticker_checked += 1

    assert len(bridges) == 10
    assert updates == sum(1 for _ in _recv_channel(CAPTURE, "futures.order_book_update"))
    assert chain_breaks == 0
    assert crossed == 0
    assert ticker_checked >= 1
    for contract, bridge in bridges.items():
        quanto = float(raw_contracts[contract]["quanto_multiplier"])
        assert (contract, bridge.live, bridge.syncs, bridge.breaks) == (contract, True, 1, 0)
        bids, asks = ref[contract]
        assert dict(bridge.book.bids) == pytest.approx(
            {p: s * quanto for p, s in bids.items()}, rel=1e-12)
        assert dict(bridge.book.asks) == pytest.approx(
            {p: s * quanto for p, s in asks.items()}, rel=1e-12)


@pytest.mark.skipif(CAPTURE is None, reason=NO_CAPTURE)
def test_real_capture_book_ticker_through_the_protocol() -> None:
    records = sorted(read_records(CAPTURE), key=lambda r: r.ts_ns)
    body = next(r.frame for r in records if r.kind == "http" and r.url
                and r.url.endswith("/contracts"))
    assert isinstance(body, str)
    instruments = GateioProtocol.parse_instruments(body.encode())
    quanto = {c["name"]: float(c["quanto_multiplier"]) for c in json.loads(body)}
    tickers = [json.loads(f)["result"] for f in _recv_channel(CAPTURE, "futures.book_ticker")]
    symbols = tuple(sorted({t["s"].replace("_", "-") for t in tickers}))
    proto = GateioProtocol(ProtocolConfig(symbols=symbols, channels=("tob",),
                                          instruments=instruments))
    proto.connection_made(records[0].ts_ns)
    tobs: list[TopOfBook] = []
    for rec in records:
        if rec.kind == "recv" and isinstance(rec.frame, str) and "futures.book_ticker" in rec.frame:
            tobs.extend(e for e in proto.receive(rec.frame, rec.ts_ns) if isinstance(e, TopOfBook))
    assert proto.decode_errors == {}
    assert len(tickers) > 0
    # Every push changed one of the four values, so each is one TopOfBook, sizes x quanto.
    assert len(tobs) == len(tickers)
    for tob, t in zip(tobs, tickers, strict=True):
        q = quanto[t["s"]]
        assert (tob.symbol, tob.seq, tob.ts_exchange) == (
            t["s"].replace("_", "-"), t["u"], t["t"] * 1_000_000)
        assert (tob.bid_px, tob.ask_px) == (float(t["b"]), float(t["a"]))
        assert tob.bid_sz == pytest.approx(t["B"] * q, rel=1e-12)
        assert tob.ask_sz == pytest.approx(t["A"] * q, rel=1e-12)


def _recv_channel(path: Path, channel: str) -> list[str]:
    out = []
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            rec = json.loads(line)
            if rec.get("t") == "recv" and isinstance(rec.get("data"), str):
                frame = json.loads(rec["data"])
                if frame.get("channel") == channel and frame.get("event") == "update":
                    out.append(rec["data"])
    return out
