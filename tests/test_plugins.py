"""Plugin discovery and the contract every registered venue must honour."""

from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
import sys
import types
from pathlib import Path

import pluggy
import pytest

import core.plugins
from core import hookimpl
from core.plugins import ExchangeRegistry, RegistryError, load_plugins, make_manager
from core.protocol import ProtocolConfig
from core.run import async_main
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


# -- a broken third-party plugin is named and skipped; the others still work --------------------

BROKEN = {
    "missing": ("tests.plugin_fixtures.no_such_module", "ModuleNotFoundError"),
    "crashes": ("tests.plugin_fixtures.raises_on_import", "this plugin is broken at import"),
    "unknown-hook": ("tests.plugin_fixtures.unknown_hook", "bookwire_register_sinks"),
    "signature": ("tests.plugin_fixtures.wrong_signature", "settings"),
    "invalid": ("tests.plugin_fixtures.registers_invalid", "not an ExchangeProtocol"),
    "raising": ("tests.plugin_fixtures.raises_in_hook", "missing configuration"),
}


def with_third_party(monkeypatch: pytest.MonkeyPatch) -> None:
    """The installed entry points plus the broken fixtures and one good third-party plugin."""
    installed = core.plugins.plugin_entry_points()
    extra = [importlib.metadata.EntryPoint(name=name, value=module, group="bookwire")
             for name, (module, _) in BROKEN.items()]
    extra.append(importlib.metadata.EntryPoint(name="good", value="tests.plugin_fixtures.good",
                                               group="bookwire"))
    monkeypatch.setattr(core.plugins, "plugin_entry_points", lambda: [*installed, *extra])


def test_a_broken_plugin_is_named_and_skipped(monkeypatch: pytest.MonkeyPatch,
                                              caplog: pytest.LogCaptureFixture) -> None:
    with_third_party(monkeypatch)
    _, registry = load_plugins()
    assert "bybit" in registry and "good-venue" in registry
    assert "extra-venue" not in registry  # registered by a plugin that also registered junk
    assert set(registry.failed) == set(BROKEN)
    for name, (_, reason) in BROKEN.items():
        assert reason in registry.failed[name], (name, registry.failed[name])
        assert f"plugin {name!r} could not be loaded and is skipped" in caplog.text


async def test_the_cli_lists_and_refuses_a_broken_plugin(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        tmp_path: Path) -> None:
    with_third_party(monkeypatch)
    assert await async_main(["--list-plugins"], handle_signals=False) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines() if line[:1].strip()}
    assert "channels: funding,l2,tob,trades" in lines["bybit"]
    assert "channels:" in lines["good-venue"]
    assert "NOT LOADED: ModuleNotFoundError" in lines["missing"]
    assert await async_main(["--plugins", "crashes", "--out", str(tmp_path)],
                            handle_signals=False) == 2
    err = capsys.readouterr().err
    assert "--plugins: plugin 'crashes' could not be loaded (RuntimeError: this plugin is " \
           "broken at import time); valid choices: " in err


def test_list_plugins_survives_a_broken_installed_plugin(tmp_path: Path) -> None:
    """A real installed distribution (dist-info on the path) whose entry point cannot load."""
    dist = tmp_path / "broken_bookwire_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-bookwire-plugin\n"
                                   "Version: 1.0\n")
    (dist / "entry_points.txt").write_text("[bookwire]\nbroken = no_such_module_anywhere\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "core.run", "--list-plugins"],
                            capture_output=True, text=True, cwd=ROOT, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "bybit" in result.stdout and "broken" in result.stdout
    assert "plugin 'broken' could not be loaded and is skipped: ModuleNotFoundError" \
        in result.stderr


def test_declared_options_accept_their_default_and_every_choice() -> None:
    registry = registered()
    with_options = {name for name in registry.names() if registry.get(name).options}
    assert with_options == {"bybit", "htx", "gateio", "coinbase-exchange", "okx", "binance"} & set(
        registry.names())
    for venue in sorted(with_options):
        proto = registry.get(venue)
        symbol = "ETC-USD" if venue.startswith("coinbase") else "BTC-USDT"
        for key, spec in proto.options.items():
            assert spec.problem(spec.default) is None, (venue, key, spec.default)
            assert spec.choices, (venue, key)
            for value in spec.choices:
                made = proto(ProtocolConfig(symbols=(symbol,), channels=("tob", "l2"),
                                            options={key: value}))
                assert made.option(key) == value
            with pytest.raises(ValueError, match=f"{venue} {key} must be one of"):
                proto(ProtocolConfig(symbols=(symbol,), channels=("tob", "l2"),
                                     options={key: "no-such-value"}))
