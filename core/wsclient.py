"""A lean websocket client transport (RFC 6455), offered beside trio-websocket behind the
session's ``connect`` seam (``--transport lean``).

trio-websocket (the default) parses every frame through wsproto and hands each message to the
reader through a memory channel; at tens of thousands of small frames a second that per-frame
work costs more than a venue plugin's whole decode. This client reads what the socket has
(up to ``RECV_BYTES`` at once) and parses every complete frame of that read in one pass into a
queue of messages, which :meth:`LeanWebSocket.get_message` hands out, yielding to the scheduler
every ``YIELD_EVERY`` messages so that a burst never keeps other tasks waiting.

It implements what a market-data client needs: the client handshake (``Sec-WebSocket-Accept``
checked), text and binary messages, fragmented messages, answering pings, :meth:`ping` with its
pong, the closing handshake, client masking; no extensions are requested (no
``permessage-deflate``). Errors are reported with trio-websocket's own exception types
(``ConnectionClosed`` with a ``CloseReason``, ``ConnectionRejected``, ``HandshakeError``), so the
session handles both transports alike. Every size from outside is bounded: the handshake
response, each message (``max_message_bytes``: larger is closed with 1009), the read buffer.
Invalid UTF-8 in a text message closes the connection with 1007. TLS verification stays on.

Must not: spawn tasks (it has none: the reader is the caller of :meth:`get_message`), or
read more than it needs to parse the next frames.
"""

from __future__ import annotations

import base64
import hashlib
import os
import struct
from collections import deque
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from urllib.parse import urlsplit

import trio
from trio_websocket import CloseReason, ConnectionClosed, ConnectionRejected, HandshakeError

from core.tls import websocket_context

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
RECV_BYTES = 256 * 1024
MAX_HANDSHAKE_BYTES = 64 * 1024
YIELD_EVERY = 64  # messages handed out between two checkpoints that let other tasks run
CLOSE_TIMEOUT_S = 2.0

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def _mask(payload: bytes, key: bytes) -> bytes:
    """XOR ``payload`` with the 4-byte ``key`` repeated (client frames must be masked)."""
    n = len(payload)
    if not n:
        return payload
    repeated = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(repeated, "little")).to_bytes(
        n, "little")


def encode_frame(opcode: int, payload: bytes) -> bytes:
    """One masked client frame with FIN set."""
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 1 << 16:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    key = os.urandom(4)
    return head + key + _mask(payload, key)


