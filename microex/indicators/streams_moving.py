"""Streaming SMA, EMA and MACD for many instruments at once (the shape is in stream_base.py).

Each kernel checks the ids, then runs moving.py / macd_batch.py's loop body once per update,
on the row of the instrument named, in the same order of operations:
- SMA: a ring of the last n values, `pos` the slot of the next one; the running sum adds the
  new value, the output is sum / n, then the value n-1 back leaves the sum.
- EMA: state[:, 0] the seed sum of the first n values, state[:, 1] the EMA.
- MACD: state columns: slow sum, fast sum (the fast one only over the last `fast` of the
  first `slow` values), fast EMA, slow EMA, then the signal seed sum / the signal EMA.
`count[i]` is the index of the instrument's next value in its own series, so the warm-up
branches compare it with the same bounds as the batch loops.

Invariants: see stream_base.py: the k-th output of an instrument is the batch output at
index k of its own series, bit for bit.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from microex.indicators.checks import check_period, first_bad_id
from microex.indicators.fused import fmadd
from microex.indicators.macd_batch import macd_periods
from microex.indicators.stream_base import Stream

NAN = np.nan


@njit(cache=True, error_model="numpy")
def sma_stream_kernel(count, pos, total, ring, ids, xs, n, out):
    bad = first_bad_id(ids, count.shape[0])
    if bad >= 0:
        return bad
    for j in range(ids.shape[0]):
        i = ids[j]
        x = xs[j]
        c = count[i]
        if c == 0 and np.isnan(x):
            out[j] = NAN  # leading NaNs do not start the series
            continue
        count[i] = c + 1
        p = pos[i]
        ring[i, p] = x
        p += 1
        if p == n:
            p = 0
        pos[i] = p  # now the slot of the oldest value in the window
        s = total[i] + x
        if c < n - 1:
            total[i] = s
            out[j] = NAN
        else:
            total[i] = s - ring[i, p]
            out[j] = s / n
    return -1


@njit(cache=True, error_model="numpy")
def ema_stream_kernel(count, state, ids, xs, n, out):
    bad = first_bad_id(ids, count.shape[0])
    if bad >= 0:
        return bad
    k = 2.0 / (n + 1)
    for j in range(ids.shape[0]):
        i = ids[j]
        x = xs[j]
        c = count[i]
        if c == 0 and np.isnan(x):
            out[j] = NAN
            continue
        count[i] = c + 1
        if n == 1:
            out[j] = x
        elif c >= n:
            prev = state[i, 1]
            prev = fmadd(x - prev, k, prev)
            state[i, 1] = prev
            out[j] = prev
        else:
            s = state[i, 0] + x
            state[i, 0] = s
            if c < n - 1:
                out[j] = NAN
            else:
                prev = s / n
                state[i, 1] = prev
                out[j] = prev
    return -1


@njit(cache=True, error_model="numpy")
def macd_stream_kernel(count, state, ids, xs, fast, slow, signal, out_macd, out_signal, out_hist):
    bad = first_bad_id(ids, count.shape[0])
    if bad >= 0:
        return bad
    kf = 2.0 / (fast + 1)
    ks = 2.0 / (slow + 1)
    kg = 2.0 / (signal + 1)
    line_start = slow - 1
    start = line_start + signal - 1
    for j in range(ids.shape[0]):
        i = ids[j]
        x = xs[j]
        c = count[i]
        if c == 0 and np.isnan(x):
            out_macd[j] = NAN
            out_signal[j] = NAN
            out_hist[j] = NAN
            continue
        count[i] = c + 1
        if c > line_start:
            pf = fmadd(x - state[i, 2], kf, state[i, 2])
            ps = fmadd(x - state[i, 3], ks, state[i, 3])
            line = pf - ps
            sig = state[i, 4]
            if c <= start:
                sig = sig + line  # still summing the signal's seed
            elif signal == 1:
                sig = line
            else:
                sig = fmadd(line - sig, kg, sig)
        else:
            state[i, 0] += x
            if c >= slow - fast:
                state[i, 1] += x
            if c < line_start:
                out_macd[j] = NAN
                out_signal[j] = NAN
                out_hist[j] = NAN
                continue
            pf = state[i, 1] / fast
            ps = state[i, 0] / slow
            line = pf - ps
            sig = 0.0 + line
        state[i, 2] = pf
        state[i, 3] = ps
        if c < start:
            state[i, 4] = sig
            out_macd[j] = NAN
            out_signal[j] = NAN
            out_hist[j] = NAN
            continue
        if c == start:
            sig = sig / signal
        state[i, 4] = sig
        out_macd[j] = line
        out_signal[j] = sig
        out_hist[j] = line - sig
    return -1


class SmaStream(Stream):
    """SMA(n) for n_instruments instruments: update(ids, values) -> one output per update."""

    def __init__(self, n_instruments: int, n: int = 30):
        super().__init__(n_instruments)
        self.n = check_period(n)
        self.pos = np.zeros(self.n_instruments, np.int64)
        self.total = np.zeros(self.n_instruments)
        self.ring = np.zeros((self.n_instruments, self.n))
        self._arrays += [self.pos, self.total, self.ring]

    def _run(self, ids, inputs, outs) -> int:
        return sma_stream_kernel(self.count, self.pos, self.total, self.ring, ids, inputs[0], self.n, outs[0])


class EmaStream(Stream):
    """EMA(n), TA-Lib's seed, for n_instruments instruments: update(ids, values) -> outputs."""

    def __init__(self, n_instruments: int, n: int = 30):
        super().__init__(n_instruments)
        self.n = check_period(n)
        self.state = np.zeros((self.n_instruments, 2))
        self._arrays.append(self.state)

    def _run(self, ids, inputs, outs) -> int:
        return ema_stream_kernel(self.count, self.state, ids, inputs[0], self.n, outs[0])


class MacdStream(Stream):
    """MACD(fast, slow, signal) for n_instruments instruments: update(ids, values) -> (macd, signal, hist)."""

    n_outputs = 3

    def __init__(self, n_instruments: int, fast: int = 12, slow: int = 26, signal: int = 9):
        super().__init__(n_instruments)
        self.fast, self.slow, self.signal = macd_periods(fast, slow, signal)
        self.state = np.zeros((self.n_instruments, 5))
        self._arrays.append(self.state)

    def _run(self, ids, inputs, outs) -> int:
        return macd_stream_kernel(self.count, self.state, ids, inputs[0], self.fast, self.slow, self.signal, *outs)
