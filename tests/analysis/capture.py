"""The real Coinbase capture decoded through the coinbase plugin into ``l2`` and ``trades`` rows in
the column layout :func:`analysis.queue_reactive.analyse` reads (the test skips when the capture
is absent)."""

from __future__ import annotations

from functools import cache

import polars as pl

from core.protocol import ProtocolConfig
from core.schema import BookUpdate, Trade
from core.testing.captures import read_records
from core.writers.tables import TableBuffer
from plugins.coinbase.protocol import CoinbaseProtocol
from tests.conftest import sample


@cache
def _decoded() -> tuple[pl.DataFrame, pl.DataFrame]:
    path = sample("coinbase", "COINBASE.jsonl.gz")
    proto = CoinbaseProtocol(ProtocolConfig(symbols=("BTC-USD", "ETH-USD"),
                                            channels=("l2", "trades")))
    l2, trades = TableBuffer("l2", 0.0), TableBuffer("trades", 0.0)
    for rec in read_records(path):
        if rec.kind == "open":
            proto.connection_made(rec.ts_ns)
            proto.frames_to_send()
        elif rec.kind == "recv" and rec.frame is not None:
            for e in proto.receive(rec.frame, rec.ts_ns):
                if isinstance(e, BookUpdate):
                    l2.add(e)
                elif isinstance(e, Trade):
                    trades.add(e)
    return l2.to_frame(), trades.to_frame()


def coinbase_tables(symbol: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    l2, trades = _decoded()
    l2_rows = (l2.filter(pl.col("symbol") == symbol).with_row_index("_row")
               .sort("ts_local", "msg_id", "_row")
               .select(pl.col("ts_local").cast(pl.Int64).alias("order"),
                       pl.col("ts_exchange").cast(pl.Int64).alias("ts_ex"), "msg_id",
                       (pl.col("side") == "ask").alias("is_ask"), "price", "size",
                       "is_snapshot"))
    tr_rows = trades.filter(pl.col("symbol") == symbol).select(
        pl.col("ts_local").cast(pl.Int64).alias("order"),
        pl.col("ts_exchange").cast(pl.Int64).alias("ts_ex"), "price", "size",
        (pl.col("side") == "buy").alias("maker_is_ask"))
    return l2_rows, tr_rows
