"""Bybit v5 public linear perpetuals. Registers :class:`plugins.bybit.protocol.BybitProtocol`
and its fake venue :class:`plugins.bybit.fake.BybitSpeaker`."""

from __future__ import annotations

from collections.abc import Callable

from core import hookimpl
from core.protocol import ExchangeProtocol
from core.sim.speaker import VenueSpeaker
from plugins.bybit.fake import BybitSpeaker
from plugins.bybit.protocol import BybitProtocol


@hookimpl
def bookwire_register_exchanges(register: Callable[[type[ExchangeProtocol]], None]) -> None:
    register(BybitProtocol)


@hookimpl
def bookwire_register_fake_venues(register: Callable[[type[VenueSpeaker]], None]) -> None:
    register(BybitSpeaker)
