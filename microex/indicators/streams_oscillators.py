"""Streaming RSI for many instruments at once (the shape is in stream_base.py).

State per instrument: state[:, 0] the previous value, [:, 1] the average gain, [:, 2] the
average loss (plain sums until the n-th change). The kernel runs oscillators.py's loop body
once per update: the first value only sets the previous one; changes 1..n are summed, the
n-th scales both sums by 1/n and gives the first RSI (at index n); every later change is
Wilder's step.

Invariants: see stream_base.py: the k-th output of an instrument is rsi()'s output at index k
of its own series, bit for bit.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from microex.indicators.checks import check_period, first_bad_id
from microex.indicators.oscillators import rsi_value
from microex.indicators.stream_base import Stream

NAN = np.nan


@njit(cache=True, error_model="numpy")
def rsi_stream_kernel(count, state, ids, xs, n, out):
    bad = first_bad_id(ids, count.shape[0])
    if bad >= 0:
        return bad
    inv = 1.0 / n
    keep = float(n - 1)
    for j in range(ids.shape[0]):
        i = ids[j]
        x = xs[j]
        c = count[i]
        if c == 0:
            if not np.isnan(x):  # leading NaNs do not start the series
                count[i] = 1
                state[i, 0] = x
            out[j] = NAN
            continue
        count[i] = c + 1
        d = x - state[i, 0]
        state[i, 0] = x
        up = d if d > 0.0 else 0.0
        if c > n:
            loss = state[i, 2] * keep
            gain = state[i, 1] * keep
            gain += up
            loss += up - d
        else:
            gain = state[i, 1] + up
            loss = state[i, 2] + (up - d)
            if c < n:
                state[i, 1] = gain
                state[i, 2] = loss
                out[j] = NAN
                continue
        loss *= inv
        gain *= inv
        state[i, 1] = gain
        state[i, 2] = loss
        out[j] = rsi_value(gain, loss)
    return -1


class RsiStream(Stream):
    """RSI(n) (Wilder, TA-Lib's conventions) for n_instruments instruments: update(ids, values) -> outputs."""

    def __init__(self, n_instruments: int, n: int = 14):
        super().__init__(n_instruments)
        self.n = check_period(n)
        self.state = np.zeros((self.n_instruments, 3))
        self._arrays.append(self.state)

    def _run(self, ids, inputs, outs) -> int:
        return rsi_stream_kernel(self.count, self.state, ids, inputs[0], self.n, outs[0])
