"""Coinbase Advanced Trade public market data. Registers
:class:`plugins.coinbase.protocol.CoinbaseProtocol` (venue name ``coinbase``)."""

from __future__ import annotations

from collections.abc import Callable

from core import hookimpl
from core.protocol import ExchangeProtocol
from core.sim.speaker import VenueSpeaker
from plugins.coinbase.fake import CoinbaseSpeaker
from plugins.coinbase.protocol import CoinbaseProtocol


@hookimpl
def bookwire_register_exchanges(register: Callable[[type[ExchangeProtocol]], None]) -> None:
    register(CoinbaseProtocol)


@hookimpl
def bookwire_register_fake_venues(register: Callable[[type[VenueSpeaker]], None]) -> None:
    register(CoinbaseSpeaker)
