"""Frame inflation and timestamp conversion."""

from __future__ import annotations

import gzip
import zlib

import pytest

from core.codec import FrameError, inflate, iso_to_ns, ms_to_ns
from core.symbols import canonical, is_canonical, split_concatenated


def test_inflate_gzip_and_raw_deflate() -> None:
    assert inflate(gzip.compress(b'{"ping":1}'), "gzip") == b'{"ping":1}'
    c = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    raw = c.compress(b"hello") + c.flush()
    assert inflate(raw, "deflate") == b"hello"
    assert inflate(b"plain", None) == b"plain"
    with pytest.raises(FrameError):
        inflate(b"not gzip", "gzip")


def test_inflate_is_bounded_and_strict() -> None:
    bomb = gzip.compress(b"\0" * 50_000_000)
    assert len(bomb) < 100_000
    with pytest.raises(FrameError, match="past the limit of 1000000 bytes"):
        inflate(bomb, "gzip", max_bytes=1_000_000)
    member = gzip.compress(b'{"ping":1}')
    assert inflate(member, "gzip", max_bytes=10) == b'{"ping":1}'  # exactly at the limit
    with pytest.raises(FrameError, match="past the limit"):
        inflate(member, "gzip", max_bytes=9)
    with pytest.raises(FrameError, match="truncated"):
        inflate(member[:-6], "gzip")
    with pytest.raises(FrameError, match="after the end"):
        inflate(member + b"xx", "gzip")
    with pytest.raises(FrameError, match="unknown compression"):
        inflate(member, "brotli")


def test_iso_timestamps_keep_nanoseconds() -> None:
    assert iso_to_ns("2026-08-09T21:05:48.483587501Z") == 1786309548_483587501
    assert iso_to_ns("2021-04-17T16:43:37.075687Z") == 1618677817_075687000
    assert iso_to_ns("2021-04-17T16:43:37Z") == 1618677817_000000000
    assert iso_to_ns(None) is None


def test_ms_to_ns() -> None:
    assert ms_to_ns(1786310818129) == 1786310818129_000000
    assert ms_to_ns("1786310818129") == 1786310818129_000000
    assert ms_to_ns(None) is None


def test_symbols() -> None:
    assert split_concatenated("BTCUSDT") == "BTC-USDT"
    assert split_concatenated("ETHUSDC") == "ETH-USDC"
    assert canonical("btc_usdt") == "BTC-USDT"
    assert canonical("BTCUSDT") == "BTC-USDT"
    assert is_canonical("ETC-USD") and not is_canonical("BTCUSDT") and not is_canonical("btc-usdt")
