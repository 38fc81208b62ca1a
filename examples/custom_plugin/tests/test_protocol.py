"""The Kraken protocol on frames written in Kraken's websocket v2 format (the shapes of its
documentation: ``book``, ``ticker``, ``trade``, ``heartbeat``, ``status``, subscription replies),
plain synchronous tests: no network, no clock."""

from __future__ import annotations

import json
import zlib

import pytest
from bookwire_kraken.checksum import level_text
from bookwire_kraken.protocol import KrakenProtocol

from core.codec import S_NS
from core.protocol import ProtocolConfig
from core.schema import BookUpdate, Event, Health, HealthKind, TopOfBook, Trade
from core.subscriptions import SUBSCRIBE_RETRY
from core.testing.conformance import check_protocol

T0 = 1_786_310_818 * S_NS
CONFIG = ProtocolConfig(symbols=("BTC-USD", "ETH-USD"), channels=("tob", "l2", "trades"))

# Two levels a side, quantities with the trailing zeros Kraken writes. The checksum strings are
# written out by hand from the documented rule (asks low to high, then bids high to low; price
# then quantity, "." and leading zeros removed): on the wire text, and on the same numbers
# formatted as Python floats, as a client that decodes numbers to floats would hash them.
WIRE = "6500021000000065000512500000065000150000000649990200000000"
FLOATS = "6500021650005125650001564999020"
SNAPSHOT_BIDS = '[{"price":65000.1,"qty":0.50000000},{"price":64999.0,"qty":2.00000000}]'
SNAPSHOT_ASKS = '[{"price":65000.2,"qty":0.10000000},{"price":65000.5,"qty":1.25000000}]'


def book(kind: str, bids: str, asks: str, checksum: int, symbol: str = "BTC/USD",
         ts: str = "2026-08-09T21:26:58.123456Z") -> str:
    return (f'{{"channel":"book","type":"{kind}","data":[{{"symbol":"{symbol}","bids":{bids},'
            f'"asks":{asks},"checksum":{checksum},"timestamp":"{ts}"}}]}}')


def crc(text: str) -> int:
    return zlib.crc32(text.encode())


def connected(config: ProtocolConfig = CONFIG) -> KrakenProtocol:
    proto = KrakenProtocol(config)
    proto.connection_made(T0)
    proto.frames_to_send()
    return proto


def health(events: list[Event]) -> list[tuple[str | None, str]]:
    return [(e.symbol, e.event) for e in events if isinstance(e, Health)]


def test_conformance() -> None:
    check_protocol(KrakenProtocol, CONFIG)


def test_the_documented_level_text() -> None:
    assert level_text("45285.2", "0.00100000") == "452852100000"  # Kraken's own example


def test_one_subscription_per_channel_for_every_symbol() -> None:
    proto = KrakenProtocol(CONFIG)
    proto.connection_made(T0)
    frames = [json.loads(f) for f in proto.frames_to_send()]
    assert [f["params"] for f in frames] == [
        {"channel": "ticker", "symbol": ["BTC/USD", "ETH/USD"], "event_trigger": "bbo",
         "snapshot": True},
        {"channel": "book", "symbol": ["BTC/USD", "ETH/USD"], "depth": 10, "snapshot": True},
        {"channel": "trade", "symbol": ["BTC/USD", "ETH/USD"], "snapshot": False}]
    assert [f["method"] for f in frames] == ["subscribe"] * 3
    assert len({f["req_id"] for f in frames}) == 3


def test_checksum_matches_on_wire_text_and_fails_on_float_text() -> None:
    proto = connected()
    events = proto.receive(book("snapshot", SNAPSHOT_BIDS, SNAPSHOT_ASKS, crc(WIRE)), T0 + 1)
    assert health(events) == [("BTC-USD", HealthKind.SNAPSHOT)]
    [snap] = [e for e in events if isinstance(e, BookUpdate)]
    assert (snap.bids, snap.asks) == (((65000.1, 0.5), (64999.0, 2.0)),
                                      ((65000.2, 0.1), (65000.5, 1.25)))
    assert snap.ts_exchange == T0 + 123_456_000 and snap.is_snapshot

    other = connected()
    events = other.receive(book("snapshot", SNAPSHOT_BIDS, SNAPSHOT_ASKS, crc(FLOATS)), T0 + 1)
    assert health(events) == [("BTC-USD", HealthKind.CHECKSUM_MISMATCH)]
    assert not [e for e in events if isinstance(e, BookUpdate)]
    assert not other.l2.is_live("BTC-USD")


