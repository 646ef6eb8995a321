"""The matching kernel: one call runs a batch of COMMAND records, writes EVENT records.

How it works:
- `process_batch(state, ids, cmds, start, count, events)` runs cmds[start:start+count]
  in order and returns `processed | n_events << 32`. It stops early, before a
  command, when the event buffer might not hold that command's events (see
  `event_bound`) or when the id map is half full;
  the caller drains or grows and calls again with the rest. A command is
  never half-applied.
- Every check of SPEC.md runs here, in its order, so records from any edge
  (CSV, binary wire, journal) are validated the same way; a failed check is a
  `rejected` event with a Reason code, never an exception.
- Capacity is checked before anything changes: a GTC limit order needs a free
  order slot and either an existing level at its price or room for one more.
- L2: every level the command touched gets one `level` event with its new
  total and order count, when the command is done with it (after a sweep
  leaves it, after a rest, cancel or modify).
The plain-Python twin of this contract is `reference.ReferenceMatcher`.
"""

from __future__ import annotations

from numba import njit

from microex.core.book import (
    level_drop_if_empty,
    level_for_price,
    level_key,
    book_search,
    link_tail,
    order_alloc,
    order_free,
    unlink,
)
from microex.core.accounts import on_account_command
from microex.core.borrow import borrow
from microex.core.events import emit, emit_level, emit_reject
from microex.core.idmap import ID_HEADER, id_find
from microex.core.records import MAX_QTY_LOTS, Action, EventKind, Flag, OrdType, Reason, Side, Tif
from microex.core.risk import (
    R_FUNDS,
    R_OPEN_ORDERS,
    band_edge,
    check_order,
    count_open,
    has_funds,
    hold_asset,
    instr_base,
    move_hold,
    open_orders_full,
    release,
    settle,
    unit_hold,
)
from microex.core.state import (
    H_LIVE_ORDERS,
    H_MAX_INSTRUMENTS,
    H_MAX_LEVELS,
    H_MAX_ORDERS,
    H_N_BOOKS,
    H_OFF_COUNTS,
    H_OFF_KEYS,
    H_OFF_LEVELS,
    H_OFF_LIDX,
    H_OFF_ORDERS,
    H_RISK_ON,
    L_COUNT,
    L_HEAD,
    L_PRICE,
    L_QTY,
    LEVEL_STRIDE,
    NIL,
    O_ACCOUNT,
    O_ID,
    O_LEAVES,
    O_LEVEL,
    O_META,
    O_NEXT,
    O_PRICE,
    ORDER_STRIDE,
)

NEW, CANCEL, MODIFY = int(Action.NEW), int(Action.CANCEL), int(Action.MODIFY)
DEPOSIT, SET_PRICE = int(Action.DEPOSIT), int(Action.SET_PRICE)
BUY, SELL = int(Side.BUY), int(Side.SELL)
LIMIT, MARKET = int(OrdType.LIMIT), int(OrdType.MARKET)
GTC, IOC, FOK = int(Tif.GTC), int(Tif.IOC), int(Tif.FOK)
POST_ONLY, STP = int(Flag.POST_ONLY), int(Flag.STP)
EV_ACCEPTED, EV_REJECTED, EV_TRADE = int(EventKind.ACCEPTED), int(EventKind.REJECTED), int(EventKind.TRADE)
EV_CANCELLED, EV_MODIFIED, EV_LEVEL = int(EventKind.CANCELLED), int(EventKind.MODIFIED), int(EventKind.LEVEL)
R_DUPLICATE, R_UNKNOWN_ORDER = int(Reason.DUPLICATE_ORDER_ID), int(Reason.UNKNOWN_ORDER)
R_INVALID_PRICE, R_INVALID_QTY = int(Reason.INVALID_PRICE), int(Reason.INVALID_QTY)
R_INVALID_COMMAND, R_WOULD_CROSS = int(Reason.INVALID_COMMAND), int(Reason.WOULD_CROSS)
R_UNKNOWN_INSTRUMENT = int(Reason.UNKNOWN_INSTRUMENT)
R_CAPACITY_ORDERS, R_CAPACITY_LEVELS = int(Reason.CAPACITY_ORDERS), int(Reason.CAPACITY_LEVELS)
R_USER, R_IOC, R_FOK, R_STP = int(Reason.USER), int(Reason.IOC), int(Reason.FOK), int(Reason.STP)
EVENTS_SLACK = 8


