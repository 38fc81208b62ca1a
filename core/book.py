"""Pure L2 order books and the per-symbol bookkeeping every venue plugin shares.

:class:`OrderBook` is one price-level book with absolute sizes. Both sides are kept as a dict
(price -> size) plus a sorted key list arranged so that the best price is always at the *end* of
the list: updates near the touch, which are most of them, move little memory, and the best bid and
ask are read in O(1) instead of by scanning levels.

:class:`BookKeeper` owns the books of one venue connection and enforces the rules that keep a
published book trustworthy, whatever the venue:

* nothing is published for a symbol before its snapshot;
* an update applies only when the venue's sequencing rule says it follows the book's last update
  (the plugin expresses its rule as ``prev_seq``: the sequence the book must be at);
* a sequence break, a checksum mismatch or a crossed book makes the book invalid, emits a
  ``health`` event, and asks the plugin to resync that symbol only;
* a symbol whose snapshot does not arrive in time is reported (``no_snapshot``) and retried with a
  growing delay.

Pure: no trio, no clock reads, no I/O. Times are the ``ts_local`` values the caller passes in.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from core.codec import FLOAT_MAX, S_NS, BadValue
from core.schema import BookUpdate, Event, Health, HealthKind, Level, TopOfBook


class OrderBook:
    """One symbol's L2 book. Sizes are absolute; a size of 0 removes the level.

    With ``keep_text`` the venue's wire text of each level (``"price:size"``) is kept in lists
    aligned with the sorted keys, so a checksum over the best levels reads them with one C-level
    slice instead of a lookup per level.
    """

    __slots__ = ("_ask_keys", "_ask_text", "_bid_keys", "_bid_text", "asks", "bids")

    def __init__(self, keep_text: bool = False) -> None:
        self.bids: dict[float, float] = {}
        self.asks: dict[float, float] = {}
        # bids ascending (best = last); asks stored as negated prices ascending (best = last).
        self._bid_keys: list[float] = []
        self._ask_keys: list[float] = []
        # Wire text aligned with the keys above, kept only for venues that checksum it.
        self._bid_text: list[str] | None = [] if keep_text else None
        self._ask_text: list[str] | None = [] if keep_text else None

    @property
    def keeps_text(self) -> bool:
        return self._bid_text is not None

    @property
    def bid_text(self) -> dict[float, str] | None:
        """Price -> ``"price:size"`` wire text of every bid (None without ``keep_text``)."""
        if self._bid_text is None:
            return None
        return dict(zip(self._bid_keys, self._bid_text, strict=True))

    @property
    def ask_text(self) -> dict[float, str] | None:
        if self._ask_text is None:
            return None
        return {-k: t for k, t in zip(self._ask_keys, self._ask_text, strict=True)}

    def clear(self) -> None:
        self.bids.clear()
        self.asks.clear()
        self._bid_keys.clear()
        self._ask_keys.clear()
        if self._bid_text is not None and self._ask_text is not None:
            self._bid_text.clear()
            self._ask_text.clear()

    def replace(
        self,
        bids: Iterable[Level],
        asks: Iterable[Level],
        bid_text: Sequence[Sequence[str]] | None = None,
        ask_text: Sequence[Sequence[str]] | None = None,
    ) -> None:
        """Replace the whole book (a snapshot). Zero-size levels in a snapshot are ignored.
        ``bid_text``/``ask_text`` are the same levels' wire text, in the same order: rows whose
        first two fields are the price and size text (further fields are not kept)."""
        self.clear()
        if self._bid_text is not None and self._ask_text is not None:
            if bid_text is None or ask_text is None:
                raise ValueError("this book keeps wire text: pass bid_text and ask_text")
            btext = {p: f"{t[0]}:{t[1]}" for (p, s), t in zip(bids, bid_text, strict=True)
                     if s > 0}
            atext = {p: f"{t[0]}:{t[1]}" for (p, s), t in zip(asks, ask_text, strict=True)
                     if s > 0}
            self.bids.update((p, s) for p, s in bids if s > 0)
            self.asks.update((p, s) for p, s in asks if s > 0)
            self._bid_keys = sorted(self.bids)
            self._ask_keys = sorted(-p for p in self.asks)
            self._bid_text = [btext[k] for k in self._bid_keys]
            self._ask_text = [atext[-k] for k in self._ask_keys]
            return
        self.bids.update((p, s) for p, s in bids if s > 0)
        self.asks.update((p, s) for p, s in asks if s > 0)
        self._bid_keys = sorted(self.bids)
        self._ask_keys = sorted(-p for p in self.asks)

    def set_bid(self, price: float, size: float, text: tuple[str, str] | None = None) -> None:
        self.apply(((price, size),), (), None if text is None else (text,),
                   None if text is None else ())

    def set_ask(self, price: float, size: float, text: tuple[str, str] | None = None) -> None:
        self.apply((), ((price, size),), None if text is None else (),
                   None if text is None else (text,))

    def apply(
        self,
        bids: Iterable[Level],
        asks: Iterable[Level],
        bid_text: Sequence[Sequence[str]] | None = None,
        ask_text: Sequence[Sequence[str]] | None = None,
    ) -> None:
        """Apply absolute-size updates to both sides."""
        if self._bid_text is not None and self._ask_text is not None:
            if bid_text is None or ask_text is None:
                raise ValueError("this book keeps wire text: pass bid_text and ask_text")
            _apply_text(self.bids, self._bid_keys, self._bid_text, bids, bid_text, 1.0)
            _apply_text(self.asks, self._ask_keys, self._ask_text, asks, ask_text, -1.0)
            return
        _apply_plain(self, bids, asks)

    def apply_scaled(self, bids: Iterable[Level], asks: Iterable[Level], mul: float,
                     div: float) -> tuple[tuple[Level, ...], tuple[Level, ...]]:
        """:meth:`apply` for sizes that arrive in contracts: every size becomes ``s * mul /
        div`` (base units; see the plugins' contract scales) in the same pass that applies it.
        Returns the converted levels, in the order given (what the update publishes). A size
        that the conversion would take past the largest float is :class:`core.codec.BadValue`,
        raised before anything is applied."""
        if self._bid_text is not None:
            raise ValueError("a book that keeps wire text is updated with apply()")
        if mul > div:  # sizes grow: a huge count could overflow to inf
            bids, asks = tuple(bids), tuple(asks)
            _check_scalable(bids, FLOAT_MAX / mul * div)
            _check_scalable(asks, FLOAT_MAX / mul * div)
        out_bids: list[Level] = []
        sizes = self.bids
        keys = self._bid_keys
        for p, s in bids:
            s = s * mul / div
            out_bids.append((p, s))
            if s > 0:
                if p not in sizes:
                    insort(keys, p)
                sizes[p] = s
            elif p in sizes:
                del sizes[p]
                del keys[bisect_left(keys, p)]
        out_asks: list[Level] = []
        sizes = self.asks
        keys = self._ask_keys
        for p, s in asks:
            s = s * mul / div
            out_asks.append((p, s))
            if s > 0:
                if p not in sizes:
                    insort(keys, -p)
                sizes[p] = s
            elif p in sizes:
                del sizes[p]
                del keys[bisect_left(keys, -p)]
        return tuple(out_bids), tuple(out_asks)

    def best_bid(self) -> Level | None:
        if not self._bid_keys:
            return None
        p = self._bid_keys[-1]
        return p, self.bids[p]

    def best_ask(self) -> Level | None:
        if not self._ask_keys:
            return None
        p = -self._ask_keys[-1]
        return p, self.asks[p]

    def top_bids(self, n: int) -> list[Level]:
        """Best ``n`` bids, best first."""
        keys = self._bid_keys[-n:] if n else []
        return [(p, self.bids[p]) for p in reversed(keys)]

    def top_asks(self, n: int) -> list[Level]:
        """Best ``n`` asks, best first."""
        keys = self._ask_keys[-n:] if n else []
        return [(-k, self.asks[-k]) for k in reversed(keys)]

    def top_text(self, n: int) -> tuple[list[str], list[str]]:
        """Wire text (``"price:size"``) of the best ``n`` bids and asks, best first (the book
        must keep text)."""
        if self._bid_text is None or self._ask_text is None:
            raise ValueError("the book keeps no wire text (create it with keep_text=True)")
        stop = -n - 1 if n else None
        return self._bid_text[:stop:-1], self._ask_text[:stop:-1]

    def is_crossed(self) -> bool:
        """True when the best bid is at or above the best ask (crossed or locked)."""
        if not self._bid_keys or not self._ask_keys:
            return False
        return self._bid_keys[-1] >= -self._ask_keys[-1]

    def __len__(self) -> int:
        return len(self.bids) + len(self.asks)


def _apply_plain(book: OrderBook, bids: Iterable[Level], asks: Iterable[Level]) -> None:
    """:meth:`OrderBook.apply` of a book without wire text, for the keeper's hot path (a plain
    function: no method lookup, no text checks)."""
    sizes = book.bids
    keys = book._bid_keys
    for p, s in bids:
        if s > 0:
            if p not in sizes:
                insort(keys, p)
            sizes[p] = s
        elif p in sizes:
            del sizes[p]
            del keys[bisect_left(keys, p)]
    sizes = book.asks
    keys = book._ask_keys
    for p, s in asks:
        if s > 0:
            if p not in sizes:
                insort(keys, -p)
            sizes[p] = s
        elif p in sizes:
            del sizes[p]
            del keys[bisect_left(keys, -p)]


def _apply_text(sizes: dict[float, float], keys: list[float], texts: list[str],
                levels: Iterable[Level], wire: Sequence[Sequence[str]], sign: float) -> None:
    """Apply one side's levels, keeping ``texts`` aligned with ``keys`` (``sign`` -1.0 for asks,
    whose keys are negated prices)."""
    for (p, s), t in zip(levels, wire, strict=True):
        # (sizes holds exactly the prices of keys: a dict lookup is cheaper than comparing keys)
        if s > 0:
            if p in sizes:
                texts[bisect_left(keys, p * sign)] = f"{t[0]}:{t[1]}"
            else:
                k = p * sign
                i = bisect_left(keys, k)
                keys.insert(i, k)
                texts.insert(i, f"{t[0]}:{t[1]}")
            sizes[p] = s
        elif p in sizes:
            i = bisect_left(keys, p * sign)
            del sizes[p]
            del keys[i]
            del texts[i]


# A venue checksum: given the book after an update, is it the book the venue has?
ChecksumCheck = Callable[[OrderBook], bool]


@dataclass(slots=True)
class SymbolState:
    """Bookkeeping for one symbol on one connection."""

    book: OrderBook
    live: bool = False
    seq: int | None = None
    ever_live: bool = False
    invalid_reason: str = ""
    skipped: int = 0
    msg_id: int = 0
    last_tob: tuple[float | None, float | None, float | None, float | None] | None = None
    snapshot_due_ns: int | None = None
    snapshot_wait_s: float = 0.0


@dataclass
class BookKeeper:
    """The books of one venue connection, with the publication rules in the module docstring.

    ``publish_tob``/``publish_l2`` choose what this keeper turns into events: a venue may keep one
    keeper for a fast top-of-book stream and another for its depth stream.
    """

    exchange: str
    publish_tob: bool = True
    publish_l2: bool = True
    keep_text: bool = False
    snapshot_timeout_s: float = 15.0
    snapshot_timeout_max_s: float = 300.0
    states: dict[str, SymbolState] = field(default_factory=dict)
    #: symbols waiting for a fresh snapshot (the protocol base class drains it into resync())
    pending_resyncs: list[str] = field(default_factory=list)
    # the earliest snapshot deadline, recomputed only after a deadline changed: the session asks
    # for it after every frame, so it must not cost a walk over every symbol
    _due: int | None = None
    _due_dirty: bool = False

    def state(self, symbol: str) -> SymbolState:
        st = self.states.get(symbol)
        if st is None:
            st = self.states[symbol] = SymbolState(OrderBook(self.keep_text))
            st.snapshot_wait_s = self.snapshot_timeout_s
        return st

    def book(self, symbol: str) -> OrderBook:
        return self.state(symbol).book

    def is_live(self, symbol: str) -> bool:
        st = self.states.get(symbol)
        return st is not None and st.live

    def last_seq(self, symbol: str) -> int | None:
        st = self.states.get(symbol)
        return None if st is None else st.seq

    # -- snapshots and deltas ---------------------------------------------------------------

    def snapshot(
        self,
        symbol: str,
        bids: Sequence[Level],
        asks: Sequence[Level],
        *,
        ts_local: int,
        ts_exchange: int | None,
        seq: int | None,
        bid_text: Sequence[Sequence[str]] | None = None,
        ask_text: Sequence[Sequence[str]] | None = None,
        checksum: ChecksumCheck | None = None,
    ) -> list[Event]:
        """Replace the book of ``symbol`` and publish it."""
        st = self.state(symbol)
        st.book.replace(bids, asks, bid_text, ask_text)
        events: list[Event] = []
        was_live = st.live
        st.seq = seq
        if st.snapshot_due_ns is not None:
            st.snapshot_due_ns = None
            self._due_dirty = True
        st.snapshot_wait_s = self.snapshot_timeout_s
        if checksum is not None and not checksum(st.book):
            self._invalidate(st, symbol, HealthKind.CHECKSUM_MISMATCH, f"snapshot seq={seq}",
                             ts_local, events)
            return events
        if st.book.is_crossed():
            self._invalidate(st, symbol, HealthKind.CROSSED, _crossed_detail(st.book, seq),
                             ts_local, events)
            return events
        st.live = True
        if not was_live:
            if st.invalid_reason:
                detail = f"after {st.invalid_reason}; {st.skipped} updates skipped; seq={seq}"
                events.append(self._health(symbol, HealthKind.RESYNCED, detail, ts_local))
            else:
                events.append(self._health(symbol, HealthKind.SNAPSHOT,
                                           f"levels={len(st.book)} seq={seq}", ts_local))
            st.invalid_reason = ""
            st.skipped = 0
            st.ever_live = True
        self._publish(st, symbol, True, bids, asks, ts_local, ts_exchange, seq, events)
        return events

    def delta(
        self,
        symbol: str,
        bids: Sequence[Level],
        asks: Sequence[Level],
        *,
        ts_local: int,
        ts_exchange: int | None,
        seq: int | None,
        prev_seq: int | None = None,
        bid_text: Sequence[Sequence[str]] | None = None,
        ask_text: Sequence[Sequence[str]] | None = None,
        checksum: ChecksumCheck | None = None,
        scale: tuple[float, float] | None = None,
    ) -> list[Event]:
        """Apply an update whose rule says the book must be at ``prev_seq`` (None: no check).

        ``scale`` = ``(mul, div)``: the sizes are contract counts, converted to base units
        (``s * mul / div``) while they are applied (:meth:`OrderBook.apply_scaled`); the
        published levels are the converted ones."""
        st = self.states.get(symbol) or self.state(symbol)
        if not st.live:
            st.skipped += 1
            return []
        events: list[Event] = []
        if prev_seq is not None and st.seq != prev_seq:
            self._invalidate(st, symbol, HealthKind.GAP,
                             f"book at seq={st.seq}, update needs {prev_seq} (seq={seq})",
                             ts_local, events)
            return events
        book = st.book
        if scale is not None:
            bids, asks = book.apply_scaled(bids, asks, scale[0], scale[1])
        elif book._bid_text is None:
            _apply_plain(book, bids, asks)
        else:
            book.apply(bids, asks, bid_text, ask_text)
        if seq is not None:
            st.seq = seq
        if checksum is not None and not checksum(book):
            self._invalidate(st, symbol, HealthKind.CHECKSUM_MISMATCH, f"seq={seq}", ts_local,
                             events)
            return events
        bk, ak = book._bid_keys, book._ask_keys
        if bk and ak and bk[-1] >= -ak[-1]:  # crossed or locked (is_crossed, inlined)
            self._invalidate(st, symbol, HealthKind.CROSSED, _crossed_detail(book, seq),
                             ts_local, events)
            return events
        if self.publish_l2 and not self.publish_tob and (bids or asks):
            # the l2-only keeper's publication, inlined (the common hot path; see _publish)
            msg_id = st.msg_id + 1
            if msg_id < ts_local:
                msg_id = ts_local
            st.msg_id = msg_id
            events.append(BookUpdate(
                exchange=self.exchange, ts_local=ts_local, symbol=symbol, ts_exchange=ts_exchange,
                seq=seq, msg_id=msg_id, is_snapshot=False,
                bids=bids if type(bids) is tuple else tuple(bids),
                asks=asks if type(asks) is tuple else tuple(asks)))
            return events
        self._publish(st, symbol, False, bids, asks, ts_local, ts_exchange, seq, events)
        return events

    def invalidate(self, symbol: str, kind: str, detail: str, ts_local: int) -> list[Event]:
        """Mark ``symbol`` untrusted (a plugin-detected break) and request a resync."""
        events: list[Event] = []
        self._invalidate(self.state(symbol), symbol, kind, detail, ts_local, events)
        return events

    def connection_lost(self) -> None:
        """Every book becomes untrusted until its next snapshot; no resync requests (the session
        reconnects and resubscribes everything)."""
        for st in self.states.values():
            st.live = False
            st.seq = None
            st.last_tob = None
            st.snapshot_due_ns = None
            if not st.invalid_reason and st.ever_live:
                st.invalid_reason = "disconnect"
        self.pending_resyncs.clear()
        self._due, self._due_dirty = None, False

    def wants_resync(self) -> bool:
        """True when :meth:`take_resyncs` has symbols to hand out (no allocation)."""
        return bool(self.pending_resyncs)

    def take_resyncs(self) -> list[str]:
        """Symbols that need a fresh snapshot (drained by the plugin into resubscribe frames)."""
        out, self.pending_resyncs = self.pending_resyncs, []
        return out

    # -- snapshot deadlines -----------------------------------------------------------------

    def expect_snapshot(self, symbol: str, now_ns: int) -> None:
        """A subscription (or resubscription) for ``symbol`` was just sent."""
        st = self.state(symbol)
        st.snapshot_due_ns = now_ns + int(st.snapshot_wait_s * S_NS)
        self._due_dirty = True

    def forget(self, symbol: str) -> None:
        """Stop waiting for ``symbol``'s snapshot (the venue rejected its subscription)."""
        st = self.states.get(symbol)
        if st is not None and st.snapshot_due_ns is not None:
            st.snapshot_due_ns = None
            self._due_dirty = True

    def next_deadline(self) -> int | None:
        if self._due_dirty:
            due = [st.snapshot_due_ns for st in self.states.values()
                   if st.snapshot_due_ns is not None]
            self._due = min(due) if due else None
            self._due_dirty = False
        return self._due

    def overdue(self, now_ns: int) -> list[Event]:
        """Report symbols whose snapshot is late and queue a retry with a doubled wait."""
        events: list[Event] = []
        for symbol, st in self.states.items():
            if st.snapshot_due_ns is None or now_ns < st.snapshot_due_ns:
                continue
            if st.live:  # the book is valid: nothing is overdue, and the deadline must not linger
                st.snapshot_due_ns = None
                self._due_dirty = True
                continue
            events.append(self._health(
                symbol, HealthKind.NO_SNAPSHOT,
                f"no snapshot within {st.snapshot_wait_s:g} s; retrying", now_ns))
            st.snapshot_due_ns = None
            self._due_dirty = True
            st.snapshot_wait_s = min(st.snapshot_wait_s * 2, self.snapshot_timeout_max_s)
            if symbol not in self.pending_resyncs:
                self.pending_resyncs.append(symbol)
        return events

    # -- internals ---------------------------------------------------------------------------

    def _health(self, symbol: str, kind: str, detail: str, ts_local: int) -> Health:
        return Health(exchange=self.exchange, ts_local=ts_local, symbol=symbol, event=kind,
                      detail=detail)

    def _invalidate(self, st: SymbolState, symbol: str, kind: str, detail: str, ts_local: int,
                    events: list[Event]) -> None:
        st.live = False
        st.invalid_reason = kind
        st.skipped = 0
        st.last_tob = None
        st.book.clear()
        events.append(self._health(symbol, kind, detail, ts_local))
        if symbol not in self.pending_resyncs:
            self.pending_resyncs.append(symbol)

    def _publish(self, st: SymbolState, symbol: str, is_snapshot: bool, bids: Sequence[Level],
                 asks: Sequence[Level], ts_local: int, ts_exchange: int | None,
                 seq: int | None, events: list[Event]) -> None:
        if self.publish_l2 and (is_snapshot or bids or asks):
            # Unique and increasing per (venue, symbol) across reconnects, connector restarts
            # and runs writing into the same dataset: the receive time, raised by one where a
            # message arrives in the same nanosecond as the previous one (docs/data.md).
            msg_id = st.msg_id + 1
            if msg_id < ts_local:
                msg_id = ts_local
            st.msg_id = msg_id
            events.append(BookUpdate(
                exchange=self.exchange, ts_local=ts_local, symbol=symbol, ts_exchange=ts_exchange,
                seq=seq, msg_id=msg_id, is_snapshot=is_snapshot,
                bids=bids if type(bids) is tuple else tuple(bids),
                asks=asks if type(asks) is tuple else tuple(asks)))
        if self.publish_tob:
            book = st.book
            bk, ak = book._bid_keys, book._ask_keys
            bid_px: float | None
            bid_sz: float | None
            ask_px: float | None
            ask_sz: float | None
            if bk:
                bp = bk[-1]
                bid_px, bid_sz = bp, book.bids[bp]
            else:
                bid_px = bid_sz = None
            if ak:
                ap = -ak[-1]
                ask_px, ask_sz = ap, book.asks[ap]
            else:
                ask_px = ask_sz = None
            top = (bid_px, bid_sz, ask_px, ask_sz)
            if top != st.last_tob:
                st.last_tob = top
                events.append(TopOfBook(
                    exchange=self.exchange, ts_local=ts_local, symbol=symbol,
                    ts_exchange=ts_exchange, bid_px=bid_px, bid_sz=bid_sz, ask_px=ask_px,
                    ask_sz=ask_sz, seq=seq))


def _crossed_detail(book: OrderBook, seq: int | None) -> str:
    bb, ba = book.best_bid(), book.best_ask()
    return f"best bid {bb[0] if bb else None} >= best ask {ba[0] if ba else None} (seq={seq})"


def _check_scalable(levels: Sequence[Level], limit: float) -> None:
    for _, s in levels:
        if s > limit:
            raise BadValue(f"size {s!r} overflows once converted to base units")
