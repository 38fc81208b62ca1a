"""Refused subscriptions in the status views: the plain lines and the live table say so."""

from __future__ import annotations

import io

from rich.console import Console

from core.live_view import RateMeter, build_view, venue_rows
from core.schema import Health, HealthKind
from core.session import VenueStats
from core.status import format_status

T0 = 1_786_310_818_000_000_000


def refused(stats: VenueStats, symbol: str) -> None:
    stats.count([Health(exchange=stats.venue, ts_local=T0, symbol=symbol,
                        event=HealthKind.SUBSCRIBE_ERROR,
                        detail="subscribe rejected: Invalid symbol :[orderbook.50.XYZUSDT]")])


def render(stats: list[VenueStats]) -> str:
    buf = io.StringIO()
    Console(file=buf, width=130).print(build_view(venue_rows(stats, RateMeter(), 0.0, T0)))
    return buf.getvalue()


def test_a_venue_whose_every_subscription_was_refused_is_not_shown_up() -> None:
    stats = VenueStats("bybit", connected=True, last_frame_ns=T0)
    refused(stats, "XYZ-USDT")
    assert stats.subscribe_errors == 1 and not stats.ever_subscribed
    line = format_status(stats, 0.0, T0)
    assert line.startswith("bybit: REFUSED 0.0 msg/s")
    assert line.endswith("refused subscriptions 1 (last: XYZ-USDT subscribe rejected: Invalid "
                         "symbol :[orderbook.50.XYZUSDT])")
    text = render([stats])
    [row] = [ln for ln in text.splitlines() if ln.split()[:1] == ["bybit"]]
    assert row.split()[1] == "REFUSED"
    assert "bybit: 1 subscription(s) refused; last: XYZ-USDT subscribe rejected" in text


def test_some_refusals_on_a_venue_that_records_are_flagged_not_hidden() -> None:
    stats = VenueStats("bybit", connected=True, last_frame_ns=T0)
    stats.count([Health(exchange="bybit", ts_local=T0, symbol="BTC-USDT",
                        event=HealthKind.SUBSCRIBED, detail="orderbook.50.BTCUSDT")])
    refused(stats, "XYZ-USDT")
    assert format_status(stats, 0.0, T0).startswith("bybit: up 0.0 msg/s")
    assert "refused subscriptions 1" in format_status(stats, 0.0, T0)
    [row] = [ln for ln in render([stats]).splitlines() if ln.split()[:1] == ["bybit"]]
    assert row.split()[1] == "up*"


def test_a_healthy_venue_line_is_unchanged() -> None:
    stats = VenueStats("bybit", connected=True, last_frame_ns=T0, messages=10)
    assert format_status(stats, 48.3, T0) == ("bybit: up 48.3 msg/s, last 0.0s ago, reconnects 0, "
                                              "gaps 0, decode errors 0")
