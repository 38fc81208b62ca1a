"""End to end: the ``funding`` channel and the clock offsets of the six perpetual fakes, recorded
by the command line from loopback venues speaking each venue's real protocol (Bybit's ticker
snapshot and partial deltas, HTX's REST answers, Bitget's ticker, Gate's ``futures.tickers``,
Binance's ``markPriceUpdate`` with its open interest polled over REST, OKX's four channels),
then rebuilt from the raw recording.

The simulated market has a known funding schedule: a funding falls inside the run, so the rate
and the next funding time change mid-run; every row must carry values the venue actually sent
(the simulated state at some moment; where a venue sends its values in several messages, HTX's
four polled answers, Binance's push and its polled open interest, OKX's four channels, each
message's values a state of their own, and a value not yet sent null until it is), and the rows
before and after the funding time the rates of the schedule. Each fake's server clock runs
ahead of or behind the simulation's by a known amount, which the ``clock_offset`` rows must
recover within half their round trip."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import polars as pl
import trio

from core.clock_sync import parse_detail
from core.codec import MS_NS, S_NS
from core.run import async_main
from core.sim.market import Market, PerpUpdate, load_text
from core.sim.perp import FundingSchedule, simulate_perps
from core.sim.simulator import SimParams
from tests.session.sims import (
    BINANCE_BTC,
    BITGET_BTC,
    BYBIT_BTC,
    GATE_BTC,
    HTX_BTC,
    OKX_BTC,
    endpoints,
    serving,
)
from tests.session.sims import simulation as simulate_venues

CEILING_S = 60
VENUES = ("bybit", "htx", "bitget", "gateio", "binance", "okx")
LISTINGS = {"bybit": BYBIT_BTC, "htx": HTX_BTC, "bitget": BITGET_BTC, "gateio": GATE_BTC,
            "binance": BINANCE_BTC, "okx": OKX_BTC}
#: the fakes' server clocks against the simulation's (ns): offsets local - venue are the opposite
SKEW_NS = {"bybit": 25 * MS_NS, "htx": -40 * MS_NS, "bitget": 0, "gateio": 7 * MS_NS,
           "binance": -15 * MS_NS, "okx": 60 * MS_NS}
RATES_BPS = {"bybit": ("1.0", "-0.5"), "htx": ("2.5", "0.75"), "bitget": ("-1.25", "3.0"),
             "gateio": ("0.1", "0.2"), "binance": ("0.5", "-2.0"), "okx": ("1.5", "0.25")}
#: the values of a row that arrive in one message (indexes into (rate, next funding time, mark,
#: index, open interest)): one push per state, or several messages each with a state of its own
ONE_MESSAGE = ((0, 1, 2, 3, 4),)
MESSAGES = {"htx": ((0, 1), (2,), (3,), (4,)), "binance": ((0, 1, 2, 3), (4,)),
            "okx": ((0, 1), (2,), (3,), (4,))}
#: the funding interval each venue tells (Bitget's ticker and Binance's stream tell none)
INTERVALS = {"bitget": {None}, "binance": {None}}
INTERVAL_S = 60
FUNDING_AFTER_S = 3  # the first funding time: the third whole second after the start


def _wire(u: PerpUpdate) -> tuple[float, int, float, float, float]:
    listing = LISTINGS[u.venue]
    return (float(u.funding_rate), u.next_funding_ns, float(listing.price(u.mark_ticks)),
            float(listing.price(u.index_ticks)), float(listing.size(u.open_interest_lots)))


async def test_funding_rows_and_clock_offsets_from_the_six_perpetual_fakes(
        tmp_path: Path) -> None:
    market = Market(list(LISTINGS.values()))
    for venue in VENUES:
        tick = market.listing(venue, "BTC-USDT").tick
        load_text(market, venue, "BTC-USDT", [("65000", "1")], [(str(65000 + tick), "1")])
    sim = simulate_venues(market)
    start = trio.current_time()
    assert sim.clock is not None
    t0 = sim.clock.now_ns()
    first = (t0 // S_NS + FUNDING_AFTER_S) * S_NS  # a whole second, as venues have them
    schedules = {v: FundingSchedule(INTERVAL_S, first - INTERVAL_S * S_NS,
                                    tuple(Decimal(r) for r in RATES_BPS[v])) for v in VENUES}
    simulate_perps(market, VENUES, SimParams(seed=7), t0, schedules, update_s=0.2)
    sent: dict[str, set[tuple[float, int, float, float, float]]] = {v: set() for v in VENUES}
    for (venue, _), update in market.perps.items():
        sent[venue].add(_wire(update))
    original = market.fire_next

    def fire_next(now_ns: int) -> list | None:  # every state the fakes may send, as they send it
        events = original(now_ns)
        for e in events or ():
            if isinstance(e, PerpUpdate):
                sent[e.venue].add(_wire(e))
        return events

    market.fire_next = fire_next  # type: ignore[method-assign]
    for venue, skew in SKEW_NS.items():
        sim.speakers[venue].clock_skew_ns = skew
    out = tmp_path / "data"
    with trio.fail_after(CEILING_S):
        async with serving(sim) as (_, urls):
            code = await async_main([
                "--plugins", ",".join(VENUES), "--symbols", "BTC-USDT", "--channels",
                "funding", "--out", str(out), "--duration", "4.5", "--no-live", "--record-raw",
                "--opt", "htx.funding_poll_s=1", "--opt", "binance.funding_poll_s=1",
                *endpoints(urls)], handle_signals=False)
    assert code == 0, "exit code"
    assert trio.current_time() - start < CEILING_S

    funding = pl.read_parquet(out / "funding" / "**" / "*.parquet", hive_partitioning=True)
    assert set(funding["exchange"].unique()) == set(VENUES)
    for venue in VENUES:
        got = funding.filter(pl.col("exchange") == venue).sort("ts_local")
        assert got.height >= 2, venue
        known: set[int] = set()  # the values sent so far: never null again
        rows = got.select("funding_rate", pl.col("next_funding_time").dt.epoch("ns"),
                          "mark_px", "index_px", "open_interest").rows()
        for row in rows:
            for group in MESSAGES.get(venue, ONE_MESSAGE):
                part = tuple(row[i] for i in group)
                if all(v is None for v in part) and not known & set(group):
                    continue  # not sent yet
                assert part in {tuple(w[i] for i in group) for w in sent[venue]}, (venue, row)
                known |= set(group)
        assert None not in rows[-1], (venue, rows[-1])
        # both sides of the funding time, each funding time with its rate in the schedule
        want = {nxt: float(rate) for nxt, rate in (schedules[venue].next_after(t)
                                                   for t in (t0, first))}
        assert list(want) == [first, first + INTERVAL_S * S_NS]
        told = got.filter(pl.col("next_funding_time").is_not_null())  # (not sent yet: above)
        seen = set(told.select(pl.col("next_funding_time").dt.epoch("ns"), "funding_rate")
                   .rows())
        assert seen == set(want.items()), (venue, seen, want)
        interval = set(got["funding_interval_s"].to_list())
        assert interval == INTERVALS.get(venue, {INTERVAL_S}), (venue, interval)

    health = pl.read_parquet(out / "health" / "**" / "*.parquet", hive_partitioning=True)
    assert health.filter(pl.col("event").is_in(["decode_error", "venue_error",
                                                "plugin_error"])).height == 0
    clock = health.filter(pl.col("event") == "clock_offset")
    for venue in VENUES:
        [detail] = clock.filter(pl.col("exchange") == venue)["detail"].to_list()
        est = parse_detail(detail)
        assert est is not None and est["good"] == est["samples"] == 5, detail
        bound_ms = est["rtt_ms"] / 2 + 1.0  # half the round trip + the venue's 1 ms resolution
        assert abs(est["offset_ms"] - (-SKEW_NS[venue] / MS_NS)) <= bound_ms, (venue, detail)

    # the raw recording rebuilds the same funding rows and clock rows
    rebuilt = tmp_path / "rebuilt"
    assert await async_main(["--replay", str(out / "raw"), "--out", str(rebuilt)],
                            handle_signals=False) == 0
    again = pl.read_parquet(rebuilt / "funding" / "**" / "*.parquet", hive_partitioning=True)
    key = ["exchange", "ts_local"]
    assert again.sort(key).equals(funding.sort(key))
    again_clock = pl.read_parquet(rebuilt / "health" / "**" / "*.parquet",
                                  hive_partitioning=True).filter(pl.col("event") ==
                                                                 "clock_offset")
    cols = ["exchange", "ts_local", "detail"]
    assert again_clock.select(cols).sort(key).equals(clock.select(cols).sort(key))
