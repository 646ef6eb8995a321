"""Positions and realized PnL per account and instrument, from trade events.

A consumer of the engine's event stream, not part of the matching kernel:
positions are for reports and no pre-trade check reads them, so they stay off
the single writer's hot path (as a downstream stage of the pipeline will run
them). Average cost: a fill that grows a position adds price x lots to its
cost; one that shrinks it removes cost x closed / size (floored) and realizes
the difference; one that flips it starts the new side at the fill price.
Units: lots, tick-lots (multiply by the instrument's tick for quote units).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from microex.core.records import EventKind, Side

P_LOTS, P_COST, P_REALIZED = 0, 1, 2
_TRADE = int(EventKind.TRADE)
_BUY = int(Side.BUY)


@njit(cache=True)
def _fill(pos, acc, inst, lots, price):
    held = pos[acc, inst, P_LOTS]
    if held == 0 or (held > 0) == (lots > 0):
        pos[acc, inst, P_LOTS] = held + lots
        pos[acc, inst, P_COST] += lots * price
        return
    sgn = 1 if held > 0 else -1
    size = held * sgn
    amount = lots * -sgn
    close = amount if amount < size else size
    removed = (pos[acc, inst, P_COST] * sgn) * close // size
    pos[acc, inst, P_REALIZED] += sgn * (price * close - removed)
    pos[acc, inst, P_COST] -= sgn * removed
    pos[acc, inst, P_LOTS] = held - sgn * close
    if amount > close:
        pos[acc, inst, P_LOTS] = -sgn * (amount - close)
        pos[acc, inst, P_COST] = -sgn * (amount - close) * price


@njit(cache=True)
def apply_trades(pos, events):
    for i in range(events.shape[0]):
        e = events[i]
        if e["kind"] != _TRADE:
            continue
        if e["side"] == _BUY:
            buyer, seller = e["account"], e["maker_account"]
        else:
            buyer, seller = e["maker_account"], e["account"]
        inst = e["instrument"]
        _fill(pos, buyer, inst, e["qty_lots"], e["price_ticks"])
        _fill(pos, seller, inst, -e["qty_lots"], e["price_ticks"])


class PositionBook:
    """(account, instrument) -> lots, cost, realized; fed event chunks in order."""

    def __init__(self, max_accounts: int, max_instruments: int) -> None:
        self.pos = np.zeros((max_accounts + 1, max_instruments + 1, 3), dtype=np.int64)

    def apply(self, events: np.ndarray) -> None:
        apply_trades(self.pos, events)

    def rows(self) -> list[tuple[int, int, int, int, int]]:
        """(account, instrument, lots, cost, realized), non-zero ones, in order."""
        p = self.pos
        accs, insts = np.nonzero((p[:, :, P_LOTS] != 0) | (p[:, :, P_REALIZED] != 0))
        return [(int(a), int(i), *(int(x) for x in p[a, i])) for a, i in zip(accs, insts)]
