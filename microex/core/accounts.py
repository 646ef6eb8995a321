"""Account and venue-control commands: deposit, withdraw, halt/resume an
instrument, suspend/unsuspend an account, set a reference price.

They emit no event unless rejected (the command itself is the record of the
change). Checks, in order: the account (or instrument), the asset, then the
amount: a bad account, asset or instrument is invalid_command (an instrument
id past the configured ones: unknown_instrument), an amount that is not
positive or would take a balance past CAP is invalid_qty, a withdrawal above
the available balance is risk_funds. Without risk mode all of them are
invalid_command.
"""

from __future__ import annotations

from numba import njit

from microex.core.events import emit_reject
from microex.core.records import Action
from microex.core.risk import (
    CAP,
    R_FUNDS,
    R_INVALID_COMMAND,
    R_INVALID_PRICE,
    R_INVALID_QTY,
    R_UNKNOWN_INSTRUMENT,
    account_at,
    balance_at,
    instr_base,
)
from microex.core.state import (
    A_SUSPENDED,
    H_MAX_ACCOUNTS,
    H_MAX_ASSETS,
    H_MAX_INSTRUMENTS,
    H_RISK_ON,
    I_ACTIVE,
    I_HALTED,
    I_REF_PRICE,
)

DEPOSIT, WITHDRAW = int(Action.DEPOSIT), int(Action.WITHDRAW)
HALT, RESUME = int(Action.HALT), int(Action.RESUME)
SUSPEND, UNSUSPEND = int(Action.SUSPEND), int(Action.UNSUSPEND)
SET_PRICE = int(Action.SET_PRICE)


@njit(cache=True, inline="always")
def account_command_reason(state, cmd):
    """Apply one account/control command; the reject reason, or 0."""
    action = cmd["action"]
    if state[H_RISK_ON] == 0:
        return R_INVALID_COMMAND
    acc = int(cmd["account"])
    if action == DEPOSIT or action == WITHDRAW or action == SUSPEND or action == UNSUSPEND:
        if acc <= 0 or acc > state[H_MAX_ACCOUNTS]:
            return R_INVALID_COMMAND
        if action == SUSPEND or action == UNSUSPEND:
            state[account_at(state, acc) + A_SUSPENDED] = 1 if action == SUSPEND else 0
            return 0
        asset = int(cmd["instrument"])
        if asset <= 0 or asset >= state[H_MAX_ASSETS]:
            return R_INVALID_COMMAND
        amount = int(cmd["qty_lots"])
        if amount <= 0:
            return R_INVALID_QTY
        b = balance_at(state, acc, asset)
        if action == DEPOSIT:
            if state[b] + state[b + 1] > CAP - amount:
                return R_INVALID_QTY
            state[b] += amount
            return 0
        if amount > state[b]:
            return R_FUNDS
        state[b] -= amount
        return 0
    inst = int(cmd["instrument"])
    if inst <= 0:
        return R_INVALID_COMMAND
    if inst > state[H_MAX_INSTRUMENTS] or state[instr_base(state, inst) + I_ACTIVE] == 0:
        return R_UNKNOWN_INSTRUMENT
    ib = instr_base(state, inst)
    if action == HALT or action == RESUME:
        state[ib + I_HALTED] = 1 if action == HALT else 0
        return 0
    price = int(cmd["price_ticks"])
    if price <= 0:
        return R_INVALID_PRICE
    state[ib + I_REF_PRICE] = price
    return 0


@njit(cache=True, inline="always")
def on_account_command(state, cmd, events, ne):
    reason = account_command_reason(state, cmd)
    if reason != 0:
        return emit_reject(events, ne, cmd["seq"], cmd["ts_ns"], 0, reason)
    return ne
