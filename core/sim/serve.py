"""Serve simulated venues on loopback until stopped, in a process of their own.

``python -m core.sim.serve --plugins bybit,htx --symbols BTC-USDT,ETH-USDT`` builds the seeded
market of :func:`core.simulate.build`, serves every venue (websocket and REST instruments on
127.0.0.1, ports chosen by the OS) and prints one JSON line once listening::

    {"bybit": {"ws": "ws://127.0.0.1:40001/v5/public/linear", "rest": "http://127.0.0.1:40002"}}

then serves until its standard input closes or it is interrupted. Point ``python -m core.run``
at it with ``--endpoint bybit=<ws>`` and ``--endpoint bybit.rest=<rest>``; the soak
(:mod:`core.sim.soak`) runs its venues this way, so what the venues hold and spend is not counted
against the recorder it measures.

Must not: listen anywhere but loopback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

import trio

from core.simulate import DEFAULT_RATE, DEFAULT_SEED, build

EXIT_USAGE = 2


async def serve(plugins: Sequence[str], symbols: Sequence[str], *, seed: int = DEFAULT_SEED,
                rate: float = DEFAULT_RATE) -> None:
    """Serve until standard input reaches its end (or the task is cancelled)."""
    sim = build(plugins, symbols, seed, rate)
    async with trio.open_nursery() as nursery:
        await nursery.start(sim.run)
        urls = await nursery.start(sim.serve_tcp)
        print(json.dumps({v: {"ws": ws, "rest": rest} for v, (ws, rest) in urls.items()}),
              flush=True)
        await trio.to_thread.run_sync(sys.stdin.buffer.read, abandon_on_cancel=True)
        nursery.cancel_scope.cancel()


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m core.sim.serve",
        description="Serve simulated venues on loopback; prints their URLs as one JSON line, "
                    "then serves until standard input closes.")
    p.add_argument("--plugins", required=True, help="comma-separated venues with a fake venue")
    p.add_argument("--symbols", required=True, help="comma-separated canonical symbols")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED)
    p.add_argument("--rate", type=float, default=DEFAULT_RATE,
                   help="book events per second per venue and symbol")
    args = p.parse_args(argv)
    plugins = [x for x in args.plugins.split(",") if x]
    symbols = [x for x in args.symbols.split(",") if x]
    if not plugins or not symbols or args.rate <= 0:
        p.error("give at least one plugin and one symbol, and a positive --rate")
    try:
        trio.run(lambda: serve(plugins, symbols, seed=args.seed, rate=args.rate))
    except ValueError as exc:  # no fake venue for a plugin
        print(f"python -m core.sim.serve: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
