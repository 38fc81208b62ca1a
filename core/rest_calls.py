"""Plugin REST calls: the session side of :meth:`core.protocol.ExchangeProtocol.request_rest`.

A protocol that needs an HTTP GET (a REST book snapshot; later funding rates or server-time
samples) queues it; the session hands the queue to :meth:`RestCalls.submit` after every frame and
deadline, and :meth:`RestCalls.run`, a task of the connection's nursery, performs the calls:

* against the venue's REST base URL (``--endpoint VENUE.rest=URL``, else the protocol's
  ``default_rest_url``), with httpx under trio and TLS verification on;
* at most ``max_rest_in_flight`` at once, each within ``rest_timeout_s``;
* reading at most ``max_rest_body_bytes`` of body: the body is streamed and the call fails as
  soon as it grows past the limit (responses are requested uncompressed; a gzip body is inflated
  under the same limit);
* every outcome, success or failure (timeout, connection error, a status other than 200, a body
  too large), goes to the raw recorder (so ``--replay`` feeds it back in order) and then to
  ``proto.rest_response``; its events are delivered like a frame's. The plugin decides whether
  to retry, and when (through its deadlines).

Calls belong to their connection: when it ends, the calls in flight are cancelled with it.

Must not: await anything on :meth:`RestCalls.submit` (it runs on the websocket reader's path),
hold more than ``MAX_PENDING_CALLS`` queued calls, or read an unbounded body.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AsyncExitStack

import httpx
import trio

from core.clock import Clock
from core.codec import FrameError, inflate
from core.protocol import ExchangeProtocol, RestRequest
from core.recording import Recorder
from core.schema import Event
from core.tls import rest_context

log = logging.getLogger(__name__)

#: calls a protocol may have queued and not yet started; more is a broken plugin
MAX_PENDING_CALLS = 256


class RestOverflow(Exception):
    """The protocol queued more REST calls than the session could ever perform in time."""


class RestCalls:
    """Performs one connection's REST calls; see the module docstring.

    ``deliver(events)`` is the session's hook for a response's events: publish them, send the
    frames the protocol queued meanwhile, bring its timer forward. ``transport`` replaces the
    network in tests.
    """

    def __init__(self, proto: ExchangeProtocol, *, clock: Clock, recorder: Recorder, conn: int,
                 deliver: Callable[[list[Event]], None],
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.proto = proto
        self.base_url = (proto.config.rest_url or proto.default_rest_url or "").rstrip("/")
        self.clock = clock
        self.recorder = recorder
        self.conn = conn
        self.deliver = deliver
        self.transport = transport
        self.calls = 0
        self.failures = 0
        self._send, self._receive = trio.open_memory_channel[RestRequest](MAX_PENDING_CALLS)

    def submit(self, requests: list[RestRequest]) -> None:
        """Queue calls (synchronous; never waits)."""
        for request in requests:
            try:
                self._send.send_nowait(request)
            except trio.WouldBlock:
                raise RestOverflow(f"more than {MAX_PENDING_CALLS} REST calls waiting") from None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Perform queued calls until cancelled (with the connection)."""
        slots = trio.Semaphore(self.proto.max_rest_in_flight)
        async with AsyncExitStack() as stack, trio.open_nursery() as nursery:
            task_status.started()
            client: httpx.AsyncClient | None = None
            async for request in self._receive:
                await slots.acquire()
                if client is None:  # most venues never call: no client until the first call
                    client = await stack.enter_async_context(httpx.AsyncClient(
                        timeout=self.proto.rest_timeout_s, follow_redirects=False,
                        verify=rest_context(),
                        headers={"Accept-Encoding": "identity"}, transport=self.transport))
                nursery.start_soon(self._call, client, request, slots)

    async def _call(self, client: httpx.AsyncClient, request: RestRequest,
                    slots: trio.Semaphore) -> None:
        proto = self.proto
        url = f"{self.base_url}{request.path}"
        status, body, error = 0, b"", None
        sent_ns = self.clock.now_ns()
        try:
            if not self.base_url:
                error = f"{proto.name} has no REST base URL (give --endpoint {proto.name}.rest=URL)"
            else:
                with trio.fail_after(proto.rest_timeout_s):
                    status, body, error = await self._get(client, url)
        except trio.TooSlowError:
            error = f"no response within {proto.rest_timeout_s:g} s"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        finally:
            slots.release()
        self.calls += 1
        if error is not None:
            self.failures += 1
            log.info("%s: REST %s failed: %s", proto.name, request.path, error)
        recv_ns = self.clock.now_ns()
        self.recorder.rest(proto.name, self.conn, recv_ns, request.key, url, status, body, error,
                           sent_ns=sent_ns)
        self.deliver(proto.rest_response(request.key, status, body, recv_ns, error,
                                         sent_ns=sent_ns))

    async def _get(self, client: httpx.AsyncClient, url: str) -> tuple[int, bytes, str | None]:
        limit = self.proto.max_rest_body_bytes
        async with client.stream("GET", url) as response:
            status = response.status_code
            encoding = response.headers.get("content-encoding", "identity").strip().lower()
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_raw():
                size += len(chunk)
                if size > limit:
                    return status, b"", f"body larger than {limit} bytes"
                chunks.append(chunk)
        body = b"".join(chunks)
        if encoding == "gzip":
            try:
                body = inflate(body, "gzip", limit)
            except FrameError as exc:
                return status, b"", f"bad gzip body: {exc}"
        elif encoding not in ("identity", ""):
            return status, b"", f"unsupported content encoding {encoding!r}"
        return status, body, None if status == 200 else f"HTTP {status}"
