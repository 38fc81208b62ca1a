"""Kraken spot (websocket v2) for bookwire, out of tree: registers the venue's protocol
(:class:`bookwire_kraken.protocol.KrakenProtocol`) and its fake venue
(:class:`bookwire_kraken.fake.KrakenSpeaker`) through the ``bookwire`` entry point.

Registration only: importing this package starts nothing and does no I/O.
"""

from __future__ import annotations

from collections.abc import Callable

from bookwire_kraken.fake import KrakenSpeaker
from bookwire_kraken.protocol import KrakenProtocol
from core import hookimpl
from core.protocol import ExchangeProtocol
from core.sim.speaker import VenueSpeaker


@hookimpl
def bookwire_register_exchanges(register: Callable[[type[ExchangeProtocol]], None]) -> None:
    register(KrakenProtocol)


@hookimpl
def bookwire_register_fake_venues(register: Callable[[type[VenueSpeaker]], None]) -> None:
    register(KrakenSpeaker)
