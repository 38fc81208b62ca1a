"""Instrument metadata (contract size, tick size) fetched from each venue's REST endpoint at
start-up and cached on disk, so that an offline start with a warm cache works.

The cache is keyed by venue *and* REST base URL (``<cache>/instruments/<venue>/<host>-<hash>.json``)
and keeps the venue's response byte for byte with the time it was fetched, so data fetched from an
overridden endpoint (``--endpoint htx.rest=URL``: a testnet, a local server) never stands in for
the real venue's, and a run started from the cache can still record the response it used. A
cached response younger than :data:`CACHE_MAX_AGE_S` (24 h) that lists every requested symbol is
used as is; an older one, or one that lacks a requested symbol, is refreshed over REST, and is
used (with a warning giving its age) only when the venue cannot be reached. Every start logs
where the instruments came from and how old they are.

The venue protocol says *what* to fetch and how to parse it (pure); this module does the HTTP
(httpx, which runs under trio) and the cache file. The body is streamed and reading stops past
``MAX_INSTRUMENTS_BYTES`` (after decompression): a huge or endless body is a clear error, never
a memory blow-up. The whole fetch (connect, headers, body) has one deadline, ``FETCH_TIMEOUT_S``,
so a server that drips its body byte by byte cannot hold the start-up either.

Must not be called from a venue protocol.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import msgspec
import trio

from core.codec import S_NS
from core.protocol import ExchangeProtocol, Instrument
from core.tls import rest_context

log = logging.getLogger(__name__)

FETCH_TIMEOUT_S = 15.0
#: a cached response older than this is refreshed when the venue can be reached
CACHE_MAX_AGE_S = 24 * 3600.0
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
    fetched_ns: int | None = None  # when that response was received (UTC ns)


class CacheEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One cached instruments response: the venue's body exactly as received."""

    venue: str
    rest_url: str  # the REST base URL the entry belongs to (part of the cache key)
    url: str  # the full URL that was fetched
    fetched_ns: int  # UTC ns
    body: bytes  # base64 in the JSON file


