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
    from core.consumers import ConsumerSpec
    from core.protocol import ExchangeProtocol
    from core.sim.speaker import VenueSpeaker
    from core.tables import Table

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
def bookwire_register_tables(register: Callable[[Table], None]) -> None:
    """Register output tables.

    Call ``register(Table(name, event_type, schema, description, columns))`` once per table the
    plugin's consumers publish rows for (a live analyzer's output). The table registry is the one
    source of the writer's schemas, the loader's schemas and the tables section of
    ``docs/data.md``. Registering the same table again is harmless; a name or event type
    registered differently is an error.

    :param register: callback that records one :class:`core.tables.Table`.

    .. versionadded:: 0.2
    """


@hookspec
def bookwire_register_consumers(register: Callable[[ConsumerSpec], None]) -> None:
    """Register bus consumers: writers, sinks and live analyzers.

    Call ``register(ConsumerSpec(name, role, policy, factory, ...))`` once per consumer. It
    states the bus policy (``Policy.LOSSLESS`` or ``Policy.CONFLATE``) and event kinds of its
    subscription, the command-line options it adds, and for writers and sinks the ``--sink``
    schemes it serves. Before the first connection the command line calls ``factory(context)``,
    which returns the consumer to run, ``None`` when the run does not need it, or raises
    ``ValueError`` for a bad option (exit code 2). Registering a name twice is an error.

    :param register: callback that records one :class:`core.consumers.ConsumerSpec`.

    .. versionadded:: 0.2
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
