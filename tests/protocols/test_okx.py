"""OKX v5 protocol, synchronously, on frames written in the venue's wire format (the shapes of
the documentation's examples: ``books`` levels ``[price, size, "0", orders]`` as strings,
``seqId``/``prevSeqId`` integers, ``checksum`` a signed 32-bit integer).

The checksum is computed here from the documented rule, independently of the plugin: it must
match on the venue's wire text and fail when the prices are formatted as floats."""

from __future__ import annotations

import json
import zlib

import pytest

from core.codec import MS_NS, S_NS
from core.protocol import Instrument, ProtocolConfig
from core.schema import BookUpdate, Event, Health, TopOfBook, Trade
from core.testing.conformance import check_protocol
from plugins.okx.protocol import MAX_TRANSIENT_REFUSALS, OkxProtocol

T_MS = 1_786_310_818_000
T0 = T_MS * MS_NS
Wire = list[list[str]]

INSTRUMENTS = {
    "BTC-USDT": Instrument(symbol="BTC-USDT", native="BTC-USDT-SWAP", contract_size=0.01,
                           tick_size=0.1, lot_size=0.0001),
    "ETH-USDT": Instrument(symbol="ETH-USDT", native="ETH-USDT-SWAP", contract_size=0.1,
                           tick_size=0.01, lot_size=0.01),
}


def venue_checksum(bids: Wire, asks: Wire) -> int:
    """The documented rule: top 25 of each side interleaved, ``price:size`` text, CRC32 signed."""
    fields: list[str] = []
    for i in range(25):
        for side in (bids, asks):
            if i < len(side):
                fields += side[i][:2]
    crc = zlib.crc32(":".join(fields).encode())
    return crc - (1 << 32) if crc & (1 << 31) else crc


def books(action: str, inst: str, bids: Wire, asks: Wire, seq: int, prev: int,
          checksum: int | None, ms: int = 0) -> str:
    entry: dict = {"asks": asks, "bids": bids, "ts": str(T_MS + ms)}
    if checksum is not None:
        entry["checksum"] = checksum
    entry.update({"prevSeqId": prev, "seqId": seq})
    return json.dumps({"arg": {"channel": "books", "instId": inst}, "action": action,
                       "data": [entry]})


def level(px: str, sz: str, orders: str = "1") -> list[str]:
    return [px, sz, "0", orders]


def proto(*symbols: str, channels: tuple[str, ...] = ("tob", "l2", "trades"),
          **options: str) -> OkxProtocol:
    symbols = symbols or ("BTC-USDT",)
    p = OkxProtocol(ProtocolConfig(symbols=symbols, channels=channels,
                                   instruments={s: INSTRUMENTS[s] for s in symbols},
                                   options=options))
    p.connection_made(T0)
    p.frames_to_send()
    return p


def l2(events: list[Event]) -> list[tuple]:
    return [(e.is_snapshot, e.seq, e.bids, e.asks) for e in events if isinstance(e, BookUpdate)]


def health(events: list[Event]) -> list[tuple]:
    return [(e.event, e.symbol) for e in events if isinstance(e, Health)]


# a book whose wire text is not what float formatting gives back ("3366" is 3366.0,
# "8476.980" is 8476.98, sizes "415" contracts)
BIDS: Wire = [level("3366.1", "7", "3"), level("3366", "6", "4"), level("3365.50", "415")]
ASKS: Wire = [level("3366.8", "9", "3"), level("3368", "8", "4"), level("8476.980", "1")]


def snapshot(p: OkxProtocol, seq: int = 100) -> list[Event]:
    return p.receive(books("snapshot", "BTC-USDT-SWAP", BIDS, ASKS, seq, -1,
                           venue_checksum(BIDS, ASKS)), T0 + 1)


def test_conformance() -> None:
    check_protocol(OkxProtocol, ProtocolConfig(symbols=("BTC-USDT", "ETH-USDT"),
                                               channels=("tob", "l2", "trades")))


