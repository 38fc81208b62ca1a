"""The fake OKX venue, sans-IO, with the OKX plugin reading what it says: acknowledgements per
argument, errors that name their argument only in the message, the ``seqId`` chain every
connection shares, checksums over the wire text (or 0), deflate frames, idle updates, a sequence
reset, the instrument list, the four channels of the perpetual context and the server time.
Plain synchronous tests."""

from __future__ import annotations

import json
import zlib
from dataclasses import replace
from decimal import Decimal
from typing import Any

from core.protocol import ProtocolConfig
from core.schema import BookUpdate, Event, Funding, Health, HealthKind
from core.sim.market import Listing, Market, load_text
from core.sim.perp import FundingSchedule, simulate_perps
from core.sim.simulator import SimParams
from core.sim.speaker import Out
from plugins.okx.fake import FIRST_SEQ, OkxSession, OkxSpeaker
from plugins.okx.protocol import OkxProtocol

S = 1_000_000_000
T0 = 1_786_000_000 * S
BTC = Listing("okx", "BTC-USDT", tick=Decimal("0.1"), lot=Decimal("0.01"),
              contract_size=Decimal("0.01"))
ETH = Listing("okx", "ETH-USDT", tick=Decimal("0.01"), lot=Decimal("0.1"),
              contract_size=Decimal("0.1"))
BOOKS = '{"op":"subscribe","args":[{"channel":"books","instId":"BTC-USDT-SWAP"}]}'


def venue() -> tuple[Market, OkxSpeaker]:
    market = Market([BTC, ETH])
    load_text(market, "okx", "BTC-USDT", [("65000.0", "4.15"), ("64999.9", "0.01")],
              [("65000.1", "0.2"), ("65000.5", "1")])
    load_text(market, "okx", "ETH-USDT", [("3000.00", "1")], [("3000.01", "2")])
    return market, OkxSpeaker(market)


def doc(out: Out) -> Any:
    frame = out.frame
    assert frame is not None
    if isinstance(frame, bytes):
        frame = zlib.decompress(frame, -zlib.MAX_WBITS).decode()
    return json.loads(frame)


def client(speaker: OkxSpeaker) -> OkxProtocol:
    body = speaker.rest("/api/v5/public/instruments?instType=SWAP")
    assert body is not None
    proto = OkxProtocol(ProtocolConfig(symbols=("BTC-USDT", "ETH-USDT"), channels=("l2",),
                                       instruments=OkxProtocol.parse_instruments(body)))
    proto.connection_made(T0)
    proto.frames_to_send()
    return proto


def feed(proto: OkxProtocol, outs: list[Out], t: int) -> list[Event]:
    return [e for o in outs if o.frame is not None for e in proto.receive(o.frame, t)]


def change(market: Market, speaker: OkxSpeaker, sessions: list[OkxSession],
           changes: list[tuple[str, int, int]], t: int) -> list[list[Out]]:
    event = market.apply("okx", "BTC-USDT", t, changes)  # type: ignore[arg-type]
    speaker.observe(event)
    return [s.market(event, t) for s in sessions]


def test_every_argument_is_acknowledged_and_errors_name_it_in_the_message() -> None:
    _, speaker = venue()
    session = speaker.open(T0, "/ws/v5/public")
    outs = session.receive('{"op":"subscribe","args":[{"channel":"books","instId":"BTC-USDT-SWAP"},'
                           '{"channel":"trades","instId":"DOGE-USDT-SWAP"}]}', T0)
    assert [o.kind for o in outs] == ["ack", "snapshot", "error"]
    assert doc(outs[0])["arg"] == {"channel": "books", "instId": "BTC-USDT-SWAP"}
    error = doc(outs[2])
    assert error["code"] == "60018" and "channel:trades,instId:DOGE-USDT-SWAP" in error["msg"]
    proto = client(speaker)
    events = feed(proto, outs, T0)
    assert [(e.symbol, e.event) for e in events if isinstance(e, Health)] == [
        ("BTC-USDT", HealthKind.SUBSCRIBED), ("BTC-USDT", HealthKind.SNAPSHOT),
        (None, HealthKind.SUBSCRIBE_ERROR)]
    assert doc(session.receive("{", T0)[0])["code"] == "60012"
    assert session.receive("ping", T0)[0].frame == "pong"


