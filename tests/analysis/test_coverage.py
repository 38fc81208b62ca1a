"""Coverage from a hand-built health ledger, with every number checked."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from analysis.coverage import coverage, load_health, main, summary
from core.schema import Health
from core.writers.tables import TableBuffer

T0 = 1_786_000_000_000_000_000
S = 1_000_000_000


def ledger(tmp_path: Path, rows: list[tuple[float, str, str | None, str, str]]) -> Path:
    buf = TableBuffer("health", 0.0)
    for t, ex, sym, event, detail in rows:
        buf.add(Health(exchange=ex, ts_local=T0 + int(t * S), symbol=sym, event=event,
                       detail=detail))
    for ex in {r[1] for r in rows}:
        d = tmp_path / "health" / f"exchange={ex}" / "date=2026-08-09"
        d.mkdir(parents=True)
        buf.to_frame().filter(pl.col("exchange") == ex).write_parquet(d / "part-1.parquet")
    return tmp_path


ROWS = [
    (0, "bybit", None, "connected", "ws://x conn=1"),
    (1, "bybit", "BTC-USDT", "snapshot", ""),
    (2, "bybit", "ETH-USDT", "snapshot", ""),
    (10, "bybit", "BTC-USDT", "gap", ""),
    (13, "bybit", "BTC-USDT", "resynced", "after gap"),
    (20, "bybit", None, "disconnected", "closed by peer: code=1006"),
    (21, "bybit", None, "connected", "ws://x conn=2"),
    (25, "bybit", "BTC-USDT", "resynced", "after disconnect"),
    (26, "bybit", "ETH-USDT", "resynced", "after disconnect"),
    (40, "bybit", None, "disconnected", "stopped"),
    (40, "bybit", None, "stopped", "produced ..."),
    (0, "htx", None, "connected", ""),
    (5, "htx", "BTC-USDT", "snapshot", ""),
    (10, "htx", None, "stopped", ""),
]


def test_trusted_intervals_counts_and_longest_outage(tmp_path: Path) -> None:
    covs = {(c.exchange, c.symbol): c for c in coverage(load_health(ledger(tmp_path, ROWS)))}
    btc = covs[("bybit", "BTC-USDT")]
    assert btc.trusted == [(T0 + 1 * S, T0 + 10 * S), (T0 + 13 * S, T0 + 20 * S),
                           (T0 + 25 * S, T0 + 40 * S)]
    assert (btc.gaps, btc.resyncs, btc.reconnects) == (1, 2, 1)
    assert btc.observed_s == 40 and btc.trusted_s == 31
    assert btc.longest_outage_s == 5  # 20 s -> 25 s, the reconnect
    eth = covs[("bybit", "ETH-USDT")]
    assert eth.trusted_s == 18 + 14 and eth.longest_outage_s == 6 and eth.gaps == 0
    htx = covs[("htx", "BTC-USDT")]
    assert htx.trusted_s == 5 and htx.reconnects == 0 and htx.longest_outage_s == 5


def test_summary_table_and_cli(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = ledger(tmp_path, ROWS)
    table = summary(coverage(load_health(data)))
    row = table.filter((pl.col("exchange") == "bybit") & (pl.col("symbol") == "BTC-USDT"))
    assert row.select("trusted_share", "gaps", "resyncs", "reconnects",
                      "longest_outage_s").row(0) == (0.775, 1, 2, 1, 5.0)
    png = tmp_path / "out" / "timeline.png"
    assert main(["--data", str(data), "--png", str(png)]) == 0
    assert png.stat().st_size > 5000
    out = capsys.readouterr().out
    assert "BTC-USDT" in out and "0.775" in out


def test_missing_data_is_explained(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["--data", str(tmp_path)]) == 1
    assert "no health table under" in capsys.readouterr().err
    data = ledger(tmp_path, ROWS)
    assert main(["--data", str(data), "--exchange", "okx"]) == 1
    assert "no health rows for exchange 'okx'" in capsys.readouterr().err
