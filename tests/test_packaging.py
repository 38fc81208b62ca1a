"""Packaging: every third-party module the code imports is a declared dependency, the ``bookwire``
command is installed, and every ruff selector names rules that exist today."""

from __future__ import annotations

import ast
import importlib.metadata
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
LOCAL = {"core", "plugins", "analysis", "tests", "benchmarks", "bookwire_kraken"}
#: imported only inside ``except ImportError`` guards, for an optional comparison; never a
#: dependency (benchmarks/bench_plugins.py times cryptofeed when it happens to be installed)
OPTIONAL = {"cryptofeed"}


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_names(requirements: list[str]) -> set[str]:
    return {normalize(re.split(r"[\s<>=!~;\[]", r, maxsplit=1)[0]) for r in requirements}


def imported_modules(*folders: str, skip: str | None = None) -> dict[str, set[str]]:
    """Top-level third-party module -> files importing it (at any depth, in functions too);
    files in a folder named ``skip`` are left out."""
    found: dict[str, set[str]] = {}
    for folder in folders:
        for path in (ROOT / folder).rglob("*.py"):
            if skip is not None and skip in path.relative_to(ROOT).parts[:-1]:
                continue
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top not in sys.stdlib_module_names and top not in LOCAL | OPTIONAL:
                        found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def undeclared(modules: dict[str, set[str]], declared: set[str]) -> dict[str, set[str]]:
    dists = importlib.metadata.packages_distributions()
    missing = {}
    for module, files in modules.items():
        owners = {normalize(d) for d in dists.get(module, [module])}
        if not owners & declared:
            missing[module] = files
    return missing


def test_every_imported_module_of_the_distribution_is_declared() -> None:
    declared = requirement_names(PYPROJECT["project"]["dependencies"])
    modules = imported_modules("core", "plugins", "analysis", "examples", skip="tests")
    assert {"numpy", "h11", "msgspec", "trio"} <= set(modules)  # the scan sees them
    assert undeclared(modules, declared) == {}


def test_every_module_the_tests_import_is_declared_for_tests() -> None:
    project = PYPROJECT["project"]
    declared = requirement_names(project["dependencies"] +
                                 project["optional-dependencies"]["test"])
    assert undeclared(imported_modules("tests", "benchmarks", "examples/custom_plugin/tests"),
                      declared) == {}


def test_the_bookwire_command_is_declared_and_installed() -> None:
    assert PYPROJECT["project"]["scripts"] == {"bookwire": "core.run:main"}
    [ep] = [ep for ep in importlib.metadata.entry_points(group="console_scripts")
            if ep.name == "bookwire"]
    assert ep.value == "core.run:main"
    script = Path(sys.executable).parent / "bookwire"
    if not script.exists():
        pytest.skip(f"{script} is not installed in this environment")
    result = subprocess.run([str(script), "--plugins", "no-such-venue"], capture_output=True,
                            text=True, cwd=ROOT, timeout=60)
    assert result.returncode == 2
    assert result.stderr.startswith("bookwire: error: unknown plugin 'no-such-venue'")


def test_every_ruff_selector_names_current_rules() -> None:
    """A selector no current rule code starts with (a removed prefix such as ``TRIO``, which
    ruff remaps silently) is refused."""
    result = subprocess.run([sys.executable, "-m", "ruff", "rule", "--all", "--output-format",
                             "json"], capture_output=True, text=True, timeout=60, check=True)
    codes = [rule["code"] for rule in json.loads(result.stdout) if rule.get("code")]
    assert "ASYNC100" in codes
    lint = PYPROJECT["tool"]["ruff"]["lint"]
    selectors = [*lint["select"], *lint.get("ignore", []),
                 *(s for group in lint.get("per-file-ignores", {}).values() for s in group)]
    unknown = [s for s in selectors if not any(code.startswith(s) for code in codes)]
    assert unknown == []
