"""The Redis Streams sink against a real redis-server: every event, one stream per table and
venue; an unreachable server refused before the first venue connection; a server that goes away
mid-run is a ``sink_error`` row, and the sink reconnects while the Parquet recording goes on."""

from __future__ import annotations

from pathlib import Path

import coredis
import polars as pl
import pytest
import trio

from core.bus import Bus, Policy
from core.run import async_main
from core.schema import Event, Trade
from core.sim.market import Market, load_text
from core.streams.client import Backoff, parse_url
from core.streams.codec import Decoder, parse_stream
from core.streams.sink import RedisSink
from core.tables import table_of_kind
from tests.session.sims import BYBIT_BTC, bybit_btc, endless, endpoints, serving, simulation
from tests.streams.conftest import RedisServer, free_port

CEILING_S = 40
T = 1_786_310_818_000_000_000


async def read_streams(url: str) -> dict[str, list[Event]]:
    """Every bookwire stream, decoded, by name."""
    out: dict[str, list[Event]] = {}
    decoder = Decoder()
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    async with coredis.Redis(host="127.0.0.1", port=port) as client:
        keys = [k async for k in client.scan_iter(match="bookwire:*")]
        for key in sorted(keys):
            table, _ = parse_stream(key)  # type: ignore[misc]
            entries = await client.xrange(key)
            out[key.decode()] = [decoder.decode(table, e.field_values) for e in entries]
    return out


def parquet(out: Path, table: str) -> pl.DataFrame:
    files = sorted(out.glob(f"{table}/exchange=bybit/date=*/*.parquet"))
    return pl.concat([pl.read_parquet(f) for f in files]) if files else pl.DataFrame()


async def test_every_event_goes_to_its_stream(tmp_path: Path, redis_server: RedisServer) -> None:
    sim, script = bybit_btc()
    out = tmp_path / "data"
    with trio.fail_after(CEILING_S):
        async with serving(sim) as (nursery, urls):
            nursery.start_soon(sim.play, script)
            code = await async_main([
                "--plugins", "bybit", "--channels", "tob,l2,trades", "--out", str(out),
                "--duration", "1.5", "--flush-interval", "0.5", "--sink", "parquet",
                "--sink", redis_server.url, *endpoints(urls)], handle_signals=False)
    assert code == 0 and script.done
    streams = await read_streams(redis_server.url)
    assert set(streams) == {"bookwire:tob:bybit", "bookwire:l2:bybit", "bookwire:trades:bybit",
                            "bookwire:health:bybit"}
    tob = streams["bookwire:tob:bybit"]
    assert [(e.bid_px, e.bid_sz, e.ask_px, e.ask_sz) for e in tob] == [  # type: ignore[attr-defined]
        (100.0, 1.0, 101.0, 2.0), (100.0, 1.5, 101.0, 2.0)]
    assert [e.ts_local for e in tob] == parquet(out, "tob")["ts_local"].dt.epoch("ns").to_list()
    assert len(streams["bookwire:l2:bybit"]) == 2 and len(streams["bookwire:trades:bybit"]) == 2
    health = [e.event for e in streams["bookwire:health:bybit"]]  # type: ignore[attr-defined]
    assert health[0] == "started" and health[-1] == "stopped" and "snapshot" in health


