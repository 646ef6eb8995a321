"""Order-id map: open addressing with linear probing over one int64 array.

    ids[0] entries used, ids[1] log2(capacity), then (key, value) pairs.

A key is an order id (> 0; 0 marks an empty pair). An id stays in the map for
the whole run, because SPEC.md makes an id taken by the first `new` that names
it, whatever its outcome; so there are no deletions and no tombstones. The
value is the order's pool slot while it may rest, else -1; an entry is live
only if that slot still holds the id (a freed slot has id 0), so fills and
cancels never touch the map. The kernel stops a batch when the map is half
full; the Python side then doubles it with `id_rehash`, between calls.
"""

from __future__ import annotations

import numpy as np
from numba import njit

ID_HEADER = 2


def id_map_new(capacity: int) -> np.ndarray:
    bits = capacity.bit_length() - 1
    ids = np.zeros(ID_HEADER + 2 * (1 << bits), dtype=np.int64)
    ids[1] = bits
    return ids


@njit(cache=True)
def id_find(ids, oid):
    """Position of `oid`'s pair, or of the empty pair where it would go."""
    bits = ids[1]
    mask = (1 << bits) - 1
    # Low bits first: ids that come in sequence (the usual case) land in
    # neighbouring pairs, so recent orders share cache lines; folding in the
    # high bits keeps strided or random ids from piling onto one chain.
    h = (oid ^ (oid >> bits) ^ (oid >> (2 * bits))) & mask
    while True:
        k = ids[ID_HEADER + 2 * h]
        if k == oid or k == 0:
            return h
        h = (h + 1) & mask


@njit(cache=True)
def id_rehash(old, new):
    """Copy every pair of `old` into the empty map `new` (twice the size)."""
    cap = 1 << old[1]
    for h in range(cap):
        k = old[ID_HEADER + 2 * h]
        if k != 0:
            p = id_find(new, k)
            new[ID_HEADER + 2 * p] = k
            new[ID_HEADER + 2 * p + 1] = old[ID_HEADER + 2 * h + 1]
    new[0] = old[0]
