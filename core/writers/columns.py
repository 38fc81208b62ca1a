"""Columnar row buffers: events in, typed column arrays out, a polars frame built off the loop.

One buffer holds the rows of one (table, venue, date) partition. Adding an event appends its
values to ``array.array`` columns (8 bytes per number, no Python object per row); values shared
by every row of one event (an ``l2`` message's time, symbol, sequence and msg_id) are stored once
per event and repeated only when the frame is built. Price levels are copied with one C-level
``extend`` per side. :meth:`build` turns the arrays into a polars frame through numpy views; it is
called in a worker thread and spends its time in numpy and polars code that does not hold the GIL
for long, so the event loop keeps running while a flush is prepared.

Nulls: a float column uses NaN (values are checked finite where they enter, so NaN never is a
value); an integer column uses ``NULL_INT`` (Int64's minimum, outside every checked range).

An event whose values do not fit its columns (a plugin that bypassed the checked wire types) is
rejected with :class:`RowRejected` and leaves the buffer exactly as it was.

Must not: do I/O, or keep references to the events it was given.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Callable, Hashable
from itertools import chain
from typing import Final, cast

import numpy as np
import polars as pl

from core.schema import BookUpdate, Event, TopOfBook, Trade
from core.tables import TS, Table

NULL_INT: Final = -(1 << 63)
NAN: Final = math.nan
SIDES: Final = ("bid", "ask")
TRADE_SIDES: Final = {"buy": 0, "sell": 1}
#: estimated bytes per stored value, for the writer's memory accounting
_NUMBER_BYTES = 8


class RowRejected(ValueError):
    """An event whose values no column of its table can hold."""


class Codes:
    """Small dictionary encoding for repeated strings (symbols)."""

    __slots__ = ("codes", "values")

    def __init__(self) -> None:
        self.codes: dict[str, int] = {}
        self.values: list[str] = []

    def __call__(self, value: str) -> int:
        code = self.codes.get(value)
        if code is None:
            if not isinstance(value, str):
                raise TypeError(f"expected a string, got {type(value).__name__}")
            code = self.codes[value] = len(self.values)
            self.values.append(value)
        return code

    def decode(self, name: str, codes: array[int]) -> pl.Series:
        idx = pl.Series(name, np.frombuffer(codes, dtype=np.int32), dtype=pl.Int32())
        return pl.Series(name, self.values, dtype=pl.String()).gather(idx)


def _ints(name: str, values: array[int], dtype: pl.DataType) -> pl.Series:
    arr = np.frombuffer(values, dtype=np.int64)
    s = pl.Series(name, arr, dtype=pl.Int64())
    nulls = np.flatnonzero(arr == NULL_INT)
    if nulls.size:
        s = s.scatter(nulls, None)
    return s.cast(dtype) if dtype != pl.Int64() else s


def _floats(name: str, values: np.ndarray) -> pl.Series:
    return pl.Series(name, values, dtype=pl.Float64()).fill_nan(None)


class ColumnBuffer:
    """Base: counts rows and events, tracks the first add and estimates its memory."""

    __slots__ = ("counted", "events", "exchange", "first_added", "rows", "table", "tokens")

    def __init__(self, table: Table, exchange: str, first_added: float) -> None:
        self.table = table
        self.exchange = exchange
        self.first_added = first_added
        self.rows = 0
        self.events = 0
        self.counted = 0  # events that came from the bus (the writer's own rows are not)
        self.tokens: list[Hashable] = []  # whose rows it holds (ParquetWriter.add's token)

    @property
    def nbytes(self) -> int:
        raise NotImplementedError

    def add(self, e: Event) -> None:
        raise NotImplementedError

    def build(self) -> pl.DataFrame:
        raise NotImplementedError

    def _frame(self, columns: dict[str, pl.Series]) -> pl.DataFrame:
        """Columns in schema order, the partition's ``exchange`` filled in, types exact."""
        n = self.rows
        out = []
        for name, dtype in self.table.schema.items():
            s = columns.get(name)
            if s is None:
                if name != "exchange":
                    raise KeyError(f"no column {name!r} for table {self.table.name!r}")
                s = pl.Series(name, [self.exchange], dtype=pl.String()).new_from_index(0, n)
            out.append(s if s.dtype == dtype else s.cast(dtype))
        return pl.DataFrame(out)


