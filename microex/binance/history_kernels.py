"""The history's compiled kernel: engine events in, order and trade tables updated, reports out.

How it works (tables are int64 2-D arrays, one row per order / trade, fields below)
- Orders: a table of `cap` rows used as a ring, and a numba typed dict engine
  order id -> row. An ACCEPTED event takes the next row, skipping rows whose order
  is still open (so an open order is never evicted; `cap` is at least twice the
  engine's max_orders, so a free row is always found) and evicting the closed order
  it finds there. The order's type, tif and flags come from its command (events do
  not carry them): events of a journal frame index the frame's commands by seq.
- TRADE: one trade row (ring of `tcap`), both orders' rows updated (executed lots,
  cumulative quote units, leaves, status) and two reports, the taker's and the
  maker's, each with its fee: ceil(notional x bps / 10000) in the quote asset,
  exactly as the engine charges it (core/risk.py `fee`). Trade ids are
  `seq << trade_bits | k`, k the trade's index within its command: unique,
  increasing, and the same whatever point the replica started from.
- CANCELLED: status CANCELED (user), EXPIRED (ioc/fok remainder) or
  EXPIRED_IN_MATCH (self-trade prevention); MODIFIED: new price and leaves.
- Every ACCEPTED/TRADE/CANCELLED/MODIFIED writes one report row per order touched
  (two for a trade) with the order's state right after that event: what the user
  streams' executionReport needs, in event order.
Invariant: an order's executed + leaves = its quantity (after modifies, qty is
re-derived that way), and a row's status is terminal exactly when leaves is 0.
"""

from __future__ import annotations

import numpy as np
from numba import njit, types
from numba.typed import Dict

from microex.core.records import EventKind, Reason
from microex.core.risk import fee

# order table fields
(OR_ID, OR_ACCOUNT, OR_INST, OR_SIDE, OR_TYPE, OR_TIF, OR_FLAGS, OR_PRICE, OR_QTY, OR_EXEC, OR_CUMQ, OR_LEAVES,
 OR_STATUS, OR_TIME, OR_UPDATE, OR_SEQ, OR_SESSION, OR_WORKING) = range(18)
OR_FIELDS = 18
# trade table fields
(TR_ID, TR_INST, TR_PRICE, TR_QTY, TR_TS, TR_TAKER, TR_MAKER, TR_TAKER_ACC, TR_MAKER_ACC, TR_SIDE, TR_SEQ,
 TR_TAKER_FEE, TR_MAKER_FEE) = range(13)
TR_FIELDS = 13
# report fields
(RP_EXEC, RP_ACCOUNT, RP_ORDER, RP_LAST_QTY, RP_LAST_PRICE, RP_TRADE_ID, RP_MAKER, RP_FEE, RP_STATUS, RP_CUM,
 RP_CUMQ, RP_LEAVES, RP_SEQ, RP_TS, RP_PRICE, RP_QTY, RP_INST, RP_SIDE, RP_TYPE, RP_TIF, RP_FLAGS, RP_TIME,
 RP_REASON) = range(23)
RP_FIELDS = 23
# market info rows (minfo[instrument, ...])
M_TICK, M_MAKER_BPS, M_TAKER_BPS = 0, 1, 2
M_FIELDS = 3

# order status (Binance's names in history.py)
ST_NEW, ST_PARTIAL, ST_FILLED, ST_CANCELED, ST_EXPIRED, ST_EXPIRED_IN_MATCH = 1, 2, 3, 4, 5, 6
# execution types
X_NEW, X_TRADE, X_CANCELED, X_EXPIRED, X_REPLACED = 1, 2, 3, 4, 5

EV_ACCEPTED, EV_TRADE, EV_CANCELLED, EV_MODIFIED = (int(EventKind.ACCEPTED), int(EventKind.TRADE),
                                                    int(EventKind.CANCELLED), int(EventKind.MODIFIED))
R_USER, R_STP = int(Reason.USER), int(Reason.STP)


def new_id_map():
    return Dict.empty(key_type=types.int64, value_type=types.int64)


@njit(cache=True)
def alloc_row(ids, ot, head, oid):
    cap = ot.shape[0]
    for _ in range(cap):
        r = head[0] % cap
        head[0] += 1
        old = ot[r, OR_ID]
        if old != 0:
            st = ot[r, OR_STATUS]
            if st == ST_NEW or st == ST_PARTIAL:
                continue
            if old in ids and ids[old] == r:
                ids.pop(old)
        for f in range(OR_FIELDS):
            ot[r, f] = 0
        ot[r, OR_ID] = oid
        ids[oid] = r
        return r
    return -1


