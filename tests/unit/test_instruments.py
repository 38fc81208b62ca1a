"""Instrument metadata: fetched over REST and cached per venue *and* REST base URL; an offline start
with a cache for the same URL works, a cache from another URL never stands in; a fresh cache is
used without a request, a stale one is refreshed; with neither REST nor a cache, a venue that
needs contract sizes fails with a clear message (CLI exit code 2)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import h11
import pytest
import trio

from core.codec import S_NS
from core.instruments import (
    CACHE_MAX_AGE_S,
    InstrumentsUnavailable,
    cache_path,
    load_instruments,
)
from core.run import async_main
from core.testing.fake_servers import serve_http
from plugins.bybit.protocol import BybitProtocol
from plugins.htx.fake import CONTRACT_INFO_PATH as CONTRACT_INFO
from plugins.htx.protocol import HtxProtocol
from tests.session.sims import HTX_BTC, HTX_ETH, rest_of

CEILING_S = 20
DEAD = "http://127.0.0.1:9"  # nothing listens on the discard port


def contract_info() -> bytes:
    """The fake HTX's contract list: BTC-USDT (0.001 BTC a contract) and ETH-USDT (0.01 ETH)."""
    body = rest_of("htx", HTX_BTC, HTX_ETH)(CONTRACT_INFO)
    assert isinstance(body, bytes)
    return body


def htx_body(*codes: tuple[str, float]) -> bytes:
    return json.dumps({"status": "ok", "data": [
        {"symbol": code.split("-")[0], "contract_code": code, "contract_size": size,
         "price_tick": 0.1, "contract_status": 1, "business_type": "swap",
         "contract_type": "swap", "pair": code} for code, size in codes]}).encode()


