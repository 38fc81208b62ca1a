"""The true state of a simulated market: one book per (venue, symbol), and what happens to it.

Prices and sizes are integers here: *ticks* of the listing's tick size and *lots* of its lot
size, so every book is exact and every wire text a fake venue writes is exact too. A
:class:`Listing` converts both ways (decimal text for the venues that send strings, contracts for
the venues that count contracts).

What happens to the books is a list of :class:`MarketEvent`: a :class:`BookChange` (the absolute new
size of every level one venue message changes; 0 removes the level), a :class:`TradePrint`, or a
:class:`PerpUpdate` (funding, mark and index prices, open interest of a perpetual; the latest one
per book is kept in ``Market.perps``).
:class:`Market` applies them to the books and hands them to the fake venues. Events come from
*processes* that the market runs in time order: the seeded simulator
(:mod:`core.sim.simulator`) or a :class:`Script` of explicit steps, the way tests want them.

Pure: no trio, no clock reads, no I/O. Time only arrives as ``now_ns`` arguments.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal, Protocol

from core.codec import S_NS

Side = Literal["bid", "ask"]
Taker = Literal["buy", "sell"]
RECENT_TRADES = 100
KEEP_FIRED = 10_000  # play times a repeating script keeps

#: (ticks, lots) levels, best first
Ladder = list[tuple[int, int]]


def decimals(step: Decimal) -> int:
    """Digits after the point that ``step`` is written with (``Decimal("0.10")`` -> 2)."""
    exponent = step.as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


@dataclass(frozen=True, slots=True)
class Listing:
    """One symbol as one venue lists it.

    ``tick`` and ``lot`` are the price and size steps (sizes in base units); ``contract_size``
    is what one contract on the wire is worth in base units (1 where the venue sends base units).
    The number of digits a venue writes follows how the steps are written (``"0.10"``: two).
    """

    venue: str
    symbol: str
    tick: Decimal
    lot: Decimal
    contract_size: Decimal = Decimal(1)
    price_decimals: int = field(init=False, default=0)
    size_decimals: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        object.__setattr__(self, "price_decimals", decimals(self.tick))
        object.__setattr__(self, "size_decimals", decimals(self.lot))

    def price(self, ticks: int) -> Decimal:
        return self.tick * ticks

    def size(self, lots: int) -> Decimal:
        return self.lot * lots

    def price_text(self, ticks: int) -> str:
        return f"{self.tick * ticks:.{self.price_decimals}f}"

    def size_text(self, lots: int) -> str:
        return f"{self.lot * lots:.{self.size_decimals}f}"

    def contracts(self, lots: int) -> Decimal:
        """Size in contracts (exact; an integer when the lot is a whole contract)."""
        value = self.lot * lots / self.contract_size
        return value.to_integral_value() if value == value.to_integral_value() else value

    def ticks(self, price: Decimal | str | float) -> int:
        """A price to ticks; it must sit on the tick grid."""
        n, rest = divmod(Decimal(str(price)), self.tick)
        if rest:
            raise ValueError(f"{self.venue} {self.symbol}: price {price} is not a multiple of "
                             f"the tick {self.tick}")
        return int(n)

    def lots(self, size: Decimal | str | float) -> int:
        """A size in base units to lots; it must be a multiple of the lot."""
        n, rest = divmod(Decimal(str(size)), self.lot)
        if rest:
            raise ValueError(f"{self.venue} {self.symbol}: size {size} is not a multiple of "
                             f"the lot {self.lot}")
        return int(n)

    def lots_of_contracts(self, contracts: Decimal | str | float) -> int:
        return self.lots(Decimal(str(contracts)) * self.contract_size)


class TrueBook:
    """One venue's book of one symbol: ticks -> lots per side, kept sorted."""

    __slots__ = ("_ask_keys", "_bid_keys", "asks", "bids")

    def __init__(self) -> None:
        self.bids: dict[int, int] = {}
        self.asks: dict[int, int] = {}
        self._bid_keys: list[int] = []  # ascending
        self._ask_keys: list[int] = []  # ascending

    def set(self, side: Side, ticks: int, lots: int) -> None:
        sizes, keys = (self.bids, self._bid_keys) if side == "bid" else (self.asks, self._ask_keys)
        if lots > 0:
            if ticks not in sizes:
                insort(keys, ticks)
            sizes[ticks] = lots
        elif ticks in sizes:
            del sizes[ticks]
            del keys[bisect_left(keys, ticks)]

    def clear(self) -> None:
        self.bids.clear()
        self.asks.clear()
        self._bid_keys.clear()
        self._ask_keys.clear()

    def best_bid(self) -> int | None:
        return self._bid_keys[-1] if self._bid_keys else None

    def best_ask(self) -> int | None:
        return self._ask_keys[0] if self._ask_keys else None

    def top(self, side: Side, depth: int | None = None) -> Ladder:
        """Levels of one side, best first, at most ``depth`` of them (None: all)."""
        if side == "bid":
            keys = self._bid_keys if depth is None else self._bid_keys[-depth:]
            return [(k, self.bids[k]) for k in reversed(keys)]
        keys = self._ask_keys if depth is None else self._ask_keys[:depth]
        return [(k, self.asks[k]) for k in keys]

    def depth(self, side: Side) -> int:
        return len(self.bids if side == "bid" else self.asks)

    def is_crossed(self) -> bool:
        bb, ba = self.best_bid(), self.best_ask()
        return bb is not None and ba is not None and bb >= ba


