"""Batch MACD (TA-Lib MACD): fast EMA - slow EMA, its signal EMA, and the histogram, in one pass.

How, with s = slow, f = fast, g = signal (s and f swapped if s < f), from the first non-NaN
value b:
- the slow EMA is seeded with the mean of x[b .. b+s-1]; the fast EMA is seeded with the mean
  of the LAST f of those values, x[b+s-f .. b+s-1], not the first f: TA-Lib starts both EMAs
  on the same bar, b+s-1, where the first MACD-line value is;
- each sum is accumulated from 0.0 in input order, then divided by its period;
- both EMAs then step `prev = (x - prev) * k + prev` with k = 2/(period+1) (fused, fused.py);
- the signal EMA is seeded with the mean of the first g MACD-line values, then steps the same
  way (g = 1: the signal is the line itself and the histogram is 0);
- nothing is output before b + (s-1) + (g-1) (33 for 12/26/9): the line, the signal and the
  histogram all start there, as in TA-Lib.

Invariants: the three outputs are aligned to the input, NaN exactly where TA-Lib's are;
MacdStream (streams_moving.py) produces the same bits value by value.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from microex.indicators.checks import as_series, check_period, first_valid
from microex.indicators.fused import fmadd

NAN = np.nan


@njit(cache=True, error_model="numpy")
def macd_kernel(x, fast, slow, signal, out_macd, out_signal, out_hist):
    N = x.shape[0]
    b = first_valid(x)
    line_start = b + slow - 1
    start = line_start + signal - 1
    for i in range(min(start, N)):
        out_macd[i] = NAN
        out_signal[i] = NAN
        out_hist[i] = NAN
    if start >= N:
        return
    kf = 2.0 / (fast + 1)
    ks = 2.0 / (slow + 1)
    kg = 2.0 / (signal + 1)
    slow_total = 0.0
    fast_total = 0.0
    for i in range(b, b + slow - fast):
        slow_total += x[i]
    for i in range(b + slow - fast, line_start + 1):
        fast_total += x[i]
        slow_total += x[i]
    pf = fast_total / fast
    ps = slow_total / slow
    line = pf - ps
    sig_total = 0.0
    sig_total += line
    for i in range(line_start + 1, start + 1):
        v = x[i]
        pf = fmadd(v - pf, kf, pf)
        ps = fmadd(v - ps, ks, ps)
        line = pf - ps
        sig_total += line
    sig = sig_total / signal
    out_macd[start] = line
    out_signal[start] = sig
    out_hist[start] = line - sig
    xs, om, osg, oh = x[start + 1:], out_macd[start + 1:], out_signal[start + 1:], out_hist[start + 1:]
    if signal == 1:  # two loops: a select inside would lengthen the signal's dependency chain
        for j in range(xs.shape[0]):
            v = xs[j]
            pf = fmadd(v - pf, kf, pf)
            ps = fmadd(v - ps, ks, ps)
            line = pf - ps
            om[j] = line
            osg[j] = line
            oh[j] = line - line
        return
    for j in range(xs.shape[0]):
        v = xs[j]
        pf = fmadd(v - pf, kf, pf)
        ps = fmadd(v - ps, ks, ps)
        line = pf - ps
        sig = fmadd(line - sig, kg, sig)
        om[j] = line
        osg[j] = sig
        oh[j] = line - sig


def macd_periods(fast, slow, signal) -> tuple[int, int, int]:
    fast, slow = check_period(fast, "fast"), check_period(slow, "slow")
    signal = check_period(signal, "signal")
    if slow < fast:
        fast, slow = slow, fast  # TA-Lib swaps them too
    return fast, slow, signal


def macd(x, fast: int = 12, slow: int = 26, signal: int = 9) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(macd, signal, hist) as TA-Lib's MACD: first output at index (slow-1) + (signal-1)."""
    x = as_series(x)
    fast, slow, signal = macd_periods(fast, slow, signal)
    block = np.empty((3, len(x)))  # one allocation: three separate 8 MB ones page-fault on every call
    macd_kernel(x, fast, slow, signal, block[0], block[1], block[2])
    return block[0], block[1], block[2]
