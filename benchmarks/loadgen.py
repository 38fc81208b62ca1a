"""A load generator for the end-to-end benchmarks: a separate process that serves pre-encoded
websocket frames over loopback as fast as the client reads them, or at a set rate.

    python -m benchmarks.loadgen --venue bybit --frames 200000 [--rate 1500] [--port 0]

It listens on 127.0.0.1 (one websocket port per venue, plus one HTTP port for the venues'
instrument endpoints), answers the websocket handshake, waits for the client's first message
(the subscription), then writes the venue's frames (``benchmarks/frames.py``: a snapshot, then
book updates in the venue's wire format) straight from one pre-encoded buffer with ``sendall``.
The send buffer is kept small, so the time the last frame left is within a few frames of the
time the client read it. Frames from the client are read and discarded (nothing waits for an
answer). A reconnecting client gets nothing more: the stream is sent once.

Prints one JSON line per event on stdout: ``{"ready": {venue: ws_url}, "rest": url}`` at start;
``{"venue": v, "start": t, "end": t, "frames": n}`` (``time.time()`` seconds) when a stream was
sent. Loopback only; never opens a connection to anything else. Not a test.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import json
import socket
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from benchmarks.frames import stream

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
SNDBUF = 64 * 1024
CHUNK_FRAMES = 64  # frames per sendall when paced
PRINT_LOCK = threading.Lock()

INSTRUMENTS: dict[str, tuple[str, bytes]] = {
    "bybit": ("/v5/market/instruments-info", json.dumps({"retCode": 0, "result": {
        "category": "linear", "list": [{
            "symbol": "BTCUSDT", "contractType": "LinearPerpetual", "status": "Trading",
            "baseCoin": "BTC", "quoteCoin": "USDT", "priceFilter": {"tickSize": "0.10"},
            "lotSizeFilter": {"qtyStep": "0.001"}}]}}).encode()),
    "htx": ("/linear-swap-api/v1/swap_contract_info", json.dumps({"status": "ok", "data": [{
        "symbol": "BTC", "contract_code": "BTC-USDT", "contract_size": 0.001, "price_tick": 0.1,
        "contract_status": 1, "business_type": "swap", "contract_type": "swap",
        "pair": "BTC-USDT"}]}).encode()),
    "bitget": ("/api/v2/mix/market/contracts", json.dumps({"code": "00000", "msg": "success",
        "data": [{"symbol": "BTCUSDT", "baseCoin": "BTC", "quoteCoin": "USDT",
                  "pricePlace": "1", "priceEndStep": "1", "sizeMultiplier": "0.001",
                  "symbolType": "perpetual", "symbolStatus": "normal"}]}).encode()),
    "gateio": ("/api/v4/futures/usdt/contracts", json.dumps([{
        "name": "BTC_USDT", "quanto_multiplier": "0.0001", "order_price_round": "0.1",
        "in_delisting": False, "enable_decimal": True, "status": "trading"}]).encode()),
}


def ws_frame(payload: str | bytes) -> bytes:
    """One unmasked server frame (FIN, text or binary)."""
    data = payload.encode() if isinstance(payload, str) else payload
    opcode = 0x1 if isinstance(payload, str) else 0x2
    n = len(data)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, n)
    elif n < 1 << 16:
        head = struct.pack("!BBH", 0x80 | opcode, 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 127, n)
    return head + data


def handshake(conn: socket.socket) -> None:
    request = b""
    while b"\r\n\r\n" not in request:
        chunk = conn.recv(4096)
        if not chunk:
            raise ConnectionError("closed during the handshake")
        request += chunk
    key = ""
    for line in request.decode("latin-1").split("\r\n"):
        name, _, value = line.partition(":")
        if name.strip().lower() == "sec-websocket-key":
            key = value.strip()
    accept = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
    conn.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n").encode())


def drain(conn: socket.socket, first: threading.Event) -> None:
    """Read and discard what the client sends (``first`` is set at its first bytes); answer a
    close frame with a close frame, so the client's closing handshake completes."""
    try:
        while True:
            data = conn.recv(65536)
            if not data:
                return
            first.set()
            if data[0] & 0x0F == 0x8:
                conn.sendall(b"\x88\x00")
                return
    except OSError:
        return


class Venue:
    def __init__(self, name: str, frames: int, rate: float | None, seed: int) -> None:
        self.name = name
        self.rate = rate
        _, raw = stream(name, frames, seed=seed)
        self.frames = [ws_frame(f) for f in raw]
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.sent = False

    def serve(self) -> None:
        while True:
            conn, _ = self.sock.accept()
            threading.Thread(target=self.session, args=(conn,), daemon=True).start()

    def session(self, conn: socket.socket) -> None:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SNDBUF)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            handshake(conn)
        except (ConnectionError, OSError):
            conn.close()
            return
        subscribed = threading.Event()
        threading.Thread(target=drain, args=(conn, subscribed), daemon=True).start()
        subscribed.wait(30)
        if self.sent:
            return  # the stream goes out once; a reconnect just stays open and idle
        self.sent = True
        start = time.time()
        try:
            if self.rate is None:
                conn.sendall(b"".join(self.frames))
            else:
                gap = CHUNK_FRAMES / self.rate
                next_t = time.monotonic()
                for i in range(0, len(self.frames), CHUNK_FRAMES):
                    conn.sendall(b"".join(self.frames[i:i + CHUNK_FRAMES]))
                    next_t += gap
                    pause = next_t - time.monotonic()
                    if pause > 0:
                        time.sleep(pause)
        except OSError:
            return
        end = time.time()
        with PRINT_LOCK:
            print(json.dumps({"venue": self.name, "start": start, "end": end,
                              "frames": len(self.frames)}), flush=True)


def rest_server() -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            for path, body in INSTRUMENTS.values():
                if self.path.startswith(path):
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--venue", action="append", required=True)
    p.add_argument("--frames", type=int, default=200_000, help="frames per venue")
    p.add_argument("--rate", type=float, default=None, help="frames per second per venue")
    p.add_argument("--seed", type=int, default=7)
    args = p.parse_args()
    venues = [Venue(v, args.frames, args.rate, args.seed) for v in args.venue]
    rest = rest_server()
    for v in venues:
        threading.Thread(target=v.serve, daemon=True).start()
    print(json.dumps({"ready": {v.name: f"ws://127.0.0.1:{v.port}" for v in venues},
                      "rest": f"http://127.0.0.1:{rest.server_address[1]}"}), flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        sys.stdin.read()  # runs until the harness closes our stdin


if __name__ == "__main__":
    main()