def test_subscribe_names_the_swaps() -> None:
    p = OkxProtocol(ProtocolConfig(symbols=("BTC-USDT", "ETH-USDT"), channels=("tob", "l2"),
                                   instruments=INSTRUMENTS))
    p.connection_made(T0)
    [frame] = p.frames_to_send()
    assert json.loads(frame) == {"id": "sub1", "op": "subscribe", "args": [
        {"channel": "bbo-tbt", "instId": "BTC-USDT-SWAP"},
        {"channel": "books", "instId": "BTC-USDT-SWAP"},
        {"channel": "bbo-tbt", "instId": "ETH-USDT-SWAP"},
        {"channel": "books", "instId": "ETH-USDT-SWAP"}]}
    many = OkxProtocol(ProtocolConfig(symbols=tuple(f"C{i}-USDT" for i in range(100)),
                                      channels=("l2",)))
    many.connection_made(T0)
    frames = many.frames_to_send()
    assert len(frames) > 1 and all(len(f.encode()) <= 4096 for f in frames)
    assert sum(len(json.loads(f)["args"]) for f in frames) == 100
    assert len({json.loads(f)["id"] for f in frames}) == len(frames)  # an id per request


def test_snapshot_and_update_checksum_on_wire_text_sizes_in_base_units() -> None:
    p = proto(channels=("l2",))
    events = snapshot(p)
    assert health(events) == [("snapshot", "BTC-USDT")]
    [(is_snap, seq, bids, asks)] = l2(events)
    assert (is_snap, seq) == (True, 100)
    assert bids == ((3366.1, 0.07), (3366.0, 0.06), (3365.5, 4.15))  # 415 contracts of 0.01
    assert asks == ((3366.8, 0.09), (3368.0, 0.08), (8476.98, 0.01))
    # an update: its checksum is over the book after it, still in wire text
    new_bids = [BIDS[0], level("3366", "0", "0"), BIDS[2]]
    upd = books("update", "BTC-USDT-SWAP", [level("3366", "0", "0")], [], 105, 100,
                venue_checksum([b for b in new_bids if b[1] != "0"], ASKS), ms=100)
    events = p.receive(upd, T0 + 2)
    assert health(events) == [] and l2(events) == [(False, 105, ((3366.0, 0.0),), ())]
    assert events[0].ts_exchange == (T_MS + 100) * MS_NS


def test_a_checksum_of_float_formatted_prices_is_a_mismatch_and_resyncs_that_book() -> None:
    p = proto("BTC-USDT", "ETH-USDT", channels=("l2",))
    snapshot(p)
    p.receive(books("snapshot", "ETH-USDT-SWAP", BIDS, ASKS, 7, -1, venue_checksum(BIDS, ASKS)),
              T0 + 1)
    as_floats = [[str(float(px)), sz] for px, sz, *_ in BIDS]
    floats_asks = [[str(float(px)), sz] for px, sz, *_ in ASKS]
    wrong = venue_checksum(as_floats, floats_asks)
    assert wrong != venue_checksum(BIDS, ASKS)
    events = p.receive(books("update", "BTC-USDT-SWAP", [], [], 101, 100, wrong), T0 + 2)
    assert health(events) == [("checksum_mismatch", "BTC-USDT")]
    assert [json.loads(f) for f in p.frames_to_send()] == [
        {"id": "unsub2", "op": "unsubscribe",
         "args": [{"channel": "books", "instId": "BTC-USDT-SWAP"}]},
        {"id": "sub3", "op": "subscribe",
         "args": [{"channel": "books", "instId": "BTC-USDT-SWAP"}]}]
    assert p.l2.is_live("ETH-USDT") and not p.l2.is_live("BTC-USDT")
    events = snapshot(p, seq=200)  # the new subscription's snapshot
    assert health(events)[0] == ("resynced", "BTC-USDT")


def test_a_snapshot_whose_checksum_fails_is_not_published() -> None:
    p = proto(channels=("l2",))
    events = p.receive(books("snapshot", "BTC-USDT-SWAP", BIDS, ASKS, 100, -1, 12345), T0 + 1)
    assert health(events) == [("checksum_mismatch", "BTC-USDT")] and l2(events) == []


