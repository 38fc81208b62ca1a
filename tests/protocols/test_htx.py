"""HTX USDT-swap protocol: frames written here in HTX's wire format (gzip members), fed through
the sans-IO protocol; plus a replay of the real 2022 capture when it is available."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import plugins.htx
from core.plugins import load_plugins
from core.protocol import Instrument, ProtocolConfig
from core.schema import BookUpdate, Event, Health, HealthKind, TopOfBook, Trade
from core.testing.captures import read_records
from plugins.htx.protocol import NO_INSTRUMENT, HtxProtocol, SizeScale

S = 1_000_000_000
MS = 1_000_000
T0 = 1_700_000_000 * S
BTC = "BTC-USDT"
ETH = "ETH-USDT"
BTC_BOOK = "market.BTC-USDT.depth.size_20.high_freq"
ETH_BOOK = "market.ETH-USDT.depth.size_20.high_freq"
CAPTURE = Path(__file__).resolve().parents[3] / "shared" / "samples" / "htx" / "HUOBI_SWAP.jsonl.gz"

INSTRUMENTS = {
    BTC: Instrument(symbol=BTC, native=BTC, contract_size=0.001, tick_size=0.1),
    ETH: Instrument(symbol=ETH, native=ETH, contract_size=0.01, tick_size=0.01),
}


def gz(obj: Any) -> bytes:
    return gzip.compress(json.dumps(obj).encode(), mtime=0)


def make(channels: tuple[str, ...] = ("tob", "l2", "trades"), symbols: tuple[str, ...] = (BTC,),
         **options: str) -> HtxProtocol:
    proto = HtxProtocol(ProtocolConfig(symbols=symbols, channels=channels,
                                       instruments=INSTRUMENTS, options=options))
    proto.connection_made(T0)
    return proto


def sent(proto: HtxProtocol) -> list[dict[str, Any]]:
    frames = proto.frames_to_send()
    assert all(isinstance(f, str) for f in frames)
    return [json.loads(f) for f in frames]


def depth(ch: str, event: str | None, version: int, bids: list[list[float]],
          asks: list[list[float]], ts: int = 1_700_000_000_000) -> bytes:
    tick: dict[str, Any] = {"mrid": 100 + version, "id": ts // 1000, "bids": bids, "asks": asks,
                            "ts": ts, "version": version, "ch": ch}
    if event is not None:
        tick["event"] = event
    return gz({"ch": ch, "ts": ts + 2, "tick": tick})


def ack(req_id: str, topic: str) -> bytes:
    return gz({"id": req_id, "subbed": topic, "ts": 1_700_000_000_001, "status": "ok"})


def of(events: list[Event], kind: type) -> list[Any]:
    return [e for e in events if isinstance(e, kind)]


def health(events: list[Event]) -> list[tuple[str, str | None]]:
    return [(e.event, e.symbol) for e in events if isinstance(e, Health)]


def live(proto: HtxProtocol, ch: str = BTC_BOOK, version: int = 10) -> None:
    """Bring the book of ``ch`` to a snapshot at ``version``."""
    proto.receive(depth(ch, "snapshot", version, [[100.0, 5], [99.5, 2]], [[100.5, 3]]), T0 + 1)


# -- registration, symbols, instruments -------------------------------------------------------


def test_registered_through_the_hook() -> None:
    _, registry = load_plugins(entry_points=False, extra=[plugins.htx])
    assert registry.get("htx") is HtxProtocol
    assert HtxProtocol.compression == "gzip"
    assert HtxProtocol.default_url == "wss://api.hbdm.com/linear-swap-ws"
    assert HtxProtocol.default_rest_url == "https://api.hbdm.com"
    assert HtxProtocol.requires_instruments is True
    assert HtxProtocol.silence_timeout_s == 20.0
    assert HtxProtocol.max_sends_per_s is not None
    assert HtxProtocol.max_sends_per_s <= 40


def test_symbols_are_contract_codes() -> None:
    assert HtxProtocol.to_native("BTC-USDT") == "BTC-USDT"
    assert HtxProtocol.to_canonical("BTC-USDT") == "BTC-USDT"
    assert HtxProtocol.instruments_path() == "/linear-swap-api/v1/swap_contract_info"


def test_parse_instruments() -> None:
    body = json.dumps({"status": "ok", "ts": 1_700_000_000_000, "data": [
        {"symbol": "BTC", "contract_code": "BTC-USDT", "contract_size": 0.001,
         "price_tick": 0.1, "contract_status": 1, "business_type": "swap",
         "contract_type": "swap", "pair": "BTC-USDT", "delivery_date": ""},
        {"symbol": "CYBER", "contract_code": "CYBER-USDT", "contract_size": 1,
         "price_tick": 0.0001, "contract_status": 3, "business_type": "swap",
         "contract_type": "swap", "pair": "CYBER-USDT"},
        {"symbol": "BTC", "contract_code": "BTC-USDT-240628", "contract_size": 0.001,
         "price_tick": 0.1, "contract_status": 1, "business_type": "futures",
         "contract_type": "quarter", "pair": "BTC-USDT"},
    ]}).encode()
    got = HtxProtocol.parse_instruments(body)
    assert got == {
        BTC: Instrument(symbol=BTC, native="BTC-USDT", contract_size=0.001, tick_size=0.1,
                        lot_size=0.001, status="trading"),
        "CYBER-USDT": Instrument(symbol="CYBER-USDT", native="CYBER-USDT", contract_size=1.0,
                                 tick_size=0.0001, lot_size=1.0, status="suspended"),
    }


def test_parse_instruments_error_reply_raises_value_error() -> None:
    body = b'{"status":"error","err_code":1014,"err_msg":"This contract doesnt exist.","ts":1}'
    with pytest.raises(ValueError, match="1014"):
        HtxProtocol.parse_instruments(body)


def test_size_scale_is_exact_for_decimal_contract_sizes() -> None:
    assert SizeScale.of(0.001).size(229) == 0.229
    assert SizeScale.of(0.01).size(6068) == 60.68
    assert SizeScale.of(10.0).size(4) == 40.0
    assert SizeScale.of(0.001).levels([(100.0, 3.0)]) == [(100.0, 0.003)]


def test_bad_option_is_rejected() -> None:
    with pytest.raises(ValueError, match="l2_source"):
        HtxProtocol(ProtocolConfig(symbols=(BTC,), channels=("l2",),
                                   options={"l2_source": "size_5"}))


# -- subscribing ---------------------------------------------------------------------------------


def test_subscribe_frames_one_topic_each() -> None:
    proto = make(symbols=(BTC, ETH))
    assert sent(proto) == [
        {"sub": BTC_BOOK, "data_type": "incremental", "id": "1"},
        {"sub": "market.BTC-USDT.trade.detail", "id": "2"},
        {"sub": ETH_BOOK, "data_type": "incremental", "id": "3"},
        {"sub": "market.ETH-USDT.trade.detail", "id": "4"},
    ]


@pytest.mark.parametrize(("options", "channels", "topics"), [
    ({"l2_source": "size_150"}, ("l2",), ["market.BTC-USDT.depth.size_150.high_freq"]),
    ({"l2_source": "step0"}, ("tob", "l2"), ["market.BTC-USDT.depth.step0"]),
    ({"tob_source": "bbo"}, ("tob",), ["market.BTC-USDT.bbo"]),
    ({}, ("tob",), [BTC_BOOK]),
    ({"tob_source": "bbo"}, ("tob", "l2"), [BTC_BOOK, "market.BTC-USDT.bbo"]),
])
def test_subscribe_frames_follow_the_options(options: dict[str, str],
                                             channels: tuple[str, ...],
                                             topics: list[str]) -> None:
    proto = make(channels=channels, **options)
    frames = sent(proto)
    assert [f["sub"] for f in frames] == topics
    for f in frames:
        assert ("data_type" in f) == f["sub"].endswith("high_freq")


def test_ack_gives_subscribed_once() -> None:
    proto = make()
    sent(proto)
    events = proto.receive(ack("1", BTC_BOOK), T0 + 5)
    assert events == [Health(exchange="htx", ts_local=T0 + 5, symbol=BTC,
                             event=HealthKind.SUBSCRIBED, detail=BTC_BOOK)]
    assert proto.receive(ack("9", BTC_BOOK), T0 + 6) == []  # a resubscription's ack


def test_error_ack_gives_subscribe_error_and_is_not_retried() -> None:
    proto = make(symbols=(BTC, "NOPE-USDT"), channels=("l2",))
    frames = sent(proto)
    assert frames[1] == {"sub": "market.NOPE-USDT.depth.size_20.high_freq",
                         "data_type": "incremental", "id": "2"}
    err = gz({"status": "error", "ts": 1_700_000_000_002, "id": "2", "err-code": "bad-request",
              "err-msg": "invalid topic market.NOPE-USDT.depth.size_20.high_freq"})
    [ev] = proto.receive(err, T0 + 7)
    assert (ev.event, ev.symbol) == (HealthKind.SUBSCRIBE_ERROR, "NOPE-USDT")
    assert "bad-request" in ev.detail
    assert "invalid topic" in ev.detail
    # Its snapshot is no longer awaited, and a reconnect does not ask for it again.
    assert proto.book.state("NOPE-USDT").snapshot_due_ns is None
    proto.connection_lost(T0 + 8)
    proto.connection_made(T0 + 9)
    assert [f["sub"] for f in sent(proto)] == [BTC_BOOK]


def test_error_without_id_is_attributed_by_topic_or_reported_as_venue_error() -> None:
    proto = make(symbols=(BTC, "NOPE-USDT"), channels=("l2",))
    sent(proto)
    by_topic = gz({"status": "error", "id": "", "err-code": "bad-request",
                   "err-msg": "invalid topic market.NOPE-USDT.depth.size_20.high_freq"})
    assert health(proto.receive(by_topic, T0)) == [(HealthKind.SUBSCRIBE_ERROR, "NOPE-USDT")]
    not_json = gz({"status": "error", "id": "", "err-code": "bad-request",
                   "err-msg": "not json, is not json string"})
    assert health(proto.receive(not_json, T0)) == [(HealthKind.VENUE_ERROR, None)]


def test_ping_is_answered_with_the_same_number() -> None:
    proto = make()
    sent(proto)
    assert proto.receive(gz({"ping": 1645289389594}), T0) == []
    assert proto.urgent_frames_to_send() == ['{"pong":1645289389594}']
    assert proto.frames_to_send() == []  # pongs never queue behind paced frames


# -- incremental book ------------------------------------------------------------------------


def test_high_freq_snapshot_then_updates() -> None:
    proto = make(symbols=(BTC,))
    sent(proto)
    snap = depth(BTC_BOOK, "snapshot", 1000, [[86853.4, 229], [86848.5, 12]],
                 [[86853.5, 7], [86860.0, 1500]], ts=1_790_134_831_871)
    events = proto.receive(snap, T0 + 10)
    assert health(events) == [(HealthKind.SNAPSHOT, BTC)]
    [book] = of(events, BookUpdate)
    assert book == BookUpdate(exchange="htx", ts_local=T0 + 10, symbol=BTC,
                              ts_exchange=1_790_134_831_871 * MS, seq=1000, msg_id=T0 + 10,
                              is_snapshot=True, bids=((86853.4, 0.229), (86848.5, 0.012)),
                              asks=((86853.5, 0.007), (86860.0, 1.5)))
    [tob] = of(events, TopOfBook)
    assert (tob.bid_px, tob.bid_sz, tob.ask_px, tob.ask_sz, tob.seq) == (
        86853.4, 0.229, 86853.5, 0.007, 1000)
    assert tob.ts_exchange == 1_790_134_831_871 * MS

    # Update 1001: new best bid, level 86848.5 removed.
    events = proto.receive(depth(BTC_BOOK, "update", 1001, [[86853.45, 2], [86848.5, 0]], [],
                                 ts=1_790_134_831_901), T0 + 20)
    [book] = of(events, BookUpdate)
    assert (book.is_snapshot, book.seq, book.msg_id) == (False, 1001, T0 + 20)
    assert book.bids == ((86853.45, 0.002), (86848.5, 0.0))
    assert book.asks == ()
    [tob] = of(events, TopOfBook)
    assert (tob.bid_px, tob.bid_sz, tob.ask_px, tob.ask_sz) == (86853.45, 0.002, 86853.5, 0.007)
    assert proto.book.book(BTC).top_bids(5) == [(86853.45, 0.002), (86853.4, 0.229)]

    # An empty update still advances the version and publishes nothing.
    assert proto.receive(depth(BTC_BOOK, "update", 1002, [], []), T0 + 30) == []
    assert proto.book.last_seq(BTC) == 1002

    # A change below the touch: an l2 row, no new TopOfBook.
    events = proto.receive(depth(BTC_BOOK, "update", 1003, [], [[86870.0, 40]]), T0 + 40)
    assert [type(e) for e in events] == [BookUpdate]
    assert events[0].asks == ((86870.0, 0.04),)
    assert proto.frames_to_send() == []


def test_version_gap_resyncs_that_symbol_only() -> None:
    proto = make(channels=("tob", "l2"), symbols=(BTC, ETH))
    sent(proto)
    assert health(proto.receive(ack("1", BTC_BOOK), T0)) == [(HealthKind.SUBSCRIBED, BTC)]
    live(proto, BTC_BOOK, 10)
    live(proto, ETH_BOOK, 500)
    events = proto.receive(depth(BTC_BOOK, "update", 12, [[100.0, 6]], []), T0 + 50)
    assert [(e.event, e.symbol) for e in events] == [(HealthKind.GAP, BTC)]
    assert "update needs 11" in events[0].detail
    assert sent(proto) == [
        {"unsub": BTC_BOOK, "data_type": "incremental", "id": "3"},
        {"sub": BTC_BOOK, "data_type": "incremental", "id": "4"},
    ]
    # Nothing is published for BTC until its new snapshot; ETH is untouched.
    assert proto.receive(depth(BTC_BOOK, "update", 13, [[100.0, 7]], []), T0 + 51) == []
    eth = proto.receive(depth(ETH_BOOK, "update", 501, [[100.0, 9]], []), T0 + 52)
    [eth_book] = of(eth, BookUpdate)
    assert (eth_book.symbol, eth_book.bids) == (ETH, ((100.0, 0.09),))
    assert proto.receive(gz({"id": "3", "unsubbed": BTC_BOOK, "status": "ok"}), T0 + 53) == []
    assert proto.receive(ack("4", BTC_BOOK), T0 + 54) == []
    events = proto.receive(depth(BTC_BOOK, "snapshot", 20, [[101.0, 1]], [[102.0, 2]]), T0 + 55)
    assert [(e.event, e.symbol) for e in of(events, Health)] == [(HealthKind.RESYNCED, BTC)]
    assert "1 updates skipped" in of(events, Health)[0].detail
    [book] = of(events, BookUpdate)
    assert (book.is_snapshot, book.bids, book.asks) == (True, ((101.0, 0.001),), ((102.0, 0.002),))
    assert of(events, TopOfBook)[0].bid_px == 101.0
    assert sent(proto) == []


def test_crossing_update_invalidates_and_resyncs() -> None:
    proto = make(channels=("l2",))
    sent(proto)
    live(proto)
    events = proto.receive(depth(BTC_BOOK, "update", 11, [[101.0, 1]], []), T0 + 60)
    assert health(events) == [(HealthKind.CROSSED, BTC)]
    assert [next(iter(f)) for f in sent(proto)] == ["unsub", "sub"]


def test_snapshot_with_a_null_side() -> None:
    proto = make(channels=("tob",))
    sent(proto)
    frame = gz({"ch": BTC_BOOK, "ts": 1, "tick": {"asks": [[9.9252, 1569]], "bids": None,
                                                  "event": "snapshot", "version": 7,
                                                  "ts": 1_700_000_000_000,
                                                  "mrid": 2, "id": 2, "ch": BTC_BOOK}})
    [_, tob] = proto.receive(frame, T0)
    assert (tob.bid_px, tob.bid_sz, tob.ask_px, tob.ask_sz) == (None, None, 9.9252, 1.569)


def test_silent_symbol_reports_no_snapshot_and_retries_with_growing_delay() -> None:
    proto = make(channels=("l2",), symbols=(BTC, ETH))
    sent(proto)
    proto.receive(ack("1", BTC_BOOK), T0 + 1 * S)
    proto.receive(ack("2", ETH_BOOK), T0 + 1 * S)
    live(proto, ETH_BOOK)
    assert proto.next_deadline() == T0 + 16 * S  # 15 s after the ack
    assert proto.on_deadline(T0 + 10 * S) == []
    events = proto.on_deadline(T0 + 16 * S)
    assert health(events) == [(HealthKind.NO_SNAPSHOT, BTC)]
    assert sent(proto) == [{"unsub": BTC_BOOK, "data_type": "incremental", "id": "3"},
                           {"sub": BTC_BOOK, "data_type": "incremental", "id": "4"}]
    assert proto.next_deadline() == T0 + 46 * S  # waits twice as long now
    assert health(proto.on_deadline(T0 + 46 * S)) == [(HealthKind.NO_SNAPSHOT, BTC)]
    assert proto.next_deadline() == T0 + 106 * S


def test_reconnect_resubscribes_and_waits_for_new_snapshots() -> None:
    proto = make(channels=("l2",))
    first = sent(proto)
    live(proto)
    proto.connection_lost(T0 + 100)
    proto.connection_made(T0 + 200)
    assert [f["sub"] for f in sent(proto)] == [f["sub"] for f in first]
    # Versions are per connection: an update before the new snapshot is not applied.
    assert proto.receive(depth(BTC_BOOK, "update", 11, [[100.0, 1]], []), T0 + 300) == []
    events = proto.receive(depth(BTC_BOOK, "snapshot", 77, [[99.0, 1]], [[99.5, 1]]), T0 + 400)
    assert health(events) == [(HealthKind.RESYNCED, BTC)]
    assert "after disconnect" in of(events, Health)[0].detail


def test_missing_instrument_is_reported() -> None:
    proto = HtxProtocol(ProtocolConfig(symbols=(BTC, "XYZ-USDT"), channels=("l2",),
                                       instruments=INSTRUMENTS))
    assert health(proto.connection_made(T0)) == [(NO_INSTRUMENT, "XYZ-USDT")]
    assert proto.connection_made(T0 + 1) == []


# -- step0, bbo, trades ----------------------------------------------------------------------


def test_step0_every_push_is_a_snapshot() -> None:
    ch = "market.BTC-USDT.depth.step0"
    proto = make(channels=("tob", "l2"), l2_source="step0")
    sent(proto)
    first = proto.receive(depth(ch, None, 1645289384, [[100.0, 250], [99.0, 120]],
                                [[101.0, 40]]), T0 + 1)
    assert health(first) == [(HealthKind.SNAPSHOT, BTC)]
    [b1] = of(first, BookUpdate)
    assert (b1.is_snapshot, b1.seq, b1.bids, b1.asks) == (
        True, 100 + 1645289384, ((100.0, 0.25), (99.0, 0.12)), ((101.0, 0.04),))
    assert len(of(first, TopOfBook)) == 1
    # The same touch with a changed deeper level: a full snapshot again, no TopOfBook.
    second = proto.receive(depth(ch, None, 1645289384, [[100.0, 250], [98.0, 1]],
                                 [[101.0, 40]]), T0 + 2)
    assert [type(e) for e in second] == [BookUpdate]
    assert second[0].is_snapshot
    assert second[0].bids == ((100.0, 0.25), (98.0, 0.001))
    assert proto.book.book(BTC).top_bids(5) == [(100.0, 0.25), (98.0, 0.001)]
    third = proto.receive(depth(ch, None, 1645289385, [[100.0, 1]], [[101.0, 40]]), T0 + 3)
    assert [type(e) for e in third] == [BookUpdate, TopOfBook]
    assert third[1].bid_sz == 0.001


def test_bbo_as_tob_source() -> None:
    ch = "market.BTC-USDT.bbo"
    proto = make(channels=("tob",), tob_source="bbo")
    sent(proto)
    frame = gz({"ch": ch, "ts": 1603707934525, "tick": {
        "mrid": 131599726, "id": 1603707934, "bid": [13064, 38], "ask": [13072.3, 205],
        "ts": 1603707934525, "version": 131599726, "ch": ch}})
    events = proto.receive(frame, T0)
    assert health(events) == [(HealthKind.SNAPSHOT, BTC)]
    assert of(events, TopOfBook) == [TopOfBook(
        exchange="htx", ts_local=T0, symbol=BTC, ts_exchange=1603707934525 * MS,
        bid_px=13064.0, bid_sz=0.038, ask_px=13072.3, ask_sz=0.205, seq=131599726)]
    assert of(events, BookUpdate) == []


def test_trade_detail() -> None:
    ch = "market.ETH-USDT.trade.detail"
    proto = make(channels=("trades",), symbols=(ETH,))
    sent(proto)
    frame = gz({"ch": ch, "ts": 1645289380959, "tick": {"id": 43131183313, "ts": 1645289380927,
        "data": [
            {"amount": 4, "quantity": 0.04, "trade_turnover": 120.5, "ts": 1645289380927,
             "id": 431311833130000, "price": 3012.5, "direction": "buy"},
            {"amount": 150, "quantity": 1.5, "trade_turnover": 4518.6, "ts": 1645289380930,
             "id": 431311833130001, "price": 3012.4, "direction": "sell"},
        ]}})
    assert proto.receive(frame, T0) == [
        Trade(exchange="htx", ts_local=T0, symbol=ETH, ts_exchange=1645289380927 * MS,
              price=3012.5, size=0.04, side="buy", trade_id="431311833130000"),
        Trade(exchange="htx", ts_local=T0, symbol=ETH, ts_exchange=1645289380930 * MS,
              price=3012.4, size=1.5, side="sell", trade_id="431311833130001"),
    ]


# -- malformed frames ----------------------------------------------------------------------------


@pytest.mark.parametrize(("frame", "kind"), [
    (b"\x1f\x8b\x08\x00garbage", "inflate"),
    (gzip.compress(b"not json {", mtime=0), "DecodeError"),
    (gz({"ch": BTC_BOOK, "ts": 1}), "ValidationError"),
    (gz({"ch": "market.BTC-USDT.trade.detail", "ts": 1, "tick": {
        "ts": 1_700_000_000_000, "data": [{"id": 1, "ts": 10**15, "price": 1.0, "amount": 1,
                                           "direction": "buy"}]}}), "ValidationError"),
    (gz({"ch": "market.BTC-USDT.trade.detail", "ts": 1, "tick": {"ts": 1, "data": [{}]}}),
     "ValidationError"),
    (gz({"ping": "soon"}), "ValidationError"),
    (gz([1, 2, 3]), "ValidationError"),
])
def test_malformed_frames_become_decode_errors(frame: bytes, kind: str) -> None:
    """Frames that are not book data: counted, dropped, and the book is left alone."""
    proto = make()
    sent(proto)
    live(proto)
    [ev] = proto.receive(frame, T0 + 99)
    assert (ev.event, ev.symbol, ev.ts_local) == (HealthKind.DECODE_ERROR, None, T0 + 99)
    assert ev.detail.startswith(f"{kind} #1")
    assert proto.decode_errors == {kind: 1}
    assert proto.book.is_live(BTC)  # the book is unaffected
    assert proto.frames_to_send() == []


TS = 1_700_000_000_000


@pytest.mark.parametrize("tick", [
    {"event": "update", "version": 11, "ts": TS, "bids": [[100.0]], "asks": []},
    {"event": "update", "version": "x", "ts": TS},
    {"event": "update", "version": 11, "ts": TS, "bids": [[100.0, -3]], "asks": []},
    {"event": "update", "version": 11, "ts": TS, "bids": [[0.0, 3]], "asks": []},
    {"event": "update", "version": 11, "ts": TS, "bids": [[1e300, 3e300]], "asks": []},
    {"event": "update", "version": 10**20, "ts": TS, "bids": [], "asks": []},
    {"event": "update", "version": 11, "ts": 10**15, "bids": [], "asks": []},
    {"event": "snapshot", "version": 11, "ts": -1, "bids": [], "asks": []},
])
def test_a_book_frame_that_does_not_decode_resyncs_that_book(tick: dict[str, Any]) -> None:
    """A book frame with a wrong shape or a value no row may hold (negative or non-finite size,
    zero price, sequence beyond Int64, time outside 2000..2100) is dropped as a decode_error;
    an update may now be missing from the book, so it is resynced (a gap, then unsub + sub)."""
    proto = make()
    sent(proto)
    live(proto)
    # 1e300 stands for a number past the float range on the wire (JSON text 1e400)
    text = json.dumps({"ch": BTC_BOOK, "ts": TS, "tick": tick}).replace("1e+300", "1e400")
    events = proto.receive(gzip.compress(text.encode()), T0 + 99)
    assert health(events) == [(HealthKind.DECODE_ERROR, None), (HealthKind.GAP, BTC)]
    assert "ValidationError" in events[1].detail
    assert not proto.book.is_live(BTC)
    assert [next(iter(f)) for f in sent(proto)] == ["unsub", "sub"]


def test_unknown_channel_is_a_venue_error() -> None:
    proto = make()
    sent(proto)
    frame = gz({"ch": "market.DOGE-USDT.bbo", "ts": 1, "tick": {"ts": 1}})
    assert health(proto.receive(frame, T0)) == [(HealthKind.VENUE_ERROR, None)]


# -- the real capture --------------------------------------------------------------------------


def test_capture_replay() -> None:
    if not CAPTURE.exists():
        pytest.skip(f"{CAPTURE} is not available")
    records = list(read_records(CAPTURE))
    rest = next((r for r in records if r.kind == "http"
                 and "/linear-swap-api/v1/swap_contract_info" in (r.url or "")), None)
    # Contract sizes come from the capture's REST record; without it every size stays 1.0.
    instruments = HtxProtocol.parse_instruments(rest.frame.encode()) if rest else {}
    linear = [r.conn for r in records if r.kind == "open" and "linear-swap-ws" in (r.url or "")]
    assert linear, "the capture has no linear-swap-ws connection"
    for conn in linear:
        mine = [r for r in records if r.conn == conn]
        subs = [json.loads(r.frame)["sub"] for r in mine if r.kind == "send"
                and "sub" in json.loads(r.frame)]
        symbols = tuple(sorted({t.split(".")[1] for t in subs}))
        assert symbols == ("ACH-USDT", "BTT-USDT", "GRT-USDT", "SNX-USDT", "SOS-USDT")
        config = ProtocolConfig(symbols=symbols, channels=("tob", "l2", "trades"),
                                options={"l2_source": "step0"},
                                instruments={s: instruments[s] for s in symbols
                                             if s in instruments})
        proto = HtxProtocol(config)
        proto.connection_made(mine[0].ts_ns)
        assert sorted(json.loads(f)["sub"] for f in proto.frames_to_send()) == sorted(subs)
        pongs: list[int] = []
        kinds: Counter[str] = Counter()
        for rec in mine:
            if rec.kind != "recv":
                continue
            assert isinstance(rec.frame, bytes)
            for ev in proto.receive(rec.frame, rec.ts_ns):
                kinds[ev.event if isinstance(ev, Health) else type(ev).__name__] += 1
                if isinstance(ev, Trade):
                    assert ev.side in ("buy", "sell")
                    assert ev.size > 0
            pongs.extend(json.loads(f)["pong"] for f in proto.urgent_frames_to_send())
            assert not any(proto.book.book(s).is_crossed() for s in symbols)
        recorded = [json.loads(r.frame)["pong"] for r in mine
                    if r.kind == "send" and "pong" in json.loads(r.frame)]
        assert pongs == recorded
        assert len(pongs) == 6
        assert proto.decode_errors == {}
        assert kinds[HealthKind.DECODE_ERROR] == 0
        for bad in (HealthKind.GAP, HealthKind.CROSSED, HealthKind.VENUE_ERROR,
                    HealthKind.SUBSCRIBE_ERROR, NO_INSTRUMENT):
            assert kinds[bad] == 0, bad
        assert kinds[HealthKind.SUBSCRIBED] == 10
        assert kinds[HealthKind.SNAPSHOT] == 5
        assert kinds["BookUpdate"] == 1588
        assert kinds["Trade"] == 17
        assert all(proto.book.is_live(s) for s in symbols)


def test_capture_trade_sizes_agree_with_quantity() -> None:
    if not CAPTURE.exists():
        pytest.skip(f"{CAPTURE} is not available")
    records = list(read_records(CAPTURE))
    rest = next(r for r in records if r.kind == "http"
                and "/linear-swap-api/v1/swap_contract_info" in (r.url or ""))
    instruments = HtxProtocol.parse_instruments(rest.frame.encode())
    checked = 0
    for rec in records:
        if rec.kind != "recv" or not isinstance(rec.frame, bytes):
            continue
        msg = json.loads(gzip.decompress(rec.frame))
        if not msg.get("ch", "").endswith("USDT.trade.detail"):
            continue
        scale = SizeScale.of(instruments[msg["ch"].split(".")[1]].contract_size)
        for t in msg["tick"]["data"]:
            assert scale.size(t["amount"]) == pytest.approx(t["quantity"], rel=1e-12)
            checked += 1
    assert checked == 17
