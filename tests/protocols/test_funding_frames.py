"""The ``funding`` channel of every perpetual venue, synchronously, on frames and REST bodies
written in each venue's documented wire format (numbers as the venue writes them: decimal
strings on Bybit, Bitget, Gate, Binance and OKX, HTX's mix of strings and JSON numbers), and the
server-time bodies the clock offsets are measured against.

Bybit's ticker deltas carry only the fields that changed: they are merged into the last full
state before a row is written, which the real capture checks on 800 frames."""

from __future__ import annotations

import json
from typing import Any

import pytest

from core.codec import MS_NS, S_NS
from core.protocol import ExchangeProtocol, Instrument, ProtocolConfig
from core.schema import Event, Funding, Health, HealthKind
from plugins.binance.protocol import BinanceProtocol
from plugins.bitget.protocol import BitgetProtocol
from plugins.bybit.protocol import BybitProtocol
from plugins.coinbase.protocol import CoinbaseProtocol
from plugins.coinbase_exchange.protocol import CoinbaseExchangeProtocol
from plugins.gateio.protocol import GateioProtocol
from plugins.htx.protocol import HtxProtocol
from plugins.okx.protocol import OkxProtocol

T_MS = 1_786_310_818_000
T0 = T_MS * MS_NS
NEXT_MS = 1_786_320_000_000  # 2026-08-10 00:00 UTC
H8_MS = 8 * 3600 * 1000


def rows(events: list[Event]) -> list[Funding]:
    return [e for e in events if isinstance(e, Funding)]


def health(events: list[Event]) -> list[str]:
    return [e.event for e in events if isinstance(e, Health)]


def values(row: Funding) -> tuple[Any, ...]:
    return (row.funding_rate, row.funding_interval_s, row.next_funding_time, row.mark_px,
            row.index_px, row.open_interest)


# -- Bybit: tickers, a snapshot then partial deltas --------------------------------------------


def bybit_ticker(kind: str, ts_ms: int, **fields: str) -> str:
    return json.dumps({"topic": "tickers.BTCUSDT", "type": kind,
                       "data": {"symbol": "BTCUSDT", **fields}, "cs": 24987956059, "ts": ts_ms})


BYBIT_SNAPSHOT = dict(
    tickDirection="PlusTick", price24hPcnt="0.017103", lastPrice="65114.30",
    markPrice="65117.44", indexPrice="65137.76", openInterest="59891.732",
    openInterestValue="3899996265.01", turnover24h="1142118412.9021", volume24h="17573.9120",
    fundingIntervalHour="8", fundingCap="0.005", nextFundingTime=str(NEXT_MS),
    fundingRate="0.0001", bid1Price="65114.20", bid1Size="6.054", ask1Price="65114.30",
    ask1Size="10.486")


def bybit(channels: tuple[str, ...] = ("funding",), **inst: Any) -> BybitProtocol:
    instruments = {"BTC-USDT": Instrument(symbol="BTC-USDT", native="BTCUSDT", **inst)} \
        if inst else {}
    p = BybitProtocol(ProtocolConfig(symbols=("BTC-USDT",), channels=channels,
                                     instruments=instruments))
    p.connection_made(T0)
    return p


def test_bybit_subscribes_the_ticker_topic() -> None:
    p = bybit(("tob", "funding"))
    [frame] = p.frames_to_send()
    assert json.loads(frame)["args"] == ["orderbook.1.BTCUSDT", "tickers.BTCUSDT"]


