"""Bitget v2 USDT-futures protocol: subscriptions, acks/errors, heartbeat, books with sequence and
CRC32 checksum, books1, trades, malformed frames, instruments, and the real (v1) capture.

Frames are built here in the Bitget v2 wire format; expected checksums come from the small
reference implementation below (Decimal-keyed book, string built by hand, zlib.crc32, signed),
independent of the plugin's own checksum code.
"""

from __future__ import annotations

import json
import zlib
from decimal import Decimal

import pytest

from core.book import OrderBook
from core.plugins import load_plugins
from core.protocol import Instrument, ProtocolConfig
from core.schema import BookUpdate, Event, Health, HealthKind, TopOfBook, Trade
from core.testing.captures import read_records
from core.testing.conformance import check_protocol
from plugins.bitget.checksum import book_checksum
from plugins.bitget.protocol import MAX_REQUEST_BYTES, BitgetProtocol
from tests.conftest import capture_path, skip_reason

S = 1_000_000_000
MS = 1_000_000
T0 = 1_700_000_000 * S
EPOCH_MS = 1_700_000_000_000  # small ts_ms values in the helpers below count from here
BIG_SEQ = 2**53 + 12_345  # not representable as a float
CAPTURE = capture_path("bitget", "BITGET.jsonl.gz")
NO_CAPTURE = skip_reason("bitget", "BITGET.jsonl.gz")

Wire = list[tuple[str, str]]


# -- reference checksum and frame builders -----------------------------------------------------


class RefBook:
    """Independent model of the venue's book: Decimal price -> (price text, size text)."""

    def __init__(self) -> None:
        self.bids: dict[Decimal, tuple[str, str]] = {}
        self.asks: dict[Decimal, tuple[str, str]] = {}

    def snapshot(self, bids: Wire, asks: Wire) -> None:
        self.bids.clear()
        self.asks.clear()
        self.apply(bids, asks)

    def apply(self, bids: Wire, asks: Wire) -> None:
        for side, levels in ((self.bids, bids), (self.asks, asks)):
            for px, sz in levels:
                if Decimal(sz) == 0:
                    side.pop(Decimal(px), None)
                else:
                    side[Decimal(px)] = (px, sz)

    def checksum(self) -> int:
        b = [self.bids[k] for k in sorted(self.bids, reverse=True)[:25]]
        a = [self.asks[k] for k in sorted(self.asks)[:25]]
        fields: list[str] = []
        for i in range(25):
            if i < len(b):
                fields += [b[i][0], b[i][1]]
            if i < len(a):
                fields += [a[i][0], a[i][1]]
        crc = zlib.crc32(":".join(fields).encode())
        return crc - 2**32 if crc > 0x7FFFFFFF else crc


def arg(channel: str, inst: str) -> dict[str, str]:
    return {"instType": "USDT-FUTURES", "channel": channel, "instId": inst}


def books(action: str, inst: str, bids: Wire, asks: Wire, *, seq: int, pseq: int,
          ts_ms: int, checksum: int | None = None, channel: str = "books") -> str:
    if ts_ms < EPOCH_MS:
        ts_ms += EPOCH_MS
    entry: dict[str, object] = {"asks": [list(x) for x in asks], "bids": [list(x) for x in bids],
                                "ts": str(ts_ms), "seq": seq, "pseq": pseq}
    if checksum is not None:
        entry["checksum"] = checksum
    return json.dumps({"action": action, "arg": arg(channel, inst), "data": [entry],
                       "ts": ts_ms + 2}, separators=(",", ":"))


def trades(action: str, inst: str, rows: list[tuple[int, str, str, str, str]]) -> str:
    data = [{"ts": str(ts if ts >= EPOCH_MS else EPOCH_MS + ts), "price": px, "size": sz,
             "side": side, "tradeId": tid} for ts, px, sz, side, tid in rows]
    return json.dumps({"action": action, "arg": arg("trade", inst), "data": data,
                       "ts": rows[0][0] + 3 if rows else 0})


def proto(symbols: tuple[str, ...] = ("BTC-USDT", "ETH-USDT"),
          channels: tuple[str, ...] = ("tob", "l2", "trades"),
          instruments: dict[str, Instrument] | None = None) -> BitgetProtocol:
    p = BitgetProtocol(ProtocolConfig(symbols=symbols, channels=channels,
                                      instruments=instruments or {}))
    p.connection_made(T0)
    p.frames_to_send()
    return p


def of(events: list[Event], kind: type) -> list:
    return [e for e in events if isinstance(e, kind)]


def health(events: list[Event]) -> list[tuple[str | None, str]]:
    return [(e.symbol, e.event) for e in events if isinstance(e, Health)]


def sent(p: BitgetProtocol) -> list[dict]:
    return [json.loads(f) if f != "ping" else "ping" for f in p.frames_to_send()]


