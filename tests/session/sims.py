"""Scripted fake venues for the end-to-end tests: listings, books and a loopback server.

A test builds a :class:`core.sim.market.Market` with the listings it needs, loads the books it
starts from, and serves it with :func:`serving` (websocket + REST on 127.0.0.1, ports chosen by
the OS); :func:`endpoints` turns the URLs into ``--endpoint`` flags.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from decimal import Decimal

import trio

from core.clock import TrioClock
from core.sim.market import Listing, Market
from core.sim.server import Simulation
from core.sim.speaker import load_speakers
from core.testing.faults import FaultPlan

D = Decimal
BYBIT_BTC = Listing("bybit", "BTC-USDT", tick=D("0.1"), lot=D("0.001"))
BYBIT_ETH = Listing("bybit", "ETH-USDT", tick=D("0.01"), lot=D("0.01"))
HTX_BTC = Listing("htx", "BTC-USDT", tick=D("0.1"), lot=D("0.001"), contract_size=D("0.001"))
HTX_ETH = Listing("htx", "ETH-USDT", tick=D("0.01"), lot=D("0.01"), contract_size=D("0.01"))
BITGET_BTC = Listing("bitget", "BTC-USDT", tick=D("0.1"), lot=D("0.001"))
BITGET_ETH = Listing("bitget", "ETH-USDT", tick=D("0.01"), lot=D("0.01"))
GATE_BTC = Listing("gateio", "BTC-USDT", tick=D("0.1"), lot=D("0.0001"),
                   contract_size=D("0.0001"))
GATE_ETH = Listing("gateio", "ETH-USDT", tick=D("0.01"), lot=D("0.01"), contract_size=D("0.01"))
COINBASE_ETC = Listing("coinbase", "ETC-USD", tick=D("0.01"), lot=D("0.00000001"))
EXCHANGE_ETC = Listing("coinbase-exchange", "ETC-USD", tick=D("0.01"), lot=D("0.00000001"))


def simulation(market: Market, *, faults: Mapping[str, FaultPlan] | None = None
               ) -> Simulation:
    """Every venue of ``market`` served by its registered speaker."""
    speakers = load_speakers()
    venues = sorted({venue for venue, _ in market.listings})
    return Simulation(market, {v: speakers.get(v)(market) for v in venues}, clock=TrioClock(),
                      faults=faults)


@asynccontextmanager
async def serving(sim: Simulation) -> AsyncIterator[tuple[trio.Nursery,
                                                          dict[str, tuple[str, str | None]]]]:
    """Run ``sim`` on loopback TCP; yields a nursery (for ``sim.play``) and the venue URLs."""
    async with trio.open_nursery() as nursery:
        await nursery.start(sim.run)
        urls = await nursery.start(sim.serve_tcp)
        yield nursery, urls
        nursery.cancel_scope.cancel()


def endpoints(urls: Mapping[str, tuple[str, str | None]],
              venues: Sequence[str] | None = None) -> list[str]:
    """``--endpoint`` flags pointing each venue (websocket and REST) at the fakes."""
    out: list[str] = []
    for venue, (ws, rest) in urls.items():
        if venues is not None and venue not in venues:
            continue
        out += ["--endpoint", f"{venue}={ws}"]
        if rest is not None:
            out += ["--endpoint", f"{venue}.rest={rest}"]
    return out
