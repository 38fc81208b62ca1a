"""The funding channel's common part: partial updates merged into one state per symbol, a row
only when a value changed, every value checked before it can become a row."""

from __future__ import annotations

import math

import pytest

from core.codec import S_NS, BadValue
from core.funding import FundingTracker, next_on_grid
from core.schema import Funding

T0 = 1_786_310_818_000_000_000
NEXT = 1_786_320_000_000_000_000


def test_fields_merge_and_a_row_comes_only_when_one_changed() -> None:
    t = FundingTracker("venue")
    [row] = t.update("BTC-USDT", T0, T0 - 5, funding_rate=0.0001, next_funding_time=NEXT,
                     mark_px=100.5)
    assert row == Funding(exchange="venue", ts_local=T0, symbol="BTC-USDT", ts_exchange=T0 - 5,
                          funding_rate=0.0001, funding_interval_s=None, next_funding_time=NEXT,
                          mark_px=100.5, index_px=None, open_interest=None)
    # a message carrying only the mark price: the other values stay
    [row] = t.update("BTC-USDT", T0 + 1, None, mark_px=100.25)
    assert (row.funding_rate, row.next_funding_time, row.mark_px) == (0.0001, NEXT, 100.25)
    # the same values again, with another exchange time: no row
    assert t.update("BTC-USDT", T0 + 2, T0 + 2, mark_px=100.25, funding_rate=0.0001) == []
    # an explicit None clears a value: that is a change
    [row] = t.update("BTC-USDT", T0 + 3, None, mark_px=None)
    assert row.mark_px is None and row.funding_rate == 0.0001
    # symbols are independent
    [eth] = t.update("ETH-USDT", T0 + 4, None, open_interest=12.5)
    assert (eth.symbol, eth.open_interest, eth.funding_rate) == ("ETH-USDT", 12.5, None)
    assert t.values("BTC-USDT")["next_funding_time"] == NEXT


@pytest.mark.parametrize(("field", "value"), [
    ("funding_rate", math.nan), ("funding_rate", math.inf), ("funding_rate", 1.5),
    ("funding_rate", -1.01), ("mark_px", 0.0), ("mark_px", -1.0), ("mark_px", math.inf),
    ("index_px", math.nan), ("open_interest", -0.1), ("open_interest", math.inf),
    ("funding_interval_s", 0), ("funding_interval_s", 59), ("funding_interval_s", 8 * 86_400),
    ("funding_interval_s", 3600.0), ("next_funding_time", 5), ("next_funding_time", 2**62),
])
def test_values_no_column_may_hold_are_refused_and_leave_the_state_alone(
        field: str, value: float) -> None:
    t = FundingTracker("venue")
    t.update("BTC-USDT", T0, None, funding_rate=0.0001, mark_px=100.0)
    before = dict(t.values("BTC-USDT"))
    with pytest.raises(BadValue):
        t.update("BTC-USDT", T0 + 1, None, **{field: value})
    assert dict(t.values("BTC-USDT")) == before


def test_an_unknown_field_is_a_plugin_bug() -> None:
    with pytest.raises(TypeError, match="unknown funding field"):
        FundingTracker("venue").update("BTC-USDT", T0, None, funding=0.1)


def test_next_on_grid_rolls_a_known_funding_time_forward_by_whole_intervals() -> None:
    anchor = NEXT
    hour = 3600
    assert next_on_grid(anchor, 8 * hour, anchor - 1) == anchor
    assert next_on_grid(anchor, 8 * hour, anchor) == anchor + 8 * hour * S_NS
    assert next_on_grid(anchor, 8 * hour, anchor + 20 * hour * S_NS) == \
        anchor + 24 * hour * S_NS
