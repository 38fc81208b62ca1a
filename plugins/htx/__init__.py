"""HTX (Huobi) USDT-margined swaps. Registers :class:`plugins.htx.protocol.HtxProtocol`."""

from __future__ import annotations

from collections.abc import Callable

from core import hookimpl
from core.protocol import ExchangeProtocol
from core.sim.speaker import VenueSpeaker
from plugins.htx.fake import HtxSpeaker
from plugins.htx.protocol import HtxProtocol


@hookimpl
def bookwire_register_exchanges(register: Callable[[type[ExchangeProtocol]], None]) -> None:
    register(HtxProtocol)


@hookimpl
def bookwire_register_fake_venues(register: Callable[[type[VenueSpeaker]], None]) -> None:
    register(HtxSpeaker)
