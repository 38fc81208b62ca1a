"""Reference price and shortened book of the queue-reactive model, for any venue, live or offline.

The reference price p_ref is kept in **half-tick integers** P (price = P · tick / 2), from the best
bid b and best ask a in integer ticks:

* spread s = a − b odd: P = a + b (the mid, which sits on a half tick, so P is odd);
* s even: the mid is a legal price, and P is whichever of a + b − 1 and a + b + 1 is closer to the
  previous P. The previous P is odd and never equals the even a + b, so there is never a tie;
* start-up: no P exists until the first book with an odd spread;
* a crossed (b > a) or locked (b == a) book has no reference price: it is rejected and the previous
  P is kept.

The shortened book is the 2K queues around P: Q_{+i} (ask) at p_ref + (i − ½)·tick and Q_{−i}
(bid) at p_ref − (i − ½)·tick, i = 1..K. Empty limits have size 0 (an empty Q_{±1} is a real state,
not missing data). The tick size comes from the venue's product metadata and is passed in.

Works from a :class:`core.book.OrderBook` (float prices) or from plain price/size sequences.
Pure: no trio, no numpy, no I/O, no clock reads.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from core.book import OrderBook

__all__ = [
    "CrossedBook",
    "RefPriceTracker",
    "ShortBook",
    "level_index",
    "level_price_half",
    "ref_half_series",
    "ref_half_ticks",
    "short_book",
    "short_book_from_levels",
    "short_book_from_order_book",
    "to_ticks",
]


class CrossedBook(ValueError):
    """The best bid is at or above the best ask: no reference price exists."""


def to_ticks(price: float, tick: float) -> int:
    """Price in integer ticks (nearest integer, so float noise such as 438.51/0.01 is harmless)."""
    if tick <= 0:
        raise ValueError(f"tick must be positive, got {tick}")
    return round(price / tick)


def ref_half_ticks(bid: int, ask: int, prev: int | None) -> int | None:
    """The reference price in half ticks from best bid/ask in ticks and the previous reference.

    Returns None at start-up (no previous reference and an even spread). Raises
    :class:`CrossedBook` when ``ask <= bid``.
    """
    spread = ask - bid
    if spread <= 0:
        raise CrossedBook(f"best bid {bid} >= best ask {ask} (ticks)")
    mid2 = ask + bid
    if spread % 2 == 1:
        return mid2
    if prev is None:
        return None
    return mid2 - 1 if prev < mid2 else mid2 + 1


def ref_half_series(bids: Iterable[int | None], asks: Iterable[int | None],
                    prev: int | None = None) -> list[int | None]:
    """Apply :func:`ref_half_ticks` along a sequence of best bid/ask ticks.

    An entry is None before start-up; a crossed/locked book or a missing side keeps the previous
    reference (the rejected state does not change it).
    """
    out: list[int | None] = []
    for b, a in zip(bids, asks, strict=True):
        if b is not None and a is not None and a > b:
            prev = ref_half_ticks(b, a, prev)
        out.append(prev)
    return out


def level_price_half(ref_half: int, i: int) -> int:
    """Price of queue ``i`` (±1..±K) in half ticks; always even (a legal tick)."""
    if i == 0:
        raise ValueError("level 0 does not exist")
    return ref_half + 2 * i - 1 if i > 0 else ref_half + 2 * i + 1


def level_index(side: str, price_ticks: int, ref_half: int) -> int | None:
    """Signed queue index of a price on one side relative to P; None when the price is on the
    wrong side of p_ref (a bid at or above p_ref, an ask at or below it)."""
    if side == "ask":
        i = (2 * price_ticks - ref_half + 1) // 2
        return i if i >= 1 else None
    if side == "bid":
        i = -((ref_half - 2 * price_ticks + 1) // 2)
        return i if i <= -1 else None
    raise ValueError(f"side must be 'bid' or 'ask', got {side!r}")


@dataclass(frozen=True, slots=True)
class ShortBook:
    """The 2K queues around one reference price.

    ``bids[j]`` is Q_{−(j+1)} and ``asks[j]`` is Q_{j+1}, in the caller's size units.
    """

    ref_half: int
    tick: float
    bids: tuple[float, ...]
    asks: tuple[float, ...]

    @property
    def k(self) -> int:
        return len(self.asks)

    @property
    def ref_price(self) -> float:
        return self.ref_half * self.tick / 2

    def level_price(self, i: int) -> float:
        return level_price_half(self.ref_half, i) * self.tick / 2

    def size(self, i: int) -> float:
        if i > 0:
            return self.asks[i - 1]
        if i < 0:
            return self.bids[-i - 1]
        raise ValueError("level 0 does not exist")

    def levels(self) -> list[int]:
        """Indices −K..−1, 1..K in price order."""
        return [*range(-self.k, 0), *range(1, self.k + 1)]

    def as_dict(self) -> dict[int, float]:
        return {i: self.size(i) for i in self.levels()}


def short_book(ref_half: int, bids: Mapping[int, float], asks: Mapping[int, float], k: int,
               tick: float) -> ShortBook:
    """Shortened book from full books keyed by integer ticks."""
    b = tuple(bids.get((ref_half - 2 * j + 1) // 2, 0.0) for j in range(1, k + 1))
    a = tuple(asks.get((ref_half + 2 * j - 1) // 2, 0.0) for j in range(1, k + 1))
    return ShortBook(ref_half, tick, b, a)


def short_book_from_levels(bid_px: Sequence[float], bid_sz: Sequence[float],
                           ask_px: Sequence[float], ask_sz: Sequence[float], tick: float, k: int,
                           prev_half: int | None = None) -> ShortBook | None:
    """Shortened book from plain price/size arrays (any order, zero sizes ignored).

    Returns None when there is no reference price yet (start-up with an even spread, or an empty
    side); raises :class:`CrossedBook` for a crossed or locked book.
    """
    bids = {to_ticks(p, tick): s for p, s in zip(bid_px, bid_sz, strict=True) if s > 0}
    asks = {to_ticks(p, tick): s for p, s in zip(ask_px, ask_sz, strict=True) if s > 0}
    if not bids or not asks:
        return None
    ref = ref_half_ticks(max(bids), min(asks), prev_half)
    return None if ref is None else short_book(ref, bids, asks, k, tick)


def short_book_from_order_book(book: OrderBook, tick: float, k: int,
                               prev_half: int | None = None) -> ShortBook | None:
    """Shortened book of a :class:`core.book.OrderBook`; same conventions as
    :func:`short_book_from_levels`.

    Only the best K levels per side are read: every bid is below p_ref and the K bid queues are
    the K ticks just below it, so the non-empty ones are all among the best K bids.
    """
    top_b = book.top_bids(k)
    top_a = book.top_asks(k)
    if not top_b or not top_a:
        return None
    bids = {to_ticks(p, tick): s for p, s in top_b}
    asks = {to_ticks(p, tick): s for p, s in top_a}
    ref = ref_half_ticks(to_ticks(top_b[0][0], tick), to_ticks(top_a[0][0], tick), prev_half)
    return None if ref is None else short_book(ref, bids, asks, k, tick)


class RefPriceTracker:
    """Stateful reference price for a live or replayed book.

    ``update`` takes the best bid/ask (ticks) after each book change and returns the current P
    (None before start-up). Crossed/locked books and books with an empty side are rejected: they
    are counted and leave P unchanged.
    """

    __slots__ = ("crossed", "one_sided", "ref_half", "tick")

    def __init__(self, tick: float, ref_half: int | None = None) -> None:
        if tick <= 0:
            raise ValueError(f"tick must be positive, got {tick}")
        self.tick = tick
        self.ref_half = ref_half
        self.crossed = 0
        self.one_sided = 0

    def update(self, bid: int | None, ask: int | None) -> int | None:
        if bid is None or ask is None:
            self.one_sided += 1
            return self.ref_half
        if ask <= bid:
            self.crossed += 1
            return self.ref_half
        self.ref_half = ref_half_ticks(bid, ask, self.ref_half)
        return self.ref_half

    def update_prices(self, bid_px: float | None, ask_px: float | None) -> int | None:
        return self.update(None if bid_px is None else to_ticks(bid_px, self.tick),
                           None if ask_px is None else to_ticks(ask_px, self.tick))

    def update_from_book(self, book: OrderBook, k: int) -> ShortBook | None:
        """Update from a book and return its shortened view (None before start-up or while the
        book is crossed/one-sided)."""
        bb, ba = book.best_bid(), book.best_ask()
        if bb is None or ba is None:
            self.one_sided += 1
            return None
        b, a = to_ticks(bb[0], self.tick), to_ticks(ba[0], self.tick)
        if a <= b:
            self.crossed += 1
            return None
        ref = self.update(b, a)
        if ref is None:
            return None
        bids = {to_ticks(p, self.tick): s for p, s in book.top_bids(k)}
        asks = {to_ticks(p, self.tick): s for p, s in book.top_asks(k)}
        return short_book(ref, bids, asks, k, self.tick)

    @property
    def ref_price(self) -> float | None:
        return None if self.ref_half is None else self.ref_half * self.tick / 2
