"""Checks on a recording request, run before anything connects.

Each check returns the problems it found as one line each, naming the flag and what is valid
(``--endpoint bybit=notaurl: not a websocket URL; expected ws://HOST[:PORT][/PATH] or wss://...``);
the command line collects them and refuses the run with exit code 2 (:class:`UsageError`), so a
user sees every mistake of one command at once instead of one per attempt.

Covered here: plugin names (unknown, failed to load, given twice), channels, symbols, durations
and intervals, endpoint URLs (scheme, host, port; websocket ``ws``/``wss``, REST ``http``/``https``;
venues not selected), venue options (unknown keys, invalid values; see :mod:`core.options`), and
whether ``--out`` can be created and written (:func:`check_out`, which creates the folder and
writes and removes one probe file).

Must not: open a network connection or import trio; only :func:`check_out` touches the disk.
"""

from __future__ import annotations

import ipaddress
import os
import re
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

from core.options import option_problems
from core.plugins import ExchangeRegistry
from core.schema import CHANNELS
from core.symbols import is_canonical

WS_SCHEMES = ("ws", "wss")
REST_SCHEMES = ("http", "https")
_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                       r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$")


def program() -> str:
    """The command name for messages: ``bookwire`` when run as that command."""
    return "bookwire" if Path(sys.argv[0]).name == "bookwire" else "python -m core.run"


class UsageError(Exception):
    """A request that cannot run as given: one or more problems, one line each, each naming the
    flag and the valid choices."""

    def __init__(self, *problems: str) -> None:
        super().__init__(*problems)
        self.problems: list[str] = list(problems)

    def __str__(self) -> str:
        # Printed after "<program>: error: "; every further problem gets the same prefix.
        return f"\n{program()}: error: ".join(self.problems)


def raise_if(problems: Sequence[str]) -> None:
    if problems:
        raise UsageError(*problems)


def split_list(text: str | None) -> list[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]


# -- plugins, channels, symbols -------------------------------------------------------------------


def check_plugins(plugins: Sequence[str], registry: ExchangeRegistry) -> list[str]:
    valid = f"valid choices: {', '.join(registry.names())}"
    if not plugins:
        return [f"--plugins is required; {valid}"]
    problems: list[str] = []
    seen: set[str] = set()
    for name in plugins:
        if name in seen:
            problems.append(f"--plugins: {name!r} is given twice; give each venue once")
        seen.add(name)
        if name in registry:
            continue
        if name in registry.failed:
            problems.append(f"--plugins: plugin {name!r} could not be loaded "
                            f"({registry.failed[name]}); {valid}")
        else:
            problems.append(f"unknown plugin {name!r}; {valid}")
    return problems


def check_channels(channels: Sequence[str], plugins: Sequence[str],
                   registry: ExchangeRegistry) -> list[str]:
    if not channels:
        return [f"--channels is empty; valid choices: {', '.join(CHANNELS)}"]
    problems: list[str] = []
    for ch in channels:
        if ch not in CHANNELS:
            problems.append(f"unknown channel {ch!r}; valid choices: {', '.join(CHANNELS)}")
            continue
        for name in plugins:
            if name in registry and ch not in registry.get(name).channels:
                served = ", ".join(sorted(registry.get(name).channels))
                problems.append(f"--channels: plugin {name!r} does not serve channel {ch!r}; "
                                f"it serves: {served}")
    return problems


def check_symbols(symbols: Sequence[str]) -> list[str]:
    if not symbols:
        return ["--symbols is empty; give canonical BASE-QUOTE symbols like BTC-USDT"]
    return [f"symbol {sym!r} is not canonical BASE-QUOTE in upper case (for example BTC-USDT)"
            for sym in symbols if not is_canonical(sym)]


def check_positive(flag: str, value: float | None, what: str = "seconds") -> list[str]:
    if value is None or (value > 0 and value != float("inf")):
        return []
    return [f"{flag} must be a positive number of {what}, not {value:g}"]


# -- endpoints ------------------------------------------------------------------------------------


def url_problem(url: str, schemes: Sequence[str], *, base: bool = False) -> str | None:
    """Why ``url`` is not a usable URL with one of ``schemes`` (None when it is). ``base``: a
    REST base URL, to which paths are appended, so it may carry no query or fragment."""
    example = f"{schemes[0]}://HOST[:PORT][/PATH]"
    try:
        parts = urlsplit(url)
        port = parts.port  # ValueError when not a number in 0..65535
    except ValueError as exc:
        return f"not a valid URL ({exc}); expected {example}"
    if parts.scheme.lower() not in schemes:
        got = f"scheme {parts.scheme!r}" if parts.scheme else "no scheme"
        return f"{got}; expected {' or '.join(f'{s}://' for s in schemes)} (e.g. {example})"
    host = parts.hostname
    if not host:
        return f"no host; expected {example}"
    if not _HOSTNAME.match(host):
        try:
            ipaddress.ip_address(host)
        except ValueError:
            return f"host {host!r} is not a host name or IP address; expected {example}"
    if port == 0:
        return f"port 0; expected {example}"
    if base and (parts.query or parts.fragment):
        return f"a REST base URL takes no query or fragment; expected {example}"
    return None