def test_an_update_is_verified_and_the_book_cut_to_its_depth() -> None:
    proto = connected(ProtocolConfig(symbols=("BTC-USD",), channels=("l2",),
                                     options={"depth": "10"}))
    bids = [(f"{65000 - i}.0", f"{i + 1}.00000000") for i in range(10)]
    asks = [(f"{65001 + i}.0", f"0.{i + 1}0000000") for i in range(10)]

    def levels(side: list[tuple[str, str]]) -> str:
        return "[" + ",".join(f'{{"price":{p},"qty":{q}}}' for p, q in side) + "]"

    def checksum(b: list[tuple[str, str]], a: list[tuple[str, str]]) -> int:
        return crc("".join(level_text(p, q) for p, q in a) + "".join(level_text(p, q)
                                                                       for p, q in b))

    proto.receive(book("snapshot", levels(bids), levels(asks), checksum(bids, asks)), T0)
    # a new best bid: the venue's book is cut to 10 levels, the worst bid leaves it unsent
    new_bids = [("65000.5", "0.25000000"), *bids[:9]]
    update = book("update", '[{"price":65000.5,"qty":0.25000000}]', "[]",
                  checksum(new_bids, asks))
    events = proto.receive(update, T0 + S_NS)
    assert health(events) == []
    [row] = [e for e in events if isinstance(e, BookUpdate)]
    assert row.bids == ((65000.5, 0.25), (64991.0, 0.0))  # the cut written as a removal
    assert not row.is_snapshot and row.ts_exchange == T0 + 123_456_000
    assert proto.l2.book("BTC-USD").top_bids(11) == [(float(p), float(q)) for p, q in new_bids]
    # removing a level: the venue sends it with qty 0 and the level that enters the window
    after = [*new_bids[:1], *new_bids[2:], ("64991.0", "9.00000000")]
    update = book("update", '[{"price":65000.0,"qty":0},{"price":64991.0,"qty":9.00000000}]',
                  "[]", checksum(after, asks))
    events = proto.receive(update, T0 + 2 * S_NS)
    assert health(events) == []
    assert proto.l2.book("BTC-USD").top_bids(11) == [(float(p), float(q)) for p, q in after]


def test_a_mismatch_resyncs_that_symbol_alone() -> None:
    proto = connected()
    proto.receive(book("snapshot", SNAPSHOT_BIDS, SNAPSHOT_ASKS, crc(WIRE)), T0)
    eth = proto.receive(book("snapshot", '[{"price":3000.1,"qty":4.00000000}]',
                             '[{"price":3000.2,"qty":1.00000000}]',
                             crc("3000210000000030001400000000"), symbol="ETH/USD"), T0)
    assert health(eth) == [("ETH-USD", HealthKind.SNAPSHOT)]
    # the update removes the best ask, but its checksum is of a book where it still is
    bad = book("update", "[]", '[{"price":65000.2,"qty":0}]', crc(WIRE))
    events = proto.receive(bad, T0 + S_NS)
    assert health(events) == [("BTC-USD", HealthKind.CHECKSUM_MISMATCH)]
    frames = [json.loads(f) for f in proto.frames_to_send()]
    assert [(f["method"], f["params"]["channel"], f["params"]["symbol"]) for f in frames] == [
        ("unsubscribe", "book", ["BTC/USD"]), ("subscribe", "book", ["BTC/USD"])]
    assert proto.l2.is_live("ETH-USD")
    # updates before the new snapshot are skipped; the snapshot makes the book valid again
    assert proto.receive(book("update", "[]", '[{"price":65000.9,"qty":1}]', 0), T0 + 2) == []
    events = proto.receive(book("snapshot", SNAPSHOT_BIDS, SNAPSHOT_ASKS, crc(WIRE)),
                           T0 + 2 * S_NS)
    assert health(events) == [("BTC-USD", HealthKind.RESYNCED)]


@pytest.mark.parametrize("level", [
    '{"price":"65000.1","qty":0.5}',  # a string, not a number
    '{"price":65000.1,"qty":-0.5}',  # a negative quantity
    '{"price":65000.1,"qty":5e-1}',  # not the venue's decimal text
    '{"price":65000.1}',  # no quantity
])
def test_a_malformed_book_frame_is_a_decode_error_and_a_resync(level: str) -> None:
    proto = connected()
    proto.receive(book("snapshot", SNAPSHOT_BIDS, SNAPSHOT_ASKS, crc(WIRE)), T0)
    events = proto.receive(book("update", f"[{level}]", "[]", 1), T0 + 1)
    assert health(events) == [(None, HealthKind.DECODE_ERROR), ("BTC-USD", HealthKind.GAP)]
    assert not proto.l2.is_live("BTC-USD")
    assert [json.loads(f)["method"] for f in proto.frames_to_send()] == ["unsubscribe",
                                                                         "subscribe"]


