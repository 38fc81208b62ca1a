"""bookwire core: the plugin contract, normalized events, books, sessions, bus and writers.

Public surface for plugin authors::

    from core import hookimpl, ExchangeProtocol, ProtocolConfig, BookKeeper
"""

from core.book import BookKeeper, OrderBook
from core.hookspecs import hookimpl
from core.protocol import ExchangeProtocol, Instrument, ProtocolConfig
from core.schema import BookUpdate, Event, Health, HealthKind, TopOfBook, Trade

__all__ = [
    "BookKeeper",
    "BookUpdate",
    "Event",
    "ExchangeProtocol",
    "Health",
    "HealthKind",
    "Instrument",
    "OrderBook",
    "ProtocolConfig",
    "TopOfBook",
    "Trade",
    "hookimpl",
]
