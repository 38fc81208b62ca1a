"""Plugin discovery: the pluggy manager, entry-point loading and the venue registry.

Built-in venues live in ``plugins/`` and are found through the ``bookwire`` entry-point group,
the same way a third-party package's venue is. Loading is explicit (:func:`load_plugins`), never
at import time, so tests and the CLI decide what is loaded.

Environment:
* ``BOOKWIRE_DISABLE_PLUGINS``: comma-separated entry-point names to block.

Must not: import trio or start anything.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import pluggy

from core import hookspecs
from core.protocol import ExchangeProtocol


class RegistryError(ValueError):
    """A venue registered twice, or a registered class that is not a protocol."""


class ExchangeRegistry:
    """Venue name -> protocol class, filled through ``bookwire_register_exchanges``."""

    def __init__(self) -> None:
        self._by_name: dict[str, type[ExchangeProtocol]] = {}

    def register(self, proto: type[ExchangeProtocol]) -> None:
        if not (isinstance(proto, type) and issubclass(proto, ExchangeProtocol)):
            raise RegistryError(f"{proto!r} is not an ExchangeProtocol subclass")
        name = getattr(proto, "name", None)
        if not name:
            raise RegistryError(f"{proto.__qualname__} has no name")
        if name in self._by_name and self._by_name[name] is not proto:
            raise RegistryError(f"venue {name!r} registered twice "
                                f"({self._by_name[name].__module__} and {proto.__module__})")
        self._by_name[name] = proto

    def get(self, name: str) -> type[ExchangeProtocol]:
        return self._by_name[name]

    def names(self) -> list[str]:
        return sorted(self._by_name)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name


def make_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    return pm


def load_plugins(
    pm: pluggy.PluginManager | None = None,
    *,
    entry_points: bool = True,
    extra: Iterable[object] = (),
) -> tuple[pluggy.PluginManager, ExchangeRegistry]:
    """Load plugins (entry points unless disabled, plus ``extra`` modules/objects) and collect
    their venues. Raises :class:`pluggy.PluginValidationError` for hooks with no spec."""
    pm = pm or make_manager()
    for name in filter(None, os.environ.get("BOOKWIRE_DISABLE_PLUGINS", "").split(",")):
        pm.set_blocked(name.strip())
    if entry_points:
        pm.load_setuptools_entrypoints(hookspecs.PROJECT)
    for plugin in extra:
        if not pm.is_registered(plugin):
            pm.register(plugin)
    pm.check_pending()
    registry = ExchangeRegistry()
    pm.hook.bookwire_register_exchanges(register=registry.register)
    return pm, registry
