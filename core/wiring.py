"""From flags to consumers: which registered writers, sinks and analyzers a run starts.

``--sink`` (repeatable) names the outputs; without it, the default writer (Parquet) is used.
Each value goes to the specification that serves its scheme; every other one (the analyzers) is
asked too and decides from the flags whether the run needs it. Problems come back as lines for
:class:`core.checks.UsageError` (exit code 2), all at once; :func:`check_consumers` then runs each
consumer's own check (a sink's server must answer) before the first venue connection.

Must not: connect to a venue; only :func:`check_consumers` does I/O (the consumers' checks).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import replace

import trio

from core.consumers import ANALYZER, Consumer, ConsumerRegistry, RunContext


def sink_values(args: argparse.Namespace, registry: ConsumerRegistry) -> list[str]:
    """``--sink`` as given, else the default writer's scheme. With no default writer registered
    (its plugin disabled), none: the supervisor then writes Parquet into ``--out`` itself."""
    given = list(getattr(args, "sink", None) or [])
    if given:
        return given
    return [s.schemes[0] for s in registry.specs() if s.default][:1]


def build_consumers(registry: ConsumerRegistry, ctx: RunContext,
                    sinks: Sequence[str]) -> tuple[list[Consumer], list[str]]:
    """The consumers of a run and the problems found (one line each)."""
    problems: list[str] = []
    per_spec: dict[str, list[str]] = {}
    for sink in sinks:
        spec = registry.for_sink(sink)
        if spec is None:
            valid = ", ".join(f"{s}://..." if s != "parquet" else s for s in registry.schemes())
            problems.append(f"--sink {sink}: unknown sink; valid choices: {valid}")
            continue
        per_spec.setdefault(spec.name, []).append(sink)
    consumers: list[Consumer] = []
    for spec in registry.specs():
        if spec.role != ANALYZER and spec.name not in per_spec:
            continue
        try:
            consumers.extend(spec.build(replace(ctx, sinks=per_spec.get(spec.name, []))))
        except ValueError as exc:
            problems.append(str(exc))
    return consumers, problems


async def check_consumers(consumers: Sequence[Consumer]) -> list[str]:
    """Every consumer's own check, concurrently; one line per failure."""
    problems: dict[str, str] = {}

    async def one(c: Consumer) -> None:
        assert c.check is not None
        try:
            await c.check()
        except ValueError as exc:
            problems[c.name] = str(exc)

    async with trio.open_nursery() as nursery:
        for c in consumers:
            if c.check is not None:
                nursery.start_soon(one, c)
    return [problems[c.name] for c in consumers if c.name in problems]


def spread_view(consumers: Sequence[Consumer]) -> object | None:
    """The first consumer a status view can show pairs of (``view`` with ``pairs_view``)."""
    return next((c.view for c in consumers
                 if c.view is not None and hasattr(c.view, "pairs_view")), None)


__all__ = ["build_consumers", "check_consumers", "sink_values", "spread_view"]
