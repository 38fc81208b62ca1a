"""The seeded market simulator: coherent books for one symbol on several venues.

Per symbol, a **fair price** moves as a geometric random walk on a 100 ms grid (volatility
``vol_bps`` per square-root second); every venue quotes around it, so cross-venue spreads look
real. Per venue, a **dislocation** process now and then (every ``dislocation_every_s`` on
average) shifts that venue's target price by a few basis points for a few seconds, ramping in and
out: the occasional cross-venue opportunity.

Per (venue, symbol), a :class:`BookSimulator` makes one book event at a time, at Poisson times of
rate ``events_per_s``. The event is drawn with queue-reactive intensities in the spirit of Huang,
Lehalle and Rosenbaum, *Simulating and analyzing order book data: the queue-reactive model*
(JASA 110(509), 2015): at each of the ``active_levels`` best limits of each side, insertions
arrive at a rate that falls as the queue (in units of the average event size) grows,
cancellations at a rate proportional to the queue, and market orders hit the best queues. The
market-order intensity leans towards the fair price, and when the book lags the fair price by
more than a tick or two it *requotes*: the stale side is taken out by market orders (trades) and
the other side steps up, in one venue message, as real books do after a move. Deeper levels get
an occasional size change and the book is refilled to ``depth`` levels per side.

Every random draw comes from a ``random.Random`` seeded by ``(seed, venue, symbol)`` (or
``(seed, symbol)`` for the fair price): the same seed gives the same events, whatever the order in
which books are advanced. Pure: no trio, no clock reads, no I/O.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal

from core.codec import S_NS
from core.sim.market import (
    BookChange,
    Listing,
    Market,
    MarketEvent,
    Side,
    TradePrint,
    TrueBook,
)

FAIR_STEP_NS = 100_000_000  # the fair price moves on a 100 ms grid
DISLOCATION_RAMP_NS = 500_000_000
REQUOTE_TRADED_LEVELS = 2  # a requote trades at most this many stale levels; the rest cancel

#: (reference price, typical size of one book level in base units) of well-known bases; any
#: other base starts at 100 with levels worth about 20,000 quote units
PRESETS: dict[str, tuple[float, float]] = {
    "BTC": (65_000.0, 0.4), "ETH": (3_400.0, 6.0), "SOL": (150.0, 100.0), "XRP": (0.6, 20_000.0),
    "DOGE": (0.15, 100_000.0), "ETC": (25.0, 600.0), "LTC": (80.0, 200.0), "BNB": (600.0, 25.0),
    "ADA": (0.45, 40_000.0), "AVAX": (35.0, 500.0), "LINK": (15.0, 1_000.0),
}
DEFAULT_EVENTS_PER_S = 20.0
DEFAULT_PRICE = 100.0
DEFAULT_LEVEL_NOTIONAL = 20_000.0


def reference(symbol: str) -> tuple[float, float]:
    """(start price, typical level size in base units) of a canonical ``BASE-QUOTE``."""
    base = symbol.split("-", 1)[0]
    if base in PRESETS:
        return PRESETS[base]
    return DEFAULT_PRICE, DEFAULT_LEVEL_NOTIONAL / DEFAULT_PRICE


def power_of_ten(x: float) -> Decimal:
    """The power of ten at or below ``x`` (> 0), exactly: 0.0015 -> Decimal('0.001')."""
    return Decimal(1).scaleb(math.floor(math.log10(x)))


@dataclass(frozen=True, slots=True)
class SimParams:
    """Knobs of the simulator; the defaults give a liquid perpetual's look at a readable rate."""

    seed: int = 1
    events_per_s: float = DEFAULT_EVENTS_PER_S  # book events per (venue, symbol)
    vol_bps: float = 0.3  # fair-price volatility, bps per sqrt(second)
    depth: int = 40  # levels kept per side
    active_levels: int = 5  # limits with queue-reactive dynamics
    dislocation_every_s: float = 120.0  # mean time between one venue's dislocations
    dislocation_bps: float = 5.0  # typical size of a dislocation
    dislocation_s: float = 4.0  # typical duration (ramps in and out over 0.5 s)


class FairPrice:
    """A symbol's fair price: a geometric random walk on a fixed grid, deterministic per seed."""

    def __init__(self, price: float, start_ns: int, vol_bps: float, rng: random.Random) -> None:
        self.price = price
        self.t_ns = start_ns
        self.rng = rng
        self.sigma = vol_bps * 1e-4 * math.sqrt(FAIR_STEP_NS / S_NS)

    def at(self, t_ns: int) -> float:
        while self.t_ns + FAIR_STEP_NS <= t_ns:
            self.t_ns += FAIR_STEP_NS
            self.price *= math.exp(self.rng.gauss(0.0, self.sigma))
        return self.price


