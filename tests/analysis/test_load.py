"""The loader: the recorder's schemas, hive columns with or without an in-file ``exchange``,
filters, and one-line messages for missing data."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from analysis.load import (
    SCHEMAS,
    MissingData,
    breaks,
    dates,
    require_venues,
    scan,
    symbols,
    venues,
    write_table,
)
from core.writers.tables import SCHEMAS as WRITER_SCHEMAS

TS = pl.Datetime("ns", "UTC")
T0 = 1_714_564_800_000_000_000  # 2024-05-01 12:00 UTC


def test_schemas_are_the_writers() -> None:
    # the writer may register further tables; the four recorder tables must agree exactly
    assert set(SCHEMAS) == {"tob", "l2", "trades", "health"}
    for table, schema in SCHEMAS.items():
        assert dict(schema) == dict(WRITER_SCHEMAS[table]), table


def _tob(exchange: str, t_ns: list[int], symbol: str = "BTC-USDT") -> pl.DataFrame:
    n = len(t_ns)
    return pl.DataFrame({"ts_local": t_ns, "ts_exchange": t_ns, "exchange": [exchange] * n,
                         "symbol": [symbol] * n, "bid_px": [1.0] * n, "bid_sz": [1.0] * n,
                         "ask_px": [2.0] * n, "ask_sz": [1.0] * n, "seq": list(range(n))}
                        ).with_columns(pl.col("ts_local", "ts_exchange").cast(TS))


def test_scan_with_and_without_the_exchange_column_in_the_file(tmp_path: Path) -> None:
    write_table(_tob("bybit", [T0, T0 + 1]), tmp_path, "tob")
    # a file that relies on the partition path for exchange, with an extra column and no seq
    d = tmp_path / "tob" / "exchange=htx" / "date=2024-05-01"
    d.mkdir(parents=True)
    _tob("htx", [T0 + 2]).drop("exchange", "seq").with_columns(pl.lit(7).alias("extra")) \
        .write_parquet(d / "part-x.parquet")
    df = scan(tmp_path, "tob").collect()
    assert df.columns == list(SCHEMAS["tob"])
    assert df.schema["ts_local"] == TS
    assert sorted(df["exchange"].to_list()) == ["bybit", "bybit", "htx"]
    assert df.filter(pl.col("exchange") == "htx")["seq"].to_list() == [None]
    assert venues(tmp_path, "tob") == ["bybit", "htx"]
    assert dates(tmp_path, "tob", "htx") == ["2024-05-01"]


def test_filters_and_day_partitions(tmp_path: Path) -> None:
    day = 86_400 * 10**9
    write_table(_tob("bybit", [T0, T0 + day, T0 + 2 * day]), tmp_path, "tob")
    assert dates(tmp_path, "tob", "bybit") == ["2024-05-01", "2024-05-02", "2024-05-03"]
    got = scan(tmp_path, "tob", start=datetime(2024, 5, 2, tzinfo=UTC),
               end=datetime(2024, 5, 2, 23, tzinfo=UTC)).collect()
    assert got["ts_local"].cast(pl.Int64).to_list() == [T0 + day]
    assert scan(tmp_path, "tob", symbol="ETH-USDT").collect().height == 0
    assert symbols(tmp_path, "tob") == ["BTC-USDT"]


def test_missing_data_messages(tmp_path: Path) -> None:
    with pytest.raises(MissingData, match="no 'tob' table under"):
        require_venues(tmp_path, "tob")
    write_table(_tob("bybit", [T0]), tmp_path, "tob")
    with pytest.raises(MissingData, match=r"no 'tob' data for okx .*available: bybit"):
        scan(tmp_path, "tob", exchanges=["okx"])


def test_breaks_are_venue_wide_or_for_the_symbol(tmp_path: Path) -> None:
    rows = pl.DataFrame({
        "ts_local": [T0, T0 + 1, T0 + 2, T0 + 3, T0 + 4],
        "exchange": ["bybit"] * 5,
        "symbol": [None, "BTC-USDT", "ETH-USDT", "BTC-USDT", None],
        "event": ["connected", "gap", "gap", "resynced", "disconnected"],
        "detail": [""] * 5}).with_columns(pl.col("ts_local").cast(TS))
    write_table(rows, tmp_path, "health")
    got = breaks(tmp_path, "bybit", "BTC-USDT").collect()
    assert got["event"].to_list() == ["gap", "disconnected"]
    assert breaks(tmp_path, "htx", "BTC-USDT").collect().height == 0
