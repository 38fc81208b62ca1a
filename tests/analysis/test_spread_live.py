"""The live spread analyzer on hand-built quote sequences (edges both ways, fees, sizes, ages,
staleness, episodes and their merging), its Parquet tables, the fee file, the trio consumer on a
real bus, and the live terminal view rendered to a string."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import polars as pl
import pytest
import trio
from rich.console import Console

from analysis.fees import (
    DEFAULT_FEES_PATH,
    FeeConfigError,
    load_fee_table,
    parse_fee_overrides,
    resolve_fees,
    taker_rates,
)
from analysis.spread_live import (
    OPPORTUNITIES_SCHEMA,
    SPREADS_SCHEMA,
    Opportunity,
    PairView,
    Spread,
    SpreadAnalyzer,
    SpreadConfig,
    SpreadState,
    analyzer_from_options,
    gross_bps,
    parse_stale_ms,
    parse_thresholds,
    register_tables,
)
from core.bus import Bus, Policy
from core.live_view import (
    RateMeter,
    VenueRow,
    best_pair_lines,
    build_view,
    choose_status_view,
    live_status,
    plain_status,
)
from core.schema import Event, Health, HealthKind, TopOfBook
from core.session import VenueStats
from core.writers.parquet import ParquetWriter

T0 = 1_786_310_818_000_000_000  # ns
MS = 1_000_000
SYM = "BTC-USDT"
FEES = {"a": 0.0005, "b": 0.0006}  # 5 + 6 = 11 bps for a round of two taker legs
approx = pytest.approx


def tob(ex: str, t_ms: float, bid: float | None, bid_sz: float | None, ask: float | None,
        ask_sz: float | None, sym: str = SYM) -> TopOfBook:
    return TopOfBook(exchange=ex, ts_local=T0 + round(t_ms * MS), symbol=sym, ts_exchange=None,
                     bid_px=bid, bid_sz=bid_sz, ask_px=ask, ask_sz=ask_sz)


def state(**kw: object) -> SpreadState:
    cfg: dict[str, object] = {"taker_fees": FEES}
    cfg.update(kw)
    return SpreadState(SpreadConfig(**cfg))  # type: ignore[arg-type]


def feed(st: SpreadState, *events: Event) -> list[Event]:
    out: list[Event] = []
    for e in events:
        out.extend(st.on_event(e))
    return out


def spreads(rows: list[Event]) -> list[tuple]:
    return [(r.buy_exchange, r.sell_exchange, r.ask_px, r.bid_px, r.gross_bps, r.net_bps,
             r.size, r.buy_age_ms, r.sell_age_ms) for r in rows if isinstance(r, Spread)]


def opportunities(rows: list[Event]) -> list[Opportunity]:
    return [r for r in rows if isinstance(r, Opportunity)]


# -- edges ---------------------------------------------------------------------------------------


def test_gross_is_bps_of_the_ask() -> None:
    assert gross_bps(100.0, 100.2) == approx(20.0)
    assert gross_bps(100.0, 99.9) == approx(-10.0)


def test_both_directions_with_fees_size_and_ages() -> None:
    st = state()
    assert feed(st, tob("a", 0, 99.9, 2.0, 100.0, 1.5)) == []  # one venue: no pair yet
    rows = feed(st, tob("b", 10, 100.2, 0.7, 100.3, 3.0))
    assert spreads(rows) == [
        # buy b at 100.3, sell a at 99.9
        ("b", "a", 100.3, 99.9, approx(1e4 * (99.9 / 100.3 - 1)),
         approx(1e4 * (99.9 / 100.3 - 1) - 11.0), 2.0, 0.0, 10.0),
        # buy a at 100, sell b at 100.2: gross 20 bps, net 20 - (5 + 6) = 9 bps, size min(1.5, 0.7)
        ("a", "b", 100.0, 100.2, approx(20.0), approx(9.0), 0.7, 10.0, 0.0),
    ]
    assert all(r.ts_local == T0 + 10 * MS and r.exchange == "spread" and r.symbol == SYM
               for r in rows)


def test_a_row_only_when_the_pairs_edge_changes() -> None:
    st = state()
    feed(st, tob("a", 0, 99.9, 2.0, 100.0, 1.5), tob("b", 10, 100.2, 0.7, 100.3, 3.0))
    assert feed(st, tob("a", 20, 99.9, 5.0, 100.0, 9.0)) == []  # sizes only
    rows = feed(st, tob("a", 30, 99.8, 5.0, 100.0, 9.0))  # a's bid: only b -> a changes
    assert spreads(rows) == [("b", "a", 100.3, 99.8, approx(1e4 * (99.8 / 100.3 - 1)),
                              approx(1e4 * (99.8 / 100.3 - 1) - 11.0), 3.0, 20.0, 0.0)]


def test_symbols_never_mix_and_an_empty_side_has_no_edge() -> None:
    st = state()
    feed(st, tob("a", 0, 99.9, 1.0, 100.0, 1.0), tob("b", 1, 10.0, 1.0, 11.0, 1.0, sym="ETH-USDT"))
    assert st.pairs_view(T0 + 1 * MS) == []
    rows = feed(st, tob("b", 2, 100.5, 1.0, None, None))  # b has no ask: only a -> b exists
    assert [(r.buy_exchange, r.sell_exchange) for r in rows] == [("a", "b")]


def test_unknown_fee_gives_gross_only_and_never_an_opportunity() -> None:
    st = SpreadState(SpreadConfig(taker_fees={"a": 0.0005}))
    rows = feed(st, tob("a", 0, 99.9, 1.0, 100.0, 1.0), tob("c", 10, 100.5, 1.0, 100.6, 1.0))
    assert [(r.gross_bps, r.net_bps) for r in rows if r.buy_exchange == "a"] == [
        (approx(50.0), None)]
    assert opportunities(st.close(T0 + 100 * MS)) == []


# -- staleness -----------------------------------------------------------------------------------


def test_a_leg_older_than_its_cap_is_never_an_opportunity() -> None:
    st = state()  # 250 ms caps
    rows = feed(st, tob("b", 0, 100.2, 1.0, 100.3, 1.0), tob("a", 300, 99.9, 1.0, 100.0, 1.0))
    crossing = [r for r in spreads(rows) if r[0] == "a"]
    assert crossing == [("a", "b", 100.0, 100.2, approx(20.0), approx(9.0), 1.0, 0.0, 300.0)]
    view = {(v.buy_exchange, v.sell_exchange): v for v in st.pairs_view(T0 + 300 * MS)}
    assert view["a", "b"].stale and not view["a", "b"].in_episode
    assert opportunities(st.close(T0 + 400 * MS)) == []


def test_a_stale_leg_ends_the_episode_at_the_instant_it_went_stale() -> None:
    st = state(stale_ms={"b": 100.0})  # b's quotes count for 100 ms, a's for the default 250
    feed(st, tob("b", 0, 100.2, 1.0, 100.3, 1.0), tob("a", 10, 99.9, 1.0, 100.0, 2.0))
    # b's quote goes stale at 100 ms; a new a quote at 130 ms (still crossing) cannot reopen it,
    # and the episode is written once the gap reached 50 ms (at the next event, 160 ms)
    assert opportunities(feed(st, tob("a", 130, 99.9, 1.0, 100.0, 3.0))) == []
    [opp] = opportunities(feed(st, tob("a", 160, 99.9, 1.0, 100.0, 4.0)))
    assert (opp.start, opp.end, opp.duration_ms) == (T0 + 10 * MS, T0 + 100 * MS, 90.0)
    assert (opp.peak_net_bps, opp.mean_net_bps) == (approx(9.0), approx(9.0))
    assert (opp.size, opp.notional, opp.updates) == (1.0, 100.0, 1)


def test_a_health_break_of_a_venue_ends_its_episodes_until_it_quotes_again() -> None:
    st = state()
    feed(st, tob("a", 0, 99.9, 1.0, 100.0, 1.0), tob("b", 10, 100.2, 1.0, 100.3, 1.0))
    gap = Health(exchange="b", ts_local=T0 + 40 * MS, symbol=SYM, event=HealthKind.GAP)
    assert feed(st, gap) == []
    assert [v.buy_exchange for v in st.pairs_view(T0 + 40 * MS)] == []
    [opp] = opportunities(feed(st, tob("a", 100, 99.8, 1.0, 100.0, 1.0)))
    assert (opp.start, opp.end) == (T0 + 10 * MS, T0 + 40 * MS)
    # the next quote of b makes the pair usable again
    rows = feed(st, tob("b", 110, 100.2, 1.0, 100.3, 1.0))
    assert ("a", "b", 100.0, 100.2) in [r[:4] for r in spreads(rows)]


# -- episodes ------------------------------------------------------------------------------------


def test_episode_numbers_for_two_thresholds() -> None:
    st = state(thresholds_bps=(0.0, 5.0))
    feed(st, tob("a", 0, 99.9, 1.0, 100.0, 1.0), tob("b", 0, 99.95, 5.0, 100.05, 5.0))
    feed(st, tob("b", 100, 100.2, 0.5, 100.3, 5.0))  # net 9 bps: above 0 and 5
    feed(st, tob("b", 150, 100.15, 2.0, 100.3, 5.0))  # net 4 bps: above 0 only
    # net -6 bps: over. The 5 bps episode is written now: 70 ms since it ended at 150 ms
    rows = opportunities(feed(st, tob("b", 220, 99.95, 2.0, 100.05, 5.0)))
    assert [o.threshold_bps for o in rows] == [5.0]
    five = rows[0]
    assert (five.start, five.end, five.duration_ms) == (T0 + 100 * MS, T0 + 150 * MS, 50.0)
    assert (five.peak_net_bps, five.mean_net_bps, five.updates) == (approx(9.0), approx(9.0), 1)
    assert opportunities(feed(st, tob("a", 269, 99.9, 1.0, 100.0, 1.0))) == []  # gap 49 ms
    [zero] = opportunities(feed(st, tob("a", 270, 99.9, 1.0, 100.0, 1.0)))
    assert (zero.start, zero.end, zero.duration_ms) == (T0 + 100 * MS, T0 + 220 * MS, 120.0)
    assert zero.peak_net_bps == approx(9.0)
    assert zero.mean_net_bps == approx((9.0 * 50 + 4.0 * 70) / 120)  # 6.0833 bps
    assert (zero.size, zero.notional, zero.updates) == (0.5, 50.0, 2)  # at the peak
    assert (zero.symbol, zero.buy_exchange, zero.sell_exchange, zero.ts_local) == (
        SYM, "a", "b", zero.end)


@pytest.mark.parametrize(("back_ms", "episodes"), [(130, 1), (149, 1), (150, 2)])
def test_gaps_shorter_than_50_ms_merge(back_ms: int, episodes: int) -> None:
    st = state()
    feed(st, tob("a", 0, 99.9, 1.0, 100.0, 1.0), tob("b", 0, 100.2, 1.0, 100.3, 1.0))
    feed(st, tob("b", 100, 99.95, 1.0, 100.3, 1.0))  # below at 100 ms
    rows = feed(st, tob("b", back_ms, 100.1, 1.0, 100.3, 1.0))  # net -1 bps: still below
    rows += feed(st, tob("b", back_ms, 100.2, 1.0, 100.3, 1.0))  # net 9 bps again
    rows += feed(st, tob("b", 200, 99.95, 1.0, 100.3, 1.0))
    rows += st.close(T0 + 1000 * MS)
    opps = opportunities(rows)
    assert len(opps) == episodes
    if episodes == 1:
        [o] = opps
        assert (o.start, o.end, o.duration_ms) == (T0, T0 + 200 * MS, 200.0)
        assert o.mean_net_bps == approx(9.0)  # averaged over the time above the threshold
        assert o.updates == 2
    else:
        assert [(o.start, o.end) for o in opps] == [
            (T0, T0 + 100 * MS), (T0 + back_ms * MS, T0 + 200 * MS)]


def test_an_episode_open_at_shutdown_is_closed_then() -> None:
    st = state(default_stale_ms=10_000.0)
    feed(st, tob("a", 0, 99.9, 1.0, 100.0, 1.0), tob("b", 5, 100.3, 2.0, 100.4, 1.0))
    [opp] = opportunities(st.close(T0 + 505 * MS))
    assert (opp.start, opp.end, opp.duration_ms) == (T0 + 5 * MS, T0 + 505 * MS, 500.0)
    assert opp.peak_net_bps == approx(30.0 - 11.0)
    assert st.closed and st.on_event(tob("a", 600, 99.9, 1.0, 100.0, 1.0)) == []


def test_shutdown_end_is_capped_where_a_leg_went_stale() -> None:
    st = state()
    feed(st, tob("a", 0, 99.9, 1.0, 100.0, 1.0), tob("b", 5, 100.3, 2.0, 100.4, 1.0))
    [opp] = opportunities(st.close(T0 + 5_000 * MS))
    assert opp.end == T0 + 250 * MS  # a's last quote + 250 ms


def test_time_never_runs_backwards() -> None:
    st = state()
    feed(st, tob("a", 100, 99.9, 1.0, 100.0, 1.0))
    rows = feed(st, tob("b", 40, 100.2, 1.0, 100.3, 1.0))  # late: processed at 100 ms
    assert {r.ts_local for r in rows} == {T0 + 100 * MS}
    assert spreads(rows)[1][7:] == (0.0, 60.0)  # buy a (age 0), sell b (age 60 ms)


# -- configuration --------------------------------------------------------------------------------


def test_thresholds_and_staleness_flags() -> None:
    assert parse_thresholds("10, 0,5,2,5") == (0.0, 2.0, 5.0, 10.0)
    with pytest.raises(ValueError, match="comma-separated bps"):
        parse_thresholds("0,x")
    assert parse_stale_ms(["300", "htx=500"]) == (300.0, {"htx": 500.0})
    with pytest.raises(ValueError, match="VENUE=MS"):
        parse_stale_ms(["htx=0"])
    with pytest.raises(ValueError, match="positive"):
        SpreadConfig(stale_ms={"x": -1.0})


def test_analyzer_from_command_line_options(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="analysis.spread_live")
    analyzer = analyzer_from_options(["bybit", "coinbase"], thresholds_bps="5,0",
                                     stale_ms=["400", "htx=600"], taker_fee_bps=["bybit=2"])
    cfg = analyzer.state.config
    assert cfg.thresholds_bps == (0.0, 5.0)
    assert (cfg.stale_ns("bybit"), cfg.stale_ns("htx")) == (400 * MS, 600 * MS)
    assert cfg.taker_fees["bybit"] == approx(0.0002) and cfg.taker_fees["htx"] == 0.0006
    assert cfg.fee_bps("bybit", "coinbase") is None
    assert "spreads: fee bybit: taker 2 bps (user, command line)" in caplog.text  # debug
    [info] = [r.getMessage() for r in caplog.records
              if r.levelno == logging.INFO and "fees" in r.getMessage()]
    assert info == "spreads: taker fees in bps: bybit 2 (--taker-fee-bps or --fees to change them)"
    assert "no taker fee known for coinbase" in caplog.text
    with pytest.raises(ValueError, match="--spread-stale-ms"):
        analyzer_from_options(["bybit"], stale_ms=["htx=x"])
    with pytest.raises(FeeConfigError, match="--taker-fee-bps"):
        analyzer_from_options(["bybit"], taker_fee_bps=["bybit"])


def test_default_fees_name_rate_date_and_page() -> None:
    table = load_fee_table()
    assert taker_rates(table) == {"bybit": 0.00055, "bitget": 0.0006, "htx": 0.0006,
                                  "gateio": 0.0005, "binance": 0.0005, "okx": 0.0005}
    for fee in table.values():
        assert fee.date[:2] == "20" and fee.date_kind in ("published", "effective", "checked")
        assert fee.page and fee.url.startswith("https://")
    assert table["bybit"].describe().startswith("bybit: taker 5.5 bps (base (non-VIP), "
                                                "published 2024-10-16")
    assert DEFAULT_FEES_PATH.name == "fees.toml"


def test_user_fees_file_then_bps_overrides(tmp_path: Path) -> None:
    user = tmp_path / "fees.toml"
    user.write_text('[bybit]\ntaker = 0.0004\ntier = "VIP 1"\n\n[okx]\ntaker = 0.0005\n')
    table = resolve_fees(user, parse_fee_overrides(["htx=4.5"]))
    assert table["bybit"].taker == 0.0004 and table["bybit"].tier == "VIP 1"
    assert table["bybit"].date == "2024-10-16"  # fields not given keep the default
    assert table["okx"].taker == 0.0005
    assert table["htx"].taker == approx(0.00045) and table["htx"].date_kind == "user"
    assert table["gateio"].taker == 0.0005


@pytest.mark.parametrize(("text", "message"), [
    ("[x]\nmaker = 0.0002\n", "needs a taker rate"),
    ("[bybit]\ntaker = 0.055\n", "not a plausible fee rate"),
    ("[bybit]\ntaker = \"5\"\n", "must be a number"),
    ("[bybit]\nfee = 0.1\n", "unknown fields"),
    ("bybit = 1\n", "must be a table"),
    ("[bybit\n", "not valid TOML"),
])
def test_bad_fee_files_say_what_is_wrong(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "f.toml"
    path.write_text(text)
    with pytest.raises(FeeConfigError, match=message):
        load_fee_table(path, load_fee_table())


def test_bad_fee_overrides() -> None:
    assert parse_fee_overrides(["bybit=5.5"]) == {"bybit": approx(0.00055)}
    for item in ("bybit", "bybit=x", "=3", "bybit=-1", "bybit=500"):
        with pytest.raises(FeeConfigError, match="VENUE=BPS"):
            parse_fee_overrides([item])


# -- Parquet --------------------------------------------------------------------------------------


def files(out: Path, table: str) -> list[Path]:
    return sorted(out.glob(f"{table}/exchange=spread/date=2026-08-09/*.parquet"))



async def test_rows_are_written_as_the_spreads_and_opportunities_tables(tmp_path: Path) -> None:
    st = state(default_stale_ms=10_000.0)
    rows = feed(st, tob("a", 0, 99.9, 1.0, 100.0, 1.0), tob("b", 5, 100.3, 2.0, 100.4, 1.0))
    rows += st.close(T0 + 505 * MS)
    register_tables()  # what loading the plugin does (importing the module registers nothing)
    writer = ParquetWriter(tmp_path)
    writer.add(rows)
    await writer.close()
    spread_files = files(tmp_path, "spreads")
    opp_files = files(tmp_path, "opportunities")
    assert len(spread_files) == 1 and len(opp_files) == 1
    sp = pl.read_parquet(spread_files[0])
    assert sp.schema == pl.Schema(SPREADS_SCHEMA)
    assert sp.columns == ["ts_local", "symbol", "buy_exchange", "sell_exchange", "ask_px",
                          "bid_px", "gross_bps", "net_bps", "size", "buy_age_ms", "sell_age_ms"]
    assert sp.select("buy_exchange", "sell_exchange", "ask_px", "bid_px", "size").rows() == [
        ("b", "a", 100.4, 99.9, 1.0), ("a", "b", 100.0, 100.3, 1.0)]
    op = pl.read_parquet(opp_files[0])
    assert op.schema == pl.Schema(OPPORTUNITIES_SCHEMA)
    assert op.select("duration_ms", "buy_exchange", "sell_exchange", "threshold_bps", "size",
                     "notional", "updates").rows() == [(500.0, "a", "b", 0.0, 1.0, 100.0, 1)]
    assert op["peak_net_bps"].item() == approx(19.0)
    assert op["end"].item() == op["start"].item() + (op["end"] - op["start"]).item()


# -- the trio consumer ----------------------------------------------------------------------------


async def test_analyzer_on_a_bus_publishes_its_rows_and_finishes_open_episodes() -> None:
    bus = Bus()
    analyzer = SpreadAnalyzer(state(default_stale_ms=10_000.0))
    consumer = analyzer.consumer()
    assert consumer.policy is Policy.CONFLATE and consumer.kinds == frozenset({"tob", "health"})
    out = bus.subscribe("writer", ["spread", "opportunity"])
    async with trio.open_nursery() as nursery:
        await nursery.start(consumer.run, bus.subscribe(consumer.name, consumer.kinds,
                                                        policy=consumer.policy))
        bus.publish([tob("a", 0, 99.9, 1.0, 100.0, 1.0)])
        await trio.sleep(0.01)
        bus.publish([tob("b", 5, 100.3, 2.0, 100.4, 1.0)])
        await trio.sleep(0.01)  # rows wait: not bound yet
        analyzer.bind(bus)
        analyzer.finish(T0 + 505 * MS)
        bus.close()
    got = [e for batch in [b async for b in out] for e in batch]
    assert [type(e).__name__ for e in got] == ["Spread", "Spread", "Opportunity"]
    assert analyzer.rows_published == 3 and analyzer.rows_lost == 0
    assert got[2].duration_ms == 500.0


async def test_keep_latest_batches_are_processed_in_time_order() -> None:
    analyzer = SpreadAnalyzer(state())
    rows = analyzer.process([tob("b", 10, 100.2, 1.0, 100.3, 1.0),
                             tob("a", 0, 99.9, 1.0, 100.0, 1.0)])
    assert [(r.buy_age_ms, r.sell_age_ms) for r in rows] == [(0.0, 10.0), (10.0, 0.0)]


# -- the terminal view ----------------------------------------------------------------------------


def pair(buy: str, sell: str, gross: float, net: float | None, stale: bool = False) -> PairView:
    return PairView(symbol=SYM, buy_exchange=buy, sell_exchange=sell, ask_px=100.0,
                    bid_px=100.2, gross_bps=gross, net_bps=net, size=0.7, buy_age_ms=12.0,
                    sell_age_ms=3.0, stale=stale, in_episode=net is not None and net > 0)


VENUES = [VenueRow("bybit", True, 48.25, 0.012, 0, 0, 0),
          VenueRow("htx", False, 0.0, None, 3, 2, 1)]


def render(renderable: object, *, color: bool = False) -> str:
    buf = io.StringIO()
    console = Console(file=buf, width=130, force_terminal=color,
                      color_system="standard" if color else None)
    console.print(renderable)
    return buf.getvalue()


def cells(text: str, key: str) -> list[str]:
    """The whitespace-separated cells of the one rendered line containing ``key``."""
    [line] = [line for line in text.splitlines() if key in line.split()]
    return line.split()


def test_view_shows_venue_state_rate_age_reconnects_and_gaps() -> None:
    text = render(build_view(VENUES, None, now_ns=T0))
    assert cells(text, "venue") == ["venue", "state", "msg/s", "last", "msg", "reconn", "gaps",
                                    "dec", "err"]
    assert cells(text, "bybit") == ["bybit", "up", "48.2", "12", "ms", "0", "0", "0"]
    assert cells(text, "htx") == ["htx", "DOWN", "0.0", "never", "3", "2", "1"]
    assert "bookwire  2026-08-09 " in text and "spreads" not in text


def test_view_shows_pairs_and_highlights_positive_net() -> None:
    pairs = [pair("a", "b", 20.0, 9.0), pair("b", "a", -39.9, -50.9),
             pair("a", "c", 25.0, 14.0, stale=True)]
    text = render(build_view(VENUES, pairs))
    assert "BTC-USDT spreads (bps)" in text
    assert cells(text, "buy→sell") == ["buy→sell", "ask", "bid", "gross", "net", "size", "age",
                                       "ms"]
    assert cells(text, "a→b") == ["▲", "a→b", "100", "100.2", "+20.00", "+9.00", "0.7", "12/3"]
    assert cells(text, "b→a") == ["b→a", "100", "100.2", "-39.90", "-50.90", "0.7", "12/3"]
    assert cells(text, "a→c")[:2] == ["✕", "a→c"]  # positive but stale: no highlight
    assert "▲ net > 0 on fresh quotes" in text
    colored = render(build_view(VENUES, pairs), color=True)
    green = next(line for line in colored.splitlines() if "+9.00" in line)
    assert "\x1b[1;32m" in green  # bold green
    for other in ("-50.90", "+14.00"):
        line = next(line for line in colored.splitlines() if other in line)
        assert "\x1b[1;32m" not in line


def test_one_table_per_symbol_and_a_note_before_any_pair() -> None:
    eth = PairView(symbol="ETH-USDT", buy_exchange="a", sell_exchange="b", ask_px=3001.25,
                   bid_px=3000.5, gross_bps=-2.5, net_bps=-13.5, size=12.5, buy_age_ms=1.0,
                   sell_age_ms=2.0, stale=False, in_episode=False)
    text = render(build_view(VENUES, [pair("a", "b", 20.0, 9.0), eth]))
    assert text.index("BTC-USDT spreads") < text.index("ETH-USDT spreads")
    assert cells(text, "3001.25") == ["a→b", "3001.25", "3000.5", "-2.50", "-13.50", "12.5",
                                      "1/2"]
    assert "spreads: no venue pair quoted yet" in render(build_view(VENUES, []))


def test_long_names_are_cut_and_numbers_kept_in_an_80_column_terminal() -> None:
    long = PairView(symbol=SYM, buy_exchange="coinbase-exchange", sell_exchange="bitget",
                    ask_px=96649.8, bid_px=96650.2, gross_bps=0.41, net_bps=-11.09, size=0.7,
                    buy_age_ms=12.0, sell_age_ms=3.0, stale=False, in_episode=False)
    buf = io.StringIO()
    Console(file=buf, width=80).print(build_view(VENUES, [long]))
    lines = buf.getvalue().splitlines()
    assert max(len(line) for line in lines) <= 80
    assert cells(buf.getvalue(), "96649.8") == ["coinbase-exchange→b…", "96649.8", "96650.2",
                                                "+0.41", "-11.09", "0.7", "12/3"]


def test_best_pair_lines_for_plain_output() -> None:
    assert best_pair_lines([pair("a", "b", 20.0, 9.0), pair("b", "a", -39.9, None)]) == [
        "spread BTC-USDT: best a->b gross +20.00 bps, net +9.00 bps, size 0.7"]


def test_rate_meter_uses_a_sliding_window() -> None:
    meter = RateMeter(window_s=2.0)
    assert meter.rate("x", 0.0, 0) == 0.0
    assert meter.rate("x", 1.0, 100) == 100.0
    assert meter.rate("x", 2.0, 300) == 150.0
    assert meter.rate("x", 4.0, 300) == 0.0  # nothing in the last 2 s
    assert meter.rate("x", 5.0, 390) == 30.0  # since the newest sample at least 2 s old (2.0)


def test_choose_status_view() -> None:
    analyzer = SpreadAnalyzer(state())
    assert choose_status_view(True, terminal=True).func is plain_status  # type: ignore[attr-defined]
    assert choose_status_view(False, terminal=False).func is plain_status  # type: ignore
    assert choose_status_view(False, terminal=True).func is live_status  # type: ignore
    with_pairs = choose_status_view(False, analyzer, terminal=True)
    assert with_pairs.func is live_status  # type: ignore[attr-defined]
    assert with_pairs.keywords["spreads"] is analyzer  # type: ignore[attr-defined]
    consumer = analyzer.consumer()
    assert consumer.bind == analyzer.bind and consumer.finish == analyzer.finish


async def test_live_view_shows_pairs_and_finish_closes_episodes(
        autojump_clock: trio.abc.Clock) -> None:
    class Clock:
        def now_ns(self) -> int:
            return T0 + round(trio.current_time() * 1e9)

    analyzer = SpreadAnalyzer(state(default_stale_ms=1e9))
    bus = Bus()
    out = bus.subscribe("writer", ["opportunity"])
    for e in (tob("a", 0, 99.9, 1.0, 100.0, 1.0), tob("b", 0, 100.3, 2.0, 100.4, 1.0)):
        analyzer._emit(analyzer.process([e]))
    stats = [VenueStats("a", connected=True, messages=10, last_frame_ns=T0)]
    buf = io.StringIO()
    view = choose_status_view(False, analyzer, terminal=True,
                              console=Console(file=buf, width=120, force_terminal=True))
    analyzer.bind(bus)  # what the supervisor does when the run starts
    with trio.move_on_after(2.0):
        await view(stats, bus, Clock(), 10.0)
    analyzer.finish(Clock().now_ns())  # what the supervisor does when the feeds stop
    bus.close()
    [batch] = [b async for b in out]
    assert [round(e.duration_ms) for e in batch] == [2000]  # closed at the end of the run
    assert "a→b" in buf.getvalue() and "+19.00" in buf.getvalue()


async def test_plain_view_logs_best_pairs(autojump_clock: trio.abc.Clock,
                                          caplog: pytest.LogCaptureFixture) -> None:
    analyzer = SpreadAnalyzer(state(default_stale_ms=1e9))
    analyzer.process([tob("a", 0, 99.9, 1.0, 100.0, 1.0), tob("b", 0, 100.3, 2.0, 100.4, 1.0)])

    class Clock:
        def now_ns(self) -> int:
            return T0

    caplog.set_level(logging.INFO, logger="bookwire.status")
    with trio.move_on_after(10.5):
        await plain_status([VenueStats("a")], Bus(), Clock(), 10.0, spreads=analyzer)
    assert "spread BTC-USDT: best a->b gross +30.00 bps, net +19.00 bps, size 1" in caplog.text
    assert "a: DOWN 0.0 msg/s, last never" in caplog.text


async def test_a_failing_live_view_falls_back_to_status_lines(
        autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture) -> None:
    class Broken:
        def bind(self, bus: Bus) -> None: ...
        def finish(self, now_ns: int) -> None: ...
        def pairs_view(self, now_ns: int) -> list[PairView]:
            raise RuntimeError("snapshot bug")

    class Clock:
        def now_ns(self) -> int:
            return T0

    caplog.set_level(logging.INFO, logger="bookwire.status")
    with trio.move_on_after(10.5):
        await live_status([VenueStats("a")], Bus(), Clock(), 10.0, spreads=Broken(),
                          console=Console(file=io.StringIO(), force_terminal=True))
    assert "live view failed; status lines instead" in caplog.text
    assert "RuntimeError: snapshot bug" in caplog.text
    assert "a: DOWN 0.0 msg/s, last never" in caplog.text  # the recording goes on