@njit(cache=True)
def seed_open(ids, ot, head, rows, ts):
    """Resting orders known only from the engine's pool (id, account, inst, side, flags, price, leaves)."""
    for i in range(rows.shape[0]):
        r = alloc_row(ids, ot, head, rows[i, 0])
        if r < 0:
            return i
        ot[r, OR_ACCOUNT], ot[r, OR_INST], ot[r, OR_SIDE] = rows[i, 1], rows[i, 2], rows[i, 3]
        ot[r, OR_FLAGS], ot[r, OR_PRICE] = rows[i, 4], rows[i, 5]
        ot[r, OR_QTY] = rows[i, 6]
        ot[r, OR_LEAVES] = rows[i, 6]
        ot[r, OR_TYPE], ot[r, OR_TIF] = 1, 1  # resting: a GTC limit order
        ot[r, OR_STATUS] = ST_NEW
        ot[r, OR_TIME] = ts
        ot[r, OR_UPDATE] = ts
        ot[r, OR_WORKING] = ts
    return rows.shape[0]


@njit(cache=True, inline="always")
def _row(ids, oid):
    if oid in ids:
        return ids[oid]
    return -1


@njit(cache=True, inline="always")
def _report(rp, k, x, ot, r, ev, oid, acc, last_qty, last_price, tid, maker, fee_, leaves):
    for f in range(RP_FIELDS):
        rp[k, f] = 0
    rp[k, RP_EXEC] = x
    rp[k, RP_ACCOUNT] = acc
    rp[k, RP_ORDER] = oid
    rp[k, RP_LAST_QTY] = last_qty
    rp[k, RP_LAST_PRICE] = last_price
    rp[k, RP_TRADE_ID] = tid
    rp[k, RP_MAKER] = maker
    rp[k, RP_FEE] = fee_
    rp[k, RP_LEAVES] = leaves
    rp[k, RP_SEQ] = ev["seq"]
    rp[k, RP_TS] = ev["ts_ns"]
    rp[k, RP_INST] = ev["instrument"]
    rp[k, RP_REASON] = ev["reason"]
    if r >= 0:
        rp[k, RP_STATUS] = ot[r, OR_STATUS]
        rp[k, RP_CUM] = ot[r, OR_EXEC]
        rp[k, RP_CUMQ] = ot[r, OR_CUMQ]
        rp[k, RP_PRICE] = ot[r, OR_PRICE]
        rp[k, RP_QTY] = ot[r, OR_QTY]
        rp[k, RP_SIDE] = ot[r, OR_SIDE]
        rp[k, RP_TYPE] = ot[r, OR_TYPE]
        rp[k, RP_TIF] = ot[r, OR_TIF]
        rp[k, RP_FLAGS] = ot[r, OR_FLAGS]
        rp[k, RP_TIME] = ot[r, OR_TIME]
    else:
        rp[k, RP_SIDE] = ev["side"]


@njit(cache=True, inline="always")
def _fill(ot, r, qty, quote, leaves, ts):
    if r < 0:
        return
    ot[r, OR_EXEC] += qty
    ot[r, OR_CUMQ] += quote
    ot[r, OR_LEAVES] = leaves
    ot[r, OR_STATUS] = ST_FILLED if leaves == 0 else ST_PARTIAL
    ot[r, OR_UPDATE] = ts


