"""Byte-exact operations on arrays of padded records (the MD_* records go to the wire as they are).

Why: numpy copies a structured dtype with padding field by field, so `copy()`, fancy
and boolean indexing leave the padding bytes uninitialised (garbage on the wire), and
`np.concatenate` even returns a packed dtype of another itemsize. Going through a
same-size void view makes each of these one raw memory copy of whole records.
Invariant: the result has the input's dtype and exactly its bytes.
"""

from __future__ import annotations

import functools

import numpy as np


@functools.lru_cache(maxsize=64)
def _void(dtype: np.dtype) -> np.dtype:  # cached: made per call it cost about 1 us, several times a batch
    return np.dtype((np.void, dtype.itemsize))


def take(recs: np.ndarray, index) -> np.ndarray:
    """recs[index] (a mask, indices or a slice) as a byte-exact copy."""
    return recs.view(_void(recs.dtype))[index].view(recs.dtype)


def concat(parts: list[np.ndarray], dtype: np.dtype) -> np.ndarray:
    """The arrays one after the other (all of `dtype`), byte-exact; an empty array of dtype if none."""
    if not parts:
        return np.zeros(0, dtype)
    v = _void(dtype)
    return np.concatenate([p.view(v) for p in parts]).view(dtype)


def copy(recs: np.ndarray) -> np.ndarray:
    """A byte-exact copy (recs may be a view of a buffer that is about to be reused)."""
    return recs.view(_void(recs.dtype)).copy().view(recs.dtype)


def put(dst: np.ndarray, at: int, src: np.ndarray) -> int:
    """dst[at : at + len(src)] = src, byte-exact (same dtype); returns at + len(src)."""
    v = _void(dst.dtype)
    end = at + len(src)
    dst.view(v)[at:end] = src.view(v)
    return end
