"""Coverage from a hand-built health ledger, with every number checked."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from analysis.coverage import asked_for, coverage, load_recording, main, summary
from analysis.load import write_table
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


def _covs(data: Path, **kw: object) -> dict[tuple[str, str | None], object]:
    rec = load_recording(data)
    return {(c.exchange, c.symbol): c for c in coverage(rec, asked_for(rec, **kw))}


def test_trusted_intervals_counts_and_longest_outage(tmp_path: Path) -> None:
    covs = _covs(ledger(tmp_path, ROWS))
    btc = covs[("bybit", "BTC-USDT")]
    assert btc.trusted == [(T0 + 1 * S, T0 + 10 * S), (T0 + 13 * S, T0 + 20 * S),
                           (T0 + 25 * S, T0 + 40 * S)]
    assert (btc.gaps, btc.resyncs, btc.reconnects) == (1, 2, 1)
    assert btc.observed_s == 40 and btc.trusted_s == 31
    assert btc.longest_outage_s == 5  # 20 s -> 25 s, the reconnect
    eth = covs[("bybit", "ETH-USDT")]
    assert eth.trusted_s == 18 + 14 and eth.longest_outage_s == 6 and eth.gaps == 0
    # htx stopped at 10 s: over the whole 40 s recording it was trusted 5 s
    htx = covs[("htx", "BTC-USDT")]
    assert htx.trusted_s == 5 and htx.reconnects == 0 and htx.longest_outage_s == 30
    # htx named only BTC-USDT, so it is not reported for ETH-USDT
    assert ("htx", "ETH-USDT") not in covs


def test_summary_table_and_cli(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = ledger(tmp_path, ROWS)
    rec = load_recording(data)
    table = summary(coverage(rec, asked_for(rec)))
    row = table.filter((pl.col("exchange") == "bybit") & (pl.col("symbol") == "BTC-USDT"))
    assert row.select("trusted_share", "gaps", "resyncs", "reconnects",
                      "longest_outage_s").row(0) == (0.775, 1, 2, 1, 5.0)
    png = tmp_path / "out" / "timeline.png"
    assert main(["--data", str(data), "--png", str(png), "--quiet"]) == 0
    assert png.stat().st_size > 5000
    out = capsys.readouterr().out
    assert "BTC-USDT" in out and "0.775" in out


def test_missing_data_is_explained(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["--data", str(tmp_path)]) == 1
    assert "no health table under" in capsys.readouterr().err
    data = ledger(tmp_path, ROWS)
    assert main(["--data", str(data), "--exchange", "okx"]) == 1
    assert "no health rows for exchange 'okx'" in capsys.readouterr().err


def test_connection_wide_breaks_count_whatever_their_symbol(tmp_path: Path) -> None:
    """A ``disconnected`` row that carries a symbol still breaks the venue's books."""
    rows = [(0, "coinbase", None, "connected", ""),
            (1, "coinbase", "ETC-USD", "snapshot", "initial"),
            (50, "coinbase", "ETC-USD", "disconnected", "simulated feed loss"),
            (65, "coinbase", "ETC-USD", "resynced", "after disconnect"),
            (100, "coinbase", None, "stopped", "")]
    c = _covs(ledger(tmp_path, rows))[("coinbase", "ETC-USD")]
    assert c.trusted == [(T0 + 1 * S, T0 + 50 * S), (T0 + 65 * S, T0 + 100 * S)]
    assert (c.reconnects, c.resyncs, c.longest_outage_s) == (1, 1, 15)


def test_a_venue_that_never_connected_is_zero(tmp_path: Path,
                                              capsys: pytest.CaptureFixture) -> None:
    """Its rows name no symbol: it is reported for every symbol the recording names, at 0%;
    a venue asked for with no rows at all is reported too."""
    rows = [*ROWS,
            (0, "gateio", None, "disconnected", "refused: connection refused"),
            (20, "gateio", None, "disconnected", "refused: connection refused"),
            (40, "gateio", None, "stopped", "produced tob=0")]
    data = ledger(tmp_path, rows)
    covs = _covs(data, extra_venues=["okx"])
    for venue in ("gateio", "okx"):
        for sym in ("BTC-USDT", "ETH-USDT"):
            c = covs[(venue, sym)]
            assert c.trusted == [] and not c.connected and c.observed_s == 40
            assert c.note.endswith("never connected")
    assert main(["--data", str(data), "--venues", "okx", "--quiet",
                 "--png", str(tmp_path / "t.png")]) == 0
    out = capsys.readouterr().out
    assert "gateio" in out and "okx" in out and "never connected" in out


