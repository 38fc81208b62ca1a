"""Realistic frames in each venue's wire format, for the benchmarks.

Every venue gets a book of 200 levels per side around a mid price, then a stream of incremental
updates touching 1 to 6 levels per side within 30 ticks of the touch (a fifth of them removals),
which is what a liquid perpetual's depth stream looks like between trades; plus trade and
top-of-book frames. Sequence numbers chain the way each venue chains them (Binance's
``U``/``u``/``pu``, OKX's ``prevSeqId``/``seqId``), and Bitget and OKX frames carry the venue's
CRC32 checksum of the resulting book, so every frame is accepted by the plugin.

``stream(venue, n)`` returns ``(config, frames)``: the plugin configuration the frames were made
for, and the frames (str, or bytes for HTX's gzip members) with the book's snapshot first. For
Binance the snapshot is the body of the REST ``GET /fapi/v1/depth`` answer (bytes), which the
venue's procedure bridges with the first diff (``U <= lastUpdateId <= u``).
"""

from __future__ import annotations

import gzip
import json
import random
import zlib
from collections.abc import Callable

from core.protocol import Instrument, ProtocolConfig

MID = 65_000.0
TICK = 0.1
DEPTH = 200
T0_MS = 1_786_310_818_000
EVENT_TIME = "2026-08-09T21:05:48.170326Z"


class Book:
    """The reference book the frames describe, levels kept as wire text."""

    def __init__(self, rng: random.Random, size_scale: float = 1.0) -> None:
        self.rng = rng
        self.scale = size_scale
        self.bids: dict[str, str] = {}
        self.asks: dict[str, str] = {}
        for i in range(DEPTH):
            self.bids[self.px(MID - TICK * (i + 1))] = self.size()
            self.asks[self.px(MID + TICK * i)] = self.size()

    @staticmethod
    def px(p: float) -> str:
        return f"{p:.1f}"

    def size(self) -> str:
        return f"{self.rng.uniform(0.001, 5) * self.scale:.3f}"

    def delta(self) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        rng = self.rng
        bids = [(self.px(MID - TICK * rng.randint(1, 30)),
                 "0" if rng.random() < 0.2 else self.size()) for _ in range(rng.randint(1, 6))]
        asks = [(self.px(MID + TICK * rng.randint(0, 29)),
                 "0" if rng.random() < 0.2 else self.size()) for _ in range(rng.randint(1, 6))]
        bids = list(dict(bids).items())  # one entry per price, as venues send
        asks = list(dict(asks).items())
        for side, levels in ((self.bids, bids), (self.asks, asks)):
            for p, s in levels:
                if float(s) == 0:
                    side.pop(p, None)
                else:
                    side[p] = s
        return bids, asks

    def top(self, side: str, n: int) -> list[tuple[str, str]]:
        levels = self.bids if side == "bid" else self.asks
        keys = sorted(levels, key=float, reverse=side == "bid")[:n]
        return [(k, levels[k]) for k in keys]


def _dumps(obj: object) -> str:
    return json.dumps(obj, separators=(",", ":"))


def bybit(n: int, rng: random.Random) -> tuple[ProtocolConfig, list[str | bytes]]:
    book = Book(rng)
    frames: list[str | bytes] = [_dumps({
        "topic": "orderbook.50.BTCUSDT", "type": "snapshot", "ts": T0_MS,
        "data": {"s": "BTCUSDT", "b": book.top("bid", DEPTH), "a": book.top("ask", DEPTH),
                 "u": 1, "seq": 1000}, "cts": T0_MS - 1})]
    for u in range(2, n + 1):
        b, a = book.delta()
        frames.append(_dumps({"topic": "orderbook.50.BTCUSDT", "type": "delta", "ts": T0_MS + u,
                              "data": {"s": "BTCUSDT", "b": b, "a": a, "u": u, "seq": 1000 + u},
                              "cts": T0_MS + u - 1}))
    return ProtocolConfig(symbols=("BTC-USDT",), channels=("l2",)), frames


def bybit_trades(n: int, rng: random.Random) -> tuple[ProtocolConfig, list[str | bytes]]:
    frames: list[str | bytes] = []
    for i in range(n):
        trades = [{"T": T0_MS + i, "s": "BTCUSDT", "S": rng.choice(("Buy", "Sell")),
                   "v": f"{rng.uniform(0.001, 2):.3f}",
                   "p": f"{MID + rng.randint(-5, 5) * TICK:.1f}",
                   "L": "PlusTick", "i": f"{i:08d}-aaaa-bbbb", "BT": False, "seq": 1000 + i}
                  for _ in range(rng.randint(1, 3))]
        frames.append(_dumps({"topic": "publicTrade.BTCUSDT", "type": "snapshot",
                              "ts": T0_MS + i, "data": trades}))
    return ProtocolConfig(symbols=("BTC-USDT",), channels=("trades",)), frames


