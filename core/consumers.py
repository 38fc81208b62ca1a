"""Bus consumers as plugins: what ``bookwire_register_consumers`` registers, and what a run starts.

A :class:`ConsumerSpec` is a plugin's description of one consumer: its name, its role
(:data:`WRITER`, :data:`SINK` or :data:`ANALYZER`), the bus policy and event kinds of its
subscription, the command-line options it adds, and a factory. Before the first connection the
command line calls the factory of every specification with the run's :class:`RunContext`; the
factory returns the :class:`Consumer` to run, or ``None`` when this run does not need it (an
analyzer the flags switched off, a sink nobody asked for), and raises ``ValueError`` with a message
for the user when one of its options is malformed (exit code 2). A consumer may also carry an
async :attr:`Consumer.check` (a sink's server must be reachable), run before the first venue
connection too.

Writers and sinks are *outputs*: ``--sink`` (repeatable; default ``parquet``) names them, and a spec
serves the ``--sink`` values whose scheme is in :attr:`ConsumerSpec.schemes` (``parquet``,
``redis://HOST:PORT/DB``). An output reports what it wrote and lost through :class:`Output`, for the
end-of-run summary and the exit code.

A consumer that publishes rows of its own (an analyzer's tables) declares their
:class:`core.tables.Table` in :attr:`Consumer.tables`; the supervisor registers them before any
writer starts, so no event can reach a writer that does not know its table.

Must not: import trio-using modules at import time beyond typing, start tasks, or do any I/O.
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol

from core.bus import DEFAULT_BUFFER_BYTES, Bus, Policy, Subscription
from core.tables import Table

if TYPE_CHECKING:
    import trio

    from core.protocol import Instrument

#: roles of a consumer
WRITER: Final = "writer"
SINK: Final = "sink"
ANALYZER: Final = "analyzer"
ROLES: Final = (WRITER, SINK, ANALYZER)


class ConsumerRun(Protocol):
    """``async def run(subscription, *, task_status)``: consume until the bus closes."""

    def __call__(self, subscription: Subscription, *,
                 task_status: trio.TaskStatus[None] = ...) -> Awaitable[None]: ...


class Output(Protocol):
    """What a writer or sink tells the end-of-run summary (the Parquet writer is one)."""

    #: failures that stopped the output (exit code 1)
    failures: list[Any]
    #: events received from the bus and delivered, per (table, venue)
    events_written: dict[tuple[str, str], int]
    #: the time stamped on end-of-run rows (set by the supervisor)
    end_ns: int | None

    @property
    def abort(self) -> trio.CancelScope: ...

    def lost_events(self) -> int:
        """Events given to the output that it did not deliver (rejected, abandoned)."""
        ...

    def pending(self) -> tuple[int, int]:
        """(events, buffers) not yet delivered."""
        ...

    def describe(self) -> str:
        """One line for the end-of-run totals."""
        ...


@dataclass
class Consumer:
    """A bus consumer started before the feeds (writers, sinks, live analyzers).

    ``bind(bus)`` is called once the bus exists, for consumers that publish rows of their own;
    ``finish(end_ns)`` is called when the feeds have stopped and the bus still accepts events,
    so that a consumer can publish what it holds (an analyzer's open episodes). ``tables`` are the
    tables of the rows it publishes; ``output`` is set for writers and sinks; ``check`` runs before
    the first connection and raises ``ValueError`` for a run that cannot work (exit code 2);
    ``view`` is what a status view may show of it (the spread analyzer's pairs)."""

    name: str
    run: ConsumerRun
    kinds: frozenset[str] | None = None
    policy: Policy = Policy.LOSSLESS
    buffer_bytes: int = DEFAULT_BUFFER_BYTES
    bind: Callable[[Bus], None] | None = None
    finish: Callable[[int], None] | None = None
    tables: tuple[Table, ...] = ()
    output: Output | None = None
    check: Callable[[], Awaitable[None]] | None = None
    view: object | None = None
    role: str = ANALYZER
    #: wake the consumer at most this often (lossless policy; see core.bus)
    coalesce_s: float = 0.0


@dataclass
class RunContext:
    """What a consumer factory may use: the parsed flags and the run's request."""

    args: argparse.Namespace
    venues: Sequence[str]
    channels: Sequence[str]
    symbols: Sequence[str]
    out: Path
    #: ``--sink`` values addressed to this spec (its schemes); empty for analyzers
    sinks: Sequence[str] = ()
    #: filled in once fetched (after the consumers are built, before the run starts)
    instruments: dict[str, Mapping[str, Instrument]] = field(default_factory=dict)
    #: the bus bound of a lossless subscription (``--buffer-mb``), in bytes
    buffer_bytes: int = DEFAULT_BUFFER_BYTES
    #: whether this process connects to venues (False when it reads another process's events)
    captures: bool = True


Factory = Callable[[RunContext], "Consumer | Sequence[Consumer] | None"]


@dataclass(frozen=True)
class ConsumerSpec:
    """One consumer a plugin provides (see the module docstring).

    ``policy`` and ``kinds`` are the bus policy and event kinds of its subscription (``kinds``
    ``None``: every kind); the consumer the factory builds must use the same policy. ``schemes``:
    for writers and sinks, the ``--sink`` values it serves (``parquet``; ``redis`` for
    ``redis://...``). ``add_arguments(parser)`` adds its command-line options; ``default``: a writer
    used when no ``--sink`` is given."""

    name: str
    role: str
    policy: Policy
    factory: Factory
    kinds: frozenset[str] | None = None
    schemes: tuple[str, ...] = ()
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None
    default: bool = False
    description: str = ""

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"consumer {self.name!r}: role must be one of {', '.join(ROLES)}")
        if self.role in (WRITER, SINK) and not self.schemes:
            raise ValueError(f"{self.role} {self.name!r} names no --sink scheme")
        if not callable(self.factory):
            raise ValueError(f"consumer {self.name!r}: factory is not callable")

    def serves(self, sink: str) -> bool:
        scheme = sink.split("://", 1)[0] if "://" in sink else sink
        return scheme in self.schemes

    def build(self, ctx: RunContext) -> list[Consumer]:
        """The consumers this spec runs in ``ctx`` (ValueError: a bad option, for the user)."""
        made = self.factory(ctx)
        if made is None:
            return []
        consumers = [made] if isinstance(made, Consumer) else list(made)
        for c in consumers:
            if c.policy is not self.policy:
                raise ValueError(f"consumer {c.name!r} uses policy {c.policy.value}, but "
                                 f"{self.name!r} was registered with {self.policy.value}")
            c.role = self.role
        return consumers


class ConsumerRegistry:
    """Consumer name -> :class:`ConsumerSpec`, in registration order."""

    def __init__(self) -> None:
        self._specs: dict[str, ConsumerSpec] = {}

    def register_all(self, specs: Sequence[ConsumerSpec]) -> None:
        """Register every spec or, when one is invalid or a duplicate name, none (ValueError)."""
        staged: dict[str, ConsumerSpec] = {}
        for spec in specs:
            if not isinstance(spec, ConsumerSpec):
                raise ValueError(f"{spec!r} is not a ConsumerSpec")
            known = staged.get(spec.name) or self._specs.get(spec.name)
            if known is not None and known != spec:
                raise ValueError(f"consumer {spec.name!r} registered twice")
            staged[spec.name] = spec
        self._specs.update(staged)

    def get(self, name: str) -> ConsumerSpec:
        return self._specs[name]

    def specs(self) -> list[ConsumerSpec]:
        return list(self._specs.values())

    def names(self) -> list[str]:
        return list(self._specs)

    def schemes(self) -> list[str]:
        return sorted({s for spec in self._specs.values() for s in spec.schemes})

    def for_sink(self, sink: str) -> ConsumerSpec | None:
        return next((s for s in self._specs.values() if s.serves(sink)), None)

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        for spec in self._specs.values():
            if spec.add_arguments is not None:
                group = parser.add_argument_group(f"{spec.name} ({spec.role})",
                                                  spec.description or None)
                spec.add_arguments(group)  # type: ignore[arg-type]

    def __contains__(self, name: object) -> bool:
        return name in self._specs


__all__ = ["ANALYZER", "ROLES", "SINK", "WRITER", "Consumer", "ConsumerRegistry", "ConsumerRun",
           "ConsumerSpec", "Factory", "Output", "RunContext"]
