"""Per venue: what ``receive()`` costs next to a bare typed msgspec decode of the same frames.

    python -m benchmarks.bench_plugins [--frames N] [--repeats R] [--only PLUGIN,...]

For each venue, realistic frames in its wire format (``benchmarks/frames.py``: a 200-level book
and updates of 1 to 6 levels per side; Bitget's and OKX's carry the venue's checksum, which the
plugin verifies) go through the plugin's ``receive`` (decode, checks, book, events; the HTX gzip
inflate included) and, side by side in the same run, through a bare ``msgspec.json.decode`` into
typed Structs of the whole frame (after a bare ``zlib`` inflate for HTX), alternating run by
run. The book's snapshot is not timed (Binance's comes from its REST answer, bridged with the
first diff as the venue's procedure says). The ratio of the two
fastest runs is what the plugin adds; absolute times vary with the machine and its load, the
ratios hold. Prints a table; not a
test.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import platform
import time
import zlib
from collections.abc import Callable

import msgspec

from benchmarks.frames import stream
from core.plugins import load_plugins
from core.protocol import ExchangeProtocol

T0 = 1_786_310_818_000_000_000
TextLevel = tuple[str, str]


class BybitData(msgspec.Struct):
    s: str
    b: list[TextLevel]
    a: list[TextLevel]
    u: int
    seq: int


class BybitFrame(msgspec.Struct):
    topic: str
    type: str
    ts: int
    data: BybitData
    cts: int


class BybitTrade(msgspec.Struct):
    T: int
    s: str
    S: str
    v: str
    p: str
    L: str
    i: str
    BT: bool
    seq: int


class BybitTrades(msgspec.Struct):
    topic: str
    type: str
    ts: int
    data: list[BybitTrade]


class HtxTick(msgspec.Struct):
    bids: list[tuple[float, float]]
    asks: list[tuple[float, float]]
    ch: str
    event: str
    id: int
    mrid: int
    ts: int
    version: int


class HtxFrame(msgspec.Struct):
    ch: str
    ts: int
    tick: HtxTick


class BitgetArg(msgspec.Struct):
    instType: str
    channel: str
    instId: str


class BitgetData(msgspec.Struct):
    asks: list[TextLevel]
    bids: list[TextLevel]
    checksum: int
    seq: int
    pseq: int
    ts: str


class BitgetFrame(msgspec.Struct):
    action: str
    arg: BitgetArg
    data: list[BitgetData]
    ts: int


class GateResult(msgspec.Struct):
    t: int
    s: str
    u: int
    b: list[TextLevel]
    a: list[TextLevel]
    U: int | None = None
    full: bool = False


class GateFrame(msgspec.Struct):
    time: int
    time_ms: int
    channel: str
    event: str
    result: GateResult


class CbUpdate(msgspec.Struct):
    side: str
    event_time: str
    price_level: str
    new_quantity: str


class CbEvent(msgspec.Struct):
    type: str
    product_id: str
    updates: list[CbUpdate]


class CbFrame(msgspec.Struct):
    channel: str
    client_id: str
    timestamp: str
    sequence_num: int
    events: list[CbEvent]


class CbxFrame(msgspec.Struct):
    type: str
    product_id: str
    time: str
    changes: list[tuple[str, str, str]] | None = None
    bids: list[TextLevel] | None = None
    asks: list[TextLevel] | None = None


class BinanceDiff(msgspec.Struct):
    e: str
    E: int
    T: int
    s: str
    U: int
    u: int
    pu: int
    b: list[TextLevel]
    a: list[TextLevel]


class OkxArg(msgspec.Struct):
    channel: str
    instId: str


class OkxBooks(msgspec.Struct):
    asks: list[tuple[str, str, str, str]]
    bids: list[tuple[str, str, str, str]]
    ts: str
    checksum: int
    prevSeqId: int
    seqId: int


class OkxFrame(msgspec.Struct):
    arg: OkxArg
    action: str
    data: list[OkxBooks]


def bare_json(struct: type) -> Callable[[str | bytes], object]:
    return msgspec.json.Decoder(struct).decode


def bare_gzip(struct: type) -> Callable[[str | bytes], object]:
    decode = msgspec.json.Decoder(struct).decode

    def run(frame: str | bytes) -> object:
        assert isinstance(frame, bytes)
        return decode(zlib.decompress(frame, 16 + zlib.MAX_WBITS))

    return run


# (row label, generator, plugin name, bare decoder, target ratio)
CASES: list[tuple[str, str, str, Callable[[str | bytes], object], float]] = [
    ("bybit orderbook.50 delta", "bybit", "bybit", bare_json(BybitFrame), 3.0),
    ("bybit publicTrade", "bybit-trades", "bybit", bare_json(BybitTrades), 4.0),
    ("htx depth.size_20 update (gzip)", "htx", "htx", bare_gzip(HtxFrame), 4.0),
    ("bitget books update + checksum", "bitget", "bitget", bare_json(BitgetFrame), 8.0),
    ("gateio futures.obu update", "gateio", "gateio", bare_json(GateFrame), 4.0),
    ("coinbase l2_data update", "coinbase", "coinbase", bare_json(CbFrame), 4.0),
    ("coinbase-exchange l2update", "coinbase-exchange", "coinbase-exchange",
     bare_json(CbxFrame), 4.0),
    ("binance depthUpdate", "binance", "binance", bare_json(BinanceDiff), 4.0),
    ("okx books update + checksum", "okx", "okx", bare_json(OkxFrame), 8.0),
]


def prime(proto: ExchangeProtocol, frames: list[str | bytes]) -> int:
    """Give ``proto`` its book's snapshot from the head of ``frames``; returns how many frames
    that took (the rest are timed)."""
    if proto.name != "binance":
        proto.receive(frames[0], T0)
        return 1
    # the first diff is buffered and asks for the REST snapshot, which bridges it
    snapshot = frames[0]
    assert isinstance(snapshot, bytes)
    proto.receive(frames[1], T0)
    (request,) = proto.rest_requests_to_send()
    proto.rest_response(request.key, 200, snapshot, T0 + 1)
    return 2


def time_receive(proto_cls: type[ExchangeProtocol], config: object,
                 frames: list[str | bytes]) -> float:
    proto = proto_cls(config)  # type: ignore[arg-type]
    proto.connection_made(T0)
    proto.frames_to_send()
    receive = proto.receive
    start = time.perf_counter()
    for i, frame in enumerate(frames):
        receive(frame, T0 + i)
    elapsed = time.perf_counter() - start
    errors = sum(proto.decode_errors.values())
    assert errors == 0, f"{proto_cls.name}: {proto.decode_errors}"
    return elapsed / len(frames)


def time_bare(decode: Callable[[str | bytes], object], frames: list[str | bytes]) -> float:
    start = time.perf_counter()
    for frame in frames:
        decode(frame)
    return (time.perf_counter() - start) / len(frames)


def run(n_frames: int, repeats: int, only: frozenset[str] = frozenset()
        ) -> list[tuple[str, float, float, float, float]]:
    _, registry = load_plugins()
    rows = []
    for label, gen, plugin, bare, target in CASES:
        if only and plugin not in only:
            continue
        config, frames = stream(gen, n_frames)
        proto_cls = registry.get(plugin)
        recv_t: list[float] = []
        bare_t: list[float] = []
        body: list[str | bytes] = []
        for _ in range(repeats):
            # the plugin replays from the snapshot each time; only the updates are timed (the
            # snapshot is timed elsewhere: bench_coinbase_snapshot.py)
            proto = proto_cls(config)
            proto.connection_made(T0)
            body = frames[prime(proto, frames):]
            proto.frames_to_send()
            start = time.perf_counter()
            for i, frame in enumerate(body):
                proto.receive(frame, T0 + i + 2)
            recv_t.append((time.perf_counter() - start) / len(body))
            assert not proto.decode_errors, f"{plugin}: {proto.decode_errors}"
            # every update applied to a live book (none buffered, skipped or refused)
            assert all(st.live for k in proto.keepers for st in k.states.values()), \
                f"{plugin}: a book is not live"
            assert not getattr(proto, "unchecked", 0), f"{plugin}: checksums not verified"
            bare_t.append(time_bare(bare, body))
        r, b = min(recv_t), min(bare_t)  # the least disturbed run of each (timeit's advice)
        rows.append((label, r * 1e6, b * 1e6, r / b, target))
    return rows


def cryptofeed_bybit(frames: list[str | bytes], repeats: int) -> tuple[str, float] | None:
    """cryptofeed's Bybit handler (``message_handler``: JSON with Decimals, its C order book,
    the book callback) on the same frames, if cryptofeed is installed (it is optional and never
    a dependency); its symbol table is filled in by hand, so nothing goes to the network."""
    try:
        import asyncio

        from cryptofeed.defines import L2_BOOK
        from cryptofeed.exchanges import Bybit
        from cryptofeed.symbols import Symbols
    except ImportError:
        return None
    Symbols.set(Bybit.id, {"BTC-USDT-PERP": "BTCUSDT"}, {})

    async def nothing(book: object, receipt: float) -> None:
        pass

    class Conn:
        address = "wss://stream.bybit.com/v5/public/linear"
        uuid = "bench"

    async def run() -> float:
        feed = Bybit(symbols=["BTC-USDT-PERP"], channels=[L2_BOOK],
                     callbacks={L2_BOOK: nothing})
        await feed.message_handler(frames[0], Conn, 0.0)
        start = time.perf_counter()
        for frame in frames[1:]:
            await feed.message_handler(frame, Conn, 0.0)
        return (time.perf_counter() - start) / (len(frames) - 1)

    version = importlib.metadata.version("cryptofeed")
    return version, min(asyncio.run(run()) for _ in range(repeats))


def table(rows: list[tuple[str, float, float, float, float]]) -> str:
    lines = ["| frames | receive() µs | bare decode µs | ratio | target |",
             "|---|---|---|---|---|"]
    for label, r, b, ratio, target in rows:
        mark = "" if ratio <= target else " (missed)"
        goal = f"≤ {target:g}x" if target != float("inf") else "(none)"
        lines.append(f"| {label} | {r:.2f} | {b:.2f} | {ratio:.2f}x{mark} | {goal} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=20_000)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--only", default="", help="comma-separated plugin names (default: all)")
    args = p.parse_args()
    only = frozenset(filter(None, args.only.split(",")))
    rows = run(args.frames, args.repeats, only)
    _, frames = stream("bybit", args.frames)
    cf = cryptofeed_bybit(frames, args.repeats) if not only or "bybit" in only else None
    if cf is not None and rows[0][0].startswith("bybit"):
        bybit = rows[0]
        rows.append((f"for comparison: cryptofeed {cf[0]} Bybit handler, same frames",
                     cf[1] * 1e6, bybit[2], cf[1] * 1e6 / bybit[2], float("inf")))
    print(f"# receive() vs bare typed decode ({args.frames} frames, best of {args.repeats}; "
          f"Python {platform.python_version()}, msgspec {msgspec.__version__})")
    print(table(rows))


if __name__ == "__main__":
    main()
