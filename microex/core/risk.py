"""Accounts, holds, fees and pre-trade checks, compiled into the matching kernel.

How it works (risk mode, state[H_RISK_ON] == 1):
- Balances are integers in each asset's smallest unit, per account: available
  and held. Account 0 collects the fees.
- An order holds, per lot of its leaves, `unit_hold`: a sell its lot size in the
  base asset; a buy `price*tick + fee(price*tick, max(maker, taker))` in the
  quote asset (the fee rounded up). A fill of q lots releases q units of hold
  and pays from it; the rest of those units goes back to available at once.
  Since a fill is at the order's limit or better and every fee is rounded up
  per fill, q units always cover the fill (fee(q*x) <= q*fee(x)), so no
  balance goes negative; cancels and the end of an immediate order release
  leaves x unit.
- Fees are charged in the quote asset on both sides, rounded up (never in the
  account's favour): the buyer pays notional + fee, the seller receives
  notional - fee; account 0 receives both fees. Conservation: every transfer
  here moves an amount from one balance to another.
- A market order sweeps at most to a protection price `limit`: where its qty
  would be filled by the book as it is (others' orders only, with stp), capped
  by the price band's edge when a band and reference price exist. A market buy
  holds qty units at that price: nothing else changes the book during the
  command, so the hold covers whatever it fills.
- Notionals and balances are capped at CAP = 2**61 so that no product overflows.
The Python twin of this module is `reference_risk.ReferenceRisk`.
"""

from __future__ import annotations

from numba import njit

from microex.core.records import Reason, Side
from microex.core.state import (
    A_MAX_OPEN,
    A_OPEN,
    A_SUSPENDED,
    ACCOUNT_STRIDE,
    H_MAX_ACCOUNTS,
    H_MAX_ASSETS,
    H_OFF_ACCOUNTS,
    H_OFF_BALANCES,
    H_OFF_INSTR,
    I_ACTIVE,
    I_BAND_BPS,
    I_BASE,
    I_HALTED,
    I_HOLD_BPS,
    I_LOT,
    I_MAKER_BPS,
    I_MAX_NOTIONAL,
    I_MAX_QTY,
    I_MIN_QTY,
    I_QUOTE,
    I_REF_PRICE,
    I_TAKER_BPS,
    I_TICK,
    INSTR_STRIDE,
)

CAP = 1 << 61
BPS = 10_000
BUY = int(Side.BUY)
OK = 0
R_FUNDS = int(Reason.RISK_FUNDS)
R_MAX_QTY = int(Reason.RISK_MAX_QTY)
R_MIN_QTY = int(Reason.RISK_MIN_QTY)
R_MAX_NOTIONAL = int(Reason.RISK_MAX_NOTIONAL)
R_PRICE_BAND = int(Reason.RISK_PRICE_BAND)
R_OPEN_ORDERS = int(Reason.RISK_OPEN_ORDERS)
R_HALTED = int(Reason.RISK_HALTED)
R_SUSPENDED = int(Reason.RISK_SUSPENDED)
R_UNKNOWN_ACCOUNT = int(Reason.UNKNOWN_ACCOUNT)
R_UNKNOWN_INSTRUMENT = int(Reason.UNKNOWN_INSTRUMENT)
R_INVALID_COMMAND = int(Reason.INVALID_COMMAND)
R_INVALID_QTY = int(Reason.INVALID_QTY)
R_INVALID_PRICE = int(Reason.INVALID_PRICE)


@njit(cache=True, inline="always")
def mul_capped(a, b):
    """a * b for a, b >= 0, or -1 if it exceeds CAP."""
    if (a | b) < (1 << 30):  # the usual case, without a division
        return a * b
    if a == 0 or b == 0:
        return 0
    if a > CAP // b:
        return -1
    return a * b


