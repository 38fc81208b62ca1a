"""Rounds of REST GETs every few seconds, for values a venue does not stream (HTX's funding,
mark and index prices and open interest, Binance's open interest).

A :class:`RestPoller` is the pure schedule a venue protocol keeps next to its websocket state:
when a connection opens it is due at once (:meth:`start`); when :attr:`next_ns` is due the
protocol calls :meth:`begin` with the round's calls and queues what it returns through
:meth:`core.protocol.ExchangeProtocol.request_rest`; each response goes through
:meth:`answered`, which hands back the next calls. At most ``max_in_flight`` calls of a round are
out at once (the rest wait in the poller, so the session's queue of REST calls stays small
whatever the number of symbols), and rounds never overlap: the next one starts ``period_s`` after
the previous one *started*, or as soon as it ended when it took longer than that. When the
connection ends, :meth:`stop` forgets the round (its calls are cancelled with the connection).

Keys are ``poll:<round>:<name>``; :func:`parse_key` splits them, so a protocol can group the
answers of one round without asking the poller (a replay feeds recorded answers back in order).

Pure: no I/O, no clocks, no trio.
"""

from __future__ import annotations

from collections import deque
from typing import Final

from core.codec import S_NS

KEY_PREFIX: Final = "poll:"

Call = tuple[str, str]  # (name, path)


def parse_key(key: str) -> tuple[int, str] | None:
    """(round, name) of a poll key, None when it is not one."""
    if not key.startswith(KEY_PREFIX):
        return None
    number, sep, name = key[len(KEY_PREFIX):].partition(":")
    if not sep or not number.isdigit():
        return None
    return int(number), name


class RestPoller:
    """One venue connection's polling rounds; see the module docstring."""

    def __init__(self, period_s: float, max_in_flight: int = 2) -> None:
        if period_s <= 0 or max_in_flight < 1:
            raise ValueError("a poller needs a positive period and at least one call in flight")
        self.period_ns = int(period_s * S_NS)
        self.max_in_flight = max_in_flight
        #: when the next round is due (ns); None while one runs or without a connection
        self.next_ns: int | None = None
        self.round = 0
        self._started_ns = 0
        self._waiting: deque[Call] = deque()
        self._out: set[str] = set()

    def start(self, now_ns: int) -> None:
        self.next_ns = now_ns

    def stop(self) -> None:
        self.next_ns = None
        self._waiting.clear()
        self._out.clear()

    def begin(self, now_ns: int, calls: list[Call]) -> list[Call]:
        """Start a round of ``calls`` (name, path); returns the (key, path) pairs to request
        now."""
        self.round += 1
        self._started_ns = now_ns
        self.next_ns = None
        self._waiting = deque((f"{KEY_PREFIX}{self.round}:{name}", path) for name, path in calls)
        self._out = set()
        if not self._waiting:
            self.next_ns = now_ns + self.period_ns
        return self._release()

    def answered(self, key: str, now_ns: int) -> list[Call]:
        """A call came back (answered or failed): the (key, path) pairs to request next."""
        if key not in self._out:
            return []  # a call of an earlier connection or round
        self._out.discard(key)
        out = self._release()
        if not self._out and not self._waiting and self.next_ns is None:
            self.next_ns = max(self._started_ns + self.period_ns, now_ns)
        return out

    def _release(self) -> list[Call]:
        out: list[Call] = []
        while self._waiting and len(self._out) < self.max_in_flight:
            key, path = self._waiting.popleft()
            self._out.add(key)
            out.append((key, path))
        return out


__all__ = ["KEY_PREFIX", "RestPoller", "parse_key"]