class Counting:
    """A REST route that counts its requests and serves whatever body is current."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.requests = 0

    def __call__(self, target: str) -> bytes | None:
        if target != CONTRACT_INFO:
            return None
        self.requests += 1
        return self.body


async def test_fetch_writes_the_cache_and_an_offline_start_reads_it(tmp_path: Path) -> None:
    with trio.fail_after(CEILING_S):
        async with trio.open_nursery() as nursery:
            rest = await nursery.start(serve_http, {CONTRACT_INFO: contract_info()})
            online = await load_instruments(HtxProtocol, rest, tmp_path, required=True)
            nursery.cancel_scope.cancel()
    assert online.source == "rest" and online.body == contract_info()
    assert online.instruments["BTC-USDT"].contract_size == 0.001
    assert cache_path(tmp_path, "htx", rest).exists()

    # The server is gone; even a stale cache for the same URL carries an offline start.
    later = time.time_ns() + int(2 * CACHE_MAX_AGE_S * S_NS)
    offline = await load_instruments(HtxProtocol, rest, tmp_path, required=True, now_ns=later)
    assert offline.source == "cache"
    assert offline.instruments == online.instruments
    assert offline.body == contract_info()  # so a raw recording still gets the response


async def test_an_overridden_endpoint_never_poisons_the_real_venues_cache(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    # A local "testnet" lists BTC-USDT only, with a wrong contract size.
    testnet = htx_body(("BTC-USDT", 1.0))
    with trio.fail_after(CEILING_S):
        async with trio.open_nursery() as nursery:
            rest = await nursery.start(serve_http, {CONTRACT_INFO: testnet})
            result = await load_instruments(HtxProtocol, rest, tmp_path, required=True)
            nursery.cancel_scope.cancel()
    assert result.instruments["BTC-USDT"].contract_size == 1.0
    real = HtxProtocol.default_rest_url
    assert real is not None
    assert cache_path(tmp_path, "htx", real) != cache_path(tmp_path, "htx", rest)
    assert not cache_path(tmp_path, "htx", real).exists()

    # "The real venue" unreachable (a dead loopback port stands in for it): the testnet's
    # cache is not used in its place.
    monkeypatch.setattr(HtxProtocol, "default_rest_url", DEAD)
    with pytest.raises(InstrumentsUnavailable, match="no cache for that URL"):
        await load_instruments(HtxProtocol, None, tmp_path, required=True)
    code = await async_main(["--plugins", "htx", "--symbols", "SOL-USDT",
                             "--out", str(tmp_path / "data"), "--cache-dir", str(tmp_path)],
                            handle_signals=False)
    assert code == 2
    err = capsys.readouterr().err
    assert f"htx: cannot load instruments from {DEAD}/linear-swap-api" in err
    assert "does not list" not in err


async def test_a_fresh_cache_is_used_without_a_request(tmp_path: Path,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    route = Counting(contract_info())
    with trio.fail_after(CEILING_S):
        async with trio.open_nursery() as nursery:
            rest = await nursery.start(serve_http, route)
            await load_instruments(HtxProtocol, rest, tmp_path, required=True)
            assert route.requests == 1
            with caplog.at_level(logging.INFO, logger="core.instruments"):
                again = await load_instruments(HtxProtocol, rest, tmp_path, required=True,
                                               symbols=["BTC-USDT"])
            assert route.requests == 1
            assert again.source == "cache"
            assert "instruments from cache" in caplog.text and "ago" in caplog.text
            # A requested symbol the fresh cache lacks (a new listing) is fetched again.
            route.body = htx_body(("BTC-USDT", 0.001), ("SOL-USDT", 1.0))
            newer = await load_instruments(HtxProtocol, rest, tmp_path, required=True,
                                           symbols=["SOL-USDT"])
            assert route.requests == 2 and newer.source == "rest"
            assert "SOL-USDT" in newer.instruments
            nursery.cancel_scope.cancel()


async def test_a_stale_cache_is_refreshed_when_the_venue_answers(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    route = Counting(htx_body(("BTC-USDT", 0.001)))
    t0 = time.time_ns() - int(CACHE_MAX_AGE_S * S_NS) - 3600 * S_NS  # 25 h ago
    with trio.fail_after(CEILING_S):
        async with trio.open_nursery() as nursery:
            rest = await nursery.start(serve_http, route)
            old = await load_instruments(HtxProtocol, rest, tmp_path, required=True, now_ns=t0)
            assert old.fetched_ns == t0
            route.body = htx_body(("BTC-USDT", 0.001), ("ETH-USDT", 0.01))
            with caplog.at_level(logging.INFO, logger="core.instruments"):
                fresh = await load_instruments(HtxProtocol, rest, tmp_path, required=True)
            nursery.cancel_scope.cancel()
    assert route.requests == 2
    assert fresh.source == "rest" and set(fresh.instruments) == {"BTC-USDT", "ETH-USDT"}
    assert fresh.fetched_ns is not None and fresh.fetched_ns > t0
    assert "cache 25.0 h old" in caplog.text
    # The refreshed response replaced the stale one on disk.
    offline = await load_instruments(HtxProtocol, DEAD, tmp_path,
                                     required=False)
    assert offline.source == "none"  # another URL: no cache of its own
    reread = await load_instruments(HtxProtocol, rest, tmp_path, required=True)
    assert reread.source == "cache" and set(reread.instruments) == {"BTC-USDT", "ETH-USDT"}


async def test_an_unreadable_cache_is_ignored_and_replaced(tmp_path: Path) -> None:
    with trio.fail_after(CEILING_S):
        async with trio.open_nursery() as nursery:
            rest = await nursery.start(serve_http, {CONTRACT_INFO: contract_info()})
            path = cache_path(tmp_path, "htx", rest)
            path.parent.mkdir(parents=True)
            path.write_bytes(b"{not json")
            result = await load_instruments(HtxProtocol, rest, tmp_path, required=True)
            nursery.cancel_scope.cancel()
    assert result.source == "rest"
    assert b"BTC-USDT" not in path.read_bytes()  # the body is kept base64-encoded
    assert json.loads(path.read_bytes())["rest_url"] == rest


async def test_neither_rest_nor_cache_is_a_clear_error(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(InstrumentsUnavailable, match="no cache for that URL"):
        await load_instruments(HtxProtocol, DEAD, tmp_path, required=True)
    code = await async_main(["--plugins", "htx", "--out", str(tmp_path / "data"),
                             "--cache-dir", str(tmp_path / "empty"),
                             "--endpoint", f"htx.rest={DEAD}"], handle_signals=False)
    assert code == 2
    err = capsys.readouterr().err
    assert "htx: cannot load instruments from http://127.0.0.1:9/linear-swap-api" in err
    assert "--endpoint htx.rest=URL" in err


async def test_a_venue_that_does_not_need_them_starts_without(tmp_path: Path) -> None:
    result = await load_instruments(BybitProtocol, DEAD, tmp_path, required=False)
    assert result.source == "none" and result.instruments == {}


async def serve_raw(body_chunks: object, *, chunk_pause_s: float = 0.0,
                    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
    """A loopback HTTP server answering every GET with a chunked body: the chunks of
    ``body_chunks`` (an iterable of bytes, possibly endless), ``chunk_pause_s`` apart."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]

    async def serve_one(stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        async with stream:
            while not isinstance(conn.next_event(), h11.Request):
                conn.receive_data(await stream.receive_some(65536))
            await stream.send_all(conn.send(h11.Response(
                status_code=200, headers=[("transfer-encoding", "chunked")])) or b"")
            try:
                for chunk in body_chunks:  # type: ignore[attr-defined]
                    await stream.send_all(conn.send(h11.Data(data=chunk)) or b"")
                    await trio.sleep(chunk_pause_s)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return  # the client stopped reading

    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, serve_one, listeners)
        task_status.started(f"http://127.0.0.1:{port}")