class TobBuffer(ColumnBuffer):
    __slots__ = ("prices", "seq", "sym", "symbols", "ts_exchange", "ts_local")

    def __init__(self, table: Table, exchange: str, first_added: float) -> None:
        super().__init__(table, exchange, first_added)
        self.ts_local: array[int] = array("q")
        self.ts_exchange: array[int] = array("q")
        self.sym: array[int] = array("i")
        self.prices: array[float] = array("d")  # bid_px, bid_sz, ask_px, ask_sz per row
        self.seq: array[int] = array("q")
        self.symbols = Codes()

    @property
    def nbytes(self) -> int:
        return self.rows * 8 * _NUMBER_BYTES

    def add(self, e: Event) -> None:
        assert isinstance(e, TopOfBook)
        n = self.rows
        try:
            self.sym.append(self.symbols(e.symbol))
            self.ts_local.append(e.ts_local)
            tx = e.ts_exchange
            self.ts_exchange.append(NULL_INT if tx is None else tx)
            seq = e.seq
            self.seq.append(NULL_INT if seq is None else seq)
            try:
                # an empty side (None) raises before anything is appended
                self.prices.extend((e.bid_px, e.bid_sz, e.ask_px, e.ask_sz))  # type: ignore[arg-type]
            except TypeError:  # an empty side: None -> NaN (null)
                del self.prices[4 * n:]
                self.prices.extend(NAN if v is None else v
                                   for v in (e.bid_px, e.bid_sz, e.ask_px, e.ask_sz))
        except (TypeError, OverflowError, ValueError) as exc:
            for col in (self.sym, self.ts_local, self.ts_exchange, self.seq):
                del col[n:]
            del self.prices[4 * n:]
            raise RowRejected(f"tob row of {e.exchange} {e.symbol}: {exc}") from exc
        self.rows = n + 1
        self.events += 1

    def build(self) -> pl.DataFrame:
        px = np.frombuffer(self.prices, dtype=np.float64).reshape(-1, 4)
        return self._frame({
            "ts_local": _ints("ts_local", self.ts_local, TS),
            "ts_exchange": _ints("ts_exchange", self.ts_exchange, TS),
            "symbol": self.symbols.decode("symbol", self.sym),
            "bid_px": _floats("bid_px", px[:, 0]), "bid_sz": _floats("bid_sz", px[:, 1]),
            "ask_px": _floats("ask_px", px[:, 2]), "ask_sz": _floats("ask_sz", px[:, 3]),
            "seq": _ints("seq", self.seq, pl.Int64()),
        })