class LeanWebSocket:
    """One client websocket connection over a trio stream (see the module docstring)."""

    def __init__(self, stream: trio.abc.Stream, max_message_bytes: int) -> None:
        self._stream = stream
        self._max = max_message_bytes
        self._buf = bytearray()
        self._messages: deque[str | bytes] = deque()
        self._fragments: list[bytes] = []
        self._fragment_op = 0
        self._fragment_bytes = 0
        self._handed_out = 0
        self._send_lock = trio.Lock()
        self._pongs: dict[bytes, trio.Event] = {}
        self._closed: CloseReason | None = None
        self._close_sent = False
        self._peer_done = False  # the peer's close frame (or the end of the TCP stream) was seen

    @property
    def closed(self) -> CloseReason | None:
        """Why the connection closed, or None while it is open."""
        return self._closed

    # -- receiving ------------------------------------------------------------------------------

    async def get_message(self) -> str | bytes:
        """The next message: ``str`` for text, ``bytes`` for binary. Raises ``ConnectionClosed``
        once the peer closed (after every message it sent before closing was handed out)."""
        while not self._messages:
            if self._closed is not None:
                raise ConnectionClosed(self._closed)
            await self._read()
        self._handed_out += 1
        if self._handed_out % YIELD_EVERY == 0:
            await trio.lowlevel.checkpoint()
        else:
            await trio.lowlevel.checkpoint_if_cancelled()
        return self._messages.popleft()

    async def _read(self) -> None:
        try:
            data = await self._stream.receive_some(RECV_BYTES)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            self._closed = CloseReason(1006, f"connection lost: {exc}")
            raise ConnectionClosed(self._closed) from exc
        if not data:
            self._peer_done = True
            self._closed = self._closed or CloseReason(1006, "the peer closed the TCP connection")
            return
        self._buf += data
        await self._parse()

    async def _parse(self) -> None:
        """Every complete frame in the buffer, in one pass."""
        buf = self._buf
        pos = 0
        end = len(buf)
        while end - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            if b1 & 0x80:
                await self._fail(1002, "the server masked a frame")
                return
            if b0 & 0x70:
                await self._fail(1002, "reserved bits set (no extension was negotiated)")
                return
            n = b1 & 0x7F
            head = 2
            if n == 126:
                if end - pos < 4:
                    break
                n = (buf[pos + 2] << 8) | buf[pos + 3]
                head = 4
            elif n == 127:
                if end - pos < 10:
                    break
                n = int.from_bytes(buf[pos + 2:pos + 10], "big")
                head = 10
            opcode = b0 & 0x0F
            if opcode < OP_CLOSE and n + self._fragment_bytes > self._max:
                await self._fail(1009, f"a message larger than {self._max} bytes")
                return
            if opcode >= OP_CLOSE and (n > 125 or not b0 & 0x80):
                await self._fail(1002, "a control frame longer than 125 bytes or fragmented")
                return
            if end - pos < head + n:
                break
            payload = bytes(buf[pos + head:pos + head + n])
            pos += head + n
            if not await self._frame(b0 & 0x80, opcode, payload):
                break
        del buf[:pos]

    async def _frame(self, fin: int, opcode: int, payload: bytes) -> bool:
        """Handle one frame; False once the connection is closing."""
        if opcode in (OP_TEXT, OP_BINARY):
            if self._fragments:
                await self._fail(1002, "a new message before the last one ended")
                return False
            if fin:
                return await self._deliver(opcode, payload)
            self._fragment_op, self._fragments, self._fragment_bytes = opcode, [payload], len(
                payload)
            return True
        if opcode == OP_CONT:
            if not self._fragments:
                await self._fail(1002, "a continuation frame without a message")
                return False
            self._fragments.append(payload)
            self._fragment_bytes += len(payload)
            if not fin:
                return True
            whole = b"".join(self._fragments)
            self._fragments, self._fragment_bytes = [], 0
            return await self._deliver(self._fragment_op, whole)
        if opcode == OP_PING:
            await self._send(OP_PONG, payload)
            return True
        if opcode == OP_PONG:
            waiter = self._pongs.pop(payload, None)
            if waiter is not None:
                waiter.set()
            return True
        if opcode == OP_CLOSE:
            self._peer_done = True
            if self._closed is not None:  # the answer to our own close
                return False
            code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
            reason = payload[2:].decode("utf-8", "replace")
            self._closed = CloseReason(code, reason or None)
            await self._reply_close(code if len(payload) >= 2 else 1000)
            return False
        await self._fail(1002, f"unknown opcode {opcode}")
        return False

    async def _deliver(self, opcode: int, payload: bytes) -> bool:
        if opcode == OP_TEXT:
            try:
                self._messages.append(payload.decode("utf-8"))
            except UnicodeDecodeError:
                await self._fail(1007, "a text message that is not valid UTF-8")
                return False
        else:
            self._messages.append(payload)
        return True

    # -- sending --------------------------------------------------------------------------------

    async def send_message(self, message: str | bytes) -> None:
        if self._closed is not None:
            raise ConnectionClosed(self._closed)
        if isinstance(message, str):
            await self._send(OP_TEXT, message.encode())
        else:
            await self._send(OP_BINARY, message)

    async def ping(self, payload: bytes | None = None) -> None:
        """Send a ping and wait for its pong (the caller bounds the wait). The pong is seen by
        whichever task reads (:meth:`get_message`), as in the session, where one always does."""
        if self._closed is not None:
            raise ConnectionClosed(self._closed)
        payload = payload if payload is not None else os.urandom(4)
        waiter = self._pongs[payload] = trio.Event()
        await self._send(OP_PING, payload)
        await waiter.wait()

    async def _send(self, opcode: int, payload: bytes) -> None:
        frame = encode_frame(opcode, payload)
        async with self._send_lock:
            try:
                await self._stream.send_all(frame)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                self._closed = self._closed or CloseReason(1006, f"connection lost: {exc}")
                raise ConnectionClosed(self._closed) from exc

    # -- closing --------------------------------------------------------------------------------

    async def _reply_close(self, code: int) -> None:
        if self._close_sent:
            return
        self._close_sent = True
        with suppress(ConnectionClosed):
            await self._send(OP_CLOSE, struct.pack("!H", code))

    async def _fail(self, code: int, reason: str) -> None:
        """A protocol violation by the peer: close with ``code`` and stop reading."""
        self._closed = CloseReason(code, reason)
        self._buf.clear()
        await self._reply_close(code)

    async def aclose(self, code: int = 1000, reason: str | None = None) -> None:
        """Closing handshake, bounded by ``CLOSE_TIMEOUT_S``: our close frame if not sent yet,
        then the peer's answer (its close frame or the end of the stream) is awaited, as RFC 6455
        asks of a client; then the stream is closed whatever happened."""
        try:
            with trio.move_on_after(CLOSE_TIMEOUT_S):
                if not self._close_sent:
                    self._close_sent = True
                    body = struct.pack("!H", code) + (reason or "").encode()[:123]
                    await self._send(OP_CLOSE, body)
                self._closed = self._closed or CloseReason(code, reason)
                self._buf.clear()
                while not self._peer_done:
                    data = await self._stream.receive_some(RECV_BYTES)
                    if not data:
                        break
                    self._buf += data
                    await self._parse()
        except (ConnectionClosed, trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        finally:
            self._closed = self._closed or CloseReason(code, reason)
            await trio.aclose_forcefully(self._stream)


async def handshake(stream: trio.abc.Stream, host: str, resource: str,
                    headers: Sequence[tuple[str, str]] = ()) -> bytes:
    """The client's opening handshake; returns any bytes read past the response (frames the
    server sent at once)."""
    key = base64.b64encode(os.urandom(16))
    lines = [f"GET {resource} HTTP/1.1", f"Host: {host}", "Upgrade: websocket",
             "Connection: Upgrade", f"Sec-WebSocket-Key: {key.decode()}",
             "Sec-WebSocket-Version: 13", *(f"{k}: {v}" for k, v in headers)]
    await stream.send_all(("\r\n".join(lines) + "\r\n\r\n").encode())
    response = bytearray()
    while b"\r\n\r\n" not in response:
        if len(response) > MAX_HANDSHAKE_BYTES:
            raise HandshakeError(f"a handshake response of more than {MAX_HANDSHAKE_BYTES} bytes")
        chunk = await stream.receive_some(8192)
        if not chunk:
            raise HandshakeError("the server closed the connection during the handshake")
        response += chunk
    head, _, rest = bytes(response).partition(b"\r\n\r\n")
    status_line, *header_lines = head.split(b"\r\n")
    parts = status_line.split(b" ", 2)
    try:
        status = int(parts[1])
    except (IndexError, ValueError):
        raise HandshakeError(f"not an HTTP response: {status_line[:100]!r}") from None
    fields = []
    for line in header_lines:
        name, _, value = line.partition(b":")
        fields.append((name.strip().lower(), value.strip()))
    if status != 101:
        raise ConnectionRejected(status, tuple(fields), rest or None)
    values = dict(fields)
    expected = base64.b64encode(hashlib.sha1(key + GUID).digest())
    if values.get(b"sec-websocket-accept") != expected:
        raise HandshakeError("the server's Sec-WebSocket-Accept does not match our key")
    if values.get(b"upgrade", b"").lower() != b"websocket":
        raise HandshakeError("the server did not upgrade to websocket")
    return rest


@asynccontextmanager
async def open_lean_over(stream: trio.abc.Stream, host: str, resource: str,
                         max_message_bytes: int, headers: Sequence[tuple[str, str]] = ()
                         ) -> AsyncIterator[LeanWebSocket]:
    """A lean websocket over an already connected stream, which it owns and always closes."""
    try:
        rest = await handshake(stream, host, resource, headers)
    except BaseException:
        await trio.aclose_forcefully(stream)
        raise
    ws = LeanWebSocket(stream, max_message_bytes)
    try:
        if rest:
            ws._buf += rest
            await ws._parse()
        yield ws
    finally:
        with trio.CancelScope(shield=True):
            await ws.aclose()


async def open_url_stream(url: str) -> tuple[trio.abc.Stream, str, str]:
    """The byte stream under a websocket URL: TCP, plus TLS with verification on (the default
    context, one per process: :mod:`core.tls`) for ``wss``. Returns ``(stream, host header,
    resource)``; the caller owns the stream."""
    parts = urlsplit(url)
    secure = parts.scheme == "wss"
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise HandshakeError(f"not a websocket URL: {url!r}")
    port = parts.port or (443 if secure else 80)
    resource = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host = parts.hostname
    stream: trio.abc.Stream
    if secure:
        ssl_stream = await trio.open_ssl_over_tcp_stream(
            host, port, ssl_context=websocket_context(), https_compatible=True)
        try:
            await ssl_stream.do_handshake()
        except BaseException:
            await trio.aclose_forcefully(ssl_stream)
            raise
        stream = ssl_stream
    else:
        stream = await trio.open_tcp_stream(host, port)
    return stream, (host if port in (80, 443) else f"{host}:{port}"), resource


@asynccontextmanager
async def connect_lean(url: str, max_message_bytes: int,
                       headers: Sequence[tuple[str, str]] = ()
                       ) -> AsyncIterator[LeanWebSocket]:
    """A ``Connect`` for the session: TCP (+ TLS with verification on), then the handshake."""
    stream, host_header, resource = await open_url_stream(url)
    async with open_lean_over(stream, host_header, resource, max_message_bytes, headers) as ws:
        yield ws
