"""Gate.io USDT futures v4. Registers :class:`plugins.gateio.protocol.GateioProtocol`."""

from __future__ import annotations

from collections.abc import Callable

from core import hookimpl
from core.protocol import ExchangeProtocol
from core.sim.speaker import VenueSpeaker
from plugins.gateio.fake import GateSpeaker
from plugins.gateio.protocol import GateioProtocol


@hookimpl
def bookwire_register_exchanges(register: Callable[[type[ExchangeProtocol]], None]) -> None:
    register(GateioProtocol)


@hookimpl
def bookwire_register_fake_venues(register: Callable[[type[VenueSpeaker]], None]) -> None:
    register(GateSpeaker)
