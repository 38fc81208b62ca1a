"""Bitget v2 public USDT futures; registers :class:`~plugins.bitget.protocol.BitgetProtocol`.

Registration only: importing this package starts nothing and does no I/O.
"""

from __future__ import annotations

from collections.abc import Callable

from core import hookimpl
from core.protocol import ExchangeProtocol
from core.sim.speaker import VenueSpeaker
from plugins.bitget.fake import BitgetSpeaker
from plugins.bitget.protocol import BitgetProtocol


@hookimpl
def bookwire_register_exchanges(register: Callable[[type[ExchangeProtocol]], None]) -> None:
    register(BitgetProtocol)


@hookimpl
def bookwire_register_fake_venues(register: Callable[[type[VenueSpeaker]], None]) -> None:
    register(BitgetSpeaker)
