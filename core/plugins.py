"""Plugin discovery: the pluggy manager, entry-point loading, and the venue, table and consumer
registries.

Built-in venues live in ``plugins/`` and are found through the ``bookwire`` entry-point group,
the same way a third-party package's venue is. So are the built-in consumers: the Parquet writer
(``core.writers.plugin``), the Redis Streams sink (``core.streams.plugin``), the live book mirror
(``core.live_books``) and the live spread analyzer (``analysis.spread_live``) register their
tables and consumers through ``bookwire_register_tables`` and ``bookwire_register_consumers``.
Loading is explicit (:func:`load_plugins`), never at import time, so tests and the CLI decide what
is loaded.

One broken plugin never takes the others down: an entry point that cannot be imported, that
implements a hook with no specification or a wrong signature, or whose registration hook raises
or registers something invalid, is logged with its name and skipped; the reason is kept in
:attr:`ExchangeRegistry.failed` (``--list-plugins`` shows it). Plugins passed in ``extra`` are the
caller's own code: a hook of theirs with no specification raises.

Environment:
* ``BOOKWIRE_DISABLE_PLUGINS``: comma-separated entry-point names to block.

Must not: import trio or start anything.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
from collections.abc import Callable, Iterable

import pluggy

from core import hookspecs
from core.consumers import ConsumerRegistry, ConsumerSpec
from core.protocol import ExchangeProtocol
from core.tables import REGISTRY as TABLES
from core.tables import Table, check_table

log = logging.getLogger(__name__)


class RegistryError(ValueError):
    """A venue registered twice, or a registered class that is not a protocol."""


class ExchangeRegistry:
    """Venue name -> protocol class, filled through ``bookwire_register_exchanges``."""

    def __init__(self) -> None:
        self._by_name: dict[str, type[ExchangeProtocol]] = {}
        #: plugin (entry-point) name -> why it was skipped
        self.failed: dict[str, str] = {}
        #: the writers, sinks and analyzers plugins registered
        self.consumers = ConsumerRegistry()

    def register(self, proto: type[ExchangeProtocol]) -> None:
        self.register_all([proto])

    def register_all(self, protos: Iterable[type[ExchangeProtocol]]) -> None:
        """Register every class or, when one of them is invalid, none (RegistryError)."""
        staged: dict[str, type[ExchangeProtocol]] = {}
        for proto in protos:
            if not (isinstance(proto, type) and issubclass(proto, ExchangeProtocol)):
                raise RegistryError(f"{proto!r} is not an ExchangeProtocol subclass")
            name = getattr(proto, "name", None)
            if not name or not isinstance(name, str):
                raise RegistryError(f"{proto.__qualname__} has no name")
            known = staged.get(name) or self._by_name.get(name)
            if known is not None and known is not proto:
                raise RegistryError(f"venue {name!r} registered twice "
                                    f"({known.__module__} and {proto.__module__})")
            staged[name] = proto
        self._by_name.update(staged)

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


def plugin_entry_points() -> list[importlib.metadata.EntryPoint]:
    """The installed ``bookwire`` entry points, one per name (the first found wins)."""
    seen: dict[str, importlib.metadata.EntryPoint] = {}
    for ep in importlib.metadata.entry_points(group=hookspecs.PROJECT):
        seen.setdefault(ep.name, ep)
    return list(seen.values())


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _unknown_hooks(pm: pluggy.PluginManager, plugin: object) -> list[str]:
    """Hooks this plugin implements that have no specification (and are not optional)."""
    return [impl.function.__name__ for caller in pm.get_hookcallers(plugin) or ()
            if not caller.has_spec()
            for impl in caller.get_hookimpls() if impl.plugin is plugin and not impl.optionalhook]


def _load_entry_points(pm: pluggy.PluginManager, failed: dict[str, str]) -> None:
    for ep in plugin_entry_points():
        if pm.has_plugin(ep.name) or pm.is_blocked(ep.name):
            continue
        plugin: object = None
        try:
            plugin = ep.load()
            pm.register(plugin, name=ep.name)
            unknown = _unknown_hooks(pm, plugin)
            if unknown:
                raise pluggy.PluginValidationError(plugin, f"unknown hook(s) {', '.join(unknown)}")
        # A third-party module may raise anything while it is imported or registered.
        except Exception as exc:
            if plugin is not None and pm.is_registered(plugin):
                pm.unregister(plugin)
            failed[ep.name] = _reason(exc)


def _register_venues(pm: pluggy.PluginManager, registry: ExchangeRegistry) -> None:
    """Call each plugin's registration hook on its own: one plugin's error skips that plugin."""
    for impl in pm.hook.bookwire_register_exchanges.get_hookimpls():
        name = pm.get_name(impl.plugin) or repr(impl.plugin)
        staged: list[type[ExchangeProtocol]] = []
        register: Callable[[type[ExchangeProtocol]], None] = staged.append
        args = {"register": register}
        try:
            impl.function(**{arg: args[arg] for arg in impl.argnames})
            registry.register_all(staged)
        except Exception as exc:
            registry.failed[name] = _reason(exc)


def _register_tables(pm: pluggy.PluginManager, registry: ExchangeRegistry) -> None:
    """Each plugin's tables, all or none of them (a plugin whose tables clash is skipped)."""
    for impl in pm.hook.bookwire_register_tables.get_hookimpls():
        name = pm.get_name(impl.plugin) or repr(impl.plugin)
        staged: list[Table] = []
        args = {"register": staged.append}
        try:
            impl.function(**{arg: args[arg] for arg in impl.argnames})
            for table in staged:
                check_table(table)
                problem = TABLES.conflict(table)
                if problem is not None:
                    raise ValueError(problem)
            for table in staged:
                TABLES.register(table)
        except Exception as exc:
            registry.failed[name] = _reason(exc)


def _register_consumers(pm: pluggy.PluginManager, registry: ExchangeRegistry) -> None:
    for impl in pm.hook.bookwire_register_consumers.get_hookimpls():
        name = pm.get_name(impl.plugin) or repr(impl.plugin)
        if name in registry.failed:
            continue
        staged: list[ConsumerSpec] = []
        args = {"register": staged.append}
        try:
            impl.function(**{arg: args[arg] for arg in impl.argnames})
            registry.consumers.register_all(staged)
        except Exception as exc:
            registry.failed[name] = _reason(exc)


def load_plugins(
    pm: pluggy.PluginManager | None = None,
    *,
    entry_points: bool = True,
    extra: Iterable[object] = (),
) -> tuple[pluggy.PluginManager, ExchangeRegistry]:
    """Load plugins (entry points unless disabled, plus ``extra`` modules/objects) and collect
    their venues, tables and consumers. A broken entry point is skipped and named in
    ``registry.failed``; an ``extra`` plugin with a hook that has no spec raises
    :class:`pluggy.PluginValidationError`."""
    pm = pm or make_manager()
    for name in filter(None, os.environ.get("BOOKWIRE_DISABLE_PLUGINS", "").split(",")):
        pm.set_blocked(name.strip())
    failed: dict[str, str] = {}
    if entry_points:
        _load_entry_points(pm, failed)
    for plugin in extra:
        if not pm.is_registered(plugin):
            pm.register(plugin)
    pm.check_pending()
    registry = ExchangeRegistry()
    registry.failed.update(failed)
    _register_venues(pm, registry)
    _register_tables(pm, registry)
    _register_consumers(pm, registry)
    for name, reason in sorted(registry.failed.items()):
        log.warning("plugin %r could not be loaded and is skipped: %s", name, reason)
    return pm, registry
