"""MarketReference: the plain-Python twin of MarketState's kernels (the tests' oracle).

How it works: the same contract as state_kernels.py, written for clarity over
speed: a dict {price: (qty, orders)} per book side, lists for the tape and the
candles. `apply(events, min_seq)` returns the same MD_UPDATE, MD_CANDLE and MD_BBO
records (as structured arrays) that MarketState.apply writes, in the same order;
`close_candles`, `running_candles` and `tickers` mirror theirs. Invariant checked by
the differential tests: same records out, same books, for any event stream.
"""

from __future__ import annotations

import numpy as np

from microex.core.records import (CANDLE_WIDTH_NS, MD_BBO, MD_CANDLE, MD_TICKER, MD_UPDATE, CandleInterval, EventKind,
                                  MdKind, MdMsg)

DAY_NS = 86_400_000_000_000
_M = 0xFFFFFFFF
WIDTHS = [CANDLE_WIDTH_NS[CandleInterval(j + 1)] for j in range(3)]


class _Candle:
    __slots__ = ("open_ts", "open", "high", "low", "close", "volume", "quote", "trades", "md_seq", "running",
                 "dirty")

    def __init__(self, open_ts: int, price: int, qty: int, md_seq: int) -> None:
        self.open_ts, self.open, self.high, self.low, self.close = open_ts, price, price, price, price
        self.volume, self.quote, self.trades, self.md_seq = qty, price * qty, 1, md_seq
        self.running, self.dirty = True, True

    def record(self, instrument: int, interval: int, flags: int) -> tuple:
        return (88, MdMsg.CANDLE, self.md_seq & _M, self.md_seq, self.open_ts, self.open, self.high, self.low,
                self.close, self.volume, self.quote, self.trades, instrument, interval, flags)


