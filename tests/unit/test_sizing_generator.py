"""The generated market behind benchmarks/sizing.py (the figures in docs/data.md "Sizing") is a
valid Bybit feed: every delta applies, no book crosses, and its shape is the profile's."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

from core.protocol import ProtocolConfig
from core.schema import BookUpdate, Health, Trade
from plugins.bybit.protocol import BybitProtocol

ROOT = Path(__file__).resolve().parents[2]


def sizing() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sizing", ROOT / "benchmarks" / "sizing.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["sizing"] = module  # dataclasses look their module up while being defined
    spec.loader.exec_module(module)
    return module


def test_generated_feed_applies_without_a_gap_or_a_crossed_book() -> None:
    s = sizing()
    profile = s.PROFILES["captured"]
    market = s.Market(profile, seed=3)
    proto = BybitProtocol(ProtocolConfig(symbols=("BTC-USDT",), channels=("l2", "trades"),
                                         options={"l2_depth": str(profile.l2_depth)}))
    proto.connection_made(0)
    topic = f"orderbook.{profile.l2_depth}.BTCUSDT"
    events = []
    t0 = 1_786_310_818_000  # ms: venue times are real epoch times
    for u in range(1, 2001):
        b, a = market.snapshot(profile.l2_depth) if u == 1 else market.delta(profile.l2_depth)
        frame = {"topic": topic, "type": "snapshot" if u == 1 else "delta", "ts": t0 + u,
                 "cts": t0 + u, "data": {"s": "BTCUSDT", "b": b, "a": a, "u": u, "seq": u}}
        events += proto.receive(json.dumps(frame), u)
        if u % 10 == 0:
            events += proto.receive(json.dumps({"topic": "publicTrade.BTCUSDT", "ts": t0 + u,
                                                "type": "snapshot",
                                                "data": market.trades(t0 + u)}), u)
        assert not proto.l2.book("BTC-USDT").is_crossed()
    health = [e.event for e in events if isinstance(e, Health)]
    assert health == ["snapshot"]
    deltas = [e for e in events if isinstance(e, BookUpdate) and not e.is_snapshot]
    assert len(deltas) == 1999
    levels = sum(len(e.bids) + len(e.asks) for e in deltas) / len(deltas)
    assert 12 < levels < 20  # the profile asks for 16.4 changed levels per delta
    assert len([e for e in events if isinstance(e, Trade)]) >= 200