class L2Buffer(ColumnBuffer):
    """Per event: time, symbol, seq, msg_id, snapshot flag and level counts; per level: price
    and size, interleaved, bids then asks."""

    __slots__ = ("levels", "msg_id", "n_asks", "n_bids", "seq", "snap", "sym", "symbols",
                 "ts_exchange", "ts_local")

    def __init__(self, table: Table, exchange: str, first_added: float) -> None:
        super().__init__(table, exchange, first_added)
        self.ts_local: array[int] = array("q")
        self.ts_exchange: array[int] = array("q")
        self.sym: array[int] = array("i")
        self.seq: array[int] = array("q")
        self.msg_id: array[int] = array("q")
        self.snap: array[int] = array("b")
        self.n_bids: array[int] = array("q")
        self.n_asks: array[int] = array("q")
        self.levels: array[float] = array("d")
        self.symbols = Codes()

    @property
    def nbytes(self) -> int:
        return self.events * 7 * _NUMBER_BYTES + self.rows * 2 * _NUMBER_BYTES

    def add(self, e: Event) -> None:
        assert isinstance(e, BookUpdate)
        n = self.events
        nl = len(self.levels)
        try:
            self.sym.append(self.symbols(e.symbol))
            self.ts_local.append(e.ts_local)
            tx = e.ts_exchange
            self.ts_exchange.append(NULL_INT if tx is None else tx)
            seq = e.seq
            self.seq.append(NULL_INT if seq is None else seq)
            self.msg_id.append(e.msg_id)
            self.snap.append(1 if e.is_snapshot else 0)
            nb, na = len(e.bids), len(e.asks)
            self.n_bids.append(nb)
            self.n_asks.append(na)
            self.levels.extend(chain.from_iterable(e.bids))
            self.levels.extend(chain.from_iterable(e.asks))
            if len(self.levels) != nl + 2 * (nb + na):
                raise ValueError("a price level is not a (price, size) pair")
        except (TypeError, OverflowError, ValueError) as exc:
            for col in (self.sym, self.ts_local, self.ts_exchange, self.seq, self.msg_id,
                        self.snap, self.n_bids, self.n_asks):
                del col[n:]
            del self.levels[nl:]
            raise RowRejected(f"l2 row of {e.exchange} {e.symbol}: {exc}") from exc
        self.events = n + 1
        self.rows += nb + na

    def build(self) -> pl.DataFrame:
        per_event = np.frombuffer(self.n_bids, dtype=np.int64) + np.frombuffer(
            self.n_asks, dtype=np.int64)
        sides = np.column_stack([np.frombuffer(self.n_bids, dtype=np.int64),
                                 np.frombuffer(self.n_asks, dtype=np.int64)]).ravel()
        side_codes = np.repeat(np.tile(np.array([0, 1], dtype=np.int8), self.events), sides)
        levels = np.frombuffer(self.levels, dtype=np.float64).reshape(-1, 2)

        idx = pl.Series(np.repeat(np.arange(self.events, dtype=np.int64), per_event))
        return self._frame({
            "ts_local": _ints("ts_local", self.ts_local, TS).gather(idx),
            "ts_exchange": _ints("ts_exchange", self.ts_exchange, TS).gather(idx),
            "symbol": self.symbols.decode("symbol", self.sym).gather(idx),
            "side": pl.Series("side", SIDES, dtype=pl.String()).gather(
                pl.Series(side_codes, dtype=pl.Int8()).cast(pl.UInt32())),
            "price": pl.Series("price", levels[:, 0], dtype=pl.Float64()),
            "size": pl.Series("size", levels[:, 1], dtype=pl.Float64()),
            "is_snapshot": pl.Series("is_snapshot", np.frombuffer(self.snap, dtype=np.int8),
                                     dtype=pl.Int8()).cast(pl.Boolean()).gather(idx),
            "seq": _ints("seq", self.seq, pl.Int64()).gather(idx),
            "msg_id": _ints("msg_id", self.msg_id, pl.Int64()).gather(idx),
        })


