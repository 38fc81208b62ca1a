"""The fault matrix for Kraken: the real session of the plugin against its fake venue over
in-memory streams on trio's mock clock, beside a clean Bybit (a built-in venue) on the same bus,
with one fault scripted on the first connection (on BTC-USD's book updates where the fault is
about frames). Each case asserts that the fault happened and is in ``health``, that the plugin
recovered by itself within the bound bookwire documents (``docs/simulate.md``), that its books
equal the venue's at the end, level by level, and that neither the other symbol nor the other
venue lost anything.

Kraken's book has no sequence number: a lost or reordered update is found by the next frame's
checksum (``checksum_mismatch``), and a repeated one changes nothing (sizes are absolute), so
there is nothing to find and nothing lost. Its frames are never compressed.
"""

from __future__ import annotations

import pytest
import trio
from bookwire_kraken.fake import KrakenSpeaker
from bookwire_kraken.protocol import KrakenProtocol

from core.plugins import load_plugins
from core.schema import HealthKind
from core.session import (
    BACKOFF_INITIAL_S,
    CONNECT_TIMEOUT_S,
    DISCONNECT_TIMEOUT_S,
    PONG_TIMEOUT_S,
    dead_socket_bound_s,
)
from core.sim.speaker import load_speakers
from core.subscriptions import RETRY_INITIAL_S, SUBSCRIBE_RETRY
from core.testing.faults import ALL_FAULTS, Fault, FaultPlan
from core.testing.scenario import START_NS, VenueSetup, run_scenario

SYMBOLS = ("BTC-USD", "ETH-USD")
RESUBSCRIBE_S = 2.0  # resubscribe -> snapshot, paced sends included
NEXT_FRAME_S = 3.0  # a frame fault is seen at that symbol's next frame
CONNECTION = {"tcp_close", "ws_close", "handshake", "stall", "missing_pongs", "invalid_utf8",
              "oversized"}
EXPECTED = {
    **dict.fromkeys(CONNECTION, HealthKind.DISCONNECTED),
    "drop_delta": HealthKind.CHECKSUM_MISMATCH, "reorder_delta": HealthKind.CHECKSUM_MISMATCH,
    "bad_checksum": HealthKind.CHECKSUM_MISMATCH, "invalid_json": HealthKind.DECODE_ERROR,
    "wrong_types": HealthKind.DECODE_ERROR, "non_finite": HealthKind.DECODE_ERROR,
    "refuse_permanent": HealthKind.SUBSCRIBE_ERROR, "refuse_transient": SUBSCRIBE_RETRY,
}
NOT_APPLICABLE = {"truncated_gzip": "Kraken's frames are not compressed",
                  "gzip_bomb": "Kraken's frames are not compressed"}


def bound_s(fault: str) -> float:
    """The recovery bound of ``fault`` from the moment it fired (docs/simulate.md)."""
    reconnect = DISCONNECT_TIMEOUT_S + BACKOFF_INITIAL_S + RESUBSCRIBE_S
    if fault == "handshake":
        return CONNECT_TIMEOUT_S + KrakenProtocol.subscribe_timeout_s + reconnect
    if fault in ("stall", "missing_pongs"):
        return dead_socket_bound_s(KrakenProtocol, PONG_TIMEOUT_S) + reconnect
    if fault in CONNECTION:
        return reconnect
    if fault == "refuse_transient":
        return RETRY_INITIAL_S + RESUBSCRIBE_S
    return NEXT_FRAME_S + RESUBSCRIBE_S


def cases() -> list[object]:
    return [pytest.param(f, marks=[pytest.mark.skip(reason=f"not applicable: "
                                                           f"{NOT_APPLICABLE[f]}")]
                         if f in NOT_APPLICABLE else []) for f in ALL_FAULTS]


@pytest.mark.parametrize("fault", cases())
async def test_fault(fault: str, autojump_clock: trio.testing.MockClock) -> None:
    _, registry = load_plugins()
    bybit, bybit_speaker = registry.get("bybit"), load_speakers().get("bybit")
    target, other = SYMBOLS
    spec = Fault(fault, after=30, symbol=target, max_bytes=KrakenProtocol.max_message_bytes)
    bound = bound_s(fault)
    result = await run_scenario({
        "kraken": VenueSetup(KrakenProtocol, KrakenSpeaker, FaultPlan(spec)),
        "bybit": VenueSetup(bybit, bybit_speaker, symbols=["BTC-USDT"]),
    }, SYMBOLS, duration_s=max(12.0, bound + 5.0))

    assert spec.applied, f"{fault} never fired"
    since = spec.fired_ns if spec.fired_ns is not None else START_NS
    if fault == "duplicate_delta":  # absolute sizes: the repeated update changes nothing
        assert not result.trust_breaks("kraken", target)
    else:
        kinds = [h.event for h in result.health("kraken", since_ns=since)]
        assert EXPECTED[fault] in kinds, kinds
    assert not result.health("kraken", HealthKind.PLUGIN_ERROR)

    if fault == "refuse_permanent":
        assert not result.health("kraken", HealthKind.SNAPSHOT, target)
        assert result.book_matches("kraken", other)
    elif fault == "refuse_transient":
        [retry, *_] = result.health("kraken", SUBSCRIBE_RETRY, target)
        first = result.health("kraken", HealthKind.SNAPSHOT, target, since_ns=retry.ts_local)
        assert first and (first[0].ts_local - retry.ts_local) / 1e9 <= bound
        for symbol in SYMBOLS:
            assert result.book_matches("kraken", symbol), symbol
    else:
        result.recovered_within("kraken", SYMBOLS, since, bound)
        for symbol in SYMBOLS:
            assert result.book_matches("kraken", symbol), symbol
            assert result.trusted_at_end("kraken", symbol), symbol
    if fault not in CONNECTION:  # the venue's books are independent of each other
        assert not result.trust_breaks("kraken", other)
    assert not result.trust_breaks("bybit", "BTC-USDT")
    assert result.book_matches("bybit", "BTC-USDT")
    assert result.venues["bybit"].session.stats.reconnects == 0
