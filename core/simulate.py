"""``--simulate``: record from simulated venues on loopback, offline, through real sockets.

For the selected plugins and symbols, builds a seeded market (:mod:`core.sim.simulator`; the
perpetual venues also get funding, mark and index prices and open interest, :mod:`core.sim.perp`),
serves each venue with its registered fake venue (websocket and REST instruments on 127.0.0.1,
ports chosen by the OS), and runs the normal command against them: the same argument list with
``--endpoint`` flags pointing every selected venue at its fake and a private, temporary
instrument cache (simulated instruments never reach the real cache). Books, writers, the live
view and the analyzers are the real ones; only the venues are simulated.

Must not: open a connection to anything but loopback, or touch the user's instrument cache.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Awaitable, Callable, Sequence

import trio

from core.clock import TrioClock
from core.plugins import ExchangeRegistry
from core.sim.market import Market
from core.sim.perp import simulate_perps
from core.sim.server import Simulation
from core.sim.simulator import DEFAULT_EVENTS_PER_S, SimParams, reference, simulate
from core.sim.speaker import load_speakers

EXIT_USAGE = 2
DEFAULT_SEED = 1
DEFAULT_RATE = DEFAULT_EVENTS_PER_S

Main = Callable[..., Awaitable[int]]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``--simulate`` flags (documented in ``docs/cli.md``)."""
    parser.add_argument("--simulate", action="store_true",
                        help="record from simulated venues on loopback instead of the real ones "
                             "(offline; see docs/simulate.md)")
    parser.add_argument("--sim-seed", type=int, default=DEFAULT_SEED, metavar="N",
                        help=f"seed of the simulated market (default: {DEFAULT_SEED})")
    parser.add_argument("--sim-rate", type=float, default=DEFAULT_RATE, metavar="EVENTS",
                        help="book events per second per simulated venue and symbol "
                             f"(default: {DEFAULT_RATE:g})")


def _split(text: str | None) -> list[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def _without(argv: Sequence[str], flags: dict[str, bool]) -> list[str]:
    """``argv`` without the given flags (``True``: the flag takes a value)."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        name = arg.split("=", 1)[0]
        if name in flags:
            skip = flags[name] and "=" not in arg
            continue
        out.append(arg)
    return out


def build(plugins: Sequence[str], symbols: Sequence[str], seed: int, rate: float
          ) -> Simulation:
    """The simulated market of ``plugins`` x ``symbols`` and its fake venues."""
    speakers = load_speakers()
    missing = [p for p in plugins if p not in speakers]
    if missing:
        raise ValueError(f"no fake venue for {', '.join(missing)}; fake venues: "
                         f"{', '.join(speakers.names())}")
    clock = TrioClock()
    market = Market()
    for plugin in plugins:
        for symbol in symbols:
            market.add_listing(speakers.get(plugin).listing(symbol, reference(symbol)[0]))
    params = SimParams(seed=seed, events_per_s=rate)
    simulate(market, params, clock.now_ns())
    simulate_perps(market, [p for p in plugins if speakers.get(p).perpetual], params,
                   clock.now_ns())
    return Simulation(market, {p: speakers.get(p)(market) for p in plugins}, clock=clock)


async def run_simulated(args: argparse.Namespace, argv: Sequence[str] | None,
                        registry: ExchangeRegistry, main: Main, *,
                        handle_signals: bool = True) -> int:
    """Serve the simulated venues, then run ``main`` (``core.run.async_main``) against them."""
    argv = list(sys.argv[1:] if argv is None else argv)
    plugins = _split(args.plugins)
    symbols = _split(args.symbols)
    if args.sim_rate <= 0:
        print("python -m core.run: error: --sim-rate must be a positive number of events per "
              "second", file=sys.stderr)
        return EXIT_USAGE
    if not plugins or not symbols or any(p not in registry for p in plugins):
        # the normal validation refuses this before any connection, naming the valid choices
        return await main(_without(argv, {"--simulate": False}), handle_signals=handle_signals)
    try:
        sim = build(plugins, symbols, args.sim_seed, args.sim_rate)
    except ValueError as exc:
        print(f"python -m core.run: error: --simulate: {exc}", file=sys.stderr)
        return EXIT_USAGE
    command = _without(argv, {"--simulate": False, "--sim-seed": True, "--sim-rate": True,
                              "--cache-dir": True})
    with tempfile.TemporaryDirectory(prefix="bookwire-sim-") as cache:
        async with trio.open_nursery() as nursery:
            await nursery.start(sim.run)
            urls = await nursery.start(sim.serve_tcp)
            for venue, (ws_url, rest_url) in urls.items():
                command += ["--endpoint", f"{venue}={ws_url}"]
                if rest_url is not None:
                    command += ["--endpoint", f"{venue}.rest={rest_url}"]
            command += ["--cache-dir", cache]
            code = await main(command, handle_signals=handle_signals)
            nursery.cancel_scope.cancel()
    return code
