"""The examples stay working: the out-of-tree plugin template passes its own tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_custom_plugin_template_passes_its_own_tests() -> None:
    plugin = ROOT / "examples" / "custom_plugin"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=plugin, capture_output=True, text=True, check=False,
        env={"PYTHONPATH": str(plugin), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout


def test_live_short_book_example_has_help() -> None:
    result = subprocess.run([sys.executable, str(ROOT / "examples" / "live_short_book.py"),
                             "--help"], capture_output=True, text=True, check=True, cwd=ROOT)
    assert "--levels" in result.stdout and "--plugins" in result.stdout