def test_ticker_is_the_top_of_book() -> None:
    proto = connected()
    tick = ('{"channel":"ticker","type":"update","data":[{"symbol":"BTC/USD","bid":65000.1,'
            '"bid_qty":0.50000000,"ask":65000.2,"ask_qty":0.10000000,"last":65000.2,'
            '"volume":1234.56789012,"vwap":64876.3,"low":64000.0,"high":65500.0,'
            '"change":120.5,"change_pct":0.19}]}')
    [snap, tob] = proto.receive(tick, T0)
    assert isinstance(snap, Health) and snap.event == HealthKind.SNAPSHOT
    assert isinstance(tob, TopOfBook)
    assert (tob.symbol, tob.bid_px, tob.bid_sz, tob.ask_px, tob.ask_sz) == (
        "BTC-USD", 65000.1, 0.5, 65000.2, 0.1)
    assert proto.receive(tick, T0 + 1) == []  # unchanged: no row


def test_trades_after_the_subscription() -> None:
    proto = connected()
    trade = ('{"channel":"trade","type":"update","data":[{"symbol":"ETH/USD","side":"sell",'
             '"price":3000.25,"qty":1.50000000,"ord_type":"market","trade_id":4665906,'
             '"timestamp":"2026-08-09T21:26:59.000001Z"}]}')
    [t] = proto.receive(trade, T0)
    assert isinstance(t, Trade)
    assert (t.symbol, t.side, t.price, t.size, t.trade_id, t.ts_exchange) == (
        "ETH-USD", "sell", 3000.25, 1.5, "4665906", T0 + S_NS + 1_000)
    snapshot = trade.replace('"type":"update"', '"type":"snapshot"')
    assert proto.receive(snapshot, T0) == []  # trades from before the subscription: skipped


def test_replies_acks_refusals_and_retries() -> None:
    proto = connected()
    ack = ('{"method":"subscribe","result":{"channel":"book","depth":10,"snapshot":true,'
           '"symbol":"BTC/USD"},"success":true,"time_in":"2026-08-09T21:26:58.100000Z",'
           '"time_out":"2026-08-09T21:26:58.100100Z","req_id":2}')
    assert health(proto.receive(ack, T0)) == [("BTC-USD", HealthKind.SUBSCRIBED)]
    refused = ('{"error":"Currency pair not supported ETH/USD","method":"subscribe",'
               '"success":false,"symbol":"ETH/USD","time_in":"2026-08-09T21:26:58.100000Z",'
               '"time_out":"2026-08-09T21:26:58.100100Z","req_id":2}')
    assert health(proto.receive(refused, T0)) == [("ETH-USD", HealthKind.SUBSCRIBE_ERROR)]
    busy = refused.replace("Currency pair not supported ETH/USD", "Exceeded msg rate").replace(
        "ETH/USD", "BTC/USD").replace('"req_id":2', '"req_id":1')
    assert health(proto.receive(busy, T0)) == [("BTC-USD", SUBSCRIBE_RETRY)]
    assert proto.next_deadline() == T0 + S_NS  # the retry, one second later
    proto.on_deadline(T0 + S_NS)
    [again] = [json.loads(f) for f in proto.frames_to_send()]
    assert again["params"] == {"channel": "ticker", "symbol": ["BTC/USD"],
                               "event_trigger": "bbo", "snapshot": True}
    # a new connection does not ask for the pair the venue refused for good
    proto.connection_lost(T0 + 2 * S_NS)
    proto.connection_made(T0 + 3 * S_NS)
    books = [json.loads(f)["params"] for f in proto.frames_to_send()][1]
    assert books["symbol"] == ["BTC/USD"]


def test_heartbeats_pongs_and_the_venue_status() -> None:
    proto = connected()
    assert proto.receive('{"channel":"heartbeat"}', T0) == []
    assert proto.receive('{"method":"pong","req_id":9,"time_in":"2026-08-09T21:26:58.1Z",'
                         '"time_out":"2026-08-09T21:26:58.1Z"}', T0) == []
    online = ('{"channel":"status","type":"update","data":[{"api_version":"v2",'
              '"connection_id":123,"system":"online","version":"2.0.10"}]}')
    assert proto.receive(online, T0) == []
    events = proto.receive(online.replace("online", "maintenance"), T0)
    assert health(events) == [(None, HealthKind.VENUE_ERROR)]
    assert json.loads(proto.ping_frame(T0))["method"] == "ping"


def test_the_depth_option_is_checked() -> None:
    with pytest.raises(ValueError, match="depth must be one of 10, 25, 100, 500, 1000"):
        KrakenProtocol(ProtocolConfig(symbols=("BTC-USD",), channels=("l2",),
                                      options={"depth": "7"}))
