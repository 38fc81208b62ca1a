"""Refused subscriptions: which refusals are worth retrying, and when (for venue protocols).

A venue refuses a subscription either for good (an unknown symbol, a bad channel: asking again
cannot help) or for now ("too many requests", a rate limit, "try again later"). Plugins record
the first kind as a ``subscribe_error`` row and never ask again; the second kind is a
``subscribe_retry`` row and goes into a :class:`RetryQueue`, which hands the request back after a
capped exponential backoff. The backoff is per venue (one queue per protocol object): a venue
that says "too many requests" to one subscription says it about the connection, so every retry
slows down together, and a subscription that goes through resets it.

:func:`is_transient` reads the venue's own words; plugins that know their venue's error codes
pass them too (``codes``).

Pure: no trio, no clock reads; deadlines are ns on the protocol's clock.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final, Generic, TypeVar

from core.codec import S_NS
from core.schema import HealthKind

#: health event: a subscription refused for a transient reason; it is retried
SUBSCRIBE_RETRY: Final = HealthKind.SUBSCRIBE_RETRY

RETRY_INITIAL_S: Final = 1.0
RETRY_MAX_S: Final = 60.0

# Words venues use when a refusal is about load or rate, not about the request itself.
TRANSIENT_WORDS: Final = (
    "too many", "too frequent", "rate limit", "ratelimit", "rate-limit", "limit exceeded",
    "try again", "retry", "busy", "overload", "throttl", "temporar", "timeout", "timed out",
    "unavailable", "please wait",
)

T = TypeVar("T")


def is_transient(text: str | None, code: object = None,
                 codes: Iterable[object] = ()) -> bool:
    """Whether a refusal (the venue's message, and its code if it has one) is worth retrying."""
    if code is not None and str(code) in {str(c) for c in codes}:
        return True
    lowered = (text or "").lower()
    return any(word in lowered for word in TRANSIENT_WORDS)


class RetryQueue(Generic[T]):
    """Requests refused for a transient reason, handed back when their delay is over."""

    def __init__(self, initial_s: float = RETRY_INITIAL_S, max_s: float = RETRY_MAX_S) -> None:
        self.initial_s = initial_s
        self.max_s = max_s
        self.failures = 0  # consecutive transient refusals on this venue
        self._due: list[tuple[int, T]] = []

    def defer(self, item: T, now_ns: int) -> float:
        """Queue ``item`` for a retry; return the delay in seconds (it doubles per refusal)."""
        delay = min(self.max_s, self.initial_s * 2.0 ** min(self.failures, 30))
        self.failures += 1
        if all(existing != item for _, existing in self._due):
            self._due.append((now_ns + int(delay * S_NS), item))
        return delay

    def succeeded(self) -> None:
        """A subscription went through: the venue is taking requests again."""
        self.failures = 0

    def next_deadline(self) -> int | None:
        return min(t for t, _ in self._due) if self._due else None

    def take_due(self, now_ns: int) -> list[T]:
        """The requests whose delay is over, oldest first."""
        if not self._due:
            return []
        due = [item for t, item in self._due if t <= now_ns]
        if due:
            self._due = [(t, item) for t, item in self._due if t > now_ns]
        return due

    def clear(self) -> None:
        """The connection is gone; a new one resubscribes everything anyway."""
        self._due.clear()

    def __len__(self) -> int:
        return len(self._due)
