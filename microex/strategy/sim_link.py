"""The simulation's order link: strategy orders as COMMAND records for an in-process engine,
and the engine's EVENT records back as SDK execution reports.

How it works. `EngineLink` is the runtime's `OrderLink` in a simulation: each
new/cancel/modify appends one COMMAND tuple to `pending` (a list append: the
cheapest hand-off on the tick-to-trade path); `take()` turns them into one
COMMAND array, stamped with consecutive seq numbers and the simulated clock,
for the driver to run through the engine. The engine order id IS the client
order id (strategy ids start at 1 << 32, orders.py; a simulated market uses
ids below that) and strategy k trades as account `first_account + k`, so the
venue's balances can be reconciled per strategy.

`reports_from_events(events)` builds the `ExecReport`s the gateway would send
for those orders, in engine order: for a trade, the aggressor's report, then
the maker's (its side, leaves and MAKER liquidity) when it is a strategy's.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from microex.client.protocol import ExecReport
from microex.core.records import COMMAND, Action, EventKind
from microex.protocol.binary import Liquidity, MsgType
from microex.strategy.orders import CID_SHIFT

STRATEGY_IDS = 1 << CID_SHIFT
_NEW, _CANCEL, _MODIFY = int(Action.NEW), int(Action.CANCEL), int(Action.MODIFY)
_TYPE_OF = {int(EventKind.ACCEPTED): MsgType.EXEC_ACCEPTED, int(EventKind.REJECTED): MsgType.EXEC_REJECTED,
            int(EventKind.TRADE): MsgType.EXEC_FILL, int(EventKind.CANCELLED): MsgType.EXEC_CANCELLED,
            int(EventKind.MODIFIED): MsgType.EXEC_MODIFIED}
_TRADE = int(EventKind.TRADE)
_OTHER = (0, 2, 1)


class EngineLink:
    def __init__(self, clock: Callable[[], int], first_account: int = 2) -> None:
        self.clock = clock
        self.first_account = first_account
        self.pending: list[tuple] = []
        self.seq = 0

    def _account(self, cid: int) -> int:
        return self.first_account + (cid >> CID_SHIFT) - 1

    # COMMAND fields: seq ts order_id account price qty instrument session action side type tif flags
    def new_order(self, cid, instrument, side, price_ticks, qty_lots, ord_type, tif, flags) -> None:
        self.pending.append((0, 0, cid, self._account(cid), price_ticks, qty_lots, instrument, 0, _NEW, side,
                             ord_type, tif, flags))

    def cancel(self, cid) -> None:
        self.pending.append((0, 0, cid, self._account(cid), 0, 0, 0, 0, _CANCEL, 0, 0, 0, 0))

    def modify(self, cid, price_ticks, qty_lots) -> None:
        self.pending.append((0, 0, cid, self._account(cid), price_ticks, qty_lots, 0, 0, _MODIFY, 0, 0, 0, 0))

    def take(self) -> np.ndarray:
        """The pending orders as COMMAND records (seq, ts stamped); pending is emptied."""
        cmds = np.array(self.pending, dtype=COMMAND) if self.pending else np.zeros(0, dtype=COMMAND)
        self.pending = []
        n = len(cmds)
        if n:
            cmds["seq"] = np.arange(self.seq + 1, self.seq + n + 1)
            cmds["ts_ns"] = self.clock()
            self.seq += n
        return cmds


def reports_from_events(events: np.ndarray, first_id: int = STRATEGY_IDS) -> list[ExecReport]:
    """Execution reports for the orders with ids >= first_id, as the gateway would write them."""
    oid, mid, kind = events["order_id"], events["maker_order_id"], events["kind"]
    mine = ((oid >= first_id) & (kind >= 1) & (kind <= 5)) | ((kind == _TRADE) & (mid >= first_id))
    if not mine.any():
        return []
    ev = events[mine]
    out = []
    cols = zip(ev["kind"].tolist(), ev["order_id"].tolist(), ev["maker_order_id"].tolist(), ev["ts_ns"].tolist(),
               ev["instrument"].tolist(), ev["side"].tolist(), ev["reason"].tolist(), ev["price_ticks"].tolist(),
               ev["qty_lots"].tolist(), ev["leaves_lots"].tolist(), ev["maker_leaves_lots"].tolist())
    for k, o, m, ts, inst, side, reason, price, qty, leaves, mleaves in cols:
        t = _TYPE_OF[k]
        if k == _TRADE:
            if o >= first_id:
                out.append(ExecReport(t, o, ts, inst, side, Liquidity.TAKER, 0, price, qty, leaves))
            if m >= first_id:
                out.append(ExecReport(t, m, ts, inst, _OTHER[side], Liquidity.MAKER, 0, price, qty, mleaves))
        elif t == MsgType.EXEC_REJECTED:
            out.append(ExecReport(t, o, ts, inst, side, 0, reason, 0, 0, 0))
        elif t == MsgType.EXEC_MODIFIED:
            out.append(ExecReport(t, o, ts, inst, side, 0, 0, price, 0, leaves))
        elif t == MsgType.EXEC_CANCELLED:
            out.append(ExecReport(t, o, ts, inst, side, 0, reason, price, qty, leaves))
        else:
            out.append(ExecReport(t, o, ts, inst, side, 0, 0, price, qty, leaves))
    return out
