"""The pure handover logic (``core.handover``): what the current connections publish, what a
replacement holds back, and the rows of the switch in its three cases (ready; forced with a book
not ready; after the old connection died)."""

from __future__ import annotations

import json

from core.codec import MS_NS
from core.handover import HANDOVER, Handover
from core.protocol import ProtocolConfig
from core.schema import BookUpdate, Event, Health, HealthKind, TopOfBook, Trade
from plugins.binance.protocol import BinanceProtocol

T_MS = 1_786_310_818_000
T0 = T_MS * MS_NS


def binance(*symbols: str) -> BinanceProtocol:
    return BinanceProtocol(ProtocolConfig(symbols=symbols or ("BTC-USDT",),
                                          channels=("tob", "l2")))


def go_live(p: BinanceProtocol, t: int, bid: str = "100.0", last: int = 500,
            symbols: tuple[str, ...] = ("BTC-USDT",)) -> list[Event]:
    """Connect, acknowledge, answer the depth snapshots, push a top of book."""
    events = p.connection_made(t)
    p.frames_to_send()
    events += p.receive('{"result":null,"id":1}', t + 1)
    for req in p.rest_requests_to_send():
        sym = req.key.split(":")[1]
        if sym in symbols:
            body = json.dumps({"lastUpdateId": last, "bids": [[bid, "1"], ["99.0", "2"]],
                               "asks": [["101.0", "3"]]}).encode()
            events += p.rest_response(req.key, 200, body, t + 2)
    for sym in symbols:
        native = sym.replace("-", "")
        events += p.receive(json.dumps({"e": "bookTicker", "u": last, "s": native, "b": bid,
                                        "B": "1", "a": "101.0", "A": "3", "T": T_MS}), t + 3)
    return events


def trade(trade_id: str, t: int, symbol: str = "BTC-USDT") -> Trade:
    return Trade(exchange="binance", ts_local=t, symbol=symbol, ts_exchange=None, price=100.0,
                 size=1.0, side="buy", trade_id=trade_id)


def rows(events: list[Event], kind: type) -> list:
    return [e for e in events if isinstance(e, kind)]


def test_current_events_pass_without_repeated_trades() -> None:
    h = Handover("binance")
    batch = [trade("1", T0), trade("2", T0)]
    assert h.current(batch) is batch  # nothing dropped: the same list, no copy
    out = h.current([trade("2", T0 + 1), trade("3", T0 + 1), trade("2", T0 + 1, "ETH-USDT")])
    assert [(t.symbol, t.trade_id) for t in out] == [("BTC-USDT", "3"), ("ETH-USDT", "2")]
    assert h.duplicates == 1


def test_switch_when_ready_republishes_books_and_keeps_trust() -> None:
    h = Handover("binance")
    old, new = binance(), binance()
    published = list(h.current(go_live(old, T0)))
    published += h.current([trade("7", T0 + 5), trade("8", T0 + 6)])
    last_old_id = max(e.msg_id for e in rows(published, BookUpdate))
    assert not h.ready([old], [new])
    # the replacement connects; everything it says is held
    h.hold(go_live(new, T0 + 10, bid="100.5", last=600))
    h.hold([trade("8", T0 + 11), trade("9", T0 + 12)])
    assert h.ready([old], [new])
    out = h.switch(T0 + 20, [old], [new], old_lost=False, detail="conn 1,2 -> 3,4 after 2 s")
    handover = out[0]
    assert isinstance(handover, Health) and handover.event == HANDOVER
    assert handover.detail.startswith("conn 1,2 -> 3,4 after 2 s; books carried 2, not "
                                      "carried 0; held trades 2, 1 already published")
    assert handover.detail.endswith("new connection before the switch: snapshot=2")
    # no trust rows: the books stay trusted across the switch
    assert [(e.event, e.symbol) for e in rows(out, Health)] == [
        (HANDOVER, None), ("subscribed", "BTC-USDT")]
    [snap] = rows(out, BookUpdate)
    assert snap.is_snapshot and snap.ts_local == T0 + 20 and snap.seq == 600
    assert snap.bids == ((100.5, 1.0), (99.0, 2.0)) and snap.ts_exchange is None
    assert snap.msg_id > last_old_id
    [tob] = rows(out, TopOfBook)  # the top changed (100 -> 100.5): one row
    assert (tob.bid_px, tob.ts_local) == (100.5, T0 + 20)
    assert [t.trade_id for t in rows(out, Trade)] == ["9"]
    # afterwards trades the old connection published are still recognised
    assert [t.trade_id for t in h.current([trade("9", T0 + 21), trade("10", T0 + 21)])] == ["10"]


