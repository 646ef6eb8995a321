"""Positions and PnL per strategy and instrument, from its own fills, marked to the mid.

How it works. One int64 array `pos[strategy, instrument, field]`; its first
three fields are core/positions.py's (lots, cost, realized, in tick-lots) and
fills go through that module's `_fill`, so the conventions are the same:
average cost, a fill that shrinks a position realizes `price x closed - cost x
closed / size` (floored), a flip starts the new side at the fill price. Added
fields: fees (quote units, as the venue charges them: ceil(notional x bps /
10000) per fill, maker or taker by the report's liquidity), unrealized
(tick-lots: floor((lots x (bid + ask) - 2 x cost) / 2), i.e. against the mid,
kept exact in half ticks), traded volume and fill count.

`totals[strategy]` keeps realized, fees and unrealized in quote units (x each
instrument's tick), updated incrementally: by `fill` and by `mark_batch`, one
numba call per MARKET chunk that records the new mids, re-marks the positions
of the touched instruments' subscribers and returns the strategies whose PnL
(realized - fees + unrealized) fell below -max_loss. Integers only.

Invariants: a strategy that is flat has cost 0 and unrealized 0; totals equal
the sums over instruments (tests check it); nothing here allocates per call.
A position is marked only once its instrument has had a two-sided book.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from microex.core.positions import P_COST, P_LOTS, P_REALIZED, _fill
from microex.core.risk import fee as venue_fee
from microex.strategy.market import MdKind

P_FEES, P_UNREAL, P_VOLUME, P_FILLS = 3, 4, 5, 6
N_FIELDS = 8
T_REAL, T_FEES, T_UNREAL = 0, 1, 2
_BOOK = int(MdKind.BOOK)
LIQ_MAKER = 1  # binary.Liquidity.MAKER


class Pnl(NamedTuple):
    realized: int  # quote units
    unrealized: int
    fees: int
    total: int  # realized - fees + unrealized


@njit(cache=True, inline="always")
def _mark(pos, totals, tick, s, inst, m2):
    lots = pos[s, inst, P_LOTS]
    if lots == 0:
        u = 0
    elif m2 == 0:
        return  # no two-sided book yet: keep the last mark
    else:
        u = (lots * m2 - 2 * pos[s, inst, P_COST]) >> 1  # floor, exact in half ticks
    d = u - pos[s, inst, P_UNREAL]
    if d != 0:
        pos[s, inst, P_UNREAL] = u
        totals[s, T_UNREAL] += d * tick[inst]


@njit(cache=True)
def apply_fill(pos, totals, tick, mid2, s, inst, lots, price, bps):
    """One fill of `lots` (signed: + bought) at `price`; returns the strategy's total PnL."""
    before = pos[s, inst, P_REALIZED]
    _fill(pos, s, inst, lots, price)
    totals[s, T_REAL] += (pos[s, inst, P_REALIZED] - before) * tick[inst]
    q = lots if lots > 0 else -lots
    f = venue_fee(price * q * tick[inst], bps)
    pos[s, inst, P_FEES] += f
    totals[s, T_FEES] += f
    pos[s, inst, P_VOLUME] += q
    pos[s, inst, P_FILLS] += 1
    _mark(pos, totals, tick, s, inst, mid2[inst])
    return totals[s, T_REAL] - totals[s, T_FEES] + totals[s, T_UNREAL]


