"""Scale-out end to end, with real processes and a real redis-server: two capture processes
(Bybit and HTX fakes on loopback) publish to Redis, a ``--from-redis`` reader writes Parquet, is
killed with ``kill -9`` mid-run and restarted with the same group; its rows equal those of one
process recording the same feeds, once the documented duplicates are removed, and DuckDB reads the
dataset as polars does. Then ``--processes 2`` does the same on one host and stops cleanly on
Ctrl-C.

"The same feeds" are two instances of one scripted market whose every change carries a fixed
exchange time; only the snapshots a venue sends when a client subscribes are stamped with the
moment it answered, which differs between the instances, so those rows are compared without
``ts_exchange`` (every other value of theirs, and every value of every other row, must match)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import coredis
import duckdb
import polars as pl
import trio

from core.codec import MS_NS
from core.run import async_main
from core.sim.market import Market, Script, Step, load_text
from tests.session.sims import BYBIT_BTC, HTX_BTC, endpoints, serving, simulation
from tests.streams.conftest import RedisServer

CEILING_S = 90
REPO = Path(__file__).resolve().parents[2]
N = 150  # rows per table and venue: a snapshot and N - 1 changes, 10 ms apart: 1.5 s of data
#: the exchange time of the first scripted change (far ahead of any wall clock, so that rows
#: stamped when a venue answered a subscription are told apart)
T0_NS = 3_786_912_000_000_000_000  # 2090-01-01
TABLES = ("tob", "l2", "trades")
#: the documented duplicate keys (docs/data.md, "Reading from Redis Streams")
KEYS = {"tob": None, "l2": ["exchange", "symbol", "msg_id", "side", "price"],
        "trades": ["exchange", "symbol", "trade_id"], "health": None}


def bybit_steps() -> list[Step]:
    """Every change moves the best bid's size (a new top of book) and the best ask's (101.0
    leaves the book every fourth step); a trade on each of the first N // 4."""
    return [Step("BTC-USDT", bids=[("100.0", str(1 + i % 9))], asks=[("101.0", str(i % 4))],
                 trades=[("101.0", "0.5", "buy" if i % 2 else "sell")] if i <= N // 4 else [],
                 ts_ns=T0_NS + i * MS_NS) for i in range(1, N)]


def htx_steps() -> list[Step]:
    """HTX sizes in base units: contracts of 0.001 BTC."""
    return [Step("BTC-USDT", bids=[("100.0", f"{(5 + i % 6) / 1000:.3f}")],
                 asks=[("100.5", f"{(1 + i % 4) / 1000:.3f}")],
                 trades=[("100.5", f"{(3 + i) / 1000:.3f}", "buy")] if i <= N // 4 else [],
                 ts_ns=T0_NS + i * MS_NS) for i in range(1, N)]


@asynccontextmanager
async def fake_venues() -> AsyncIterator[list[str]]:
    """A fresh instance of the scripted Bybit and HTX venues (websocket and REST); yields their
    --endpoint flags. Each venue plays its script once its client has subscribed."""
    market = Market([BYBIT_BTC, HTX_BTC])
    load_text(market, "bybit", "BTC-USDT", [("100.0", "1"), ("99.0", "2")],
              [("101.0", "2"), ("102.0", "3")])
    load_text(market, "htx", "BTC-USDT", [("100.0", "0.005"), ("99.5", "0.002")],
              [("100.5", "0.003")])
    sim = simulation(market)
    async with serving(sim) as (nursery, urls):
        nursery.start_soon(sim.play, Script("bybit", bybit_steps(), interval_s=0.01))
        nursery.start_soon(partial(sim.play, Script("htx", htx_steps(), interval_s=0.01),
                                   after_acks=2))
        yield endpoints(urls)


def endpoints_of(flags: Sequence[str], venue: str) -> list[str]:
    return [a for i in range(0, len(flags), 2) for a in flags[i:i + 2]
            if flags[i + 1].partition("=")[0].partition(".")[0] == venue]