def endless() -> Iterator[bytes]:
    while True:
        yield b"x" * 65536


async def test_an_endless_body_is_cut_at_the_limit(tmp_path: Path) -> None:
    with trio.fail_after(CEILING_S):
        async with trio.open_nursery() as nursery:
            rest = await nursery.start(serve_raw, endless())
            with pytest.raises(InstrumentsUnavailable, match=r"larger than the limit of 1048576 "
                                                             r"bytes; stopped reading"):
                await load_instruments(HtxProtocol, rest, tmp_path, required=True,
                                       max_bytes=1024 * 1024)
            nursery.cancel_scope.cancel()


async def test_a_declared_body_past_the_limit_is_refused_before_reading(tmp_path: Path) -> None:
    with trio.fail_after(CEILING_S):
        async with trio.open_nursery() as nursery:
            rest = await nursery.start(serve_http, {CONTRACT_INFO: b"[" + b" " * 300_000 + b"]"})
            with pytest.raises(InstrumentsUnavailable, match="is 300002 bytes, more than the "
                                                             "limit of 100000 bytes"):
                await load_instruments(HtxProtocol, rest, tmp_path, required=True,
                                       max_bytes=100_000)
            nursery.cancel_scope.cancel()


async def test_a_dripping_body_cannot_hold_the_start_beyond_the_fetch_timeout(
        tmp_path: Path) -> None:
    drip = (b"x" for _ in range(1000))  # one byte every 0.1 s: 100 s in all
    with trio.fail_after(CEILING_S):
        async with trio.open_nursery() as nursery:
            rest = await nursery.start(partial(serve_raw, drip, chunk_pause_s=0.1))
            start = trio.current_time()
            with pytest.raises(InstrumentsUnavailable, match="no complete response within 1 s"):
                await load_instruments(HtxProtocol, rest, tmp_path, required=True, timeout_s=1.0)
            assert trio.current_time() - start < 3.0
            nursery.cancel_scope.cancel()
