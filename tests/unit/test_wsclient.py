"""The lean websocket client against trio-websocket's server and against hand-written frames."""

from __future__ import annotations

import base64
import hashlib
import struct
from collections.abc import Awaitable, Callable
from functools import partial

import pytest
import trio
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    HandshakeError,
    WebSocketRequest,
    serve_websocket,
)

from core.wsclient import GUID, connect_lean

CEILING_S = 10


async def ws_server(handler: Callable[[WebSocketRequest], Awaitable[None]],
                    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
    async with trio.open_nursery() as nursery:
        server = await nursery.start(partial(serve_websocket, handler, "127.0.0.1", 0,
                                             ssl_context=None))
        task_status.started(f"ws://127.0.0.1:{server.port}/stream?x=1")


def frame(opcode: int, payload: bytes, fin: bool = True, masked: bool = False) -> bytes:
    b0 = (0x80 if fin else 0) | opcode
    n = len(payload)
    head = struct.pack("!BB", b0, n | (0x80 if masked else 0)) if n < 126 else \
        struct.pack("!BBH", b0, 126 | (0x80 if masked else 0), n)
    return head + (b"\0\0\0\0" if masked else b"") + payload


async def raw_server(script: bytes, *, accept: bool = True,
                     task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
    """A server that answers the handshake (correctly or not) and writes ``script``."""

    async def handle(stream: trio.SocketStream) -> None:
        request = b""
        while b"\r\n\r\n" not in request:
            request += await stream.receive_some(4096)
        key = next(line.split(b":", 1)[1].strip() for line in request.split(b"\r\n")
                   if line.lower().startswith(b"sec-websocket-key"))
        token = base64.b64encode(hashlib.sha1(key + (GUID if accept else b"x")).digest())
        await stream.send_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                              b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + token +
                              b"\r\n\r\n" + script)
        with trio.move_on_after(2):
            while await stream.receive_some(4096):
                pass

    async with trio.open_nursery() as nursery:
        [listener] = await nursery.start(partial(trio.serve_tcp, handle, 0, host="127.0.0.1"))
        task_status.started(f"ws://127.0.0.1:{listener.socket.getsockname()[1]}/")


async def test_messages_both_ways_and_pings_both_ways() -> None:
    got: list[str | bytes] = []

    async def handler(request: WebSocketRequest) -> None:
        assert request.path == "/stream?x=1"
        assert dict(request.headers)[b"x-venue"] == b"1"
        ws = await request.accept()
        got.append(await ws.get_message())
        for i in range(500):
            await ws.send_message(f"m{i}")
        await ws.send_message(b"\x01\x02")
        await ws.send_message("é" * 300_000)
        await ws.ping(b"srv")  # returns when the client answered
        got.append(await ws.get_message())

    with trio.fail_after(CEILING_S):
        async with trio.open_nursery() as nursery:
            url = await nursery.start(ws_server, handler)
            async with connect_lean(url, 4 * 1024 * 1024, [("X-Venue", "1")]) as ws:
                await ws.send_message("hello")
                msgs = [await ws.get_message() for _ in range(502)]
                async with trio.open_nursery() as reading:  # pongs are seen by the reader
                    reading.start_soon(ws.get_message)
                    await ws.ping(b"cli")
                    await ws.send_message("bye")
                    reading.cancel_scope.cancel()
            nursery.cancel_scope.cancel()
    assert got == ["hello", "bye"]
    assert msgs[:3] == ["m0", "m1", "m2"] and msgs[499] == "m499"
    assert msgs[500] == b"\x01\x02" and msgs[501] == "é" * 300_000


async def test_a_close_from_the_venue_after_its_last_messages() -> None:
    async def handler(request: WebSocketRequest) -> None:
        ws = await request.accept()
        await ws.send_message("last")
        await ws.aclose(code=1001, reason="going away")

    with trio.fail_after(CEILING_S):
        async with trio.open_nursery() as nursery:
            url = await nursery.start(ws_server, handler)
            async with connect_lean(url, 1024) as ws:
                assert await ws.get_message() == "last"
                with pytest.raises(ConnectionClosed) as info:
                    await ws.get_message()
            nursery.cancel_scope.cancel()
    assert info.value.reason is not None
    assert (info.value.reason.code, info.value.reason.reason) == (1001, "going away")


@pytest.mark.parametrize(("script", "code"), [
    (frame(0x1, b"x" * 2000), 1009),  # larger than the client's limit
    (frame(0x1, b"\xff\xfe"), 1007),  # invalid UTF-8
    (frame(0x1, b"hi", masked=True), 1002),  # servers never mask
    (frame(0x0, b"orphan"), 1002),  # a continuation without a message
    (frame(0x9, b"p" * 10, fin=False), 1002),  # a fragmented control frame
])
async def test_protocol_violations_close_the_connection(script: bytes, code: int) -> None:
    with trio.fail_after(CEILING_S):
        async with trio.open_nursery() as nursery:
            url = await nursery.start(raw_server, script)
            async with connect_lean(url, 1024) as ws:
                with pytest.raises(ConnectionClosed) as info:
                    await ws.get_message()
            nursery.cancel_scope.cancel()
    assert info.value.reason is not None and info.value.reason.code == code


async def test_fragments_are_one_message_and_frames_in_the_handshake_read_count() -> None:
    script = (frame(0x1, b"par", fin=False) + frame(0x9, b"ping") + frame(0x0, b"t", fin=False)
              + frame(0x0, b"s") + frame(0x2, b"\x00"))
    with trio.fail_after(CEILING_S):
        async with trio.open_nursery() as nursery:
            url = await nursery.start(raw_server, script)
            async with connect_lean(url, 1024) as ws:
                assert await ws.get_message() == "parts"
                assert await ws.get_message() == b"\x00"
            nursery.cancel_scope.cancel()


async def test_a_wrong_accept_token_and_a_rejection_are_handshake_errors() -> None:
    async def reject(request: WebSocketRequest) -> None:
        await request.reject(403, body=b"no")

    with trio.fail_after(CEILING_S):
        async with trio.open_nursery() as nursery:
            url = await nursery.start(partial(raw_server, b"", accept=False))
            with pytest.raises(HandshakeError, match="Sec-WebSocket-Accept"):
                async with connect_lean(url, 1024):
                    pass
            url = await nursery.start(ws_server, reject)
            with pytest.raises(ConnectionRejected) as info:
                async with connect_lean(url, 1024):
                    pass
            assert info.value.status_code == 403
            nursery.cancel_scope.cancel()


async def test_a_tcp_close_is_an_abnormal_closure() -> None:
    with trio.fail_after(CEILING_S):
        async with trio.open_nursery() as nursery:
            url = await nursery.start(raw_server, frame(0x1, b"one"))
            async with connect_lean(url, 1024) as ws:
                assert await ws.get_message() == "one"
                with pytest.raises(ConnectionClosed) as info:
                    await ws.get_message()  # the raw server drops the socket after 2 s
            nursery.cancel_scope.cancel()
    assert info.value.reason is not None and info.value.reason.code == 1006