def parse_endpoint_flags(items: Sequence[str], registry: ExchangeRegistry,
                         plugins: Sequence[str]
                         ) -> tuple[dict[str, str], dict[str, str], list[str]]:
    """``--endpoint`` values -> (websocket URL per venue, REST base URL per venue, problems)."""
    ws: dict[str, str] = {}
    rest: dict[str, str] = {}
    problems: list[str] = []
    usage = "expected VENUE=URL (websocket) or VENUE.rest=URL (REST base URL)"
    for item in items:
        key, sep, url = item.partition("=")
        venue, _, kind = key.partition(".")
        if not sep or not url or kind not in ("", "rest", "ws"):
            problems.append(f"--endpoint {item}: {usage}")
            continue
        if venue not in registry:
            problems.append(f"--endpoint {item}: unknown plugin {venue!r}; valid choices: "
                            f"{', '.join(registry.names())}")
            continue
        if venue not in plugins:
            problems.append(f"--endpoint {item}: {venue!r} is not among --plugins "
                            f"({', '.join(plugins)})")
            continue
        is_rest = kind == "rest"
        problem = url_problem(url, REST_SCHEMES if is_rest else WS_SCHEMES, base=is_rest)
        if problem is not None:
            what = "REST base URL" if is_rest else "websocket URL"
            problems.append(f"--endpoint {item}: bad {what}: {problem}")
            continue
        target = rest if is_rest else ws
        if venue in target:
            problems.append(f"--endpoint {item}: the {'REST' if is_rest else 'websocket'} URL "
                            f"of {venue} is given twice; give it once")
            continue
        target[venue] = url.rstrip("/") if is_rest else url
    return ws, rest, problems


# -- options --------------------------------------------------------------------------------------


def parse_option_flags(items: Sequence[str], registry: ExchangeRegistry,
                       plugins: Sequence[str]) -> tuple[dict[str, dict[str, str]], list[str]]:
    """``--opt VENUE.KEY=VALUE`` values -> (options per selected venue, problems); every key and
    value is checked against the venue's declared options."""
    out: dict[str, dict[str, str]] = {p: {} for p in plugins}
    problems: list[str] = []
    for item in items:
        key, sep, value = item.partition("=")
        venue, dot, name = key.partition(".")
        if not sep or not dot or not name or not venue:
            problems.append(f"--opt {item}: expected VENUE.KEY=VALUE")
            continue
        if venue not in out:
            problems.append(f"--opt {item}: {venue!r} is not among --plugins "
                            f"({', '.join(plugins)})")
            continue
        if name in out[venue]:
            problems.append(f"--opt {item}: {venue}.{name} is given twice; give it once")
            continue
        out[venue][name] = value
    for venue, options in out.items():
        if venue in registry:
            problems.extend(option_problems(venue, registry.get(venue).options, options))
    return out, problems


# -- output folder --------------------------------------------------------------------------------


def check_out(out: Path, *, create: bool = True) -> list[str]:
    """Create ``out`` (with parents) and write, then remove, one probe file in it. With
    ``create=False``, only what can be seen without creating anything (so that a command with
    other mistakes leaves no folder behind): ``out`` is not a file, and the nearest folder that
    exists on its path can be written to."""
    if out.exists() and not out.is_dir():
        return [f"--out {out}: exists and is not a folder; give a folder to record into"]
    if not create:
        return _out_parent_problem(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return [f"--out {out}: cannot create the folder ({exc.strerror or exc}); give a folder "
                f"you can write to"]
    try:
        fd, probe = tempfile.mkstemp(prefix=".bookwire-probe-", suffix=".tmp", dir=out)
        try:
            os.write(fd, b"probe")
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as exc:
        return [f"--out {out}: cannot write there ({exc.strerror or exc}); give a folder you "
                f"can write to"]
    return []


def _out_parent_problem(out: Path) -> list[str]:
    existing = out.absolute()
    while not existing.exists():
        existing = existing.parent
    if existing != out.absolute() and not existing.is_dir():
        return [f"--out {out}: {existing} is not a folder; give a folder to record into"]
    if not os.access(existing, os.W_OK | os.X_OK):
        return [f"--out {out}: cannot write in {existing}; give a folder you can write to"]
    return []


__all__ = ["REST_SCHEMES", "WS_SCHEMES", "UsageError", "check_channels", "check_out",
           "check_plugins", "check_positive", "check_symbols", "parse_endpoint_flags",
           "parse_option_flags", "program", "raise_if", "split_list", "url_problem"]
