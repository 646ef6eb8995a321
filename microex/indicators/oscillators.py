"""Batch RSI with Wilder's smoothing, as TA-Lib 0.8's RSI computes it.

How, from the first non-NaN value b (lookback n, so the first output is at b + n, TA-Lib's
default unstable period of 0):
- each change d = x[i] - x[i-1] splits into gain = d if d > 0 else 0 and loss = gain - d
  (both added every bar, no branch on the sign: TA-Lib's formulation, bit for bit);
- the first average gain/loss is the sum of the first n gains/losses times 1/n;
- then `avg = (avg * (n-1) + today) * (1/n)` for each;
- RSI = 100 * gain / (gain + loss); when gain + loss is exactly 0 (a flat series) it is 0,
  TA-Lib 0.8.1's answer (older TA-Lib tested against 1e-8 instead, later ones answer 50).

Invariants: output aligned to the input, NaN exactly where TA-Lib's is; RsiStream
(streams_oscillators.py) produces the same bits value by value.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from microex.indicators.checks import as_series, check_period, first_valid

NAN = np.nan


@njit(cache=True, inline="always")
def rsi_value(gain, loss):
    total = gain + loss
    if total > 0.0:
        return 100.0 * (gain / total)
    return 0.0


@njit(cache=True, error_model="numpy")
def rsi_kernel(x, n, out):
    N = x.shape[0]
    b = first_valid(x)
    start = b + n
    for i in range(min(start, N)):
        out[i] = NAN
    if start >= N:
        return
    inv = 1.0 / n
    keep = float(n - 1)
    gain = 0.0
    loss = 0.0
    prev = x[b]
    for i in range(b + 1, start + 1):
        d = x[i] - prev
        prev = x[i]
        up = d if d > 0.0 else 0.0
        gain += up
        loss += up - d
    loss *= inv
    gain *= inv
    out[start] = rsi_value(gain, loss)
    xs, o = x[start + 1:], out[start + 1:]
    for j in range(xs.shape[0]):
        v = xs[j]
        d = v - prev
        prev = v
        loss *= keep
        gain *= keep
        up = d if d > 0.0 else 0.0
        gain += up
        loss += up - d
        loss *= inv
        gain *= inv
        o[j] = rsi_value(gain, loss)


def rsi(x, n: int = 14) -> np.ndarray:
    """Relative strength index (TA-Lib RSI): NaN for the first n values, then 0..100."""
    x = as_series(x)
    n = check_period(n)
    out = np.empty_like(x)
    rsi_kernel(x, n, out)
    return out
