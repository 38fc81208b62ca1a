"""Normalized market events: the one vocabulary between plugins, the bus, writers and analyzers.

Every event is a frozen msgspec Struct (hashable, safe to share between consumers). Conventions:

* ``ts_local``: wall-clock UTC time in integer nanoseconds at which the frame that produced the
  event was received, taken before decoding (for timer-driven events: the time the timer fired).
* ``ts_exchange``: the venue's own event/engine time in UTC nanoseconds, ``None`` where the venue
  gives none.
* ``exchange``: the plugin name (``bybit``); ``symbol``: canonical ``BASE-QUOTE`` (``BTC-USDT``).
* Prices are floats in quote currency; sizes are floats in **base-asset units** (contract counts are
  multiplied by the contract size before they get here).
* ``seq``: the venue's sequence/update id of the message, ``None`` where there is none.

This module only defines data; it must not import trio, do I/O or read clocks.
"""

from __future__ import annotations

from typing import Final

import msgspec

# A price level: (price, size). Plain tuples keep the hot path cheap.
Level = tuple[float, float]


class Event(msgspec.Struct, frozen=True, kw_only=True, gc=False, tag_field="kind"):
    """Base of every normalized event."""

    exchange: str
    ts_local: int


class TopOfBook(Event, frozen=True, kw_only=True, gc=False, tag="tob"):
    """Best bid and ask of one symbol; published only when one of the four values changed.

    A side with no level is ``None`` (an empty side is a real state of a thin book).
    """

    symbol: str
    ts_exchange: int | None
    bid_px: float | None
    bid_sz: float | None
    ask_px: float | None
    ask_sz: float | None
    seq: int | None = None


class BookUpdate(Event, frozen=True, kw_only=True, gc=False, tag="l2"):
    """The levels one venue message set, as absolute sizes (0 removes the level).

    ``is_snapshot`` rows replace the whole book. ``msg_id`` increases per (exchange, symbol) within
    a run and is shared by every row of one message.
    """

    symbol: str
    ts_exchange: int | None
    seq: int | None
    msg_id: int
    is_snapshot: bool
    bids: tuple[Level, ...]
    asks: tuple[Level, ...]


class Trade(Event, frozen=True, kw_only=True, gc=False, tag="trade"):
    """One public trade; ``side`` is the taker's side (``buy`` or ``sell``)."""

    symbol: str
    ts_exchange: int | None
    price: float
    size: float
    side: str
    trade_id: str


class Funding(Event, frozen=True, kw_only=True, gc=False, tag="funding"):
    """A perpetual's market context: funding, mark and index prices, open interest.

    Published whenever one of the six values changed. ``funding_rate`` is the rate of one funding
    interval as a fraction (0.0001 = 1 bp; positive: longs pay shorts), for the funding due at
    ``next_funding_time`` (UTC ns); ``funding_interval_s`` is the venue's interval in seconds;
    ``open_interest`` is in base-asset units. Each is ``None`` where the venue gives none.
    """

    symbol: str
    ts_exchange: int | None
    funding_rate: float | None = None
    funding_interval_s: int | None = None
    next_funding_time: int | None = None
    mark_px: float | None = None
    index_px: float | None = None
    open_interest: float | None = None


class Health(Event, frozen=True, kw_only=True, gc=False, tag="health"):
    """Something that happened to the data feed itself; see :class:`HealthKind` for names."""

    symbol: str | None
    event: str
    detail: str = ""


MarketEvent = TopOfBook | BookUpdate | Trade | Funding | Health


class HealthKind:
    """Names used in the ``event`` column of the health table: the one list. Core and the
    built-in plugins emit only these; ``docs/data.md`` describes each of them, and a test checks
    that the docs name no other (a third-party plugin may add names of its own, documented with
    the plugin)."""

    CONNECTED: Final = "connected"
    SUBSCRIBED: Final = "subscribed"
    SUBSCRIBE_ERROR: Final = "subscribe_error"
    SUBSCRIBE_RETRY: Final = "subscribe_retry"  # refused for a transient reason; retried
    DISCONNECTED: Final = "disconnected"
    SNAPSHOT: Final = "snapshot"  # a book became valid (first snapshot on a connection)
    GAP: Final = "gap"
    RESYNCED: Final = "resynced"
    CROSSED: Final = "crossed"
    CHECKSUM_MISMATCH: Final = "checksum_mismatch"
    NO_SNAPSHOT: Final = "no_snapshot"
    TRADE_GAP: Final = "trade_gap"  # trade ids of a product jumped: trades were missed
    NO_INSTRUMENT: Final = "no_instrument"  # a symbol without instrument metadata (contract size)
    VENUE_UPGRADE: Final = "venue_upgrade"  # the venue announced a server upgrade (a restart)
    DECODE_ERROR: Final = "decode_error"
    VENUE_ERROR: Final = "venue_error"
    PLUGIN_ERROR: Final = "plugin_error"
    DROPPED: Final = "dropped"
    WRITE_FAILED: Final = "write_failed"
    HANDOVER: Final = "handover"  # a connection replaced before its age limit, without a gap
    SINK_ERROR: Final = "sink_error"  # a sink's server went away; it reconnects
    STARTED: Final = "started"
    STOPPED: Final = "stopped"
    ROWS_WRITTEN: Final = "rows_written"
    CLOCK_OFFSET: Final = "clock_offset"  # the venue's clock against ours, from its server time


#: every name of :class:`HealthKind`
HEALTH_KINDS: Final = frozenset(v for k, v in vars(HealthKind).items() if k.isupper())

# The trust rule (docs/data.md): a symbol's book is trusted from a TRUST_EVENTS row until a
# SYMBOL_BREAKS row for that symbol or a VENUE_BREAKS row for its venue.
TRUST_EVENTS: Final = frozenset({HealthKind.SNAPSHOT, HealthKind.RESYNCED})
SYMBOL_BREAKS: Final = frozenset({HealthKind.GAP, HealthKind.CHECKSUM_MISMATCH,
                                  HealthKind.CROSSED})
VENUE_BREAKS: Final = frozenset({HealthKind.DISCONNECTED, HealthKind.PLUGIN_ERROR,
                                 HealthKind.DROPPED, HealthKind.STOPPED})

# Names of the channels a user can ask a plugin for, and the table each one fills.
CHANNELS: Final = ("tob", "l2", "trades", "funding")
TABLE_OF_KIND: Final = {"tob": "tob", "l2": "l2", "trade": "trades", "funding": "funding",
                        "health": "health"}
