"""Fixtures of the example's tests: an isolated instrument cache, and the package's entry point.

``pip install -e .`` registers the ``bookwire`` entry point declared in ``pyproject.toml``, which
is how ``python -m core.run --plugins kraken`` finds the venue. Where the package is not
installed (bookwire's own test suite runs these tests from the source folder), the
``entry_point`` fixture writes the same metadata, read from ``pyproject.toml``, into a temporary
folder on ``sys.path`` and returns the environment a child process needs to see it too.
"""

from __future__ import annotations

import importlib.metadata
import os
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory,
                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Never touch the user's instrument cache from a test."""
    monkeypatch.setenv("BOOKWIRE_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))


def _installed() -> bool:
    return any(ep.name == "kraken" for ep in importlib.metadata.entry_points(group="bookwire"))


@pytest.fixture
def entry_point(tmp_path_factory: pytest.TempPathFactory,
                monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The ``kraken`` entry point, installed or written from ``pyproject.toml``; returns the
    environment for child processes."""
    env = dict(os.environ)
    if not _installed():
        project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
        site = tmp_path_factory.mktemp("site")
        name = project["name"].replace("-", "_")
        info = site / f"{name}-{project['version']}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
        lines = [f"{key} = {value}"
                 for key, value in project["entry-points"]["bookwire"].items()]
        (info / "entry_points.txt").write_text("[bookwire]\n" + "\n".join(lines) + "\n")
        monkeypatch.syspath_prepend(str(site))
        paths = [str(site), str(ROOT), env.get("PYTHONPATH", "")]
        env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
        assert _installed()
    return env