def test_an_unchanged_top_is_not_written_again() -> None:
    h = Handover("binance")
    old, new = binance(), binance()
    go_live(old, T0)
    h.hold(go_live(new, T0 + 10))  # same book, same top
    out = h.switch(T0 + 20, [old], [new], old_lost=False, detail="d")
    assert rows(out, TopOfBook) == [] and len(rows(out, BookUpdate)) == 1


def test_forced_switch_marks_books_that_are_not_ready() -> None:
    h = Handover("binance")
    old, new = binance("BTC-USDT", "ETH-USDT"), binance("BTC-USDT", "ETH-USDT")
    go_live(old, T0, symbols=("BTC-USDT", "ETH-USDT"))
    h.hold(go_live(new, T0 + 10, symbols=("BTC-USDT",)))  # ETH's snapshot never came
    assert not h.ready([old], [new])
    out = h.switch(T0 + 20, [old], [new], old_lost=False, detail="d")
    # one row per book (tob and l2), as the keepers write their own breaks
    assert [(e.event, e.symbol) for e in rows(out, Health) if e.event == HealthKind.GAP] == [
        ("gap", "ETH-USDT"), ("gap", "ETH-USDT")]
    assert "books carried 2, not carried 2" in out[0].detail
    assert {e.symbol for e in rows(out, BookUpdate)} == {"BTC-USDT"}


def test_switch_after_the_old_connection_died_restores_trust() -> None:
    h = Handover("binance")
    old, new = binance(), binance()
    go_live(old, T0)
    h.hold(go_live(new, T0 + 10))
    old.connection_lost(T0 + 15)  # its disconnected row is published already
    out = h.switch(T0 + 20, [old], [new], old_lost=True, detail="d")
    assert "old connection lost" in out[0].detail
    trust = [(e.event, e.symbol) for e in rows(out, Health) if e.event != HANDOVER]
    assert trust == [("resynced", "BTC-USDT"), ("resynced", "BTC-USDT"),
                     ("subscribed", "BTC-USDT")]
    assert len(rows(out, TopOfBook)) == 1  # the top is written again after the break


def test_a_failed_replacement_leaves_nothing_behind() -> None:
    h = Handover("binance", max_held_trades=2)
    h.hold([trade("1", T0), trade("2", T0), trade("3", T0)])
    h.discard()
    old, new = binance(), binance()
    out = h.switch(T0 + 1, [old], [new], old_lost=False, detail="d")
    assert [type(e) for e in out] == [Health] and "held trades 0" in out[0].detail


def test_held_trades_beyond_the_bound_are_counted() -> None:
    h = Handover("binance", max_held_trades=2)
    h.hold([trade("1", T0), trade("2", T0), trade("3", T0)])
    out = h.switch(T0 + 1, [binance()], [binance()], old_lost=False, detail="d")
    assert [t.trade_id for t in rows(out, Trade)] == ["2", "3"]
    assert "1 held events dropped at the bound" in out[0].detail


def test_trades_of_the_whole_overlap_are_recognised_then_forgotten() -> None:
    """The old connections' trade ids are remembered for as long as a replacement is held back,
    however many (not only the last few), and filter the new connections for a while after."""
    h = Handover("binance", recent_ids=3)
    old, new = binance(), binance()
    go_live(old, T0)
    h.hold(go_live(new, T0 + 10))  # the replacement starts: remember what is published
    early = trade("100", T0 + 11)
    h.current([early, *(trade(str(i), T0 + 12) for i in range(200, 210))])
    h.hold([early, trade("300", T0 + 13)])  # the replacement got the early one too
    out = h.switch(T0 + 20, [old], [new], old_lost=False, detail="d")
    assert [t.trade_id for t in rows(out, Trade)] == ["300"]  # "100" fell out of the 3 recent
    assert "held trades 2, 1 already published" in out[0].detail
    # the new connection lags: it still sends what the old one published, for a while
    assert h.current([trade("205", T0 + 21)]) == []
    later = T0 + 21 + 61 * 10**9
    assert [t.trade_id for t in h.current([trade("201", later)])] == ["201"]  # forgotten


def test_republished_book_keeps_wire_text_exact() -> None:
    """A book that keeps wire text (checksummed venues) crosses the switch with that text
    unchanged, so the next checksum still matches."""
    from core.book import BookKeeper

    old = BookKeeper("okx", keep_text=True)
    new = BookKeeper("okx", keep_text=True)
    for k in (old, new):
        k.snapshot("BTC-USDT", [(100.5, 1.25), (100.0, 2.0)], [(101.0, 3.0)], ts_local=T0,
                   ts_exchange=None, seq=1,
                   bid_text=[("100.50", "1.250"), ("100.0", "2")], ask_text=[("101.0", "3")])
    before = new.book("BTC-USDT").top_text(5)
    assert before == (["100.50:1.250", "100.0:2"], ["101.0:3"])
    Handover._republish(old, new, "BTC-USDT", T0 + 1, was_live=True)
    assert new.book("BTC-USDT").top_text(5) == before