def bookwire(*argv: str) -> list[str]:
    return [sys.executable, "-m", "core.run", "--log-level", "WARNING", "--no-live", *argv]


def read(out: Path, table: str) -> pl.DataFrame:
    files = sorted(out.glob(f"{table}/exchange=*/date=*/*.parquet"))
    return pl.concat([pl.read_parquet(f) for f in files])


def comparable(out: Path, table: str) -> pl.DataFrame:
    """Rows without ``ts_local``, ``msg_id`` as its rank, documented duplicates removed; the
    ``ts_exchange`` of rows stamped when the venue answered the subscription is left out."""
    df = read(out, table)
    if "ts_exchange" in df.columns:
        scripted = pl.col("ts_exchange").dt.epoch("ns") >= T0_NS
        df = df.with_columns(pl.when(scripted).then(pl.col("ts_exchange")).otherwise(None))
    key = KEYS[table]
    assert df.unique(key).height == df.unique().height, "a duplicate that is not an exact copy"
    df = df.unique(key, maintain_order=True) if key else df.unique(maintain_order=True)
    if table == "l2":
        df = df.with_columns(pl.col("msg_id").rank("dense").over("exchange", "symbol")
                             .cast(pl.Int64))
    return df.drop("ts_local").sort(df.drop("ts_local").columns)


def field(info: Any, name: str) -> Any:
    return info[name] if name in info else info[name.encode()]


async def group_done(url: RedisServer, group: str) -> bool:
    """Every stream read to its end by ``group`` and nothing pending."""
    async with coredis.Redis(host="127.0.0.1", port=url.port) as client:
        keys = [k async for k in client.scan_iter(match="bookwire:*")]
        for key in keys:
            last = field(await client.xinfo_stream(key), "last-generated-id")
            groups = {field(g, "name"): g for g in await client.xinfo_groups(key)}
            g = groups.get(group.encode(), groups.get(group))
            if g is None or field(g, "pending") or field(g, "last-delivered-id") != last:
                return False
    return bool(keys)


