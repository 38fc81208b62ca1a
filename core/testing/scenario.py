"""Run venue protocols against simulated venues, with faults, and check what they recorded.

:func:`run_scenario` builds a seeded market for the given venues and symbols, serves each venue
with its registered speaker over in-memory streams (no sockets, so it runs on trio's
``MockClock``), runs the real :class:`core.session.Session` of each protocol on one bus, lets the
market play for ``duration_s``, then freezes it and lets every client settle. The
:class:`ScenarioResult` holds every event published, the protocols (their books), the speakers
(the books a correct client must hold) and the fault plans (when each fault fired). REST calls
(a venue's book snapshots) go to the speakers in memory too.

The checks a plugin author wants are methods of the result: :meth:`ScenarioResult.book_matches`
(the client's book equals the venue's at the end), :meth:`ScenarioResult.trust_breaks` and
:meth:`ScenarioResult.recovered_within` (trust lost after a fault comes back within a bound),
:meth:`ScenarioResult.health`. ``tests/session/test_faults.py`` runs the whole fault matrix with
them; a third-party plugin with a speaker can do the same.

Test helper: loopback-free, trio only, no files.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import trio

from core.book import BookKeeper
from core.bus import Bus
from core.clock import TrioClock
from core.codec import S_NS
from core.protocol import ExchangeProtocol, Instrument, ProtocolConfig
from core.schema import (
    SYMBOL_BREAKS,
    TRUST_EVENTS,
    VENUE_BREAKS,
    BookUpdate,
    Event,
    Health,
    HealthKind,
    TopOfBook,
    Trade,
)
from core.session import Backoff, Session
from core.sim.market import Market
from core.sim.server import Simulation
from core.sim.simulator import SimParams, reference, simulate
from core.sim.speaker import VenueSpeaker
from core.testing.faults import FaultPlan

START_NS = 1_786_000_000 * S_NS  # 2026-08-06: the market's epoch in scenarios


@dataclass
class VenueSetup:
    """One venue of a scenario: its protocol class, speaker class and (optional) fault plan."""

    proto: type[ExchangeProtocol]
    speaker: type[VenueSpeaker]
    plan: FaultPlan | None = None
    symbols: Sequence[str] | None = None  # default: the scenario's symbols
    channels: Sequence[str] = ("tob", "l2", "trades")
    options: Mapping[str, str] = field(default_factory=dict)


@dataclass
class VenueRun:
    name: str
    proto: ExchangeProtocol
    speaker: VenueSpeaker
    session: Session
    plan: FaultPlan | None
    events: list[Event] = field(default_factory=list)


Ladders = tuple[list[tuple[float, float]], list[tuple[float, float]]]


@dataclass
class ScenarioResult:
    venues: dict[str, VenueRun]
    market: Market
    sim: Simulation
    end_ns: int = 0
    #: (venue, symbol) -> (client's l2 book live?, client's book, venue's book), at the end of
    #: the settle time (before the sessions stop)
    final: dict[tuple[str, str], tuple[bool, Ladders, Ladders]] = field(default_factory=dict)

    def health(self, venue: str, kind: str | None = None, symbol: str | None = None,
               since_ns: int = 0) -> list[Health]:
        return [e for e in self.venues[venue].events if isinstance(e, Health)
                and (kind is None or e.event == kind)
                and (symbol is None or e.symbol == symbol) and e.ts_local >= since_ns]

    def data(self, venue: str, symbol: str | None = None) -> list[Event]:
        return [e for e in self.venues[venue].events
                if isinstance(e, (TopOfBook, BookUpdate, Trade))
                and (symbol is None or e.symbol == symbol)]

    def l2_keeper(self, venue: str) -> BookKeeper:
        return next(k for k in self.venues[venue].proto.keepers if k.publish_l2)

    def client_book(self, venue: str, symbol: str) -> Ladders:
        """The client's l2 book at the end of the scenario."""
        return self.final[(venue, symbol)][1]

    def true_book(self, venue: str, symbol: str) -> Ladders:
        """The book the venue told that client, at the end of the scenario."""
        return self.final[(venue, symbol)][2]

    def book_matches(self, venue: str, symbol: str) -> bool:
        """At the end, the client's l2 book was live and equal to the venue's, level by level."""
        live, client, truth = self.final[(venue, symbol)]
        return live and _same(client, truth)

    def snapshot_books(self) -> None:
        for name, run in self.venues.items():
            proto = run.proto
            for symbol in proto.config.symbols:
                if proto.lanes or proto.max_connection_age_s:
                    # the sockets run protocol instances of their own: the client's book is the
                    # one its published l2 rows build, trusted by the health ledger's rule
                    live = self.trusted_at_end(name, symbol)
                    client = self.published_book(name, symbol)
                else:
                    keeper = self.l2_keeper(name)
                    book = keeper.book(symbol)
                    live = keeper.is_live(symbol)
                    client = (book.top_bids(len(book.bids)), book.top_asks(len(book.asks)))
                try:
                    truth = run.speaker.true_view(symbol, "l2")
                except KeyError:
                    truth = ([], [])
                self.final[(name, symbol)] = (live, client, truth)

    def published_book(self, venue: str, symbol: str) -> Ladders:
        """The book a reader of the l2 rows gets: each snapshot replaces it, each update's
        levels set absolute sizes (0 removes), in publication order."""
        bids: dict[float, float] = {}
        asks: dict[float, float] = {}
        for e in self.venues[venue].events:
            if not isinstance(e, BookUpdate) or e.symbol != symbol:
                continue
            if e.is_snapshot:
                bids.clear()
                asks.clear()
            for side, levels in ((bids, e.bids), (asks, e.asks)):
                for price, size in levels:
                    if size > 0:
                        side[price] = size
                    else:
                        side.pop(price, None)
        return (sorted(bids.items(), key=lambda lv: -lv[0]), sorted(asks.items()))

    def trust_breaks(self, venue: str, symbol: str, since_ns: int = 0) -> list[Health]:
        """Rows that made ``symbol``'s book untrusted (the trust rule of ``core.schema``)."""
        return [h for h in self.health(venue, since_ns=since_ns)
                if (h.symbol == symbol and h.event in SYMBOL_BREAKS)
                or (h.symbol is None and h.event in VENUE_BREAKS)]

    def trusted_at_end(self, venue: str, symbol: str) -> bool:
        last = None
        for h in self.health(venue):
            if h.symbol == symbol and h.event in TRUST_EVENTS:
                last = True
            elif (h.symbol == symbol and h.event in SYMBOL_BREAKS) or (
                    h.symbol is None and h.event in VENUE_BREAKS):
                last = False
        return bool(last)

    def recovered_within(self, venue: str, symbols: Sequence[str], since_ns: int,
                         bound_s: float) -> float:
        """Seconds from ``since_ns`` until every symbol's book was trusted again after its last
        break (0.0 when nothing broke); raises AssertionError past ``bound_s``."""
        worst = 0.0
        for symbol in symbols:
            broke_at = None
            restored = None
            for h in self.health(venue, since_ns=since_ns):
                breaks = (h.symbol == symbol and h.event in SYMBOL_BREAKS) or (
                    h.symbol is None and h.event in VENUE_BREAKS)
                if breaks:
                    broke_at = broke_at or h.ts_local
                    restored = None
                elif h.symbol == symbol and h.event in TRUST_EVENTS and broke_at is not None:
                    restored = h.ts_local
            if broke_at is None:
                continue
            assert restored is not None, f"{venue} {symbol}: trust never came back"
            worst = max(worst, (restored - since_ns) / S_NS)
        assert worst <= bound_s, f"{venue}: recovered after {worst:.2f} s > bound {bound_s:g} s"
        return worst


