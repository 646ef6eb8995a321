"""Event writers: every EVENT record the kernel emits is written here, all fields set."""

from __future__ import annotations

from numba import njit

from microex.core.records import EventKind
from microex.core.state import L_COUNT, L_PRICE, L_QTY, LEVEL_STRIDE

EV_REJECTED = int(EventKind.REJECTED)
EV_LEVEL = int(EventKind.LEVEL)


@njit(cache=True, inline="always")
def emit(events, ne, seq, ts, kind, oid, maker, acc, macc, price, qty, leaves, mleaves, inst, lorders, side, reason):
    e = events[ne]
    e["seq"] = seq
    e["ts_ns"] = ts
    e["order_id"] = oid
    e["maker_order_id"] = maker
    e["account"] = acc
    e["maker_account"] = macc
    e["price_ticks"] = price
    e["qty_lots"] = qty
    e["leaves_lots"] = leaves
    e["maker_leaves_lots"] = mleaves
    e["instrument"] = inst
    e["level_orders"] = lorders
    e["kind"] = kind
    e["side"] = side
    e["reason"] = reason
    return ne + 1


@njit(cache=True, inline="always")
def emit_reject(events, ne, seq, ts, oid, reason):
    return emit(events, ne, seq, ts, EV_REJECTED, oid, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, reason)


@njit(cache=True, inline="always")
def emit_level(events, ne, seq, ts, levels, lv, inst, side):
    lb = lv * LEVEL_STRIDE
    return emit(
        events, ne, seq, ts, EV_LEVEL, 0, 0, 0, 0,
        levels[lb + L_PRICE], levels[lb + L_QTY], 0, 0, inst, levels[lb + L_COUNT], side, 0,
    )
