"""BookFromEvents: L2 book replicas and MARKET records from the engine's EVENT records.

How it works. The matching engine reports every price level a command changed
as a LEVEL event (instrument, side, price, level total qty, order count; see
docs/matching.md), and every match as a TRADE event. `apply(events)` runs one
numba kernel over an event chunk, in two passes:

1. every LEVEL event updates the replica of its book side: a sorted key array
   per (instrument, side), keyed like the engine's (`price` for bids, `-price`
   for asks: ascending, best last, so top-of-book changes touch the end of the
   array); qty 0 removes the level;
2. MARKET records are written in event order: one TRADE record per TRADE event,
   and one BOOK record per instrument, at the position of that instrument's
   last LEVEL event in the chunk (conflation: a strategy sees the book once per
   chunk, after every change the chunk made to it, and after the trades that
   caused them).

Invariants: with enough capacity the replica equals the engine's book
(`MatchingEngine.depth`); a BOOK record's top of book is the replica's after
the whole chunk; at most one MARKET record per event, so the output never
outgrows the input. With `max_levels` levels per side the replica keeps the
best ones: a level worse than all kept ones on a full side is dropped and
counted in `truncated` (depth beyond it may then be missing; the top of book
stays exact as long as fewer than max_levels better levels are removed).
Events for instruments beyond `max_instruments` are ignored.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from microex.core.records import EventKind
from microex.strategy.market import MARKET, MdKind

_LEVEL = int(EventKind.LEVEL)
_TRADE = int(EventKind.TRADE)
_BOOK_MD = int(MdKind.BOOK)
_TRADE_MD = int(MdKind.TRADE)


@njit(cache=True)
def _set_level(keys, qty, orders, counts, book, key, q, n_orders):
    """Apply one level's new state to a book side; returns 1 if a level was dropped for capacity."""
    n = counts[book]
    lo, hi = 0, n
    while lo < hi:  # first index with keys >= key
        mid = (lo + hi) >> 1
        if keys[book, mid] < key:
            lo = mid + 1
        else:
            hi = mid
    if lo < n and keys[book, lo] == key:
        if q == 0:
            for j in range(lo, n - 1):
                keys[book, j] = keys[book, j + 1]
                qty[book, j] = qty[book, j + 1]
                orders[book, j] = orders[book, j + 1]
            counts[book] = n - 1
        else:
            qty[book, lo] = q
            orders[book, lo] = n_orders
        return 0
    if q == 0:
        return 0
    cap = keys.shape[1]
    dropped = 0
    if n == cap:  # full: drop the worst level (index 0) to make room, or the new one if it is the worst
        if lo == 0:
            return 1
        for j in range(0, lo - 1):
            keys[book, j] = keys[book, j + 1]
            qty[book, j] = qty[book, j + 1]
            orders[book, j] = orders[book, j + 1]
        lo -= 1
        dropped = 1
    else:
        for j in range(n, lo, -1):
            keys[book, j] = keys[book, j - 1]
            qty[book, j] = qty[book, j - 1]
            orders[book, j] = orders[book, j - 1]
        counts[book] = n + 1
    keys[book, lo] = key
    qty[book, lo] = q
    orders[book, lo] = n_orders
    return dropped


@njit(cache=True)
def _apply(events, keys, qty, orders, counts, last, out):
    """Both passes over one chunk; returns (MARKET records written, levels dropped)."""
    max_inst = last.shape[0] - 1
    dropped = 0
    for i in range(events.shape[0]):
        e = events[i]
        if e["kind"] != _LEVEL:
            continue
        inst = e["instrument"]
        if inst < 1 or inst > max_inst:
            continue
        side = e["side"]
        book = inst * 2 + side - 1
        key = e["price_ticks"] if side == 1 else -e["price_ticks"]
        dropped += _set_level(keys, qty, orders, counts, book, key, e["qty_lots"], e["level_orders"])
        last[inst] = i
    k = 0
    for i in range(events.shape[0]):
        e = events[i]
        kind = e["kind"]
        inst = e["instrument"]
        if inst < 1 or inst > max_inst:
            continue
        if kind == _TRADE:
            o = out[k]
            o["kind"] = _TRADE_MD
            o["instrument"] = inst
            o["side"] = e["side"]
            o["price"] = e["price_ticks"]
            o["qty"] = e["qty_lots"]
            o["bid"] = 0
            o["bid_qty"] = 0
            o["ask"] = 0
            o["ask_qty"] = 0
            o["ts_ns"] = e["ts_ns"]
            o["seq"] = e["seq"]
            k += 1
        elif kind == _LEVEL and last[inst] == i:
            last[inst] = -1  # ready for the next chunk
            o = out[k]
            o["kind"] = _BOOK_MD
            o["instrument"] = inst
            o["side"] = 0
            o["price"] = 0
            o["qty"] = 0
            b = inst * 2
            n = counts[b]
            o["bid"] = keys[b, n - 1] if n else 0
            o["bid_qty"] = qty[b, n - 1] if n else 0
            n = counts[b + 1]
            o["ask"] = -keys[b + 1, n - 1] if n else 0
            o["ask_qty"] = qty[b + 1, n - 1] if n else 0
            o["ts_ns"] = e["ts_ns"]
            o["seq"] = e["seq"]
            k += 1
    return k, dropped


class BookFromEvents:
    """Book replicas for instruments 1..max_instruments, fed EVENT chunks in engine order."""

    def __init__(self, max_instruments: int = 256, max_levels: int = 1024) -> None:
        if max_instruments < 1 or max_levels < 1:
            raise ValueError("max_instruments and max_levels must be positive")
        self.max_instruments = max_instruments
        n_books = (max_instruments + 1) * 2
        self.keys = np.zeros((n_books, max_levels), np.int64)
        self.qty = np.zeros((n_books, max_levels), np.int64)
        self.orders = np.zeros((n_books, max_levels), np.int64)
        self.counts = np.zeros(n_books, np.int64)
        self._last = np.full(max_instruments + 1, -1, np.int64)
        self._out = np.zeros(4096, dtype=MARKET)
        self.truncated = 0  # levels dropped for capacity so far

    def apply(self, events: np.ndarray) -> np.ndarray:
        """Update the replicas from an EVENT chunk; the chunk's MARKET records (a view, valid until
        the next call)."""
        if len(events) > len(self._out):
            self._out = np.zeros(2 * len(events), dtype=MARKET)
        n, dropped = _apply(events, self.keys, self.qty, self.orders, self.counts, self._last, self._out)
        self.truncated += dropped
        return self._out[:n]

    def top(self, instrument: int) -> tuple[int, int, int, int]:
        """(bid, bid_qty, ask, ask_qty); 0 for an empty side."""
        out = []
        for side in (1, 2):
            b = instrument * 2 + side - 1
            n = int(self.counts[b])
            price = int(self.keys[b, n - 1]) if n else 0
            out += [price if side == 1 else -price, int(self.qty[b, n - 1]) if n else 0]
        return out[0], out[1], out[2], out[3]

    def depth(self, instrument: int, side: int, levels: int = 10) -> list[tuple[int, int, int]]:
        """Best `levels` levels of one side, best first: (price, qty, orders), as MatchingEngine.depth."""
        b = instrument * 2 + side - 1
        n = int(self.counts[b])
        sign = 1 if side == 1 else -1
        return [(sign * int(self.keys[b, j]), int(self.qty[b, j]), int(self.orders[b, j]))
                for j in range(n - 1, max(n - 1 - levels, -1), -1)]