def test_bybit_partial_deltas_are_merged_into_the_last_full_state() -> None:
    p = bybit()
    assert rows(p.receive(bybit_ticker("delta", T_MS, markPrice="1.0"), T0)) == []  # no state
    [row] = rows(p.receive(bybit_ticker("snapshot", T_MS + 1, **BYBIT_SNAPSHOT), T0 + 1))
    assert row.ts_exchange == (T_MS + 1) * MS_NS and row.ts_local == T0 + 1
    assert values(row) == (0.0001, 8 * 3600, NEXT_MS * MS_NS, 65117.44, 65137.76, 59891.732)
    # only the best bid moved: nothing of the funding channel changed, no row
    assert p.receive(bybit_ticker("delta", T_MS + 2, bid1Price="65114.10",
                                  bid1Size="1.0"), T0 + 2) == []
    # the mark and open interest moved: a row with every other value carried over
    [row] = rows(p.receive(bybit_ticker("delta", T_MS + 3, markPrice="65117.43",
                                        openInterestValue="3899995666.09",
                                        openInterest="59891.7"), T0 + 3))
    assert values(row) == (0.0001, 8 * 3600, NEXT_MS * MS_NS, 65117.43, 65137.76, 59891.7)
    # a funding: the next time and the rate move
    [row] = rows(p.receive(bybit_ticker("delta", T_MS + 4, fundingRate="-0.000212",
                                        nextFundingTime=str(NEXT_MS + H8_MS)), T0 + 4))
    assert values(row)[:3] == (-0.000212, 8 * 3600, (NEXT_MS + H8_MS) * MS_NS)
    assert row.mark_px == 65117.43


def test_bybit_after_a_reconnect_deltas_wait_for_the_new_snapshot() -> None:
    p = bybit()
    p.receive(bybit_ticker("snapshot", T_MS, **BYBIT_SNAPSHOT), T0)
    p.connection_lost(T0 + 1)
    p.connection_made(T0 + 2)
    assert rows(p.receive(bybit_ticker("delta", T_MS + 3, markPrice="1.5"), T0 + 3)) == []
    snap = {**BYBIT_SNAPSHOT, "markPrice": "65000.00"}
    [row] = rows(p.receive(bybit_ticker("snapshot", T_MS + 4, **snap), T0 + 4))
    assert row.mark_px == 65000.0


def test_bybit_interval_from_the_instrument_when_the_ticker_has_none() -> None:
    body = json.dumps({"retCode": 0, "result": {"category": "linear", "list": [{
        "symbol": "BTCUSDT", "contractType": "LinearPerpetual", "status": "Trading",
        "baseCoin": "BTC", "quoteCoin": "USDT", "fundingInterval": 240,
        "priceFilter": {"tickSize": "0.10"}, "lotSizeFilter": {"qtyStep": "0.001"}}]}})
    inst = BybitProtocol.parse_instruments(body.encode())["BTC-USDT"]
    assert inst.funding_interval_s == 4 * 3600
    p = bybit(funding_interval_s=inst.funding_interval_s)
    snap = {k: v for k, v in BYBIT_SNAPSHOT.items() if k != "fundingIntervalHour"}
    [row] = rows(p.receive(bybit_ticker("snapshot", T_MS, **snap), T0))
    assert row.funding_interval_s == 4 * 3600


@pytest.mark.parametrize("field", [
    {"markPrice": "NaN"}, {"markPrice": "-3"}, {"fundingRate": "inf"}, {"fundingRate": "1.5"},
    {"openInterest": "-1"}, {"nextFundingTime": "12"}, {"indexPrice": "abc"}])
def test_bybit_bad_values_are_decode_errors_and_leave_the_state(field: dict[str, str]) -> None:
    p = bybit()
    p.receive(bybit_ticker("snapshot", T_MS, **BYBIT_SNAPSHOT), T0)
    assert health(p.receive(bybit_ticker("delta", T_MS + 1, **field), T0 + 1)) == [
        HealthKind.DECODE_ERROR]
    [row] = rows(p.receive(bybit_ticker("delta", T_MS + 2, markPrice="65117.00"), T0 + 2))
    assert values(row) == (0.0001, 8 * 3600, NEXT_MS * MS_NS, 65117.0, 65137.76, 59891.732)