# Snapshot of 30 bids / 27 asks (more than the 25 checksummed), with trailing zeros in the text.
SNAP_BIDS: Wire = [(f"{27000 - i}.{'50' if i % 3 == 0 else '1'}", f"{1 + i}.{i % 10}00")
                   for i in range(30)]
SNAP_ASKS: Wire = [(f"{27001 + i}.{'20' if i % 2 else '0'}", f"0.{i + 1:03d}0") for i in range(27)]


def levels(wire: Wire) -> tuple[tuple[float, float], ...]:
    return tuple((float(p), float(s)) for p, s in wire)


def live_btc(p: BitgetProtocol, ref: RefBook, seq: int = 100) -> list[Event]:
    ref.snapshot(SNAP_BIDS, SNAP_ASKS)
    return p.receive(books("snapshot", "BTCUSDT", SNAP_BIDS, SNAP_ASKS, seq=seq, pseq=0,
                           ts_ms=1_700_000_000_100, checksum=ref.checksum()), T0 + 1)


ETH_BIDS: Wire = [("1800.10", "3.0"), ("1800.00", "1.5")]
ETH_ASKS: Wire = [("1800.20", "2.25"), ("1800.30", "4")]


def live_eth(p: BitgetProtocol, ref: RefBook, seq: int = 500) -> list[Event]:
    ref.snapshot(ETH_BIDS, ETH_ASKS)
    return p.receive(books("snapshot", "ETHUSDT", ETH_BIDS, ETH_ASKS, seq=seq, pseq=0,
                           ts_ms=1_700_000_000_050, checksum=ref.checksum()), T0 + 2)


# -- registration and subscriptions ----------------------------------------------------------


def test_registered_through_entry_point() -> None:
    _, registry = load_plugins()
    assert registry.get("bitget") is BitgetProtocol
    assert BitgetProtocol.default_url == "wss://ws.bitget.com/v2/ws/public"
    assert BitgetProtocol.default_rest_url == "https://api.bitget.com"
    assert BitgetProtocol.requires_instruments is False
    assert BitgetProtocol.to_native("BTC-USDT") == "BTCUSDT"
    assert BitgetProtocol.to_canonical("BTCUSDT") == "BTC-USDT"
    assert BitgetProtocol.to_canonical("1000PEPEUSDT") == "1000PEPE-USDT"


def test_conformance() -> None:
    check_protocol(BitgetProtocol, ProtocolConfig(symbols=("BTC-USDT", "ETH-USDT"),
                                                  channels=("tob", "l2", "trades")))


def test_subscribe_one_request_for_few_symbols() -> None:
    p = BitgetProtocol(ProtocolConfig(symbols=("BTC-USDT", "ETH-USDT"),
                                      channels=("tob", "l2", "trades")))
    assert p.connection_made(T0) == []
    frames = p.frames_to_send()
    assert len(frames) == 1
    assert json.loads(frames[0]) == {"op": "subscribe", "args": [
        arg("books1", "BTCUSDT"), arg("books", "BTCUSDT"), arg("trade", "BTCUSDT"),
        arg("books1", "ETHUSDT"), arg("books", "ETHUSDT"), arg("trade", "ETHUSDT")]}


def test_subscribe_batches_many_symbols_within_byte_limit_and_paced() -> None:
    symbols = tuple(f"COIN{i:03d}-USDT" for i in range(150))
    p = BitgetProtocol(ProtocolConfig(symbols=symbols, channels=("tob", "l2", "trades")))
    p.connection_made(T0)
    frames = p.frames_to_send()
    # 450 arguments of ~70 bytes: a handful of requests, each within the venue's 4096 bytes.
    assert 8 <= len(frames) <= 10
    assert all(len(f.encode()) <= MAX_REQUEST_BYTES for f in frames)
    assert all(len(json.loads(f)["args"]) > 40 for f in frames[:-1])
    got = [a for f in frames for a in json.loads(f)["args"]]
    want = [arg(ch, f"COIN{i:03d}USDT") for i in range(150) for ch in ("books1", "books", "trade")]
    assert got == want
    assert {json.loads(f)["op"] for f in frames} == {"subscribe"}
    # The session paces requests below the venue's 10 messages/s per connection.
    assert BitgetProtocol.max_sends_per_s is not None
    assert 0 < BitgetProtocol.max_sends_per_s < 10


def test_subscribe_only_requested_channels() -> None:
    p = BitgetProtocol(ProtocolConfig(symbols=("BTC-USDT",), channels=("trades",)))
    p.connection_made(T0)
    assert [json.loads(f) for f in p.frames_to_send()] == [
        {"op": "subscribe", "args": [arg("trade", "BTCUSDT")]}]
    assert p.next_deadline() == T0 + 30 * S  # only the ping: trades have no snapshot deadline


# -- acks and errors -----------------------------------------------------------------------------


