"""``python -m core.sim.serve``: the URLs line, a venue that answers on it, stopping when standard
input closes, and a plugin without a fake venue refused."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request

COMMAND = [sys.executable, "-m", "core.sim.serve"]


def test_serves_until_stdin_closes() -> None:
    proc = subprocess.Popen([*COMMAND, "--plugins", "bybit,htx", "--symbols", "BTC-USDT"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdin is not None
        urls = json.loads(proc.stdout.readline())
        assert set(urls) == {"bybit", "htx"}
        assert urls["bybit"]["ws"].startswith("ws://127.0.0.1:")
        assert urls["bybit"]["ws"].endswith("/v5/public/linear")
        body = urllib.request.urlopen(  # the REST instruments endpoint answers
            urls["bybit"]["rest"] + "/v5/market/instruments-info?category=linear",
            timeout=10).read()
        assert b"BTCUSDT" in body
        proc.stdin.close()
        assert proc.wait(timeout=20) == 0
    finally:
        proc.kill()
        proc.wait()


def test_a_plugin_without_a_fake_venue_is_refused() -> None:
    done = subprocess.run([*COMMAND, "--plugins", "nowhere", "--symbols", "BTC-USDT"],
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 2
    assert "no fake venue for nowhere" in done.stderr