def test_span_reaches_the_last_row_of_any_table(tmp_path: Path) -> None:
    """The health rows end at 40 s, the tob rows at 100 s: the book untrusted after the
    venue's stop counts against it, and the timeline runs to 100 s."""
    data = ledger(tmp_path, ROWS)
    tob = pl.DataFrame({"ts_local": [T0 + 5 * S, T0 + 100 * S], "ts_exchange": [None, None],
                        "exchange": "htx", "symbol": "BTC-USDT", "bid_px": 1.0, "bid_sz": 1.0,
                        "ask_px": 2.0, "ask_sz": 1.0, "seq": None},
                       schema_overrides={"ts_exchange": pl.Int64, "seq": pl.Int64})
    write_table(tob.with_columns(pl.col("ts_local", "ts_exchange").cast(
        pl.Datetime("ns", "UTC"))), data, "tob")
    covs = _covs(data)
    assert covs[("bybit", "BTC-USDT")].observed_s == 100
    assert covs[("bybit", "BTC-USDT")].trusted_s == 31
    assert covs[("htx", "BTC-USDT")].longest_outage_s == 90


def test_symbols_flag_lists_what_was_asked(tmp_path: Path) -> None:
    covs = _covs(ledger(tmp_path, ROWS), symbols=["BTC-USDT", "SOL-USDT"])
    assert sorted(covs) == [("bybit", "BTC-USDT"), ("bybit", "SOL-USDT"), ("htx", "BTC-USDT"),
                            ("htx", "SOL-USDT")]
    assert covs[("bybit", "SOL-USDT")].trusted_s == 0


def test_started_rows_say_what_was_asked_for(tmp_path: Path) -> None:
    """A symbol asked for but never subscribed (the venue refused it) is still reported, 0%."""
    rows = [
        (0, "bybit", None, "started", "symbols=BTC-USDT,SOL-USDT channels=l2 url=ws://x"),
        (0.5, "bybit", None, "connected", "ws://x conn=1"),
        (1, "bybit", "BTC-USDT", "snapshot", ""),
        (10, "bybit", None, "stopped", "produced l2=5 health=4"),
    ]
    rec = load_recording(ledger(tmp_path, rows))
    wanted = asked_for(rec)
    assert sorted(wanted["bybit"]) == ["BTC-USDT", "SOL-USDT"]
    by_symbol = {c.symbol: c for c in coverage(rec, wanted)}
    assert by_symbol["SOL-USDT"].trusted_s == 0
    assert by_symbol["BTC-USDT"].trusted_s == 9


def test_a_consumer_s_health_rows_are_not_a_venue(tmp_path: Path) -> None:
    """The live spread analyzer writes its own health rows (``exchange=spread``) and no
    ``started`` row: it is not reported as a venue that never connected; a venue with a
    ``started`` row and nothing else still is."""
    rows = [
        (0, "bybit", None, "started", "symbols=BTC-USDT channels=l2 url=ws://x"),
        (0.5, "bybit", None, "connected", "ws://x conn=1"),
        (1, "bybit", "BTC-USDT", "snapshot", ""),
        (10, "bybit", None, "stopped", "produced l2=5 health=4"),
        (0, "okx", None, "started", "symbols=BTC-USDT channels=l2 url=ws://y"),
        (10, "okx", None, "stopped", "produced l2=0 health=1"),
        (10, "spread", None, "rows_written", "table=spreads events=3 rows=3"),
        (10, "spread", None, "stopped", "produced spreads=3"),
    ]
    rec = load_recording(ledger(tmp_path, rows))
    assert sorted(asked_for(rec)) == ["bybit", "okx"]
    by_venue = {c.exchange: c for c in coverage(rec, asked_for(rec))}
    assert by_venue["okx"].note.endswith("never connected") and by_venue["bybit"].trusted_s == 9
