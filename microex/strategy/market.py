"""What strategies see of the market: MARKET records, the `BookView` and `Trade`.

How it works. Market data reaches the runtime as arrays of MARKET records (one
numpy dtype, 72 bytes), whatever produced them: `BookFromEvents` over engine
EVENT records (simulation, in-process venues), a recorded file, or an adapter
over a market-data client. A BOOK record carries an instrument's top of book
after an update (bid, bid_qty, ask, ask_qty; 0 for an empty side); a TRADE
record one trade (price, qty, aggressor side). Integers only: ticks, lots, ns.

The runtime keeps one `BookView` per instrument and updates its attributes in
place from each BOOK record before calling the subscribers, so `on_book` gets
the same object every time (copy what you want to keep). `depth()` reads the
full L2 replica of the source, when the source has one.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import IntEnum
from typing import NamedTuple

import numpy as np


class MdKind(IntEnum):
    NONE = 0
    BOOK = 1
    TRADE = 2


MARKET = np.dtype(
    {
        "names": ["ts_ns", "seq", "bid", "bid_qty", "ask", "ask_qty", "price", "qty", "instrument", "kind",
                  "side"],
        "formats": ["<i8", "<i8", "<i8", "<i8", "<i8", "<i8", "<i8", "<i8", "<i4", "u1", "u1"],
        "offsets": [0, 8, 16, 24, 32, 40, 48, 56, 64, 68, 69],
        "itemsize": 72,
    }
)

DepthFn = Callable[[int, int, int], list]


class Trade(NamedTuple):
    """One public trade: `side` is the aggressor's (1 buy, 2 sell)."""

    instrument: int
    side: int
    price_ticks: int
    qty_lots: int
    ts_ns: int
    seq: int


class BookView:
    """An instrument's book as of the last BOOK record (prices in ticks, quantities in lots)."""

    __slots__ = ("instrument", "bid", "bid_qty", "ask", "ask_qty", "ts_ns", "seq", "_depth")

    def __init__(self, instrument: int, depth: DepthFn | None = None) -> None:
        self.instrument = instrument
        self.bid = self.bid_qty = self.ask = self.ask_qty = 0
        self.ts_ns = self.seq = 0
        self._depth = depth

    @property
    def two_sided(self) -> bool:
        return self.bid > 0 and self.ask > 0

    @property
    def mid(self) -> float:
        """(bid + ask) / 2 in ticks; NaN unless both sides are there."""
        return (self.bid + self.ask) / 2 if self.bid > 0 and self.ask > 0 else float("nan")

    @property
    def spread(self) -> int:
        return self.ask - self.bid if self.bid > 0 and self.ask > 0 else 0

    def depth(self, side: int, levels: int = 10) -> list[tuple[int, int, int]]:
        """Best `levels` levels of one side (1 bid, 2 ask), best first: (price, qty, orders)."""
        if self._depth is None:
            top = (self.bid, self.bid_qty) if side == 1 else (self.ask, self.ask_qty)
            return [(top[0], top[1], 0)] if top[0] > 0 and levels > 0 else []
        return self._depth(self.instrument, side, levels)

    def __repr__(self) -> str:
        return (f"BookView({self.instrument}: {self.bid_qty}@{self.bid} / {self.ask_qty}@{self.ask}, "
                f"seq {self.seq})")


def book_records(rows: list[tuple[int, int, int, int, int]], ts_ns: int = 0, first_seq: int = 1) -> np.ndarray:
    """BOOK records from (instrument, bid, bid_qty, ask, ask_qty) rows (tests, benchmarks, recordings)."""
    md = np.zeros(len(rows), dtype=MARKET)
    if rows:
        a = np.asarray(rows, dtype=np.int64)
        md["instrument"], md["bid"], md["bid_qty"], md["ask"], md["ask_qty"] = a.T
    md["kind"] = MdKind.BOOK
    md["ts_ns"] = ts_ns
    md["seq"] = np.arange(first_seq, first_seq + len(rows))
    return md


def trade_records(rows: list[tuple[int, int, int, int]], ts_ns: int = 0, first_seq: int = 1) -> np.ndarray:
    """TRADE records from (instrument, side, price, qty) rows."""
    md = np.zeros(len(rows), dtype=MARKET)
    if rows:
        a = np.asarray(rows, dtype=np.int64)
        md["instrument"], md["side"], md["price"], md["qty"] = a.T
    md["kind"] = MdKind.TRADE
    md["ts_ns"] = ts_ns
    md["seq"] = np.arange(first_seq, first_seq + len(rows))
    return md
