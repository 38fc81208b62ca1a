"""A live mirror of every recorded book, built from the ``l2`` events on the bus, with the
queue-reactive reference-price view (:mod:`core.refprice`) on top.

:class:`LiveBooks` is a lossless bus consumer (``consumer()`` goes into ``RunPlan.consumers``).
It applies each venue's snapshots and updates to its own :class:`core.book.OrderBook` per
(exchange, symbol) and drops a book as soon as the ledger says it is no longer trustworthy
(``gap``, ``checksum_mismatch``, ``crossed`` for the symbol; ``disconnected``, ``plugin_error``,
``dropped`` for the venue), until the next snapshot. ``short_book(exchange, symbol, k)`` returns
the K queues on each side of the reference price, with the venue's tick size from its instrument
metadata (or one given explicitly).

A plugin like any consumer: ``bookwire_register_consumers`` registers it (entry point
``live-books``, lossless, ``l2`` and ``health``); ``--short-book K`` runs it in a recording and logs
each book's reference price and K queues per side with the status lines.

Must not: block the feeds (it is an ordinary bounded bus subscriber) or read clocks.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Final

import trio

from core import hookimpl
from core.book import OrderBook
from core.bus import Policy, Subscription
from core.consumers import ANALYZER, Consumer, ConsumerSpec, RunContext
from core.protocol import Instrument
from core.refprice import RefPriceTracker, ShortBook
from core.schema import SYMBOL_BREAKS, VENUE_BREAKS, BookUpdate, Event, Health

log = logging.getLogger("bookwire.status")
KINDS: Final = frozenset({"l2", "health"})


class LiveBooks:
    def __init__(self, instruments: Mapping[str, Mapping[str, Instrument]] | None = None,
                 ticks: Mapping[tuple[str, str], float] | None = None) -> None:
        self.instruments = instruments if instruments is not None else {}
        self.ticks = dict(ticks or {})
        self.books: dict[tuple[str, str], OrderBook] = {}
        self.last_ts: dict[tuple[str, str], int] = {}
        self._trackers: dict[tuple[str, str], RefPriceTracker] = {}
        self.report_levels = 0  # >0: log the short books every report_interval_s
        self.report_interval_s = 10.0

    def consumer(self, name: str = "live-books") -> Consumer:
        return Consumer(name=name, run=self.run, kinds=KINDS, policy=Policy.LOSSLESS,
                        view=self, role=ANALYZER)

    async def run(self, subscription: Subscription, *,
                  task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        try:
            async with trio.open_nursery() as nursery:
                if self.report_levels:
                    nursery.start_soon(self._report)
                async for batch in subscription:
                    self.apply(batch)
                nursery.cancel_scope.cancel()
        finally:
            subscription.close_receiver()

    async def _report(self) -> None:
        while True:
            await trio.sleep(self.report_interval_s)
            for line in self.report_lines(self.report_levels):
                log.info("%s", line)

    def report_lines(self, k: int) -> list[str]:
        """One line per mirrored book: reference price and K queues per side."""
        lines = []
        for exchange, symbol in sorted(self.last_ts):
            view = self.short_book(exchange, symbol, k)
            if view is None:
                lines.append(f"book {exchange} {symbol}: no trusted book with a tick size and "
                             "an odd spread yet")
                continue
            bids = " ".join(f"{view.size(i):g}" for i in range(-k, 0))
            asks = " ".join(f"{view.size(i):g}" for i in range(1, k + 1))
            lines.append(f"book {exchange} {symbol}: p_ref {view.ref_price:.6g} | bids {bids} "
                         f"| asks {asks}")
        return lines

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


# -- the plugin ------------------------------------------------------------------------------------


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--short-book", type=int, default=0, metavar="K",
                   help="mirror every recorded l2 book live and log its queue-reactive "
                        "reference price and K queues per side with the status lines")


def build(ctx: RunContext) -> Consumer | None:
    k = getattr(ctx.args, "short_book", 0) or 0
    if k <= 0:
        if k < 0:
            raise ValueError(f"--short-book must be a positive number of queues, not {k}")
        return None
    if "l2" not in ctx.channels:
        raise ValueError("--short-book needs the l2 channel (--channels ...,l2)")
    live = LiveBooks(instruments=ctx.instruments)
    live.report_levels = k
    live.report_interval_s = getattr(ctx.args, "status_interval", 10.0) or 10.0
    return live.consumer()


SPEC: Final = ConsumerSpec(name="live-books", role=ANALYZER, policy=Policy.LOSSLESS,
                           factory=build, kinds=KINDS, add_arguments=add_arguments,
                           description="a live mirror of every recorded book")


@hookimpl
def bookwire_register_consumers(register: Callable[[ConsumerSpec], None]) -> None:
    register(SPEC)
