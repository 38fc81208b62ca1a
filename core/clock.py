"""Time sources for sessions: the wall clock that stamps ``ts_local``.

Venue protocols never read a clock; the session passes them ``now_ns`` from one of these. Their
deadlines are on the same clock, and the session turns "deadline - now" into a trio sleep.

* :class:`WallClock` (production): ``time.time_ns()``, UTC nanoseconds.
* :class:`TrioClock` (tests): wall time at construction plus elapsed *trio* time, so that under
  ``autojump_clock`` every timer-driven behaviour runs in virtual time and stays consistent.
"""

from __future__ import annotations

import time
from typing import Protocol

import trio


class Clock(Protocol):
    def now_ns(self) -> int: ...


class WallClock:
    def now_ns(self) -> int:
        return time.time_ns()


class TrioClock:
    """Must be created inside ``trio.run``."""

    def __init__(self, start_ns: int | None = None) -> None:
        self._base_ns = time.time_ns() if start_ns is None else start_ns
        self._base_trio = trio.current_time()

    def now_ns(self) -> int:
        return self._base_ns + int((trio.current_time() - self._base_trio) * 1e9)
