"""The status views show each venue's funding rate and the time to its next funding: the live
table, the plain lines, and the keep-latest subscription that feeds both."""

from __future__ import annotations

import io
import logging

import pytest
import trio
from rich.console import Console

from core.bus import Bus
from core.codec import S_NS
from core.live_view import RateMeter, build_view, venue_rows
from core.schema import Funding, TopOfBook
from core.session import VenueStats
from core.status import FundingBoard, format_funding, report_status, watch_funding

T0 = 1_786_310_818_000_000_000
NEXT = T0 + (2 * 3600 + 5 * 60 + 7) * S_NS


def funding(venue: str, rate: float | None, ts: int = T0, **kw: object) -> Funding:
    return Funding(exchange=venue, ts_local=ts, symbol="BTC-USDT", ts_exchange=None,
                   funding_rate=rate, **kw)  # type: ignore[arg-type]


def test_the_plain_line_gives_rate_interval_countdown_and_prices() -> None:
    f = funding("bybit", 0.0001, funding_interval_s=8 * 3600, next_funding_time=NEXT,
                mark_px=65117.44, index_px=65137.76, open_interest=59891.732)
    assert format_funding(f, T0) == (
        "funding bybit BTC-USDT: +0.0100 %/8h, next in 2:05:07, mark 65117.44, "
        "index 65137.76, open interest 59,891.7")
    late = funding("binance", -0.00038167, next_funding_time=T0)
    assert format_funding(late, T0 + 1) == "funding binance BTC-USDT: -0.0382 %, next due"
    assert format_funding(funding("htx", None), T0) == "funding htx BTC-USDT: n/a, next n/a"


def test_the_live_view_has_a_funding_table_per_venue() -> None:
    board = FundingBoard()
    board.update([funding("htx", 0.0002, funding_interval_s=4 * 3600, next_funding_time=NEXT,
                          mark_px=65000.5),
                  funding("bybit", 0.0001, funding_interval_s=8 * 3600, next_funding_time=NEXT),
                  TopOfBook(exchange="bybit", ts_local=T0, symbol="BTC-USDT", ts_exchange=None,
                            bid_px=1.0, bid_sz=1.0, ask_px=2.0, ask_sz=1.0),
                  funding("bybit", -0.0001, T0 + 1, funding_interval_s=8 * 3600,
                          next_funding_time=NEXT)])
    assert [(f.exchange, f.funding_rate) for f in board.rows()] == [("bybit", -0.0001),
                                                                    ("htx", 0.0002)]
    buf = io.StringIO()
    stats = [VenueStats("bybit", connected=True, last_frame_ns=T0)]
    Console(file=buf, width=130).print(build_view(venue_rows(stats, RateMeter(), 0.0, T0),
                                                  now_ns=T0, funding=board.rows()))
    text = buf.getvalue()
    assert "rate/interval" in text and "next funding" in text
    [bybit] = [ln for ln in text.splitlines() if ln.split()[:2] == ["bybit", "BTC-USDT"]]
    assert bybit.split()[2:6] == ["-0.0100", "%/8h", "in", "2:05:07"]
    [htx] = [ln for ln in text.splitlines() if ln.split()[:2] == ["htx", "BTC-USDT"]]
    assert htx.split()[2:7] == ["+0.0200", "%/4h", "in", "2:05:07", "65000.5"]


async def test_the_board_follows_the_bus_and_the_plain_lines_show_it(
        autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture) -> None:
    bus = Bus()
    board = FundingBoard()

    class Now:
        def now_ns(self) -> int:
            return T0

    caplog.set_level(logging.INFO, logger="bookwire.status")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch_funding, bus, board)
        nursery.start_soon(lambda: report_status([], bus, Now(), 1.0, funding=board))
        await trio.sleep(0.1)
        bus.publish([funding("okx", 0.0003, next_funding_time=NEXT)])
        await trio.sleep(1.5)
        assert [f.funding_rate for f in board.rows()] == [0.0003]
        nursery.cancel_scope.cancel()
    assert "funding okx BTC-USDT: +0.0300 %, next in 2:05:07" in caplog.text