@njit(cache=True)
def apply_history(cmds, events, ids, ot, head, tt, thead, minfo, rp, trade_bits):
    """Apply one journal frame's events; returns the number of report rows written to rp."""
    s0 = cmds[0]["seq"]
    ncmd = cmds.shape[0]
    tcap = tt.shape[0]
    k = 0
    last_seq = -1
    nth = 0
    for e in range(events.shape[0]):
        ev = events[e]
        kind = ev["kind"]
        if kind == EV_ACCEPTED:
            oid = ev["order_id"]
            r = alloc_row(ids, ot, head, oid)
            if r < 0:
                continue
            ci = ev["seq"] - s0
            ts = ev["ts_ns"]
            ot[r, OR_ACCOUNT] = ev["account"]
            ot[r, OR_INST] = ev["instrument"]
            ot[r, OR_SIDE] = ev["side"]
            ot[r, OR_PRICE] = ev["price_ticks"]
            ot[r, OR_QTY] = ev["qty_lots"]
            ot[r, OR_LEAVES] = ev["leaves_lots"]
            ot[r, OR_STATUS] = ST_NEW
            ot[r, OR_TIME] = ts
            ot[r, OR_UPDATE] = ts
            ot[r, OR_WORKING] = ts
            ot[r, OR_SEQ] = ev["seq"]
            if 0 <= ci < ncmd:
                c = cmds[ci]
                ot[r, OR_TYPE] = c["ord_type"]
                ot[r, OR_TIF] = c["tif"]
                ot[r, OR_FLAGS] = c["flags"]
                ot[r, OR_SESSION] = c["session"]
            _report(rp, k, X_NEW, ot, r, ev, oid, ev["account"], 0, 0, 0, 0, 0, ev["leaves_lots"])
            k += 1
        elif kind == EV_TRADE:
            seq = ev["seq"]
            if seq != last_seq:
                last_seq = seq
                nth = 0
            tid = (seq << trade_bits) | nth
            nth += 1
            inst = ev["instrument"]
            price = ev["price_ticks"]
            qty = ev["qty_lots"]
            quote = price * qty * minfo[inst, M_TICK]
            tfee = fee(quote, minfo[inst, M_TAKER_BPS])
            mfee = fee(quote, minfo[inst, M_MAKER_BPS])
            t = thead[0] % tcap
            thead[0] += 1
            tt[t, TR_ID] = tid
            tt[t, TR_INST] = inst
            tt[t, TR_PRICE] = price
            tt[t, TR_QTY] = qty
            tt[t, TR_TS] = ev["ts_ns"]
            tt[t, TR_TAKER] = ev["order_id"]
            tt[t, TR_MAKER] = ev["maker_order_id"]
            tt[t, TR_TAKER_ACC] = ev["account"]
            tt[t, TR_MAKER_ACC] = ev["maker_account"]
            tt[t, TR_SIDE] = ev["side"]
            tt[t, TR_SEQ] = seq
            tt[t, TR_TAKER_FEE] = tfee
            tt[t, TR_MAKER_FEE] = mfee
            rt = _row(ids, ev["order_id"])
            _fill(ot, rt, qty, quote, ev["leaves_lots"], ev["ts_ns"])
            _report(rp, k, X_TRADE, ot, rt, ev, ev["order_id"], ev["account"], qty, price, tid, 0, tfee,
                    ev["leaves_lots"])
            k += 1
            rm = _row(ids, ev["maker_order_id"])
            _fill(ot, rm, qty, quote, ev["maker_leaves_lots"], ev["ts_ns"])
            _report(rp, k, X_TRADE, ot, rm, ev, ev["maker_order_id"], ev["maker_account"], qty, price, tid, 1, mfee,
                    ev["maker_leaves_lots"])
            rp[k, RP_SIDE] = 3 - ev["side"] if rm < 0 else rp[k, RP_SIDE]
            k += 1
        elif kind == EV_CANCELLED:
            oid = ev["order_id"]
            r = _row(ids, oid)
            reason = ev["reason"]
            x = X_CANCELED if reason == R_USER else X_EXPIRED
            if r >= 0:
                ot[r, OR_LEAVES] = 0
                ot[r, OR_UPDATE] = ev["ts_ns"]
                if reason == R_USER:
                    ot[r, OR_STATUS] = ST_CANCELED
                elif reason == R_STP:
                    ot[r, OR_STATUS] = ST_EXPIRED_IN_MATCH
                else:
                    ot[r, OR_STATUS] = ST_EXPIRED
            _report(rp, k, x, ot, r, ev, oid, ev["account"], 0, 0, 0, 0, 0, 0)
            k += 1
        elif kind == EV_MODIFIED:
            oid = ev["order_id"]
            r = _row(ids, oid)
            if r >= 0:
                ot[r, OR_PRICE] = ev["price_ticks"]
                ot[r, OR_LEAVES] = ev["leaves_lots"]
                ot[r, OR_QTY] = ot[r, OR_EXEC] + ev["leaves_lots"]
                ot[r, OR_UPDATE] = ev["ts_ns"]
            _report(rp, k, X_REPLACED, ot, r, ev, oid, ev["account"], 0, 0, 0, 0, 0, ev["leaves_lots"])
            k += 1
    return k


def new_tables(order_cap: int, trade_cap: int) -> tuple[np.ndarray, np.ndarray]:
    return np.zeros((order_cap, OR_FIELDS), np.int64), np.zeros((trade_cap, TR_FIELDS), np.int64)
