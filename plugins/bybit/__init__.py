"""Bybit v5 public linear perpetuals. Registers :class:`plugins.bybit.protocol.BybitProtocol`."""

from __future__ import annotations

from collections.abc import Callable

from core import hookimpl
from core.protocol import ExchangeProtocol
from plugins.bybit.protocol import BybitProtocol


@hookimpl
def bookwire_register_exchanges(register: Callable[[type[ExchangeProtocol]], None]) -> None:
    register(BybitProtocol)
