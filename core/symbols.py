"""Canonical symbols (``BASE-QUOTE``, upper case) and conversions from venue spellings.

Pure string handling; no I/O.
"""

from __future__ import annotations

import re

CANONICAL = re.compile(r"^[A-Z0-9]{1,20}-[A-Z0-9]{1,10}$")

# Quote assets tried, longest first, when splitting a concatenated name such as ``BTCUSDT``.
KNOWN_QUOTES = ("USDT", "USDC", "FDUSD", "BUSD", "USD", "EUR", "GBP", "BTC", "ETH", "PERP")


def is_canonical(symbol: str) -> bool:
    return bool(CANONICAL.match(symbol))


def split_concatenated(native: str) -> str:
    """``BTCUSDT`` -> ``BTC-USDT``; the name is returned unchanged when no known quote fits."""
    upper = native.upper()
    for quote in sorted(KNOWN_QUOTES, key=len, reverse=True):
        if upper.endswith(quote) and len(upper) > len(quote):
            return f"{upper[: -len(quote)]}-{quote}"
    return upper


def canonical(text: str) -> str:
    """Accept ``BTC-USDT``, ``BTC_USDT``, ``btc/usdt`` or ``BTCUSDT`` and return ``BTC-USDT``."""
    t = text.strip().upper().replace("_", "-").replace("/", "-")
    if "-" in t:
        return t
    return split_concatenated(t)