def test_zero_checksum_is_not_checked_and_checksums_can_be_turned_off() -> None:
    p = proto(channels=("l2",))
    p.receive(books("snapshot", "BTC-USDT-SWAP", BIDS, ASKS, 100, -1, 0), T0 + 1)
    events = p.receive(books("update", "BTC-USDT-SWAP", [level("3366.1", "8")], [], 101, 100,
                             0), T0 + 2)
    assert health(events) == [] and p.unchecked == 2
    off = proto(channels=("l2",), checksum="off")
    off.receive(books("snapshot", "BTC-USDT-SWAP", BIDS, ASKS, 100, -1, 999), T0 + 1)
    assert off.l2.is_live("BTC-USDT")
    with pytest.raises(ValueError, match="checksum must be one of on, off"):
        proto(checksum="maybe")
    with pytest.raises(ValueError, match="unknown option 'depth'; valid keys: checksum"):
        proto(depth="400")


def test_an_idle_update_is_valid_and_writes_nothing() -> None:
    p = proto(channels=("l2",))
    snapshot(p)
    idle = books("update", "BTC-USDT-SWAP", [], [], 100, 100, venue_checksum(BIDS, ASKS))
    assert p.receive(idle, T0 + 60 * S_NS) == []
    events = p.receive(books("update", "BTC-USDT-SWAP", [level("3366.1", "8")], [], 104, 100,
                             None), T0 + 61 * S_NS)
    assert l2(events) == [(False, 104, ((3366.1, 0.08),), ())] and health(events) == []


def test_a_sequence_reset_after_maintenance_is_accepted() -> None:
    p = proto(channels=("l2",))
    snapshot(p, seq=10)
    p.receive(books("update", "BTC-USDT-SWAP", [level("3366.1", "8")], [], 15, 10, None),
              T0 + 2)
    p.receive(books("update", "BTC-USDT-SWAP", [], [], 15, 15, None), T0 + 3)  # no update
    reset = p.receive(books("update", "BTC-USDT-SWAP", [level("3366.1", "9")], [], 3, 15, None),
                      T0 + 4)
    assert health(reset) == [] and l2(reset) == [(False, 3, ((3366.1, 0.09),), ())]
    after = p.receive(books("update", "BTC-USDT-SWAP", [], [level("3368", "0")], 5, 3, None),
                      T0 + 5)
    assert health(after) == [] and l2(after) == [(False, 5, (), ((3368.0, 0.0),))]


def test_a_broken_chain_is_a_gap() -> None:
    p = proto(channels=("l2",))
    snapshot(p)
    events = p.receive(books("update", "BTC-USDT-SWAP", [], [], 110, 105, None), T0 + 2)
    assert health(events) == [("gap", "BTC-USDT")]
    assert len(p.frames_to_send()) == 2  # unsubscribe + subscribe of that book


def test_bbo_tbt_and_trades() -> None:
    p = proto(channels=("tob", "trades"))
    bbo = json.dumps({"arg": {"channel": "bbo-tbt", "instId": "BTC-USDT-SWAP"}, "data": [
        {"asks": [["111.06", "55154", "0", "2"]], "bids": [["111.05", "57745", "0", "2"]],
         "ts": str(T_MS + 5), "seqId": 363996337}]})
    [snap, tob] = p.receive(bbo, T0 + 1)
    assert (snap.event, snap.symbol) == ("snapshot", "BTC-USDT")
    assert isinstance(tob, TopOfBook)
    assert (tob.bid_px, tob.bid_sz, tob.ask_px, tob.ask_sz, tob.seq) == (
        111.05, 577.45, 111.06, 551.54, 363996337)
    trades = json.dumps({"arg": {"channel": "trades", "instId": "BTC-USDT-SWAP"}, "data": [
        {"instId": "BTC-USDT-SWAP", "tradeId": "130639474", "px": "42219.9", "sz": "12",
         "side": "sell", "ts": str(T_MS + 7), "count": "3"}]})
    [t] = p.receive(trades, T0 + 2)
    assert isinstance(t, Trade)
    assert (t.symbol, t.price, t.size, t.side, t.trade_id, t.ts_exchange) == (
        "BTC-USDT", 42219.9, 0.12, "sell", "130639474", (T_MS + 7) * MS_NS)
    [bad] = p.receive(trades.replace('"sell"', '"short"'), T0 + 3)
    assert (bad.event, bad.symbol) == ("decode_error", None)