def test_ack_reports_subscribed_per_symbol() -> None:
    p = proto()
    ev = p.receive('{"event":"subscribe","arg":{"instType":"USDT-FUTURES","channel":"books",'
                   '"instId":"ETHUSDT"}}', T0 + 5)
    assert ev == [Health(exchange="bitget", ts_local=T0 + 5, symbol="ETH-USDT",
                         event=HealthKind.SUBSCRIBED, detail="books")]
    assert p.receive('{"event":"unsubscribe","arg":' + json.dumps(arg("books", "ETHUSDT")) + "}",
                     T0 + 6) == []


def test_subscribe_error_names_symbol_and_is_not_retried() -> None:
    p = proto(symbols=("BTC-USDT", "NOPE-USDT"), channels=("l2",))
    frame = json.dumps({"event": "error", "arg": arg("books", "NOPEUSDT"), "code": 30001,
                        "msg": "instType:USDT-FUTURES,channel:books,instId:NOPEUSDT doesn't exist",
                        "op": "subscribe"})
    ev = p.receive(frame, T0 + 7)
    assert len(ev) == 1
    err = ev[0]
    assert isinstance(err, Health)
    assert (err.symbol, err.event) == ("NOPE-USDT", HealthKind.SUBSCRIBE_ERROR)
    assert "30001" in err.detail
    assert "doesn't exist" in err.detail
    assert "books" in err.detail
    assert p.decode_errors == {}
    # No snapshot deadline for the rejected symbol: only BTC's is pending.
    assert p.l2.state("NOPE-USDT").snapshot_due_ns is None
    assert p.l2.state("BTC-USDT").snapshot_due_ns == T0 + 15 * S
    # A reconnect subscribes the valid symbol only.
    p.connection_lost(T0 + 8)
    p.connection_made(T0 + 9)
    assert [json.loads(f) for f in p.frames_to_send()] == [
        {"op": "subscribe", "args": [arg("books", "BTCUSDT")]}]


def test_error_without_arg_and_string_code() -> None:
    p = proto()
    ev = p.receive('{"event":"error","code":"30006","msg":"request too many"}', T0 + 1)
    assert health(ev) == [(None, HealthKind.SUBSCRIBE_ERROR)]
    assert "30006" in ev[0].detail
    # A transient error on a known argument is reported and the argument is subscribed again
    # after a backoff (1 s, then doubling), instead of waiting for the snapshot deadline.
    ev = p.receive(json.dumps({"event": "error", "arg": arg("books", "BTCUSDT"), "code": 30006,
                               "msg": "request too many", "op": "subscribe"}), T0 + 2)
    assert health(ev) == [("BTC-USDT", "subscribe_retry")]
    assert "retrying in 1 s" in ev[0].detail
    assert p.l2.state("BTC-USDT").snapshot_due_ns is None
    assert p.next_deadline() == T0 + 2 + S
    p.frames_to_send()
    p.on_deadline(T0 + 2 + S)
    assert p.frames_to_send() == [
        '{"op":"subscribe","args":[{"instType":"USDT-FUTURES","channel":"books",'
        '"instId":"BTCUSDT"}]}']
    assert p.l2.state("BTC-USDT").snapshot_due_ns == T0 + 2 + S + 15 * S


# -- heartbeat -----------------------------------------------------------------------------------


def test_text_ping_on_deadline_and_text_pong_accepted() -> None:
    p = proto(channels=("trades",))
    assert p.next_deadline() == T0 + 30 * S
    assert p.on_deadline(T0 + 29 * S) == []
    assert p.frames_to_send() == []
    assert p.on_deadline(T0 + 30 * S) == []
    assert p.frames_to_send() == ["ping"]
    assert p.next_deadline() == T0 + 60 * S
    assert p.receive("pong", T0 + 30 * S + 5 * MS) == []
    assert p.receive(b"pong", T0 + 30 * S + 6 * MS) == []
    assert p.decode_errors == {}
    assert BitgetProtocol.silence_timeout_s > 30
    p.connection_lost(T0 + 40 * S)
    assert p.next_deadline() is None


# -- books: snapshot, updates, checksum, sequence ----------------------------------------------


