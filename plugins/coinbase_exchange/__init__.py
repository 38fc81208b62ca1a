"""Coinbase Exchange legacy public feed. Registers
:class:`plugins.coinbase_exchange.protocol.CoinbaseExchangeProtocol` (venue name
``coinbase-exchange``)."""

from __future__ import annotations

from collections.abc import Callable

from core import hookimpl
from core.protocol import ExchangeProtocol
from core.sim.speaker import VenueSpeaker
from plugins.coinbase_exchange.fake import ExchangeSpeaker
from plugins.coinbase_exchange.protocol import CoinbaseExchangeProtocol


@hookimpl
def bookwire_register_exchanges(register: Callable[[type[ExchangeProtocol]], None]) -> None:
    register(CoinbaseExchangeProtocol)


@hookimpl
def bookwire_register_fake_venues(register: Callable[[type[VenueSpeaker]], None]) -> None:
    register(ExchangeSpeaker)
