"""Market streams over WebSocket: /ws, /ws/<stream or anything>, /stream?streams=a/b (combined).

How it works
- A connection holds a set of stream names; `{"method": "SUBSCRIBE"|"UNSUBSCRIBE",
  "params": [...], "id": n}` changes it and is answered `{"result": null, "id": n}`;
  LIST_SUBSCRIPTIONS answers the list. Raw endpoints send each payload as it is;
  /stream wraps it as `{"stream": name, "data": payload}` (Binance's combined
  streams; SET_PROPERTY combined switches). A bad request is answered
  `{"error": {"code": 2, "msg": ...}, "id": n}` and the connection stays open.
- Streams (symbol in lower case): `@trade`, `@aggTrade` (pushed after each journal
  frame, from the history's new trades), `@bookTicker` (each L1 change),
  `@depth` / `@depth@1000ms` and `@depth@100ms` (diffs every 1000 / 100 ms with
  U/u as market.py explains), `@depth5|10|20[@100ms]` (partial books), `@ticker`,
  `@miniTicker` (every second) and `@kline_<interval>` (every second while the
  candle changes; the closing one once with x=true).
- The hub keeps, per stream name, the connections subscribed to it; each payload is
  built once per frame or timer tick and queued to every subscriber (wsconn.Outbox).
"""

from __future__ import annotations

import asyncio
import time

from microex.binance import views as V
from microex.binance.market import INTERVALS, bucket_start
from microex.binance.rest_public import DAY_MS, ticker_24hr
from microex.binance.wsconn import Outbox

PARTIAL = {"depth5": 5, "depth10": 10, "depth20": 20}


class StreamConn:
    def __init__(self, outbox: Outbox, combined: bool) -> None:
        self.outbox = outbox
        self.combined = combined
        self.streams: set[str] = set()

    def push(self, stream: str, payload: dict) -> None:
        self.outbox.send({"stream": stream, "data": payload} if self.combined else payload)