@njit(cache=True, inline="always")
def best_price(keys, counts, max_levels, book, side):
    """Best price of a book side, 0 if it is empty."""
    n = counts[book]
    if n == 0:
        return 0
    k = keys[book * max_levels + n - 1]
    return k if side == BUY else -k


@njit(cache=True, inline="always")
def crosses(side, limit, level_price):
    return level_price <= limit if side == BUY else level_price >= limit


@njit(cache=True, inline="always")
def sweep(orders, levels, lidx, counts, max_levels, opp_book, side, price, market, stp, acc, want):
    """Walk the opposite side as an aggressor would, without changing it:
    (lots it could take, up to at least `want`; price of the last level reached).
    With stp, the same account's orders do not count."""
    base = opp_book * max_levels
    total = 0
    last = 0
    for j in range(counts[opp_book] - 1, -1, -1):
        lb = lidx[base + j] * LEVEL_STRIDE
        if not market and not crosses(side, price, levels[lb + L_PRICE]):
            break
        last = levels[lb + L_PRICE]
        if stp:
            o = levels[lb + L_HEAD]
            while o != NIL:
                if orders[o * ORDER_STRIDE + O_ACCOUNT] != acc:
                    total += orders[o * ORDER_STRIDE + O_LEAVES]
                o = orders[o * ORDER_STRIDE + O_NEXT]
        else:
            total += levels[lb + L_QTY]
        if total >= want:
            break
    return total, last


@njit(cache=True, inline="always")
def match(state, orders, levels, keys, lidx, counts, max_levels, events, ne, seq, ts,
          oid, acc, inst, side, price, market, stp, leaves, risk_on, unit):
    """Trade an aggressor against the opposite side while it crosses; (leaves, ne).
    With risk on, every fill settles (`unit`: the aggressor's hold per lot)."""
    opp_side = SELL if side == BUY else BUY
    opp = inst * 2 + opp_side - 1
    base = opp * max_levels
    ib = instr_base(state, inst)
    while leaves > 0:
        n = counts[opp]
        if n == 0:
            break
        lv = lidx[base + n - 1]
        lb = lv * LEVEL_STRIDE
        lp = levels[lb + L_PRICE]
        if not market and not crosses(side, price, lp):
            break
        munit = unit_hold(state, ib, opp_side, lp) if risk_on else 0
        o = levels[lb + L_HEAD]
        while o != NIL and leaves > 0:
            ob = o * ORDER_STRIDE
            nxt = orders[ob + O_NEXT]
            mleaves = orders[ob + O_LEAVES]
            macc = orders[ob + O_ACCOUNT]
            moid = orders[ob + O_ID]
            if stp and macc == acc:
                unlink(orders, levels, lv, o)
                order_free(state, orders, o)
                if risk_on:
                    release(state, inst, macc, opp_side, munit, mleaves)
                    count_open(state, macc, -1)
                ne = emit(events, ne, seq, ts, EV_CANCELLED, moid, 0, macc, 0, lp, mleaves, 0, 0,
                          inst, 0, opp_side, R_STP)
            else:
                fill = leaves if leaves < mleaves else mleaves
                leaves -= fill
                mleaves -= fill
                orders[ob + O_LEAVES] = mleaves
                levels[lb + L_QTY] -= fill
                if risk_on:
                    settle(state, inst, side, acc, unit, macc, munit, lp, fill)
                ne = emit(events, ne, seq, ts, EV_TRADE, oid, moid, acc, macc, lp, fill, leaves, mleaves,
                          inst, 0, side, 0)
                if mleaves == 0:
                    unlink(orders, levels, lv, o)
                    order_free(state, orders, o)
                    if risk_on:
                        count_open(state, macc, -1)
            o = nxt
        ne = emit_level(events, ne, seq, ts, levels, lv, inst, opp_side)
        if levels[lb + L_COUNT] == 0:
            level_drop_if_empty(state, levels, keys, lidx, counts, max_levels, lv, opp_side)
    return leaves, ne


