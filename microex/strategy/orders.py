"""Per-strategy bookkeeping: client order id ranges, open orders, open qty, counters.

How it works. Strategy k (0-based registration index) owns the client order
ids [(k + 1) << 32, (k + 2) << 32): the owner of an execution report is
`(cid >> 32) - 1`, with no map to keep or look up, and the ids stay unique per
session and below the engine's int64 order ids. Ids below 1 << 32 are never a
strategy's (a simulated market uses them).

An order is open from the moment it is sent until a report ends it (rejected
new, fill with leaves 0, cancelled). `open_buy` / `open_sell` hold the leaves
of open orders per instrument, so the max-position check sees orders in
flight too. `position` mirrors the PnL book's lots as a dict, for the checks
that run on every order (a Python dict read is cheaper than a numpy element).

`apply(report)` is the order lifecycle (the gateway's answers, in order):
ACCEPTED acks; REJECTED of an unacked order ends it (the new was refused),
of an acked one answers a cancel/modify and changes nothing; FILL lowers
leaves; CANCELLED ends it; MODIFIED sets price and leaves.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from microex.protocol.binary import MsgType
from microex.strategy.limits import Limits, StopReason

if TYPE_CHECKING:
    from microex.client.protocol import ExecReport
    from microex.strategy.base import Strategy

CID_SHIFT = 32
_ACCEPTED, _REJECTED, _FILL = MsgType.EXEC_ACCEPTED, MsgType.EXEC_REJECTED, MsgType.EXEC_FILL
_CANCELLED, _MODIFIED = MsgType.EXEC_CANCELLED, MsgType.EXEC_MODIFIED


def first_cid(index: int) -> int:
    return (index + 1) << CID_SHIFT


def owner_of(cid: int) -> int:
    """Strategy index of a client order id; -1 for an id no strategy owns."""
    return (cid >> CID_SHIFT) - 1


class OpenOrder:
    __slots__ = ("cid", "instrument", "side", "price_ticks", "qty_lots", "leaves_lots", "acked", "sent_ns")

    def __init__(self, cid: int, instrument: int, side: int, price_ticks: int, qty_lots: int, sent_ns: int) -> None:
        self.cid, self.instrument, self.side = cid, instrument, side
        self.price_ticks, self.qty_lots, self.leaves_lots = price_ticks, qty_lots, qty_lots
        self.acked = False
        self.sent_ns = sent_ns  # perf_counter_ns when handed to the link (order -> ack latency)

    def __repr__(self) -> str:
        side = "buy" if self.side == 1 else "sell"
        return f"OpenOrder({self.cid:#x} {side} {self.leaves_lots}@{self.price_ticks} inst {self.instrument})"


class StrategySlot:
    """One registered strategy's state in the runtime."""

    def __init__(self, index: int, strategy: Strategy, instruments: tuple[int, ...], limits: Limits,
                 timer_ms: float | None, name: str) -> None:
        self.index, self.strategy, self.instruments, self.limits = index, strategy, instruments, limits
        self.name = name
        self.subscribed = frozenset(instruments)
        self.active = True
        self.reason = StopReason.NONE
        self.error = ""
        self.stopped_ns = 0
        self.orders: dict[int, OpenOrder] = {}
        self.position: dict[int, int] = {}
        self.open_buy: dict[int, int] = {}
        self.open_sell: dict[int, int] = {}
        self.next_cid = first_cid(index)
        self.last_cid = first_cid(index + 1) - 1
        # limits as plain ints: they are read on every order
        self.max_position = limits.max_position
        self.interval_ns, self.tolerance_ns = limits.interval_ns, limits.tolerance_ns
        self.tat = 0
        self.timer_ns = int(timer_ms * 1e6) if timer_ms else 0
        self.next_timer_ns = 0
        self.counts = dict.fromkeys(("orders", "cancels", "modifies", "acks", "rejects", "fills", "cancelled",
                                     "modified", "send_errors", "reports"), 0)
        self.logs: deque[tuple[int, str]] = deque(maxlen=100)

    def log(self, now_ns: int, message: str) -> None:
        self.logs.append((now_ns, message))

    def take_cid(self) -> int:
        cid = self.next_cid
        if cid > self.last_cid:
            raise OverflowError(f"strategy {self.name} used all of its 2^32 client order ids")
        self.next_cid = cid + 1
        return cid

    def add_open(self, order: OpenOrder) -> None:
        self.orders[order.cid] = order
        book = self.open_buy if order.side == 1 else self.open_sell
        book[order.instrument] = book.get(order.instrument, 0) + order.leaves_lots

    def change_open(self, order: OpenOrder, delta: int) -> None:
        book = self.open_buy if order.side == 1 else self.open_sell
        book[order.instrument] = book.get(order.instrument, 0) + delta

    def end(self, order: OpenOrder) -> None:
        self.change_open(order, -order.leaves_lots)
        order.leaves_lots = 0
        del self.orders[order.cid]

    def apply(self, r: ExecReport) -> tuple[OpenOrder | None, bool]:
        """Apply one report of this strategy's; (the order or None if unknown, True if it is the ack)."""
        self.counts["reports"] += 1
        order = self.orders.get(r.client_order_id)
        if order is None:
            return None, False
        kind = r.kind
        first = not order.acked and (kind == _ACCEPTED or kind == _REJECTED)
        if kind == _ACCEPTED:
            order.acked = True
            self.counts["acks"] += 1
        elif kind == _FILL:
            self.counts["fills"] += 1
            self.change_open(order, r.leaves_lots - order.leaves_lots)
            order.leaves_lots = r.leaves_lots
            if r.leaves_lots <= 0:
                del self.orders[order.cid]
        elif kind == _CANCELLED:
            self.counts["cancelled"] += 1
            self.end(order)
        elif kind == _MODIFIED:
            self.counts["modified"] += 1
            self.change_open(order, r.leaves_lots - order.leaves_lots)
            order.leaves_lots = r.leaves_lots
            order.price_ticks = r.price_ticks
        elif kind == _REJECTED:
            self.counts["rejects"] += 1
            if not order.acked:  # the new itself was refused; otherwise a cancel/modify was, harmlessly
                self.end(order)
        return order, first

    def summary(self) -> dict:
        return {"name": self.name, "index": self.index, "instruments": list(self.instruments),
                "running": self.active, "stop_reason": self.reason.name, "stop_code": int(self.reason),
                "error": self.error, "open_orders": len(self.orders), **self.counts}
