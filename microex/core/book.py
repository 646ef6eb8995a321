"""Order book primitives over the flat state (see state.py for the layout).

Invariants kept by every function here:
- a level's QTY is the sum of its orders' LEAVES and COUNT their number;
- a book side's keys are strictly ascending, best price last, one per live level;
- an order in a level's FIFO has a non-zero ID and LEVEL pointing at that level;
- a level or order slot is either live or on its free list, never both.
"""

from __future__ import annotations

from numba import njit

from microex.core.state import (
    H_BUMP_LEVEL,
    H_BUMP_ORDER,
    H_FREE_LEVEL,
    H_FREE_ORDER,
    H_LIVE_ORDERS,
    L_BOOK,
    L_COUNT,
    L_HEAD,
    L_NEXT_FREE,
    L_PRICE,
    L_QTY,
    L_TAIL,
    LEVEL_STRIDE,
    NIL,
    O_ID,
    O_LEAVES,
    O_LEVEL,
    O_NEXT,
    O_PREV,
    ORDER_STRIDE,
)

BUY = 1


@njit(cache=True, inline="always")
def level_key(side, price):
    return price if side == BUY else -price


@njit(cache=True, inline="always")
def book_search(keys, base, n, key):
    """Index of `key` among keys[base:base+n], or -(insertion point) - 1."""
    lo = 0
    hi = n
    while lo < hi:
        mid = (lo + hi) >> 1
        if keys[base + mid] < key:
            lo = mid + 1
        else:
            hi = mid
    if lo < n and keys[base + lo] == key:
        return lo
    return -lo - 1


@njit(cache=True, inline="always")
def book_insert(keys, lidx, base, n, pos, key, lv):
    for j in range(n, pos, -1):
        keys[base + j] = keys[base + j - 1]
        lidx[base + j] = lidx[base + j - 1]
    keys[base + pos] = key
    lidx[base + pos] = lv


@njit(cache=True, inline="always")
def book_delete(keys, lidx, base, n, pos):
    for j in range(pos, n - 1):
        keys[base + j] = keys[base + j + 1]
        lidx[base + j] = lidx[base + j + 1]


@njit(cache=True, inline="always")
def order_alloc(state, orders):
    slot = state[H_FREE_ORDER]
    if slot != NIL:
        state[H_FREE_ORDER] = orders[slot * ORDER_STRIDE + O_NEXT]
    else:
        slot = state[H_BUMP_ORDER]
        state[H_BUMP_ORDER] = slot + 1
    state[H_LIVE_ORDERS] += 1
    return slot


@njit(cache=True, inline="always")
def order_free(state, orders, slot):
    orders[slot * ORDER_STRIDE + O_ID] = 0
    orders[slot * ORDER_STRIDE + O_NEXT] = state[H_FREE_ORDER]
    state[H_FREE_ORDER] = slot
    state[H_LIVE_ORDERS] -= 1


@njit(cache=True, inline="always")
def level_alloc(state, levels, book, price):
    lv = state[H_FREE_LEVEL]
    if lv != NIL:
        state[H_FREE_LEVEL] = levels[lv * LEVEL_STRIDE + L_NEXT_FREE]
    else:
        lv = state[H_BUMP_LEVEL]
        state[H_BUMP_LEVEL] = lv + 1
    b = lv * LEVEL_STRIDE
    levels[b + L_PRICE] = price
    levels[b + L_QTY] = 0
    levels[b + L_COUNT] = 0
    levels[b + L_HEAD] = NIL
    levels[b + L_TAIL] = NIL
    levels[b + L_BOOK] = book
    return lv


@njit(cache=True, inline="always")
def level_free(state, levels, lv):
    levels[lv * LEVEL_STRIDE + L_COUNT] = 0
    levels[lv * LEVEL_STRIDE + L_NEXT_FREE] = state[H_FREE_LEVEL]
    state[H_FREE_LEVEL] = lv


@njit(cache=True, inline="always")
def link_tail(orders, levels, lv, slot):
    """Append an order to the back of a level's FIFO."""
    ob = slot * ORDER_STRIDE
    lb = lv * LEVEL_STRIDE
    tail = levels[lb + L_TAIL]
    orders[ob + O_PREV] = tail
    orders[ob + O_NEXT] = NIL
    orders[ob + O_LEVEL] = lv
    if tail != NIL:
        orders[tail * ORDER_STRIDE + O_NEXT] = slot
    else:
        levels[lb + L_HEAD] = slot
    levels[lb + L_TAIL] = slot
    levels[lb + L_COUNT] += 1
    levels[lb + L_QTY] += orders[ob + O_LEAVES]


@njit(cache=True, inline="always")
def unlink(orders, levels, lv, slot):
    """Take an order out of its level's FIFO (its leaves leave the level total)."""
    ob = slot * ORDER_STRIDE
    lb = lv * LEVEL_STRIDE
    prev = orders[ob + O_PREV]
    nxt = orders[ob + O_NEXT]
    if prev != NIL:
        orders[prev * ORDER_STRIDE + O_NEXT] = nxt
    else:
        levels[lb + L_HEAD] = nxt
    if nxt != NIL:
        orders[nxt * ORDER_STRIDE + O_PREV] = prev
    else:
        levels[lb + L_TAIL] = prev
    levels[lb + L_COUNT] -= 1
    levels[lb + L_QTY] -= orders[ob + O_LEAVES]


@njit(cache=True, inline="always")
def level_drop_if_empty(state, levels, keys, lidx, counts, max_levels, lv, side):
    """Remove an emptied level from its book side and free it."""
    lb = lv * LEVEL_STRIDE
    if levels[lb + L_COUNT] != 0:
        return
    book = levels[lb + L_BOOK]
    base = book * max_levels
    n = counts[book]
    pos = n - 1
    key = level_key(side, levels[lb + L_PRICE])
    if keys[base + pos] != key:  # not the best level: search for it
        pos = book_search(keys, base, n, key)
    book_delete(keys, lidx, base, n, pos)
    counts[book] = n - 1
    level_free(state, levels, lv)


@njit(cache=True, inline="always")
def level_for_price(state, levels, keys, lidx, counts, max_levels, book, side, price):
    """The level at `price` on a book side, created if absent (capacity checked before)."""
    base = book * max_levels
    n = counts[book]
    key = level_key(side, price)
    if n > 0 and keys[base + n - 1] == key:
        return lidx[base + n - 1]
    pos = book_search(keys, base, n, key)
    if pos >= 0:
        return lidx[base + pos]
    pos = -pos - 1
    lv = level_alloc(state, levels, book, price)
    book_insert(keys, lidx, base, n, pos, key, lv)
    counts[book] = n + 1
    return lv