class TradeBuffer(ColumnBuffer):
    __slots__ = ("side", "sides", "sym", "symbols", "trade_id", "ts_exchange", "ts_local",
                 "values")

    def __init__(self, table: Table, exchange: str, first_added: float) -> None:
        super().__init__(table, exchange, first_added)
        self.ts_local: array[int] = array("q")
        self.ts_exchange: array[int] = array("q")
        self.sym: array[int] = array("i")
        self.values: array[float] = array("d")  # price, size per row
        self.side: array[int] = array("i")
        self.trade_id: list[str] = []
        self.symbols = Codes()
        self.sides = Codes()

    @property
    def nbytes(self) -> int:
        return self.rows * (6 * _NUMBER_BYTES + 64)  # the trade id is a string

    def add(self, e: Event) -> None:
        assert isinstance(e, Trade)
        n = self.rows
        try:
            if not isinstance(e.trade_id, str):
                raise TypeError(f"trade_id {e.trade_id!r} is not a string")
            self.sym.append(self.symbols(e.symbol))
            self.ts_local.append(e.ts_local)
            tx = e.ts_exchange
            self.ts_exchange.append(NULL_INT if tx is None else tx)
            self.values.extend((e.price, e.size))
            self.side.append(self.sides(e.side))
        except (TypeError, OverflowError, ValueError) as exc:
            for col in (self.sym, self.ts_local, self.ts_exchange, self.side):
                del col[n:]
            del self.values[2 * n:]
            raise RowRejected(f"trade row of {e.exchange} {e.symbol}: {exc}") from exc
        self.trade_id.append(e.trade_id)
        self.rows = n + 1
        self.events += 1

    def build(self) -> pl.DataFrame:
        values = np.frombuffer(self.values, dtype=np.float64).reshape(-1, 2)
        return self._frame({
            "ts_local": _ints("ts_local", self.ts_local, TS),
            "ts_exchange": _ints("ts_exchange", self.ts_exchange, TS),
            "symbol": self.symbols.decode("symbol", self.sym),
            "price": _floats("price", values[:, 0]), "size": _floats("size", values[:, 1]),
            "side": self.sides.decode("side", self.side),
            "trade_id": pl.Series("trade_id", self.trade_id, dtype=pl.String()),
        })


def _checker(dtype: pl.DataType) -> Callable[[object], bool]:
    """Whether a Python value fits a column of ``dtype`` (None: null, always fits)."""
    if dtype == TS or dtype == pl.Int64():
        return lambda v: v is None or (type(v) is int and NULL_INT < v < -NULL_INT)
    if dtype == pl.Float64():
        return lambda v: v is None or (type(v) in (float, int) and math.isfinite(cast("float", v)))
    if dtype == pl.Boolean():
        return lambda v: v is None or type(v) is bool
    if dtype == pl.String():
        return lambda v: v is None or type(v) is str
    return lambda v: True  # other types: polars decides when the frame is built


class RowBuffer(ColumnBuffer):
    """Any one-row-per-event table (health, registered tables): columns are attribute names.
    These tables are small; their values are kept as Python lists, checked as they arrive."""

    __slots__ = ("checks", "cols")

    def __init__(self, table: Table, exchange: str, first_added: float) -> None:
        super().__init__(table, exchange, first_added)
        self.cols: dict[str, list[object]] = {c: [] for c in table.schema if c != "exchange"}
        self.checks = {c: _checker(table.schema[c]) for c in self.cols}

    @property
    def nbytes(self) -> int:
        return self.rows * len(self.cols) * 48

    def add(self, e: Event) -> None:
        values = [(name, getattr(e, name, None)) for name in self.cols]
        bad = [(name, v) for name, v in values if not self.checks[name](v)]
        if bad:
            raise RowRejected(f"{self.table.name} row of {e.exchange}: values that do not fit "
                              f"their columns: {bad!r}"[:500])
        for name, v in values:
            self.cols[name].append(v)
        self.rows += 1
        self.events += 1

    def build(self) -> pl.DataFrame:
        schema = self.table.schema
        columns: dict[str, pl.Series] = {}
        for name, values in self.cols.items():
            dtype = schema[name]
            if dtype == TS:
                columns[name] = pl.Series(name, values, dtype=pl.Int64()).cast(TS)
            else:
                columns[name] = pl.Series(name, values, dtype=dtype)
        return self._frame(columns)


BUFFER_OF_TYPE: Final[dict[type[Event], Callable[[Table, str, float], ColumnBuffer]]] = {
    TopOfBook: TobBuffer, BookUpdate: L2Buffer, Trade: TradeBuffer,
}


def new_buffer(table: Table, exchange: str, first_added: float) -> ColumnBuffer:
    factory = BUFFER_OF_TYPE.get(table.event_type, RowBuffer)
    return factory(table, exchange, first_added)
