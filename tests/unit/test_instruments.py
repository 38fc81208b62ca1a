"""Instrument metadata: fetched over REST and cached; an offline start uses the cache; with
neither, a venue that needs contract sizes fails with a clear message (CLI exit code 2)."""

from __future__ import annotations

from pathlib import Path

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