@njit(cache=True, inline="always")
def rest(state, orders, levels, keys, lidx, counts, max_levels, events, ne, seq, ts, slot, inst, side, price):
    book = inst * 2 + side - 1
    lv = level_for_price(state, levels, keys, lidx, counts, max_levels, book, side, price)
    link_tail(orders, levels, lv, slot)
    return emit_level(events, ne, seq, ts, levels, lv, inst, side)


@njit(cache=True, inline="always")
def on_new(state, orders, levels, keys, lidx, counts, ids, cmd, events, ne):
    seq = cmd["seq"]
    ts = cmd["ts_ns"]
    oid = int(cmd["order_id"])
    if oid <= 0:
        return emit_reject(events, ne, seq, ts, oid, R_INVALID_COMMAND)
    h = id_find(ids, oid)
    if ids[ID_HEADER + 2 * h] == oid:
        return emit_reject(events, ne, seq, ts, oid, R_DUPLICATE)
    ids[ID_HEADER + 2 * h] = oid
    ids[ID_HEADER + 2 * h + 1] = NIL
    ids[0] += 1

    side = int(cmd["side"])
    otype = int(cmd["ord_type"])
    tif = int(cmd["tif"])
    acc = int(cmd["account"])
    inst = int(cmd["instrument"])
    qty = int(cmd["qty_lots"])
    price = int(cmd["price_ticks"])
    flags = int(cmd["flags"])
    max_levels = state[H_MAX_LEVELS]
    if (side != BUY and side != SELL) or (otype != LIMIT and otype != MARKET):
        return emit_reject(events, ne, seq, ts, oid, R_INVALID_COMMAND)
    market = otype == MARKET
    if market:
        tif = IOC
        price = 0
    elif tif != GTC and tif != IOC and tif != FOK:
        return emit_reject(events, ne, seq, ts, oid, R_INVALID_COMMAND)
    if acc <= 0 or inst <= 0:
        return emit_reject(events, ne, seq, ts, oid, R_INVALID_COMMAND)
    if inst > state[H_MAX_INSTRUMENTS]:
        return emit_reject(events, ne, seq, ts, oid, R_UNKNOWN_INSTRUMENT)
    if qty <= 0 or qty > MAX_QTY_LOTS:
        return emit_reject(events, ne, seq, ts, oid, R_INVALID_QTY)
    if not market and price <= 0:
        return emit_reject(events, ne, seq, ts, oid, R_INVALID_PRICE)
    if flags != 0 and flags != POST_ONLY and flags != STP:
        return emit_reject(events, ne, seq, ts, oid, R_INVALID_COMMAND)
    if flags == POST_ONLY and tif != GTC:  # market orders have tif IOC here
        return emit_reject(events, ne, seq, ts, oid, R_INVALID_COMMAND)
    opp_side = SELL if side == BUY else BUY
    opp_book = inst * 2 + opp_side - 1
    own_book = inst * 2 + side - 1
    if flags == POST_ONLY and counts[opp_book] > 0:
        if crosses(side, price, best_price(keys, counts, max_levels, opp_book, opp_side)):
            return emit_reject(events, ne, seq, ts, oid, R_WOULD_CROSS)
    stp = flags == STP
    risk_on = state[H_RISK_ON] != 0
    limit = price  # how far the order may sweep (market: 0, no limit)
    unit = 0
    if risk_on:
        ib = instr_base(state, inst)
        if market:  # protection price: where the book fills it, capped by the band
            limit = sweep(orders, levels, lidx, counts, max_levels, opp_book, side, 0, True, stp, acc, qty)[1]
            edge = band_edge(state, ib, side)
            if edge != 0 and (limit == 0 or not crosses(side, edge, limit)):
                limit = edge
        reason, _ = check_order(state, acc, inst, side, limit, qty)
        if reason != 0:
            return emit_reject(events, ne, seq, ts, oid, reason)
        if tif == GTC and open_orders_full(state, acc):
            return emit_reject(events, ne, seq, ts, oid, R_OPEN_ORDERS)
        unit = unit_hold(state, ib, side, limit)
        if not has_funds(state, acc, ib, side, unit * qty):
            return emit_reject(events, ne, seq, ts, oid, R_FUNDS)
    if tif == GTC:
        if state[H_LIVE_ORDERS] >= state[H_MAX_ORDERS]:
            return emit_reject(events, ne, seq, ts, oid, R_CAPACITY_ORDERS)
        n = counts[own_book]
        if n >= max_levels and book_search(keys, own_book * max_levels, n, level_key(side, price)) < 0:
            return emit_reject(events, ne, seq, ts, oid, R_CAPACITY_LEVELS)

    if risk_on:
        move_hold(state, acc, hold_asset(state, ib, side), unit * qty)
    ne = emit(events, ne, seq, ts, EV_ACCEPTED, oid, 0, acc, 0, price, qty, qty, 0, inst, 0, side, 0)
    if tif == FOK:
        if sweep(orders, levels, lidx, counts, max_levels, opp_book, side, price, market, stp, acc, qty)[0] < qty:
            if risk_on:
                release(state, inst, acc, side, unit, qty)
            return emit(events, ne, seq, ts, EV_CANCELLED, oid, 0, acc, 0, price, qty, 0, 0, inst, 0, side, R_FOK)
    leaves, ne = match(state, orders, levels, keys, lidx, counts, max_levels, events, ne, seq, ts,
                       oid, acc, inst, side, limit, limit == 0, stp, qty, risk_on, unit)
    if leaves == 0:
        return ne
    if tif != GTC:
        if risk_on:
            release(state, inst, acc, side, unit, leaves)
        return emit(events, ne, seq, ts, EV_CANCELLED, oid, 0, acc, 0, price, leaves, 0, 0, inst, 0, side, R_IOC)
    slot = order_alloc(state, orders)
    ob = slot * ORDER_STRIDE
    orders[ob + O_ID] = oid
    orders[ob + O_ACCOUNT] = acc
    orders[ob + O_PRICE] = price
    orders[ob + O_LEAVES] = leaves
    orders[ob + O_META] = (inst << 8) | (flags << 2) | side
    ids[ID_HEADER + 2 * h + 1] = slot
    if risk_on:
        count_open(state, acc, 1)
    return rest(state, orders, levels, keys, lidx, counts, max_levels, events, ne, seq, ts, slot, inst, side, price)


