"""OKX v5 public USDT/USDC-margined perpetual swaps; registers
:class:`~plugins.okx.protocol.OkxProtocol` and its fake venue :class:`~plugins.okx.fake.OkxSpeaker`.

Registration only: importing this package starts nothing and does no I/O.
"""

from __future__ import annotations

from collections.abc import Callable

from core import hookimpl
from core.protocol import ExchangeProtocol
from core.sim.speaker import VenueSpeaker
from plugins.okx.fake import OkxSpeaker
from plugins.okx.protocol import OkxProtocol


@hookimpl
def bookwire_register_exchanges(register: Callable[[type[ExchangeProtocol]], None]) -> None:
    register(OkxProtocol)


@hookimpl
def bookwire_register_fake_venues(register: Callable[[type[VenueSpeaker]], None]) -> None:
    register(OkxSpeaker)