def test_acks_errors_notices_ping_and_deflate() -> None:
    p = proto(channels=("l2", "trades"))
    [ack] = p.receive('{"event":"subscribe","arg":{"channel":"books","instId":"BTC-USDT-SWAP"},'
                      '"connId":"a4d3ae55"}', T0 + 1)
    assert (ack.event, ack.symbol, ack.detail) == ("subscribed", "BTC-USDT", "books")
    [err] = p.receive('{"event":"error","code":"60018","msg":"Wrong URL or channel:books,instId:'
                      'BTC-USDT-SWAP doesn\'t exist. Please use the correct URL, channel and '
                      'parameters referring to API document.","connId":"a4d3ae55"}', T0 + 2)
    assert (err.event, err.symbol) == ("subscribe_error", "BTC-USDT")
    p.connection_made(T0 + 3)  # not asked again: only the trades argument is left
    [frame] = p.frames_to_send()
    assert json.loads(frame)["args"] == [{"channel": "trades", "instId": "BTC-USDT-SWAP"}]
    [notice] = p.receive('{"event":"notice","code":"64008","msg":"The connection will soon be '
                         'closed for a service upgrade. Please reconnect.","connId":"a4"}',
                         T0 + 4)
    assert notice.event == "venue_upgrade" and notice.detail.startswith("notice 64008: ")
    assert p.ping_frame(T0) == "ping" and p.receive("pong", T0 + 5) == []
    deflater = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    frame = deflater.compress(b'{"event":"unsubscribe","arg":{"channel":"books",'
                              b'"instId":"BTC-USDT-SWAP"}}') + deflater.flush()
    assert p.receive(frame, T0 + 6) == []


def too_frequent(req_id: str | None) -> str:
    """OKX's refusal for load: the whole request, naming no argument, echoing the id."""
    doc = {"event": "error", "code": "60014", "msg": "Requests too frequent",
           "connId": "a4d3ae55"}
    return json.dumps(doc if req_id is None else {"id": req_id, **doc})


def sent(p: OkxProtocol) -> list[dict]:
    """The requests the protocol has to send (the text pings left out)."""
    return [json.loads(f) for f in p.frames_to_send() if f != "ping"]


def ack(req_id: str, channel: str, inst: str) -> str:
    return json.dumps({"id": req_id, "event": "subscribe",
                       "arg": {"channel": channel, "instId": inst}, "connId": "a4d3ae55"})


def test_a_refusal_for_load_is_retried_after_a_backoff_and_then_subscribed() -> None:
    p = proto("BTC-USDT", "ETH-USDT", channels=("l2", "trades"))
    p.connection_made(T0)
    [request] = sent(p)
    assert len(request["args"]) == 4 and p.l2.next_deadline() is not None
    events = p.receive(too_frequent(request["id"]), T0 + 1)
    assert health(events) == [("subscribe_retry", "BTC-USDT"), ("subscribe_retry", "ETH-USDT")]
    assert events[0].detail == "books,trades: error 60014: Requests too frequent; retrying in 1 s"
    # nothing is sent, and no snapshot is awaited, until the delay is over
    assert p.frames_to_send() == [] and p.l2.next_deadline() is None
    assert p.next_deadline() == T0 + 1 + S_NS
    assert p.on_deadline(T0 + S_NS) == [] and p.frames_to_send() == []
    p.on_deadline(T0 + 1 + S_NS)
    [again] = sent(p)
    assert again["args"] == request["args"] and again["id"] != request["id"]
    assert p.l2.next_deadline() is not None  # the books snapshot is awaited again
    [ok] = p.receive(ack(again["id"], "books", "BTC-USDT-SWAP"), T0 + 2 * S_NS)
    assert (ok.event, ok.symbol, ok.detail) == ("subscribed", "BTC-USDT", "books")
    assert p.retry.failures == 0 and p.next_deadline() != T0 + 1 + S_NS
    assert health(snapshot(p)) == [("snapshot", "BTC-USDT")]


