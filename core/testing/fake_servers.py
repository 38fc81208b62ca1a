"""Loopback fake venues for session and CLI tests.

:func:`serve_ws` runs a trio-websocket server on ``127.0.0.1`` with an OS-chosen port;
:func:`serve_http` runs a tiny HTTP/1.1 server (h11) answering GETs from a path -> body map, for
REST instrument endpoints. Both are started with ``await nursery.start(...)`` and hand back the
URL to point ``--endpoint`` at. Handlers are plain trio-websocket request handlers, so each fake
speaks its venue's real wire protocol (gzip frames, app-level pings, acks).

Loopback only: nothing here opens a connection to anything but 127.0.0.1.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from functools import partial

import h11
import trio
from trio_websocket import WebSocketRequest, serve_websocket

HOST = "127.0.0.1"
WsHandler = Callable[[WebSocketRequest], Awaitable[None]]
#: a route's answer: a body (status 200), ``(status, body)``, or None (404)
Answer = bytes | tuple[int, bytes] | None


async def serve_ws(handler: WsHandler, *, max_message_bytes: int = 64 * 1024 * 1024,
                   task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve ``handler`` on loopback; ``task_status.started`` gets ``ws://127.0.0.1:PORT``."""
    async with trio.open_nursery() as nursery:
        server = await nursery.start(partial(
            serve_websocket, handler, HOST, 0, ssl_context=None,
            max_message_size=max_message_bytes))
        task_status.started(f"ws://{HOST}:{server.port}")


async def serve_http(routes: Mapping[str, bytes] | Callable[[str], Answer], *,
                     task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve GET requests on loopback; ``task_status.started`` gets ``http://127.0.0.1:PORT``.

    ``routes`` maps a path (query included) to a body, or is a function of the path (query
    included) answering a body, a ``(status, body)`` pair (a venue's error answer) or None.
    Unknown paths get 404.
    """
    listeners = await trio.open_tcp_listeners(0, host=HOST)
    port = listeners[0].socket.getsockname()[1]

    def lookup(target: str) -> tuple[int, bytes]:
        answer = routes(target) if callable(routes) else \
            routes.get(target, routes.get(target.split("?", 1)[0]))
        if answer is None:
            return 404, b"not found"
        if isinstance(answer, tuple):
            return answer[0], answer[1]
        return 200, answer

    async def serve_one(stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        async with stream:
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    data = await stream.receive_some(65536)
                    if not data:
                        return
                    conn.receive_data(data)
                    continue
                if isinstance(event, h11.Request):
                    status, body = lookup(event.target.decode())
                    headers = [("content-type", "application/json"),
                               ("content-length", str(len(body))), ("connection", "close")]
                    await stream.send_all(conn.send(h11.Response(status_code=status,
                                                                 headers=headers)) or b"")
                    await stream.send_all(conn.send(h11.Data(data=body)) or b"")
                    await stream.send_all(conn.send(h11.EndOfMessage()) or b"")
                    return
                if isinstance(event, h11.ConnectionClosed):
                    return

    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, serve_one, listeners)
        task_status.started(f"http://{HOST}:{port}")
