"""Scripts and REST bodies for the tests that still run on the scripted loopback fakes of this
folder (the Redis Streams tests, the six-venue command, the write path); the other tests use
the fake venues of ``core.sim``."""

from __future__ import annotations

import json

from tests.fakes.bitget import BookScript, Wire
from tests.fakes.bybit import book_msg, trade_msg
from tests.fakes.htx import depth_tick

T_MS = 1_786_310_818_000


INSTRUMENTS = json.dumps({"retCode": 0, "result": {"category": "linear", "list": [
    {"symbol": s, "contractType": "LinearPerpetual", "status": "Trading", "baseCoin": b,
     "quoteCoin": "USDT", "priceFilter": {"tickSize": "0.10"},
     "lotSizeFilter": {"qtyStep": "0.001"}} for s, b in (("BTCUSDT", "BTC"), ("ETHUSDT", "ETH"))
]}}).encode()


def btc_script() -> dict:
    return {
        "orderbook.1.BTCUSDT": [
            book_msg("BTCUSDT", "snapshot", [["100.0", "1"]], [["101.0", "2"]], 1, T_MS, depth=1),
            book_msg("BTCUSDT", "snapshot", [["100.0", "1"]], [["101.0", "2"]], 1, T_MS + 1,
                     depth=1),
            book_msg("BTCUSDT", "snapshot", [["100.0", "1.5"]], [["101.0", "2"]], 2, T_MS + 2,
                     depth=1),
        ],
        "orderbook.50.BTCUSDT": [
            book_msg("BTCUSDT", "snapshot", [["100.0", "1"], ["99.0", "2"]],
                     [["101.0", "2"], ["102.0", "3"]], 10, T_MS + 10),
            book_msg("BTCUSDT", "delta", [["99.0", "0"]], [["101.5", "1"]], 11, T_MS + 11),
        ],
        "publicTrade.BTCUSDT": [
            trade_msg("BTCUSDT", [(T_MS + 20, "Buy", "0.5", "101.0", "t1"),
                                  (T_MS + 21, "Sell", "0.25", "100.0", "t2")], T_MS + 22),
        ],
    }


REST_PATH = "/v5/market/instruments-info?category=linear&limit=1000"


def endless_script(n: int = 4000) -> dict:
    """A snapshot, then a steady stream of deltas (5 ms apart on the fake)."""
    msgs = [book_msg("BTCUSDT", "snapshot", [["100.0", "1"]], [["101.0", "1"]], 1, T_MS)]
    msgs += [book_msg("BTCUSDT", "delta", [["100.0", str(1 + i % 7)]], [], i + 1, T_MS + i)
             for i in range(1, n)]
    return {"orderbook.50.BTCUSDT": msgs}


BITGET_CONTRACTS_PATH = "/api/v2/mix/market/contracts?productType=USDT-FUTURES"


BITGET_CONTRACTS = json.dumps({"code": "00000", "msg": "success", "requestTime": 1, "data": [
    {"symbol": f"{b}USDT", "baseCoin": b, "quoteCoin": "USDT", "pricePlace": p,
     "priceEndStep": "1", "volumePlace": "3", "sizeMultiplier": "0.001",
     "symbolType": "perpetual", "symbolStatus": "normal"} for b, p in (("BTC", "1"), ("ETH", "2"))
]}).encode()


BTC_SEQ0 = 2**53 + 11  # above 2^53: must survive as an exact Int64


TS0 = 1_786_310_818_000


def bitget_btc_script() -> BookScript:
    bids: Wire = [(f"{50000 - i}.{i % 10}", f"{i + 1}.0{i % 10}") for i in range(28)]
    asks: Wire = [(f"{50001 + i}.0", f"0.{i + 1:02d}") for i in range(28)]
    updates: list[tuple[Wire, Wire]] = [
        ([(f"{50000 - (i % 5)}.{i % 5}", f"{i + 2}.50")],
         [(f"{50001 + (i % 3)}.0", "0" if i % 4 == 3 else f"0.{i + 3}")])
        for i in range(14)]
    return BookScript(bids, asks, updates, seq0=BTC_SEQ0, seq_step=2, ts0_ms=TS0, ts_step_ms=7)


GATE_CONTRACTS_PATH = "/api/v4/futures/usdt/contracts"


def gate_contracts() -> bytes:
    return json.dumps([
        {"name": "BTC_USDT", "type": "direct", "quanto_multiplier": "0.0001",
         "order_price_round": "0.1", "order_size_min": 1, "in_delisting": False},
        {"name": "ETH_USDT", "type": "direct", "quanto_multiplier": "0.01",
         "order_price_round": "0.01", "order_size_min": 1, "in_delisting": False},
    ]).encode()


HTX_CONTRACT_INFO_PATH = "/linear-swap-api/v1/swap_contract_info"
TS_MS = 1_700_000_000_500


def htx_contract_info() -> bytes:
    return json.dumps({"status": "ok", "ts": TS_MS, "data": [
        {"symbol": "BTC", "contract_code": "BTC-USDT", "contract_size": 0.001, "price_tick": 0.1,
         "contract_status": 1, "business_type": "swap", "contract_type": "swap",
         "pair": "BTC-USDT"},
        {"symbol": "ETH", "contract_code": "ETH-USDT", "contract_size": 0.01, "price_tick": 0.01,
         "contract_status": 1, "business_type": "swap", "contract_type": "swap",
         "pair": "ETH-USDT"},
    ]}).encode()


HTX_TOPIC = "market.BTC-USDT.depth.size_20.high_freq"
HTX_BID, HTX_BID_SZ, HTX_ASK, HTX_ASK_SZ = 99.9, 0.8, 100.0, 0.5  # 800 and 500 contracts


def htx_script() -> dict:
    return {HTX_TOPIC: [depth_tick("snapshot", [[HTX_BID, 800]], [[HTX_ASK, 500]])]}
