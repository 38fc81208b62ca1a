"""The examples stay working: the out-of-tree plugin (Kraken, ``examples/custom_plugin``) passes
its own tests (protocol, conformance, its fault matrix, the command line end to end through its
entry point, ``--simulate``), run from its folder the way its author runs them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_out_of_tree_plugin_passes_its_own_tests() -> None:
    plugin = ROOT / "examples" / "custom_plugin"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=plugin, capture_output=True, text=True, check=False, timeout=600,
        env={"PYTHONPATH": str(plugin), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stdout + result.stderr
    summary = result.stdout.strip().splitlines()[-1]
    assert summary.startswith("33 passed, 2 skipped"), result.stdout  # compressed frames: n/a


def test_live_short_book_example_has_help() -> None:
    result = subprocess.run([sys.executable, str(ROOT / "examples" / "live_short_book.py"),
                             "--help"], capture_output=True, text=True, check=True, cwd=ROOT)
    assert "--levels" in result.stdout and "--plugins" in result.stdout
