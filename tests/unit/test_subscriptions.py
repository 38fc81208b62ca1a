"""Refused subscriptions: which refusals are transient, and the per-venue retry backoff."""

from __future__ import annotations

import pytest

from core.subscriptions import RetryQueue, is_transient

S = 1_000_000_000


@pytest.mark.parametrize(("text", "code", "transient"), [
    ("Too many visits!", None, True),
    ("rate limit exceeded", None, True),
    ("request too many, please retry later", None, True),
    ("Server busy, try again", None, True),
    ("Invalid symbol :[orderbook.50.XYZUSDT]", None, False),
    ("instType:USDT-FUTURES,channel:books,instId:X doesn't exist", 30001, False),
    ("failure to subscribe", None, False),
    ("", "30006", False),
])
def test_transient_refusals_are_told_by_the_venues_words(text: str, code: object,
                                                         transient: bool) -> None:
    assert is_transient(text, code) is transient


def test_a_venue_code_can_mark_a_refusal_transient() -> None:
    assert is_transient("request refused", 30006, codes=("30006",))
    assert not is_transient("request refused", 30001, codes=("30006",))


def test_backoff_doubles_per_refusal_is_capped_and_resets_on_success() -> None:
    q: RetryQueue[str] = RetryQueue(initial_s=1.0, max_s=4.0)
    assert q.defer("a", 0) == 1.0
    assert q.defer("b", 0) == 2.0  # per venue: the second refusal waits longer
    assert q.defer("c", 0) == 4.0
    assert q.defer("d", 0) == 4.0  # capped
    assert q.next_deadline() == 1 * S
    assert q.take_due(S) == ["a"]
    assert q.take_due(S) == []
    assert q.take_due(4 * S) == ["b", "c", "d"]
    assert len(q) == 0 and q.next_deadline() is None
    q.succeeded()
    assert q.defer("a", 10 * S) == 1.0


def test_an_item_is_queued_once_and_a_new_connection_clears_the_queue() -> None:
    q: RetryQueue[str] = RetryQueue()
    q.defer("a", 0)
    q.defer("a", 0)
    assert len(q) == 1
    q.clear()
    assert q.take_due(10**12) == []
