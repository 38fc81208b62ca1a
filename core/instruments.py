"""Instrument metadata (contract size, tick size) fetched from each venue's REST endpoint at
start-up and cached on disk, so that an offline start with a warm cache works.

The venue protocol says *what* to fetch and how to parse it (pure); this module does the HTTP
(httpx, which runs under trio) and the cache file. Must not be called from a venue protocol.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import httpx
import msgspec

from core.protocol import ExchangeProtocol, Instrument

log = logging.getLogger(__name__)

FETCH_TIMEOUT_S = 15.0


class InstrumentsUnavailable(RuntimeError):
    """Neither the venue's REST endpoint nor the disk cache could provide instruments."""


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


async def load_instruments(proto: type[ExchangeProtocol], rest_url: str | None,
                           cache_dir: Path, *, required: bool,
                           timeout_s: float = FETCH_TIMEOUT_S) -> InstrumentsResult:
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
        async with httpx.AsyncClient(timeout=timeout_s) as client:
            resp = await client.get(url)
            resp.raise_for_status()
            body = resp.content
        instruments = proto.parse_instruments(body)
        if not instruments:
            raise ValueError("the response lists no instruments")
        _write_cache(cache, instruments)
        return InstrumentsResult(instruments, "rest", url, body)
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