class MarketReference:
    def __init__(self, n_instruments: int, max_levels: int = 4096) -> None:
        self.n = n_instruments
        self.max_levels = max_levels
        self.books = {i: ({}, {}) for i in range(1, n_instruments + 1)}  # side 1, side 2: price -> (qty, orders)
        self.seq = dict.fromkeys(self.books, 0)
        self.trade_no = dict.fromkeys(self.books, 0)
        self.last_ts = dict.fromkeys(self.books, 0)
        self.last_price = dict.fromkeys(self.books, 0)
        self.published_bbo = {i: (0, 0, 0, 0) for i in self.books}
        self.tape: dict[int, list[tuple]] = {i: [] for i in self.books}
        self.candles: dict[int, list[list[_Candle]]] = {i: [[], [], []] for i in self.books}
        self.skipped = self.unknown = self.full = self.same = 0

    def best(self, i: int) -> tuple[int, int, int, int]:
        bids, asks = self.books[i]
        b = max(bids) if bids else 0
        a = min(asks) if asks else 0
        return b, bids[b][0] if bids else 0, a, asks[a][0] if asks else 0

    def depth(self, i: int, side: int, levels: int = 10) -> list[tuple[int, int, int]]:
        book = self.books[i][side - 1]
        prices = sorted(book, reverse=side == 1)[:levels]
        return [(p, *book[p]) for p in prices]

    def apply(self, events: np.ndarray, min_seq: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        upd, cdl, touched = [], [], []
        for e in events.tolist():
            kind, seq, ts, price, qty, i, orders, side = (e[EVENT_FIELD[f]] for f in
                                                          ("kind", "seq", "ts_ns", "price_ticks", "qty_lots",
                                                           "instrument", "level_orders", "side"))
            if kind not in (EventKind.LEVEL, EventKind.TRADE):
                continue
            if seq <= min_seq:
                self.skipped += 1
                continue
            if i not in self.books or side not in (1, 2):
                self.unknown += 1
                continue
            if kind == EventKind.LEVEL:
                book = self.books[i][side - 1]
                if qty <= 0:
                    if price not in book:
                        self.same += 1
                        continue
                    del book[price]
                elif book.get(price) == (qty, orders):
                    self.same += 1
                    continue
                elif price not in book and len(book) >= self.max_levels:
                    self.full += 1
                    continue
                else:
                    book[price] = (qty, orders)
                self.seq[i] += 1
                upd.append(_update(self.seq[i], ts, seq, price, qty, orders, i, MdKind.LEVEL, side))
            else:
                self.seq[i] += 1
                self.trade_no[i] += 1
                md = self.seq[i]
                upd.append(_update(md, ts, seq, price, qty, self.trade_no[i], i, MdKind.TRADE, side))
                self.tape[i].append((md, ts, seq, price, qty, side, self.trade_no[i]))
                self.last_price[i] = price
                for j in range(3):
                    self._candle_trade(i, j, ts, price, qty, md, cdl)
            self.last_ts[i] = ts
            if i not in touched:
                touched.append(i)
        bbo = []
        for i in touched:
            now = self.best(i)
            if now != self.published_bbo[i]:
                self.published_bbo[i] = now
                bbo.append((64, MdMsg.BBO, self.seq[i] & _M, self.seq[i], self.last_ts[i], *now, i))
        return (_records(upd, MD_UPDATE), _records(cdl, MD_CANDLE), _records(bbo, MD_BBO))

    def _candle_trade(self, i: int, j: int, ts: int, price: int, qty: int, md: int, out: list) -> None:
        w = WIDTHS[j]
        bucket = ts - ts % w
        series = self.candles[i][j]
        if series:
            cur = series[-1]
            if cur.running:
                if bucket <= cur.open_ts:
                    cur.high, cur.low, cur.close = max(cur.high, price), min(cur.low, price), price
                    cur.volume += qty
                    cur.quote += price * qty
                    cur.trades += 1
                    cur.md_seq, cur.dirty = md, True
                    return
                cur.running = cur.dirty = False
                out.append(cur.record(i, j + 1, 1))
            else:
                bucket = max(bucket, cur.open_ts + w)
        series.append(_Candle(bucket, price, qty, md))

    def close_candles(self, now: int, grace: int = 0) -> np.ndarray:
        out = []
        for i in self.books:
            for j in range(3):
                series = self.candles[i][j]
                if series and series[-1].running and series[-1].open_ts + WIDTHS[j] + grace <= now:
                    series[-1].running = series[-1].dirty = False
                    out.append(series[-1].record(i, j + 1, 1))
        return _records(out, MD_CANDLE)

    def running_candles(self, only_changed: bool = True) -> np.ndarray:
        out = []
        for i in self.books:
            for j in range(3):
                series = self.candles[i][j]
                if series and series[-1].running and (series[-1].dirty or not only_changed):
                    series[-1].dirty = False
                    out.append(series[-1].record(i, j + 1, 0))
        return _records(out, MD_CANDLE)

    def tickers(self, now: int) -> np.ndarray:
        out = []
        for i in self.books:
            window = [c for c in self.candles[i][1] if c.open_ts + WIDTHS[1] > now - DAY_NS]
            last = self.last_price[i]
            if window:
                o, hi, lo = window[0].open, max(c.high for c in window), min(c.low for c in window)
            else:
                o = hi = lo = last
            out.append((120, MdMsg.TICKER, self.seq[i] & _M, self.seq[i], now, o, hi, lo, last,
                        sum(c.volume for c in window), sum(c.quote for c in window),
                        sum(c.trades for c in window), *self.best(i), i))
        return _records(out, MD_TICKER)


def _records(rows: list[tuple], dtype: np.dtype) -> np.ndarray:
    """Records from tuples, padding bytes zero (np.array(rows, dtype) leaves them uninitialised)."""
    out = np.zeros(len(rows), dtype)
    if rows:
        out[:] = rows
    return out


def _update(md, ts, eseq, price, qty, count, i, kind, side) -> tuple:
    return (64, MdMsg.INCREMENT, md & _M, md, ts, eseq, price, qty, count, i, kind, side, 0)


EVENT_FIELD = {name: k for k, name in enumerate(
    ("seq", "ts_ns", "order_id", "maker_order_id", "account", "maker_account", "price_ticks", "qty_lots",
     "leaves_lots", "maker_leaves_lots", "instrument", "level_orders", "kind", "side", "reason"))}