def test_snapshot_and_updates_with_checksums() -> None:
    p = proto()
    ref = RefBook()
    ev = live_btc(p, ref, seq=BIG_SEQ)
    assert health(ev) == [("BTC-USDT", HealthKind.SNAPSHOT)]
    [snap] = of(ev, BookUpdate)
    assert snap == BookUpdate(exchange="bitget", ts_local=T0 + 1, symbol="BTC-USDT",
                              ts_exchange=1_700_000_000_100 * MS, seq=BIG_SEQ, msg_id=T0 + 1,
                              is_snapshot=True, bids=levels(SNAP_BIDS), asks=levels(SNAP_ASKS))
    assert of(ev, TopOfBook) == []  # tob comes from books1 only

    # Update 1: change the best bid's size, remove the best ask, add a level deep in the book
    # (beyond the 25 checksummed) and one inside the top 25.
    u1_bids: Wire = [("27000.50", "9.900"), ("26990.1", "0"), ("26950.0", "2")]
    u1_asks: Wire = [("27001.0", "0"), ("27003.05", "0.5000")]
    ref.apply(u1_bids, u1_asks)
    ev = p.receive(books("update", "BTCUSDT", u1_bids, u1_asks, seq=BIG_SEQ + 7, pseq=BIG_SEQ,
                         ts_ms=1_700_000_000_200, checksum=ref.checksum()), T0 + 10)
    assert ev == [BookUpdate(exchange="bitget", ts_local=T0 + 10, symbol="BTC-USDT",
                             ts_exchange=1_700_000_000_200 * MS, seq=BIG_SEQ + 7, msg_id=T0 + 10,
                             is_snapshot=False,
                             bids=((27000.5, 9.9), (26990.1, 0.0), (26950.0, 2.0)),
                             asks=((27001.0, 0.0), (27003.05, 0.5)))]
    book = p.l2.book("BTC-USDT")
    assert book.best_bid() == (27000.5, 9.9)
    assert book.best_ask() == (27002.2, 0.002)
    assert p.l2.last_seq("BTC-USDT") == BIG_SEQ + 7
    assert isinstance(p.l2.last_seq("BTC-USDT"), int)

    # Update 2: same price, new text ("27002.20" now): the checksum must use the latest text.
    u2_asks: Wire = [("27002.20", "0.0030")]
    ref.apply([], u2_asks)
    ev = p.receive(books("update", "BTCUSDT", [], u2_asks, seq=BIG_SEQ + 9, pseq=BIG_SEQ + 7,
                         ts_ms=1_700_000_000_300, checksum=ref.checksum()), T0 + 11)
    assert health(ev) == []
    assert [(u.seq, u.msg_id, u.asks) for u in of(ev, BookUpdate)] == [
        (BIG_SEQ + 9, T0 + 11, ((27002.2, 0.003),))]
    assert book.ask_text is not None
    assert book.ask_text[27002.2] == "27002.20:0.0030"


def test_checksum_with_sides_of_different_depth() -> None:
    p = proto(channels=("l2",))
    ref = RefBook()
    bids: Wire = [("10.5", "1")]
    asks: Wire = [(f"{11 + i}.00", f"{i + 1}") for i in range(40)]
    ref.snapshot(bids, asks)
    ev = p.receive(books("snapshot", "BTCUSDT", bids, asks, seq=1, pseq=0, ts_ms=5,
                         checksum=ref.checksum()), T0 + 1)
    assert health(ev) == [("BTC-USDT", HealthKind.SNAPSHOT)]
    # Remove the only bid: the string is asks only.
    ref.apply([("10.5", "0")], [])
    ev = p.receive(books("update", "BTCUSDT", [("10.5", "0")], [], seq=2, pseq=1, ts_ms=6,
                         checksum=ref.checksum()), T0 + 2)
    assert health(ev) == []
    assert [u.bids for u in of(ev, BookUpdate)] == [((10.5, 0.0),)]


def test_sequence_gap_resyncs_that_symbol_only() -> None:
    p = proto()
    ref_btc, ref_eth = RefBook(), RefBook()
    live_btc(p, ref_btc, seq=100)
    live_eth(p, ref_eth, seq=500)
    assert p.frames_to_send() == []
    u: Wire = [("27000.50", "3")]
    ref_btc.apply(u, [])
    ev = p.receive(books("update", "BTCUSDT", u, [], seq=103, pseq=101, ts_ms=7,
                         checksum=ref_btc.checksum()), T0 + 20)
    assert health(ev) == [("BTC-USDT", HealthKind.GAP)]
    assert "101" in ev[0].detail
    assert of(ev, BookUpdate) == []
    assert sent(p) == [{"op": "unsubscribe", "args": [arg("books", "BTCUSDT")]},
                       {"op": "subscribe", "args": [arg("books", "BTCUSDT")]}]
    # ETH keeps publishing.
    ue: Wire = [("1800.10", "0")]
    ref_eth.apply(ue, [])
    ev = p.receive(books("update", "ETHUSDT", ue, [], seq=501, pseq=500, ts_ms=8,
                         checksum=ref_eth.checksum()), T0 + 21)
    assert [(x.symbol, x.seq, x.bids) for x in of(ev, BookUpdate)] == [
        ("ETH-USDT", 501, ((1800.1, 0.0),))]
    # BTC updates are skipped until the new snapshot, which reports the resync.
    assert p.receive(books("update", "BTCUSDT", u, [], seq=104, pseq=103, ts_ms=9), T0 + 22) == []
    ev = live_btc(p, ref_btc, seq=200)
    assert health(ev) == [("BTC-USDT", HealthKind.RESYNCED)]
    assert "after gap; 1 updates skipped" in ev[0].detail
    # msg_id keeps increasing across the resync, even for a frame received at the same time
    assert [(x.seq, x.is_snapshot, x.msg_id) for x in of(ev, BookUpdate)] == [
        (200, True, T0 + 2)]


