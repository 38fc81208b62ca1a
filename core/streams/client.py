"""Connecting to Redis from trio: URL parsing, the client, reachability, and backoff.

The client library is **coredis** (6.x): a maintained, fully typed asyncio-free Redis client built
on anyio, whose trio backend runs it natively in our event loop (no worker threads, structured
cancellation, its connection pool's tasks inside the ``async with`` of the client). Streams,
consumer groups, ``XAUTOCLAIM`` and pipelining are first-class. redis-py would need a worker thread
per blocking call (``XREADGROUP BLOCK``), and a cancelled call would leave its thread running.
Tests run it under pytest-trio against a real ``redis-server``.

A client is opened per task that needs one (the sink's sender, the source's reader and acker), so
the cancellation of one never leaves another's connection in an unknown state.

Must not: hide a connection failure: every error is one of :data:`REDIS_ERRORS`, for the caller to
record and retry.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit

import coredis
import coredis.exceptions
import trio

REDIS_ERRORS = (coredis.exceptions.ConnectionError, coredis.exceptions.BusyLoadingError,
                coredis.exceptions.ProtocolError, TimeoutError, OSError, trio.TooSlowError)
CONNECT_TIMEOUT_S = 2.0
#: longer than any blocking read the source does
STREAM_TIMEOUT_S = 10.0
CHECK_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class RedisURL:
    host: str
    port: int
    db: int
    text: str

    def __str__(self) -> str:
        return self.text


def parse_url(text: str, flag: str = "--sink") -> RedisURL:
    """``redis://HOST:PORT[/DB]`` (port 6379 and db 0 by default); ValueError naming ``flag``."""
    usage = f"{flag} {text}: expected redis://HOST:PORT[/DB]"
    try:
        parts = urlsplit(text)
        port = parts.port or 6379
    except ValueError as exc:
        raise ValueError(f"{usage} ({exc})") from None
    if parts.scheme != "redis" or not parts.hostname:
        raise ValueError(usage)
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError(f"{usage}, without credentials, query or fragment")
    path = parts.path.strip("/")
    if path and not path.isdigit():
        raise ValueError(f"{usage}: DB must be a number, not {path!r}")
    return RedisURL(parts.hostname, port, int(path or 0), text)


@asynccontextmanager
async def open_client(url: RedisURL) -> AsyncIterator[coredis.Redis[bytes]]:
    """A connected client (PING answered); raises one of :data:`REDIS_ERRORS` otherwise."""
    client = coredis.Redis(host=url.host, port=url.port, db=url.db, decode_responses=False,
                           connect_timeout=CONNECT_TIMEOUT_S, stream_timeout=STREAM_TIMEOUT_S)
    async with client:
        await client.ping()
        yield client


def describe(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(describe(e) for e in exc.exceptions)
    return f"{type(exc).__name__}: {exc}"


async def check_reachable(url: RedisURL, flag: str) -> None:
    """ValueError (a usage error, exit code 2) unless Redis answers a PING in time."""
    try:
        with trio.fail_after(CHECK_TIMEOUT_S):
            async with open_client(url):
                pass
    except* REDIS_ERRORS as group:
        raise ValueError(f"{flag} {url}: Redis does not answer ({describe(group)}); start "
                         "redis-server there or give another URL") from None


@dataclass
class Backoff:
    """Capped, fully jittered exponential backoff between reconnect attempts."""

    base_s: float = 0.2
    cap_s: float = 10.0

    def delay(self, attempt: int) -> float:
        return random.uniform(0, min(self.cap_s, self.base_s * 2 ** min(attempt, 20)))


__all__ = ["REDIS_ERRORS", "Backoff", "RedisURL", "check_reachable", "describe", "open_client",
           "parse_url"]