def test_the_backoff_doubles_and_the_argument_is_given_up_after_the_cap() -> None:
    p = proto(channels=("l2",))
    p.connection_made(T0)
    now = T0
    delays = []
    for _ in range(MAX_TRANSIENT_REFUSALS - 1):
        [request] = sent(p)
        [retry] = p.receive(too_frequent(request["id"]), now)
        assert (retry.event, retry.symbol) == ("subscribe_retry", "BTC-USDT")
        due = p.retry.next_deadline()
        assert due is not None
        delays.append((due - now) / S_NS)
        now = due
        p.on_deadline(now)
    assert delays == [1, 2, 4, 8, 16, 32, 60]  # doubling, at most 60 s
    [request] = sent(p)
    [error] = p.receive(too_frequent(request["id"]), now)
    assert (error.event, error.symbol) == ("subscribe_error", "BTC-USDT")
    assert error.detail == (f"books: error 60014: Requests too frequent; refused "
                            f"{MAX_TRANSIENT_REFUSALS} times in a row, not asked again")
    assert len(p.retry) == 0 and p.l2.next_deadline() is None
    p.on_deadline(now + 3600 * S_NS)
    assert sent(p) == []
    p.connection_made(now + 1)  # not asked again on a new connection either
    assert sent(p) == []


def test_an_acknowledgement_resets_the_count_of_refusals() -> None:
    p = proto(channels=("l2",))
    p.connection_made(T0)
    now = T0
    for _ in range(MAX_TRANSIENT_REFUSALS - 1):
        [request] = sent(p)
        p.receive(too_frequent(request["id"]), now)
        now = p.retry.next_deadline() or now
        p.on_deadline(now)
    [request] = sent(p)
    p.receive(ack(request["id"], "books", "BTC-USDT-SWAP"), now)
    p.connection_made(now + 1)  # a new connection; refused again: retried, after 1 s again
    [request] = sent(p)
    [retry] = p.receive(too_frequent(request["id"]), now + 2)
    assert (retry.event, retry.symbol) == ("subscribe_retry", "BTC-USDT")
    assert retry.detail.endswith("retrying in 1 s")


def test_the_refused_request_is_the_one_whose_id_the_error_echoes() -> None:
    p = proto("BTC-USDT", "ETH-USDT", channels=("l2",))
    snapshot(p)
    p.receive(books("snapshot", "ETH-USDT-SWAP", BIDS, ASKS, 7, -1, venue_checksum(BIDS, ASKS)),
              T0 + 1)
    # a resync of BTC's book: unsubscribe + subscribe; the subscribe is refused for load
    p.receive(books("update", "BTC-USDT-SWAP", [], [], 110, 105, None), T0 + 2)
    unsub, sub = sent(p)
    assert p.receive(json.dumps({"id": unsub["id"], "event": "unsubscribe", "arg": unsub["args"][0],
                                 "connId": "a4d3ae55"}), T0 + 3) == []
    events = p.receive(too_frequent(sub["id"]), T0 + 3)
    assert health(events) == [("subscribe_retry", "BTC-USDT")]
    p.on_deadline(T0 + 3 + S_NS)
    [again] = sent(p)
    assert again["op"] == "subscribe" and again["args"] == sub["args"]
    # an error echoing an id that is no longer waiting refuses nothing that can be retried
    [late] = p.receive(too_frequent(sub["id"]), T0 + 4)
    assert (late.event, late.symbol) == ("subscribe_error", None)
    assert sent(p) == [] and len(p.retry) == 0


