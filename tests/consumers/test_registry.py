"""Tables and consumers are plugins: the hooks, the built-in consumers registered through them,
the table registry as the one source of schemas and of the tables section of docs/data.md, and
core importing nothing from analysis."""

from __future__ import annotations

import argparse
import ast
import types
from collections.abc import Callable, Iterator
from pathlib import Path

import polars as pl
import pytest
import trio

from analysis.load import schema_of
from core import hookimpl
from core.bus import Policy, Subscription
from core.consumers import ANALYZER, SINK, Consumer, ConsumerSpec, RunContext
from core.plugins import load_plugins
from core.schema import Event
from core.tables import REGISTRY, TS, Table, markdown
from core.wiring import build_consumers, sink_values

ROOT = Path(__file__).resolve().parents[2]


def test_core_imports_nothing_from_analysis() -> None:
    offenders = []
    for path in sorted((ROOT / "core").rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and \
                    node.value.startswith("analysis."):
                names = [node.value]  # importlib.import_module("analysis....")
            offenders += [f"{path.relative_to(ROOT)}:{node.lineno} {n}" for n in names
                          if n == "analysis" or n.startswith("analysis.")]
    assert offenders == []


def test_built_in_consumers_and_tables_come_through_entry_points() -> None:
    pm, registry = load_plugins()
    loaded = {name for name, _ in pm.list_name_plugin()}
    assert {"parquet", "spreads", "live-books"} <= loaded
    assert {"parquet", "spreads", "live-books"} <= set(registry.consumers.names())
    spreads = registry.consumers.get("spreads")
    assert spreads.policy is Policy.CONFLATE and spreads.role == ANALYZER
    assert registry.consumers.get("parquet").policy is Policy.LOSSLESS
    assert registry.consumers.get("live-books").policy is Policy.LOSSLESS
    assert REGISTRY.names()[:4] == ["tob", "l2", "trades", "health"]
    assert {"spreads", "opportunities"} <= set(REGISTRY.names())


def test_importing_the_analyzer_registers_nothing() -> None:
    import subprocess
    import sys

    code = ("import analysis.spread_live; from core.tables import REGISTRY; "
            "print(','.join(REGISTRY.names()))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         check=True, timeout=60).stdout.strip()
    assert out == "tob,l2,trades,health,funding"


def test_data_doc_tables_section_is_generated_from_the_registry() -> None:
    load_plugins()
    text = (ROOT / "docs" / "data.md").read_text()
    section = markdown()
    assert section in text, "docs/data.md is out of date: paste `python -m core.tables` into it"
    for name in REGISTRY.names():
        assert f"### `{name}`:" in section


def test_the_loader_reads_schemas_from_the_registry() -> None:
    load_plugins()
    for name in REGISTRY.names():
        assert schema_of(name) == dict(REGISTRY.get(name).schema)


# -- a third-party plugin adds a table and an analyzer with options -----------------------------


class Alert(Event, frozen=True, kw_only=True, gc=False, tag="alert"):
    symbol: str
    level: float


ALERTS = Table("alerts", Alert, {"ts_local": TS, "exchange": pl.String(), "symbol": pl.String(),
                                 "level": pl.Float64()}, "alerts", {"level": "how bad"})


def alert_plugin(policy: Policy = Policy.CONFLATE) -> types.SimpleNamespace:
    plugin = types.SimpleNamespace()

    async def run(subscription: Subscription, *,
                  task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        async for _ in subscription:
            pass

    def add_arguments(p: argparse.ArgumentParser) -> None:
        p.add_argument("--alert-level", type=float, default=1.0)

    def build(ctx: RunContext) -> Consumer | None:
        if ctx.args.alert_level <= 0:
            raise ValueError("--alert-level must be positive")
        return Consumer(name="alerts", run=run, kinds=frozenset({"tob"}), policy=policy,
                        tables=(ALERTS,))

    @hookimpl
    def bookwire_register_tables(register: Callable[[Table], None]) -> None:
        register(ALERTS)

    @hookimpl
    def bookwire_register_consumers(register: Callable[[ConsumerSpec], None]) -> None:
        register(ConsumerSpec(name="alerts", role=ANALYZER, policy=Policy.CONFLATE, factory=build,
                              kinds=frozenset({"tob"}), add_arguments=add_arguments))

    plugin.bookwire_register_tables = bookwire_register_tables
    plugin.bookwire_register_consumers = bookwire_register_consumers
    return plugin


@pytest.fixture
def scratch_tables() -> Iterator[None]:
    """Tables registered by a test do not outlive it (the registry is process-wide)."""
    saved = (dict(REGISTRY._tables), dict(REGISTRY._by_type), dict(REGISTRY._by_kind))
    yield
    REGISTRY._tables, REGISTRY._by_type, REGISTRY._by_kind = saved


def context(args: argparse.Namespace) -> RunContext:
    return RunContext(args=args, venues=["bybit", "htx"], channels=["tob"], symbols=["BTC-USDT"],
                      out=Path("data"))


@pytest.mark.usefixtures("scratch_tables")
def test_a_third_party_table_and_analyzer_with_options() -> None:
    from core.run import build_parser

    _, registry = load_plugins(extra=[alert_plugin()])
    assert "alerts" in REGISTRY and REGISTRY.get("alerts").columns["level"] == "how bad"
    parser = build_parser(registry.consumers)
    args = parser.parse_args(["--plugins", "bybit,htx", "--alert-level", "2"])
    consumers, problems = build_consumers(registry.consumers, context(args),
                                          sink_values(args, registry.consumers))
    assert problems == []
    assert [c.name for c in consumers if c.output is not None] == ["parquet"]
    assert {"alerts", "spreads"} <= {c.name for c in consumers}
    bad = parser.parse_args(["--plugins", "bybit,htx", "--alert-level", "0",
                             "--spread-threshold-bps", "x", "--sink", "nowhere"])
    _, problems = build_consumers(registry.consumers, context(bad),
                                  sink_values(bad, registry.consumers))
    assert "--alert-level must be positive" in problems
    assert any(p.startswith("--spread-threshold-bps 'x'") for p in problems)
    assert any(p.startswith("--sink nowhere: unknown sink; valid choices: parquet")
               for p in problems)


@pytest.mark.usefixtures("scratch_tables")
def test_a_consumer_must_use_the_policy_it_was_registered_with() -> None:
    _, registry = load_plugins(extra=[alert_plugin(policy=Policy.LOSSLESS)])
    args = argparse.Namespace(alert_level=1.0)
    with pytest.raises(ValueError, match="registered with conflate"):
        registry.consumers.get("alerts").build(context(args))


@pytest.mark.usefixtures("scratch_tables")
def test_a_table_registered_differently_skips_the_plugin() -> None:
    clash = types.SimpleNamespace()

    @hookimpl
    def bookwire_register_tables(register: Callable[[Table], None]) -> None:
        register(Table("tob", Alert, dict(ALERTS.schema)))

    clash.bookwire_register_tables = bookwire_register_tables
    _, registry = load_plugins(extra=[clash])
    assert any("already registered differently" in r for r in registry.failed.values())
    assert REGISTRY.get("tob").event_type is not Alert


def test_sinks_and_writers_name_their_schemes() -> None:
    with pytest.raises(ValueError, match="names no --sink scheme"):
        ConsumerSpec(name="x", role=SINK, policy=Policy.LOSSLESS, factory=lambda ctx: None)


def test_the_live_book_mirror_runs_on_request_and_reports_its_books() -> None:
    from core.live_books import SPEC
    from core.schema import BookUpdate

    def ctx(k: int, channels: list[str]) -> RunContext:
        c = context(argparse.Namespace(short_book=k, status_interval=1.0))
        c.channels = channels
        return c

    assert SPEC.build(ctx(0, ["l2"])) == []
    with pytest.raises(ValueError, match="--short-book needs the l2 channel"):
        SPEC.build(ctx(2, ["tob"]))
    with pytest.raises(ValueError, match="positive number of queues"):
        SPEC.build(ctx(-1, ["l2"]))
    [consumer] = SPEC.build(ctx(2, ["l2"]))
    live = consumer.view
    live.ticks[("bybit", "BTC-USDT")] = 1.0  # type: ignore[union-attr]
    live.apply([BookUpdate(exchange="bybit", ts_local=1, symbol="BTC-USDT", ts_exchange=None,  # type: ignore[union-attr]
                           seq=1, msg_id=1, is_snapshot=True, bids=((99.0, 1.0), (98.0, 2.0)),
                           asks=((100.0, 3.0), (101.0, 4.0)))])
    assert live.report_lines(2) == [  # type: ignore[union-attr]
        "book bybit BTC-USDT: p_ref 99.5 | bids 2 1 | asks 3 4"]


async def test_the_analyzers_flags_are_checked_before_the_first_connection(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from core.run import async_main
    from core.sim.market import Market
    from tests.session.sims import BYBIT_BTC, serving, simulation

    sim = simulation(Market([BYBIT_BTC]))
    with trio.fail_after(30):
        async with serving(sim) as (_, urls):
            code = await async_main([
                "--plugins", "bybit,htx", "--channels", "tob", "--out", str(tmp_path),
                "--spread-threshold-bps", "x", "--endpoint", f"bybit={urls['bybit'][0]}"],
                handle_signals=False)
    assert code == 2 and sim.venues["bybit"].connections == []
    assert "--spread-threshold-bps 'x': expected comma-separated bps" in capsys.readouterr().err
