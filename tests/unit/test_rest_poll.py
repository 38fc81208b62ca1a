"""REST polling rounds: bounded calls in flight, rounds that never overlap, a period counted from
the start of a round."""

from __future__ import annotations

from core.codec import S_NS
from core.rest_poll import RestPoller, parse_key

T0 = 1_786_310_818_000_000_000


def test_a_round_releases_calls_as_answers_come_back() -> None:
    poller = RestPoller(5.0, max_in_flight=2)
    poller.start(T0)
    assert poller.next_ns == T0
    calls = [(f"c{i}:BTC-USDT", f"/path/{i}") for i in range(5)]
    out = poller.begin(T0, calls)
    assert out == [("poll:1:c0:BTC-USDT", "/path/0"), ("poll:1:c1:BTC-USDT", "/path/1")]
    assert poller.next_ns is None
    assert parse_key(out[0][0]) == (1, "c0:BTC-USDT")
    assert poller.answered("poll:1:c0:BTC-USDT", T0 + 1) == [("poll:1:c2:BTC-USDT", "/path/2")]
    assert poller.answered("poll:1:c0:BTC-USDT", T0 + 1) == []  # a repeat is ignored
    assert poller.answered("poll:1:c1:BTC-USDT", T0 + 2) == [("poll:1:c3:BTC-USDT", "/path/3")]
    assert poller.answered("poll:1:c2:BTC-USDT", T0 + 3) == [("poll:1:c4:BTC-USDT", "/path/4")]
    assert poller.answered("poll:1:c3:BTC-USDT", T0 + 4) == []
    assert poller.next_ns is None
    assert poller.answered("poll:1:c4:BTC-USDT", T0 + 5) == []
    assert poller.next_ns == T0 + 5 * S_NS  # five seconds after the round started


def test_a_slow_round_starts_the_next_one_when_it_ends_and_stop_forgets_it() -> None:
    poller = RestPoller(1.0, max_in_flight=1)
    poller.start(T0)
    [(key, _)] = poller.begin(T0, [("a:X", "/a")])
    late = T0 + 3 * S_NS
    poller.answered(key, late)
    assert poller.next_ns == late
    [(key, _)] = poller.begin(late, [("a:X", "/a")])
    assert parse_key(key) == (2, "a:X")
    poller.stop()
    assert poller.next_ns is None
    assert poller.answered(key, late + 1) == []
    assert parse_key("depth:BTC-USDT:3") is None and parse_key("poll:x:y") is None