def test_a_refusal_without_id_is_the_oldest_request_still_unanswered() -> None:
    p = proto("BTC-USDT", "ETH-USDT", channels=("l2",))
    p.resync(p.l2, ["BTC-USDT"], T0 + 1)
    p.resync(p.l2, ["ETH-USDT"], T0 + 1)
    assert [f["op"] for f in sent(p)] == ["unsubscribe", "subscribe"] * 2
    # the first subscribe request (both books) is acknowledged without ids, as is BTC's unsubscribe
    for inst in ("BTC-USDT-SWAP", "ETH-USDT-SWAP"):
        p.receive(json.dumps({"event": "subscribe", "arg": {"channel": "books",
                                                            "instId": inst}}), T0 + 2)
    p.receive(json.dumps({"event": "unsubscribe", "arg": {"channel": "books",
                                                          "instId": "BTC-USDT-SWAP"}}), T0 + 2)
    # BTC's resubscribe is the oldest request of which nothing was answered: a refusal without
    # id is that one's; the next one is ETH's unsubscribe (both acks answered the first request)
    events = p.receive(too_frequent(None), T0 + 3)
    assert health(events) == [("subscribe_retry", "BTC-USDT")]
    [refused] = p.receive(too_frequent(None), T0 + 3)
    assert (refused.event, refused.detail) == (
        "venue_error", "unsubscribe refused: error 60014: Requests too frequent")


def test_a_refused_unsubscribe_is_a_venue_error_and_60018_stays_permanent() -> None:
    p = proto(channels=("l2", "trades"))
    p.resync(p.l2, ["BTC-USDT"], T0 + 1)
    unsub, _ = sent(p)
    [refused] = p.receive(too_frequent(unsub["id"]), T0 + 2)
    assert refused.event == "venue_error" and refused.detail.startswith("unsubscribe refused")
    p.connection_made(T0 + 3)
    [request] = sent(p)
    missing = json.dumps({"id": request["id"], "event": "error", "code": "60018",
                          "msg": "Wrong URL or channel:books,instId:BTC-USDT-SWAP doesn't exist. "
                          "Please use the correct URL, channel and parameters referring to API "
                          "document.", "connId": "a4d3ae55"})
    [err] = p.receive(missing, T0 + 4)
    assert (err.event, err.symbol) == ("subscribe_error", "BTC-USDT")
    assert len(p.retry) == 0 and sent(p) == []
    p.connection_made(T0 + 5)  # books not asked again; trades are
    [request] = sent(p)
    assert request["args"] == [{"channel": "trades", "instId": "BTC-USDT-SWAP"}]


def test_a_refused_index_argument_belongs_to_its_symbol() -> None:
    """index-tickers takes the index id (BTC-USDT), not the swap's: its refusal is still the
    symbol's, and only that argument is not asked again."""
    p = proto(channels=("funding",))
    p.connection_made(T0)
    [request] = sent(p)
    assert {"channel": "index-tickers", "instId": "BTC-USDT"} in request["args"]
    missing = json.dumps({"id": request["id"], "event": "error", "code": "60018",
                          "msg": "Wrong URL or channel:index-tickers,instId:BTC-USDT doesn't "
                          "exist. Please use the correct URL, channel and parameters referring "
                          "to API document.", "connId": "a4d3ae55"})
    [err] = p.receive(missing, T0 + 1)
    assert (err.event, err.symbol) == ("subscribe_error", "BTC-USDT")
    p.connection_made(T0 + 2)
    [request] = sent(p)
    channels = {a["channel"] for a in request["args"]}
    assert channels == {"funding-rate", "mark-price", "open-interest"}


