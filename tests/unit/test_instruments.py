"""Instrument metadata: fetched over REST and cached; an offline start uses the cache; with
neither, a venue that needs contract sizes fails with a clear message (CLI exit code 2)."""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path

import h11
import pytest
import trio

from core.instruments import InstrumentsUnavailable, cache_path, load_instruments
from core.run import async_main
from core.testing.fake_servers import serve_http
from plugins.htx.fake import CONTRACT_INFO_PATH as CONTRACT_INFO
from plugins.htx.protocol import HtxProtocol
from tests.session.test_htx_e2e import contract_info

CEILING_S = 20
DEAD = "http://127.0.0.1:9"  # nothing listens on the discard port


async def test_fetch_writes_the_cache_and_an_offline_start_reads_it(tmp_path: Path) -> None:
    with trio.fail_after(CEILING_S):
        async with trio.open_nursery() as nursery:
            rest = await nursery.start(serve_http, {CONTRACT_INFO: contract_info()})
            online = await load_instruments(HtxProtocol, rest, tmp_path, required=True)
            nursery.cancel_scope.cancel()
    assert online.source == "rest" and online.body == contract_info()
    assert online.instruments["BTC-USDT"].contract_size == 0.001
    assert cache_path(tmp_path, "htx").exists()

    offline = await load_instruments(HtxProtocol, DEAD, tmp_path, required=True)
    assert offline.source == "cache"
    assert offline.instruments == online.instruments


async def test_neither_rest_nor_cache_is_a_clear_error(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(InstrumentsUnavailable, match="no cache at"):
        await load_instruments(HtxProtocol, DEAD, tmp_path, required=True)
    code = await async_main(["--plugins", "htx", "--out", str(tmp_path / "data"),
                             "--cache-dir", str(tmp_path / "empty"),
                             "--endpoint", f"htx.rest={DEAD}"], handle_signals=False)
    assert code == 2
    err = capsys.readouterr().err
    assert "htx: cannot load instruments from http://127.0.0.1:9/linear-swap-api" in err
    assert "--endpoint htx.rest=URL" in err


async def test_a_venue_that_does_not_need_them_starts_without(tmp_path: Path) -> None:
    from plugins.bybit.protocol import BybitProtocol

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
