"""Shared command-line plumbing for the analysis scripts.

* :func:`main_guard` runs a script's ``main`` and turns the expected failures (missing data, bad
  arguments, unreadable files) into one line on stderr and exit status 2, never a traceback;
* :func:`parse_time` reads the times users type (ISO 8601, UTC when no zone is given);
* :func:`common_parser` builds an ``argparse`` parser whose help ends with an example.

No analysis logic lives here.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from analysis.load import MissingData


class UsageProblem(Exception):
    """An argument that cannot be used as given (one-line message)."""


def parse_time(text: str) -> datetime:
    """``2024-05-01T12:00:00``, ``2024-05-01 12:00:00.250``, with ``Z`` or an offset; naive
    times are UTC."""
    t = text.strip().replace(" ", "T")
    if t.endswith(("Z", "z")):
        t = t[:-1] + "+00:00"
    try:
        dt = datetime.fromisoformat(t)
    except ValueError as exc:
        raise UsageProblem(f"cannot read time {text!r}; use e.g. 2024-05-01T12:00:00Z") from exc
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def common_parser(prog: str, description: str, example: str) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(
        prog=prog, description=description,
        epilog=f"example:\n  {example}",
        formatter_class=argparse.RawDescriptionHelpFormatter)


def add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", type=Path, required=True,
                   help="root of the recorded tables (DIR/<table>/exchange=*/date=*/*.parquet)")


def main_guard(prog: str, main: Callable[[Sequence[str] | None], int],
               argv: Sequence[str] | None = None) -> int:
    """Run ``main``; expected failures become ``prog: message`` on stderr and status 2."""
    try:
        return main(argv)
    except (MissingData, UsageProblem) as exc:
        msg = str(exc)
    except pl.exceptions.PolarsError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        msg = f"cannot read the data: {first}"
    except OSError as exc:
        msg = f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc)
    print(f"{prog}: {msg}", file=sys.stderr)
    return 2
