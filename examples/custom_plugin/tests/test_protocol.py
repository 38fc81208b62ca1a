"""The example plugin's own tests: the shared conformance checks plus frames in Binance's wire
format. Run them from examples/custom_plugin with ``python -m pytest``."""

from __future__ import annotations

import json

from bookwire_binance.protocol import BinanceFuturesProtocol

from core.protocol import ProtocolConfig
from core.schema import TopOfBook, Trade
from core.testing.conformance import check_protocol

CONFIG = ProtocolConfig(symbols=("BTC-USDT",), channels=("tob", "trades"))
T0 = 1_700_000_000_000_000_000


def test_conformance() -> None:
    check_protocol(BinanceFuturesProtocol, CONFIG)


def test_subscribe_tob_and_trades() -> None:
    proto = BinanceFuturesProtocol(CONFIG)
    proto.connection_made(T0)
    [frame] = proto.frames_to_send()
    assert json.loads(frame) == {"method": "SUBSCRIBE", "id": 1,
                                 "params": ["btcusdt@bookTicker", "btcusdt@aggTrade"]}
    [ack] = proto.receive('{"result":null,"id":1}', T0)
    assert ack.event == "subscribed"


def test_book_ticker_and_agg_trade() -> None:
    proto = BinanceFuturesProtocol(CONFIG)
    proto.connection_made(T0)
    tick = json.dumps({"e": "bookTicker", "u": 600859600576, "s": "BTCUSDT", "b": "65000.10",
                       "B": "2.5", "a": "65000.20", "A": "0.75", "T": 1700000000123,
                       "E": 1700000000125})
    [tob] = proto.receive(tick, T0)
    assert isinstance(tob, TopOfBook)
    assert (tob.symbol, tob.bid_px, tob.bid_sz, tob.ask_px, tob.ask_sz, tob.seq) == (
        "BTC-USDT", 65000.1, 2.5, 65000.2, 0.75, 600859600576)
    assert proto.receive(tick, T0 + 1) == []  # unchanged top: no row
    trade = json.dumps({"e": "aggTrade", "E": 1, "s": "BTCUSDT", "a": 26129, "p": "65000.10",
                        "q": "0.010", "f": 100, "l": 105, "T": 1700000000200, "m": True})
    [t] = proto.receive(trade, T0 + 2)
    assert isinstance(t, Trade)
    assert (t.side, t.size, t.price, t.trade_id) == ("sell", 0.01, 65000.1, "26129")
