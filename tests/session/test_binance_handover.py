"""Connections replaced before the venue's age limit, without a gap (``core.connections``).

A Binance protocol with a 5 s age limit (the venue cuts at 24 h; the fake venue on loopback,
``plugins/binance/fake.py`` with ``max_age_ns`` at 5 s, cuts at 5 s)
records for 7 s through the supervisor with raw recording: every group of sockets is replaced
after 2.5 s (a margin a loaded test machine needs: a replacement not ready in time when the cut
is close is switched to anyway, with ``gap`` rows). The tables must show trusted books from the
first snapshot to the end (no ``gap``, no ``disconnected`` before the final ``stopped``), every
trade once and none missing, ``msg_id`` increasing, books that rebuild to the venue's; and
``--replay`` of the raw files must give the same tables row for row (REST snapshots and
handovers included)."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import polars as pl
import trio

from analysis.coverage import asked_for, coverage, load_recording
from core.bus import Bus
from core.clock import Clock
from core.protocol import ProtocolConfig
from core.run import async_main
from core.session import VenueStats
from core.sim.market import Script
from core.sim.speaker import RestReply
from core.supervisor import RunPlan, VenuePlan, record
from core.testing.captures import open_text
from plugins.binance.protocol import BinanceProtocol
from tests.session.sims import serving
from tests.session.test_binance_e2e import (
    RecordingBinance,
    binance_market,
    check_books,
    check_trades,
    read,
)

CEILING_S = 60
TABLES = ("tob", "l2", "trades", "health")


class ShortLivedBinance(BinanceProtocol):
    """Binance whose connections live 5 s; replacements start 2.5 s before."""

    max_connection_age_s = 5.0
    handover_lead_s = 2.5


class NoMoreSnapshots(RecordingBinance):
    """The fake Binance, serving two depth snapshots and refusing every later one (HTTP 404)."""

    def rest(self, target: str) -> bytes | RestReply | None:
        if target.startswith("/fapi/v1/depth") and sum(self.depth_calls.values()) >= 2:
            return None
        return super().rest(target)


async def quiet(stats: list[VenueStats], bus: Bus, clock: Clock, interval_s: float) -> None:
    await trio.sleep_forever()


async def record_short_lived(tmp_path: Path, updates: int, cut_after_s: float,
                             duration_s: float,
                             speaker: type[RecordingBinance] = RecordingBinance
                             ) -> tuple[Path, RecordingBinance, Script]:
    """Record ``ShortLivedBinance`` through the supervisor (raw recording on) against the fake
    venue cutting connections ``cut_after_s`` old, the market walking ``updates`` steps a
    symbol at 100 steps per second."""
    sim, script = binance_market(updates, speaker)
    venue = sim.speakers["binance"]
    assert isinstance(venue, RecordingBinance)
    venue.max_age_ns = int(cut_after_s * 1e9)
    out = tmp_path / "live"
    with trio.fail_after(CEILING_S):
        async with serving(sim) as (nursery, urls):
            ws_url, rest_url = urls["binance"]
            nursery.start_soon(partial(sim.play, script, after_acks=2))
            config = ProtocolConfig(symbols=("BTC-USDT", "ETH-USDT"),
                                    channels=("tob", "l2", "trades"), rest_url=rest_url)
            await record(RunPlan(
                venues=[VenuePlan(proto=ShortLivedBinance, url=ws_url, config=config)],
                out=out, duration_s=duration_s, flush_interval_s=0.5, handle_signals=False,
                record_raw=True, status_view=quiet))
    return out, venue, script


async def test_handover_keeps_books_trusted_and_trades_whole(tmp_path: Path) -> None:
    out, fake, script = await record_short_lived(tmp_path, 300, cut_after_s=5.0,
                                                 duration_s=7.0)
    assert script.done
    assert not fake.cut  # always replaced before the cut
    groups = len(fake.sessions) // 2
    assert groups >= 2 and len(fake.sessions) == 2 * groups  # two endpoints per group

    health = read(out, "health")
    venue = health.filter(pl.col("symbol").is_null())
    handovers = venue.filter(pl.col("event") == "handover")["detail"].to_list()
    assert len(handovers) == groups - 1
    assert all(" -> " in d and "books carried 4, not carried 0" in d for d in handovers), handovers
    events = venue["event"].to_list()
    assert events.count("connected") == 2  # the first group only
    assert venue.filter(pl.col("event") == "disconnected")["detail"].to_list() == [
        "stopped", "stopped"]  # the end of the run, nothing before
    per_symbol = health.filter(pl.col("symbol").is_not_null())["event"].to_list()
    assert sorted(set(per_symbol)) == ["snapshot", "subscribed"]
    assert per_symbol.count("snapshot") == 4  # tob and l2 of two symbols, once

    # trusted from the first snapshot to the end of the run, in one piece
    stopped = venue.filter(pl.col("event") == "disconnected")["ts_local"].dt.epoch("ns").min()
    rec = load_recording(out, exchange="binance")
    for cov in coverage(rec, asked_for(rec)):
        assert len(cov.trusted) == 1 and (cov.gaps, cov.reconnects) == (0, 0), cov
        start, end = cov.trusted[0]
        assert end == stopped and (end - start) / 1e9 > 6.0

    check_books(out, fake)  # msg_id strictly increasing, books rebuild to the venue's
    check_trades(out, fake)  # each trade once, none missing

    # every handover republished each book whole, right at the switch
    l2 = read(out, "l2", by_time=False)
    switch_times = health.filter(pl.col("event") == "handover")["ts_local"].to_list()
    for sym in ("BTC-USDT", "ETH-USDT"):
        snaps = l2.filter((pl.col("symbol") == sym) & pl.col("is_snapshot"))
        at = snaps.unique("msg_id", maintain_order=True)["ts_local"].to_list()
        assert at[1:] == switch_times
        assert snaps.filter(pl.col("ts_local") == switch_times[0])["ts_exchange"].null_count() \
            == snaps.filter(pl.col("ts_local") == switch_times[0]).height

    # the raw recording has what a replay needs
    records = [json.loads(line) for f in sorted((out / "raw").rglob("*.jsonl.gz"))
               for line in open_text(f)]
    kinds = [r["kind"] for r in records]
    assert kinds.count("handover") == groups - 1
    assert kinds.count("rest") >= 2 * groups  # a depth snapshot per symbol per group
    assert {r.get("lane") for r in records if r["kind"] == "open"} == {"public", "market"}

    replayed = tmp_path / "replayed"
    assert await async_main(["--replay", str(out / "raw"), "--out", str(replayed)],
                            handle_signals=False) == 0
    for name in TABLES:
        live, again = read(out, name, by_time=False), read(replayed, name, by_time=False)
        assert live.equals(again), f"{name} differs:\nlive\n{live}\nreplayed\n{again}"


async def test_the_replacement_takes_over_when_the_old_connections_die_first(
        tmp_path: Path) -> None:
    """The venue cuts at 3 s, while the replacement (started at 2.5 s) cannot get its depth
    snapshots: the replacement takes over at once, and its trade stream, open since 2.5 s,
    leaves no trade missing."""
    out, fake, _ = await record_short_lived(tmp_path, 160, cut_after_s=3.0, duration_s=3.8,
                                            speaker=NoMoreSnapshots)
    assert len(fake.cut) == 2  # the first group, both endpoints
    assert len(fake.sessions) == 4  # no reconnect: the replacement was there

    health = read(out, "health")
    venue = health.filter(pl.col("symbol").is_null()).select("event", "detail").rows()
    names = [e for e, _ in venue if e in ("connected", "disconnected", "handover")]
    assert names == ["connected", "connected", "disconnected", "disconnected", "handover",
                     "disconnected", "disconnected"]
    lost = [d for e, d in venue if e == "disconnected"]
    assert lost[0].startswith("closed by peer") and lost[2:] == ["stopped", "stopped"]
    [handover] = [d for e, d in venue if e == "handover"]
    assert "old connection lost" in handover
    # the books broke with the connection; the replacement's top of book (bookTicker) was
    # live and is trusted again at the switch, its depth (REST snapshots refused) is not
    per_symbol = health.filter(pl.col("symbol").is_not_null())
    assert per_symbol["event"].to_list().count("snapshot") == 4
    resynced = per_symbol.filter(pl.col("event") == "resynced")
    assert sorted(resynced["symbol"].to_list()) == ["BTC-USDT", "ETH-USDT"]
    assert all(d.startswith("handover: the book of the new connection")
               for d in resynced["detail"].to_list())
    assert "books carried 2" in handover
    check_trades(out, fake)  # none missing across the cut, none doubled

    replayed = tmp_path / "replayed"
    assert await async_main(["--replay", str(out / "raw"), "--out", str(replayed)],
                            handle_signals=False) == 0
    for name in TABLES:
        live, again = read(out, name, by_time=False), read(replayed, name, by_time=False)
        assert live.equals(again), f"{name} differs:\nlive\n{live}\nreplayed\n{again}"
