"""Batch ATR and Bollinger bands, in TA-Lib 0.8's exact order of operations.

ATR(n), lookback n, from the first bar b where high, low and close are all non-NaN:
- true range of bar i >= b+1: start from high - low, replace it by |close[i-1] - high| then by
  |close[i-1] - low| when larger (TA-Lib's TRANGE, in that order);
- seed: the mean of the first n true ranges (bars b+1 .. b+n), summed from 0.0 in order;
  the first ATR is at b + n;
- then Wilder's step as TA-Lib 0.8 spells it: wb = (n-1)/n, wa = 1 - wb,
  `atr = wb * atr + wa * tr` with the first product fused (fused.py).

Bollinger(n, k) = TA-Lib BBANDS(n, k, k, SMA), lookback n-1: the middle band is the SMA
(running sum, as moving.py); the deviation is the population one (ddof 0), computed as
TA-Lib 0.8 does, on data shifted by `shift` (cancellation-free): running sums v1 = sum(x -
shift), v2 = sum((x - shift)^2), variance = v2/n - (v1/n)^2. The shift starts at the first
value; it is reset to the window mean, and both sums recomputed over the window, every
32*n bars and whenever cancellation threatens (variance < 1e-6 * v2/n, or a leaving value's
squared deviation > 1e6 * v2); after such a reseed a variance below 1e-12 * v2/n is 0.
Bands: middle +- sqrt(variance) * k.

Invariants: outputs aligned to the input, NaN exactly where TA-Lib's are; AtrStream and
BollingerStream (streams_volatility.py) produce the same bits value by value.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from microex.indicators.checks import as_series, check_finite, check_period, check_same_length, first_valid
from microex.indicators.fused import fmadd

NAN = np.nan
RESEED_BARS = 32  # times n
RESEED_VARIANCE = 1e-6
RESEED_SPIKE = 1e6
VARIANCE_FLOOR = 1e-12


@njit(cache=True, inline="always")
def true_range(high, low, prev_close):
    greatest = high - low
    v = abs(prev_close - high)
    if v > greatest:
        greatest = v
    v = abs(prev_close - low)
    if v > greatest:
        greatest = v
    return greatest


@njit(cache=True, inline="always")
def first_valid3(a, b, c):
    i = 0
    while i < a.shape[0] and (np.isnan(a[i]) or np.isnan(b[i]) or np.isnan(c[i])):
        i += 1
    return i


@njit(cache=True, error_model="numpy")
def atr_kernel(high, low, close, n, out):
    N = close.shape[0]
    b = first_valid3(high, low, close)
    start = b + n
    for i in range(min(start, N)):
        out[i] = NAN
    if start >= N:
        return
    wb = (n - 1) / n
    wa = 1.0 - wb
    total = 0.0
    for i in range(b + 1, start + 1):
        total += true_range(high[i], low[i], close[i - 1])
    atr = total / n
    out[start] = atr
    h, lo, pc, o = high[start + 1:], low[start + 1:], close[start:N - 1], out[start + 1:]
    for j in range(h.shape[0]):
        atr = fmadd(wb, atr, wa * true_range(h[j], lo[j], pc[j]))
        o[j] = atr


@njit(cache=True, inline="always")
def bb_reseed(buf, row, first, n, inv):
    """(shift, v1, v2, variance) recomputed over buf[row, first], buf[row, first+1], ... (n values,
    columns modulo buf.shape[1]: a series as one row, or a stream's ring), then with the first
    of them, the value leaving the window, taken out of the sums."""
    m = buf.shape[1]
    total = 0.0
    for j in range(n):
        total += buf[row, (first + j) % m]
    shift = total * inv
    v1 = 0.0
    v2 = 0.0
    for j in range(n):
        t = buf[row, (first + j) % m] - shift
        v1 += t
        t *= t
        v2 += t
    m1 = v1 * inv
    variance = v2 * inv - m1 * m1
    if variance < VARIANCE_FLOOR * (v2 * inv):
        variance = 0.0
    t = buf[row, first % m] - shift
    v1 -= t
    t *= t
    v2 -= t
    return shift, v1, v2, variance


@njit(cache=True, error_model="numpy")
def bollinger_kernel(x, n, k, upper, middle, lower):
    N = x.shape[0]
    b = first_valid(x)
    start = b + n - 1
    for i in range(min(start, N)):
        upper[i] = NAN
        middle[i] = NAN
        lower[i] = NAN
    if start >= N:
        return
    inv = 1.0 / n
    shift = x[b]
    ma = 0.0
    v1 = 0.0
    v2 = 0.0
    for i in range(b, start):
        ma += x[i]
        t = x[i] - shift
        v1 += t
        t *= t
        v2 += t
    bars = RESEED_BARS * n
    series = x.reshape((1, N))
    head, tail = x[start:], x[b:N - n + 1]
    up, md, lw = upper[start:], middle[start:], lower[start:]
    for j in range(head.shape[0]):
        v = head[j]
        ma += v
        t = v - shift
        v1 += t
        t *= t
        v2 += t
        m1 = v1 * inv
        variance = v2 * inv - m1 * m1
        mid = ma / n
        old = tail[j]
        ma -= old
        t = old - shift
        v1 -= t
        t *= t
        v2 -= t
        bars -= 1
        if variance < RESEED_VARIANCE * (v2 * inv) or t > RESEED_SPIKE * v2 or bars <= 0:
            bars = RESEED_BARS * n
            shift, v1, v2, variance = bb_reseed(series, 0, b + j, n, inv)  # the window x[b+j .. start+j]
        sd = np.sqrt(variance) if variance != 0.0 else 0.0
        w = sd * k
        up[j] = mid + w
        md[j] = mid
        lw[j] = mid - w


def atr(high, low, close, n: int = 14) -> np.ndarray:
    """Average true range (TA-Lib ATR): NaN for the first n bars, then Wilder-smoothed true range."""
    high, low, close = as_series(high, "high"), as_series(low, "low"), as_series(close, "close")
    check_same_length(high=high, low=low, close=close)
    n = check_period(n)
    out = np.empty_like(close)
    atr_kernel(high, low, close, n, out)
    return out


def bollinger(x, n: int = 20, k: float = 2.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(upper, middle, lower) as TA-Lib BBANDS(n, nbdevup=k, nbdevdn=k, matype=SMA)."""
    x = as_series(x)
    n = check_period(n)
    k = check_finite(k, "k")
    block = np.empty((3, len(x)))  # one allocation: three separate 8 MB ones page-fault on every call
    bollinger_kernel(x, n, k, block[0], block[1], block[2])
    return block[0], block[1], block[2]
