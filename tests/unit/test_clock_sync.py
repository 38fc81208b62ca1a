"""Clock offsets NTP-style: the sampler's bursts, the estimate against a known offset, and the
protocol base class driving it through deadlines and the REST seam (rows from responses only,
so a replay gives the same rows)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

import pytest

from core.clock_sync import (
    ClockSampler,
    Estimate,
    Sample,
    estimate_detail,
    parse_detail,
    parse_key,
)
from core.codec import MS_NS, S_NS
from core.protocol import ExchangeProtocol, Lane, ProtocolConfig
from core.schema import Event, Health, HealthKind

T0 = 1_786_310_818_000_000_000
MS = MS_NS


def test_one_sample_is_the_midpoint_against_the_venue_time() -> None:
    # sent at 0, answered at 20 ms, the venue said 7 ms (in our terms): its clock is 3 ms behind
    s = Sample(sent_ns=T0, recv_ns=T0 + 20 * MS, server_ns=T0 + 7 * MS)
    assert s.offset_ns == 3 * MS
    assert s.rtt_ns == 20 * MS


def test_a_burst_takes_medians_and_its_detail_reads_back() -> None:
    sampler = ClockSampler("/time", interval_s=300)
    sampler.start(T0)
    assert sampler.next_ns == T0
    key, path = sampler.begin(T0)
    assert (path, parse_key(key)) == ("/time", (1, 0, 5))
    assert sampler.next_ns is None  # no second burst while one runs
    skew = -4 * MS  # the venue's clock runs 4 ms ahead of ours: offset = local - venue = -4 ms
    rtts = [10, 30, 12, 90, 14]  # ms; one slow sample
    t = T0
    result: object = None
    for i, rtt in enumerate(rtts):
        sent, recv = t, t + rtt * MS
        server = (sent + recv) // 2 - skew + (i - 2) * MS // 10  # +-0.2 ms of venue jitter
        nxt, result = sampler.answer(key, sent, recv, server, None)
        if i < len(rtts) - 1:
            assert nxt is not None and parse_key(nxt[0]) == (1, i + 1, 5)
            key = nxt[0]
        else:
            assert nxt is None
        t = recv + MS
    assert isinstance(result, Estimate)
    assert result.offset_ns == pytest.approx(skew, abs=1)
    assert result.rtt_ns == 14 * MS and result.min_rtt_ns == 10 * MS
    assert (result.good, result.samples) == (5, 5)
    assert sampler.next_ns == t - MS + 300 * S_NS  # the next burst: an interval after this one
    detail = estimate_detail(result, "/time")
    assert detail == "offset_ms=-4.000 rtt_ms=14.000 min_rtt_ms=10.000 samples=5/5 path=/time"
    assert parse_detail(detail) == {"offset_ms": -4.0, "rtt_ms": 14.0, "min_rtt_ms": 10.0,
                                    "good": 5.0, "samples": 5.0}


def test_failed_samples_are_counted_and_a_burst_of_failures_says_why() -> None:
    sampler = ClockSampler("/time", interval_s=60, samples=2)
    sampler.start(T0)
    key, _ = sampler.begin(T0)
    nxt, result = sampler.answer(key, T0, T0 + MS, None, "HTTP 404")
    assert nxt is not None and result is None
    _, result = sampler.answer(nxt[0], T0 + 2 * MS, T0 + 3 * MS, None, "timeout")
    assert result == ["HTTP 404", "timeout"]
    assert parse_detail("no estimate: 2 samples failed") is None


def test_a_repeated_or_foreign_answer_changes_nothing() -> None:
    sampler = ClockSampler("/time", interval_s=60, samples=2)
    sampler.start(T0)
    key, _ = sampler.begin(T0)
    sampler.answer(key, T0, T0 + MS, T0, None)
    assert sampler.answer(key, T0, T0 + MS, T0, None) == (None, None)
    assert sampler.answer("depth:BTC-USDT:1", T0, T0 + MS, T0, None) == (None, None)


# -- driven by the protocol base class --------------------------------------------------------


class Toy(ExchangeProtocol):
    name = "toy"
    channels = frozenset({"tob", "trades"})
    default_url = "wss://toy.example/ws"
    server_time_path = "/api/time"
    lanes: ClassVar[tuple[Lane, ...]] = ()

    @classmethod
    def parse_server_time(cls, body: bytes) -> int:
        return int(json.loads(body)["ms"]) * MS_NS

    def subscribe(self, now_ns: int) -> list[str]:
        return []

    def handle(self, payload: str | bytes, recv_ns: int) -> list[Event]:
        return []


def answer(proto: ExchangeProtocol, sent: int, recv: int, venue_ms: int | None,
           error: str | None = None) -> list[Event]:
    [req] = proto.rest_requests_to_send()
    body = b"" if venue_ms is None else json.dumps({"ms": venue_ms}).encode()
    return proto.rest_response(req.key, 200 if error is None else 0, body, recv, error,
                               sent_ns=sent)


def test_the_base_class_samples_at_connect_and_every_interval() -> None:
    proto = Toy(ProtocolConfig(symbols=("BTC-USDT",), channels=("tob",), clock_sync_s=60))
    proto.connection_made(T0)
    assert proto.next_deadline() == T0  # the first burst is due at once
    proto.on_deadline(T0)
    assert proto.next_deadline() is None  # none while the burst runs
    rows: list[Event] = []
    t = T0
    for _ in range(5):  # venue clock 2 ms behind ours, 4 ms round trips
        rows += answer(proto, t, t + 4 * MS, (t + 2 * MS) // MS - 2)
        t += 5 * MS
    [row] = rows
    assert isinstance(row, Health) and row.event == HealthKind.CLOCK_OFFSET
    assert row.ts_local == t - MS  # the last answer's receive time
    assert row.detail.startswith("offset_ms=+2.000 rtt_ms=4.000")
    assert proto.next_deadline() == t - MS + 60 * S_NS
    proto.connection_lost(t)
    assert proto.next_deadline() is None


def test_a_body_without_a_time_is_a_decode_error_and_a_failed_sample() -> None:
    proto = Toy(ProtocolConfig(symbols=("BTC-USDT",), channels=("tob",), clock_sync_s=60))
    proto.connection_made(T0)
    proto.on_deadline(T0)
    [req] = proto.rest_requests_to_send()
    events = proto.rest_response(req.key, 200, b'{"nope": 1}', T0 + MS, None, sent_ns=T0)
    assert [e.event for e in events if isinstance(e, Health)] == [HealthKind.DECODE_ERROR]
    for i in range(4):
        events = answer(proto, T0, T0 + (i + 2) * MS, None, "HTTP 500")
    [row] = events
    assert isinstance(row, Health) and row.event == HealthKind.CLOCK_OFFSET
    assert row.detail.startswith("no estimate: 5 samples failed; last: HTTP 500")


def test_without_clock_sync_no_samples_but_recorded_answers_still_give_the_row() -> None:
    """A replay builds its protocols from the recording: the rows follow the responses."""
    live = Toy(ProtocolConfig(symbols=("BTC-USDT",), channels=("tob",), clock_sync_s=60))
    live.connection_made(T0)
    live.on_deadline(T0)
    replay = Toy(ProtocolConfig(symbols=("BTC-USDT",), channels=("tob",)))
    replay.connection_made(T0)
    assert replay.next_deadline() is None
    replay.on_deadline(T0)
    assert replay.rest_requests_to_send() == []
    t = T0
    live_rows: list[Event] = []
    replay_rows: list[Event] = []
    for _ in range(5):
        [req] = live.rest_requests_to_send()
        body = json.dumps({"ms": t // MS}).encode()
        live_rows += live.rest_response(req.key, 200, body, t + 3 * MS, None, sent_ns=t)
        replay_rows += replay.rest_response(req.key, 200, body, t + 3 * MS, None, sent_ns=t)
        t += 4 * MS
    assert live_rows == replay_rows and len(live_rows) == 1


def test_only_the_first_lane_of_a_venue_measures_its_clock() -> None:
    class Laned(Toy):
        lanes = (Lane(name="a", path="/a", channels=frozenset({"tob"})),
                 Lane(name="b", path="/b", channels=frozenset({"trades"})))

    plan = Laned.lane_plan(ProtocolConfig(symbols=("BTC-USDT",), channels=("tob", "trades"),
                                          clock_sync_s=60))
    assert [(lane.name, c.clock_sync_s) for lane, c in plan] == [("a", 60), ("b", 0.0)]
    only_b = Laned.lane_plan(ProtocolConfig(symbols=("BTC-USDT",), channels=("trades",),
                                            clock_sync_s=60))
    assert [(lane.name, c.clock_sync_s) for lane, c in only_b] == [("b", 60)]


@pytest.mark.parametrize("value", ["0.5", "-1", "inf"])
async def test_a_bad_interval_is_a_usage_error_before_any_connection(
        value: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from core.run import async_main

    argv = ["--plugins", "bybit", "--clock-sync-interval", value, "--out", str(tmp_path)]
    assert await async_main(argv, handle_signals=False) == 2
    assert "--clock-sync-interval must be 0 (off) or at least 1 second" in \
        capsys.readouterr().err