class Dislocation:
    """Now and then, one venue's quotes drift a few bps away from the others for a while."""

    def __init__(self, params: SimParams, start_ns: int, rng: random.Random) -> None:
        self.params = params
        self.rng = rng
        self.start = start_ns + self._gap()
        self.end = self.start + self._length()
        self.bps = self._size()

    def _gap(self) -> int:
        return int(self.rng.expovariate(1.0 / self.params.dislocation_every_s) * S_NS)

    def _length(self) -> int:
        return int(self.rng.uniform(0.5, 1.5) * self.params.dislocation_s * S_NS)

    def _size(self) -> float:
        sign = self.rng.choice((-1.0, 1.0))
        return sign * self.rng.uniform(0.5, 1.5) * self.params.dislocation_bps

    def at(self, t_ns: int) -> float:
        while t_ns >= self.end:
            self.start = self.end + self._gap()
            self.end = self.start + self._length()
            self.bps = self._size()
        if t_ns < self.start:
            return 0.0
        ramp = min(t_ns - self.start, self.end - t_ns) / DISLOCATION_RAMP_NS
        return self.bps * min(1.0, ramp)


@dataclass
class BookSimulator:
    """One venue's book of one symbol; a :class:`core.sim.market.Process` of the market."""

    listing: Listing
    fair: FairPrice
    params: SimParams
    start_ns: int
    level_lots: int  # the average event size (AES), in lots
    rng: random.Random = field(default_factory=random.Random)
    dislocation: Dislocation | None = None
    _next: int = 0

    def __post_init__(self) -> None:
        self._next = self.start_ns + self._wait()

    def _wait(self) -> int:
        return max(1, int(self.rng.expovariate(self.params.events_per_s) * S_NS))

    def next_ns(self) -> int | None:
        return self._next

    # -- set-up ------------------------------------------------------------------------------

    def seed_book(self, market: Market) -> None:
        """Fill the book around the fair price (before any client is connected)."""
        f = self._target_ticks(self.start_ns)
        best_bid = math.floor(f - 0.5)
        bids = [(best_bid - i, self._size(1.0 + i / 8)) for i in range(self.params.depth)]
        asks = [(best_bid + 1 + i, self._size(1.0 + i / 8)) for i in range(self.params.depth)]
        market.load(self.listing.venue, self.listing.symbol, bids, asks)

    # -- the process ---------------------------------------------------------------------------

    def fire(self, market: Market, now_ns: int) -> list[MarketEvent]:
        self._next = now_ns + self._wait()
        book = market.book(self.listing.venue, self.listing.symbol)
        changes: list[tuple[Side, int, int]] = []
        trades: list[TradePrint] = []
        self._event(market, book, now_ns, changes, trades)
        events: list[MarketEvent] = []
        if changes:
            events.append(BookChange(self.listing.venue, self.listing.symbol, now_ns,
                                     tuple(changes)))
        events.extend(trades)
        return events

    def _target_ticks(self, t_ns: int) -> float:
        price = self.fair.at(t_ns)
        if self.dislocation is not None:
            price *= 1.0 + self.dislocation.at(t_ns) * 1e-4
        return price / float(self.listing.tick)

    def _size(self, scale: float = 1.0) -> int:
        return max(1, round(self.level_lots * scale * self.rng.lognormvariate(-0.125, 0.5)))

    def _event(self, market: Market, book: TrueBook, now_ns: int,
               changes: list[tuple[Side, int, int]], trades: list[TradePrint]) -> None:
        bb, ba = book.best_bid(), book.best_ask()
        target = self._target_ticks(now_ns)
        if bb is None or ba is None:
            self._refill(book, target, changes)
            return
        lag = target - (bb + ba) / 2
        if abs(lag) > 1.5 and self.rng.random() < min(0.9, (abs(lag) - 1.0) / 3.0):
            self._requote(market, book, now_ns, target, changes, trades)
            return
        # queue-reactive choice among the active limits, the market orders and the deep book
        choices: list[tuple[float, str, Side, int]] = []
        aes = self.level_lots
        lean = max(-2.0, min(2.0, 0.8 * lag))
        for side in ("bid", "ask"):
            best = bb if side == "bid" else ba
            sizes = book.bids if side == "bid" else book.asks
            step = -1 if side == "bid" else 1
            for i in range(self.params.active_levels):
                price = best + step * i
                n = math.ceil(sizes.get(price, 0) / aes)
                insert = 1.0 * math.exp(-i / 2.0) * (1.6 if n == 0 else 1.0 / (1.0 + 0.35 * n))
                choices.append((insert, "insert", side, price))
                if n:
                    choices.append((0.12 * math.exp(-i / 3.0) * n, "cancel", side, price))
            hit = 0.35 * math.exp(lean if side == "ask" else -lean)  # side = the book it hits
            choices.append((hit, "market", side, best))
        spread = ba - bb
        if spread > 1:
            inside: Side = "bid" if lag > 0 else "ask"
            price = bb + 1 if inside == "bid" else ba - 1
            choices.append((0.6 * (spread - 1), "insert", inside, price))
        choices.append((0.5, "deep", "bid", 0))
        choices.append((0.5, "deep", "ask", 0))
        _, kind, side, price = self._pick(choices)
        if kind == "insert":
            sizes = book.bids if side == "bid" else book.asks
            changes.append((side, price, sizes.get(price, 0) + self._size(0.5)))
        elif kind == "cancel":
            sizes = book.bids if side == "bid" else book.asks
            left = sizes[price] - min(sizes[price], self._size(0.5))
            changes.append((side, price, left))
        elif kind == "market":
            self._take(market, book, now_ns, side, self._size(0.6), None, changes, trades)
        else:
            self._deep(book, side, changes)
        for side, price, lots in changes:
            book.set(side, price, lots)
        self._refill(book, target, changes)

    def _pick(self, choices: list[tuple[float, str, Side, int]]) -> tuple[float, str, Side, int]:
        """One of ``choices`` with probability proportional to its weight."""
        pick = self.rng.random() * sum(c[0] for c in choices)
        for choice in choices:
            pick -= choice[0]
            if pick <= 0:
                return choice
        return choices[-1]

    def _take(self, market: Market, book: TrueBook, now_ns: int, side: Side, lots: int,
              limit: int | None, changes: list[tuple[Side, int, int]],
              trades: list[TradePrint]) -> None:
        """A market order of ``lots`` against ``side``; with ``limit``, the requote's stale
        quotes (levels strictly better for the taker than ``limit``): the first few are traded,
        the rest withdrawn by their makers."""
        taker: Literal["buy", "sell"] = "sell" if side == "bid" else "buy"
        for n, (price, size) in enumerate(book.top(side, None if limit is not None else 10)):
            if limit is not None:
                stale = price > limit if side == "bid" else price < limit
                if not stale:
                    break
                if n >= REQUOTE_TRADED_LEVELS:
                    changes.append((side, price, 0))
                    continue
                take = size
            else:
                if lots <= 0:
                    break
                take = min(size, lots)
                lots -= take
            changes.append((side, price, size - take))
            trades.append(market.print_trade(self.listing.venue, self.listing.symbol, now_ns,
                                             price, take, taker))

    def _requote(self, market: Market, book: TrueBook, now_ns: int, target: float,
                 changes: list[tuple[Side, int, int]], trades: list[TradePrint]) -> None:
        new_bid = math.floor(target - 0.5)
        new_ask = new_bid + 1
        bb, ba = book.best_bid(), book.best_ask()
        assert bb is not None and ba is not None
        if target > (bb + ba) / 2:  # up: asks below the new touch are taken, bids step up
            self._take(market, book, now_ns, "ask", 0, new_ask, changes, trades)
            changes.extend(("bid", price, self._size()) for price in range(bb + 1, new_bid + 1))
        else:  # down: bids above the new touch are taken, asks step down
            self._take(market, book, now_ns, "bid", 0, new_bid, changes, trades)
            changes.extend(("ask", price, self._size()) for price in range(new_ask, ba))
        for side, price, lots in changes:
            book.set(side, price, lots)
        self._refill(book, target, changes)

    def _deep(self, book: TrueBook, side: Side, changes: list[tuple[Side, int, int]]) -> None:
        levels = book.top(side)
        if len(levels) <= self.params.active_levels:
            return
        price, size = levels[self.rng.randrange(self.params.active_levels, len(levels))]
        changes.append((side, price, max(0, size + self.rng.choice((-1, 1)) * self._size(0.4))))

    def _refill(self, book: TrueBook, target: float, changes: list[tuple[Side, int, int]]) -> None:
        """Keep ``depth`` levels per side: add behind the last level, drop the farthest."""
        depth = self.params.depth
        for side in ("bid", "ask"):
            levels = book.top(side)
            step = -1 if side == "bid" else 1
            if not levels:
                first = math.floor(target - 0.5) if side == "bid" else math.floor(target + 0.5)
                other = book.best_ask() if side == "bid" else book.best_bid()
                if other is not None:
                    first = min(first, other - 1) if side == "bid" else max(first, other + 1)
                levels = [(first - step, 0)]
            last = levels[-1][0]
            for k in range(depth - book.depth(side)):
                price = last + step * (k + 1)
                size = self._size(1.5)
                book.set(side, price, size)
                changes.append((side, price, size))
            for price, _ in book.top(side)[depth + 5:]:
                book.set(side, price, 0)
                changes.append((side, price, 0))


def simulate(market: Market, params: SimParams, start_ns: int) -> None:
    """Attach a seeded simulator to every listing of ``market`` and seed every book."""
    fairs: dict[str, FairPrice] = {}
    for (venue, symbol), listing in sorted(market.listings.items()):
        if symbol not in fairs:
            price, _ = reference(symbol)
            fairs[symbol] = FairPrice(price, start_ns, params.vol_bps,
                                      random.Random(f"{params.seed}:{symbol}"))
        _, level_size = reference(symbol)
        rng = random.Random(f"{params.seed}:{venue}:{symbol}")
        dislocation = Dislocation(params, start_ns, random.Random(
            f"{params.seed}:{venue}:{symbol}:dislocation"))
        lots = max(1, round(Decimal(str(level_size)) / listing.lot))
        sim = BookSimulator(listing, fairs[symbol], params, start_ns, lots, rng, dislocation)
        sim.seed_book(market)
        market.add_process(sim)
