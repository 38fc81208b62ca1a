"""Gate.io USDT futures v4. Registers :class:`plugins.gateio.protocol.GateioProtocol`."""

from __future__ import annotations

from collections.abc import Callable

from core import hookimpl
from core.protocol import ExchangeProtocol
from plugins.gateio.protocol import GateioProtocol


@hookimpl
def bookwire_register_exchanges(register: Callable[[type[ExchangeProtocol]], None]) -> None:
    register(GateioProtocol)
