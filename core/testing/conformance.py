"""Generic checks every venue protocol must pass, for built-in and third-party plugins alike.

``check_protocol(ProtocolClass, config)`` runs them synchronously and raises AssertionError with a
clear message on the first violation. It checks the class attributes, that a fresh connection
produces subscribe frames, that malformed frames (bad JSON, wrong shapes, random bytes, empty
frames) become ``decode_error``/``venue_error`` health events instead of exceptions, that the
plugin's module does not import trio or read clocks, that deadlines advance, and that a venue
with several endpoints (``lanes``) serves every channel on one of them.
"""

from __future__ import annotations

import ast
import inspect
import sys

from core.codec import S_NS
from core.protocol import ExchangeProtocol, ProtocolConfig
from core.schema import CHANNELS, Event, Health

T0 = 1_700_000_000_000_000_000

GARBAGE: tuple[str | bytes, ...] = (
    "", "{", "[]", "null", "42", '"text"', "{}", '{"data": 1}', '{"topic": 5}',
    '{"arg": {}, "data": [{}]}', '{"channel": "x", "result": {}}', '{"type": "snapshot"}',
    '{"ch": "market.BTC-USDT.depth.step0", "tick": {"bids": "x"}}',
    '{"channel": "l2_data", "events": [{"type": "snapshot"}]}',
    b"", b"\x00\xff\x10garbage", b"\x1f\x8b\x08\x00broken-gzip",
)

FORBIDDEN_IMPORTS = {"trio", "trio_websocket", "socket", "httpx", "time", "asyncio"}


def check_protocol(proto_cls: type[ExchangeProtocol], config: ProtocolConfig) -> None:
    for attr in ("name", "channels", "default_url"):
        assert getattr(proto_cls, attr, None), f"{proto_cls.__name__}.{attr} is not set"
    assert set(proto_cls.channels) <= set(CHANNELS), \
        f"{proto_cls.name}: unknown channels {set(proto_cls.channels) - set(CHANNELS)}"
    assert proto_cls.default_url.startswith("wss://"), \
        f"{proto_cls.name}: default URL must use TLS (wss://)"
    if proto_cls.lanes:  # every channel is served by one of the venue's endpoints
        served = set().union(*(lane.channels for lane in proto_cls.lanes))
        assert set(proto_cls.channels) <= served, \
            f"{proto_cls.name}: no lane serves {sorted(set(proto_cls.channels) - served)}"
    age = proto_cls.max_connection_age_s
    assert age is None or age > 0, f"{proto_cls.name}: max_connection_age_s must be positive"
    check_pure_module(proto_cls)

    proto = proto_cls(config)
    if proto.keepers:
        assert proto_cls.resync is not ExchangeProtocol.resync, \
            f"{proto_cls.name}: keeps books but does not implement resync()"
    proto.connection_made(T0)
    frames = proto.frames_to_send()
    assert frames, f"{proto_cls.name}: a new connection must queue subscribe frames"
    assert all(isinstance(f, str) for f in frames), f"{proto_cls.name}: frames must be str"

    for i, frame in enumerate(GARBAGE):
        try:
            events = proto.receive(frame, T0 + i)
        except Exception as exc:  # the point of the check: report what escaped
            raise AssertionError(f"{proto_cls.name}: receive({frame!r}) raised "
                                 f"{type(exc).__name__}: {exc}") from exc
        assert isinstance(events, list), f"{proto_cls.name}: receive must return a list"
        for e in events:
            assert isinstance(e, Event), f"{proto_cls.name}: {e!r} is not an Event"
            if not isinstance(e, Health):
                raise AssertionError(f"{proto_cls.name}: garbage {frame!r} produced data {e!r}")

    deadline = proto.next_deadline()
    if deadline is not None:
        proto.on_deadline(deadline)
        after = proto.next_deadline()
        assert after is None or after > deadline, \
            f"{proto_cls.name}: on_deadline({deadline}) did not move the next deadline"
    proto.connection_lost(T0 + 60 * S_NS)
    proto.connection_made(T0 + 61 * S_NS)
    assert proto.frames_to_send(), f"{proto_cls.name}: a reconnect must resubscribe"


def check_pure_module(proto_cls: type[ExchangeProtocol]) -> None:
    """The protocol's package imports no I/O or clock modules."""
    module = sys.modules[proto_cls.__module__]
    package = module.__name__.rsplit(".", 1)[0]
    for name, mod in list(sys.modules.items()):
        if not (name == package or name.startswith(package + ".")) or mod is None:
            continue
        try:
            source = inspect.getsource(mod)
        except (OSError, TypeError):
            continue
        for node in ast.walk(ast.parse(source)):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for n in names:
                root = n.split(".")[0]
                assert root not in FORBIDDEN_IMPORTS, \
                    f"{name} imports {n}: venue protocols must stay sans-IO"