async def test_an_unreachable_redis_is_refused_before_connecting(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sim, _ = bybit_btc()
    dead = f"redis://127.0.0.1:{free_port()}"
    with trio.fail_after(CEILING_S):
        async with serving(sim) as (_, urls):
            ws_url = urls["bybit"][0]
            code = await async_main([
                "--plugins", "bybit", "--out", str(tmp_path / "data"), "--sink", dead,
                "--sink", "redis://nohost:x", "--redis-maxlen", "0",
                "--endpoint", f"bybit={ws_url}"], handle_signals=False)
            assert code == 2
            assert sim.venues["bybit"].connections == []
            err = capsys.readouterr().err
            assert "--sink redis://nohost:x: expected redis://HOST:PORT[/DB]" in err
            assert "--redis-maxlen must be a positive number of entries, not 0" in err
            code = await async_main(["--plugins", "bybit", "--out", str(tmp_path / "data"),
                                     "--sink", dead, "--endpoint", f"bybit={ws_url}"],
                                    handle_signals=False)
            assert code == 2
            assert f"--sink {dead}: Redis does not answer" in capsys.readouterr().err
            assert sim.venues["bybit"].connections == []


async def test_redis_going_away_is_a_sink_error_and_the_recording_goes_on(
        tmp_path: Path, redis_server: RedisServer) -> None:
    market = Market([BYBIT_BTC])
    load_text(market, "bybit", "BTC-USDT", [("100.0", "1")], [("101.0", "1")])
    sim = simulation(market)
    out = tmp_path / "data"
    with trio.fail_after(CEILING_S):
        async with serving(sim) as (nursery, urls):
            nursery.start_soon(sim.play, endless("bybit", "BTC-USDT", "100.0", interval_s=0.005))

            async def outage() -> None:
                await sim.venues["bybit"].wait_acks(1)
                await trio.sleep(1.0)
                redis_server.stop()
                await trio.sleep(1.0)
                redis_server.start()

            nursery.start_soon(outage)
            code = await async_main([
                "--plugins", "bybit", "--channels", "l2", "--out", str(out), "--duration", "4",
                "--flush-interval", "0.5", "--sink", "parquet", "--sink", redis_server.url,
                *endpoints(urls)], handle_signals=False)
    assert code == 0  # nothing lost: the sink's queue held the outage
    health = parquet(out, "health")
    errors = health.filter(pl.col("event") == "sink_error")
    assert errors.height == 1 and "Redis" not in errors["detail"].item()[:5]
    assert f"sink {redis_server.url}: " in errors["detail"].item()
    outage_at = errors["ts_local"].item()
    l2 = parquet(out, "l2")
    assert l2.filter(pl.col("ts_local") > outage_at).height > 50  # Parquet went on
    streams = await read_streams(redis_server.url)  # the restarted server got the rest
    after = streams["bookwire:l2:bybit"]
    assert after and after[0].ts_local < outage_at.timestamp() * 1e9 + 1.5e9
    assert after[-1].ts_local == l2["ts_local"].dt.epoch("ns").max()
    ledger = [e.event for e in streams["bookwire:health:bybit"]]  # type: ignore[attr-defined]
    assert "sink_error" in ledger and ledger[-1] == "stopped"


async def test_while_redis_is_away_the_excess_is_dropped_and_written_down(
        redis_server: RedisServer) -> None:
    """Bounded while Redis is down: the sink's queue fills, its bus subscription drops the excess
    and reports it as ``dropped`` rows, which reach Redis with everything kept once it is back."""
    redis_server.stop()
    bus = Bus(table_of_kind=table_of_kind)
    sink = RedisSink(parse_url(redis_server.url), max_pending_bytes=20_000,
                     backoff=Backoff(base_s=0.05, cap_s=0.2), venues=["bybit"])
    sub = bus.subscribe("redis", policy=Policy.LOSSLESS, max_bytes=50_000)
    sink.bind(bus)
    trades = [Trade(exchange="bybit", ts_local=T + i, symbol="BTC-USDT", ts_exchange=None,
                    price=100.0, size=1.0, side="buy", trade_id=str(i)) for i in range(2000)]
    with trio.fail_after(CEILING_S):
        async with trio.open_nursery() as nursery:
            await nursery.start(sink.run, sub)
            for i in range(0, len(trades), 10):  # frames arrive; the readers never wait
                bus.publish(trades[i:i + 10])
                await trio.lowlevel.checkpoint()
            await trio.sleep(0.3)
            redis_server.start()
            bus.close()
    dropped = bus.dropped_events()
    assert 0 < dropped < len(trades)
    assert sink.events_written[("trades", "bybit")] == len(trades) - dropped
    assert sink.outages == 1 and not sink.lost_events()
    streams = await read_streams(redis_server.url)
    assert len(streams["bookwire:trades:bybit"]) == len(trades) - dropped
    ledger = streams["bookwire:health:bybit"]
    reports = [e for e in ledger if e.event == "dropped"]  # type: ignore[attr-defined]
    assert sum(int(e.detail.split("count=")[1].split()[0]) for e in reports) == dropped  # type: ignore[attr-defined]
    assert any(e.event == "sink_error" for e in ledger)  # type: ignore[attr-defined]


async def test_a_redis_still_away_at_the_end_costs_the_final_flush_bound_not_a_hang(
        redis_server: RedisServer) -> None:
    redis_server.stop()
    bus = Bus(table_of_kind=table_of_kind)
    sink = RedisSink(parse_url(redis_server.url), max_pending_bytes=5_000,
                     final_flush_timeout_s=0.5, backoff=Backoff(base_s=0.05, cap_s=0.2))
    sub = bus.subscribe("redis", policy=Policy.LOSSLESS, max_bytes=20_000)
    sink.bind(bus)
    trades = [Trade(exchange="bybit", ts_local=T + i, symbol="BTC-USDT", ts_exchange=None,
                    price=100.0, size=1.0, side="buy", trade_id=str(i)) for i in range(500)]
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(sink.run, sub)
            for i in range(0, len(trades), 10):
                bus.publish(trades[i:i + 10])
                await trio.lowlevel.checkpoint()
            bus.close()
    assert sink.lost_events() > 0  # abandoned and counted (exit code 3), not hung
    assert sink.lost_events() + bus.dropped_events() == len(trades)
