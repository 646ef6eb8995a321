"""OrderBookReplica: the SDK's local copy of one instrument's book, kept from the market-data feed.

How it works
- The book is the stage's layout (marketdata/book.py): per side a sorted level array,
  best last, compiled updates; it grows (doubles) when a side fills up.
- `md_seq` is the seq of the last update applied: the replica equals the venue's book
  at md_seq. `load_snapshot` replaces everything with a FULL snapshot's levels at its
  seq; `apply_increments(records, start)` applies MD_UPDATE increments in one compiled
  pass: seq == md_seq + 1 is applied (a LEVEL sets its level, a TRADE only advances
  md_seq), seq <= md_seq is a duplicate or old and skipped, seq > md_seq + 1 is a gap:
  the pass stops there and says where. `apply_levels` applies level states whatever
  their seqs (a conflated bundle: absolute states are idempotent).
- Invariant: after any sequence of calls, the levels are exactly the snapshot's plus
  the increments applied on it in seq order (tests compare with the venue's book).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from microex.core.records import MD_UPDATE, MdKind
from microex.marketdata.book import SET_FULL, side_key, side_levels, side_set

K_LEVEL = int(MdKind.LEVEL)
R_STOP, R_SEQ, R_STATUS = 0, 1, 2  # res fields: where the pass stopped, md_seq after it, why
STOP_END, STOP_GAP, STOP_FULL = 0, 1, 2


@njit(cache=True)
def apply_increments_kernel(keys, qty, cnt, nlev, recs, start, seq, check_seq, applied, res):
    """Apply recs[start:] in order from md_seq `seq`; applied[k] = 1 for each record applied."""
    status = STOP_END
    k = start
    n = recs.shape[0]
    while k < n:
        r = recs[k]
        s = r["md_seq"]
        if check_seq:
            if s <= seq:
                applied[k] = 0
                k += 1
                continue
            if s != seq + 1:
                status = STOP_GAP
                break
        if r["kind"] == K_LEVEL and 1 <= r["side"] <= 2:
            side = r["side"] - 1
            m, st = side_set(keys[side], qty[side], cnt[side], nlev[side], side_key(r["side"], r["price_ticks"]),
                             r["qty_lots"], r["count"])
            if st == SET_FULL:
                status = STOP_FULL
                break
            nlev[side] = m
        applied[k] = 1
        if s > seq:
            seq = s
        k += 1
    res[R_STOP] = k
    res[R_SEQ] = seq
    res[R_STATUS] = status


_warm = False


def warm_up() -> None:
    """Compile (or load from numba's cache) the replica kernel now, not on the first increment:
    MarketDataClient.connect calls it so the pause (up to a second) happens before the stream."""
    global _warm
    if not _warm:
        rec = np.zeros(1, MD_UPDATE)
        rec["md_seq"], rec["kind"], rec["side"], rec["price_ticks"], rec["qty_lots"] = 1, K_LEVEL, 1, 1, 1
        OrderBookReplica(0).apply_increments(rec)
        OrderBookReplica(0).apply_levels(rec)
        _warm = True


class OrderBookReplica:
    """One instrument's book as the feed has described it so far (read it in on_book callbacks)."""

    def __init__(self, instrument: int, capacity: int = 256) -> None:
        self.instrument = instrument
        self.md_seq = 0
        self.valid = False  # True once a FULL snapshot was loaded (and no gap made it stale)
        self._alloc(capacity)
        self._res = np.zeros(3, np.int64)
        self._applied = np.zeros(64, np.uint8)

    def _alloc(self, capacity: int) -> None:
        self.keys = np.zeros((2, capacity), np.int64)
        self.qty = np.zeros((2, capacity), np.int64)
        self.cnt = np.zeros((2, capacity), np.int64)
        self.nlev = np.zeros(2, np.int64)

    def _grow(self) -> None:
        old = (self.keys, self.qty, self.cnt, self.nlev.copy())
        self._alloc(2 * self.keys.shape[1])
        for new, prev in zip((self.keys, self.qty, self.cnt), old[:3]):
            new[:, : prev.shape[1]] = prev
        self.nlev[:] = old[3]

    # -- reading -----------------------------------------------------------------------------

    def levels(self, side: int, depth: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(prices, qtys, order counts) of one side (1 bids, 2 asks), best first; depth 0: all."""
        s = side - 1
        return side_levels(self.keys[s], self.qty[s], self.cnt[s], int(self.nlev[s]), side, depth)

    def depth(self, side: int, levels: int = 10) -> list[tuple[int, int, int]]:
        """Like MatchingEngine.depth: [(price, qty, orders)], best first."""
        p, q, c = self.levels(side, levels)
        return list(zip(p.tolist(), q.tolist(), c.tolist()))

    def bids(self, levels: int = 10) -> list[tuple[int, int, int]]:
        return self.depth(1, levels)

    def asks(self, levels: int = 10) -> list[tuple[int, int, int]]:
        return self.depth(2, levels)

    def best_bid(self) -> tuple[int, int]:
        """(price, qty) of the best bid; (0, 0) when there is none."""
        n = int(self.nlev[0])
        return (int(self.keys[0, n - 1]), int(self.qty[0, n - 1])) if n else (0, 0)

    def best_ask(self) -> tuple[int, int]:
        n = int(self.nlev[1])
        return (-int(self.keys[1, n - 1]), int(self.qty[1, n - 1])) if n else (0, 0)

    # -- updating ----------------------------------------------------------------------------

    def clear(self) -> None:
        self.nlev[:] = 0

    def load_snapshot(self, levels: np.ndarray, md_seq: int) -> None:
        """Replace the book with a FULL snapshot's SNAPSHOT_LEVEL records, at md_seq."""
        self.clear()
        self.apply_levels(levels)
        self.md_seq = md_seq
        self.valid = True

    def apply_levels(self, levels: np.ndarray) -> None:
        """Set each level's absolute state, ignoring seqs (snapshots, conflated bundles)."""
        self._run(levels, 0, check_seq=False)

    def apply_increments(self, recs: np.ndarray, start: int = 0) -> tuple[int, bool, np.ndarray]:
        """Apply recs[start:] (MD_UPDATE, this instrument) in seq order from md_seq.

        Returns (stop, gap, applied): the index where it stopped (len(recs) unless
        gap), whether a gap stopped it, and a bool mask over recs[start:stop] of the
        records applied (duplicates and old seqs are not)."""
        stop, status = self._run(recs, start, check_seq=True)
        return stop, status == STOP_GAP, self._applied[start:stop].view(bool)

    def _run(self, recs: np.ndarray, start: int, check_seq: bool) -> tuple[int, int]:
        if recs.dtype != MD_UPDATE:
            raise TypeError(f"records must be MD_UPDATE, not {recs.dtype}")
        if len(recs) > len(self._applied):
            self._applied = np.zeros(max(len(recs), 2 * len(self._applied)), np.uint8)
        res = self._res
        while True:
            apply_increments_kernel(self.keys, self.qty, self.cnt, self.nlev, recs, start, self.md_seq, check_seq,
                                    self._applied, res)
            if check_seq:
                self.md_seq = int(res[R_SEQ])
            if res[R_STATUS] != STOP_FULL:
                return int(res[R_STOP]), int(res[R_STATUS])
            self._grow()
            start = int(res[R_STOP])
