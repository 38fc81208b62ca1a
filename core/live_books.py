"""A live mirror of every recorded book, built from the ``l2`` events on the bus, with the
queue-reactive reference-price view (:mod:`core.refprice`) on top.

:class:`LiveBooks` is a lossless bus consumer (``consumer()`` goes into ``RunPlan.consumers``).
It applies each venue's snapshots and updates to its own :class:`core.book.OrderBook` per
(exchange, symbol) and drops a book as soon as the ledger says it is no longer trustworthy
(``gap``, ``checksum_mismatch``, ``crossed`` for the symbol; ``disconnected``, ``plugin_error``,
``dropped`` for the venue), until the next snapshot. ``short_book(exchange, symbol, k)`` returns
the K queues on each side of the reference price, with the venue's tick size from its instrument
metadata (or one given explicitly).

Must not: block the feeds (it is an ordinary bounded bus subscriber) or read clocks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import trio

from core.book import OrderBook
from core.bus import Policy, Subscription
from core.protocol import Instrument
from core.refprice import RefPriceTracker, ShortBook
from core.schema import SYMBOL_BREAKS, VENUE_BREAKS, BookUpdate, Event, Health
from core.supervisor import Consumer


class LiveBooks:
    def __init__(self, instruments: Mapping[str, Mapping[str, Instrument]] | None = None,
                 ticks: Mapping[tuple[str, str], float] | None = None) -> None:
        self.instruments = instruments or {}
        self.ticks = dict(ticks or {})
        self.books: dict[tuple[str, str], OrderBook] = {}
        self.last_ts: dict[tuple[str, str], int] = {}
        self._trackers: dict[tuple[str, str], RefPriceTracker] = {}

    def consumer(self, name: str = "live-books") -> Consumer:
        return Consumer(name=name, run=self.run, kinds=frozenset({"l2", "health"}),
                        policy=Policy.LOSSLESS)

    async def run(self, subscription: Subscription, *,
                  task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        try:
            async for batch in subscription:
                self.apply(batch)
        finally:
            subscription.close_receiver()

    def apply(self, batch: Sequence[Event]) -> None:
        for e in batch:
            if isinstance(e, BookUpdate):
                key = (e.exchange, e.symbol)
                book = self.books.get(key)
                if e.is_snapshot:
                    if book is None:
                        book = self.books[key] = OrderBook()
                    book.replace(e.bids, e.asks)
                elif book is not None:
                    book.apply(e.bids, e.asks)
                self.last_ts[key] = e.ts_local
            elif isinstance(e, Health):
                if e.event in SYMBOL_BREAKS and e.symbol is not None:
                    self.books.pop((e.exchange, e.symbol), None)
                elif e.event in VENUE_BREAKS:
                    for key in [k for k in self.books if k[0] == e.exchange]:
                        del self.books[key]

    def tick(self, exchange: str, symbol: str) -> float | None:
        tick = self.ticks.get((exchange, symbol))
        if tick is None:
            inst = self.instruments.get(exchange, {}).get(symbol)
            tick = inst.tick_size if inst is not None else None
        return tick

    def short_book(self, exchange: str, symbol: str, k: int) -> ShortBook | None:
        """The shortened book now, or None (no trusted book, no tick size, no odd spread yet)."""
        book = self.books.get((exchange, symbol))
        tick = self.tick(exchange, symbol)
        if book is None or tick is None:
            return None
        tracker = self._trackers.get((exchange, symbol))
        if tracker is None or tracker.tick != tick:
            tracker = self._trackers[(exchange, symbol)] = RefPriceTracker(tick)
        return tracker.update_from_book(book, k)
