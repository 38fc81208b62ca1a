"""An out-of-tree bookwire venue plugin: Binance USD-M futures ``bookTicker`` and ``aggTrade``."""

from __future__ import annotations

from collections.abc import Callable

from bookwire_binance.protocol import BinanceFuturesProtocol
from core import hookimpl
from core.protocol import ExchangeProtocol


@hookimpl
def bookwire_register_exchanges(register: Callable[[type[ExchangeProtocol]], None]) -> None:
    register(BinanceFuturesProtocol)
