"""HTX (Huobi) USDT-margined swaps. Registers :class:`plugins.htx.protocol.HtxProtocol`."""

from __future__ import annotations

from collections.abc import Callable

from core import hookimpl
from core.protocol import ExchangeProtocol
from plugins.htx.protocol import HtxProtocol


@hookimpl
def bookwire_register_exchanges(register: Callable[[type[ExchangeProtocol]], None]) -> None:
    register(HtxProtocol)
