"""The fault matrix, continued: the cases of the venues ``tests/session/test_faults.py`` does not
run itself (the matrix, its bounds and its not-applicable reasons are defined there; it is split
over two files so that parallel test workers share it)."""

from __future__ import annotations

import pytest
import trio

from tests.session.test_faults import HERE, PLUGINS, cases, check_fault

THERE = tuple(v for v in PLUGINS if v not in HERE)


@pytest.mark.parametrize(("venue", "fault"), cases(THERE))
async def test_fault(venue: str, fault: str, autojump_clock: trio.testing.MockClock) -> None:
    await check_fault(venue, fault)
