"""The Redis Streams wire format: names, a round trip of every event type, undecodable entries."""

from __future__ import annotations

import math

import msgspec
import pytest

from core.schema import BookUpdate, Health, TopOfBook, Trade
from core.streams.codec import FIELD, Decoder, Encoder, Undecodable, parse_stream, stream_name

T = 1_786_310_818_000_000_123
EVENTS = [
    TopOfBook(exchange="bybit", ts_local=T, symbol="BTC-USDT", ts_exchange=T - 5, bid_px=1.5,
              bid_sz=2.0, ask_px=None, ask_sz=None, seq=7),
    BookUpdate(exchange="htx", ts_local=T, symbol="BTC-USDT", ts_exchange=None, seq=None,
               msg_id=T, is_snapshot=True, bids=((100.0, 1.0), (99.5, 0.25)), asks=()),
    Trade(exchange="bybit", ts_local=T, symbol="ETH-USDT", ts_exchange=T, price=3.5, size=0.1,
          side="sell", trade_id="abc"),
    Health(exchange="bybit", ts_local=T, symbol=None, event="gap", detail="x"),
]
TABLES = ["tob", "l2", "trades", "health"]


def test_stream_names() -> None:
    assert stream_name("tob", "bybit") == "bookwire:tob:bybit"
    assert parse_stream(b"bookwire:trades:coinbase-exchange") == ("trades", "coinbase-exchange")
    assert parse_stream("other:tob:bybit") is None and parse_stream("bookwire:tob") is None


def test_every_event_type_round_trips_and_is_a_plain_msgpack_map() -> None:
    enc, dec = Encoder(), Decoder()
    for table, event in zip(TABLES, EVENTS, strict=True):
        payload = enc.encode(event)
        assert dec.decode(table, {FIELD: payload}) == event
        plain = msgspec.msgpack.decode(payload)  # what any MessagePack library sees
        assert plain["kind"] == event.__struct_config__.tag
        assert plain["ts_local"] == T and plain["exchange"] == event.exchange
    assert msgspec.msgpack.decode(enc.encode(EVENTS[1]))["bids"] == [[100.0, 1.0], [99.5, 0.25]]


@pytest.mark.parametrize(("fields", "kind"), [
    ({}, "no field e"),
    ({FIELD: b"\xc1"}, "not msgpack"),
    ({FIELD: msgspec.msgpack.encode({"kind": "tob", "exchange": "x"})}, "invalid"),
    ({FIELD: msgspec.msgpack.encode({"kind": "nope"})}, "invalid"),
    ({FIELD: Encoder().encode(EVENTS[2])}, "wrong stream"),
    ({FIELD: Encoder().encode(TopOfBook(exchange="x", ts_local=T, symbol="A-B", ts_exchange=None,
                                        bid_px=math.nan, bid_sz=1.0, ask_px=None, ask_sz=None))},
     "bad value"),
    ({FIELD: Encoder().encode(TopOfBook(exchange="x", ts_local=T, symbol="A-B", ts_exchange=None,
                                        bid_px=1.0, bid_sz=-1.0, ask_px=None, ask_sz=None))},
     "bad value"),
])
def test_undecodable_entries_name_their_problem(fields: dict[bytes, bytes], kind: str) -> None:
    with pytest.raises(Undecodable) as info:
        Decoder().decode("tob", fields)
    assert info.value.kind == kind