async def all_published(server: RedisServer) -> bool:
    """Both shards published every scripted message."""
    want = {"tob": N, "l2": N, "trades": N // 4}
    async with coredis.Redis(host="127.0.0.1", port=server.port) as client:
        for table, n in want.items():
            for venue in ("bybit", "htx"):
                if await client.xlen(f"bookwire:{table}:{venue}") < n:
                    return False
    return True


class Processes:
    """Child processes of a test, killed when it ends however it ends."""

    def __init__(self) -> None:
        self.procs: list[trio.Process] = []

    async def start(self, argv: Sequence[str], **kwargs: Any) -> trio.Process:
        proc = await trio.lowlevel.open_process(list(argv), cwd=REPO, **kwargs)
        self.procs.append(proc)
        return proc

    def kill_all(self) -> None:
        """(The capture processes of ``--processes`` stop by themselves when their parent
        dies.)"""
        for proc in self.procs:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()


@contextlib.contextmanager
def processes() -> Iterator[Processes]:
    procs = Processes()
    try:
        yield procs
    finally:
        procs.kill_all()


async def wait_for(predicate: Callable[[], Awaitable[object]], seconds: float) -> None:
    """Poll ``predicate`` (another process's progress: no event to wait on) until it holds."""
    with trio.fail_after(seconds):
        while not await predicate():  # noqa: ASYNC110
            await trio.sleep(0.2)


def l2_files(out: Path) -> list[Path]:
    return list(out.glob("l2/exchange=*/date=*/*.parquet"))


async def test_two_captures_and_a_killed_reader_equal_one_process(
        tmp_path: Path, redis_server: RedisServer) -> None:
    single, consumed = tmp_path / "single", tmp_path / "consumed"
    reader = bookwire("--from-redis", redis_server.url, "--group", "writers", "--consumer", "w1",
                      "--out", str(consumed), "--flush-interval", "0.2")
    with trio.fail_after(CEILING_S), processes() as procs:
        async with fake_venues() as one, fake_venues() as shards, \
                trio.open_nursery() as nursery:
                nursery.start_soon(lambda: async_main([  # one process, both venues
                    "--plugins", "bybit,htx", "--channels", "tob,l2,trades", "--out", str(single),
                    "--duration", "4.5", "--no-spreads", "--no-live", *one], handle_signals=False))
                captures = [await procs.start(bookwire(
                    "--plugins", venue, "--channels", "tob,l2,trades", "--out",
                    str(tmp_path / f"raw-{venue}"), "--duration", "4.5", "--sink",
                    redis_server.url, *endpoints_of(shards, venue)))
                    for venue in ("bybit", "htx")]
                first = await procs.start(reader)
                await wait_for(lambda: trio.to_thread.run_sync(l2_files, consumed), 30)
                first.send_signal(signal.SIGKILL)  # mid-run: some entries written, not acked
                assert await first.wait() == -signal.SIGKILL
                second = await procs.start(reader, stderr=(tmp_path / "second.log").open("wb"))
                assert [await p.wait() for p in captures] == [0, 0]
                await wait_for(lambda: group_done(redis_server, "writers"), 30)
                second.send_signal(signal.SIGTERM)
                assert await second.wait() == 0, (tmp_path / "second.log").read_text()
    read_again = re.search(r"redis: read ([\d,]+) entries", (tmp_path / "second.log").read_text())
    assert read_again and int(read_again[1].replace(",", "")) > 50  # the kill was mid-run
    for table in TABLES:
        assert comparable(consumed, table).equals(comparable(single, table)), table
    health = read(consumed, "health")
    for venue in ("bybit", "htx"):  # each capture's ledger came through, start to end
        events = health.filter(pl.col("exchange") == venue)["event"].to_list()
        assert "started" in events and "stopped" in events and "snapshot" in events

    # DuckDB reads the hive dataset as polars does: row counts and nanosecond UTC times
    con = duckdb.connect()
    for table in (*TABLES, "health"):
        pattern = str(consumed / table / "**" / "*.parquet")
        ours = pl.scan_parquet(pattern, hive_partitioning=True).select(
            pl.col("ts_local").dt.epoch("ns")).collect()["ts_local"].sort().to_list()
        theirs = con.sql(f"SELECT epoch_ns(ts_local) AS t, typeof(ts_local) AS k, exchange "
                         f"FROM read_parquet('{pattern}', hive_partitioning = true) "
                         f"ORDER BY t").fetchall()
        assert [t for t, _, _ in theirs] == ours, table
        assert {k for _, k, _ in theirs} == {"TIMESTAMP WITH TIME ZONE"} or \
            {k for _, k, _ in theirs} == {"TIMESTAMPTZ_NS"}, table
        assert {e for _, _, e in theirs} >= {"bybit", "htx"}


async def test_processes_flag_shards_on_one_host_and_stops_on_ctrl_c(
        tmp_path: Path, redis_server: RedisServer) -> None:
    single, sharded = tmp_path / "single", tmp_path / "sharded"
    with trio.fail_after(CEILING_S), processes() as procs:
        async with fake_venues() as one, fake_venues() as shards, \
                trio.open_nursery() as nursery:
                nursery.start_soon(lambda: async_main([
                    "--plugins", "bybit,htx", "--channels", "tob,l2,trades", "--out", str(single),
                    "--duration", "4.5", "--no-spreads", "--no-live", *one], handle_signals=False))
                parent = await procs.start(
                    [sys.executable, "-m", "core.run", "--no-live", "--status-interval", "0.5",
                     "--plugins", "bybit,htx", "--channels", "tob,l2,trades", "--processes", "2",
                     "--sink", redis_server.url, "--out", str(sharded), "--flush-interval", "0.5",
                     *shards], stderr=(tmp_path / "parent.log").open("wb"))
                await wait_for(lambda: all_published(redis_server), 30)
                parent.send_signal(signal.SIGINT)  # Ctrl-C
                assert await parent.wait() == 0, (tmp_path / "parent.log").read_text()
    log = (tmp_path / "parent.log").read_text()
    assert "bybit: up" in log and "htx: up" in log  # the view of the writer shows every venue
    for table in TABLES:
        got = comparable(sharded, table)
        assert got.height == read(sharded, table).height or table == "tob", table  # no dupes
        assert got.equals(comparable(single, table)), table
    spreads = read(sharded, "spreads")  # the analyzer ran across both shards
    assert set(spreads["buy_exchange"].to_list()) == {"bybit", "htx"}


async def test_capture_processes_run_the_whole_duration(tmp_path: Path,
                                                        redis_server: RedisServer) -> None:
    """Longer than trio's idle worker threads live (10 s): a capture process must not be tied
    to the thread that started it. Every shard records to the end, and the run exits 0."""
    log_path = tmp_path / "parent.log"
    with trio.fail_after(CEILING_S), processes() as procs:
        parent = await procs.start(
            [sys.executable, "-m", "core.run", "--no-live", "--simulate", "--plugins",
             "bybit,htx", "--channels", "tob,l2", "--processes", "2", "--sink",
             redis_server.url, "--out", str(tmp_path / "data"), "--duration", "13",
             "--status-interval", "60"], stderr=log_path.open("wb"))
        code = await parent.wait()
    log = log_path.read_text()
    assert code == 0, log
    assert "before the end of the run" not in log and "capture processes exited with 0, 0" in log
    health = read(tmp_path / "data", "health")
    for venue in ("bybit", "htx"):
        stops = health.filter((pl.col("exchange") == venue) & (pl.col("event") == "stopped"))
        starts = health.filter((pl.col("exchange") == venue) & (pl.col("event") == "started"))
        span_s = (stops["ts_local"].max() - starts["ts_local"].min()).total_seconds()
        assert span_s > 11.5, (venue, span_s)  # recorded to the end, not stopped after 10 s


async def test_a_capture_process_that_stops_early_fails_the_run(
        tmp_path: Path, redis_server: RedisServer) -> None:
    log_path = tmp_path / "parent.log"
    with trio.fail_after(CEILING_S), processes() as procs:
        parent = await procs.start(
            [sys.executable, "-m", "core.run", "--no-live", "--simulate", "--plugins",
             "bybit,htx", "--channels", "tob,l2", "--processes", "2", "--sink",
             redis_server.url, "--out", str(tmp_path / "data"), "--duration", "8"],
            stderr=log_path.open("wb"))
        async def second_shard() -> re.Match[str] | None:
            return re.search(r"shard 2 \(pid (\d+)\)", log_path.read_text())

        await wait_for(second_shard, 30)
        await trio.sleep(2)
        found = await second_shard()
        assert found is not None
        os.kill(int(found.group(1)), signal.SIGTERM)  # someone stops one capture
        code = await parent.wait()
    log = log_path.read_text()
    assert code == 1, log
    assert "capture process(es) 2 stopped before the end of the run" in log


async def test_processes_refuses_bad_flags_before_starting_anything(
        tmp_path: Path, redis_server: RedisServer, capsys: Any) -> None:
    code = await async_main(["--plugins", "bybit,htx", "--processes", "2", "--out",
                             str(tmp_path), "--opt", "bybit.l2_depth=7"], handle_signals=False)
    assert code == 2
    err = capsys.readouterr().err
    assert "--processes needs one --sink redis://HOST:PORT[/DB]" in err
    assert "--opt bybit.l2_depth=7: bybit l2_depth must be one of 50, 200, 1000" in err
    code = await async_main(["--plugins", "bybit,htx", "--processes", "2", "--out",
                             str(tmp_path), "--sink", redis_server.url, "--opt",
                             "bybit.l2_depth=7"], handle_signals=False)
    assert code == 2  # refused before any capture process or consumer group was made
    async with coredis.Redis(host="127.0.0.1", port=redis_server.port) as client:
        assert [k async for k in client.scan_iter(match="bookwire:*")] == []