class MarketStreams:
    def __init__(self, st) -> None:
        self.st = st
        self.edge = st.edge
        self.subs: dict[str, set[StreamConn]] = {}
        self.by_lower = {name.lower(): m for name, m in self.edge.markets.items()}
        self.kline_sent: dict[str, list] = {}
        self.edge.hooks.append(self.on_frame)

    # -- names ---------------------------------------------------------------------------------

    def parse(self, name: str):
        """(market, kind, arg) of a valid stream name, else None."""
        if not isinstance(name, str) or "@" not in name:
            return None
        sym, _, rest = name.partition("@")
        m = self.by_lower.get(sym)
        if m is None:
            return None
        if rest in ("trade", "aggTrade", "bookTicker", "ticker", "miniTicker"):
            return m, rest, None
        if rest in ("depth", "depth@1000ms"):
            return m, "depth", "1000ms"
        if rest == "depth@100ms":
            return m, "depth", "100ms"
        base, _, speed = rest.partition("@")
        if base in PARTIAL and speed in ("", "100ms", "1000ms"):
            return m, "partial", (PARTIAL[base], speed or "1000ms")
        if rest.startswith("kline_") and rest[6:] in INTERVALS:
            return m, "kline", rest[6:]
        return None

    def subscribe(self, conn: StreamConn, names: list[str]) -> None:
        for name in names:
            parsed = self.parse(name)
            if parsed is None:
                continue
            m, kind, arg = parsed
            if kind == "depth":
                self.edge.market.depth_stream(m.id, arg)
            conn.streams.add(name)
            self.subs.setdefault(name, set()).add(conn)

    def unsubscribe(self, conn: StreamConn, names: list[str]) -> None:
        for name in names:
            conn.streams.discard(name)
            s = self.subs.get(name)
            if s is not None:
                s.discard(conn)
                if not s:
                    del self.subs[name]

    def drop(self, conn: StreamConn) -> None:
        self.unsubscribe(conn, list(conn.streams))

    def _push(self, name: str, payload: dict) -> None:
        for conn in list(self.subs.get(name, ())):
            conn.push(name, payload)

    # -- per journal frame ---------------------------------------------------------------------

    def on_frame(self, cmds, events, reports, new_trades) -> None:
        bbo = self.edge.market.take_bbo()
        if not self.subs:
            return
        now = time.time_ns() // 1_000_000
        if len(new_trades):
            for m in [self.edge.by_id[i] for i in sorted(set(new_trades[:, 1].tolist())) if i in self.edge.by_id]:
                low = m.symbol.lower()
                mine = new_trades[new_trades[:, 1] == m.id]
                if f"{low}@trade" in self.subs:
                    for t in mine.tolist():
                        tr = V.public_trade(m, t)
                        self._push(f"{low}@trade", {"e": "trade", "E": now, "s": m.symbol, "t": tr.id, "p": tr.price,
                                                    "q": tr.qty, "T": tr.time, "m": tr.isBuyerMaker, "M": True})
                if f"{low}@aggTrade" in self.subs:
                    for a in V.agg_trades(mine):
                        at = V.agg_trade(m, a)
                        self._push(f"{low}@aggTrade", {"e": "aggTrade", "E": now, "s": m.symbol, "a": at.a, "p": at.p,
                                                       "q": at.q, "f": at.f, "l": at.l, "T": at.T, "m": at.m, "M": True})
        for inst, seq, bp, bq, ap, aq in bbo:
            m = self.edge.by_id.get(inst)
            if m is not None and f"{m.symbol.lower()}@bookTicker" in self.subs:
                self._push(f"{m.symbol.lower()}@bookTicker", {"u": seq, "s": m.symbol, "b": m.price(bp), "B": m.qty(bq),
                                                              "a": m.price(ap), "A": m.qty(aq)})

    # -- timers --------------------------------------------------------------------------------

    def tick(self, cadence: str) -> None:
        """Depth diffs and partial books of one cadence ("100ms" or "1000ms")."""
        if not self.subs:
            return
        market = self.edge.market
        now = time.time_ns() // 1_000_000
        for name in list(self.subs):
            parsed = self.parse(name)
            if parsed is None:
                continue
            m, kind, arg = parsed
            if kind == "depth" and arg == cadence:
                d = market.depth_stream(m.id, cadence).take(market.md_seq(m.id))
                if d is not None:
                    U, u, bids, asks = d
                    self._push(name, {"e": "depthUpdate", "E": now, "s": m.symbol, "U": U, "u": u,
                                      "b": [[m.price(p), m.qty(q)] for p, q in bids],
                                      "a": [[m.price(p), m.qty(q)] for p, q in asks]})
            elif kind == "partial" and arg[1] == cadence:
                last, bids, asks = market.book(m.id, arg[0])
                self._push(name, {"lastUpdateId": last, "bids": [[m.price(p), m.qty(q)] for p, q in bids],
                                  "asks": [[m.price(p), m.qty(q)] for p, q in asks]})
        if cadence == "1000ms":
            self._tickers_and_klines(now)

    def _tickers_and_klines(self, now: int) -> None:
        tickers = None
        for name in list(self.subs):
            parsed = self.parse(name)
            if parsed is None:
                continue
            m, kind, arg = parsed
            if kind in ("ticker", "miniTicker"):
                if tickers is None:
                    tickers = self.edge.market.tickers(now * 1_000_000)
                t = ticker_24hr(self.st, m, tickers[m.id - 1], now)
                if kind == "miniTicker":
                    self._push(name, {"e": "24hrMiniTicker", "E": now, "s": m.symbol, "c": t.lastPrice, "o": t.openPrice,
                                      "h": t.highPrice, "l": t.lowPrice, "v": t.volume, "q": t.quoteVolume})
                else:
                    self._push(name, {"e": "24hrTicker", "E": now, "s": m.symbol, "p": t.priceChange,
                                      "P": t.priceChangePercent, "w": t.weightedAvgPrice, "x": t.prevClosePrice,
                                      "c": t.lastPrice, "Q": t.lastQty, "b": t.bidPrice, "B": t.bidQty, "a": t.askPrice,
                                      "A": t.askQty, "o": t.openPrice, "h": t.highPrice, "l": t.lowPrice, "v": t.volume,
                                      "q": t.quoteVolume, "O": now - DAY_MS, "C": now, "F": t.firstId, "L": t.lastId,
                                      "n": t.count})
            elif kind == "kline":
                self._kline(name, m, arg, now)

    def _kline(self, name: str, m, interval: str, now: int) -> None:
        rows = self.edge.market.klines(m.id, interval, limit=2)
        sent = self.kline_sent.get(name)
        current = bucket_start(now, interval)
        out = []
        for r in rows:
            closed = r[0] < current
            if sent is not None and (r[0] < sent[0] or (r[0] == sent[0] and r == sent[1] and closed == sent[2])):
                continue
            if closed and sent is None:
                continue
            out.append((r, closed))
        for r, closed in out:
            t, o, h, lo, c, v, ct, q, n = r
            self._push(name, {"e": "kline", "E": now, "s": m.symbol, "k": {
                "t": t, "T": ct, "s": m.symbol, "i": interval, "f": -1, "L": -1, "o": m.price(o), "c": m.price(c),
                "h": m.price(h), "l": m.price(lo), "v": m.qty(v), "n": n, "x": closed,
                "q": m.quote_amount(q * m.tick), "V": m.qty(0), "Q": m.quote_amount(0), "B": "0"}})
            self.kline_sent[name] = [r[0], list(r), closed]
        if sent is None and not out:
            self.kline_sent[name] = [current, None, False]

    async def run(self) -> None:
        n = 0
        while True:
            await asyncio.sleep(0.1)
            n += 1
            self.tick("100ms")
            if n % 10 == 0:
                self.tick("1000ms")
