"""A fake Coinbase Exchange legacy feed (``ws-feed``), and builders of its frames.

What it says, as the feed does:

* a connection that sends no ``subscribe`` within ``SUBSCRIBE_WITHIN_NS`` is closed (1008);
* a ``subscribe`` (``product_ids`` + ``channels``) naming a product it does not list is
  rejected whole: ``{"type":"error","message":"Failed to subscribe","reason":"X is not a valid
  product"}`` and the unchanged ``subscriptions`` list; otherwise the ``subscriptions`` reply,
  then per channel and product: a ``snapshot`` (``level2_batch``, the whole book), the
  ``last_match`` (``matches``) and a first ``ticker`` (no time);
* ``l2update`` frames with ``changes`` ``[side, price, new size]`` (sides ``buy``/``sell``), no
  sequence number, as on the real feed; ``match`` per trade (``side`` is the maker's) followed
  by a ``ticker`` with the best bid and ask; ``heartbeat`` every second per product;
* REST ``/products``: the listings.

Sans-IO like the plugin: no trio, no sockets, no clock reads.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import msgspec

from core.codec import S_NS
from core.sim.market import Listing, Market, MarketEvent, TradePrint
from core.sim.simulator import power_of_ten
from core.sim.speaker import PERMANENT, TRANSIENT_TEXT, Out, SpeakerSession, VenueSpeaker

SUBSCRIBE_WITHIN_NS = 5 * S_NS
HEARTBEAT_NS = S_NS
PRODUCTS_PATH = "/products"
BASE_TIME = datetime(2026, 8, 9, 21, 5, 48, tzinfo=UTC)
_encode = msgspec.json.Encoder().encode

# (side "buy"|"sell", price text, new size text)
Change = tuple[str, str, str]


def _text(obj: dict[str, object]) -> str:
    return _encode(obj).decode()


def iso(offset_us: int = 0) -> str:
    """RFC 3339 UTC text ``offset_us`` after BASE_TIME."""
    return (BASE_TIME + timedelta(microseconds=offset_us)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def iso_ns(ts_ns: int) -> str:
    return datetime.fromtimestamp(ts_ns // 1000 / 1e6, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def ladder(best: float, n: int, step: float, *, down: bool, size0: float = 0.5,
           decimals: int = 2) -> list[tuple[str, str]]:
    """``n`` price levels from ``best`` away from the touch, as wire text ``(price, size)``."""
    out = []
    for i in range(n):
        px = best - i * step if down else best + i * step
        size = f"{size0 + (i % 97) * 0.01:.8f}".rstrip("0").rstrip(".")
        out.append((f"{px:.{decimals}f}", size))
    return out


def snapshot_frame(product: str, bids: Sequence[tuple[str, str]],
                   asks: Sequence[tuple[str, str]], time: str | None = None) -> str:
    obj: dict[str, object] = {"type": "snapshot", "product_id": product,
                              "bids": [list(b) for b in bids], "asks": [list(a) for a in asks]}
    if time is not None:
        obj["time"] = time
    return _text(obj)


def l2update_frame(product: str, changes: Iterable[Change], time: str) -> str:
    return _text({"type": "l2update", "product_id": product,
                  "changes": [list(c) for c in changes], "time": time})


def match_frame(product: str, trade_id: int, price: str, size: str, maker_side: str, time: str,
                sequence: int = 50, kind: str = "match") -> str:
    return _text({"type": kind, "trade_id": trade_id, "maker_order_id": "ac928c66-ca53-498f-9c13",
                  "taker_order_id": "132fb6ae-456b-4654-b4e0", "side": maker_side,
                  "size": size, "price": price, "product_id": product, "sequence": sequence,
                  "time": time})


def ticker_frame(product: str, sequence: int, best: tuple[str, str, str, str], time: str | None,
                 price: str = "13.22", trade_id: int | None = None) -> str:
    bid, bid_size, ask, ask_size = best
    obj: dict[str, object] = {
        "type": "ticker", "sequence": sequence, "product_id": product, "price": price,
        "open_24h": "64675.22", "volume_24h": "2867.54", "low_24h": "64675.22",
        "high_24h": "65252.99", "volume_30d": "98783.6", "best_bid": bid,
        "best_bid_size": bid_size, "best_ask": ask, "best_ask_size": ask_size}
    if time is not None:
        obj.update(side="buy", time=time, trade_id=trade_id, last_size="0.01")
    return _text(obj)


def heartbeat_frame(product: str, sequence: int, last_trade_id: int, time: str) -> str:
    return _text({"type": "heartbeat", "sequence": sequence, "last_trade_id": last_trade_id,
                  "product_id": product, "time": time})


def subscriptions_frame(channels: dict[str, list[str]]) -> str:
    return _text({"type": "subscriptions",
                  "channels": [{"name": n, "product_ids": ps} for n, ps in channels.items()]})


def error_frame(reason: str, message: str = "Failed to subscribe") -> str:
    return _text({"type": "error", "message": message, "reason": reason})


def _plain(value: Decimal) -> str:
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


class ExchangeSession(SpeakerSession):
    speaker: ExchangeSpeaker

    def __init__(self, speaker: VenueSpeaker, conn_id: int, now_ns: int) -> None:
        super().__init__(speaker, conn_id, now_ns)
        self.subs: dict[str, list[str]] = {}
        self.subscribed_once = False
        self.close_at: int | None = now_ns + SUBSCRIBE_WITHIN_NS
        self.next_heartbeat_ns = now_ns + HEARTBEAT_NS

    # -- client frames ---------------------------------------------------------------------------

    def receive(self, frame: str | bytes, now_ns: int) -> list[Out]:
        try:
            req = msgspec.json.decode(frame)
            products = [str(p) for p in req.get("product_ids", [])]
            names = [c if isinstance(c, str) else c["name"] for c in req.get("channels", [])]
        except (msgspec.DecodeError, AttributeError, KeyError, TypeError):
            return [Out(error_frame("malformed request", "Failed to parse"), "error")]
        if req.get("type") == "subscribe":
            self.close_at = None
            return self._subscribe(products, names, now_ns)
        if req.get("type") == "unsubscribe":
            for name in names:
                left = [p for p in self.subs.get(name, []) if p not in products]
                if left:
                    self.subs[name] = left
                else:
                    self.subs.pop(name, None)
            return [Out(subscriptions_frame(self.subs), "ack")]
        return [Out(error_frame(f"unknown type {req.get('type')!r}"), "error")]

    def _subscribe(self, products: list[str], names: list[str], now_ns: int) -> list[Out]:
        bad = [p for p in products if not self.speaker.listed(p)]
        if bad:
            return [Out(error_frame(f"{bad[0]} is not a valid product"), "error"),
                    Out(subscriptions_frame(self.subs), "ack")]
        for p in products:
            refusal = self.refusal(p)
            if refusal == PERMANENT:
                return [Out(error_frame(f"{p} is not a valid product"), "error", p),
                        Out(subscriptions_frame(self.subs), "ack")]
            if refusal is not None:
                return [Out(error_frame(f"rate limit exceeded for {p}: {TRANSIENT_TEXT}"),
                            "error", p), Out(subscriptions_frame(self.subs), "ack")]
        for name in names:
            have = self.subs.setdefault(name, [])
            have.extend(p for p in products if p not in have)
        outs = [Out(subscriptions_frame(self.subs), "ack")]
        for name in names:
            for p in products:
                outs.extend(self._first(name, p, now_ns))
        return outs

    def _first(self, name: str, product: str, now_ns: int) -> list[Out]:
        listing = self.speaker.market.listing("coinbase-exchange", product)
        book = self._book(product)
        if name == "level2_batch":
            view = self.view(product, "l2", None)
            bids, asks = view.snapshot(book)
            return [Out(snapshot_frame(
                product, [(listing.price_text(p), _plain(listing.size(q))) for p, q in bids],
                [(listing.price_text(p), _plain(listing.size(q))) for p, q in asks],
                iso_ns(now_ns)), "snapshot", product)]
        if name == "matches":
            recent = self.speaker.market.recent_trades[("coinbase-exchange", product)]
            if recent:
                t = recent[-1]
                return [Out(match_frame(product, t.trade_id, listing.price_text(t.ticks),
                                        _plain(listing.size(t.lots)), _maker(t),
                                        iso_ns(t.ts_ns), self.speaker.next_seq(product),
                                        kind="last_match"), "info", product)]
        if name == "ticker":
            recent = self.speaker.market.recent_trades[("coinbase-exchange", product)]
            best = self._best(listing, book)
            last = listing.price_text(recent[-1].ticks) if recent else best[0]
            return [Out(ticker_frame(product, self.speaker.next_seq(product), best, None, last),
                        "info", product)]
        return []

    # -- market ---------------------------------------------------------------------------------

    def market(self, event: MarketEvent, now_ns: int) -> list[Out]:
        product = event.symbol
        listing = self.speaker.market.listing("coinbase-exchange", product)
        book = self._book(product)
        if isinstance(event, TradePrint):
            outs = []
            if product in self.subs.get("matches", []):
                outs.append(Out(match_frame(product, event.trade_id,
                                            listing.price_text(event.ticks),
                                            _plain(listing.size(event.lots)), _maker(event),
                                            iso_ns(event.ts_ns), self.speaker.next_seq(product)),
                                "trade", product))
            if product in self.subs.get("ticker", []):
                outs.append(Out(ticker_frame(product, self.speaker.next_seq(product),
                                             self._best(listing, book), iso_ns(event.ts_ns),
                                             listing.price_text(event.ticks), event.trade_id),
                                "info", product))
            return outs
        view = self.views.get((product, "l2"))
        if view is None or product not in self.subs.get("level2_batch", []):
            return []
        bids, asks = view.diff(book)
        if not bids and not asks:
            return []
        changes = [("buy", listing.price_text(p), _plain(listing.size(q))) for p, q in bids]
        changes += [("sell", listing.price_text(p), _plain(listing.size(q))) for p, q in asks]
        return [Out(l2update_frame(product, changes, iso_ns(event.ts_ns)), "delta", product)]

    def _book(self, product: str) -> Any:
        return self.speaker.market.book("coinbase-exchange", product)

    def _best(self, listing: Listing, book: Any) -> tuple[str, str, str, str]:
        bids, asks = book.top("bid", 1), book.top("ask", 1)
        bid = (listing.price_text(bids[0][0]), _plain(listing.size(bids[0][1]))) if bids \
            else ("0", "0")
        ask = (listing.price_text(asks[0][0]), _plain(listing.size(asks[0][1]))) if asks \
            else ("0", "0")
        return bid[0], bid[1], ask[0], ask[1]

    # -- timers: the 5-second subscribe rule, heartbeats ----------------------------------------

    def next_deadline(self) -> int | None:
        if self.close_at is not None:
            return min(self.close_at, self.next_heartbeat_ns)
        return self.next_heartbeat_ns

    def on_deadline(self, now_ns: int) -> list[Out]:
        if self.close_at is not None and now_ns >= self.close_at:
            self.close_at = None
            self.speaker.closed_unsubscribed += 1
            return [Out(close=(1008, "no subscribe within 5 seconds"), kind="close")]
        outs: list[Out] = []
        if now_ns >= self.next_heartbeat_ns:
            self.next_heartbeat_ns += HEARTBEAT_NS
            for p in self.subs.get("heartbeat", []):
                last = self.speaker.market.trade_ids.get(("coinbase-exchange", p), 0)
                outs.append(Out(heartbeat_frame(p, self.speaker.next_seq(p), last,
                                                iso_ns(now_ns)), "heartbeat", p))
        return outs


def _maker(trade: TradePrint) -> str:
    return "sell" if trade.taker == "buy" else "buy"


class ExchangeSpeaker(VenueSpeaker):
    name = "coinbase-exchange"
    path = "/"
    session_class = ExchangeSession
    server_time_path = "/time"

    def __init__(self, market: Market) -> None:
        super().__init__(market)
        self.closed_unsubscribed = 0
        self._seq: dict[str, int] = {}

    @classmethod
    def listing(cls, symbol: str, price: float) -> Listing:
        tick = Decimal("0.01") if price >= 1 else power_of_ten(price / 10_000)
        return Listing("coinbase-exchange", symbol, tick=tick, lot=Decimal("0.00000001"))

    def next_seq(self, product: str) -> int:
        """The feed's per-product ``sequence`` (tickers, matches, heartbeats)."""
        seq = self._seq.get(product, 50_000) + 1
        self._seq[product] = seq
        return seq

    def server_time(self, venue_ns: int) -> bytes:
        millis = venue_ns // 1_000_000
        iso = datetime.fromtimestamp(millis / 1000, UTC)
        return msgspec.json.encode({"iso": iso.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
                                    "epoch": millis / 1000})

    def rest(self, target: str) -> bytes | None:
        if target.split("?", 1)[0] != PRODUCTS_PATH:
            return None
        rows = []
        for sym in self.symbols():
            listing = self.market.listing(self.name, sym)
            base, quote = sym.split("-", 1)
            rows.append({"id": sym, "base_currency": base, "quote_currency": quote,
                         "quote_increment": str(listing.tick),
                         "base_increment": str(listing.lot), "display_name": sym,
                         "status": "online", "status_message": "", "trading_disabled": False})
        return _encode(rows)


__all__ = ["BASE_TIME", "Change", "ExchangeSession", "ExchangeSpeaker", "error_frame",
           "heartbeat_frame", "iso", "iso_ns", "l2update_frame", "ladder", "match_frame",
           "snapshot_frame", "subscriptions_frame", "ticker_frame"]
