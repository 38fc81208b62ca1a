"""The ``funding`` channel's common part: checked wire types, and one state per symbol that turns
whatever a venue sends (whole tickers, partial deltas, separate funding / mark / open-interest
pushes, polled REST answers) into :class:`core.schema.Funding` rows, one whenever one of the six
values changed.

A venue plugin decodes its messages with the checked types below (msgspec checks them in C, like
the :mod:`core.codec` types) and hands the values it got to :meth:`FundingTracker.update`, naming
only the fields the message carried: the others keep their last value, so a partial delta is
merged into the last full state before a row is written. :meth:`FundingTracker.update` checks
every value once more (a plugin that bypassed the wire types cannot write a row no column can
hold): a funding rate must be finite and within ±:data:`MAX_FUNDING_RATE` per interval, prices
finite and positive, open interest finite and non-negative, the interval a whole number of
seconds between one minute and a week, the funding time inside the sane timestamp window.
Anything else raises :class:`core.codec.BadValue`, which the protocol base class turns into that
frame's counted ``decode_error``.

:func:`next_on_grid` rolls a funding time known from the instrument list (which may be hours
old) forward by whole intervals, for venues whose pushes carry no funding time.

Pure: no I/O, no clocks, no trio.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Annotated, Final

import msgspec

from core.codec import MIN_TS_NS, S_NS, BadValue, check_ts_ns
from core.schema import Event, Funding

#: the largest funding rate per interval a row may hold (100 %: beyond it, it is not a rate)
MAX_FUNDING_RATE: Final = 1.0
MIN_INTERVAL_S: Final = 60
MAX_INTERVAL_S: Final = 7 * 86_400

#: a funding rate per interval, as a fraction
FundingRate = Annotated[float, msgspec.Meta(ge=-MAX_FUNDING_RATE, le=MAX_FUNDING_RATE)]
#: a funding interval in hours, minutes or seconds (venues differ)
IntervalHours = Annotated[int, msgspec.Meta(ge=1, le=MAX_INTERVAL_S // 3600)]
IntervalMinutes = Annotated[int, msgspec.Meta(ge=1, le=MAX_INTERVAL_S // 60)]
IntervalSeconds = Annotated[int, msgspec.Meta(ge=MIN_INTERVAL_S, le=MAX_INTERVAL_S)]

FIELDS: Final = ("funding_rate", "funding_interval_s", "next_funding_time", "mark_px",
                 "index_px", "open_interest")
Values = tuple[float | None, int | None, int | None, float | None, float | None, float | None]
_EMPTY: Final[Values] = (None, None, None, None, None, None)


def check_rate(value: float) -> float:
    if not -MAX_FUNDING_RATE <= value <= MAX_FUNDING_RATE:  # NaN fails both comparisons
        raise BadValue(f"funding rate {value!r} is not a rate per interval")
    return float(value)


def check_interval(value: int) -> int:
    if type(value) is not int or not MIN_INTERVAL_S <= value <= MAX_INTERVAL_S:
        raise BadValue(f"funding interval {value!r} s is outside {MIN_INTERVAL_S}.."
                       f"{MAX_INTERVAL_S} s")
    return value


def check_positive(name: str, value: float) -> float:
    if not 0.0 < value < math.inf:
        raise BadValue(f"{name} {value!r} is not a finite positive price")
    return float(value)


def check_open_interest(value: float) -> float:
    if not 0.0 <= value < math.inf:
        raise BadValue(f"open interest {value!r} is not a finite non-negative size")
    return float(value)


_CHECKS: Final = (check_rate, check_interval, check_ts_ns,
                  lambda v: check_positive("mark price", v),
                  lambda v: check_positive("index price", v), check_open_interest)


def next_on_grid(anchor_ns: int, interval_s: int, now_ns: int) -> int:
    """The first funding time after ``now_ns`` on the grid ``anchor_ns + k * interval_s``."""
    step = interval_s * S_NS
    if anchor_ns > now_ns:
        return anchor_ns
    return anchor_ns + ((now_ns - anchor_ns) // step + 1) * step


class FundingTracker:
    """The latest funding values of each symbol of one venue; a row when one changed.

    ``update(symbol, ts_local, ts_exchange, funding_rate=..., mark_px=..., ...)`` merges the
    named fields (a ``None`` value clears a field: the venue says it has none) and returns the
    :class:`Funding` row to publish, or nothing when every value is as before.
    """

    __slots__ = ("_last", "exchange")

    def __init__(self, exchange: str) -> None:
        self.exchange = exchange
        self._last: dict[str, Values] = {}

    def values(self, symbol: str) -> Mapping[str, object]:
        """The merged state of ``symbol`` (every field, ``None`` where unknown)."""
        return dict(zip(FIELDS, self._last.get(symbol, _EMPTY), strict=True))

    def update(self, symbol: str, ts_local: int, ts_exchange: int | None,
               **fields: float | int | None) -> list[Event]:
        old = self._last.get(symbol, _EMPTY)
        new = list(old)
        for name, value in fields.items():
            try:
                i = FIELDS.index(name)
            except ValueError:
                raise TypeError(f"unknown funding field {name!r}") from None
            new[i] = None if value is None else _CHECKS[i](value)  # type: ignore[arg-type]
        if ts_exchange is not None and ts_exchange < MIN_TS_NS:
            raise BadValue(f"exchange time {ts_exchange} ns is before 2000")
        values: Values = tuple(new)  # type: ignore[assignment]
        if values == old:
            return []
        self._last[symbol] = values
        rate, interval, nxt, mark, index, oi = values
        return [Funding(exchange=self.exchange, ts_local=ts_local, symbol=symbol,
                        ts_exchange=ts_exchange, funding_rate=rate, funding_interval_s=interval,
                        next_funding_time=nxt, mark_px=mark, index_px=index, open_interest=oi)]


__all__ = ["FIELDS", "MAX_FUNDING_RATE", "FundingRate", "FundingTracker", "IntervalHours",
           "IntervalMinutes", "IntervalSeconds", "check_interval", "check_open_interest",
           "check_positive", "check_rate", "next_on_grid"]
