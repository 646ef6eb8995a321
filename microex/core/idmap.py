"""Order-id map: open addressing with linear probing over one int64 array.

    ids[0] entries used, ids[1] log2(capacity), ids[2] hash multiplier,
    ids[3] unused, then (key, value) pairs.

A key is an order id (> 0; 0 marks an empty pair). An id stays in the map for
the whole run, because SPEC.md makes an id taken by the first `new` that names
it, whatever its outcome; so there are no deletions and no tombstones. The
value is the order's pool slot while it may rest, else -1; an entry is live
only if that slot still holds the id (a freed slot has id 0), so fills and
cancels never touch the map. The kernel stops a batch when the map is half
full (`id_map_full`); the Python side then doubles it between calls.

The hash keeps an id's low bits and XORs in a multiplicative hash of its high
bits: ids that come in sequence (the usual case) land in neighbouring pairs,
so recent orders share cache lines (measured: 2x the throughput of Fibonacci
hashing on core.match_mix), while strided ids still spread. The multiplier is
random per engine, so a client cannot precompute ids that pile onto one chain;
it changes where ids sit, never what the engine does.
"""

from __future__ import annotations

import secrets

import numpy as np
from numba import njit

ID_HEADER = 4


def id_map_new(capacity: int, multiplier: int | None = None) -> np.ndarray:
    bits = max(capacity, 2).bit_length() - 1
    ids = np.zeros(ID_HEADER + 2 * (1 << bits), dtype=np.int64)
    ids[1] = bits
    if multiplier is None:
        multiplier = secrets.randbits(63) | 1
    ids[2] = multiplier
    return ids


def id_map_capacity(ids: np.ndarray) -> int:
    return 1 << int(ids[1])


def id_map_full(ids: np.ndarray) -> bool:
    """The kernel's rule: it takes no command once half the pairs are used."""
    return int(ids[0]) >= id_map_capacity(ids) >> 1


def id_map_grown(ids: np.ndarray) -> np.ndarray:
    bigger = id_map_new(2 * id_map_capacity(ids), int(ids[2]))
    id_rehash(ids, bigger)
    return bigger


@njit(cache=True, inline="always")
def id_find(ids, oid):
    """Position of `oid`'s pair, or of the empty pair where it would go."""
    bits = ids[1]
    mask = (1 << bits) - 1
    # the same bits in compiled int64 (wrapping) and in plain Python (big ints)
    h = (oid ^ (((oid >> bits) * ids[2]) >> (64 - bits))) & mask
    while True:
        k = ids[ID_HEADER + 2 * h]
        if k == oid or k == 0:
            return h
        h = (h + 1) & mask


@njit(cache=True)
def id_rehash(old, new):
    """Copy every pair of `old` into the empty map `new`."""
    cap = 1 << old[1]
    for h in range(cap):
        k = old[ID_HEADER + 2 * h]
        if k != 0:
            p = id_find(new, k)
            new[ID_HEADER + 2 * p] = k
            new[ID_HEADER + 2 * p + 1] = old[ID_HEADER + 2 * h + 1]
    new[0] = old[0]
