"""Status output while recording: the run line (elapsed, remaining, output folder) in the plain
lines and the live view, and a log without third-party INFO noise."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
from rich.console import Console

from core.bus import Bus
from core.clock import TrioClock
from core.live_view import build_view, choose_status_view, live_status
from core.logs import QUIET_LIBRARIES, configure_logging
from core.run import async_main
from core.session import VenueStats
from core.status import RunInfo, clock_time, format_run
from core.testing.fake_servers import serve_http
from tests.session.sims import BYBIT_BTC, BYBIT_ETH, rest_of


@pytest.fixture(autouse=True)
def _restore_library_levels() -> Iterator[None]:
    """configure_logging sets process-wide logger levels: put them back after each test."""
    saved = {name: logging.getLogger(name).level for name in QUIET_LIBRARIES}
    yield
    for name, level in saved.items():
        logging.getLogger(name).setLevel(level)


def test_clock_time() -> None:
    assert clock_time(0) == "0:00:00"
    assert clock_time(59.9) == "0:00:59"
    assert clock_time(3 * 3600 + 25 * 60 + 7) == "3:25:07"
    assert clock_time(-1) == "0:00:00"


def test_run_line_with_and_without_duration() -> None:
    assert format_run(RunInfo(Path("data"), 600.0), 100.0) == \
        "elapsed 0:01:40, left 0:08:20 of 0:10:00, out data"
    assert format_run(RunInfo(Path("data"), 600.0), 700.0) == \
        "elapsed 0:11:40, left 0:00:00 of 0:10:00, out data"
    busy = RunInfo(Path("data"), None, written=lambda: (1_234_567, 45_600_000))
    assert format_run(busy, 5.0).endswith(", out data, 1,234,567 rows, 45.6 MB on disk")
    assert format_run(RunInfo(Path("/srv/books")), 3661.0) == \
        "elapsed 1:01:01, until stopped, out /srv/books"


async def test_plain_lines_start_with_the_run_line(autojump_clock: trio.abc.Clock,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="bookwire.status")
    view = choose_status_view(True, run=RunInfo(Path("out"), 60.0))
    with trio.move_on_after(25):
        await view([VenueStats("a")], Bus(), TrioClock(), 10.0)
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["run: elapsed 0:00:10, left 0:00:50 of 0:01:00, out out",
                     "a: DOWN 0.0 msg/s, last never, reconnects 0, gaps 0, decode errors 0",
                     "run: elapsed 0:00:20, left 0:00:40 of 0:01:00, out out",
                     "a: DOWN 0.0 msg/s, last never, reconnects 0, gaps 0, decode errors 0"]


async def test_live_view_header_shows_elapsed_remaining_and_out(
        autojump_clock: trio.abc.Clock) -> None:
    buf = io.StringIO()
    with trio.move_on_after(3.2):
        await live_status([VenueStats("a")], Bus(), TrioClock(), 10.0, refresh_s=1.0,
                          console=Console(file=buf, width=100, force_terminal=True),
                          run=RunInfo(Path("data"), 600.0))
    text = buf.getvalue()
    assert "elapsed 0:00:00, left 0:10:00 of 0:10:00, out data" in text
    assert "elapsed 0:00:03, left 0:09:57 of 0:10:00, out data" in text


def test_build_view_without_run_line_is_unchanged() -> None:
    buf = io.StringIO()
    Console(file=buf, width=100).print(build_view([], None, run_line="elapsed 0:00:01"))
    assert "elapsed 0:00:01" in buf.getvalue()
    buf = io.StringIO()
    Console(file=buf, width=100).print(build_view([], None))
    assert "elapsed" not in buf.getvalue()


def test_library_loggers_are_quiet_unless_debug() -> None:
    configure_logging("INFO")
    assert logging.getLogger("httpx").getEffectiveLevel() == logging.WARNING
    assert logging.getLogger("trio-websocket").getEffectiveLevel() == logging.WARNING
    configure_logging("DEBUG")
    assert logging.getLogger("httpx").getEffectiveLevel() == logging.DEBUG


async def test_the_cli_logs_no_http_request_lines(tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            rest = await nursery.start(serve_http, rest_of("bybit", BYBIT_BTC, BYBIT_ETH))
            # An unlisted symbol stops the run right after the instrument request.
            code = await async_main(["--plugins", "bybit", "--symbols", "SOL-USDT", "--out",
                                     str(tmp_path), "--endpoint", f"bybit.rest={rest}"],
                                    handle_signals=False)
            nursery.cancel_scope.cancel()
    assert code == 2
    assert "bybit: 2 instruments from http://127.0.0.1" in caplog.text
    assert not [r for r in caplog.records if r.name.startswith(("httpx", "httpcore"))]
