"""Watch the queue-reactive shortened book of a symbol live, while it is being recorded.

    python examples/live_short_book.py --plugins coinbase --symbols ETC-USD --channels l2 \
        --levels 5 --duration 60

Every flag of ``python -m core.run`` works here too (``--out``, ``--endpoint``, ...); the tables
are written as usual. Once a second it prints, per venue and symbol, the reference price and the
K queues on each side of it (tick size from the venue's product metadata).
"""

from __future__ import annotations

import sys

import trio

from core.bus import Bus
from core.clock import Clock
from core.live_books import LiveBooks
from core.plugins import load_plugins
from core.run import build_parser, plan_run
from core.session import VenueStats
from core.supervisor import record


def render(live: LiveBooks, venue: str, symbol: str, k: int) -> str:
    view = live.short_book(venue, symbol, k)
    if view is None:
        return f"{venue} {symbol}: waiting for a trusted book with an odd spread"
    bids = " ".join(f"{view.size(i):g}" for i in range(-k, 0))
    asks = " ".join(f"{view.size(i):g}" for i in range(1, k + 1))
    return f"{venue} {symbol}: p_ref {view.ref_price:.6g} | bids {bids} | asks {asks}"


async def main(argv: list[str]) -> int:
    parser = build_parser()
    parser.add_argument("--levels", type=int, default=5, help="queues per side (default: 5)")
    args = parser.parse_args(argv)
    _, registry = load_plugins()
    plan = await plan_run(args, registry)
    live = LiveBooks(instruments=plan.instruments)
    plan.consumers.append(live.consumer())

    async def show(stats: list[VenueStats], bus: Bus, clock: Clock, interval_s: float) -> None:
        while True:
            await trio.sleep(1.0)
            for venue in plan.venues:
                for symbol in venue.config.symbols:
                    print(render(live, venue.proto.name, symbol, args.levels), flush=True)

    plan.status_view = show
    await record(plan)
    return 0


if __name__ == "__main__":
    sys.exit(trio.run(main, sys.argv[1:]))
