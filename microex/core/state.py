"""Layout of the engine's state: one flat int64 array at offsets fixed at start-up.

One array (rather than a dozen) because numba's call boundary costs ~35 ns per
array argument; the kernel slices its views out of it at each call.

    header   HEADER_SIZE words (capacities, counters, free lists, offsets)
    orders   max_orders x ORDER_STRIDE  (array of structs: one order per cache line)
    levels   max_orders x LEVEL_STRIDE  (a live level holds >= 1 order, so never more)
    keys     n_books x max_levels       sorted level keys per book side, best last
    lidx     n_books x max_levels       level index beside each key
    counts   n_books                    live levels per book side
    instr    (max_instruments+1) x INSTR_STRIDE    risk parameters per instrument
    accounts (max_accounts+1) x ACCOUNT_STRIDE     limits and open-order count
    balances (max_accounts+1) x max_assets x 2     available, held (asset 0 unused)

A book side is `instrument * 2 + side - 1`; its key for a price is `price` for
bids and `-price` for asks, so both are ascending with the best price last, and
the busy end of the array (the top of book) is where inserts and removals are
cheapest. Free order and level slots come from a free list, then a bump pointer
(so nothing is touched at start-up).
"""

from __future__ import annotations

import numpy as np

from microex.core.config import EngineConfig

# header words
H_MAX_INSTRUMENTS = 0
H_MAX_ORDERS = 1
H_MAX_LEVELS = 2
H_LIVE_ORDERS = 3
H_FREE_ORDER = 4  # head of the free order list, -1 if empty
H_BUMP_ORDER = 5  # next never-used order slot
H_FREE_LEVEL = 6
H_BUMP_LEVEL = 7
H_OFF_ORDERS = 8
H_OFF_LEVELS = 9
H_OFF_KEYS = 10
H_OFF_LIDX = 11
H_OFF_COUNTS = 12
H_N_BOOKS = 13
H_RISK_ON = 14  # 1: accounts, holds, fees and pre-trade checks (risk.py) are on
H_MAX_ACCOUNTS = 15
H_MAX_ASSETS = 16
H_OFF_INSTR = 17
H_OFF_ACCOUNTS = 18
H_OFF_BALANCES = 19
HEADER_SIZE = 32

# order fields
ORDER_STRIDE = 8
O_ID = 0  # 0 when the slot is free: the id map's entry is live only if this matches
O_ACCOUNT = 1
O_PRICE = 2
O_LEAVES = 3
O_NEXT = 4  # FIFO links within the level; also the free-list link
O_PREV = 5
O_LEVEL = 6
O_META = 7  # instrument << 8 | flags << 2 | side

# level fields
LEVEL_STRIDE = 8
L_PRICE = 0
L_QTY = 1
L_COUNT = 2
L_HEAD = 3
L_TAIL = 4
L_BOOK = 5
L_NEXT_FREE = 6

# instrument fields (risk mode); 0 in a limit field means "no limit"
INSTR_STRIDE = 16
I_ACTIVE = 0
I_BASE = 1  # asset id
I_QUOTE = 2
I_TICK = 3  # quote units per tick per lot
I_LOT = 4  # base units per lot
I_MIN_QTY = 5  # lots
I_MAX_QTY = 6
I_MAX_NOTIONAL = 7  # quote units
I_BAND_BPS = 8  # price band, basis points around the reference price
I_MAKER_BPS = 9
I_TAKER_BPS = 10
I_HOLD_BPS = 11  # max(maker, taker): the fee a buy order holds for
I_REF_PRICE = 12  # ticks; last trade or set_price; 0 until there is one
I_HALTED = 13

# account fields
ACCOUNT_STRIDE = 4
A_MAX_OPEN = 0  # 0: no limit
A_OPEN = 1  # resting orders
A_SUSPENDED = 2

NIL = -1


def allocate_state(config: EngineConfig) -> np.ndarray:
    n_books = (config.max_instruments + 1) * 2
    off_orders = HEADER_SIZE
    off_levels = off_orders + config.max_orders * ORDER_STRIDE
    off_keys = off_levels + config.max_orders * LEVEL_STRIDE
    off_lidx = off_keys + n_books * config.max_levels
    off_counts = off_lidx + n_books * config.max_levels
    off_instr = off_counts + n_books
    off_accounts = off_instr + (config.max_instruments + 1) * INSTR_STRIDE
    off_balances = off_accounts + (config.max_accounts + 1) * ACCOUNT_STRIDE
    end = off_balances + (config.max_accounts + 1) * config.max_assets * 2
    state = np.zeros(end, dtype=np.int64)
    state[H_MAX_INSTRUMENTS] = config.max_instruments
    state[H_MAX_ORDERS] = config.max_orders
    state[H_MAX_LEVELS] = config.max_levels
    state[H_FREE_ORDER] = NIL
    state[H_FREE_LEVEL] = NIL
    state[H_OFF_ORDERS] = off_orders
    state[H_OFF_LEVELS] = off_levels
    state[H_OFF_KEYS] = off_keys
    state[H_OFF_LIDX] = off_lidx
    state[H_OFF_COUNTS] = off_counts
    state[H_N_BOOKS] = n_books
    state[H_MAX_ACCOUNTS] = config.max_accounts
    state[H_MAX_ASSETS] = config.max_assets
    state[H_OFF_INSTR] = off_instr
    state[H_OFF_ACCOUNTS] = off_accounts
    state[H_OFF_BALANCES] = off_balances
    return state


def views(state: np.ndarray) -> dict[str, np.ndarray]:
    """Named views of the state, for Python-side readers (tests, reports)."""
    max_orders, max_levels, n_books = (
        int(state[H_MAX_ORDERS]),
        int(state[H_MAX_LEVELS]),
        int(state[H_N_BOOKS]),
    )
    o, lv, k, li, c = (int(state[h]) for h in (H_OFF_ORDERS, H_OFF_LEVELS, H_OFF_KEYS, H_OFF_LIDX, H_OFF_COUNTS))
    n_instr, n_acc, n_assets = int(state[H_MAX_INSTRUMENTS]) + 1, int(state[H_MAX_ACCOUNTS]) + 1, int(state[H_MAX_ASSETS])
    i, a, b = (int(state[h]) for h in (H_OFF_INSTR, H_OFF_ACCOUNTS, H_OFF_BALANCES))
    return {
        "instr": state[i : i + n_instr * INSTR_STRIDE].reshape(n_instr, INSTR_STRIDE),
        "accounts": state[a : a + n_acc * ACCOUNT_STRIDE].reshape(n_acc, ACCOUNT_STRIDE),
        "balances": state[b : b + n_acc * n_assets * 2].reshape(n_acc, n_assets, 2),
        "orders": state[o : o + max_orders * ORDER_STRIDE].reshape(max_orders, ORDER_STRIDE),
        "levels": state[lv : lv + max_orders * LEVEL_STRIDE].reshape(max_orders, LEVEL_STRIDE),
        "keys": state[k : k + n_books * max_levels].reshape(n_books, max_levels),
        "lidx": state[li : li + n_books * max_levels].reshape(n_books, max_levels),
        "counts": state[c : c + n_books],
    }