@njit(cache=True, inline="always")
def resting_slot(orders, ids, oid):
    """The pool slot of a resting order, or NIL."""
    h = id_find(ids, oid)
    if ids[ID_HEADER + 2 * h] != oid:
        return NIL
    slot = ids[ID_HEADER + 2 * h + 1]
    if slot == NIL or orders[slot * ORDER_STRIDE + O_ID] != oid:
        return NIL
    return slot


@njit(cache=True, inline="always")
def on_cancel(state, orders, levels, keys, lidx, counts, ids, cmd, events, ne):
    seq = cmd["seq"]
    ts = cmd["ts_ns"]
    oid = int(cmd["order_id"])
    if oid <= 0:
        return emit_reject(events, ne, seq, ts, oid, R_INVALID_COMMAND)
    slot = resting_slot(orders, ids, oid)
    if slot == NIL:
        return emit_reject(events, ne, seq, ts, oid, R_UNKNOWN_ORDER)
    ob = slot * ORDER_STRIDE
    meta = orders[ob + O_META]
    inst = meta >> 8
    side = meta & 3
    lv = orders[ob + O_LEVEL]
    leaves = orders[ob + O_LEAVES]
    acc = orders[ob + O_ACCOUNT]
    price = orders[ob + O_PRICE]
    if state[H_RISK_ON] != 0:
        release(state, inst, acc, side, unit_hold(state, instr_base(state, inst), side, price), leaves)
        count_open(state, acc, -1)
    ne = emit(events, ne, seq, ts, EV_CANCELLED, oid, 0, acc, 0, price, leaves, 0, 0, inst, 0, side, R_USER)
    unlink(orders, levels, lv, slot)
    order_free(state, orders, slot)
    ne = emit_level(events, ne, seq, ts, levels, lv, inst, side)
    level_drop_if_empty(state, levels, keys, lidx, counts, state[H_MAX_LEVELS], lv, side)
    return ne


