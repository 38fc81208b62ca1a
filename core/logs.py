"""Logging set-up of the command line: one format on stderr, and quiet third-party libraries.

Libraries log what matters to their own authors (httpx logs every request at INFO, trio-websocket
every handshake at DEBUG); a recording's log is about venues and data. Their loggers are held at
WARNING unless ``--log-level DEBUG`` asks for everything.

Must not: be called by library code (only the CLI configures logging), or touch handlers other
than the root's default one.
"""

from __future__ import annotations

import logging
import sys

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: third-party loggers kept at WARNING (their INFO/DEBUG lines are noise in a recording's log)
QUIET_LIBRARIES = ("httpx", "httpcore", "h11", "trio-websocket", "hpack", "matplotlib", "PIL",
                   "asyncio")


def configure_logging(level: str) -> None:
    """Log ``level`` and above to stderr; libraries only from WARNING unless ``level`` is DEBUG."""
    logging.basicConfig(level=level, stream=sys.stderr, format=LOG_FORMAT)
    library_level = logging.DEBUG if level == "DEBUG" else logging.WARNING
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(library_level)


__all__ = ["LOG_FORMAT", "QUIET_LIBRARIES", "configure_logging"]