def default_cache_dir() -> Path:
    env = os.environ.get("BOOKWIRE_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "bookwire"


def cache_path(cache_dir: Path, venue: str, rest_url: str) -> Path:
    """The cache file of one venue and REST base URL (host name kept readable, plus a hash)."""
    base = rest_url.rstrip("/")
    host = re.sub(r"[^A-Za-z0-9.-]+", "_", urlsplit(base).netloc or "none")[:64]
    key = hashlib.sha256(base.encode()).hexdigest()[:16]
    return cache_dir / "instruments" / venue / f"{host}-{key}.json"


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


async def fetch_body(url: str, *, timeout_s: float = FETCH_TIMEOUT_S,
                     max_bytes: int = MAX_INSTRUMENTS_BYTES) -> bytes:
    """GET ``url`` and return its body: at most ``max_bytes`` read (else :class:`BodyTooLarge`),
    all of it within ``timeout_s`` (else ``trio.TooSlowError``)."""
    with trio.fail_after(timeout_s):
        async with httpx.AsyncClient(timeout=timeout_s, verify=rest_context()) as client, \
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
                           timeout_s: float = FETCH_TIMEOUT_S, symbols: Sequence[str] = (),
                           max_age_s: float = CACHE_MAX_AGE_S, now_ns: int | None = None,
                           max_bytes: int = MAX_INSTRUMENTS_BYTES) -> InstrumentsResult:
    """Fetch (or read from cache) the venue's instruments.

    A cached response for the same venue and REST base URL is used without a request when it is
    younger than ``max_age_s`` and lists every one of ``symbols``. ``required``: the venue
    cannot convert its sizes without them, so having neither REST nor a cache raises
    :class:`InstrumentsUnavailable`; otherwise an empty result is returned.
    """
    path = proto.instruments_path()
    if path is None:
        return InstrumentsResult({}, "none")
    base = (rest_url or proto.default_rest_url or "").rstrip("/")
    url = f"{base}{path}"
    cache = cache_path(cache_dir, proto.name, base)
    now = time.time_ns() if now_ns is None else now_ns
    cached = _read_cache(cache, proto, base)
    if cached is not None:
        entry, known = cached
        age_s = max(now - entry.fetched_ns, 0) / S_NS
        missing = [s for s in symbols if s not in known]
        if age_s < max_age_s and not missing:
            log.info("%s: %d instruments from cache %s (fetched %s ago from %s; refreshed "
                     "after %s)", proto.name, len(known), cache, _age(age_s), entry.url,
                     _age(max_age_s))
            return InstrumentsResult(known, "cache", entry.url, entry.body, entry.fetched_ns)
        log.info("%s: refreshing instruments from %s (cache %s old%s)", proto.name, url,
                 _age(age_s), f"; it lacks {', '.join(missing)}" if missing else "")
    error: str
    try:
        body = await fetch_body(url, timeout_s=timeout_s, max_bytes=max_bytes)
        instruments = proto.parse_instruments(body)
        if not instruments:
            raise ValueError("the response lists no instruments")
        fetched_ns = time.time_ns() if now_ns is None else now_ns
        _write_cache(cache, CacheEntry(venue=proto.name, rest_url=base, url=url,
                                       fetched_ns=fetched_ns, body=body))
        log.info("%s: %d instruments from %s", proto.name, len(instruments), url)
        return InstrumentsResult(instruments, "rest", url, body, fetched_ns)
    except trio.TooSlowError:
        error = f"no complete response within {timeout_s:g} s"
    except (httpx.HTTPError, msgspec.DecodeError, msgspec.ValidationError, ValueError,
            KeyError) as exc:
        error = f"{type(exc).__name__}: {exc}"
    if cached is not None:
        entry, known = cached
        age_s = max(now - entry.fetched_ns, 0) / S_NS
        stale = " (stale: connect once with network access to refresh it)" \
            if age_s >= max_age_s else ""
        log.warning("%s: instruments from %s failed (%s); using cache %s, fetched %s ago%s",
                    proto.name, url, error, cache, _age(age_s), stale)
        return InstrumentsResult(known, "cache", entry.url, entry.body, entry.fetched_ns)
    if required:
        raise InstrumentsUnavailable(
            f"{proto.name}: cannot load instruments from {url} ({error}) and there is no cache "
            f"for that URL at {cache}; connect once with network access, or pass --endpoint "
            f"{proto.name}.rest=URL")
    log.warning("%s: instruments unavailable (%s); continuing without tick sizes", proto.name,
                error)
    return InstrumentsResult({}, "none", url)


_entry_decoder = msgspec.json.Decoder(CacheEntry)


def _read_cache(cache: Path, proto: type[ExchangeProtocol], base: str
                ) -> tuple[CacheEntry, dict[str, Instrument]] | None:
    """The cached entry for exactly this venue and base URL, parsed; None when there is none
    or it is unreadable (logged: it is then refetched and overwritten)."""
    try:
        raw = cache.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.warning("%s: cannot read instrument cache %s (%s)", proto.name, cache, exc)
        return None
    try:
        entry = _entry_decoder.decode(raw)
        if entry.venue != proto.name or entry.rest_url != base:
            raise ValueError(f"it belongs to {entry.venue} at {entry.rest_url}")
        instruments = proto.parse_instruments(entry.body)
        if not instruments:
            raise ValueError("it lists no instruments")
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError, KeyError) as exc:
        log.warning("%s: ignoring unusable instrument cache %s (%s: %s)", proto.name, cache,
                    type(exc).__name__, exc)
        return None
    return entry, instruments


def _write_cache(cache: Path, entry: CacheEntry) -> None:
    """Write-then-rename; a cache that cannot be written costs only the next offline start."""
    tmp = cache.with_name(f".{cache.name}.{os.getpid()}.tmp")
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(msgspec.json.encode(entry))
        tmp.replace(cache)
    except OSError as exc:
        log.warning("%s: cannot write instrument cache %s (%s); offline starts will not have "
                    "it", entry.venue, cache, exc)
        tmp.unlink(missing_ok=True)
