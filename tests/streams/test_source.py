"""The Redis Streams source against a real redis-server: a capture publishes, a ``--from-redis``
reader writes the same rows, acknowledges them only once they are in files, counts entries that do
not decode without stopping, and refuses an unreachable server with exit code 2."""

from __future__ import annotations

from pathlib import Path

import coredis
import msgspec
import polars as pl
import pytest
import trio

from core.run import async_main
from tests.session.sims import bybit_btc, endpoints, serving
from tests.streams.conftest import RedisServer, free_port

CEILING_S = 40


def rows(out: Path, table: str) -> pl.DataFrame:
    files = sorted(out.glob(f"{table}/exchange=*/date=*/*.parquet"))
    return pl.concat([pl.read_parquet(f) for f in files]) if files else pl.DataFrame()


async def capture(out: Path, redis_url: str, *extra: str) -> int:
    sim, script = bybit_btc()
    async with serving(sim) as (nursery, urls):
        nursery.start_soon(sim.play, script)
        code = await async_main([
            "--plugins", "bybit", "--channels", "tob,l2,trades", "--out", str(out),
            "--duration", "1.2", "--sink", redis_url, *extra, *endpoints(urls)],
            handle_signals=False)
    assert script.done
    return code


async def pending(url: str, key: str, group: str) -> int:
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    async with coredis.Redis(host="127.0.0.1", port=port) as client:
        info = await client.xpending(key, group)
        return int(info["pending"] if isinstance(info, dict) else info[0])


async def test_a_reader_writes_what_a_capture_published(
        tmp_path: Path, redis_server: RedisServer, capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    with trio.fail_after(CEILING_S):
        assert await capture(tmp_path / "direct", redis_server.url, "--sink", "parquet") == 0
        port = redis_server.port
        async with coredis.Redis(host="127.0.0.1", port=port) as client:  # garbage on a stream
            await client.xadd("bookwire:trades:bybit", {"e": b"\xc1"})
            await client.xadd("bookwire:trades:bybit", {"e": msgspec.msgpack.encode({"a": 1})})
            await client.xadd("bookwire:trades:bybit", {"x": b"1"})
        out = tmp_path / "consumed"
        code = await async_main(["--from-redis", redis_server.url, "--group", "g1",
                                 "--out", str(out), "--duration", "1.5", "--flush-interval",
                                 "0.3", "--no-live"], handle_signals=False)
    err = capsys.readouterr().err
    assert code == 0, err
    for table, key in (("tob", "ts_local"), ("l2", "price"), ("trades", "trade_id")):
        direct = rows(tmp_path / "direct", table).sort(key)
        assert rows(out, table).sort(key).equals(direct), table
    health = rows(out, "health")
    bad = health.filter(pl.col("event") == "decode_error")
    assert bad.height == 1 and "3 entries do not decode" in bad["detail"].item()
    assert "invalid=1" in bad["detail"].item() and "not msgpack=1" in bad["detail"].item()
    assert caplog.text.count("does not decode") == 3  # logged once per kind
    assert "stopped" in health.filter(pl.col("exchange") == "bybit")["event"].to_list()
    for table in ("tob", "l2", "trades", "health"):
        assert await pending(redis_server.url, f"bookwire:{table}:bybit", "g1") == 0


async def test_an_unreachable_redis_is_a_usage_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dead = f"redis://127.0.0.1:{free_port()}"
    code = await async_main(["--from-redis", dead, "--out", str(tmp_path), "--consume",
                             "tob,nope"], handle_signals=False)
    assert code == 2
    assert "--consume tob,nope: unknown tables nope" in capsys.readouterr().err
    code = await async_main(["--from-redis", dead, "--out", str(tmp_path)], handle_signals=False)
    assert code == 2
    assert f"--from-redis {dead}: Redis does not answer" in capsys.readouterr().err


async def test_entries_a_dead_reader_left_pending_are_claimed(
        tmp_path: Path, redis_server: RedisServer) -> None:
    with trio.fail_after(CEILING_S):
        assert await capture(tmp_path / "direct", redis_server.url, "--sink", "parquet") == 0
        async with coredis.Redis(host="127.0.0.1", port=redis_server.port) as client:
            # a reader of the group takes every trade and dies before acknowledging them
            await client.xgroup_create("bookwire:trades:bybit", "g2", identifier="0")
            got = await client.xreadgroup("g2", "dead", streams={"bookwire:trades:bybit": ">"})
            assert got and len(got[b"bookwire:trades:bybit"]) == 2
        await trio.sleep(0.05)
        out = tmp_path / "claimed"
        code = await async_main(["--from-redis", redis_server.url, "--group", "g2",
                                 "--consumer", "alive", "--claim-idle", "0.01", "--consume",
                                 "trades", "--out", str(out), "--duration", "1", "--no-live",
                                 "--flush-interval", "0.3"], handle_signals=False)
    assert code == 0
    assert rows(out, "trades").sort("trade_id").equals(
        rows(tmp_path / "direct", "trades").sort("trade_id"))
    assert await pending(redis_server.url, "bookwire:trades:bybit", "g2") == 0