@njit(cache=True, inline="always")
def on_modify(state, orders, levels, keys, lidx, counts, ids, cmd, events, ne):
    seq = cmd["seq"]
    ts = cmd["ts_ns"]
    oid = int(cmd["order_id"])
    if oid <= 0:
        return emit_reject(events, ne, seq, ts, oid, R_INVALID_COMMAND)
    slot = resting_slot(orders, ids, oid)
    if slot == NIL:
        return emit_reject(events, ne, seq, ts, oid, R_UNKNOWN_ORDER)
    price = int(cmd["price_ticks"])
    qty = int(cmd["qty_lots"])
    if price <= 0:
        return emit_reject(events, ne, seq, ts, oid, R_INVALID_PRICE)
    if qty <= 0 or qty > MAX_QTY_LOTS:
        return emit_reject(events, ne, seq, ts, oid, R_INVALID_QTY)
    max_levels = state[H_MAX_LEVELS]
    ob = slot * ORDER_STRIDE
    meta = orders[ob + O_META]
    inst = meta >> 8
    flags = (meta >> 2) & 63
    side = meta & 3
    acc = orders[ob + O_ACCOUNT]
    opp_side = SELL if side == BUY else BUY
    opp_book = inst * 2 + opp_side - 1
    own_book = inst * 2 + side - 1
    if flags == POST_ONLY and counts[opp_book] > 0:
        if crosses(side, price, best_price(keys, counts, max_levels, opp_book, opp_side)):
            return emit_reject(events, ne, seq, ts, oid, R_WOULD_CROSS)
    lv = orders[ob + O_LEVEL]
    lb = lv * LEVEL_STRIDE
    old_price = orders[ob + O_PRICE]
    leaves = orders[ob + O_LEAVES]
    risk_on = state[H_RISK_ON] != 0
    old_unit = new_unit = 0
    if risk_on:
        reason, _ = check_order(state, acc, inst, side, price, qty)
        if reason != 0:
            return emit_reject(events, ne, seq, ts, oid, reason)
        ib = instr_base(state, inst)
        old_unit = unit_hold(state, ib, side, old_price)
        new_unit = unit_hold(state, ib, side, price)
        extra = qty * new_unit - leaves * old_unit
        if extra > 0 and not has_funds(state, acc, ib, side, extra):
            return emit_reject(events, ne, seq, ts, oid, R_FUNDS)
    if price == old_price and qty <= leaves:  # same price, not larger: keeps time priority
        if risk_on:
            release(state, inst, acc, side, old_unit, leaves - qty)
        levels[lb + L_QTY] -= leaves - qty
        orders[ob + O_LEAVES] = qty
        ne = emit(events, ne, seq, ts, EV_MODIFIED, oid, 0, acc, 0, price, 0, qty, 0, inst, 0, side, 0)
        return emit_level(events, ne, seq, ts, levels, lv, inst, side)
    if price != old_price:
        n = counts[own_book]
        frees = 1 if levels[lb + L_COUNT] == 1 else 0
        if n - frees >= max_levels and book_search(keys, own_book * max_levels, n, level_key(side, price)) < 0:
            return emit_reject(events, ne, seq, ts, oid, R_CAPACITY_LEVELS)
    if risk_on:
        move_hold(state, acc, hold_asset(state, instr_base(state, inst), side), qty * new_unit - leaves * old_unit)
    unlink(orders, levels, lv, slot)
    orders[ob + O_PRICE] = price
    orders[ob + O_LEAVES] = qty
    ne = emit(events, ne, seq, ts, EV_MODIFIED, oid, 0, acc, 0, price, 0, qty, 0, inst, 0, side, 0)
    ne = emit_level(events, ne, seq, ts, levels, lv, inst, side)
    level_drop_if_empty(state, levels, keys, lidx, counts, max_levels, lv, side)
    leaves, ne = match(state, orders, levels, keys, lidx, counts, max_levels, events, ne, seq, ts,
                       oid, acc, inst, side, price, False, flags == STP, qty, risk_on, new_unit)
    if leaves == 0:
        order_free(state, orders, slot)
        if risk_on:
            count_open(state, acc, -1)
        return ne
    orders[ob + O_LEAVES] = leaves
    return rest(state, orders, levels, keys, lidx, counts, max_levels, events, ne, seq, ts, slot, inst, side, price)


