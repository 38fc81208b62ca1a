"""Scripted fake venues for the end-to-end tests: listings, books and a loopback server.

A test builds a :class:`core.sim.market.Market` with the listings it needs, loads the books it
starts from, and serves it with :func:`serving` (websocket + REST on 127.0.0.1, ports chosen by
the OS); :func:`endpoints` turns the URLs into ``--endpoint`` flags.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from decimal import Decimal

import trio

from core.clock import TrioClock
from core.sim.market import Listing, Market, Script, Step, load_text
from core.sim.server import Simulation
from core.sim.speaker import RestReply, load_speakers
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
BINANCE_BTC = Listing("binance", "BTC-USDT", tick=D("0.10"), lot=D("0.001"))
BINANCE_ETH = Listing("binance", "ETH-USDT", tick=D("0.01"), lot=D("0.001"))
OKX_BTC = Listing("okx", "BTC-USDT", tick=D("0.1"), lot=D("0.01"), contract_size=D("0.01"))
OKX_ETH = Listing("okx", "ETH-USDT", tick=D("0.01"), lot=D("0.1"), contract_size=D("0.1"))

Wire = list[tuple[str, str]]


def walk(symbol: str, start_bid: float, updates: int, *, trades_every: int = 3,
         step: float = 0.1) -> tuple[Wire, Wire, list[Step]]:
    """A book of 5 levels a side around ``start_bid`` and ``updates`` steps that move it up and
    down by ``step`` (one or two levels each, a level leaving and coming back), with a trade
    every ``trades_every`` steps: (bids, asks, steps), sizes in base units."""
    def px(x: float) -> str:
        return f"{x:.1f}"

    bids: Wire = [(px(start_bid - i * step), f"{1 + i}.000") for i in range(5)]
    asks: Wire = [(px(start_bid + (i + 1) * step), f"{2 + i}.500") for i in range(5)]
    steps: list[Step] = []
    for n in range(updates):
        k = n % 4
        if k == 0:
            b, a = [(px(start_bid - 2 * step), f"{3 + n % 7}.250")], []
        elif k == 1:
            b, a = [], [(px(start_bid + 2 * step), f"{n % 5 + 1}.125")]
        elif k == 2:
            b, a = [(px(start_bid), f"{n % 3 + 1}.500")], [(px(start_bid + 6 * step), "0")]
        else:
            b, a = [(px(start_bid - 5 * step), f"0.{n % 8 + 1}50")], \
                [(px(start_bid + 6 * step), "4.000")]
        trades: list[tuple[str, str, str]] = []
        if n % trades_every == 0:
            trades = [(px(start_bid + step), f"0.{n % 9 + 1}00", "sell" if n % 2 == 0 else "buy")]
        steps.append(Step(symbol, bids=b, asks=a, trades=trades))
    return bids, asks, steps


def endless(venue: str, symbol: str, price: str, *, interval_s: float) -> Script:
    """An endless stream: the size of the bid at ``price`` changes every ``interval_s``
    (1, 2, ... 7, 1, ...), each change one venue message."""
    steps = [Step(symbol, bids=[(price, str(1 + i))]) for i in range(7)]
    return Script(venue, steps, interval_s=interval_s, repeat=True)


def bybit_btc() -> tuple[Simulation, Script]:
    """Bybit's BTC-USDT at 100 / 99 x 101 / 102, then: the best bid's size changes (one delta,
    one new top of book), then two trades. Recorded with ``tob,l2,trades``: tob rows (100, 1,
    101, 2) and (100, 1.5, 101, 2); l2 rows: the snapshot's 4 levels and the delta's 1; trades
    (101.0, 0.5, buy) and (100.0, 0.25, sell)."""
    market = Market([BYBIT_BTC, BYBIT_ETH])
    load_text(market, "bybit", "BTC-USDT", [("100.0", "1"), ("99.0", "2")],
              [("101.0", "2"), ("102.0", "3")])
    script = Script("bybit", [
        Step("BTC-USDT", bids=[("100.0", "1.5")]),
        Step("BTC-USDT", trades=[("101.0", "0.5", "buy"), ("100.0", "0.25", "sell")]),
    ], interval_s=0.05)
    return simulation(market), script


def interleave(*runs: list[Step]) -> list[Step]:
    """Steps of several symbols taken in turn (one of each, then the next of each, ...)."""
    out: list[Step] = []
    for i in range(max(len(r) for r in runs)):
        out += [r[i] for r in runs if i < len(r)]
    return out


def rest_of(venue: str, *listings: Listing) -> Callable[[str], bytes | RestReply | None]:
    """The REST answers of ``venue``'s fake listing ``listings`` (for ``serve_http``), e.g. the
    instruments endpoint of a venue that is not otherwise simulated."""
    return load_speakers().get(venue)(Market(listings)).rest


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