def test_checksum_mismatch_resyncs_that_symbol_only() -> None:
    p = proto()
    ref_btc, ref_eth = RefBook(), RefBook()
    live_btc(p, ref_btc, seq=100)
    live_eth(p, ref_eth, seq=500)
    u: Wire = [("27000.50", "3")]
    ref_btc.apply(u, [])
    bad = ref_btc.checksum() ^ 0x55
    ev = p.receive(books("update", "BTCUSDT", u, [], seq=101, pseq=100, ts_ms=7, checksum=bad),
                   T0 + 20)
    assert health(ev) == [("BTC-USDT", HealthKind.CHECKSUM_MISMATCH)]
    assert of(ev, BookUpdate) == []
    assert not p.l2.is_live("BTC-USDT")
    assert sent(p) == [{"op": "unsubscribe", "args": [arg("books", "BTCUSDT")]},
                       {"op": "subscribe", "args": [arg("books", "BTCUSDT")]}]
    # A resync restarts the snapshot deadline for that symbol.
    assert p.l2.state("BTC-USDT").snapshot_due_ns == T0 + 20 + 15 * S
    # ETH keeps publishing with verified checksums.
    ue: Wire = [("1800.30", "5.5")]
    ref_eth.apply([], ue)
    ev = p.receive(books("update", "ETHUSDT", [], ue, seq=501, pseq=500, ts_ms=8,
                         checksum=ref_eth.checksum()), T0 + 21)
    assert [(x.symbol, x.seq, x.asks) for x in of(ev, BookUpdate)] == [
        ("ETH-USDT", 501, ((1800.3, 5.5),))]
    ev = live_btc(p, ref_btc, seq=300)
    assert health(ev) == [("BTC-USDT", HealthKind.RESYNCED)]
    assert "after checksum_mismatch" in ev[0].detail


def test_snapshot_with_bad_checksum_is_rejected() -> None:
    p = proto(channels=("l2",))
    ev = p.receive(books("snapshot", "BTCUSDT", SNAP_BIDS, SNAP_ASKS, seq=1, pseq=0, ts_ms=1,
                         checksum=12345), T0 + 1)
    assert health(ev) == [("BTC-USDT", HealthKind.CHECKSUM_MISMATCH)]
    assert of(ev, BookUpdate) == []
    assert [f["op"] for f in sent(p)] == ["unsubscribe", "subscribe"]


def test_absent_or_zero_checksum_is_not_checked() -> None:
    p = proto(channels=("l2",))
    ev = p.receive(books("snapshot", "BTCUSDT", SNAP_BIDS, SNAP_ASKS, seq=1, pseq=0, ts_ms=1),
                   T0 + 1)
    assert health(ev) == [("BTC-USDT", HealthKind.SNAPSHOT)]
    ev = p.receive(books("update", "BTCUSDT", [("27000.50", "1")], [], seq=2, pseq=1, ts_ms=2,
                         checksum=0), T0 + 2)
    assert health(ev) == []
    assert [(x.seq, x.bids) for x in of(ev, BookUpdate)] == [(2, ((27000.5, 1.0),))]
    assert p.frames_to_send() == []


def test_sizes_go_through_contract_size() -> None:
    inst = {"BTC-USDT": Instrument(symbol="BTC-USDT", native="BTCUSDT", contract_size=0.5)}
    p = proto(channels=("l2", "trades"), instruments=inst)
    ref = RefBook()
    ev = live_btc(p, ref)
    [snap] = of(ev, BookUpdate)
    assert snap.bids[0] == (27000.5, 0.5)  # "1.000" contracts of 0.5
    assert health(ev) == [("BTC-USDT", HealthKind.SNAPSHOT)]  # checksum on wire text still holds
    ev = p.receive(trades("update", "BTCUSDT", [(1_700_000_000_900, "27000.5", "4", "sell", "9")]),
                   T0 + 3)
    assert [(t.size, t.side) for t in of(ev, Trade)] == [(2.0, "sell")]


def test_connection_lost_invalidates_books() -> None:
    p = proto(channels=("l2",))
    ref = RefBook()
    live_btc(p, ref, seq=10)
    assert p.connection_lost(T0 + 5) == []
    assert not p.l2.is_live("BTC-USDT")
    p.connection_made(T0 + 6)
    assert [json.loads(f)["op"] for f in p.frames_to_send()] == ["subscribe"]
    ev = live_btc(p, ref, seq=11)
    assert health(ev) == [("BTC-USDT", HealthKind.RESYNCED)]
    assert "after disconnect" in ev[0].detail