def _same(a: Ladders, b: Ladders) -> bool:
    for x, y in zip(a, b, strict=True):
        if len(x) != len(y):
            return False
        for (p1, s1), (p2, s2) in zip(x, y, strict=True):
            if not (math.isclose(p1, p2, rel_tol=1e-12) and math.isclose(s1, s2, rel_tol=1e-9)):
                return False
    return True


def instruments_of(proto: type[ExchangeProtocol], speaker: VenueSpeaker) -> dict[str, Instrument]:
    """The instruments the protocol gets from the fake venue's REST endpoint."""
    path = proto.instruments_path()
    if path is None:
        return {}
    body = speaker.rest(path)
    return proto.parse_instruments(body) if isinstance(body, bytes) else {}


async def run_scenario(setups: Mapping[str, VenueSetup], symbols: Sequence[str], *,
                       duration_s: float = 60.0, settle_s: float = 8.0,
                       params: SimParams | None = None, pong_timeout_s: float = 5.0,
                       seed: int = 1) -> ScenarioResult:
    """Run the scenario (see the module docstring). Call it inside a trio test; under
    ``MockClock(autojump_threshold=0)`` it takes no real time beyond CPU."""
    params = params or SimParams(seed=seed, events_per_s=5.0, depth=30)
    clock = TrioClock(START_NS)
    market = Market()
    for name, setup in setups.items():
        if setup.speaker.name != name:
            raise ValueError(f"speaker {setup.speaker.name!r} set up under {name!r}")
        for symbol in setup.symbols or symbols:
            market.add_listing(setup.speaker.listing(symbol, reference(symbol)[0]))
    simulate(market, params, START_NS)
    speakers = {name: setup.speaker(market) for name, setup in setups.items()}
    plans = {name: setup.plan for name, setup in setups.items() if setup.plan is not None}
    sim = Simulation(market, speakers, clock=clock, faults=plans)
    bus = Bus()
    sub = bus.subscribe("scenario")
    runs: dict[str, VenueRun] = {}
    for name, setup in setups.items():
        config = ProtocolConfig(symbols=tuple(setup.symbols or symbols),
                                channels=tuple(setup.channels),
                                instruments=instruments_of(setup.proto, speakers[name]),
                                options=dict(setup.options), rest_url=sim.rest_url(name))
        proto = setup.proto(config)
        session = Session(proto, bus, url=sim.url(name), clock=clock, connect=sim.connect,
                          backoff=Backoff(rng=random.Random(seed)),
                          pong_timeout_s=pong_timeout_s, rest_transport=sim.rest_transport())
        runs[name] = VenueRun(name, proto, speakers[name], session, setup.plan)
    result = ScenarioResult(runs, market, sim)

    async def collect() -> None:
        async for batch in sub:
            for event in batch:
                run = runs.get(event.exchange)
                if run is not None:
                    run.events.append(event)

    async with trio.open_nursery() as nursery:
        await nursery.start(sim.run)
        nursery.start_soon(collect)
        for run in runs.values():
            nursery.start_soon(run.session.run)
        await trio.sleep(duration_s)
        market.freeze()
        await trio.sleep(settle_s)
        result.end_ns = clock.now_ns()
        result.snapshot_books()
        nursery.cancel_scope.cancel()
    return result


__all__ = [
    "START_NS",
    "HealthKind",
    "ScenarioResult",
    "VenueRun",
    "VenueSetup",
    "instruments_of",
    "run_scenario",
]