def htx(n: int, rng: random.Random) -> tuple[ProtocolConfig, list[str | bytes]]:
    book = Book(rng, size_scale=1000)  # contracts of 0.001 BTC
    ch = "market.BTC-USDT.depth.size_20.high_freq"

    def nums(levels: list[tuple[str, str]]) -> list[list[float]]:
        return [[float(p), float(s)] for p, s in levels]

    frames: list[str | bytes] = [gzip.compress(_dumps({
        "ch": ch, "ts": T0_MS, "tick": {
            "bids": nums(book.top("bid", 20)), "asks": nums(book.top("ask", 20)),
            "ch": ch, "event": "snapshot", "id": 1, "mrid": 1, "ts": T0_MS, "version": 1}}
    ).encode())]
    for v in range(2, n + 1):
        b, a = book.delta()
        frames.append(gzip.compress(_dumps({
            "ch": ch, "ts": T0_MS + v, "tick": {
                "bids": nums(b), "asks": nums(a), "ch": ch, "event": "update", "id": v,
                "mrid": v, "ts": T0_MS + v, "version": v}}).encode()))
    inst = Instrument(symbol="BTC-USDT", native="BTC-USDT", contract_size=0.001, tick_size=0.1)
    return ProtocolConfig(symbols=("BTC-USDT",), channels=("l2",),
                          instruments={"BTC-USDT": inst}), frames


def _checksum25(book: Book) -> int:
    """Bitget's and OKX's checksum: CRC32 of the best 25 levels per side, interleaved
    (``bid1px:bid1sz:ask1px:ask1sz:...``), wire text, read as a signed 32-bit integer."""
    bids, asks = book.top("bid", 25), book.top("ask", 25)
    parts: list[str] = []
    for i in range(25):
        if i < len(bids):
            parts.extend(bids[i])
        if i < len(asks):
            parts.extend(asks[i])
    crc = zlib.crc32(":".join(parts).encode())
    return crc - (1 << 32) if crc >= 1 << 31 else crc


def bitget(n: int, rng: random.Random) -> tuple[ProtocolConfig, list[str | bytes]]:
    book = Book(rng)
    arg = {"instType": "USDT-FUTURES", "channel": "books", "instId": "BTCUSDT"}
    frames: list[str | bytes] = [_dumps({"action": "snapshot", "arg": arg, "data": [{
        "asks": book.top("ask", DEPTH), "bids": book.top("bid", DEPTH),
        "checksum": _checksum25(book), "seq": 1, "pseq": 0, "ts": str(T0_MS)}],
        "ts": T0_MS})]
    for s in range(2, n + 1):
        b, a = book.delta()
        frames.append(_dumps({"action": "update", "arg": arg, "data": [{
            "asks": a, "bids": b, "checksum": _checksum25(book), "seq": s, "pseq": s - 1,
            "ts": str(T0_MS + s)}], "ts": T0_MS + s}))
    return ProtocolConfig(symbols=("BTC-USDT",), channels=("l2",)), frames


def gateio(n: int, rng: random.Random) -> tuple[ProtocolConfig, list[str | bytes]]:
    book = Book(rng, size_scale=10_000)  # contracts of 0.0001 BTC
    frames: list[str | bytes] = [_dumps({
        "time": T0_MS // 1000, "time_ms": T0_MS, "channel": "futures.obu", "event": "update",
        "result": {"t": T0_MS, "full": True, "s": "ob.BTC_USDT.50", "u": 1,
                   "b": book.top("bid", 50), "a": book.top("ask", 50)}})]
    for u in range(2, n + 1):
        b, a = book.delta()
        frames.append(_dumps({
            "time": (T0_MS + u) // 1000, "time_ms": T0_MS + u, "channel": "futures.obu",
            "event": "update", "result": {"t": T0_MS + u, "s": "ob.BTC_USDT.50", "U": u,
                                          "u": u, "b": b, "a": a}}))
    inst = Instrument(symbol="BTC-USDT", native="BTC_USDT", contract_size=0.0001, tick_size=0.1)
    return ProtocolConfig(symbols=("BTC-USDT",), channels=("l2",),
                          instruments={"BTC-USDT": inst}), frames


