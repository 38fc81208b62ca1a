"""Sans-IO protocol for Binance USD-M futures: ``tob`` from ``<symbol>@bookTicker`` and
``trades`` from ``<symbol>@aggTrade``, subscribed with one ``SUBSCRIBE`` request.

Sizes are already in base units. In ``aggTrade``, ``m`` is true when the buyer was the maker, so
the taker sold. The server pings at the websocket level; the session answers those by itself.

Pure: no trio, no sockets, no clock reads.
"""

from __future__ import annotations

import msgspec

from core.codec import MS_NS
from core.protocol import ExchangeProtocol
from core.schema import Event, HealthKind, TopOfBook, Trade
from core.symbols import split_concatenated


class Message(msgspec.Struct):
    """Every frame: a push (``e`` names its kind) or a reply to our request (``id``)."""

    e: str | None = None
    id: int | None = None
    result: None = None
    error: dict[str, object] | None = None
    s: str = ""
    u: int | None = None
    b: str = ""
    B: str = ""
    a: str | int = ""
    A: str = ""
    T: int | None = None
    p: str = ""
    q: str = ""
    m: bool = False


class BinanceFuturesProtocol(ExchangeProtocol):
    name = "binance-futures"
    channels = frozenset({"tob", "trades"})
    default_url = "wss://fstream.binance.com/ws"
    silence_timeout_s = 30.0
    max_sends_per_s = 5.0  # Binance allows 10 incoming messages per second per connection
    description = "Binance USD-M futures (bookTicker, aggTrade): an out-of-tree example"

    def __init__(self, config: object) -> None:
        super().__init__(config)  # type: ignore[arg-type]
        self._decoder = msgspec.json.Decoder(Message)
        self._last_tob: dict[str, tuple[float, float, float, float]] = {}

    @classmethod
    def to_native(cls, symbol: str) -> str:
        return symbol.replace("-", "").lower()

    @classmethod
    def to_canonical(cls, native: str) -> str:
        return split_concatenated(native)

    def subscribe(self, now_ns: int) -> list[str]:
        streams = []
        for sym in self.config.symbols:
            if "tob" in self.config.channels:
                streams.append(f"{self.to_native(sym)}@bookTicker")
            if "trades" in self.config.channels:
                streams.append(f"{self.to_native(sym)}@aggTrade")
        return [msgspec.json.encode({"method": "SUBSCRIBE", "params": streams, "id": 1}).decode()]

    def handle(self, payload: str | bytes, recv_ns: int) -> list[Event]:
        msg = self._decoder.decode(payload)
        if msg.e == "bookTicker":
            sym = self.to_canonical(msg.s)
            top = (float(msg.b), float(msg.B), float(str(msg.a)), float(msg.A))
            if self._last_tob.get(sym) == top:
                return []
            self._last_tob[sym] = top
            return [TopOfBook(exchange=self.name, ts_local=recv_ns, symbol=sym,
                              ts_exchange=msg.T * MS_NS if msg.T else None, bid_px=top[0],
                              bid_sz=top[1], ask_px=top[2], ask_sz=top[3], seq=msg.u)]
        if msg.e == "aggTrade":
            return [Trade(exchange=self.name, ts_local=recv_ns, symbol=self.to_canonical(msg.s),
                          ts_exchange=msg.T * MS_NS if msg.T else None, price=float(msg.p),
                          size=float(msg.q), side="sell" if msg.m else "buy",
                          trade_id=str(msg.a))]
        if msg.id is not None:
            if msg.error:
                return [self.health(HealthKind.SUBSCRIBE_ERROR, str(msg.error))]
            return [self.health(HealthKind.SUBSCRIBED, f"request {msg.id}")]
        return [self.health(HealthKind.VENUE_ERROR, f"unexpected frame: {payload[:200]!r}")]
