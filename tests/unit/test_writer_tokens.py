"""The writer tells a caller when the rows it added with a token are all in renamed files."""

from __future__ import annotations

from collections.abc import Hashable
from pathlib import Path

import polars as pl
import trio

from core.schema import BookUpdate, Trade
from core.writers.parquet import ParquetWriter

T0 = 1_786_310_818_000_000_000


def trade(i: int, venue: str = "bybit", day: int = 0) -> Trade:
    return Trade(exchange=venue, ts_local=T0 + day * 86_400 * 10**9 + i, symbol="BTC-USDT",
                 ts_exchange=None, price=100.0 + i, size=1.0, side="buy", trade_id=str(i))


def book(i: int) -> BookUpdate:
    return BookUpdate(exchange="htx", ts_local=T0 + i, symbol="BTC-USDT", ts_exchange=None,
                      seq=i, msg_id=i, is_snapshot=False, bids=((1.0, 2.0),), asks=())


def rows_on_disk(out: Path, table: str = "*") -> int:
    return sum(pl.read_parquet(f).height for f in out.glob(f"{table}/**/*.parquet"))


async def test_a_token_is_reported_once_every_file_holding_its_rows_is_renamed(
        tmp_path: Path) -> None:
    writer = ParquetWriter(tmp_path, flush_rows=3)
    done: list[Hashable] = []
    on_disk: list[int] = []

    c_written = trio.Event()

    def written(token: Hashable) -> None:
        done.append(token)
        on_disk.append(rows_on_disk(tmp_path))
        if token == "c":
            c_written.set()

    writer.on_written = written
    # token "a": rows in three partitions (two venues, two days); "b": one partition
    writer.add([trade(0), trade(1, "okx"), trade(2, day=1)], token="a")
    writer.add([book(3)], token="b")
    writer.add([], token="empty")  # nothing to write: reported at once
    assert done == ["empty"]
    writer.add([trade(4), trade(5)], token="c")  # seals bybit's day-0 buffer (3 rows)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer._flusher)
        with trio.fail_after(10):
            await c_written.wait()
        nursery.cancel_scope.cancel()
    assert "a" not in done and "b" not in done  # their other buffers are still open
    await writer.close()
    assert sorted(done) == ["a", "b", "c", "empty"]
    # every report came after the rows were readable in renamed files
    assert on_disk[done.index("a")] >= 3 and on_disk[-1] >= 6


async def test_feed_waits_for_room_instead_of_dropping(tmp_path: Path) -> None:
    writer = ParquetWriter(tmp_path, max_bytes=2_000, flush_rows=1_000_000)
    done: list[Hashable] = []
    writer.on_written = done.append
    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer._flusher)
        with trio.fail_after(20):
            for k in range(40):
                await writer.feed([trade(10 * k + j) for j in range(10)], token=k)
        nursery.cancel_scope.cancel()
    await writer.close()
    assert sorted(done) == list(range(40))  # type: ignore[type-var]
    assert rows_on_disk(tmp_path, "trades") == 400