def coinbase(n: int, rng: random.Random) -> tuple[ProtocolConfig, list[str | bytes]]:
    book = Book(rng)

    def updates(b: list[tuple[str, str]], a: list[tuple[str, str]]) -> list[dict[str, str]]:
        return ([{"side": "bid", "event_time": EVENT_TIME, "price_level": p, "new_quantity": s}
                 for p, s in b]
                + [{"side": "offer", "event_time": EVENT_TIME, "price_level": p,
                    "new_quantity": s} for p, s in a])

    frames: list[str | bytes] = [_dumps({
        "channel": "l2_data", "client_id": "", "timestamp": "2026-08-09T21:05:48.483587501Z",
        "sequence_num": 0, "events": [{"type": "snapshot", "product_id": "BTC-USD",
                                       "updates": updates(book.top("bid", DEPTH),
                                                          book.top("ask", DEPTH))}]})]
    for i in range(1, n):
        b, a = book.delta()
        frames.append(_dumps({
            "channel": "l2_data", "client_id": "", "timestamp": "2026-08-09T21:05:48.505350477Z",
            "sequence_num": i, "events": [{"type": "update", "product_id": "BTC-USD",
                                           "updates": updates(b, a)}]}))
    return ProtocolConfig(symbols=("BTC-USD",), channels=("l2",)), frames


def coinbase_exchange(n: int, rng: random.Random) -> tuple[ProtocolConfig, list[str | bytes]]:
    book = Book(rng)
    frames: list[str | bytes] = [_dumps({
        "type": "snapshot", "product_id": "BTC-USD", "bids": book.top("bid", DEPTH),
        "asks": book.top("ask", DEPTH), "time": "2026-08-09T21:05:48.100000Z"})]
    for _ in range(1, n):
        b, a = book.delta()
        changes = [["buy", p, s] for p, s in b] + [["sell", p, s] for p, s in a]
        frames.append(_dumps({"type": "l2update", "product_id": "BTC-USD", "changes": changes,
                              "time": "2026-08-09T21:05:48.505350Z"}))
    return ProtocolConfig(symbols=("BTC-USD",), channels=("l2",)), frames


def binance(n: int, rng: random.Random) -> tuple[ProtocolConfig, list[str | bytes]]:
    book = Book(rng)
    last = 8_312_000_000  # lastUpdateId of the REST snapshot
    frames: list[str | bytes] = [_dumps({
        "lastUpdateId": last, "E": T0_MS, "T": T0_MS - 1,
        "bids": book.top("bid", DEPTH), "asks": book.top("ask", DEPTH)}).encode()]
    pu, u = last - 7, last + 5  # the first diff bridges the snapshot: U <= lastUpdateId <= u
    for i in range(1, n):
        b, a = book.delta()
        frames.append(_dumps({"e": "depthUpdate", "E": T0_MS + i + 1, "T": T0_MS + i,
                              "s": "BTCUSDT", "U": pu + 1, "u": u, "pu": pu, "b": b, "a": a}))
        pu, u = u, u + rng.randint(1, 40)
    return ProtocolConfig(symbols=("BTC-USDT",), channels=("l2",)), frames


def okx(n: int, rng: random.Random) -> tuple[ProtocolConfig, list[str | bytes]]:
    book = Book(rng, size_scale=100)  # contracts of 0.01 BTC
    arg = {"channel": "books", "instId": "BTC-USDT-SWAP"}

    def levels(side: list[tuple[str, str]]) -> list[list[str]]:
        return [[p, s, "0", str(rng.randint(1, 20)) if float(s) else "0"] for p, s in side]

    seq = 1_000_000
    frames: list[str | bytes] = [_dumps({"arg": arg, "action": "snapshot", "data": [{
        "asks": levels(book.top("ask", DEPTH)), "bids": levels(book.top("bid", DEPTH)),
        "ts": str(T0_MS), "checksum": _checksum25(book), "prevSeqId": -1, "seqId": seq}]})]
    for i in range(1, n):
        b, a = book.delta()
        prev, seq = seq, seq + rng.randint(1, 12)
        frames.append(_dumps({"arg": arg, "action": "update", "data": [{
            "asks": levels(a), "bids": levels(b), "ts": str(T0_MS + i),
            "checksum": _checksum25(book), "prevSeqId": prev, "seqId": seq}]}))
    inst = Instrument(symbol="BTC-USDT", native="BTC-USDT-SWAP", contract_size=0.01,
                      tick_size=0.1, lot_size=0.0001)
    return ProtocolConfig(symbols=("BTC-USDT",), channels=("l2",),
                          instruments={"BTC-USDT": inst}), frames


GENERATORS: dict[str, Callable[[int, random.Random], tuple[ProtocolConfig, list[str | bytes]]]] = {
    "bybit": bybit, "bybit-trades": bybit_trades, "htx": htx, "bitget": bitget,
    "gateio": gateio, "coinbase": coinbase, "coinbase-exchange": coinbase_exchange,
    "binance": binance, "okx": okx,
}


def stream(venue: str, n: int, seed: int = 7) -> tuple[ProtocolConfig, list[str | bytes]]:
    return GENERATORS[venue](n, random.Random(seed))
