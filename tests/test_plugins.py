"""Plugin discovery and the contract every registered venue must honour."""

from __future__ import annotations

import re
import types
from pathlib import Path

import pluggy
import pytest

from core import hookimpl
from core.plugins import ExchangeRegistry, RegistryError, load_plugins, make_manager
from core.protocol import ProtocolConfig
from core.testing.conformance import check_protocol
from plugins.bybit.protocol import BybitProtocol

ROOT = Path(__file__).resolve().parents[1]
BUILT_IN = {"bybit", "htx", "bitget", "gateio", "coinbase", "coinbase-exchange", "binance", "okx"}


def registered() -> ExchangeRegistry:
    return load_plugins()[1]


def test_built_in_venues_come_through_entry_points() -> None:
    pm, registry = load_plugins()
    loaded = {name for name, _ in pm.list_name_plugin()}
    assert "bybit" in loaded  # registered under its entry-point name, like a third party
    assert "bybit" in registry.names()
    assert set(registry.names()) <= BUILT_IN


def test_without_entry_points_nothing_is_registered() -> None:
    _, registry = load_plugins(entry_points=False)
    assert registry.names() == []


def test_disabling_a_plugin_by_entry_point_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOOKWIRE_DISABLE_PLUGINS", "bybit")
    assert "bybit" not in registered().names()


def test_a_venue_registered_twice_is_an_error() -> None:
    class Other(BybitProtocol):
        pass

    registry = ExchangeRegistry()
    registry.register(BybitProtocol)
    registry.register(BybitProtocol)  # the same class again is harmless
    with pytest.raises(RegistryError, match="registered twice"):
        registry.register(Other)
    with pytest.raises(RegistryError, match="not an ExchangeProtocol"):
        registry.register(dict)  # type: ignore[arg-type]


def test_hookimpl_without_spec_is_rejected() -> None:
    plugin = types.SimpleNamespace()

    @hookimpl
    def bookwire_no_such_hook() -> None:
        pass

    plugin.bookwire_no_such_hook = bookwire_no_such_hook
    with pytest.raises(pluggy.PluginValidationError):
        load_plugins(entry_points=False, extra=[plugin])


def test_an_extra_plugin_object_registers_a_venue() -> None:
    class Mini(BybitProtocol):
        name = "mini"

    plugin = types.SimpleNamespace()

    @hookimpl
    def bookwire_register_exchanges(register: object) -> None:
        register(Mini)  # type: ignore[operator]

    plugin.bookwire_register_exchanges = bookwire_register_exchanges
    _, registry = load_plugins(entry_points=False, extra=[plugin])
    assert registry.get("mini") is Mini


@pytest.mark.parametrize("venue", sorted(BUILT_IN))
def test_every_registered_venue_passes_conformance(venue: str) -> None:
    registry = registered()
    if venue not in registry:
        pytest.skip(f"{venue} is not registered in this checkout")
    proto = registry.get(venue)
    symbol = "ETC-USD" if venue.startswith("coinbase") else "BTC-USDT"
    check_protocol(proto, ProtocolConfig(symbols=(symbol,), channels=tuple(sorted(proto.channels))))


def test_plugin_guide_documents_every_hook_with_its_signature() -> None:
    guide = (ROOT / "plugins" / "README.md").read_text()
    pm = make_manager()
    hooks = [name for name in dir(pm.hook) if name.startswith("bookwire_")]
    assert hooks
    for name in hooks:
        caller = getattr(pm.hook, name)
        signature = f"{name}({', '.join(caller.spec.argnames)})"
        assert re.search(rf"^### {re.escape(signature)}$", guide, re.M), \
            f"plugins/README.md lacks a '### {signature}' section"
