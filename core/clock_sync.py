"""Clock offsets of a venue, measured NTP-style against its REST server-time endpoint.

A venue's ``ts_exchange`` is stamped by the venue's clock; ``ts_local`` by ours. To put both on
one clock (the exchange-clock lead-lag run of ``analysis.spreads``) the offset between the two
clocks is needed. Each sample is one GET of the venue's server time (the protocol declares the
path, :attr:`core.protocol.ExchangeProtocol.server_time_path`, and the parser,
``parse_server_time``): sent at local time t0, answered at t1, the venue said T. Assuming the
venue read its clock half way through the round trip,

    offset = (t0 + t1) / 2 − T        round trip = t1 − t0

so that ``ts_exchange + offset`` is the venue's time on our clock; the error of one sample is at
most half its round trip (plus the venue's timestamp resolution, usually 1 ms). A *burst* takes
:data:`SAMPLES` samples one after the other; its estimate is the median offset and the median
round trip (the minimum round trip is reported too). A burst runs when a connection opens, then
every ``--clock-sync-interval`` seconds (default :data:`DEFAULT_INTERVAL_S`), and each becomes one
``clock_offset`` health row::

    offset_ms=+1.234 rtt_ms=21.500 min_rtt_ms=19.800 samples=5/5 path=/v5/market/time

(:func:`estimate_detail`; :func:`parse_detail` reads it back). A burst whose samples all failed
is a ``clock_offset`` row saying why, with no ``offset_ms``. Rows depend only on the REST
responses (each request's key names its burst, its sample and the burst size), so ``--replay``
reproduces them from the recorded responses.

:class:`ClockSampler` is the pure state machine the protocol base class drives through its
deadlines and REST seam; :func:`add_arguments` adds the command-line flag.

Pure: no I/O, no clocks, no trio.
"""

from __future__ import annotations

import argparse
import re
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from core.codec import S_NS

#: samples per burst
SAMPLES: Final = 5
#: seconds between two bursts unless ``--clock-sync-interval`` says otherwise
DEFAULT_INTERVAL_S: Final = 300.0
#: REST keys of clock samples start with this: ``clock:<burst>:<sample>:<samples>``
KEY_PREFIX: Final = "clock:"
#: bursts whose samples are still awaited (older ones are forgotten)
KEEP_BURSTS: Final = 2
MS: Final = 1e6

_DETAIL = re.compile(r"offset_ms=(?P<offset>[-+]?\d+(?:\.\d+)?) rtt_ms=(?P<rtt>\d+(?:\.\d+)?)"
                     r" min_rtt_ms=(?P<min_rtt>\d+(?:\.\d+)?) samples=(?P<ok>\d+)/(?P<n>\d+)")


@dataclass(frozen=True)
class Sample:
    sent_ns: int
    recv_ns: int
    server_ns: int

    @property
    def offset_ns(self) -> float:
        # integers first: epoch nanoseconds are beyond a float's exact range
        return (self.sent_ns + self.recv_ns - 2 * self.server_ns) / 2

    @property
    def rtt_ns(self) -> int:
        return self.recv_ns - self.sent_ns


@dataclass(frozen=True)
class Estimate:
    """One burst's result: medians over its good samples (local minus venue clock)."""

    offset_ns: float
    rtt_ns: float
    min_rtt_ns: int
    good: int
    samples: int

    @classmethod
    def of(cls, samples: list[Sample], total: int) -> Estimate:
        return cls(offset_ns=statistics.median(s.offset_ns for s in samples),
                   rtt_ns=statistics.median(s.rtt_ns for s in samples),
                   min_rtt_ns=min(s.rtt_ns for s in samples), good=len(samples),
                   samples=total)


def estimate_detail(est: Estimate, path: str) -> str:
    """The ``clock_offset`` row's detail (see the module docstring)."""
    return (f"offset_ms={est.offset_ns / MS:+.3f} rtt_ms={est.rtt_ns / MS:.3f} "
            f"min_rtt_ms={est.min_rtt_ns / MS:.3f} samples={est.good}/{est.samples} path={path}")


def parse_detail(detail: str) -> dict[str, float] | None:
    """``offset_ms``, ``rtt_ms``, ``min_rtt_ms``, ``good`` and ``samples`` of a
    ``clock_offset`` detail; None for a burst without an estimate."""
    m = _DETAIL.search(detail)
    if m is None:
        return None
    return {"offset_ms": float(m["offset"]), "rtt_ms": float(m["rtt"]),
            "min_rtt_ms": float(m["min_rtt"]), "good": float(m["ok"]),
            "samples": float(m["n"])}


