"""Hook specifications of the ``bookwire`` pluggy project.

Hooks only *register* things; core runs them (the supervisor starts every async lifecycle). Hook
implementations are plain synchronous functions marked with ``core.hookimpl``.

Must not: start tasks, open sockets or do any I/O at registration time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from core.protocol import ExchangeProtocol
    from core.sim.speaker import VenueSpeaker

PROJECT = "bookwire"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def bookwire_register_exchanges(register: Callable[[type[ExchangeProtocol]], None]) -> None:
    """Register venue protocols.

    Call ``register(ProtocolClass)`` once per venue the plugin provides. The class is an
    :class:`core.protocol.ExchangeProtocol` subclass; its ``name`` is what users pass to
    ``--plugins``. Registering a name twice is an error.

    :param register: callback that records one protocol class.

    .. versionadded:: 0.1
    """


@hookspec
def bookwire_register_fake_venues(register: Callable[[type[VenueSpeaker]], None]) -> None:
    """Register fake venues: the speakers ``--simulate`` and the fault kit serve.

    Call ``register(SpeakerClass)`` once per venue; the class is a
    :class:`core.sim.speaker.VenueSpeaker` subclass whose ``name`` is the venue plugin it fakes.
    Optional: a venue without a speaker simply cannot be simulated.

    :param register: callback that records one speaker class.

    .. versionadded:: 0.2
    """