def test_instruments_are_linear_swaps_with_contract_values() -> None:
    body = json.dumps({"code": "0", "msg": "", "data": [
        {"instType": "SWAP", "instId": "BTC-USDT-SWAP", "uly": "BTC-USDT",
         "instFamily": "BTC-USDT", "settleCcy": "USDT", "ctVal": "0.01", "ctMult": "1",
         "ctValCcy": "BTC", "ctType": "linear", "tickSz": "0.1", "lotSz": "0.01",
         "minSz": "0.01", "state": "live"},
        {"instType": "SWAP", "instId": "BTC-USD-SWAP", "uly": "BTC-USD", "instFamily": "BTC-USD",
         "settleCcy": "BTC", "ctVal": "100", "ctValCcy": "USD", "ctType": "inverse",
         "tickSz": "0.1", "lotSz": "1", "state": "live"},
        {"instType": "SWAP", "instId": "ETH-USDC-SWAP", "uly": "ETH-USDC",
         "instFamily": "ETH-USDC", "settleCcy": "USDC", "ctVal": "0.001", "ctValCcy": "ETH",
         "ctType": "linear", "tickSz": "0.01", "lotSz": "1", "state": "suspend"},
    ]}).encode()
    got = OkxProtocol.parse_instruments(body)
    assert sorted(got) == ["BTC-USDT", "ETH-USDC"]
    btc = got["BTC-USDT"]
    assert (btc.native, btc.contract_size, btc.tick_size, btc.lot_size, btc.status) == (
        "BTC-USDT-SWAP", 0.01, 0.1, 0.0001, "trading")
    assert got["ETH-USDC"].status == "suspend"
    with pytest.raises(ValueError, match="code 50011"):
        OkxProtocol.parse_instruments(b'{"code":"50011","msg":"Too Many Requests","data":[]}')


# -- the one-pass path of books pushes ----------------------------------------------------------

BTC_10 = Instrument(symbol="BTC-USDT", native="BTC-USDT-SWAP", contract_size=10.0,
                    tick_size=0.1, lot_size=10.0)


def _update(bids: Wire, asks: Wire, seq: int = 101, prev: int = 100,
            checksum: int | None = None, **entry: object) -> str:
    """An update of the book ``snapshot`` leaves (BIDS/ASKS), checksummed as the venue would."""
    if checksum is None:
        def merged(side: Wire, changes: Wire, best_first: int) -> Wire:
            book = {float(r[0]): r for r in side}
            for r in changes:
                book.pop(float(r[0]), None)
                if float(r[1]):
                    book[float(r[0])] = r
            return [book[p] for p in sorted(book, key=lambda p: best_first * p)]
        try:
            checksum = venue_checksum(merged(BIDS, bids, -1), merged(ASKS, asks, 1))
        except (ValueError, IndexError):
            checksum = 1  # rows that are not numbers never reach the checksum
    frame = json.loads(books("update", "BTC-USDT-SWAP", bids, asks, seq, prev, checksum, ms=5))
    frame["data"][0].update(entry)
    return json.dumps(frame)


def _deflate(text: str) -> bytes:
    packer = zlib.compressobj(wbits=-15)
    return packer.compress(text.encode()) + packer.flush()


