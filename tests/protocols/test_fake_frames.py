"""The fake venues' frames have the shape of real traffic: every field path a fake venue writes
in a frame of some kind appears in frames of that kind in the venue's real capture (no invented
or misplaced fields). Skipped where the capture is absent."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from core.sim.market import Market
from core.sim.simulator import SimParams, reference, simulate
from core.sim.speaker import Out, load_speakers
from core.testing.captures import read_records
from tests.conftest import sample

T0 = 1_786_000_000_000_000_000
S = 1_000_000_000


def paths(node: Any, prefix: str = "") -> set[str]:
    """Every field path of a JSON document (``data.b[]``, ``tick.data[].price``, ...)."""
    out: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            out.add(prefix + key)
            out |= paths(value, prefix + key + ".")
    elif isinstance(node, list):
        for item in node[:3]:
            if isinstance(item, dict):
                out |= paths(item, prefix.rstrip(".") + "[].")
    return out


def decode(frame: str | bytes) -> Any:
    if isinstance(frame, bytes):
        frame = gzip.decompress(frame)
    return json.loads(frame)


def captured(venue: str, name: str, kind: Callable[[dict[str, Any]], str | None]
             ) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for rec in read_records(sample(venue, name)):
        if rec.kind != "recv" or rec.frame is None:
            continue
        try:
            doc = decode(rec.frame)
        except (ValueError, OSError):
            continue
        if isinstance(doc, dict) and (k := kind(doc)) is not None:
            out.setdefault(k, set()).update(paths(doc))
    return out


def spoken(venue: str, symbol: str, requests: list[str], seconds: int = 20) -> Iterator[Out]:
    """What the fake venue says to a client sending ``requests``, while the market moves."""
    speakers = load_speakers()
    market = Market([speakers.get(venue).listing(symbol, reference(symbol)[0])])
    simulate(market, SimParams(seed=3), T0)
    speaker = speakers.get(venue)(market)
    session = speaker.open(T0)
    for request in requests:
        yield from session.receive(request, T0)
    for t in range(1, seconds * 10):
        for event in market.advance(T0 + t * S // 10):
            speaker.observe(event)
            yield from session.market(event, T0 + t * S // 10)


def check(fake: dict[str, set[str]], real: dict[str, set[str]]) -> None:
    assert fake, "the fake venue said nothing"
    for kind, fields in fake.items():
        assert kind in real, f"{kind}: not in the capture"
        assert fields <= real[kind], f"{kind}: fields the venue never sends: {fields - real[kind]}"


def by_kind(outs: Iterator[Out], kind: Callable[[dict[str, Any]], str | None]
            ) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for o in outs:
        if o.frame is None:
            continue
        doc = decode(o.frame)
        if (k := kind(doc)) is not None:
            out.setdefault(k, set()).update(paths(doc))
    return out


def test_bybit_frames() -> None:
    def kind(d: dict[str, Any]) -> str | None:
        topic = str(d.get("topic", ""))
        if topic.startswith("orderbook."):
            return f"orderbook:{d.get('type')}"
        if topic.startswith("publicTrade"):
            return "publicTrade"
        return f"op:{d['op']}" if "op" in d and d["op"] == "subscribe" else None

    real = captured("bybit", "BYBIT.jsonl.gz", kind)
    request = json.dumps({"req_id": "1", "op": "subscribe",
                          "args": ["orderbook.50.BTCUSDT", "publicTrade.BTCUSDT"]})
    check(by_kind(spoken("bybit", "BTC-USDT", [request]), kind), real)


def test_htx_frames() -> None:
    def kind(d: dict[str, Any]) -> str | None:
        if "ch" in d:
            return "trade" if d["ch"].endswith("trade.detail") else "depth"
        return "ack" if "subbed" in d else "ping" if "ping" in d else None

    real = captured("htx", "HUOBI_SWAP.jsonl.gz", kind)
    requests = [json.dumps({"sub": "market.BTC-USDT.depth.step0", "id": "1"}),
                json.dumps({"sub": "market.BTC-USDT.trade.detail", "id": "2"})]
    fake = by_kind(spoken("htx", "BTC-USDT", requests), kind)
    check(fake, real)


def test_gateio_frames() -> None:
    def kind(d: dict[str, Any]) -> str | None:
        # the capture has book_ticker pushes (and no trades pushes to compare with)
        if d.get("event") == "update" and d.get("channel") == "futures.book_ticker":
            return "futures.book_ticker"
        return None

    real = captured("gateio", "GATEIO_FUTURES.jsonl.gz", kind)
    requests = [json.dumps({"time": 1, "id": 1, "channel": c, "event": "subscribe",
                            "payload": ["BTC_USDT"]})
                for c in ("futures.book_ticker", "futures.trades")]
    check(by_kind(spoken("gateio", "BTC-USDT", requests), kind), real)


@pytest.mark.parametrize("channel", ["level2", "market_trades", "heartbeats"])
def test_coinbase_frames(channel: str) -> None:
    def kind(d: dict[str, Any]) -> str | None:
        return d.get("channel")

    real = captured("coinbase", "COINBASE.jsonl.gz", kind)
    request = json.dumps({"type": "subscribe", "product_ids": ["BTC-USD"], "channel": channel})
    check(by_kind(spoken("coinbase", "BTC-USD", [request]), kind), real)