def sample_key(burst: int, i: int, n: int) -> str:
    return f"{KEY_PREFIX}{burst}:{i}:{n}"


def parse_key(key: str) -> tuple[int, int, int] | None:
    """(burst, sample, samples) of a clock key, None when it is not one."""
    if not key.startswith(KEY_PREFIX):
        return None
    try:
        burst, i, n = (int(x) for x in key[len(KEY_PREFIX):].split(":"))
    except ValueError:
        return None
    return (burst, i, n) if 0 <= i < n else None


class _Burst:
    __slots__ = ("errors", "samples", "seen")

    def __init__(self) -> None:
        self.samples: list[Sample] = []
        self.errors: list[str] = []
        self.seen: set[int] = set()


class ClockSampler:
    """Bursts of server-time samples on one connection; see the module docstring.

    The protocol calls :meth:`start` when a connection opens, :meth:`begin` when
    :attr:`next_ns` is due (it returns the first request of a burst), :meth:`answer` with each
    response (it returns the next request, if any, and the burst's result once its last sample
    is in) and :meth:`stop` when the connection is lost.
    """

    def __init__(self, path: str, interval_s: float, samples: int = SAMPLES) -> None:
        if interval_s <= 0 or samples < 1:
            raise ValueError("a clock sampler needs a positive interval and at least one sample")
        self.path = path
        self.interval_ns = int(interval_s * S_NS)
        self.samples = samples
        #: when the next burst is due (ns), None while one runs or without a connection
        self.next_ns: int | None = None
        self._burst = 0
        self._open: dict[int, _Burst] = {}

    def start(self, now_ns: int) -> None:
        self.next_ns = now_ns

    def stop(self) -> None:
        self.next_ns = None
        self._open.clear()

    def begin(self, now_ns: int) -> tuple[str, str]:
        """Start a burst: the key and path of its first request."""
        self._burst += 1
        self.next_ns = None
        self._open[self._burst] = _Burst()
        for old in [b for b in self._open if b <= self._burst - KEEP_BURSTS]:
            del self._open[old]
        return sample_key(self._burst, 0, self.samples), self.path

    def answer(self, key: str, sent_ns: int, recv_ns: int, server_ns: int | None,
               error: str | None) -> tuple[tuple[str, str] | None, Estimate | list[str] | None]:
        """One response: ``server_ns`` is the venue's time it carried (None: the sample failed,
        ``error`` says why). Returns (the next request or None, the burst's result when this was
        its last sample: an :class:`Estimate`, or the reasons every sample failed)."""
        parsed = parse_key(key)
        if parsed is None:
            return None, None
        burst_id, i, n = parsed
        burst = self._open.get(burst_id)
        if burst is None:  # a burst not started here (a replay with other settings): take it
            burst = self._open[burst_id] = _Burst()
        if i in burst.seen:
            return None, None
        burst.seen.add(i)
        if server_ns is not None and recv_ns >= sent_ns:
            burst.samples.append(Sample(sent_ns, recv_ns, server_ns))
        else:
            burst.errors.append(error or "no server time")
        if i + 1 < n:
            return (sample_key(burst_id, i + 1, n), self.path), None
        del self._open[burst_id]
        if burst_id == self._burst and self.next_ns is None:
            self.next_ns = recv_ns + self.interval_ns
        if burst.samples:
            return None, Estimate.of(burst.samples, n)
        return None, burst.errors


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--clock-sync-interval`` (documented in ``docs/cli.md``)."""
    parser.add_argument("--clock-sync-interval", type=float, default=DEFAULT_INTERVAL_S,
                        metavar="SECONDS",
                        help="measure each venue's clock offset against its REST server time "
                             "when a connection opens and then this often; 0 turns it off "
                             f"(default: {DEFAULT_INTERVAL_S:g}; clock_offset health rows)")


def check_interval(value: float) -> list[str]:
    """Why ``--clock-sync-interval`` is unusable (empty when it is fine)."""
    if value == 0 or (value >= 1 and value != float("inf")):
        return []
    return [f"--clock-sync-interval must be 0 (off) or at least 1 second, not {value:g}"]


ParseTime = Callable[[bytes], int]

__all__ = ["DEFAULT_INTERVAL_S", "KEY_PREFIX", "SAMPLES", "ClockSampler", "Estimate", "Sample",
           "add_arguments", "check_interval", "estimate_detail", "parse_detail", "parse_key",
           "sample_key"]
