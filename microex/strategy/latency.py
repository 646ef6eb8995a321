"""Latency histograms per strategy: log-linear buckets, p50 to p99.9 from counts.

How it works. `record(slot, ns)` appends to two flat buffers (cheap on the hot
path: two list-like appends); every FLUSH samples, and whenever counts are
read, one numba kernel adds the buffered samples into a (slots, BUCKETS)
uint32 count array. Buckets are log-linear: values below 32 ns have their own
bucket, then every power of two is split into 32 equal buckets, so a bucket's
width is at most 1/32 of its lower bound. A percentile is the midpoint of the
bucket holding that rank: relative error at most 1/64 (~1.6%). Values are
clamped to [0, 2^40) ns (18 minutes). With keep_raw=True the flushed samples
are also kept (benchmarks compute exact percentiles from them).
"""

from __future__ import annotations

from array import array

import numpy as np
from numba import njit

SUB_BITS = 5
SUB = 1 << SUB_BITS  # buckets per power of two
MAX_BITS = 40
BUCKETS = (MAX_BITS - SUB_BITS + 1) * SUB
FLUSH = 1 << 16
PERCENTILES = (50.0, 90.0, 99.0, 99.9)


@njit(cache=True, inline="always")
def bucket_of(v):
    if v < SUB:
        return v if v > 0 else 0
    if v >= (1 << MAX_BITS):
        v = (1 << MAX_BITS) - 1
    shift = 0
    x = v >> SUB_BITS
    while x:
        x >>= 1
        shift += 1
    shift -= 1  # v >> shift is in [SUB, 2*SUB)
    return (shift + 1) * SUB + (v >> shift) - SUB


@njit(cache=True)
def _add(counts, slots, values):
    for i in range(slots.shape[0]):
        counts[slots[i], bucket_of(values[i])] += 1


def bucket_bounds(idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[lower, upper] ns of buckets (inclusive)."""
    idx = np.asarray(idx, dtype=np.int64)
    shift = np.maximum(idx // SUB - 1, 0)
    m = np.where(idx < SUB, idx, idx % SUB + SUB)
    lower = m << shift
    upper = np.where(idx < SUB, idx, ((m + 1) << shift) - 1)
    return lower, upper


def percentiles_of(counts: np.ndarray, pcts=PERCENTILES) -> dict[str, float]:
    """{"p50_ns": ..., ...} from one row of bucket counts (empty dict if no samples)."""
    total = int(counts.sum())
    if total == 0:
        return {}
    cum = np.cumsum(counts, dtype=np.int64)
    out = {}
    for p in pcts:
        rank = max(1, int(np.ceil(p / 100.0 * total)))
        idx = int(np.searchsorted(cum, rank))
        lo, hi = bucket_bounds(np.array([idx]))
        out["p" + format(p, "g").replace(".", "") + "_ns"] = float(lo[0] + hi[0]) / 2
    return out


class LatencyRecorder:
    """One histogram per slot (strategy index); slots grow with ensure()."""

    def __init__(self, slots: int = 16, keep_raw: bool = False) -> None:
        self.counts = np.zeros((max(1, slots), BUCKETS), np.uint32)
        self._slots = array("q")
        self._values = array("q")
        self.keep_raw = keep_raw
        self.raw: list[np.ndarray] = []  # flushed values (keep_raw only), in record order
        self.raw_slots: list[np.ndarray] = []

    def ensure(self, slots: int) -> None:
        if slots > len(self.counts):
            self.flush()
            grown = np.zeros((max(slots, 2 * len(self.counts)), BUCKETS), np.uint32)
            grown[: len(self.counts)] = self.counts
            self.counts = grown

    def record(self, slot: int, ns: int) -> None:
        self._slots.append(slot)
        self._values.append(ns)
        if len(self._values) >= FLUSH:
            self.flush()

    def flush(self) -> None:
        if not self._values:
            return
        slots = np.frombuffer(self._slots, dtype=np.int64).copy()
        values = np.frombuffer(self._values, dtype=np.int64).copy()
        self._slots = array("q")
        self._values = array("q")
        _add(self.counts, slots, values)
        if self.keep_raw:
            self.raw.append(values)
            self.raw_slots.append(slots)

    def take_raw(self) -> np.ndarray:
        """Every value flushed since the last take_raw (keep_raw=True), in record order."""
        self.flush()
        out = np.concatenate(self.raw) if self.raw else np.zeros(0, np.int64)
        self.raw, self.raw_slots = [], []
        return out

    def samples(self, slot: int | None = None) -> int:
        self.flush()
        return int(self.counts.sum() if slot is None else self.counts[slot].sum())

    def percentiles(self, slot: int | None = None, pcts=PERCENTILES) -> dict[str, float]:
        """Percentiles of one slot, or of all slots together (slot None)."""
        self.flush()
        row = self.counts.sum(axis=0, dtype=np.int64) if slot is None else self.counts[slot]
        return percentiles_of(row, pcts)