def test_bybit_real_capture_rows_are_the_merged_tickers() -> None:
    """Every ``tickers`` frame of the shared linear capture: each row equals a naive merge of
    every field the frames sent so far; a row only when a funding field changed."""
    from core.testing.captures import read_records
    from tests.conftest import sample

    path = sample("bybit", "BYBIT.jsonl.gz")
    symbols = ("BTC-USDT", "ETH-USDT", "SOL-USDT", "DOGE-USDT")
    fields = {"fundingRate": 0, "fundingIntervalHour": 1, "nextFundingTime": 2, "markPrice": 3,
              "indexPrice": 4, "openInterest": 5}
    protos: dict[str, BybitProtocol] = {}
    merged: dict[str, dict[str, str]] = {}
    frames = changes = n_rows = 0
    for rec in read_records(path):
        if rec.kind == "open" and rec.url and rec.url.endswith("/linear"):
            protos[rec.conn] = BybitProtocol(ProtocolConfig(symbols=symbols,
                                                            channels=("funding",)))
            protos[rec.conn].connection_made(rec.ts_ns)
        proto = protos.get(rec.conn)
        if rec.kind != "recv" or proto is None or '"tickers.' not in str(rec.frame)[:40]:
            continue
        msg = json.loads(rec.frame)
        sym = BybitProtocol.to_canonical(msg["data"]["symbol"])
        state = merged.setdefault(sym, {})
        before = {k: state.get(k) for k in fields}
        state.update(msg["data"])
        frames += 1
        changes += {k: state.get(k) for k in fields} != before
        events = proto.receive(rec.frame, rec.ts_ns)
        assert health(events) == []
        for row in rows(events):
            n_rows += 1
            want = (float(state["fundingRate"]), int(state["fundingIntervalHour"]) * 3600,
                    int(state["nextFundingTime"]) * MS_NS, float(state["markPrice"]),
                    float(state["indexPrice"]), float(state["openInterest"]))
            assert values(row) == want, (sym, msg)
            assert row.ts_exchange == msg["ts"] * MS_NS
    assert frames > 500 and n_rows == changes > 50


# -- HTX: REST polling ----------------------------------------------------------------------------


HTX_BTC = Instrument(symbol="BTC-USDT", native="BTC-USDT", contract_size=0.001, tick_size=0.1)


def htx(**options: str) -> HtxProtocol:
    p = HtxProtocol(ProtocolConfig(symbols=("BTC-USDT",), channels=("tob", "funding"),
                                   instruments={"BTC-USDT": HTX_BTC}, options=options))
    p.connection_made(T0)
    p.frames_to_send()
    return p


def htx_body(path: str, ts_ms: int = T_MS) -> bytes:
    if "swap_funding_rate" in path:
        data: Any = {"estimated_rate": None, "funding_rate": "0.000100000000000000",
                     "contract_code": "BTC-USDT", "symbol": "BTC", "fee_asset": "USDT",
                     "funding_time": str(NEXT_MS), "next_funding_time": str(NEXT_MS + H8_MS)}
    elif "swap_open_interest" in path:
        data = [{"volume": 7192610.0, "amount": 7192.61, "symbol": "BTC", "value": 4.6e8,
                 "contract_code": "BTC-USDT", "trade_amount": 1.0, "trade_volume": 1000.0,
                 "trade_turnover": 65000.0, "business_type": "swap", "pair": "BTC-USDT",
                 "contract_type": "swap"}]
    elif "swap_index" in path:
        data = [{"index_price": 65137.7, "index_ts": ts_ms - 10, "contract_code": "BTC-USDT"}]
    else:
        data = [{"id": ts_ms // 60_000 * 60, "open": "65110.1", "close": "65117.4",
                 "low": "65100.0", "high": "65120.0", "amount": "0", "vol": "0", "count": "0",
                 "trade_turnover": "0"}]
    return json.dumps({"status": "ok", "data": data, "ts": ts_ms}).encode()


