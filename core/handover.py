"""Replacing a venue's connections without a gap: the event routing and the switch, pure.

A venue that cuts connections at a known age (Binance: 24 h) is run by :mod:`core.connections`,
which opens *shadow* connections (a fresh protocol instance per lane) shortly before the cut,
while the *current* ones keep publishing. This module decides what reaches the bus:

* **current** events pass, except trades already published (by symbol and trade id): across the
  overlap both connections carry the same trades, and each must be written once. While a shadow
  is held back, every trade id the current connections publish is remembered (bounded); after
  the switch those ids keep filtering the new connections' trades for ``AFTER_SWITCH_NS`` of
  receive time; otherwise only the last ``RECENT_TRADE_IDS`` ids per symbol are kept;
* **shadow** events are held back: its trades (bounded), its non-book health rows (bounded), its
  last top of book per symbol. Its book rows are not kept: the switch republishes its books whole;
* at the **switch** (every book live on the old connections is live on the new ones, or a bound
  passed, or the old connections died), :meth:`Handover.switch` returns, stamped with the switch
  time: a ``handover`` health row; a snapshot of every book that is live on the new connections
  (its ``msg_id`` above every id the old one published, its top of book written only if it
  differs from the last one written); the held health rows and the held trades not already
  published. A book that was live and is not on the new connections gets a ``gap`` row; when the
  old connections died first, every carried book gets a ``resynced`` (or ``snapshot``) row, since
  their ``disconnected`` rows broke the trust.

So trusted book time runs across a handover without a break, trades are neither lost nor doubled,
and ``msg_id`` keeps increasing. The held health rows that describe the shadow's own trust
(``connected``, ``snapshot``, ``gap``, ...) are not published, because in the table they would
claim breaks or recoveries of books the old connections were serving; they are counted in the
``handover`` row's detail instead.

The live runner and the replay (:mod:`core.replay`) call the same methods in the same order of
records, so a recorded handover replays row for row. Pure: no trio, no clocks, no I/O.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Sequence
from typing import Final

from core.book import BookKeeper
from core.protocol import ExchangeProtocol
from core.schema import (
    SYMBOL_BREAKS,
    TRUST_EVENTS,
    VENUE_BREAKS,
    Event,
    Health,
    HealthKind,
    TopOfBook,
    Trade,
)

#: the ``health`` event of a switch
HANDOVER: Final = HealthKind.HANDOVER
#: trade ids remembered per symbol to drop repeats outside of a handover
RECENT_TRADE_IDS: Final = 1_000
#: how long after a switch the old connections' trade ids still filter the new ones' trades
AFTER_SWITCH_NS: Final = 60 * 1_000_000_000
#: what a shadow may hold back before its oldest held trades / rows are dropped (and counted)
MAX_HELD_TRADES: Final = 200_000
MAX_HELD_HEALTH: Final = 1_000
#: shadow health rows that are summarized in the ``handover`` row instead of published
SUMMARIZED: Final = TRUST_EVENTS | SYMBOL_BREAKS | VENUE_BREAKS | {HealthKind.CONNECTED,
                                                                   HealthKind.NO_SNAPSHOT}


class _RecentIds:
    """The last ``size`` trade ids of one symbol."""

    __slots__ = ("_ids", "_order")

    def __init__(self, size: int) -> None:
        self._order: deque[str] = deque(maxlen=size)
        self._ids: set[str] = set()

    def add(self, trade_id: str) -> bool:
        """Remember ``trade_id``; False when it is among the remembered ones already."""
        if trade_id in self._ids:
            return False
        if len(self._order) == self._order.maxlen:
            self._ids.discard(self._order[0])
        self._order.append(trade_id)
        self._ids.add(trade_id)
        return True


class Handover:
    """Routing and switch state of one venue; see the module docstring."""

    def __init__(self, venue: str, *, recent_ids: int = RECENT_TRADE_IDS,
                 max_held_trades: int = MAX_HELD_TRADES,
                 max_held_health: int = MAX_HELD_HEALTH) -> None:
        self.venue = venue
        self._recent_size = recent_ids
        self._recent: dict[str, _RecentIds] = {}
        self._trades: deque[Trade] = deque(maxlen=max_held_trades)
        self._health: deque[Health] = deque(maxlen=max_held_health)
        self._tob: dict[str, TopOfBook] = {}
        self._summarized: Counter[str] = Counter()
        self._held_dropped = 0
        # trade ids the current connections published while a shadow was held back
        self._overlap: dict[str, set[str]] | None = None
        self._overlap_size = 0
        self._max_overlap = max_held_trades
        # the previous overlap's ids, still filtering until _after_until (receive time)
        self._after: dict[str, set[str]] = {}
        self._after_until = 0
        #: trades dropped as repeats since the start (all switches)
        self.duplicates = 0
        self.switches = 0

    # -- routing ---------------------------------------------------------------------------------

    def current(self, events: Sequence[Event]) -> Sequence[Event]:
        """The current connections' events, less trades already published."""
        out: list[Event] | None = None
        for i, e in enumerate(events):
            if isinstance(e, Trade) and not self._fresh(e):
                if out is None:
                    out = list(events[:i])
                continue
            if out is not None:
                out.append(e)
        return events if out is None else out

    def hold(self, events: Sequence[Event]) -> None:
        """Keep what the switch will need of a shadow's events."""
        if self._overlap is None:
            self._overlap, self._overlap_size = {}, 0
        for e in events:
            if isinstance(e, Trade):
                if len(self._trades) == self._trades.maxlen:
                    self._held_dropped += 1
                self._trades.append(e)
            elif isinstance(e, Health):
                if e.event in SUMMARIZED:
                    self._summarized[e.event] += 1
                else:
                    if len(self._health) == self._health.maxlen:
                        self._held_dropped += 1
                    self._health.append(e)
            elif isinstance(e, TopOfBook):
                self._tob[e.symbol] = e
            # book rows are not kept: the switch republishes the whole book

    def discard(self) -> None:
        """The shadow connections failed: forget what they held."""
        self._trades.clear()
        self._health.clear()
        self._tob.clear()
        self._summarized.clear()
        self._held_dropped = 0
        self._overlap = None

    @staticmethod
    def ready(old: Sequence[ExchangeProtocol], new: Sequence[ExchangeProtocol]) -> bool:
        """Every book live on the old connections is live on the new ones (lane by lane)."""
        for o, n in zip(old, new, strict=True):
            for ko, kn in zip(o.keepers, n.keepers, strict=True):
                for symbol, st in ko.states.items():
                    if st.live and not kn.is_live(symbol):
                        return False
        return True

    # -- the switch ------------------------------------------------------------------------------

    def switch(self, now_ns: int, old: Sequence[ExchangeProtocol],
               new: Sequence[ExchangeProtocol], *, old_lost: bool, detail: str) -> list[Event]:
        """The rows that hand the venue over from ``old`` to ``new`` (one protocol per lane,
        same order) at ``now_ns``. ``old_lost``: the old connections died first (their
        ``disconnected`` rows are already published)."""
        books: list[Event] = []
        carried = broken = 0
        for o, n in zip(old, new, strict=True):
            for ko, kn in zip(o.keepers, n.keepers, strict=True):
                symbols = list(dict.fromkeys([*ko.states, *kn.states]))
                for symbol in symbols:
                    st_old = ko.states.get(symbol)
                    was_live = st_old is not None and st_old.live and not old_lost
                    if kn.is_live(symbol):
                        carried += 1
                        books += self._republish(ko, kn, symbol, now_ns, was_live)
                        if not was_live:
                            ever = st_old is not None and st_old.ever_live
                            books.append(self._row(
                                HealthKind.RESYNCED if ever else HealthKind.SNAPSHOT,
                                f"handover: the book of the new connection ({detail})", now_ns,
                                symbol))
                    elif was_live:
                        broken += 1
                        books.append(self._row(
                            HealthKind.GAP, "handover: the new connection has no valid book yet",
                            now_ns, symbol))
        held_trades = list(self._trades)
        overlap = self._overlap or {}
        trades = []
        for t in held_trades:
            if t.trade_id in overlap.get(t.symbol, ()):
                self.duplicates += 1  # the old connections published it meanwhile
            elif self._fresh(t):
                trades.append(t)
        tobs = [t for symbol, t in self._tob.items() if not _tob_kept(new, symbol)]
        summary = ", ".join(f"{k}={v}" for k, v in sorted(self._summarized.items()))
        text = (f"{detail}; {'old connection lost; ' if old_lost else ''}books carried "
                f"{carried}, not carried {broken}; held trades {len(held_trades)}, "
                f"{len(held_trades) - len(trades)} already published")
        if self._held_dropped:
            text += f"; {self._held_dropped} held events dropped at the bound"
        if summary:
            text += f"; new connection before the switch: {summary}"
        out: list[Event] = [self._row(HANDOVER, text, now_ns), *books, *self._health, *tobs,
                            *trades]
        self._after, self._after_until = overlap, now_ns + AFTER_SWITCH_NS
        self.discard()
        self.switches += 1
        return out

    # -- internals -------------------------------------------------------------------------------

    def _fresh(self, trade: Trade) -> bool:
        """Not published yet (remembering it as published)."""
        symbol, trade_id = trade.symbol, trade.trade_id
        if self._after and trade.ts_local <= self._after_until and \
                trade_id in self._after.get(symbol, ()):
            self.duplicates += 1
            return False
        recent = self._recent.get(symbol)
        if recent is None:
            recent = self._recent[symbol] = _RecentIds(self._recent_size)
        if not recent.add(trade_id):
            self.duplicates += 1
            return False
        if self._overlap is not None and self._overlap_size < self._max_overlap:
            self._overlap.setdefault(symbol, set()).add(trade_id)
            self._overlap_size += 1
        return True

    def _row(self, event: str, detail: str, now_ns: int, symbol: str | None = None) -> Health:
        return Health(exchange=self.venue, ts_local=now_ns, symbol=symbol, event=event,
                      detail=detail[:1000])

    @staticmethod
    def _republish(ko: BookKeeper, kn: BookKeeper, symbol: str, now_ns: int,
                   was_live: bool) -> list[Event]:
        """The new keeper's whole book as a snapshot at ``now_ns``, continuing the old keeper's
        ``msg_id`` and top-of-book state."""
        st_new = kn.state(symbol)
        st_old = ko.states.get(symbol)
        if st_old is not None:
            st_new.msg_id = max(st_new.msg_id, st_old.msg_id)
        st_new.last_tob = st_old.last_tob if (st_old is not None and was_live) else None
        book = st_new.book
        bids = book.top_bids(len(book.bids))
        asks = book.top_asks(len(book.asks))
        bid_text = ask_text = None
        btext, atext = book.bid_text, book.ask_text
        if btext is not None and atext is not None:
            # kept as "price:size"; the keeper takes (price, size) pairs
            bid_text = [_wire_pair(btext[p]) for p, _ in bids]
            ask_text = [_wire_pair(atext[p]) for p, _ in asks]
        return kn.snapshot(symbol, bids, asks, ts_local=now_ns, ts_exchange=None,
                           seq=st_new.seq, bid_text=bid_text, ask_text=ask_text)


def _wire_pair(text: str) -> tuple[str, str]:
    price, _, size = text.partition(":")
    return price, size


def _tob_kept(protos: Sequence[ExchangeProtocol], symbol: str) -> bool:
    """A keeper of these protocols publishes ``symbol``'s top of book."""
    return any(k.publish_tob and symbol in k.states for p in protos for k in p.keepers)


__all__ = ["HANDOVER", "Handover"]
