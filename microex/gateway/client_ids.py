"""ClientIdMap: (session index, client order id) -> engine order id, for every order a gateway sent.

How it works
- One table per gateway, open addressing with linear probing over one int64
  array: `t[0]` entries used, `t[1]` log2(capacity), `t[2]` the hash multiplier,
  then (client id, session index + 1, engine id) triples. A triple whose second
  word is 0 is empty, so every u64 client id (0 included) can be a key; client
  ids are kept as their int64 bit pattern.
- Client ids are the clients' choice: the hash is a multiply by a random odd
  multiplier per gateway, so no client can precompute ids that pile onto one chain.
- No deletions (a client id stays taken for the session's whole life, whatever
  became of its order), so no tombstones. The compiled paths never grow the table:
  the caller makes room first (`ensure(n)`: at most half full after n more), so a
  table sized at start for the day's orders (`capacity`) never rehashes on the
  order path; past it, it doubles (one rehash, logged by the caller).
Why not numba's typed Dict per session (what it replaces): a dict resizes by itself
at 2/3 full, rehashing every id of the session inside an order's read: milliseconds
with the gateway stopped, every time a session's order count passes a power of two,
and it cannot be sized in advance.
"""

from __future__ import annotations

import secrets

import numpy as np
from numba import njit

HEADER = 4
_W = 3  # words per entry


def table_new(capacity: int, multiplier: int | None = None) -> np.ndarray:
    """An empty table of at least `capacity` entries (a power of two), every page touched now
    rather than on the order path."""
    bits = max(int(capacity) - 1, 1).bit_length()
    t = np.empty(HEADER + _W * (1 << bits), dtype=np.int64)
    t.fill(0)
    t[1] = bits
    t[2] = (secrets.randbits(63) | 1) if multiplier is None else multiplier
    return t


def capacity(t: np.ndarray) -> int:
    return 1 << int(t[1])


@njit(cache=True, inline="always")
def _find(t, sidx, cid):
    """Position (in entries) of (sidx, cid), or of the empty entry where it would go."""
    bits = t[1]
    mask = (np.int64(1) << bits) - 1
    h = np.int64((np.uint64(cid) * np.uint64(t[2]) + np.uint64(sidx) * np.uint64(0x9E3779B97F4A7C15))
                 >> np.uint64(64 - bits)) & mask
    s1 = sidx + 1
    while True:
        p = HEADER + _W * h
        tag = t[p + 1]
        if tag == 0 or (tag == s1 and t[p] == cid):
            return p
        h = (h + 1) & mask


@njit(cache=True, inline="always")
def get(t, sidx, cid):
    """The engine id of session sidx's client id cid (int64 bit pattern), or 0."""
    p = _find(t, sidx, cid)
    return t[p + 2] if t[p + 1] != 0 else np.int64(0)


@njit(cache=True, inline="always")
def put(t, sidx, cid, eid) -> None:
    """Map (sidx, cid) to eid; the key must be new and the table must have room (ensure)."""
    p = _find(t, sidx, cid)
    t[p] = cid
    t[p + 1] = sidx + 1
    t[p + 2] = eid
    t[0] += 1


@njit(cache=True)
def _rehash(old, new) -> None:
    for h in range(np.int64(1) << old[1]):
        p = HEADER + _W * h
        if old[p + 1] != 0:
            put(new, old[p + 1] - 1, old[p], old[p + 2])


class ClientIdMap:
    """The table and its growth; kernels take `table` (re-read it after `ensure`)."""

    def __init__(self, capacity_hint: int = 1 << 12) -> None:
        self.table = table_new(2 * max(int(capacity_hint), 1))  # at most half full: short probe runs

    def __len__(self) -> int:
        return int(self.table[0])

    def room(self) -> int:
        """Entries that can still be put before the table is more than half full."""
        return capacity(self.table) // 2 - int(self.table[0])

    def ensure(self, n: int) -> bool:
        """Room for n more entries at most half full; True if the table had to double for it."""
        t = self.table
        if 2 * (int(t[0]) + n) <= capacity(t):
            return False
        cap = capacity(t)
        while 2 * (int(t[0]) + n) > cap:
            cap *= 2
        bigger = table_new(cap, int(t[2]))
        _rehash(t, bigger)
        self.table = bigger
        return True

    def get(self, sidx: int, cid: int) -> int:
        return int(get(self.table, sidx, np.uint64(cid).astype(np.int64)))
