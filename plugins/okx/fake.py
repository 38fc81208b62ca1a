"""A fake OKX v5 public venue (USDT-margined perpetual swaps): the speaker ``--simulate`` and the
fault kit serve.

What it says, as OKX does (``wss://ws.okx.com:8443/ws/v5/public``, ``https://www.okx.com``):

* ``{"op":"subscribe","args":[{"channel","instId"}, ...]}``: every argument is acknowledged on
  its own (``{"event":"subscribe","arg":{...},"connId":...}``); an argument for an instrument or
  channel that does not exist gets ``{"event":"error","code":"60018","msg":"Wrong URL or
  channel:books,instId:X doesn't exist. ..."}``, which names the argument only in its message; a
  refusal for load refuses the whole request with ``60014`` (``Requests too frequent``), naming
  no argument, only the request's ``id`` where the request has one; a frame that is not a
  request gets ``60012`` (``Invalid request``); ``unsubscribe`` likewise; every answer to a
  request that carried an ``id`` echoes it first (``{"id":"sub1","event":"subscribe",...}``);
* the text ``ping`` is answered with the text ``pong``; a connection with no subscription, no
  client frame and no push for 30 s is closed, as OKX does;
* ``books``: a ``snapshot`` of up to 400 levels a side, then ``update``s holding the changed
  levels; ``seqId`` is the instrument's book sequence (the same on every connection; it grows by
  a varying step), ``prevSeqId`` the ``seqId`` of the previous frame of that subscription (-1 on
  a snapshot); a book quiet for ``idle_ns`` gets an idle update (no levels, ``seqId ==
  prevSeqId``); :meth:`OkxSpeaker.reset_sequence` makes the next update carry a smaller
  ``seqId`` (the reset after maintenance); ``checksum`` is the CRC32 of the top 25 levels of
  each side, interleaved, over the wire text, as a signed 32-bit integer, computed here from the
  venue's own book (``checksums = False`` sends 0, as OKX does since 2026-06-23);
* ``bbo-tbt``: the best level of each side at subscription and whenever it changes;
* ``trades``: one push per trade print (``side`` is the taker's side);
* levels are ``[price, contracts, "0", orders]`` text; sizes are contracts of ``ctVal``;
* the perpetual context of the simulated market (:mod:`core.sim.perp`) on four channels, each
  pushed at subscription, then at an update of the context that changed what it says (or, for
  the ones OKX repeats when nothing changed, once that repeat is due): ``funding-rate``
  (``fundingRate`` for the funding at ``fundingTime``, ``nextFundingTime`` one interval later,
  ``settFundingRate`` the rate of the last funding; repeated every 60 s), ``mark-price``
  (``markPx``; repeated every 10 s), ``open-interest`` (``oi`` in contracts, ``oiCcy`` in the
  base coin, ``oiUsd``) and ``index-tickers`` on the index ``BTC-USDT`` (``idxPx``; repeated
  every 60 s); the swap channels take the swap's ``instId``, the index channel the index id;
* pushes are JSON text, or raw-deflate binary frames with ``deflate = True`` (the plugin inflates
  binary frames);
* REST ``/api/v5/public/instruments?instType=SWAP``: the listings with ``ctVal``;
  ``/api/v5/public/time``: the server time (``data[0].ts``, ms, a string).

Sans-IO like the plugin: no trio, no sockets, no clock reads.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from core.codec import S_NS
from core.sim.market import (
    BookChange,
    Ladder,
    Listing,
    Market,
    MarketEvent,
    PerpUpdate,
    TradePrint,
)
from core.sim.simulator import power_of_ten
from core.sim.speaker import PERMANENT, Out, SpeakerSession, VenueSpeaker, ms

BOOK_DEPTH = 400
CHECKSUM_DEPTH = 25
IDLE_NS = 60 * S_NS
NO_DATA_CLOSE_NS = 30 * S_NS
FIRST_SEQ = 3_000_000_000
INSTRUMENTS_PATH = "/api/v5/public/instruments"
BOOK_CHANNELS = ("books", "bbo-tbt", "trades")
#: the perpetual context's channels, and after how long without change each is pushed again
#: (None: only on change)
PERP_REPEAT_NS: dict[str, int | None] = {"funding-rate": 60 * S_NS, "mark-price": 10 * S_NS,
                                         "open-interest": None, "index-tickers": 60 * S_NS}
#: the fields whose change makes a channel push (the others follow them)
PERP_KEYS = {"funding-rate": ("fundingRate", "fundingTime"), "mark-price": ("markPx",),
             "open-interest": ("oi",), "index-tickers": ("idxPx",)}
INDEX_CHANNEL = "index-tickers"
CHANNELS = BOOK_CHANNELS + tuple(PERP_REPEAT_NS)
#: OKX's funding rate cap and floor for the fake's ``funding-rate`` pushes
MAX_FUNDING_RATE = "0.00375"
Wire = list[tuple[str, str]]


def _text(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


def venue_checksum(bids: Wire, asks: Wire, depth: int = CHECKSUM_DEPTH) -> int:
    """OKX's checksum of best-first sides: ``bid1px:bid1sz:ask1px:ask1sz:...`` over the top
    ``depth`` levels (the longer side's remaining levels follow alone), CRC32, signed 32-bit."""
    fields: list[str] = []
    for i in range(depth):
        for side in (bids, asks):
            if i < len(side):
                fields += [side[i][0], side[i][1]]
    crc = zlib.crc32(":".join(fields).encode())
    return crc - (1 << 32) if crc & (1 << 31) else crc


def deflate(text: str) -> bytes:
    compressor = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    return compressor.compress(text.encode()) + compressor.flush()


def inflate(frame: bytes) -> str:
    return zlib.decompress(frame, -zlib.MAX_WBITS).decode()


@dataclass
class _Sub:
    channel: str  # books, bbo-tbt, trades, or one of the perpetual context's channels
    symbol: str
    inst: str
    last_seq: int = -1  # seqId of the last books frame of this subscription
    last_ns: int = 0  # when this subscription last pushed
    told: tuple[str, ...] = ()  # perpetual channels: the values of the last push


class OkxSession(SpeakerSession):
    speaker: OkxSpeaker

    def __init__(self, speaker: VenueSpeaker, conn_id: int, now_ns: int) -> None:
        super().__init__(speaker, conn_id, now_ns)
        self.subs: dict[tuple[str, str], _Sub] = {}
        self.last_activity_ns = now_ns
        self.pings = 0

    # -- client frames ---------------------------------------------------------------------------

    def receive(self, frame: str | bytes, now_ns: int) -> list[Out]:
        self.last_activity_ns = now_ns
        if frame == "ping":
            self.pings += 1
            return [Out("pong", "pong")]
        try:
            msg = json.loads(frame)
            op, args = msg.get("op"), msg.get("args")
        except (ValueError, AttributeError):
            return [self._error("60012", f"Invalid request: {str(frame)[:100]}")]
        if op not in ("subscribe", "unsubscribe"):
            return [self._error("60019", f"Invalid op: {op}")]
        if not isinstance(args, list) or not args or \
                not all(isinstance(a, dict) for a in args):
            return [self._error("60013", "Invalid args")]
        if op == "subscribe":
            for arg in args:
                symbol = self.speaker.by_inst.get(str(arg.get("instId")))
                if symbol is not None and self.speaker.transient(symbol):
                    # a load refusal: the whole request is refused, naming nothing but the
                    # request's own id
                    return [self._error("60014", "Requests too frequent", symbol,
                                        msg.get("id"))]
        outs: list[Out] = []
        for arg in args:
            outs.extend(self._arg(str(op), arg, now_ns, msg.get("id")))
        return outs

    def _arg(self, op: str, arg: dict[str, Any], now_ns: int, req_id: object) -> list[Out]:
        channel, inst = str(arg.get("channel")), str(arg.get("instId"))
        symbol = self.speaker.symbol_of(channel, inst)
        if symbol is None or channel not in CHANNELS:
            return [self._missing(channel, inst, symbol, req_id)]
        key = (channel, inst)
        echo = {"channel": channel, "instId": inst}
        if op == "unsubscribe":
            self.subs.pop(key, None)
            return [Out(_text(_with_id(req_id, {"event": "unsubscribe", "arg": echo,
                                                "connId": self._conn()})), "ack", symbol)]
        if symbol in self.speaker.unlisted:
            self.refusal(symbol)  # counted
            return [self._missing(channel, inst, symbol, req_id)]
        outs = [Out(_text(_with_id(req_id, {"event": "subscribe", "arg": echo,
                                            "connId": self._conn()})), "ack", symbol)]
        sub = self.subs[key] = _Sub(channel, symbol, inst, last_ns=now_ns)
        book = self.speaker.book(symbol)
        if channel == "books":
            bids, asks = self.view(symbol, "l2", BOOK_DEPTH).snapshot(book)
            outs.append(self._books(sub, "snapshot", bids, asks, now_ns))
        elif channel == "bbo-tbt":
            bids, asks = self.view(symbol, "tob", 1).snapshot(book)
            outs.append(self._bbo(sub, bids, asks, now_ns))
        elif channel in PERP_REPEAT_NS:
            perp = self.speaker.market.perps.get((self.speaker.name, symbol))
            if perp is not None:
                outs.extend(self._perp(sub, perp, now_ns, first=True))
        return outs

    def _missing(self, channel: str, inst: str, symbol: str | None, req_id: object) -> Out:
        return self._error("60018", f"Wrong URL or channel:{channel},instId:{inst} doesn't "
                           "exist. Please use the correct URL, channel and parameters referring "
                           "to API document.", symbol, req_id)

    def _error(self, code: str, msg: str, symbol: str | None = None,
               req_id: object = None) -> Out:
        doc = {"event": "error", "code": code, "msg": msg, "connId": self._conn()}
        return Out(_text(_with_id(req_id, doc)), "error", symbol)

    def _conn(self) -> str:
        return f"{0xa4d3ae55 + self.conn_id:x}"

    # -- market ---------------------------------------------------------------------------------

    def market(self, event: MarketEvent, now_ns: int) -> list[Out]:
        outs: list[Out] = []
        for sub in self.subs.values():
            if sub.symbol != event.symbol:
                continue
            if isinstance(event, PerpUpdate):
                if sub.channel in PERP_REPEAT_NS:
                    outs.extend(self._perp(sub, event, event.ts_ns))
                continue
            if sub.channel in PERP_REPEAT_NS:
                continue
            if isinstance(event, TradePrint):
                if sub.channel == "trades":
                    outs.append(self._push(sub, None, [self._trade_row(event)], "trade",
                                           event.ts_ns))
                continue
            if sub.channel == "books":
                bids, asks = self.views[(sub.symbol, "l2")].diff(self.speaker.book(sub.symbol))
                if bids or asks or self.speaker.seq_reset_now(sub.symbol):
                    outs.append(self._books(sub, "update", bids, asks, event.ts_ns))
            elif sub.channel == "bbo-tbt":
                view = self.views[(sub.symbol, "tob")]
                bids, asks = view.diff(self.speaker.book(sub.symbol))
                if bids or asks:
                    outs.append(self._bbo(sub, *view.ladders(), event.ts_ns))
        return outs

    def _books(self, sub: _Sub, action: str, bids: Ladder, asks: Ladder, ts_ns: int,
               kind: str | None = None) -> Out:
        listing = self.speaker.listing_of(sub.symbol)
        seq = self.speaker.seq.get(sub.symbol, FIRST_SEQ)
        prev = -1 if action == "snapshot" else sub.last_seq
        sub.last_seq = seq
        checksum = 0
        if self.speaker.checksums:
            book_bids, book_asks = self.views[(sub.symbol, "l2")].ladders()
            checksum = venue_checksum(_pairs(listing, book_bids), _pairs(listing, book_asks))
        entry = {"asks": _levels(listing, asks), "bids": _levels(listing, bids),
                 "ts": str(ms(ts_ns)), "checksum": checksum, "prevSeqId": prev, "seqId": seq}
        return self._push(sub, action, [entry],
                          kind or ("snapshot" if action == "snapshot" else "delta"), ts_ns)

    def _bbo(self, sub: _Sub, bids: Ladder, asks: Ladder, ts_ns: int) -> Out:
        listing = self.speaker.listing_of(sub.symbol)
        entry = {"asks": _levels(listing, asks[:1]), "bids": _levels(listing, bids[:1]),
                 "ts": str(ms(ts_ns)), "seqId": self.speaker.seq.get(sub.symbol, FIRST_SEQ)}
        return self._push(sub, None, [entry], "snapshot", ts_ns)

    def _perp(self, sub: _Sub, perp: PerpUpdate, now_ns: int, first: bool = False) -> list[Out]:
        """A push of one perpetual channel, when what it says changed (or its repeat is due)."""
        entry = self.speaker.perp_entry(sub.channel, perp)
        values = tuple(entry[k] for k in PERP_KEYS[sub.channel])
        repeat = PERP_REPEAT_NS[sub.channel]
        due = repeat is not None and now_ns - sub.last_ns >= repeat
        if not first and values == sub.told and not due:
            return []
        sub.told = values
        sub.last_ns = now_ns
        return [self._push(sub, None, [entry], "snapshot", now_ns)]

    def _trade_row(self, trade: TradePrint) -> dict[str, str]:
        listing = self.speaker.listing_of(trade.symbol)
        return {"instId": self.speaker.inst[trade.symbol], "tradeId": str(trade.trade_id),
                "px": listing.price_text(trade.ticks), "sz": _contracts(listing, trade.lots),
                "side": trade.taker, "ts": str(ms(trade.ts_ns)), "count": "1"}

    def _push(self, sub: _Sub, action: str | None, data: list[Any], kind: str,
              ts_ns: int) -> Out:
        doc: dict[str, Any] = {"arg": {"channel": sub.channel, "instId": sub.inst}}
        if action is not None:
            doc["action"] = action
        doc["data"] = data
        sub.last_ns = max(sub.last_ns, ts_ns)
        self.last_activity_ns = max(self.last_activity_ns, ts_ns)
        text = _text(doc)
        return Out(deflate(text) if self.speaker.deflate else text, kind, sub.symbol)

    # -- timers: idle updates of quiet books, the 30 s no-data close ---------------------------

    def next_deadline(self) -> int | None:
        due = [s.last_ns + self.speaker.idle_ns for s in self.subs.values()
               if s.channel == "books"]
        due.append(self.last_activity_ns + NO_DATA_CLOSE_NS)
        return min(due)

    def on_deadline(self, now_ns: int) -> list[Out]:
        if now_ns >= self.last_activity_ns + NO_DATA_CLOSE_NS:
            self.last_activity_ns = now_ns + 3600 * S_NS
            self.subs.clear()
            return [Out(close=(1000, "no data for 30 s"), kind="close")]
        outs = []
        for sub in self.subs.values():
            if sub.channel == "books" and now_ns >= sub.last_ns + self.speaker.idle_ns:
                outs.append(self._books(sub, "update", [], [], now_ns, "heartbeat"))
                sub.last_ns = now_ns
                self.speaker.idle_updates += 1
        return outs

    # -- fault kit ------------------------------------------------------------------------------

    def mutate(self, out: Out, how: str) -> Out | None:
        if out.frame is None:
            return None
        binary = isinstance(out.frame, bytes)
        try:
            doc = json.loads(inflate(out.frame) if isinstance(out.frame, bytes) else out.frame)
        except (ValueError, zlib.error):
            return None
        entries = doc.get("data") if isinstance(doc, dict) else None
        if not entries or doc.get("arg", {}).get("channel") != "books":
            return super().mutate(out, how) if not binary else None
        entry = entries[0]
        if how == "checksum":
            if not entry.get("checksum"):
                return None
            entry["checksum"] = (entry["checksum"] ^ 0x2D2D2D2D) or 1
        elif how == "non_finite":
            level = (entry.get("bids") or entry.get("asks") or [None])[0]
            if level is None:
                return None
            level[1] = "NaN"  # the size; the last field is the orders count
        elif how == "wrong_types":
            entry["bids"] = entry["asks"] = "not-an-array"
        else:
            return None
        text = _text(doc)
        return Out(deflate(text) if binary else text, out.kind, out.symbol)


class OkxSpeaker(VenueSpeaker):
    name = "okx"
    path = "/ws/v5/public"
    session_class = OkxSession
    compression = "deflate"
    perpetual = True
    server_time_path = "/api/v5/public/time"

    def __init__(self, market: Market) -> None:
        super().__init__(market)
        self.inst = {s: f"{s}-SWAP" for s in self.symbols()}
        self.by_inst = {v: k for k, v in self.inst.items()}
        #: the book sequence (``seqId``) of each symbol, the same on every connection
        self.seq: dict[str, int] = {}
        self._resets: dict[str, tuple[int, int]] = {}
        self._reset_now: set[str] = set()
        #: send real checksums (False: 0, as OKX does since 2026-06-23)
        self.checksums = True
        #: send pushes as raw-deflate binary frames
        self.deflate = False
        self.idle_ns = IDLE_NS
        #: idle updates sent (all connections)
        self.idle_updates = 0
        #: symbols answered as not existing (a permanent refusal)
        self.unlisted: set[str] = set()
        #: per symbol: the funding time the context last named, with its rate, and the rate of
        #: the funding before it (``settFundingRate``)
        self._funding: dict[str, tuple[int, Decimal, Decimal]] = {}

    @classmethod
    def listing(cls, symbol: str, price: float) -> Listing:
        contract = power_of_ten(1000 / price)  # BTC 0.01, ETH 0.1, SOL 1, as OKX lists them
        return Listing("okx", symbol, tick=power_of_ten(price / 100_000), lot=contract,
                       contract_size=contract)

    def refuse(self, symbol: str, kind: str = PERMANENT, times: int | None = None) -> None:
        super().refuse(symbol, kind, times)
        if kind == PERMANENT:
            self.unlisted.add(symbol)

    def transient(self, symbol: str) -> bool:
        """Whether a subscription of ``symbol`` is refused for load now (counted down)."""
        return symbol not in self.unlisted and self.refusal(symbol) is not None

    def symbol_of(self, channel: str, inst: str) -> str | None:
        """The symbol of a channel argument: the index id on ``index-tickers``, the swap's
        ``instId`` elsewhere."""
        if channel == INDEX_CHANNEL:
            return inst if inst in self.inst else None
        return self.by_inst.get(inst)

    def server_time(self, venue_ns: int) -> bytes:
        return _text({"code": "0", "msg": "", "data": [{"ts": str(ms(venue_ns))}]}).encode()

    def perp_entry(self, channel: str, perp: PerpUpdate) -> dict[str, str]:
        """The ``data`` entry of ``channel`` for one perpetual state (``ts`` its time)."""
        listing = self.listing_of(perp.symbol)
        inst = self.inst[perp.symbol]
        ts = str(ms(perp.ts_ns))
        if channel == "mark-price":
            return {"instType": "SWAP", "instId": inst,
                    "markPx": listing.price_text(perp.mark_ticks), "ts": ts}
        if channel == "index-tickers":
            index = listing.price_text(perp.index_ticks)
            return {"instId": perp.symbol, "idxPx": index, "high24h": index, "low24h": index,
                    "open24h": index, "sodUtc0": index, "sodUtc8": index, "ts": ts}
        if channel == "open-interest":
            base = listing.size(perp.open_interest_lots)
            usd = base * listing.price(perp.mark_ticks)
            return {"instId": inst, "instType": "SWAP",
                    "oi": _contracts(listing, perp.open_interest_lots),
                    "oiCcy": listing.size_text(perp.open_interest_lots),
                    "oiUsd": _plain(usd), "ts": ts}
        rate, settled = perp.funding_rate, self._settled(perp)
        premium = (listing.price(perp.mark_ticks) - listing.price(perp.index_ticks)) / \
            listing.price(perp.index_ticks)
        fmt = "{:.10f}"
        return {"formulaType": "withRate", "fundingRate": _plain(rate),
                "fundingTime": str(ms(perp.next_funding_ns)), "impactValue": "",
                "instId": inst, "instType": "SWAP", "interestRate": "0.0001",
                "maxFundingRate": MAX_FUNDING_RATE, "method": "current_period",
                "minFundingRate": f"-{MAX_FUNDING_RATE}", "nextFundingRate": "",
                "nextFundingTime": str(ms(perp.next_funding_ns) + perp.interval_s * 1000),
                "premium": _plain(Decimal(fmt.format(premium))),
                "settFundingRate": _plain(settled), "settState": "settled", "sprdRate": "",
                "ts": ts}

    def _settled(self, perp: PerpUpdate) -> Decimal:
        """The rate of the funding before ``perp``'s (its own until one has passed)."""
        nxt, rate, before = self._funding.get(perp.symbol,
                                              (perp.next_funding_ns, perp.funding_rate,
                                               perp.funding_rate))
        if perp.next_funding_ns != nxt:
            before = rate
        self._funding[perp.symbol] = (perp.next_funding_ns, perp.funding_rate, before)
        return before

    def listing_of(self, symbol: str) -> Listing:
        return self.market.listing(self.name, symbol)

    def book(self, symbol: str) -> Any:
        return self.market.book(self.name, symbol)

    def reset_sequence(self, symbol: str, to_seq: int, after_changes: int = 0) -> None:
        """The book change of ``symbol`` after the next ``after_changes`` ones resets its
        sequence to ``to_seq`` (smaller than the current one), as OKX does after maintenance."""
        self._resets[symbol] = (after_changes, to_seq)

    def seq_reset_now(self, symbol: str) -> bool:
        """Whether the current book change reset ``symbol``'s sequence (sent even if empty)."""
        return symbol in self._reset_now

    def observe(self, event: MarketEvent) -> None:
        if not isinstance(event, BookChange):
            return
        symbol = event.symbol
        self._reset_now.discard(symbol)
        wait, to_seq = self._resets.get(symbol, (-1, 0))
        if wait == 0:
            del self._resets[symbol]
            self.seq[symbol] = to_seq
            self._reset_now.add(symbol)
            return
        if wait > 0:
            self._resets[symbol] = (wait - 1, to_seq)
        self.seq[symbol] = self.seq.get(symbol, FIRST_SEQ) + 1 + len(event.changes) % 5

    def rest(self, target: str) -> bytes | None:
        path, _, query = target.partition("?")
        if path != INSTRUMENTS_PATH or "instType=SWAP" not in query.split("&"):
            return None
        data = []
        for sym in self.symbols():
            listing = self.listing_of(sym)
            base, quote = sym.split("-", 1)
            data.append({"instType": "SWAP", "instId": self.inst[sym], "uly": sym,
                         "instFamily": sym, "settleCcy": quote, "ctVal": str(listing.lot),
                         "ctMult": "1", "ctValCcy": base, "ctType": "linear",
                         "tickSz": str(listing.tick), "lotSz": "1", "minSz": "1",
                         "state": "live"})
        return json.dumps({"code": "0", "msg": "", "data": data}).encode()


def _contracts(listing: Listing, lots: int) -> str:
    value: Decimal = listing.contracts(lots)
    return str(value)


def _plain(value: Decimal) -> str:
    """A decimal in plain notation without trailing zeros (``0.000125``, ``1500``)."""
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _pairs(listing: Listing, ladder: Ladder) -> Wire:
    return [(listing.price_text(p), _contracts(listing, q)) for p, q in ladder]


def _levels(listing: Listing, ladder: Ladder) -> list[list[str]]:
    return [[listing.price_text(p), _contracts(listing, q), "0", str(1 + q % 7)]
            for p, q in ladder]


__all__ = ["OkxSession", "OkxSpeaker", "deflate", "venue_checksum"]


def _with_id(req_id: object, doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` with the request's ``id`` first, as OKX echoes it on every answer to a request
    that carried one."""
    return doc if req_id is None else {"id": str(req_id), **doc}