@dataclass(frozen=True, slots=True)
class BookChange:
    """What one venue message changes in one book: ``(side, ticks, new lots)``, 0 removes."""

    venue: str
    symbol: str
    ts_ns: int
    changes: tuple[tuple[Side, int, int], ...]


@dataclass(frozen=True, slots=True)
class TradePrint:
    """One trade: ``taker`` is the aggressor's side; ``trade_id`` counts per venue and symbol."""

    venue: str
    symbol: str
    ts_ns: int
    ticks: int
    lots: int
    taker: Taker
    trade_id: int


@dataclass(frozen=True, slots=True)
class PerpUpdate:
    """The perpetual context of one venue's symbol at ``ts_ns`` (:mod:`core.sim.perp`): the
    funding rate (a fraction per interval) of the funding at ``next_funding_ns``, mark and index
    prices in ticks, open interest in lots."""

    venue: str
    symbol: str
    ts_ns: int
    funding_rate: Decimal  # a fraction per interval, for the funding at next_funding_ns
    interval_s: int
    next_funding_ns: int
    mark_ticks: int
    index_ticks: int
    open_interest_lots: int


MarketEvent = BookChange | TradePrint | PerpUpdate


class Process(Protocol):
    """Something that makes market events at times of its own choosing (simulator, script)."""

    def next_ns(self) -> int | None:
        """When this process fires next (None: never again)."""
        ...

    def fire(self, market: Market, now_ns: int) -> list[MarketEvent]:
        """Make (and apply, through ``market``) the events due at ``next_ns()``."""
        ...


class Market:
    """Every simulated book, the processes that move them, and the order events happen in."""

    def __init__(self, listings: Iterable[Listing] = ()) -> None:
        self.listings: dict[tuple[str, str], Listing] = {}
        self.books: dict[tuple[str, str], TrueBook] = {}
        self.trade_ids: dict[tuple[str, str], int] = {}
        #: the latest trades of each book, newest last (venues show them on subscription)
        self.recent_trades: dict[tuple[str, str], deque[TradePrint]] = {}
        self.processes: list[Process] = []
        #: the latest perpetual context per (venue, symbol) (:mod:`core.sim.perp`)
        self.perps: dict[tuple[str, str], PerpUpdate] = {}
        self.frozen = False
        for listing in listings:
            self.add_listing(listing)

    def add_listing(self, listing: Listing) -> None:
        key = (listing.venue, listing.symbol)
        self.listings[key] = listing
        self.books.setdefault(key, TrueBook())
        self.trade_ids.setdefault(key, 1000)
        self.recent_trades.setdefault(key, deque(maxlen=RECENT_TRADES))

    def listing(self, venue: str, symbol: str) -> Listing:
        return self.listings[(venue, symbol)]

    def book(self, venue: str, symbol: str) -> TrueBook:
        return self.books[(venue, symbol)]

    def symbols(self, venue: str) -> list[str]:
        return [s for v, s in self.listings if v == venue]

    def add_process(self, process: Process) -> None:
        self.processes.append(process)

    # -- state changes (every change goes through here) ----------------------------------------

    def load(self, venue: str, symbol: str, bids: Ladder, asks: Ladder) -> None:
        """Set a book's initial levels (before anyone is subscribed: no event)."""
        book = self.book(venue, symbol)
        book.clear()
        for ticks, lots in bids:
            book.set("bid", ticks, lots)
        for ticks, lots in asks:
            book.set("ask", ticks, lots)

    def apply(self, venue: str, symbol: str, ts_ns: int,
              changes: Sequence[tuple[Side, int, int]]) -> BookChange:
        book = self.book(venue, symbol)
        for side, ticks, lots in changes:
            book.set(side, ticks, lots)
        return BookChange(venue, symbol, ts_ns, tuple(changes))

    def print_trade(self, venue: str, symbol: str, ts_ns: int, ticks: int, lots: int,
                    taker: Taker, trade_id: int | None = None) -> TradePrint:
        key = (venue, symbol)
        if trade_id is None:
            trade_id = self.trade_ids[key] + 1
        self.trade_ids[key] = max(self.trade_ids[key], trade_id)
        trade = TradePrint(venue, symbol, ts_ns, ticks, lots, taker, trade_id)
        self.recent_trades[key].append(trade)
        return trade

    # -- time -----------------------------------------------------------------------------------

    def next_event_ns(self) -> int | None:
        if self.frozen:
            return None
        times = [t for t in (p.next_ns() for p in self.processes) if t is not None]
        return min(times) if times else None

    def advance(self, now_ns: int) -> list[MarketEvent]:
        """Run every process whose time has come, in time order, up to ``now_ns``."""
        events: list[MarketEvent] = []
        while (fired := self.fire_next(now_ns)) is not None:
            events.extend(fired)
        return events

    def fire_next(self, now_ns: int) -> list[MarketEvent] | None:
        """Run the earliest process whose time has come (at or before ``now_ns``) once: the
        events it made, or None when none is due. A fake venue publishes them before the next
        process changes the books, so each of its messages describes one event even when a
        loaded machine catches up on several at once."""
        if self.frozen:
            return None
        due: tuple[int, int] | None = None
        for i, process in enumerate(self.processes):
            t = process.next_ns()
            if t is not None and t <= now_ns and (due is None or t < due[0]):
                due = (t, i)
        if due is None:
            return None
        return self.processes[due[1]].fire(self, due[0])

    def freeze(self) -> None:
        """Stop every process: the books keep their current state (tests compare against it)."""
        self.frozen = True


