"""The fault matrix: every plugin against its fake venue, for every fault that applies.

Each case runs the real session of the plugin against its speaker over in-memory streams on
trio's mock clock, next to a clean *witness* venue on the same bus, with one fault scripted on
the first connection (on the first symbol's deltas where the fault is about frames). Each case
asserts that

* the fault happened and is in ``health`` (the row kind the fault must produce);
* the connector recovered by itself within the documented bound (``docs/simulate.md``): every
  book that lost trust was trusted again in time, and at the end every book equals the fake
  venue's book, level by level;
* no other symbol (where the venue's sequencing keeps symbols apart) and no other venue lost
  data: no trust break, books equal.

Cases that cannot apply (a venue without checksums, uncompressed frames, a feed without sequence
numbers) are listed in ``NOT_APPLICABLE`` with the reason, and reported as skipped; a known gap
of a plugin is in ``KNOWN_GAPS`` and runs as a strict expected failure (it must keep failing
until the plugin is fixed, then the entry goes).

Binance's books come from a REST snapshot bridged to the diff stream: every fault that breaks a
book there is recovered by a new REST snapshot (served from the fake venue's book at that
moment), so these cases test the REST-bridged resync as much as the websocket. Its faults are
aimed at the ``/public/ws`` socket (the one with the books); a connection fault there takes the
``/market/ws`` socket down with it.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import trio

from core.codec import S_NS
from core.plugins import load_plugins
from core.schema import BookUpdate, HealthKind, TopOfBook, Trade
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

PM, REGISTRY = load_plugins()
SPEAKERS = load_speakers(PM)
PLUGINS = ("bybit", "htx", "bitget", "gateio", "coinbase", "coinbase-exchange", "binance", "okx")
#: the venues whose cases run in this file; the others run in test_faults_more.py (the matrix is
#: split over two files so that parallel test workers share it)
HERE = ("bybit", "htx", "binance", "okx")
#: the websocket path a venue's faults are aimed at (venues with several endpoints)
FAULT_PATH = {"binance": "/public/ws"}
MIN_DURATION_S = 12.0  # market time: the fault fires in the first second; then recovery + margin
RESUBSCRIBE_S = 2.0  # resubscribe -> snapshot on loopback, paced sends included
NEXT_FRAME_S = 3.0  # a frame fault is seen at that symbol's next frame

NO_SEQUENCE = ("level2_batch carries no sequence number: a lost, repeated or reordered update "
               "cannot be detected (documented in docs/venues/coinbase.md)")
NOT_APPLICABLE: dict[tuple[str, str], str] = {
    **{(v, "bad_checksum"): "the venue sends no book checksum" for v in PLUGINS
       if v not in ("bitget", "okx")},
    **{(v, f): "the venue's frames are not compressed" for v in PLUGINS if v not in ("htx", "okx")
       for f in ("truncated_gzip", "gzip_bomb")},
    **{("coinbase-exchange", f): NO_SEQUENCE
       for f in ("drop_delta", "duplicate_delta", "reorder_delta")},
    ("binance", "refuse_transient"): "Binance refuses no single subscription for load: a client "
    "above 10 messages per second is disconnected (the connection faults cover that)",
}
KNOWN_GAPS: dict[tuple[str, str], str] = {}

EXPECTED: dict[str, str] = {
    "tcp_close": HealthKind.DISCONNECTED, "ws_close": HealthKind.DISCONNECTED,
    "handshake": HealthKind.DISCONNECTED, "stall": HealthKind.DISCONNECTED,
    "missing_pongs": HealthKind.DISCONNECTED, "invalid_utf8": HealthKind.DISCONNECTED,
    "oversized": HealthKind.DISCONNECTED, "drop_delta": HealthKind.GAP,
    "duplicate_delta": HealthKind.GAP, "reorder_delta": HealthKind.GAP,
    "bad_checksum": HealthKind.CHECKSUM_MISMATCH, "invalid_json": HealthKind.DECODE_ERROR,
    "truncated_gzip": HealthKind.DECODE_ERROR, "gzip_bomb": HealthKind.DECODE_ERROR,
    "wrong_types": HealthKind.DECODE_ERROR, "non_finite": HealthKind.DECODE_ERROR,
    "refuse_permanent": HealthKind.SUBSCRIBE_ERROR, "refuse_transient": SUBSCRIBE_RETRY,
}
CONNECTION_LEVEL = {"tcp_close", "ws_close", "handshake", "stall", "missing_pongs",
                    "invalid_utf8", "oversized"}
# Coinbase numbers every frame of a connection: a lost frame may have been any product's, so
# every book of the connection resyncs (by design; see plugins/coinbase/protocol.py).
SHARED_SEQUENCE = {("coinbase", f) for f in ("drop_delta", "duplicate_delta", "reorder_delta",
                                              "wrong_types", "non_finite")}


def symbols_of(venue: str) -> tuple[str, str]:
    return ("BTC-USD", "ETH-USD") if venue.startswith("coinbase") else ("BTC-USDT", "ETH-USDT")


def bound_s(venue: str, fault: str) -> float:
    """The documented recovery bound of ``fault`` on ``venue``, from the moment it fired."""
    proto = REGISTRY.get(venue)
    reconnect = DISCONNECT_TIMEOUT_S + BACKOFF_INITIAL_S + RESUBSCRIBE_S
    if fault == "handshake":
        return CONNECT_TIMEOUT_S + proto.subscribe_timeout_s + reconnect
    if fault in ("stall", "missing_pongs"):
        return dead_socket_bound_s(proto, PONG_TIMEOUT_S) + reconnect
    if fault in CONNECTION_LEVEL:
        return reconnect
    if fault == "refuse_transient":
        return RETRY_INITIAL_S + RESUBSCRIBE_S
    return NEXT_FRAME_S + RESUBSCRIBE_S


def cases(venues: tuple[str, ...]) -> list[object]:
    out = []
    for venue in venues:
        for fault in ALL_FAULTS:
            marks: list[pytest.MarkDecorator] = []
            reason = NOT_APPLICABLE.get((venue, fault))
            if reason is not None:
                marks.append(pytest.mark.skip(reason=f"not applicable: {reason}"))
            gap = KNOWN_GAPS.get((venue, fault))
            if gap is not None:
                marks.append(pytest.mark.xfail(strict=True, reason=f"known gap: {gap}"))
            out.append(pytest.param(venue, fault, marks=marks, id=f"{venue}-{fault}"))
    return out


def no_non_finite(events: list[object]) -> bool:
    for e in events:
        values: list[float | None] = []
        if isinstance(e, BookUpdate):
            values = [x for lv in (*e.bids, *e.asks) for x in lv]
        elif isinstance(e, TopOfBook):
            values = [e.bid_px, e.bid_sz, e.ask_px, e.ask_sz]
        elif isinstance(e, Trade):
            values = [e.price, e.size]
        if any(v is not None and not math.isfinite(v) for v in values):
            return False
    return True


@pytest.mark.parametrize(("venue", "fault"), cases(HERE))
async def test_fault(venue: str, fault: str, autojump_clock: trio.testing.MockClock) -> None:
    await check_fault(venue, fault)


async def check_fault(venue: str, fault: str) -> None:
    """One case of the matrix (see the module docstring), on trio's mock clock."""
    proto = REGISTRY.get(venue)
    witness = "htx" if venue == "bybit" else "bybit"
    symbols = symbols_of(venue)
    target, other = symbols
    spec = Fault(fault, after=20, symbol=target, max_bytes=proto.max_message_bytes,
                 path=FAULT_PATH.get(venue))
    bound = bound_s(venue, fault)
    result = await run_scenario({
        venue: VenueSetup(proto, SPEAKERS.get(venue), FaultPlan(spec)),
        witness: VenueSetup(REGISTRY.get(witness), SPEAKERS.get(witness),
                            symbols=symbols_of(witness)[:1]),
    }, symbols, duration_s=max(MIN_DURATION_S, bound + 5.0))

    # the fault happened, and it is in the health table
    assert spec.applied, f"{fault} never fired"
    since = spec.fired_ns if spec.fired_ns is not None else START_NS
    kinds = [h.event for h in result.health(venue, since_ns=since)]
    assert EXPECTED[fault] in kinds, kinds
    assert not result.health(venue, HealthKind.PLUGIN_ERROR)
    assert no_non_finite(result.venues[venue].events), "a non-finite value was published"

    # recovered by itself, within the documented bound
    if fault == "refuse_permanent":
        assert not result.health(venue, HealthKind.SNAPSHOT, target)
        assert not result.health(venue, SUBSCRIBE_RETRY)
        assert result.venues[venue].session.stats.subscribe_errors >= 1
        assert result.book_matches(venue, other)
    elif fault == "refuse_transient":
        [retry, *_] = result.health(venue, SUBSCRIBE_RETRY, target)
        first = result.health(venue, HealthKind.SNAPSHOT, target, since_ns=retry.ts_local)
        assert first, "the refused subscription was never retried"
        assert (first[0].ts_local - retry.ts_local) / S_NS <= bound
        assert not result.health(venue, HealthKind.SUBSCRIBE_ERROR)
        for symbol in symbols:
            assert result.book_matches(venue, symbol), symbol
    else:
        result.recovered_within(venue, symbols, since, bound)
        for symbol in symbols:
            assert result.book_matches(venue, symbol), symbol
            assert result.trusted_at_end(venue, symbol), symbol

    # no other symbol lost data (where the venue's sequencing keeps them apart) ...
    if fault not in CONNECTION_LEVEL and (venue, fault) not in SHARED_SEQUENCE:
        assert not result.trust_breaks(venue, other), result.trust_breaks(venue, other)
    # ... and no other venue did
    for symbol in symbols_of(witness)[:1]:
        assert not result.trust_breaks(witness, symbol)
        assert result.book_matches(witness, symbol)
    assert not result.health(witness, HealthKind.DECODE_ERROR)
    assert result.venues[witness].session.stats.reconnects == 0


def test_the_documented_bounds_are_the_code_s() -> None:
    """docs/simulate.md states, per venue, the dead-socket bound and the connect deadline."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "simulate.md").read_text()
    rows = {m[1]: (float(m[2]), float(m[3])) for m in re.finditer(
        r"^\| ([a-z-]+) \| (\d+) \| (\d+) \|$", doc, re.M)}
    assert set(rows) == set(PLUGINS)
    for venue, (dead_s, connect_s) in rows.items():
        proto = REGISTRY.get(venue)
        assert dead_s == dead_socket_bound_s(proto, PONG_TIMEOUT_S), venue
        assert connect_s == CONNECT_TIMEOUT_S + proto.subscribe_timeout_s, venue