def answer_all(p: ExchangeProtocol, t: int, bodies: dict[str, bytes] | None = None
               ) -> list[Event]:
    """Answer every REST call the protocol asks for (and those it asks for meanwhile)."""
    events: list[Event] = []
    queue = p.rest_requests_to_send()
    while queue:
        req = queue.pop(0)
        body = (bodies or {}).get(req.path.split("?")[0]) or htx_body(req.path, t // MS_NS)
        events += p.rest_response(req.key, 200, body, t, None, sent_ns=t - 1000)
        queue += p.rest_requests_to_send()
    return events


def test_htx_polls_four_endpoints_per_symbol_and_writes_one_row() -> None:
    p = htx()
    assert p.next_deadline() == T0
    p.on_deadline(T0)
    first = p.rest_requests_to_send()
    assert len(first) == 3  # at most three calls out at once
    assert [r.path for r in first] == [
        "/linear-swap-api/v1/swap_funding_rate?contract_code=BTC-USDT",
        "/linear-swap-api/v1/swap_open_interest?contract_code=BTC-USDT",
        "/linear-swap-api/v1/swap_index?contract_code=BTC-USDT"]
    events: list[Event] = []
    for req in first:
        events += p.rest_response(req.key, 200, htx_body(req.path), T0 + 5, None)
    [mark] = p.rest_requests_to_send()
    assert mark.path == ("/linear-swap-ex/market/history/mark_price_kline?"
                         "contract_code=BTC-USDT&period=1min&size=1")
    assert rows(events) == []  # a row once the symbol's four answers are in
    [row] = rows(p.rest_response(mark.key, 200, htx_body(mark.path), T0 + 9, None))
    assert values(row) == (0.0001, 8 * 3600, NEXT_MS * MS_NS, 65117.4, 65137.7, 7192.61)
    assert row.ts_local == T0 + 9 and row.ts_exchange == T0
    assert p.next_deadline() == T0 + 5 * S_NS  # the option's default period
    # the next round: nothing changed, no row
    p.on_deadline(T0 + 5 * S_NS)
    assert rows(answer_all(p, T0 + 5 * S_NS + 1)) == []


def test_htx_a_failed_poll_is_reported_once_and_keeps_the_values() -> None:
    p = htx(funding_poll_s="1")
    p.on_deadline(T0)
    [first] = rows(answer_all(p, T0 + 1))
    error = json.dumps({"status": "error", "err_code": 1014,
                        "err_msg": "This contract doesnt exist.", "ts": T_MS}).encode()
    for k in (1, 2):
        p.on_deadline(T0 + k * S_NS)
        events = answer_all(p, T0 + k * S_NS + 1,
                            {"/linear-swap-api/v1/swap_index": error})
        assert rows(events) == []  # the others did not change; the index stays as it was
        assert health(events) == ([HealthKind.VENUE_ERROR] if k == 1 else [])
    assert p.funding.values("BTC-USDT")["index_px"] == first.index_px


def test_htx_a_malformed_answer_is_a_decode_error_and_the_round_still_completes() -> None:
    p = htx()
    p.on_deadline(T0)
    bad = json.dumps({"status": "ok", "data": [{"contract_code": "BTC-USDT",
                                                 "index_price": "NaN"}], "ts": T_MS}).encode()
    events = answer_all(p, T0 + 1, {"/linear-swap-api/v1/swap_index": bad})
    assert health(events) == [HealthKind.DECODE_ERROR]
    [row] = rows(events)
    assert row.index_px is None and row.mark_px == 65117.4


# -- Bitget: ticker ----------------------------------------------------------------------------


def bitget_ticker(**over: str) -> str:
    entry = {"instId": "BTCUSDT", "lastPr": "65114.3", "bidPr": "65114.2", "askPr": "65114.3",
             "bidSz": "2.71", "askSz": "8.76", "open24h": "65000.5", "high24h": "65300.0",
             "low24h": "64900.0", "change24h": "0.0016", "fundingRate": "0.000010",
             "nextFundingTime": str(NEXT_MS), "markPrice": "65117.4", "indexPrice": "65137.7",
             "holdingAmount": "929.502", "baseVolume": "368.900",
             "quoteVolume": "10152429.961", "openUtc": "65000.5", "symbolType": 1,
             "symbol": "BTCUSDT", "deliveryPrice": "0", "ts": str(T_MS), **over}
    return json.dumps({"action": "snapshot", "arg": {"instType": "USDT-FUTURES",
                                                      "channel": "ticker", "instId": "BTCUSDT"},
                       "data": [entry], "ts": T_MS + 2})


def test_bitget_ticker_rows_and_the_contract_interval() -> None:
    body = json.dumps({"code": "00000", "msg": "success", "data": [{
        "symbol": "BTCUSDT", "baseCoin": "BTC", "quoteCoin": "USDT", "pricePlace": "1",
        "priceEndStep": "1", "sizeMultiplier": "0.001", "symbolType": "perpetual",
        "symbolStatus": "normal", "fundInterval": "8"}]}).encode()
    inst = BitgetProtocol.parse_instruments(body)
    p = BitgetProtocol(ProtocolConfig(symbols=("BTC-USDT",), channels=("funding",),
                                      instruments=inst))
    p.connection_made(T0)
    [frame] = p.frames_to_send()
    assert json.loads(frame)["args"] == [{"instType": "USDT-FUTURES", "channel": "ticker",
                                          "instId": "BTCUSDT"}]
    [row] = rows(p.receive(bitget_ticker(), T0 + 1))
    assert values(row) == (0.00001, 8 * 3600, NEXT_MS * MS_NS, 65117.4, 65137.7, 929.502)
    assert row.ts_exchange == T0
    assert p.receive(bitget_ticker(lastPr="65114.4", ts=str(T_MS + 5)), T0 + 2) == []
    [row] = rows(p.receive(bitget_ticker(holdingAmount="930"), T0 + 3))
    assert row.open_interest == 930.0
    assert health(p.receive(bitget_ticker(fundingRate="abc"), T0 + 4)) == [
        HealthKind.DECODE_ERROR]


# -- Gate: futures.tickers -------------------------------------------------------------------------


def test_gate_tickers_with_the_contract_schedule() -> None:
    body = json.dumps([{"name": "BTC_USDT", "quanto_multiplier": "0.0001",
                        "order_price_round": "0.1", "funding_interval": 28800,
                        "funding_next_apply": NEXT_MS / 1000, "funding_rate": "0.0001"}])
    inst = GateioProtocol.parse_instruments(body.encode())
    assert inst["BTC-USDT"].funding_interval_s == 28800
    assert inst["BTC-USDT"].next_funding_ns == NEXT_MS * MS_NS
    p = GateioProtocol(ProtocolConfig(symbols=("BTC-USDT",), channels=("funding",),
                                      instruments=inst))
    p.connection_made(T0)
    [frame] = p.frames_to_send()
    req = json.loads(frame)
    assert (req["channel"], req["event"], req["payload"]) == (
        "futures.tickers", "subscribe", ["BTC_USDT"])

    def push(time_ms: int, **over: str) -> str:
        return json.dumps({"time": time_ms // 1000, "time_ms": time_ms,
                           "channel": "futures.tickers", "event": "update", "result": [{
                               "contract": "BTC_USDT", "last": "65114.3",
                               "change_percentage": "0.16", "funding_rate": "0.000117",
                               "funding_rate_indicative": "0.000117", "mark_price": "65117.4",
                               "index_price": "65137.7", "total_size": "73648",
                               "volume_24h": "745487577", "quanto_base_rate": "",
                               "low_24h": "64900", "high_24h": "65300", **over}]})

    [row] = rows(p.receive(push(T_MS), T0 + 1))
    assert values(row) == (0.000117, 28800, NEXT_MS * MS_NS, 65117.4, 65137.7, 7.3648)
    assert row.ts_exchange == T0
    # after the funding time the next one is a whole interval later: a new row
    after = NEXT_MS + 1000
    [row] = rows(p.receive(push(after), after * MS_NS))
    assert row.next_funding_time == (NEXT_MS + H8_MS) * MS_NS
    assert health(p.receive(push(after, mark_price="-1"), after * MS_NS)) == [
        HealthKind.DECODE_ERROR]


# -- Binance: markPrice on the market lane, open interest polled -------------------------------


def test_binance_mark_price_stream_and_open_interest_poll() -> None:
    config = ProtocolConfig(symbols=("BTC-USDT",), channels=("tob", "trades", "funding"),
                            clock_sync_s=300)
    plan = BinanceProtocol.lane_plan(config)
    assert [(lane.path, c.channels, c.clock_sync_s) for lane, c in plan] == [
        ("/public/ws", ("tob",), 300), ("/market/ws", ("trades", "funding"), 0.0)]
    p = BinanceProtocol(plan[1][1])
    p.connection_made(T0)
    [frame] = p.frames_to_send()
    assert json.loads(frame)["params"] == ["btcusdt@aggTrade", "btcusdt@markPrice@1s"]
    mark = json.dumps({"e": "markPriceUpdate", "E": T_MS, "s": "BTCUSDT",
                       "p": "65117.44000000", "i": "65137.76659091", "P": "65130.2564",
                       "r": "0.00038167", "T": NEXT_MS})
    [row] = rows(p.receive(mark, T0 + 1))
    assert values(row) == (0.00038167, None, NEXT_MS * MS_NS, 65117.44, 65137.76659091, None)
    assert row.ts_exchange == T0
    assert p.receive(mark, T0 + 2) == []
    # open interest: polled, one call at a time
    assert p.next_deadline() == T0
    p.on_deadline(T0)
    [req] = p.rest_requests_to_send()
    assert req.path == "/fapi/v1/openInterest?symbol=BTCUSDT"
    body = json.dumps({"openInterest": "10659.509", "symbol": "BTCUSDT",
                       "time": T_MS + 5}).encode()
    [row] = rows(p.rest_response(req.key, 200, body, T0 + 10, None))
    assert row.open_interest == 10659.509 and row.mark_px == 65117.44
    assert row.ts_exchange == (T_MS + 5) * MS_NS
    assert p.next_deadline() == T0 + 10 * S_NS
    # a failed poll: a venue_error row with the reason; the next round asks again
    p.on_deadline(T0 + 10 * S_NS)
    [req] = p.rest_requests_to_send()
    events = p.rest_response(req.key, 429, b'{"code":-1003,"msg":"Too many requests"}',
                             T0 + 11 * S_NS, "HTTP 429")
    assert health(events) == [HealthKind.VENUE_ERROR] and "HTTP 429" in events[0].detail
    assert p.next_deadline() == T0 + 20 * S_NS


# -- OKX: funding-rate, mark-price, open-interest, index-tickers ----------------------------------


OKX_BTC = Instrument(symbol="BTC-USDT", native="BTC-USDT-SWAP", contract_size=0.01,
                     tick_size=0.1, lot_size=0.0001)


def okx_push(channel: str, inst: str, entry: dict[str, Any]) -> str:
    return json.dumps({"arg": {"channel": channel, "instId": inst}, "data": [entry]})


def test_okx_four_channels_merge_into_one_state() -> None:
    p = OkxProtocol(ProtocolConfig(symbols=("BTC-USDT",), channels=("funding",),
                                   instruments={"BTC-USDT": OKX_BTC}))
    p.connection_made(T0)
    [frame] = p.frames_to_send()
    assert json.loads(frame)["args"] == [
        {"channel": "funding-rate", "instId": "BTC-USDT-SWAP"},
        {"channel": "mark-price", "instId": "BTC-USDT-SWAP"},
        {"channel": "open-interest", "instId": "BTC-USDT-SWAP"},
        {"channel": "index-tickers", "instId": "BTC-USDT"}]
    ack = json.dumps({"event": "subscribe", "arg": {"channel": "index-tickers",
                                                    "instId": "BTC-USDT"}, "connId": "a4d3ae55"})
    [sub] = p.receive(ack, T0)
    assert isinstance(sub, Health) and (sub.event, sub.symbol) == ("subscribed", "BTC-USDT")
    [row] = rows(p.receive(okx_push("funding-rate", "BTC-USDT-SWAP", {
        "formulaType": "withRate", "fundingRate": "0.0001515", "fundingTime": str(NEXT_MS),
        "impactValue": "20000", "instId": "BTC-USDT-SWAP", "instType": "SWAP",
        "interestRate": "0.0001", "maxFundingRate": "0.00375", "method": "current_period",
        "minFundingRate": "-0.00375", "nextFundingRate": "", "nextFundingTime":
        str(NEXT_MS + H8_MS), "premium": "0.0001233", "settFundingRate": "0.0001699",
        "settState": "settled", "sprdRate": "0.0001", "ts": str(T_MS)}), T0 + 1))
    assert values(row) == (0.0001515, 8 * 3600, NEXT_MS * MS_NS, None, None, None)
    [row] = rows(p.receive(okx_push("mark-price", "BTC-USDT-SWAP", {
        "instType": "SWAP", "instId": "BTC-USDT-SWAP", "markPx": "65117.4",
        "ts": str(T_MS + 2)}), T0 + 2))
    assert row.mark_px == 65117.4 and row.funding_rate == 0.0001515
    [row] = rows(p.receive(okx_push("open-interest", "BTC-USDT-SWAP", {
        "instType": "SWAP", "instId": "BTC-USDT-SWAP", "oi": "2216113.01", "oiCcy":
        "22161.1301", "oiUsd": "1443213472.45", "ts": str(T_MS + 3)}), T0 + 3))
    assert row.open_interest == pytest.approx(22161.1301)
    [row] = rows(p.receive(okx_push("index-tickers", "BTC-USDT", {
        "instId": "BTC-USDT", "idxPx": "65137.7", "high24h": "65300", "sodUtc0": "65000",
        "open24h": "65000", "low24h": "64900", "sodUtc8": "65000", "ts": str(T_MS + 4)}),
        T0 + 4))
    assert values(row)[3:5] == (65117.4, 65137.7)
    assert row.ts_exchange == (T_MS + 4) * MS_NS
    assert health(p.receive(okx_push("mark-price", "BTC-USDT-SWAP", {
        "instId": "BTC-USDT-SWAP", "markPx": "0", "ts": str(T_MS)}), T0 + 5)) == [
        HealthKind.DECODE_ERROR]


# -- server time -------------------------------------------------------------------------------


@pytest.mark.parametrize(("proto", "path", "body", "ns"), [
    (BybitProtocol, "/v5/market/time",
     {"retCode": 0, "retMsg": "OK", "result": {"timeSecond": "1688639403",
                                               "timeNano": "1688639403423213947"},
      "retExtInfo": {}, "time": 1688639403423}, 1688639403423213947),
    (HtxProtocol, "/api/v1/timestamp", {"status": "ok", "ts": 1578124684692},
     1578124684692 * MS_NS),
    (BitgetProtocol, "/api/v2/public/time",
     {"code": "00000", "msg": "success", "requestTime": 1688008631614,
      "data": {"serverTime": "1688008631614"}}, 1688008631614 * MS_NS),
    (GateioProtocol, "/api/v4/spot/time", {"server_time": 1597026383085},
     1597026383085 * MS_NS),
    (BinanceProtocol, "/fapi/v1/time", {"serverTime": 1499827319559}, 1499827319559 * MS_NS),
    (OkxProtocol, "/api/v5/public/time", {"code": "0", "msg": "",
                                          "data": [{"ts": "1597026383085"}]},
     1597026383085 * MS_NS),
    (CoinbaseProtocol, "/api/v3/brokerage/time",
     {"iso": "2023-11-14T22:13:20Z", "epochSeconds": "1700000000",
      "epochMillis": "1700000000000"}, 1_700_000_000 * S_NS),
    (CoinbaseExchangeProtocol, "/time", {"iso": "2015-01-07T23:47:25.201Z",
                                         "epoch": 1420674445.201}, 1420674445201 * MS_NS),
])
def test_server_time_endpoints(proto: type[ExchangeProtocol], path: str, body: dict[str, Any],
                               ns: int) -> None:
    assert proto.server_time_path == path
    assert proto.parse_server_time(json.dumps(body).encode()) == ns


def test_coinbase_venues_have_no_funding_channel() -> None:
    assert "funding" not in CoinbaseProtocol.channels
    assert "funding" not in CoinbaseExchangeProtocol.channels


def test_every_perpetual_venue_serves_funding() -> None:
    for proto in (BybitProtocol, HtxProtocol, BitgetProtocol, GateioProtocol, BinanceProtocol,
                  OkxProtocol):
        assert "funding" in proto.channels, proto.name
