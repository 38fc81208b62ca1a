"""Raw capture and deterministic replay: a live run against a fake venue, recorded with
``--record-raw``, replayed with ``--replay``, must give the same tables row for row."""

from __future__ import annotations

import base64
import gzip
import json
from pathlib import Path

import polars as pl
import trio

from core.recording import RawRecorder
from core.replay import read_raw
from core.run import async_main
from core.testing.captures import open_text
from core.testing.faults import Fault, FaultPlan
from tests.session.sims import endpoints, serving, simulation
from tests.session.test_cli_bybit import btc_market

CEILING_S = 30
TABLES = ("tob", "l2", "trades", "health")


def table(out: Path, name: str) -> pl.DataFrame:
    files = sorted(out.glob(f"{name}/exchange=bybit/date=*/*.parquet"))
    return pl.concat([pl.read_parquet(f) for f in files])


async def record_live(tmp_path: Path) -> Path:
    """The scripted BTC market, with the first l2 delta lost by the venue: a gap, then a
    resync by unsubscribing and subscribing the book topic again."""
    plain, script = btc_market()
    sim = simulation(plain.market, faults={"bybit": FaultPlan(Fault("drop_delta"))})
    live = tmp_path / "live"
    with trio.fail_after(CEILING_S):
        async with serving(sim) as (nursery, urls):
            nursery.start_soon(sim.play, script)
            code = await async_main([
                "--plugins", "bybit", "--channels", "tob,l2,trades", "--out", str(live),
                "--duration", "1.5", "--flush-interval", "0.3", "--record-raw",
                *endpoints(urls)], handle_signals=False)
    assert code == 0
    return live


async def test_replay_rebuilds_the_live_tables_row_for_row(tmp_path: Path) -> None:
    live = await record_live(tmp_path)
    health = table(live, "health")["event"].to_list()
    assert "gap" in health and "resynced" in health  # the run exercised a resync

    raw_files = sorted((live / "raw").rglob("*.jsonl.gz"))
    assert raw_files and all("exchange=bybit" in str(f) for f in raw_files)
    records = [json.loads(line) for f in raw_files for line in open_text(f)]
    kinds = {r["kind"] for r in records}
    assert {"meta", "http", "open", "recv", "send", "close", "stop"} <= kinds
    assert all(isinstance(r["ts"], int) and r["exchange"] == "bybit" for r in records)
    sent = [json.loads(r["text"]) for r in records if r["kind"] == "send"]
    assert [s["op"] for s in sent].count("unsubscribe") == 1  # the resync, recorded

    replayed = tmp_path / "replayed"
    code = await async_main(["--replay", str(live / "raw"), "--out", str(replayed)],
                            handle_signals=False)
    assert code == 0
    for name in TABLES:
        a, b = table(live, name), table(replayed, name)
        assert a.height > 0
        assert a.equals(b), f"{name} differs:\nlive\n{a}\nreplayed\n{b}"

    again = tmp_path / "again"
    assert await async_main(["--replay", str(live / "raw"), "--out", str(again)],
                            handle_signals=False) == 0
    for name in TABLES:
        assert table(again, name).equals(table(replayed, name))  # deterministic


async def test_binary_frames_are_kept_byte_exact(tmp_path: Path) -> None:
    rec = RawRecorder(tmp_path, "run1")
    frame = gzip.compress(b'{"ping": 1}')
    rec.meta("htx", 1, "wss://x", ["BTC-USDT"], ["l2"], {})
    rec.received("htx", 1, 2, frame)
    rec.received("htx", 1, 3, "text frame")
    await rec.flush()
    [f] = list((tmp_path / "raw").rglob("*.jsonl.gz"))
    got = list(read_raw(f))
    assert base64.b64decode(got[1].b64) == frame and got[2].text == "text frame"


async def test_replay_of_a_missing_path_is_a_usage_error(tmp_path: Path) -> None:
    assert await async_main(["--replay", str(tmp_path / "nope"), "--out", str(tmp_path)],
                            handle_signals=False) == 2
