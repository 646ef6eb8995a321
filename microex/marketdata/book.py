"""Price-level books for market data: one sorted array per book side, compiled.

How it works
- A side is three int64 arrays of one capacity (`keys`, `qty`, `cnt`) and a level
  count n. Levels are sorted by key ascending with the BEST LAST: the key of a bid
  is its price, of an ask minus its price. Most changes happen near the top, so an
  insert or delete shifts only the few levels above it (the engine keeps its books
  the same way).
- `side_set` applies one level's new absolute state (qty, order count): qty 0
  removes the level, an unknown price with qty > 0 inserts it. Applying the same
  state twice is a no-op, so replaying level states is idempotent (conflation and
  resync rely on it).
- Invariants: keys[:n] strictly ascending; every level in it has qty > 0; a full
  side (n == capacity) rejects an insert (SET_FULL) and stays as it was.
Used by the stage's MarketState (state_kernels.py) and the SDK's OrderBookReplica.
The plain-Python twin of the contract is a dict {price: (qty, count)} per side
(marketdata/reference.py, client tests).
"""

from __future__ import annotations

import numpy as np
from numba import njit

SET_SAME, SET_CHANGED, SET_FULL = 0, 1, 2


@njit(cache=True, inline="always")
def side_key(side, price):
    """Sort key: best last. side 1 (buy): price; side 2 (sell): -price."""
    return price if side == 1 else -price


@njit(cache=True)
def side_find(keys, n, key):
    """Index of the first level with keys[i] >= key in keys[:n] (binary search)."""
    lo, hi = 0, n
    while lo < hi:
        mid = (lo + hi) >> 1
        if keys[mid] < key:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(cache=True)
def side_set(keys, qty, cnt, n, key, q, c):
    """Set the level `key` to (q, c); returns (new n, SET_SAME | SET_CHANGED | SET_FULL)."""
    i = side_find(keys, n, key)
    if i < n and keys[i] == key:
        if q <= 0:
            for j in range(i, n - 1):  # close the gap: levels above move down one
                keys[j] = keys[j + 1]
                qty[j] = qty[j + 1]
                cnt[j] = cnt[j + 1]
            return n - 1, SET_CHANGED
        if qty[i] == q and cnt[i] == c:
            return n, SET_SAME
        qty[i] = q
        cnt[i] = c
        return n, SET_CHANGED
    if q <= 0:
        return n, SET_SAME  # removing a level that is not there: nothing changes
    if n >= keys.shape[0]:
        return n, SET_FULL
    for j in range(n, i, -1):  # open a gap at i: levels above move up one
        keys[j] = keys[j - 1]
        qty[j] = qty[j - 1]
        cnt[j] = cnt[j - 1]
    keys[i] = key
    qty[i] = q
    cnt[i] = c
    return n + 1, SET_CHANGED


def side_levels(keys: np.ndarray, qty: np.ndarray, cnt: np.ndarray, n: int, side: int,
                depth: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(prices, qtys, counts) of the top `depth` levels (0: all), best first; copies."""
    lo = 0 if depth <= 0 else max(n - depth, 0)
    k = keys[lo:n][::-1]
    prices = k.copy() if side == 1 else -k
    return prices, qty[lo:n][::-1].copy(), cnt[lo:n][::-1].copy()
