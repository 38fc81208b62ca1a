"""Instrument metadata (contract size, tick size) fetched from each venue's REST endpoint at
start-up and cached on disk, so that an offline start with a warm cache works.

The venue protocol says *what* to fetch and how to parse it (pure); this module does the HTTP
(httpx, which runs under trio) and the cache file. The body is streamed and reading stops past
``MAX_INSTRUMENTS_BYTES`` (after decompression): a huge or endless body is a clear error, never
a memory blow-up. The whole fetch (connect, headers, body) has one deadline, ``FETCH_TIMEOUT_S``,
so a server that drips its body byte by byte cannot hold the start-up either.

Must not be called from a venue protocol.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import httpx
import msgspec
import trio

from core.protocol import ExchangeProtocol, Instrument

log = logging.getLogger(__name__)

FETCH_TIMEOUT_S = 15.0
#: the largest instruments body read (the biggest real one, Coinbase's products, is ~1.5 MB)
MAX_INSTRUMENTS_BYTES = 32 * 1024 * 1024


class InstrumentsUnavailable(RuntimeError):
    """Neither the venue's REST endpoint nor the disk cache could provide instruments."""


class BodyTooLarge(ValueError):
    """A REST body past the size limit; reading stopped there."""


class InstrumentsResult(msgspec.Struct, frozen=True):
    instruments: dict[str, Instrument]
    source: str  # "rest" or "cache" or "none"
    url: str | None = None
    body: bytes | None = None  # the REST response used, for raw recording


def default_cache_dir() -> Path:
    env = os.environ.get("BOOKWIRE_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "bookwire"


def cache_path(cache_dir: Path, venue: str) -> Path:
    return cache_dir / "instruments" / f"{venue}.json"


async def fetch_body(url: str, *, timeout_s: float = FETCH_TIMEOUT_S,
                     max_bytes: int = MAX_INSTRUMENTS_BYTES) -> bytes:
    """GET ``url`` and return its body: at most ``max_bytes`` read (else :class:`BodyTooLarge`),
    all of it within ``timeout_s`` (else ``trio.TooSlowError``)."""
    with trio.fail_after(timeout_s):
        async with httpx.AsyncClient(timeout=timeout_s) as client, \
                client.stream("GET", url) as resp:
            resp.raise_for_status()
            declared = resp.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > max_bytes:
                raise BodyTooLarge(f"the body is {int(declared)} bytes, more than the limit of "
                                   f"{max_bytes} bytes")
            chunks: list[bytes] = []
            total = 0
            async for chunk in resp.aiter_bytes():
                total += len(chunk)
                if total > max_bytes:
                    raise BodyTooLarge(f"the body is larger than the limit of {max_bytes} "
                                       "bytes; stopped reading")
                chunks.append(chunk)
    return b"".join(chunks)


async def load_instruments(proto: type[ExchangeProtocol], rest_url: str | None,
                           cache_dir: Path, *, required: bool,
                           timeout_s: float = FETCH_TIMEOUT_S,
                           max_bytes: int = MAX_INSTRUMENTS_BYTES) -> InstrumentsResult:
    """Fetch (or read from cache) the venue's instruments.

    ``required``: the venue cannot convert its sizes without them, so having neither REST nor a
    cache raises :class:`InstrumentsUnavailable`; otherwise an empty result is returned.
    """
    path = proto.instruments_path()
    if path is None:
        return InstrumentsResult({}, "none")
    base = (rest_url or proto.default_rest_url or "").rstrip("/")
    url = f"{base}{path}"
    cache = cache_path(cache_dir, proto.name)
    error: str
    try:
        body = await fetch_body(url, timeout_s=timeout_s, max_bytes=max_bytes)
        instruments = proto.parse_instruments(body)
        if not instruments:
            raise ValueError("the response lists no instruments")
        _write_cache(cache, instruments)
        return InstrumentsResult(instruments, "rest", url, body)
    except trio.TooSlowError:
        error = f"no complete response within {timeout_s:g} s"
    except (httpx.HTTPError, msgspec.DecodeError, msgspec.ValidationError, ValueError,
            KeyError) as exc:
        error = f"{type(exc).__name__}: {exc}"
    if cache.exists():
        log.warning("%s: instruments from %s failed (%s); using cache %s", proto.name, url,
                    error, cache)
        data = msgspec.json.decode(cache.read_bytes(), type=dict[str, Instrument])
        return InstrumentsResult(data, "cache", url)
    if required:
        raise InstrumentsUnavailable(
            f"{proto.name}: cannot load instruments from {url} ({error}) and there is no cache "
            f"at {cache}; connect once with network access, or pass --endpoint "
            f"{proto.name}.rest=URL")
    log.warning("%s: instruments unavailable (%s); continuing without tick sizes", proto.name,
                error)
    return InstrumentsResult({}, "none", url)


def _write_cache(cache: Path, instruments: dict[str, Instrument]) -> None:
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".json.tmp")
    tmp.write_bytes(msgspec.json.encode(instruments))
    tmp.replace(cache)
