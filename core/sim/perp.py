"""Perpetual market context in the simulated market: funding on a known schedule, mark and index
prices, open interest.

Per (venue, symbol) of a perpetual venue, a :class:`PerpProcess` (a
:class:`core.sim.market.Process`) makes one :class:`PerpUpdate` every ``update_s`` seconds and
keeps the latest in ``market.perps`` (the fake venues' REST endpoints read it there):

* **Funding schedule** (:class:`FundingSchedule`): fundings every ``interval_s`` seconds on the
  grid ``anchor_ns + k * interval_s`` (by default every 8 hours from 00:00 UTC). The rate of the
  funding at grid time k is ``rates_bps[k % len(rates_bps)]`` basis points per interval: a list
  the test (or the seed) chooses, so every rate and every funding time is known in advance.
* **Index** = the symbol's fair price (the same seeded walk the books quote around,
  :class:`core.sim.simulator.FairPrice`); **mark** = index x (1 + premium) with a premium of
  ``rate x premium_per_rate`` (a positive rate: the perpetual trades rich), both on the
  listing's tick.
* **Open interest**: a seeded random walk in lots (base units), never below one lot.

Values are exact decimals (rates) and integers (ticks, lots), so the fakes' wire text is exact
and a test can compare rows with the schedule. :func:`simulate_perps` attaches the processes to
every listing of the given venues. Pure: no trio, no clock reads, no I/O.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from core.codec import S_NS
from core.sim.market import Listing, Market, MarketEvent, PerpUpdate
from core.sim.simulator import FairPrice, SimParams, reference

#: one update per venue and symbol every second
DEFAULT_UPDATE_S = 1.0
DEFAULT_INTERVAL_S = 8 * 3600
#: the mark stands this many times the funding rate above the index
PREMIUM_PER_RATE = 2.0
#: open interest to start from, in typical book levels
OI_LEVELS = 400


@dataclass(frozen=True, slots=True)
class FundingSchedule:
    """Funding times ``anchor_ns + k * interval_s`` and the rate of each (bps per interval)."""

    interval_s: int
    anchor_ns: int
    rates_bps: tuple[Decimal, ...]

    def index(self, t_ns: int) -> int:
        """k of the first funding time strictly after ``t_ns``."""
        step = self.interval_s * S_NS
        return (t_ns - self.anchor_ns) // step + 1

    def time(self, k: int) -> int:
        return self.anchor_ns + k * self.interval_s * S_NS

    def rate(self, k: int) -> Decimal:
        """The rate (a fraction) of the funding at grid time k."""
        return self.rates_bps[k % len(self.rates_bps)] / Decimal(10_000)

    def next_after(self, t_ns: int) -> tuple[int, Decimal]:
        """(time, rate) of the first funding strictly after ``t_ns``."""
        k = self.index(t_ns)
        return self.time(k), self.rate(k)

    def fundings(self, t0_ns: int, t1_ns: int) -> list[tuple[int, Decimal]]:
        """Every (time, rate) with t0 < time <= t1."""
        out = []
        k = self.index(t0_ns)
        while self.time(k) <= t1_ns:
            out.append((self.time(k), self.rate(k)))
            k += 1
        return out


@dataclass
class PerpProcess:
    """One venue's perpetual context of one symbol; a :class:`core.sim.market.Process`."""

    listing: Listing
    schedule: FundingSchedule
    fair: FairPrice
    start_ns: int
    update_s: float = DEFAULT_UPDATE_S
    rng: random.Random = field(default_factory=random.Random)
    oi_lots: int = 0
    _next: int = 0

    def __post_init__(self) -> None:
        self._next = self.start_ns
        if self.oi_lots <= 0:
            _, level = reference(self.listing.symbol)
            self.oi_lots = max(1, round(Decimal(str(level * OI_LEVELS)) / self.listing.lot))

    def next_ns(self) -> int | None:
        return self._next

    def state(self, now_ns: int) -> PerpUpdate:
        nxt, rate = self.schedule.next_after(now_ns)
        tick = self.listing.tick
        index = self.fair.at(now_ns)
        index_ticks = max(1, round(Decimal(str(index)) / tick))
        premium = Decimal(str(index)) * rate * Decimal(str(PREMIUM_PER_RATE))
        mark_ticks = max(1, index_ticks + round(premium / tick))
        return PerpUpdate(self.listing.venue, self.listing.symbol, now_ns, rate,
                          self.schedule.interval_s, nxt, mark_ticks, index_ticks, self.oi_lots)

    def fire(self, market: Market, now_ns: int) -> list[MarketEvent]:
        self._next = now_ns + int(self.update_s * S_NS)
        step = max(1, self.oi_lots // 200)
        self.oi_lots = max(1, self.oi_lots + self.rng.choice((-1, 0, 0, 1)) * step)
        update = self.state(now_ns)
        market.perps[(self.listing.venue, self.listing.symbol)] = update
        return [update]


def default_schedule(seed: int, venue: str, start_ns: int,
                     interval_s: int = DEFAULT_INTERVAL_S) -> FundingSchedule:
    """Every 8 hours from 00:00 UTC, rates between -1 and +3 bps that differ by venue (seeded)."""
    rng = random.Random(f"{seed}:{venue}:funding")
    day = 86_400 * S_NS
    rates = tuple(Decimal(rng.randrange(-100, 301)) / Decimal(100) for _ in range(3))
    return FundingSchedule(interval_s, start_ns // day * day, rates)


def simulate_perps(market: Market, venues: Iterable[str], params: SimParams, start_ns: int,
                   schedules: dict[str, FundingSchedule] | None = None,
                   update_s: float = DEFAULT_UPDATE_S) -> list[PerpProcess]:
    """Attach a :class:`PerpProcess` to every listing of ``venues`` (their schedule from
    ``schedules``, else :func:`default_schedule`), with its first state in ``market.perps``."""
    wanted: Sequence[str] = list(venues)
    out = []
    for (venue, symbol), listing in sorted(market.listings.items()):
        if venue not in wanted:
            continue
        schedule = (schedules or {}).get(venue) or default_schedule(params.seed, venue, start_ns)
        price, _ = reference(symbol)
        fair = FairPrice(price, start_ns, params.vol_bps,
                         random.Random(f"{params.seed}:{symbol}"))  # the books' own walk
        process = PerpProcess(listing, schedule, fair, start_ns, update_s,
                              random.Random(f"{params.seed}:{venue}:{symbol}:perp"))
        market.perps[(venue, symbol)] = process.state(start_ns)
        market.add_process(process)
        out.append(process)
    return out


__all__ = ["FundingSchedule", "PerpProcess", "PerpUpdate", "default_schedule",
           "simulate_perps"]