@njit(cache=True)
def mark_batch(md, offsets, subs, active, pos, totals, tick, mid2, max_loss, stamp, delivered, breached):
    """New mids from a MARKET chunk, re-marks, routed-event counts; returns the number of
    strategies written to `breached` (those below -max_loss; one may appear twice)."""
    n_inst = mid2.shape[0]
    stamp_value = stamp[0] + 1
    stamp[0] = stamp_value
    nb = 0
    for i in range(md.shape[0]):
        inst = md[i]["instrument"]
        if inst < 1 or inst >= n_inst:
            continue
        for j in range(offsets[inst], offsets[inst + 1]):
            s = subs[j]
            if active[s]:
                delivered[s] += 1
        if md[i]["kind"] == _BOOK:
            bid = md[i]["bid"]
            ask = md[i]["ask"]
            if bid > 0 and ask > 0:
                mid2[inst] = bid + ask
                stamp[inst] = stamp_value
    for i in range(md.shape[0]):
        inst = md[i]["instrument"]
        if inst < 1 or inst >= n_inst or stamp[inst] != stamp_value:
            continue
        stamp[inst] = 0  # each instrument once
        m2 = mid2[inst]
        for j in range(offsets[inst], offsets[inst + 1]):
            s = subs[j]
            if pos[s, inst, P_LOTS] == 0 and pos[s, inst, P_UNREAL] == 0:
                continue
            _mark(pos, totals, tick, s, inst, m2)
            lim = max_loss[s]
            if active[s] and lim > 0 and totals[s, T_REAL] - totals[s, T_FEES] + totals[s, T_UNREAL] < -lim:
                if nb < breached.shape[0]:
                    breached[nb] = s
                    nb += 1
    return nb


class PnlBook:
    """Positions and PnL for strategy slots 0.. and instruments 1..max_instruments."""

    def __init__(self, max_instruments: int, slots: int = 16) -> None:
        self.max_instruments = max_instruments
        n = max_instruments + 1
        self.pos = np.zeros((max(1, slots), n, N_FIELDS), np.int64)
        self.totals = np.zeros((max(1, slots), 3), np.int64)
        self.max_loss = np.zeros(max(1, slots), np.int64)
        self.tick = np.ones(n, np.int64)
        self.maker_bps = np.zeros(n, np.int64)
        self.taker_bps = np.zeros(n, np.int64)
        self.mid2 = np.zeros(n, np.int64)  # bid + ask of the last two-sided book; 0: none yet
        self.stamp = np.zeros(n, np.int64)  # scratch for mark_batch (stamp[0] is the counter)

    def ensure(self, slots: int) -> None:
        if slots <= len(self.pos):
            return
        size = max(slots, 2 * len(self.pos))
        for name in ("pos", "totals", "max_loss"):
            old = getattr(self, name)
            new = np.zeros((size,) + old.shape[1:], np.int64)
            new[: len(old)] = old
            setattr(self, name, new)

    def set_instrument(self, instrument: int, tick: int = 1, maker_fee_bps: int = 0, taker_fee_bps: int = 0) -> None:
        """Quote units per tick per lot and the venue's fees, for PnL in quote units."""
        if not 1 <= instrument <= self.max_instruments:
            raise ValueError(f"instrument {instrument} is outside 1..{self.max_instruments}")
        self.tick[instrument], self.maker_bps[instrument], self.taker_bps[instrument] = \
            tick, maker_fee_bps, taker_fee_bps

    def fill(self, slot: int, instrument: int, signed_lots: int, price: int, liquidity: int) -> int:
        """Apply one fill (signed_lots > 0: bought); returns the slot's total PnL (quote units)."""
        bps = int(self.maker_bps[instrument] if liquidity == LIQ_MAKER else self.taker_bps[instrument])
        return int(apply_fill(self.pos, self.totals, self.tick, self.mid2, slot, instrument, signed_lots, price,
                              bps))

    def position(self, slot: int, instrument: int) -> int:
        return int(self.pos[slot, instrument, P_LOTS])

    def pnl(self, slot: int) -> Pnl:
        r, f, u = (int(x) for x in self.totals[slot])
        return Pnl(r, u, f, r - f + u)

    def rows(self, slot: int) -> list[dict]:
        """Per instrument with any activity: lots, avg price (ticks), realized/unrealized (tick-lots), fees..."""
        p = self.pos[slot]
        out = []
        for inst in np.nonzero(p[:, P_FILLS])[0]:
            lots, cost = int(p[inst, P_LOTS]), int(p[inst, P_COST])
            out.append({"instrument": int(inst), "position": lots, "cost": cost,
                        "avg_price": cost / lots if lots else 0.0, "realized": int(p[inst, P_REALIZED]),
                        "unrealized": int(p[inst, P_UNREAL]), "fees": int(p[inst, P_FEES]),
                        "volume": int(p[inst, P_VOLUME]), "fills": int(p[inst, P_FILLS])})
        return out