def test_acked_then_silent_symbol_is_retried_with_backoff() -> None:
    p = proto(channels=("l2",))
    p.receive('{"event":"subscribe","arg":' + json.dumps(arg("books", "ETHUSDT")) + "}", T0 + 1)
    ref = RefBook()
    live_btc(p, ref)
    assert p.next_deadline() == T0 + 15 * S
    ev = p.on_deadline(T0 + 15 * S)
    assert health(ev) == [("ETH-USDT", HealthKind.NO_SNAPSHOT)]
    assert sent(p) == [{"op": "unsubscribe", "args": [arg("books", "ETHUSDT")]},
                       {"op": "subscribe", "args": [arg("books", "ETHUSDT")]}]
    assert p.l2.state("ETH-USDT").snapshot_due_ns == T0 + 15 * S + 30 * S
    ev = p.on_deadline(T0 + 30 * S)  # the ping, nothing overdue yet
    assert ev == []
    assert p.frames_to_send() == ["ping"]
    ev = p.on_deadline(T0 + 45 * S)
    assert health(ev) == [("ETH-USDT", HealthKind.NO_SNAPSHOT)]
    assert "within 30 s" in ev[0].detail


# -- books1 and trades ---------------------------------------------------------------------------


def test_books1_top_of_book() -> None:
    p = proto(channels=("tob",))
    f1 = books("snapshot", "BTCUSDT", [("27000.5", "1.25")], [("27000.6", "0.75")], seq=9,
               pseq=8, ts_ms=1_700_000_000_111, channel="books1", checksum=0)
    ev = p.receive(f1, T0 + 1)
    assert health(ev) == [("BTC-USDT", HealthKind.SNAPSHOT)]
    assert of(ev, TopOfBook) == [TopOfBook(
        exchange="bitget", ts_local=T0 + 1, symbol="BTC-USDT",
        ts_exchange=1_700_000_000_111 * MS, bid_px=27000.5, bid_sz=1.25, ask_px=27000.6,
        ask_sz=0.75, seq=9)]
    assert of(ev, BookUpdate) == []
    # Same values again: nothing published.
    f2 = books("snapshot", "BTCUSDT", [("27000.5", "1.25")], [("27000.6", "0.75")], seq=10,
               pseq=9, ts_ms=1_700_000_000_112, channel="books1")
    assert p.receive(f2, T0 + 2) == []
    f3 = books("snapshot", "BTCUSDT", [("27000.5", "1.25")], [("27000.7", "3")], seq=11,
               pseq=10, ts_ms=1_700_000_000_113, channel="books1")
    assert [(t.ask_px, t.ask_sz, t.seq) for t in of(p.receive(f3, T0 + 3), TopOfBook)] == [
        (27000.7, 3.0, 11)]
    assert p.tob.state("BTC-USDT").snapshot_due_ns is None


def test_trade_snapshot_then_updates() -> None:
    p = proto(channels=("trades",))
    snap = trades("snapshot", "BTCUSDT", [
        (1_700_000_000_300, "27000.1", "0.010", "sell", "1003"),
        (1_700_000_000_200, "27000.2", "0.5", "buy", "1002"),
        (1_700_000_000_100, "27000.3", "1", "sell", "1001")])
    ev = p.receive(snap, T0 + 1)
    assert ev == [
        Trade(exchange="bitget", ts_local=T0 + 1, symbol="BTC-USDT",
              ts_exchange=1_700_000_000_100 * MS, price=27000.3, size=1.0, side="sell",
              trade_id="1001"),
        Trade(exchange="bitget", ts_local=T0 + 1, symbol="BTC-USDT",
              ts_exchange=1_700_000_000_200 * MS, price=27000.2, size=0.5, side="buy",
              trade_id="1002"),
        Trade(exchange="bitget", ts_local=T0 + 1, symbol="BTC-USDT",
              ts_exchange=1_700_000_000_300 * MS, price=27000.1, size=0.01, side="sell",
              trade_id="1003")]
    ev = p.receive(trades("update", "BTCUSDT",
                          [(1_700_000_000_400, "27001", "2.5", "buy", "1004")]), T0 + 2)
    assert ev == [Trade(exchange="bitget", ts_local=T0 + 2, symbol="BTC-USDT",
                        ts_exchange=1_700_000_000_400 * MS, price=27001.0, size=2.5, side="buy",
                        trade_id="1004")]
    # After a reconnect the new snapshot repeats known trades: only the new one is published.
    p.connection_lost(T0 + 3)
    p.connection_made(T0 + 4)
    ev = p.receive(trades("snapshot", "BTCUSDT", [
        (1_700_000_000_500, "27002", "0.1", "sell", "1005"),
        (1_700_000_000_400, "27001", "2.5", "buy", "1004"),
        (1_700_000_000_300, "27000.1", "0.010", "sell", "1003")]), T0 + 5)
    assert [(t.trade_id, t.price, t.side) for t in of(ev, Trade)] == [("1005", 27002.0, "sell")]