GOOD_UPDATE = _update([level("3366.1", "5")], [level("3368", "0", "0")])
BAD_BOOKS_FRAMES = {
    "good update": GOOD_UPDATE,
    "good update, deflated": _deflate(GOOD_UPDATE),
    "two-field rows": _update([["3366.1", "5"]], [["3368", "0"]]),
    "checksum mismatch": _update([level("3366.1", "5")], [], checksum=12345),
    "seq gap": _update([level("3366.1", "5")], [], prev=99),
    "NaN price": _update([level("NaN", "5")], []),
    "infinite price": _update([level("inf", "5")], []),
    "negative price": _update([level("-3366.1", "5")], []),
    "zero price": _update([level("0", "5")], []),
    "negative size": _update([], [level("3368", "-1")]),
    "infinite size": _update([], [level("3368", "1e400")]),
    "size not a number": _update([], [level("3368", "lots")]),
    "short row": _update([["3366.1"]], []),
    "numeric row": json.dumps({"arg": {"channel": "books", "instId": "BTC-USDT-SWAP"},
                               "action": "update", "data": [{
                                   "asks": [[3368, 1, 0, 1]], "bids": [], "ts": str(T_MS),
                                   "checksum": 1, "prevSeqId": 100, "seqId": 101}]}),
    "seqId as text": _update([level("3366.1", "5")], [], seqId="101"),
    "seqId beyond int64": _update([level("3366.1", "5")], [], seqId=2**64),
    "update without prevSeqId": _update([level("3366.1", "5")], [], prevSeqId=None),
    "ts not a number": _update([level("3366.1", "5")], [], ts="soon"),
    "empty ts": _update([level("3366.1", "5")], [], ts=""),
    "ts out of range": _update([level("3366.1", "5")], [], ts="1"),
    "unknown action": GOOD_UPDATE.replace('"update"', '"partial"'),
    "empty data": json.dumps({"arg": {"channel": "books", "instId": "BTC-USDT-SWAP"},
                              "action": "update", "data": []}),
    "other book channel": GOOD_UPDATE.replace('"books"', '"books5"'),
    "unknown instrument": GOOD_UPDATE.replace("BTC-USDT-SWAP", "DOGE-USDT-SWAP"),
    "event with a books arg": json.dumps({"event": "subscribe", "arg": {
        "channel": "books", "instId": "BTC-USDT-SWAP"}, "connId": "a4d3ae55"}),
}


def _pair(monkeypatch: pytest.MonkeyPatch, instrument: Instrument | None = None
          ) -> tuple[OkxProtocol, OkxProtocol]:
    """The same live book twice: the second always takes the two-step path."""
    pair = []
    for _ in range(2):
        p = proto(channels=("l2",))
        if instrument is not None:
            p = OkxProtocol(ProtocolConfig(symbols=("BTC-USDT",), channels=("l2",),
                                           instruments={"BTC-USDT": instrument}))
            p.connection_made(T0)
            p.frames_to_send()
        snapshot(p)
        pair.append(p)
    monkeypatch.setattr(pair[1], "_book_push", lambda payload, recv_ns: None)
    return pair[0], pair[1]


@pytest.mark.parametrize("name", sorted(BAD_BOOKS_FRAMES))
def test_the_one_pass_books_path_behaves_as_the_two_step_path(
        monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """Every books push gives the same events, errors, resync requests and book either way;
    bad values are decode errors that resync the book."""
    frame = BAD_BOOKS_FRAMES[name]
    fast, slow = _pair(monkeypatch)
    got = fast.receive(frame, T0 + 2)
    assert got == slow.receive(frame, T0 + 2)
    assert fast.decode_errors == slow.decode_errors
    assert fast.frames_to_send() == slow.frames_to_send()
    assert fast.l2.states["BTC-USDT"].book.top_text(0) == \
        slow.l2.states["BTC-USDT"].book.top_text(0)
    if name.startswith("good") or name == "two-field rows":
        assert l2(got) and not health(got)
        assert fast._book_push(_update([], [], seq=102, prev=101), T0 + 3) is not None
    elif name in ("unknown instrument", "other book channel", "event with a books arg"):
        assert health(got) in ([("venue_error", None)], [("subscribed", "BTC-USDT")])
    else:
        expected = [("checksum_mismatch" if name == "checksum mismatch" else "gap", "BTC-USDT")]
        if name not in ("checksum mismatch", "seq gap"):
            expected.insert(0, ("decode_error", None))
        assert health(got) == expected
        assert not fast.l2.is_live("BTC-USDT")


def test_a_size_overflowing_once_in_base_units_is_a_decode_error_either_way(
        monkeypatch: pytest.MonkeyPatch) -> None:
    frame = _update([], [level("3368", "1e308")], checksum=0)
    fast, slow = _pair(monkeypatch, BTC_10)
    got = fast.receive(frame, T0 + 2)
    assert got == slow.receive(frame, T0 + 2)
    assert health(got) == [("decode_error", None), ("gap", "BTC-USDT")]
    assert "overflows once converted to base units" in got[0].detail