@njit(cache=True, inline="always")
def fee(notional, bps):
    """ceil(notional * bps / 10000), without overflow for notional <= CAP."""
    return (notional // BPS) * bps + ((notional % BPS) * bps + BPS - 1) // BPS


@njit(cache=True, inline="always")
def instr_base(state, inst):
    return state[H_OFF_INSTR] + inst * INSTR_STRIDE


@njit(cache=True, inline="always")
def balance_at(state, acc, asset):
    """Index of (acc, asset)'s available balance; held is the next word."""
    return state[H_OFF_BALANCES] + (acc * state[H_MAX_ASSETS] + asset) * 2


@njit(cache=True, inline="always")
def account_at(state, acc):
    return state[H_OFF_ACCOUNTS] + acc * ACCOUNT_STRIDE


@njit(cache=True, inline="always")
def unit_hold(state, ib, side, price):
    """What one lot of an order holds (see module doc)."""
    if side != BUY:
        return state[ib + I_LOT]
    pt = price * state[ib + I_TICK]
    return pt + fee(pt, state[ib + I_HOLD_BPS])


@njit(cache=True, inline="always")
def hold_asset(state, ib, side):
    return state[ib + I_QUOTE] if side == BUY else state[ib + I_BASE]


@njit(cache=True, inline="always")
def move_hold(state, acc, asset, amount):
    """available -> held (amount > 0) or back (amount < 0)."""
    b = balance_at(state, acc, asset)
    state[b] -= amount
    state[b + 1] += amount


@njit(cache=True, inline="always")
def band_edge(state, ib, side):
    """The worst price the band allows for an order of `side` (0: no band)."""
    ref = state[ib + I_REF_PRICE]
    band = state[ib + I_BAND_BPS]
    if ref == 0 or band == 0:
        return 0
    if side == BUY:  # floor(ref * (1 + band))
        return ref + (ref // BPS) * band + ((ref % BPS) * band) // BPS
    # ceil(ref * (1 - band)), at least 1 tick
    lo = ref - (ref // BPS) * band - ((ref % BPS) * band) // BPS
    return lo if lo > 1 else 1


@njit(cache=True, inline="always")
def in_band(state, ib, price):
    ref = state[ib + I_REF_PRICE]
    if ref == 0 or state[ib + I_BAND_BPS] == 0:
        return True
    return band_edge(state, ib, 2) <= price <= band_edge(state, ib, BUY)


@njit(cache=True, inline="always")
def check_order(state, acc, inst, side, price, qty):
    """Checks shared by new and modify: account, instrument state, qty, band, notional.
    Returns (reason, notional)."""
    if acc > state[H_MAX_ACCOUNTS]:
        return R_UNKNOWN_ACCOUNT, 0
    ib = instr_base(state, inst)
    if state[ib + I_ACTIVE] == 0:
        return R_UNKNOWN_INSTRUMENT, 0
    if state[ib + I_HALTED] != 0:
        return R_HALTED, 0
    if state[account_at(state, acc) + A_SUSPENDED] != 0:
        return R_SUSPENDED, 0
    if qty < state[ib + I_MIN_QTY]:
        return R_MIN_QTY, 0
    max_qty = state[ib + I_MAX_QTY]
    if max_qty != 0 and qty > max_qty:
        return R_MAX_QTY, 0
    if price != 0 and not in_band(state, ib, price):
        return R_PRICE_BAND, 0
    qt = mul_capped(qty, state[ib + I_TICK])
    notional = -1 if qt < 0 else mul_capped(price, qt)
    max_notional = state[ib + I_MAX_NOTIONAL]
    if notional < 0 or (max_notional != 0 and notional > max_notional):
        return R_MAX_NOTIONAL, 0
    if mul_capped(qty, state[ib + I_LOT]) < 0:
        return R_MAX_QTY, 0
    return OK, notional


@njit(cache=True, inline="always")
def has_funds(state, acc, ib, side, amount):
    return state[balance_at(state, acc, hold_asset(state, ib, side))] >= amount


@njit(cache=True, inline="always")
def open_orders_full(state, acc):
    a = account_at(state, acc)
    return state[a + A_MAX_OPEN] != 0 and state[a + A_OPEN] >= state[a + A_MAX_OPEN]


@njit(cache=True, inline="always")
def count_open(state, acc, delta):
    state[account_at(state, acc) + A_OPEN] += delta


@njit(cache=True, inline="always")
def release(state, inst, acc, side, unit, lots):
    ib = instr_base(state, inst)
    move_hold(state, acc, hold_asset(state, ib, side), -unit * lots)


@njit(cache=True, inline="always")
def settle(state, inst, side, tacc, tunit, macc, munit, price, qty):
    """One fill of qty lots at price between taker (side) and maker."""
    ib = instr_base(state, inst)
    if side == BUY:
        buyer, bunit, bbps, seller, sbps = tacc, tunit, state[ib + I_TAKER_BPS], macc, state[ib + I_MAKER_BPS]
    else:
        buyer, bunit, bbps, seller, sbps = macc, munit, state[ib + I_MAKER_BPS], tacc, state[ib + I_TAKER_BPS]
    notional = price * qty * state[ib + I_TICK]
    fee_b = fee(notional, bbps)
    fee_s = fee(notional, sbps)
    off = state[H_OFF_BALANCES]
    stride = state[H_MAX_ASSETS] * 2
    quote = state[ib + I_QUOTE] * 2
    base = state[ib + I_BASE] * 2
    bb = off + buyer * stride
    sb = off + seller * stride
    lots_base = qty * state[ib + I_LOT]
    released = qty * bunit
    state[bb + quote + 1] -= released  # buyer: quote hold -> paid, the rest available
    state[bb + quote] += released - notional - fee_b
    state[bb + base] += lots_base
    state[sb + base + 1] -= lots_base  # seller: base hold -> delivered
    state[sb + quote] += notional - fee_s
    state[off + quote] += fee_b + fee_s  # account 0
    state[ib + I_REF_PRICE] = price