def test_numeric_timestamps_are_accepted() -> None:
    p = proto(channels=("trades",))
    frame = json.dumps({"action": "update", "arg": arg("trade", "BTCUSDT"), "data": [
        {"ts": 1_700_000_000_123, "price": "1.5", "size": "2", "side": "BUY", "tradeId": "5"}],
        "ts": "1700000000124"})
    assert p.receive(frame, T0) == [Trade(
        exchange="bitget", ts_local=T0, symbol="BTC-USDT", ts_exchange=1_700_000_000_123 * MS,
        price=1.5, size=2.0, side="buy", trade_id="5")]


# -- malformed frames ----------------------------------------------------------------------------


BOOKS_ARG = json.dumps(arg("books", "BTCUSDT"))
TRADE_ARG = json.dumps(arg("trade", "BTCUSDT"))
TS = '"1700000000000"'


@pytest.mark.parametrize("frame", [
    "{not json",
    "[1,2,3]",
    '{"hello":"world"}',
    '{"action":"update","arg":' + BOOKS_ARG + "}",
    '{"action":"weird","arg":' + BOOKS_ARG
    + ',"data":[{"asks":[],"bids":[],"ts":' + TS + ',"seq":1,"pseq":0}]}',
    '{"action":"update","arg":' + TRADE_ARG
    + ',"data":[{"ts":' + TS + ',"price":"1","size":"1","side":"up","tradeId":"7"}]}',
    '{"action":"update","arg":' + TRADE_ARG
    + ',"data":[{"ts":' + TS + ',"price":"1","side":"buy","tradeId":"7"}]}',
    '{"action":"update","arg":' + TRADE_ARG
    + ',"data":[{"ts":' + TS + ',"price":"nan","size":"1","side":"buy","tradeId":"7"}]}',
    '{"action":"update","arg":' + TRADE_ARG
    + ',"data":[{"ts":' + TS + ',"price":"1","size":"-2","side":"buy","tradeId":"7"}]}',
    '{"action":"update","arg":' + TRADE_ARG
    + ',"data":[{"ts":"1000000000000000","price":"1","size":"2","side":"buy","tradeId":"7"}]}',
    b"\xff\xfe",
])
def test_malformed_frames_are_decode_errors(frame: str | bytes) -> None:
    p = proto()
    ev = p.receive(frame, T0 + 1)
    assert health(ev) == [(None, HealthKind.DECODE_ERROR)]
    assert sum(p.decode_errors.values()) == 1


@pytest.mark.parametrize("entry", [
    "",  # empty data
    '{"asks":[["1"]],"bids":[],"ts":' + TS + ',"seq":1,"pseq":0}',
    '{"asks":[["x","1"]],"bids":[],"ts":' + TS + ',"seq":1,"pseq":0}',
    '{"asks":[["","1"]],"bids":[],"ts":' + TS + ',"seq":1,"pseq":0}',
    '{"asks":[["nan","1"]],"bids":[],"ts":' + TS + ',"seq":1,"pseq":0}',
    '{"asks":[["1","inf"]],"bids":[],"ts":' + TS + ',"seq":1,"pseq":0}',
    '{"asks":[["1","-3"]],"bids":[],"ts":' + TS + ',"seq":1,"pseq":0}',
    '{"asks":[],"bids":[],"ts":"soon","seq":1,"pseq":0}',
    '{"asks":[],"bids":[],"ts":"1","seq":1,"pseq":0}',
    '{"asks":[],"bids":[],"ts":' + TS + ',"seq":"1","pseq":0}',
    '{"asks":[],"bids":[],"ts":' + TS + ',"seq":100000000000000000000,"pseq":0}',
])
def test_a_malformed_book_frame_resyncs_that_book(entry: str) -> None:
    """Wrong shapes and values no row may hold (NaN, inf, negative size, empty price, a time
    outside 2000..2100, a sequence beyond Int64): the frame is a decode_error and, as an update
    may be missing, the book is resynced."""
    p = proto(channels=("l2",))
    live_btc(p, RefBook(), seq=10)
    ev = p.receive('{"action":"update","arg":' + BOOKS_ARG + ',"data":[' + entry + "]}", T0 + 1)
    assert health(ev) == [(None, HealthKind.DECODE_ERROR), ("BTC-USDT", HealthKind.GAP)]
    assert not p.l2.is_live("BTC-USDT")
    assert sent(p) == [{"op": "unsubscribe", "args": [arg("books", "BTCUSDT")]},
                       {"op": "subscribe", "args": [arg("books", "BTCUSDT")]}]


def test_a_malformed_entry_drops_the_whole_frame() -> None:
    p = proto(channels=("l2",))
    ref = RefBook()
    live_btc(p, ref, seq=10)
    u: Wire = [("27000.50", "3")]
    ref.apply(u, [])
    good = {"asks": [], "bids": [list(x) for x in u], "ts": "1700000000005", "seq": 11, "pseq": 10,
            "checksum": ref.checksum()}
    bad = {"asks": [], "bids": [["27000.50", "4"]], "ts": "later", "seq": 12, "pseq": 11}
    frame = json.dumps({"action": "update", "arg": arg("books", "BTCUSDT"), "data": [good, bad]})
    ev = p.receive(frame, T0 + 5)
    assert health(ev) == [(None, HealthKind.DECODE_ERROR), ("BTC-USDT", HealthKind.GAP)]
    assert of(ev, BookUpdate) == []  # not even the valid entry: the frame is one unit