@njit(cache=True, inline="always")
def event_bound(state, orders, ids, cmd):
    """Most events a command can emit: each maker it meets yields a trade or an
    stp cancel plus at most one level event, and a maker met without stp takes
    at least one lot. Whether stp applies is the order's flag: for a modify,
    the resting order's, not the command's."""
    action = cmd["action"]
    if action != NEW and action != MODIFY:
        return EVENTS_SLACK
    stp = cmd["flags"] == STP
    if action == MODIFY:
        slot = resting_slot(orders, ids, int(cmd["order_id"]))
        stp = slot != NIL and ((orders[slot * ORDER_STRIDE + O_META] >> 2) & 63) == STP
    live = state[H_LIVE_ORDERS]
    qty = cmd["qty_lots"]
    if not stp and qty < live:
        return 2 * max(qty, 0) + EVENTS_SLACK
    return 2 * live + EVENTS_SLACK


@njit(cache=True)
def process_batch(state, ids, cmds, start, count, events):
    """Run cmds[start:start+count]; returns processed | n_events << 32 (see module doc)."""
    state = borrow(state)
    ids = borrow(ids)
    cmds = borrow(cmds)
    events = borrow(events)
    max_orders = state[H_MAX_ORDERS]
    max_levels = state[H_MAX_LEVELS]
    n_books = state[H_N_BOOKS]
    off = state[H_OFF_ORDERS]
    orders = state[off : off + max_orders * ORDER_STRIDE]
    off = state[H_OFF_LEVELS]
    levels = state[off : off + max_orders * LEVEL_STRIDE]
    off = state[H_OFF_KEYS]
    keys = state[off : off + n_books * max_levels]
    off = state[H_OFF_LIDX]
    lidx = state[off : off + n_books * max_levels]
    off = state[H_OFF_COUNTS]
    counts = state[off : off + n_books]
    ev_cap = events.shape[0]
    id_limit = (1 << ids[1]) >> 1
    ne = 0
    i = start
    end = start + count
    while i < end:
        cmd = cmds[i]
        if ne + event_bound(state, orders, ids, cmd) > ev_cap or ids[0] >= id_limit:
            break
        action = cmd["action"]
        if action == NEW:
            ne = on_new(state, orders, levels, keys, lidx, counts, ids, cmd, events, ne)
        elif action == CANCEL:
            ne = on_cancel(state, orders, levels, keys, lidx, counts, ids, cmd, events, ne)
        elif action == MODIFY:
            ne = on_modify(state, orders, levels, keys, lidx, counts, ids, cmd, events, ne)
        elif action >= DEPOSIT and action <= SET_PRICE:
            ne = on_account_command(state, cmd, events, ne)
        else:
            ne = emit_reject(events, ne, cmd["seq"], cmd["ts_ns"], int(cmd["order_id"]), R_INVALID_COMMAND)
        i += 1
    return (i - start) | (ne << 32)
