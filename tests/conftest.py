"""Shared fixtures: an isolated instrument cache, and the path to the shared real captures."""

from __future__ import annotations

from pathlib import Path

import pytest

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "samples"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory,
                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Never touch the user's ~/.cache from a test."""
    monkeypatch.setenv("BOOKWIRE_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))


def sample(venue: str, name: str) -> Path:
    """A real capture from ../shared/samples; the calling test skips when it is absent."""
    path = SAMPLES / venue / name
    if not path.exists():
        pytest.skip(f"real capture {path} not available")
    return path