def test_unexpected_push_is_venue_error() -> None:
    p = proto(symbols=("BTC-USDT",), channels=("l2",))
    frame = books("snapshot", "XRPUSDT", [("1", "1")], [("2", "1")], seq=1, pseq=0, ts_ms=1)
    assert health(p.receive(frame, T0 + 1)) == [(None, HealthKind.VENUE_ERROR)]


# -- instruments ---------------------------------------------------------------------------------


def test_instruments() -> None:
    assert BitgetProtocol.instruments_path() == (
        "/api/v2/mix/market/contracts?productType=USDT-FUTURES")
    body = json.dumps({"code": "00000", "msg": "success", "requestTime": 1, "data": [
        {"symbol": "BTCUSDT", "baseCoin": "BTC", "quoteCoin": "USDT", "pricePlace": "1",
         "priceEndStep": "1", "volumePlace": "4", "sizeMultiplier": "0.0001",
         "symbolType": "perpetual", "symbolStatus": "normal", "minTradeNum": "0.0001"},
        {"symbol": "DOGEUSDT", "baseCoin": "DOGE", "quoteCoin": "USDT", "pricePlace": "5",
         "priceEndStep": "5", "volumePlace": "0", "sizeMultiplier": "1",
         "symbolType": "perpetual", "symbolStatus": "maintain"},
        {"symbol": "BTCUSDT0628", "baseCoin": "BTC", "quoteCoin": "USDT", "pricePlace": "1",
         "priceEndStep": "1", "sizeMultiplier": "0.001", "symbolType": "delivery",
         "symbolStatus": "normal"}]}).encode()
    got = BitgetProtocol.parse_instruments(body)
    assert got == {
        "BTC-USDT": Instrument(symbol="BTC-USDT", native="BTCUSDT", contract_size=1.0,
                               tick_size=0.1, lot_size=0.0001, status="trading"),
        "DOGE-USDT": Instrument(symbol="DOGE-USDT", native="DOGEUSDT", contract_size=1.0,
                                tick_size=0.00005, lot_size=1.0, status="maintain")}
    with pytest.raises(ValueError, match="40034"):
        BitgetProtocol.parse_instruments(b'{"code":"40034","msg":"Parameter does not exist"}')


# -- the real capture (Bitget v1 envelope, same book and checksum rule) ----------------------


@pytest.mark.skipif(CAPTURE is None, reason=NO_CAPTURE)
def test_capture_books_checksums_verify() -> None:
    """Every v1 ``books`` frame's checksum verifies on a book kept by the plugin's code: once
    directly (OrderBook + book_checksum) and once through the protocol (frames re-wrapped in the
    v2 envelope; v1 has no seq/pseq, so only the checksum guards the book)."""
    direct: dict[tuple[str, str], OrderBook] = {}
    v2_frames: list[tuple[str, int]] = []
    symbols: set[str] = set()
    verified = frames = 0
    for rec in read_records(CAPTURE):
        if rec.kind != "recv" or not isinstance(rec.frame, str) or not rec.frame.startswith("{"):
            continue
        msg = json.loads(rec.frame)
        a = msg.get("arg") or {}
        if a.get("channel") != "books" or "data" not in msg:
            continue
        frames += 1
        d = msg["data"][0]
        bt = [(p, s) for p, s in d["bids"]]
        at = [(p, s) for p, s in d["asks"]]
        key = (rec.conn, a["instId"])
        if msg["action"] == "snapshot":
            book = direct[key] = OrderBook(keep_text=True)
            book.replace(levels(bt), levels(at), bt, at)
        else:
            book = direct[key]
            book.apply(levels(bt), levels(at), bt, at)
        verified += book_checksum(book) == d["checksum"]
        symbols.add(BitgetProtocol.to_canonical(a["instId"]))
        entry = {"asks": d["asks"], "bids": d["bids"], "ts": d["ts"], "checksum": d["checksum"]}
        v2_frames.append((json.dumps({"action": msg["action"], "arg": arg("books", a["instId"]),
                                      "data": [entry], "ts": int(d["ts"])}), rec.ts_ns))
    assert frames == 637
    assert verified == 637
    assert len(direct) == 10

    p = proto(symbols=tuple(sorted(symbols)), channels=("l2",))
    events: list[Event] = []
    for text, ts in v2_frames:
        events += p.receive(text, ts)
    assert [e for e in events if isinstance(e, Health) and e.event != HealthKind.SNAPSHOT] == []
    assert len(health(events)) == 10
    updates = of(events, BookUpdate)
    assert len(updates) == 637
    assert sum(u.is_snapshot for u in updates) == 10
    assert p.frames_to_send() == []
    assert p.decode_errors == {}
