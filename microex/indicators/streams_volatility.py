"""Streaming ATR and Bollinger bands for many instruments at once (the shape is in stream_base.py).

ATR: state[:, 0] the previous close, [:, 1] the true-range sum until the n-th bar, then the
ATR. A bar with a NaN high, low or close before the instrument's first complete bar is
skipped, as the batch side skips leading NaN bars. The kernel runs volatility.atr_kernel's
loop body once per update.

Bollinger: a ring of the last n values (`pos` the slot of the next one) and state columns
running sum, shift, v1 = sum(x - shift), v2 = sum((x - shift)^2), bars left before the
periodic reseed. The kernel runs volatility.bollinger_kernel's loop body; a reseed recomputes
the shifted sums from the ring, oldest value first (volatility.bb_reseed, shared with the
batch kernel): the O(n) part, every 32n updates or when cancellation threatens.

Invariants: see stream_base.py: the k-th output of an instrument is the batch output at index
k of its own series, bit for bit.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from microex.indicators.checks import check_finite, check_period, first_bad_id
from microex.indicators.fused import fmadd
from microex.indicators.stream_base import Stream
from microex.indicators.volatility import (RESEED_BARS, RESEED_SPIKE, RESEED_VARIANCE, bb_reseed,
                                           true_range)

NAN = np.nan


@njit(cache=True, error_model="numpy")
def atr_stream_kernel(count, state, ids, highs, lows, closes, n, out):
    bad = first_bad_id(ids, count.shape[0])
    if bad >= 0:
        return bad
    wb = (n - 1) / n
    wa = 1.0 - wb
    for j in range(ids.shape[0]):
        i = ids[j]
        close = closes[j]
        c = count[i]
        if c == 0:
            if not (np.isnan(highs[j]) or np.isnan(lows[j]) or np.isnan(close)):
                count[i] = 1
                state[i, 0] = close
            out[j] = NAN
            continue
        count[i] = c + 1
        tr = true_range(highs[j], lows[j], state[i, 0])
        state[i, 0] = close
        if c > n:
            atr = fmadd(wb, state[i, 1], wa * tr)
        else:
            atr = state[i, 1] + tr
            if c < n:
                state[i, 1] = atr
                out[j] = NAN
                continue
            atr = atr / n
        state[i, 1] = atr
        out[j] = atr
    return -1


@njit(cache=True, error_model="numpy")
def bollinger_stream_kernel(count, pos, state, ring, ids, xs, n, k, upper, middle, lower):
    bad = first_bad_id(ids, count.shape[0])
    if bad >= 0:
        return bad
    inv = 1.0 / n
    for j in range(ids.shape[0]):
        i = ids[j]
        x = xs[j]
        c = count[i]
        if c == 0:
            if np.isnan(x):  # leading NaNs do not start the series
                upper[j] = NAN
                middle[j] = NAN
                lower[j] = NAN
                continue
            state[i, 1] = x  # the first shift: the first value
        count[i] = c + 1
        p = pos[i]
        ring[i, p] = x
        p += 1
        if p == n:
            p = 0
        pos[i] = p  # the slot of the oldest value once the window is full
        shift = state[i, 1]
        ma = state[i, 0] + x
        t = x - shift
        v1 = state[i, 2] + t
        t *= t
        v2 = state[i, 3] + t
        if c < n - 1:
            state[i, 0] = ma
            state[i, 2] = v1
            state[i, 3] = v2
            upper[j] = NAN
            middle[j] = NAN
            lower[j] = NAN
            continue
        bars = RESEED_BARS * n if c == n - 1 else state[i, 4]
        m1 = v1 * inv
        variance = v2 * inv - m1 * m1
        mid = ma / n
        old = ring[i, p]
        ma -= old
        t = old - shift
        v1 -= t
        t *= t
        v2 -= t
        bars -= 1
        if variance < RESEED_VARIANCE * (v2 * inv) or t > RESEED_SPIKE * v2 or bars <= 0:
            bars = RESEED_BARS * n
            shift, v1, v2, variance = bb_reseed(ring, i, p, n, inv)
        state[i, 0] = ma
        state[i, 1] = shift
        state[i, 2] = v1
        state[i, 3] = v2
        state[i, 4] = bars
        sd = np.sqrt(variance) if variance != 0.0 else 0.0
        w = sd * k
        upper[j] = mid + w
        middle[j] = mid
        lower[j] = mid - w
    return -1


class AtrStream(Stream):
    """ATR(n) (TA-Lib's) for n_instruments instruments: update(ids, high, low, close) -> outputs."""

    input_names = ("high", "low", "close")

    def __init__(self, n_instruments: int, n: int = 14):
        super().__init__(n_instruments)
        self.n = check_period(n)
        self.state = np.zeros((self.n_instruments, 2))
        self._arrays.append(self.state)

    def _run(self, ids, inputs, outs) -> int:
        return atr_stream_kernel(self.count, self.state, ids, *inputs, self.n, outs[0])


class BollingerStream(Stream):
    """Bollinger(n, k) = BBANDS(n, k, k, SMA) for n_instruments instruments: update -> (upper, middle, lower)."""

    n_outputs = 3

    def __init__(self, n_instruments: int, n: int = 20, k: float = 2.0):
        super().__init__(n_instruments)
        self.n = check_period(n)
        self.k = check_finite(k, "k")
        self.pos = np.zeros(self.n_instruments, np.int64)
        self.state = np.zeros((self.n_instruments, 5))
        self.ring = np.zeros((self.n_instruments, self.n))
        self._arrays += [self.pos, self.state, self.ring]

    def _run(self, ids, inputs, outs) -> int:
        return bollinger_stream_kernel(self.count, self.pos, self.state, self.ring, ids, inputs[0], self.n,
                                       self.k, *outs)