# -- scripts ------------------------------------------------------------------------------------


@dataclass
class Step:
    """One scripted venue message: book changes (decimal text, sizes in base units) and trades.

    ``trades`` are ``(price, size, taker side)`` or ``(price, size, taker side, trade id)``.
    ``pause_s`` waits before the step (on top of the script's interval). ``ts_ns`` is the
    exchange time its events carry (default: when it is played); tests that compare two runs
    of one script give fixed times.
    """

    symbol: str
    bids: Sequence[tuple[str, str]] = ()
    asks: Sequence[tuple[str, str]] = ()
    trades: Sequence[tuple[str, str, str] | tuple[str, str, str, int]] = ()
    pause_s: float = 0.0
    ts_ns: int | None = None


@dataclass
class Script:
    """Steps of one venue played in order, ``interval_s`` apart, from ``start_ns`` (None: once
    :meth:`start` is called, e.g. when a client has subscribed). With ``repeat`` the steps are
    played again and again (an endless stream; sizes are absolute, so a repeated step is a
    valid venue message); :attr:`fired` then keeps the latest ``KEEP_FIRED`` times."""

    venue: str
    steps: list[Step]
    start_ns: int | None = None
    interval_s: float = 0.01
    position: int = 0
    repeat: bool = False
    #: when each step was played (ns), in order
    fired: list[int] = field(default_factory=list)
    #: steps played in all (with ``repeat``, more than ``len(steps)``)
    played: int = 0
    _next: int | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if self.start_ns is not None:
            self._schedule(self.start_ns)

    def start(self, now_ns: int) -> None:
        """Play the steps from now (the first one ``interval_s`` later)."""
        self.start_ns = now_ns
        self._schedule(now_ns)

    def _schedule(self, after_ns: int) -> None:
        if self.position >= len(self.steps) and self.repeat and self.steps:
            self.position = 0
        if self.position >= len(self.steps):
            self._next = None
            return
        step = self.steps[self.position]
        self._next = after_ns + int((self.interval_s + step.pause_s) * S_NS)

    def next_ns(self) -> int | None:
        return self._next

    def fire(self, market: Market, now_ns: int) -> list[MarketEvent]:
        step = self.steps[self.position]
        self.position += 1
        self.played += 1
        self.fired.append(now_ns)
        if self.repeat and len(self.fired) > KEEP_FIRED:
            del self.fired[:KEEP_FIRED // 2]
        self._schedule(now_ns)
        listing = market.listing(self.venue, step.symbol)
        ts_ns = now_ns if step.ts_ns is None else step.ts_ns
        events: list[MarketEvent] = []
        changes: list[tuple[Side, int, int]] = [
            ("bid", listing.ticks(p), listing.lots(s)) for p, s in step.bids]
        changes += [("ask", listing.ticks(p), listing.lots(s)) for p, s in step.asks]
        if changes:
            events.append(market.apply(self.venue, step.symbol, ts_ns, changes))
        for trade in step.trades:
            price, size, taker = trade[0], trade[1], trade[2]
            trade_id = trade[3] if len(trade) > 3 else None
            events.append(market.print_trade(self.venue, step.symbol, ts_ns,
                                             listing.ticks(price), listing.lots(size),
                                             taker, trade_id))  # type: ignore[arg-type]
        return events

    @property
    def done(self) -> bool:
        return not self.repeat and self.position >= len(self.steps)


def load_text(market: Market, venue: str, symbol: str, bids: Sequence[tuple[str, str]],
              asks: Sequence[tuple[str, str]]) -> None:
    """Set a book's initial levels from decimal text (sizes in base units)."""
    listing = market.listing(venue, symbol)
    market.load(venue, symbol, [(listing.ticks(p), listing.lots(s)) for p, s in bids],
                [(listing.ticks(p), listing.lots(s)) for p, s in asks])
