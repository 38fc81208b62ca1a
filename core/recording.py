"""The raw-frame recording interface the session calls for every connect, frame and close.

:class:`NullRecorder` does nothing (the default). The on-disk recorder behind ``--record-raw``
implements the same five methods; they are synchronous and must only buffer (the recorder's own
task does the file I/O), because they run on the session's reader path.
"""

from __future__ import annotations

from typing import Protocol


class Recorder(Protocol):
    def opened(self, venue: str, conn: int, url: str, ts_ns: int) -> None: ...
    def received(self, venue: str, conn: int, ts_ns: int, frame: str | bytes) -> None: ...
    def sent(self, venue: str, conn: int, ts_ns: int, frame: str | bytes) -> None: ...
    def closed(self, venue: str, conn: int, ts_ns: int, reason: str) -> None: ...
    def http(self, venue: str, url: str, ts_ns: int, body: bytes) -> None: ...


class NullRecorder:
    def opened(self, venue: str, conn: int, url: str, ts_ns: int) -> None:
        pass

    def received(self, venue: str, conn: int, ts_ns: int, frame: str | bytes) -> None:
        pass

    def sent(self, venue: str, conn: int, ts_ns: int, frame: str | bytes) -> None:
        pass

    def closed(self, venue: str, conn: int, ts_ns: int, reason: str) -> None:
        pass

    def http(self, venue: str, url: str, ts_ns: int, body: bytes) -> None:
        pass