def test_every_answer_echoes_the_request_id() -> None:
    _, speaker = venue()
    session = speaker.open(T0, "/ws/v5/public")
    outs = session.receive('{"id":"sub3","op":"subscribe","args":[{"channel":"books","instId":'
                           '"BTC-USDT-SWAP"},{"channel":"trades","instId":"DOGE-USDT-SWAP"}]}', T0)
    assert [(o.kind, doc(o).get("id")) for o in outs] == [
        ("ack", "sub3"), ("snapshot", None), ("error", "sub3")]
    [ack] = session.receive('{"id":"unsub4","op":"unsubscribe","args":[{"channel":"books",'
                            '"instId":"BTC-USDT-SWAP"}]}', T0)
    assert doc(ack)["event"] == "unsubscribe" and doc(ack)["id"] == "unsub4"
    [ack] = session.receive('{"op":"subscribe","args":[{"channel":"trades","instId":'
                            '"BTC-USDT-SWAP"}]}', T0)
    assert "id" not in doc(ack)


def test_a_refusal_for_load_refuses_the_whole_request() -> None:
    _, speaker = venue()
    speaker.refuse("ETH-USDT", "transient")
    session = speaker.open(T0, "/ws/v5/public")
    [out] = session.receive('{"id":"sub7","op":"subscribe","args":[{"channel":"books","instId":'
                            '"BTC-USDT-SWAP"},{"channel":"books","instId":"ETH-USDT-SWAP"}]}', T0)
    assert doc(out) == {"id": "sub7", "event": "error", "code": "60014",
                        "msg": "Requests too frequent", "connId": doc(out)["connId"]}
    assert not session.subs


def test_the_seq_chain_is_shared_and_the_checksum_verified() -> None:
    market, speaker = venue()
    first, second = speaker.open(T0, "/p"), speaker.open(T0, "/p")
    proto = client(speaker)
    snapshots = [s.receive(BOOKS, T0)[1] for s in (first, second)]
    assert [doc(o)["data"][0]["seqId"] for o in snapshots] == [FIRST_SEQ, FIRST_SEQ]
    entry = doc(snapshots[0])["data"][0]
    assert entry["bids"] == [["65000.0", "415", "0", "3"], ["64999.9", "1", "0", "2"]]
    assert entry["prevSeqId"] == -1 and entry["checksum"] != 0
    feed(proto, [snapshots[0]], T0)
    outs = change(market, speaker, [first, second], [("bid", 650000, 300)], T0 + S)
    assert [doc(o) for o in outs[0]] == [doc(o) for o in outs[1]]  # the same on both
    [update] = doc(outs[0][0])["data"]
    assert update["prevSeqId"] == FIRST_SEQ and update["seqId"] > FIRST_SEQ
    events = feed(proto, outs[0], T0 + S)
    assert [e for e in events if isinstance(e, Health)] == []  # checksum and chain agree
    [row] = [e for e in events if isinstance(e, BookUpdate)]
    assert row.bids == ((65000.0, 3.0),)  # 300 contracts of 0.01 BTC

    speaker.checksums = False  # as OKX sends since 2026-06-23
    outs = change(market, speaker, [first], [("ask", 650001, 50)], T0 + 2 * S)
    assert doc(outs[0][0])["data"][0]["checksum"] == 0
    assert [e for e in feed(proto, outs[0], T0 + 2 * S) if isinstance(e, Health)] == []


