"""Plugin REST calls (``core.rest_calls``): bounded in number, time and size; every outcome,
failures included, recorded and handed back to the protocol, whose exceptions are decode errors.

The network is httpx's mock transport; time is trio's autojump clock."""

from __future__ import annotations

import gzip
import json
from collections.abc import AsyncIterator

import httpx
import pytest
import trio
import trio.lowlevel

from core.protocol import ExchangeProtocol, ProtocolConfig, RestResponse
from core.rest_calls import MAX_PENDING_CALLS, RestCalls, RestOverflow
from core.schema import Event, Health, HealthKind

T0 = 1_786_310_818_000_000_000


class Toy(ExchangeProtocol):
    """Asks for what it is told; reports every response as a health row."""

    name = "toy"
    channels = frozenset({"l2"})
    default_url = "wss://toy.example/ws"
    default_rest_url = "https://rest.toy.example"
    max_rest_body_bytes = 1000
    rest_timeout_s = 2.0
    max_rest_in_flight = 2

    def subscribe(self, now_ns: int) -> list[str]:
        return []

    def handle_rest(self, response: RestResponse) -> list[Event]:
        if response.key == "boom":
            json.loads(response.body)  # raises on a body that is not JSON
        assert response.sent_ns <= response.recv_ns
        return [self.health("rest", f"{response.key} {response.status} {len(response.body)} "
                                    f"{response.error}")]


class ListRecorder:
    def __init__(self) -> None:
        self.rest_records: list[tuple] = []

    def rest(self, venue: str, conn: int, ts_ns: int, key: str, url: str, status: int,
             body: bytes, error: str | None, *, sent_ns: int | None = None) -> None:
        assert sent_ns is not None and sent_ns <= ts_ns
        self.rest_records.append((venue, conn, key, url, status, body, error))


class FixedClock:
    def now_ns(self) -> int:
        return T0


async def _forever() -> AsyncIterator[bytes]:
    while True:
        yield b"x" * 300
        await trio.lowlevel.checkpoint()


