"""Shared fixtures: an isolated instrument cache, and where the optional real captures are.

Real captures are recorded websocket sessions published by the cryptofeed project
(``sample_data/<NAME>.jsonl.zst`` in github.com/bmoscon/cryptofeed), recompressed with gzip and
laid out as ``<venue>/<NAME>.jsonl.gz`` in the directory named by ``$BOOKWIRE_CAPTURES``. They are
not distributed with bookwire; the tests that read them skip when they are absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

CAPTURES_ENV = "BOOKWIRE_CAPTURES"


def capture_path(venue: str, name: str) -> Path | None:
    """The real capture ``<venue>/<name>`` under ``$BOOKWIRE_CAPTURES``, or None when absent."""
    root = os.environ.get(CAPTURES_ENV)
    if not root:
        return None
    path = Path(root) / venue / name
    return path if path.exists() else None


def skip_reason(venue: str, name: str) -> str:
    return f"real capture {venue}/{name} not found under ${CAPTURES_ENV}"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory,
                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Never touch the user's ~/.cache from a test."""
    monkeypatch.setenv("BOOKWIRE_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))


def sample(venue: str, name: str) -> Path:
    """A real capture (see the module docstring); the calling test skips when it is absent."""
    path = capture_path(venue, name)
    if path is None:
        pytest.skip(skip_reason(venue, name))
    return path
