"""Progress lines of the analysis scripts: one short line per long step on stderr.

``with progress.step("aligning 6 pairs"):`` prints ``<prog>: [  12.3 s] aligning 6 pairs`` when
the step starts (the elapsed time is since the script started), so a user sees what a silent
minute is spent on. ``Progress(prog, quiet=True)`` prints nothing (the scripts' ``--quiet``).
Warnings (:meth:`Progress.warn`) are printed even when quiet.

Writes to the stream it is given (stderr by default) and nothing else.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO


class Progress:
    def __init__(self, prog: str, *, quiet: bool = False, stream: TextIO | None = None) -> None:
        self.prog = prog
        self.quiet = quiet
        self.stream = stream
        self.t0 = time.perf_counter()

    def elapsed_s(self) -> float:
        return time.perf_counter() - self.t0

    def _out(self) -> TextIO:
        return self.stream if self.stream is not None else sys.stderr

    def note(self, text: str) -> None:
        if not self.quiet:
            print(f"{self.prog}: [{self.elapsed_s():7.1f} s] {text}", file=self._out(),
                  flush=True)

    def warn(self, text: str) -> None:
        print(f"{self.prog}: warning: {text}", file=self._out(), flush=True)

    @contextmanager
    def step(self, text: str) -> Iterator[None]:
        self.note(text)
        yield


def add_quiet_arg(parser: object) -> None:
    """``--quiet``: no progress lines (warnings and errors are still printed)."""
    parser.add_argument("--quiet", action="store_true",  # type: ignore[attr-defined]
                        help="no progress lines on stderr")
