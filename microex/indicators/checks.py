"""Argument checks shared by the batch functions and the streams: every rejection is a ValueError.

Invariants: a series comes back as a 1-D C-contiguous float64 array (a copy only when the
input is not one already); a period is a Python int >= 1; arrays that go together have the
same length. The kernels behind the public functions assume all three and check nothing.
"""

from __future__ import annotations

import operator

import numpy as np
from numba import njit


def as_series(x, name: str = "x") -> np.ndarray:
    a = np.ascontiguousarray(x, dtype=np.float64)
    if a.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array, got shape {a.shape}")
    return a


def as_ids(ids, name: str = "instrument_ids") -> np.ndarray:
    a = np.ascontiguousarray(ids)
    if a.dtype.kind not in "iu" and not (a.size == 0 and a.dtype.kind == "f"):
        raise ValueError(f"{name} must be integers, got dtype {a.dtype}")
    a = a.astype(np.int64, copy=False)
    if a.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array, got shape {a.shape}")
    return a


def check_period(n, name: str = "n") -> int:
    try:
        v = operator.index(n)
    except TypeError:
        raise ValueError(f"{name} must be an integer >= 1, got {n!r}") from None
    if v < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {v}")
    return v


def check_finite(k, name: str) -> float:
    try:
        v = float(k)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {k!r}") from None
    if not np.isfinite(v):
        raise ValueError(f"{name} must be finite, got {v}")
    return v


def check_same_length(**arrays: np.ndarray) -> int:
    lengths = {name: len(a) for name, a in arrays.items()}
    if len(set(lengths.values())) > 1:
        shown = ", ".join(f"{k}={v}" for k, v in lengths.items())
        raise ValueError(f"{' and '.join(lengths)} must have the same length, got {shown}")
    return next(iter(lengths.values()))


@njit(cache=True)
def first_bad_id(ids, n_instruments):
    """Index of the first id outside [0, n_instruments), or -1: a stream kernel checks all before it updates any."""
    for j in range(ids.shape[0]):
        if ids[j] < 0 or ids[j] >= n_instruments:
            return j
    return -1


@njit(cache=True, inline="always")
def first_valid(x):
    """Index of the first non-NaN value (len(x) if none): TA-Lib's wrapper starts every series there."""
    i = 0
    while i < x.shape[0] and np.isnan(x[i]):
        i += 1
    return i
