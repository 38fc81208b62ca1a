"""The simulation kit's parts for venues beyond one socket and one format: scripts that repeat or
carry fixed exchange times, one process fired at a time, REST answers with a status (in memory
and on loopback), websocket paths a venue does not have, faults aimed at one endpoint, and
compressed faults in the venue's own compression."""

from __future__ import annotations

import zlib
from decimal import Decimal

import httpx
import pytest
import trio
import trio.testing
from trio_websocket import ConnectionRejected

from core.clock import TrioClock
from core.codec import FrameError, inflate
from core.sim.market import Listing, Market, Script, Step, load_text
from core.sim.server import Simulation
from core.sim.speaker import Out, RestReply, SpeakerSession, VenueSpeaker
from core.testing.fake_servers import serve_http
from core.testing.faults import Fault, FaultPlan, compress, gzip_bomb

S = 1_000_000_000
T0 = 1_786_000_000 * S
BTC = Listing("demo", "BTC-USDT", tick=Decimal("0.1"), lot=Decimal("0.001"))


def market() -> Market:
    m = Market([BTC])
    load_text(m, "demo", "BTC-USDT", [("100.0", "1")], [("100.1", "1")])
    return m


class QuietSession(SpeakerSession):
    def receive(self, frame: str | bytes, now_ns: int) -> list[Out]:
        return []


class DemoSpeaker(VenueSpeaker):
    """A venue with two websocket paths and a REST side that answers with statuses."""

    name = "demo"
    path = ""
    session_class = QuietSession

    def serves(self, path: str) -> bool:
        return path in ("/a", "/b")

    def rest(self, target: str) -> bytes | RestReply | None:
        if target == "/ok?x=1":
            return b'{"ok":true}'
        if target == "/bad":
            return RestReply(400, b'{"code":-1121}')
        return None


def test_a_repeating_script_never_ends_and_fixed_times_stay_fixed() -> None:
    m = market()
    script = Script("demo", [Step("BTC-USDT", bids=[("100.0", "2")], ts_ns=T0 + 5),
                             Step("BTC-USDT", bids=[("100.0", "3")], ts_ns=T0 + 6)],
                    start_ns=T0, interval_s=1.0, repeat=True)
    m.add_process(script)
    events = m.advance(T0 + 10 * S)
    assert len(events) == 10 and script.played == 10 and not script.done
    assert [e.ts_ns for e in events[:4]] == [T0 + 5, T0 + 6, T0 + 5, T0 + 6]
    assert script.next_ns() == T0 + 11 * S


def test_processes_fire_one_at_a_time() -> None:
    """Two steps due at once: the first one's events come out while the book holds only its
    change (a fake venue diffs each against the book as it was then)."""
    m = market()
    m.add_process(Script("demo", [Step("BTC-USDT", bids=[("100.0", "2")]),
                                  Step("BTC-USDT", bids=[("100.0", "3")])],
                         start_ns=T0, interval_s=0.001))
    first = m.fire_next(T0 + S)
    assert first is not None and m.book("demo", "BTC-USDT").bids == {1000: 2000}
    second = m.fire_next(T0 + S)
    assert second is not None and m.book("demo", "BTC-USDT").bids == {1000: 3000}
    assert m.fire_next(T0 + S) is None


async def test_rest_answers_in_memory(autojump_clock: trio.testing.MockClock) -> None:
    m = market()
    sim = Simulation(m, {"demo": DemoSpeaker(m)}, clock=TrioClock(T0))
    async with httpx.AsyncClient(transport=sim.rest_transport()) as client:
        base = sim.rest_url("demo")
        ok = await client.get(f"{base}/ok?x=1")
        bad = await client.get(f"{base}/bad")
        missing = await client.get(f"{base}/nothing")
        other = await client.get("http://nowhere.sim/ok?x=1")
    assert (ok.status_code, ok.content) == (200, b'{"ok":true}')
    assert (bad.status_code, bad.content) == (400, b'{"code":-1121}')
    assert missing.status_code == other.status_code == 404


async def test_rest_answers_on_loopback() -> None:
    m = market()
    speaker = DemoSpeaker(m)
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            url = await nursery.start(serve_http, speaker.rest)
            async with httpx.AsyncClient() as client:
                bad = await client.get(f"{url}/bad")
                ok = await client.get(f"{url}/ok?x=1")
            nursery.cancel_scope.cancel()
    assert (bad.status_code, bad.content, ok.status_code) == (400, b'{"code":-1121}', 200)


async def test_a_path_the_venue_does_not_have_is_refused(
        autojump_clock: trio.testing.MockClock) -> None:
    m = market()
    sim = Simulation(m, {"demo": DemoSpeaker(m)}, clock=TrioClock(T0))
    async with trio.open_nursery() as nursery:
        await nursery.start(sim.run)
        async with sim.connect("ws://demo.sim/a", 1 << 20):
            pass
        with pytest.raises(BaseExceptionGroup) as refused:
            async with sim.connect("ws://demo.sim/elsewhere", 1 << 20):
                pass
        assert refused.group_contains(ConnectionRejected)
        nursery.cancel_scope.cancel()
    records = sim.venues["demo"].connections
    assert [(r.path, r.accepted) for r in records] == [("/a", True), ("/elsewhere", False)]
    assert [s.path for s in sim.speakers["demo"].sessions] == ["/a"]


def test_a_fault_aimed_at_one_endpoint_counts_that_endpoint_only() -> None:
    speaker = DemoSpeaker(market())
    sessions = [speaker.open(T0, p) for p in ("/a", "/b", "/b")]
    assert [(s.path, s.path_index) for s in sessions] == [("/a", 0), ("/b", 0), ("/b", 1)]
    fault = Fault("drop_delta", path="/b", conn=1)
    plan = FaultPlan(fault)
    delta = Out("{}", "delta", "BTC-USDT")
    for index, session in enumerate(sessions[:2]):
        assert plan.on_out(index, delta, session) == [delta]  # not the second /b connection
    assert plan.on_out(2, delta, sessions[2]) == [] and fault.applied
    held = FaultPlan(Fault("handshake", path="/b"))
    assert not held.hold_handshake(0, "/a", 0) and held.hold_handshake(1, "/b", 0)


def test_compressed_faults_use_the_venue_s_compression() -> None:
    text = b'{"arg":{"channel":"books"}}'
    assert zlib.decompress(compress(text, "deflate"), -zlib.MAX_WBITS) == text
    assert inflate(compress(text, "gzip"), "gzip") == text
    for compression in ("gzip", "deflate"):
        bomb = gzip_bomb(8 * 1024 * 1024, compression)
        assert len(bomb) < 64 * 1024
        with pytest.raises(FrameError, match="past the limit"):
            inflate(bomb, compression, 1024 * 1024)