def test_idle_updates_resets_and_deflate_frames() -> None:
    market, speaker = venue()
    speaker.deflate, speaker.idle_ns = True, 5 * S
    session = speaker.open(T0, "/p")
    proto = client(speaker)
    outs = session.receive(BOOKS, T0)
    assert isinstance(outs[1].frame, bytes)  # a push: raw deflate
    feed(proto, outs, T0)
    assert session.next_deadline() == T0 + 5 * S
    [idle] = session.on_deadline(T0 + 5 * S)
    entry = doc(idle)["data"][0]
    assert (entry["seqId"], entry["prevSeqId"], entry["bids"], entry["asks"]) == (
        FIRST_SEQ, FIRST_SEQ, [], [])
    assert idle.kind == "heartbeat" and speaker.idle_updates == 1
    assert [e for e in feed(proto, [idle], T0 + 5 * S) if isinstance(e, Health)] == []
    speaker.reset_sequence("BTC-USDT", 7, after_changes=1)
    outs = change(market, speaker, [session], [("bid", 650000, 100)], T0 + 6 * S)
    feed(proto, outs[0], T0 + 6 * S)
    outs = change(market, speaker, [session], [("bid", 650000, 200)], T0 + 7 * S)
    entry = doc(outs[0][0])["data"][0]
    assert entry["seqId"] == 7 < entry["prevSeqId"]
    events = feed(proto, outs[0], T0 + 7 * S)
    assert [e for e in events if isinstance(e, Health)] == []  # a reset is not a gap
    assert proto.l2.last_seq("BTC-USDT") == 7


def test_bad_copies_for_the_fault_kit() -> None:
    market, speaker = venue()
    session = speaker.open(T0, "/p")
    session.receive(BOOKS, T0)
    [delta] = change(market, speaker, [session], [("bid", 650000, 300)], T0 + S)[0]
    bad = session.mutate(delta, "checksum")
    assert bad is not None and doc(bad)["data"][0]["checksum"] != doc(delta)["data"][0][
        "checksum"]
    nan = session.mutate(delta, "non_finite")
    assert nan is not None and doc(nan)["data"][0]["bids"][0][1] == "NaN"  # the size


def test_the_plugin_reads_the_fake_s_instruments() -> None:
    _, speaker = venue()
    body = speaker.rest("/api/v5/public/instruments?instType=SWAP")
    assert body is not None and speaker.rest("/api/v5/public/instruments") is None
    instruments = OkxProtocol.parse_instruments(body)
    assert {s: (i.native, i.contract_size, i.tick_size) for s, i in instruments.items()} == {
        "BTC-USDT": ("BTC-USDT-SWAP", 0.01, 0.1), "ETH-USDT": ("ETH-USDT-SWAP", 0.1, 0.01)}


FUNDING = json.dumps({"op": "subscribe", "args": [
    {"channel": "funding-rate", "instId": "BTC-USDT-SWAP"},
    {"channel": "mark-price", "instId": "BTC-USDT-SWAP"},
    {"channel": "open-interest", "instId": "BTC-USDT-SWAP"},
    {"channel": "index-tickers", "instId": "BTC-USDT"}]})


