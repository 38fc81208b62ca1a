"""Public helpers for testing venue plugins (the way ``trio.testing`` helps stream authors).

* :mod:`core.testing.captures`: read recorded websocket sessions (JSON lines, optionally gzip).
* :mod:`core.testing.fake_servers`: loopback websocket and HTTP servers for session/CLI tests.
* :mod:`core.testing.conformance`: generic checks every venue protocol should pass.
* :mod:`core.testing.faults`: scripted faults for fake venues (closes, stalls, lost and repeated
  deltas, garbage, refused subscriptions, ...).
* :mod:`core.testing.scenario`: run protocols against their fake venues with faults, on memory
  streams and trio's mock clock, and check recovery and books.
"""
