"""A capture process started by ``--processes`` stops when the process that started it is gone.

The parent names itself in the child's environment (:data:`PARENT_PID_ENV`); the child waits for
that process to exit (a pidfd on Linux, else a look every half second at whether it is still
that process's child), and then, however the parent died, sends itself SIGTERM: the usual
graceful stop, so everything buffered is flushed. (Linux's ``PR_SET_PDEATHSIG`` is no
substitute: it fires when the *thread* that started the child exits, and trio starts processes
from worker threads that exit after a few idle seconds.) Must not stop a process that was not
started this way.
"""

from __future__ import annotations

import logging
import os
import signal

import trio

PARENT_PID_ENV = "BOOKWIRE_PARENT_PID"
CHECK_EVERY_S = 0.5

log = logging.getLogger("bookwire")


def parent_to_watch() -> int | None:
    """The pid this process must outlive no longer than a moment, or None."""
    value = os.environ.get(PARENT_PID_ENV, "")
    return int(value) if value.isdigit() else None


def child_environment() -> dict[str, str]:
    """The environment of a capture process started by this one."""
    return {**os.environ, PARENT_PID_ENV: str(os.getpid())}


async def watch_parent(pid: int) -> None:
    """Return after sending this process SIGTERM once its parent is no longer ``pid``: woken by
    the parent's exit where the system can say it (a Linux pidfd), else by looking every
    :data:`CHECK_EVERY_S`."""
    if os.getppid() == pid:
        fd = _pidfd(pid)
        if fd is not None:
            try:
                await trio.lowlevel.wait_readable(fd)  # readable when that process exits
            finally:
                os.close(fd)
        else:
            while True:  # nothing else wakes a process when its parent dies: it can only look
                await trio.sleep(CHECK_EVERY_S)
                if os.getppid() != pid:
                    break
    log.warning("the process that started this one (pid %d) is gone: stopping", pid)
    os.kill(os.getpid(), signal.SIGTERM)


def _pidfd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):  # not Linux 5.3+, or the process is already gone
        return None
