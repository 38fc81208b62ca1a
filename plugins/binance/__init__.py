"""Binance USD-M futures; registers :class:`~plugins.binance.protocol.BinanceProtocol` and its
fake venue :class:`~plugins.binance.fake.BinanceSpeaker`.

Registration only: importing this package starts nothing and does no I/O.
"""

from __future__ import annotations

from collections.abc import Callable

from core import hookimpl
from core.protocol import ExchangeProtocol
from core.sim.speaker import VenueSpeaker
from plugins.binance.fake import BinanceSpeaker
from plugins.binance.protocol import BinanceProtocol


@hookimpl
def bookwire_register_exchanges(register: Callable[[type[ExchangeProtocol]], None]) -> None:
    register(BinanceProtocol)


@hookimpl
def bookwire_register_fake_venues(register: Callable[[type[VenueSpeaker]], None]) -> None:
    register(BinanceSpeaker)
