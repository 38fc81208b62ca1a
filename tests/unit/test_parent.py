"""A capture process of ``--processes`` stops (SIGTERM to itself, the graceful path) when the
process that started it dies, whichever thread started it and however the parent dies."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.parent import PARENT_PID_ENV, parent_to_watch

REPO = Path(__file__).resolve().parents[2]

CHILD = """
import signal, sys, trio
from core.parent import parent_to_watch, watch_parent
def stopped(signum, frame):
    open(sys.argv[1], "w").write("stopped by SIGTERM")
    sys.exit(0)
signal.signal(signal.SIGTERM, stopped)
open(sys.argv[1] + ".ready", "w").write("watching")
trio.run(watch_parent, parent_to_watch())
trio.run(trio.sleep, 30)  # SIGTERM arrives meanwhile
"""

PARENT = """
import os, subprocess, sys, threading, time
def start():  # from a thread that ends at once, as trio's worker threads do
    subprocess.Popen([sys.executable, "-c", sys.argv[1], sys.argv[2]],
                     env={**os.environ, "PARENT_PID_ENV": str(os.getpid())})
t = threading.Thread(target=start); t.start(); t.join()
while not os.path.exists(sys.argv[2] + ".ready"):
    time.sleep(0.01)
os._exit(0)  # dies without stopping its child
""".replace("PARENT_PID_ENV", PARENT_PID_ENV)


def test_the_child_stops_when_its_parent_dies(tmp_path: Path) -> None:
    flag = tmp_path / "stopped"
    subprocess.run([sys.executable, "-c", PARENT, CHILD, str(flag)], cwd=REPO, timeout=30,
                   check=True)
    deadline = time.monotonic() + 10
    while not flag.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert flag.exists() and flag.read_text() == "stopped by SIGTERM"


def test_only_a_process_started_that_way_watches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PARENT_PID_ENV, raising=False)
    assert parent_to_watch() is None
    monkeypatch.setenv(PARENT_PID_ENV, "1234")
    assert parent_to_watch() == 1234
    monkeypatch.setenv(PARENT_PID_ENV, "x")
    assert parent_to_watch() is None
