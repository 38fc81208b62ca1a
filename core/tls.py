"""The TLS client contexts every connection of a run shares: one for websockets (the system's
default trust store, as ``ssl.create_default_context`` gives) and one for REST over httpx (the
certifi bundle, as httpx uses by default). Certificate and host verification stay on.

Building a context reads a whole trust store (15-20 ms of CPU); built once per process instead of
once per connection, it no longer stalls the event loop whenever a venue connects or makes its
first REST call. :func:`warm` builds both before a run starts. Must not weaken verification.
"""

from __future__ import annotations

import ssl
from functools import cache

import certifi


@cache
def websocket_context() -> ssl.SSLContext:
    """The context of every ``wss://`` connection."""
    return ssl.create_default_context()


@cache
def rest_context() -> ssl.SSLContext:
    """The context of every REST client (httpx ``verify=``)."""
    return ssl.create_default_context(cafile=certifi.where())


def warm() -> None:
    """Build both contexts now (before the event loop is busy)."""
    websocket_context()
    rest_context()