def test_the_perpetual_context_on_four_channels() -> None:
    market, speaker = venue()
    schedule = FundingSchedule(8 * 3600, T0 - 3600 * S, (Decimal("0.5"), Decimal("2.25")))
    simulate_perps(market, ["okx"], SimParams(seed=5), T0, {"okx": schedule})
    perp = market.perps[("okx", "BTC-USDT")]
    session = speaker.open(T0, "/ws/v5/public")
    outs = session.receive(FUNDING, T0)
    assert [o.kind for o in outs] == ["ack", "snapshot"] * 4
    pushes = {doc(o)["arg"]["channel"]: doc(o)["data"][0] for o in outs if o.kind == "snapshot"}
    rate = pushes["funding-rate"]
    nxt_ms = (T0 + 7 * 3600 * S) // 1_000_000
    assert (rate["fundingRate"], rate["fundingTime"], rate["nextFundingTime"]) == (
        "0.000225", str(nxt_ms), str(nxt_ms + 8 * 3600 * 1000))
    oi = pushes["open-interest"]
    assert (oi["oi"], oi["oiCcy"]) == (str(perp.open_interest_lots),  # contracts of 0.01 BTC
                                       BTC.size_text(perp.open_interest_lots))
    assert pushes["index-tickers"]["instId"] == "BTC-USDT"
    assert pushes["index-tickers"]["idxPx"] == BTC.price_text(perp.index_ticks)
    assert pushes["mark-price"]["markPx"] == BTC.price_text(perp.mark_ticks)

    # the plugin merges the four into one state, open interest in BTC
    body = speaker.rest("/api/v5/public/instruments?instType=SWAP")
    assert body is not None
    proto = OkxProtocol(ProtocolConfig(symbols=("BTC-USDT",), channels=("funding",),
                                       instruments=OkxProtocol.parse_instruments(body)))
    proto.connection_made(T0)
    proto.frames_to_send()
    rows = [e for e in feed(proto, outs, T0 + 1) if isinstance(e, Funding)]
    assert len(rows) == 4
    last = rows[-1]
    assert (last.funding_rate, last.funding_interval_s, last.next_funding_time, last.mark_px,
            last.index_px, last.open_interest) == (
        0.000225, 8 * 3600, nxt_ms * 1_000_000, float(BTC.price(perp.mark_ticks)),
        float(BTC.price(perp.index_ticks)), float(BTC.size(perp.open_interest_lots)))

    # later updates: a channel pushes when what it says changed, or when its repeat is due
    def channels(update: Any, t: int) -> list[str]:
        return [doc(o)["arg"]["channel"] for o in session.market(update, t)]

    moved = replace(perp, ts_ns=T0 + S, mark_ticks=perp.mark_ticks + 1)
    assert channels(moved, T0 + S) == ["mark-price"]
    assert channels(replace(moved, ts_ns=T0 + 2 * S), T0 + 2 * S) == []
    assert channels(replace(moved, ts_ns=T0 + 11 * S), T0 + 11 * S) == ["mark-price"]
    assert channels(replace(moved, ts_ns=T0 + 12 * S, open_interest_lots=7), T0 + 12 * S) == [
        "open-interest"]
    assert channels(replace(moved, ts_ns=T0 + 60 * S, open_interest_lots=7), T0 + 60 * S) == [
        "funding-rate", "mark-price", "index-tickers"]
    # the funding passes: the next one is announced with its rate, the last one settled
    after = replace(moved, ts_ns=T0 + 61 * S, next_funding_ns=perp.next_funding_ns + 8 * 3600 * S,
                    funding_rate=Decimal("0.00005"), open_interest_lots=7)
    [out] = session.market(after, T0 + 61 * S)
    entry = doc(out)["data"][0]
    assert (entry["fundingRate"], entry["settFundingRate"]) == ("0.00005", "0.000225")
    # the books of the same symbol never hear of it
    books = speaker.open(T0, "/ws/v5/public")
    books.receive(BOOKS, T0)
    assert books.market(after, T0 + 61 * S) == []


def test_perpetual_channels_take_their_own_instrument_ids_and_the_server_time() -> None:
    _, speaker = venue()
    session = speaker.open(T0, "/ws/v5/public")
    for channel, inst in (("index-tickers", "BTC-USDT-SWAP"), ("funding-rate", "BTC-USDT")):
        [out] = session.receive(json.dumps({"op": "subscribe", "args": [
            {"channel": channel, "instId": inst}]}), T0)
        assert doc(out)["code"] == "60018" and f"instId:{inst}" in doc(out)["msg"]
    # no perpetual context simulated: acknowledged, silent until there is one
    assert [o.kind for o in session.receive(FUNDING, T0)] == ["ack"] * 4
    speaker.clock_skew_ns = 60_000_000
    body = speaker.rest_at("/api/v5/public/time", T0)
    assert isinstance(body, bytes)
    assert OkxProtocol.parse_server_time(body) == T0 + 60_000_000
