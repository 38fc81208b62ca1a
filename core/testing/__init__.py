"""Public helpers for testing venue plugins (the way ``trio.testing`` helps stream authors).

* :mod:`core.testing.captures`: read recorded websocket sessions (JSON lines, optionally gzip).
* :mod:`core.testing.fake_servers`: loopback websocket and HTTP servers for session/CLI tests.
* :mod:`core.testing.conformance`: generic checks every venue protocol should pass.
"""
