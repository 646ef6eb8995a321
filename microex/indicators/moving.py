"""Batch SMA and EMA over a float64 series, in TA-Lib's exact order of operations.

How: one pass per series with the state in locals. A series starts at its first non-NaN
value (TA-Lib's wrapper does the same), b below; everything before b + lookback is NaN.
- SMA(n), lookback n-1: a running sum, `total += x[i]; out[i] = total / n; total -= x[i-n+1]`,
  the sum of the first n-1 values accumulated from 0.0 in input order. Matching that order
  is what keeps a long series within an ulp or so of TA-Lib (its own running sum drifts; a
  fresh window sum would drift differently).
- EMA(n), lookback n-1: k = 2/(n+1); seeded with the SMA of the first n values (TA-Lib's
  default compatibility), then `prev = (x - prev) * k + prev`, fused like TA-Lib's FMA clone
  (see fused.py). At n = 1 the output is a copy of the input (TA-Lib 0.8 does the same: the
  recursion at k = 1 is not exactly the identity).

The main loops run over views that start at index 0 (`head[j]`, not `x[i]`): numba then
knows the index is not negative and drops its wraparound code, which is most of the loop.

Invariants: outputs are aligned to the input; out[i] is NaN exactly where TA-Lib's is;
the streaming forms (streams_moving.py) produce the same bits value by value.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from microex.indicators.checks import as_series, check_period, first_valid
from microex.indicators.fused import fmadd

NAN = np.nan


@njit(cache=True, error_model="numpy")
def sma_kernel(x, n, out):
    N = x.shape[0]
    b = first_valid(x)
    start = b + n - 1
    for i in range(min(start, N)):
        out[i] = NAN
    if start >= N:
        return
    total = 0.0
    for i in range(b, start):
        total += x[i]
    head, tail, o = x[start:], x[b:N - n + 1], out[start:]  # views indexed from 0: no wraparound code
    for j in range(head.shape[0]):
        total += head[j]
        o[j] = total / n
        total -= tail[j]


@njit(cache=True, error_model="numpy")
def ema_kernel(x, n, out):
    N = x.shape[0]
    b = first_valid(x)
    start = b + n - 1
    for i in range(min(start, N)):
        out[i] = NAN
    if start >= N:
        return
    if n == 1:
        for i in range(start, N):
            out[i] = x[i]
        return
    k = 2.0 / (n + 1)
    total = 0.0
    for i in range(b, start + 1):
        total += x[i]
    prev = total / n
    out[start] = prev
    xs, o = x[start + 1:], out[start + 1:]
    for j in range(xs.shape[0]):
        prev = fmadd(xs[j] - prev, k, prev)
        o[j] = prev


def sma(x, n: int = 30) -> np.ndarray:
    """Simple moving average over the last n values (TA-Lib SMA): NaN for the first n-1."""
    x = as_series(x)
    n = check_period(n)
    out = np.empty_like(x)
    sma_kernel(x, n, out)
    return out


def ema(x, n: int = 30) -> np.ndarray:
    """Exponential moving average, k = 2/(n+1), seeded by the SMA of the first n values (TA-Lib EMA)."""
    x = as_series(x)
    n = check_period(n)
    out = np.empty_like(x)
    ema_kernel(x, n, out)
    return out