def reply(status: int, body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    """A response with an unread body, as a network transport hands it over."""
    return httpx.Response(status, stream=httpx.ByteStream(body), headers=headers)


def handler_factory(active: list[int], peak: list[int]):  # type: ignore[no-untyped-def]
    async def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        assert request.headers["accept-encoding"] == "identity"
        if path == "/ok":
            return reply(200, b'{"a": 1}')
        if path == "/big":  # an endless body: the caller must stop reading
            return httpx.Response(200, content=_forever())
        if path == "/slow":
            await trio.sleep(60)
            return reply(200, b"late")
        if path == "/fail":
            return reply(503, b'{"code": -1003}')
        if path == "/refused":
            raise httpx.ConnectError("connection refused", request=request)
        if path == "/gzip":
            return reply(200, gzip.compress(b"y" * 500), {"content-encoding": "gzip"})
        if path == "/bomb":
            return reply(200, gzip.compress(b"\0" * 100_000), {"content-encoding": "gzip"})
        if path == "/busy":
            active[0] += 1
            peak[0] = max(peak[0], active[0])
            await trio.sleep(1)
            active[0] -= 1
            return reply(200, b"{}")
        return reply(404, b"not found")

    return handler


async def call_all(proto: Toy, paths: list[str], *, expect: int) -> tuple[list[Event],
                                                                          ListRecorder, int]:
    active, peak = [0], [0]
    recorder = ListRecorder()
    delivered: list[Event] = []
    done = trio.Event()

    def deliver(events: list[Event]) -> None:
        delivered.extend(events)
        if len(recorder.rest_records) >= expect:
            done.set()

    calls = RestCalls(proto, clock=FixedClock(), recorder=recorder, conn=7,  # type: ignore[arg-type]
                      deliver=deliver, transport=httpx.MockTransport(handler_factory(active, peak)))
    for i, path in enumerate(paths):
        proto.request_rest(f"k{i}" if not path.startswith("boom") else "boom",
                           path.removeprefix("boom"))
    with trio.fail_after(300):
        async with trio.open_nursery() as nursery:
            await nursery.start(calls.run)
            calls.submit(proto.rest_requests_to_send())
            await done.wait()
            nursery.cancel_scope.cancel()
    return delivered, recorder, peak[0]


def toy(rest_url: str | None = None) -> Toy:
    return Toy(ProtocolConfig(symbols=("BTC-USDT",), channels=("l2",), rest_url=rest_url))


async def test_outcomes_are_recorded_and_handed_back(autojump_clock: trio.abc.Clock) -> None:
    paths = ["/ok", "/big", "/slow", "/fail", "/refused", "/gzip", "/bomb"]
    events, recorder, _ = await call_all(toy(), paths, expect=len(paths))
    got = {r[3].removeprefix("https://rest.toy.example"): (r[4], len(r[5]), r[6])
           for r in recorder.rest_records}
    assert {**got, "/bomb": None} == {
        "/bomb": None,
        "/ok": (200, 8, None),
        "/big": (200, 0, "body larger than 1000 bytes"),
        "/slow": (0, 0, "no response within 2 s"),
        "/fail": (503, 15, "HTTP 503"),
        "/refused": (0, 0, "ConnectError: connection refused"),
        "/gzip": (200, 500, None),
    }
    bomb = got.pop("/bomb")
    assert bomb[:2] == (200, 0) and bomb[2] is not None
    assert bomb[2].startswith("bad gzip body: ") and "past the limit of 1000 bytes" in bomb[2]
    assert all(r[0] == "toy" and r[1] == 7 for r in recorder.rest_records)
    # every outcome reached the protocol, with the same key, status and error
    details = sorted(e.detail for e in events if isinstance(e, Health))
    assert len(details) == len(paths)
    assert "k3 503 15 HTTP 503" in details and "k0 200 8 None" in details


async def test_at_most_max_in_flight(autojump_clock: trio.abc.Clock) -> None:
    events, recorder, peak = await call_all(toy(), ["/busy"] * 7, expect=7)
    assert peak == Toy.max_rest_in_flight == 2
    assert len(recorder.rest_records) == 7 and len(events) == 7


async def test_the_rest_url_option_replaces_the_default(autojump_clock: trio.abc.Clock) -> None:
    _, recorder, _ = await call_all(toy("http://127.0.0.1:9/"), ["/ok"], expect=1)
    assert recorder.rest_records[0][3] == "http://127.0.0.1:9/ok"


async def test_without_a_rest_url_the_call_fails_cleanly(autojump_clock: trio.abc.Clock) -> None:
    class NoRest(Toy):
        default_rest_url = None

    proto = NoRest(ProtocolConfig(symbols=("BTC-USDT",), channels=("l2",)))
    events, recorder, _ = await call_all(proto, ["/ok"], expect=1)
    assert recorder.rest_records[0][4:] == (0, b"", "toy has no REST base URL (give "
                                                    "--endpoint toy.rest=URL)")
    assert len(events) == 1


async def test_a_plugin_exception_is_that_responses_decode_error(
        autojump_clock: trio.abc.Clock) -> None:
    events, _, _ = await call_all(toy(), ["boom/nowhere"], expect=1)
    [error] = events
    assert isinstance(error, Health) and error.event == HealthKind.DECODE_ERROR
    assert error.detail.startswith("JSONDecodeError #1")


def test_too_many_queued_calls_is_an_overflow() -> None:
    async def main() -> None:
        proto = toy()
        calls = RestCalls(proto, clock=FixedClock(), recorder=ListRecorder(),  # type: ignore[arg-type]
                          conn=1, deliver=lambda events: None)
        for i in range(MAX_PENDING_CALLS + 1):
            proto.request_rest(f"k{i}", "/ok")
        with pytest.raises(RestOverflow):
            calls.submit(proto.rest_requests_to_send())

    trio.run(main)


def test_requests_are_drained_once_and_cleared_on_connect() -> None:
    proto = toy()
    proto.request_rest("a", "/x")
    assert [r.key for r in proto.rest_requests_to_send()] == ["a"]
    assert proto.rest_requests_to_send() == []
    proto.request_rest("b", "/y")
    proto.connection_made(T0)  # a new connection: calls of the old one are void
    assert proto.rest_requests_to_send() == []
