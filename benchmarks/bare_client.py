"""The baseline of the end-to-end benchmark: a bare trio-websocket receive loop.

    python -m benchmarks.bare_client ws://127.0.0.1:PORT FRAMES

Connects, sends one subscription-like message, then receives ``FRAMES`` messages and does
nothing with them; exits. What any trio-websocket client pays per message before it does any work.
"""

from __future__ import annotations

import sys

import trio
from trio_websocket import open_websocket_url

MAX_MESSAGE = 64 * 1024 * 1024


async def main(url: str, frames: int) -> None:
    async with open_websocket_url(url, max_message_size=MAX_MESSAGE) as ws:
        await ws.send_message('{"op":"subscribe","args":["bench"]}')
        for _ in range(frames):
            await ws.get_message()


if __name__ == "__main__":
    trio.run(main, sys.argv[1], int(sys.argv[2]))
