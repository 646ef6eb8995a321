"""Streaming VWAP and order-book imbalance for many instruments at once (shape: stream_base.py).

VWAP: state[:, 0] the cumulative price * volume, [:, 1] the cumulative volume, from the
instrument's first update (or its last reset(): a session VWAP restarts with reset(ids)).
Imbalance needs no history: each update is (bid - ask) / (bid + ask) of that update's
quantities; the stream keeps each instrument's latest value in `last` for readers that poll.

Invariants: the k-th output of an instrument is vwap()/book_imbalance()'s output at index k
of its own series, bit for bit (no warm-up; NaN inputs are not skipped, as in the formulas).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from microex.indicators.checks import first_bad_id
from microex.indicators.stream_base import Stream


@njit(cache=True, error_model="numpy")
def vwap_stream_kernel(count, state, ids, prices, volumes, out):
    bad = first_bad_id(ids, count.shape[0])
    if bad >= 0:
        return bad
    for j in range(ids.shape[0]):
        i = ids[j]
        count[i] += 1
        pv = state[i, 0] + prices[j] * volumes[j]
        vol = state[i, 1] + volumes[j]
        state[i, 0] = pv
        state[i, 1] = vol
        out[j] = pv / vol
    return -1


@njit(cache=True, error_model="numpy")
def imbalance_stream_kernel(count, last, ids, bids, asks, out):
    bad = first_bad_id(ids, count.shape[0])
    if bad >= 0:
        return bad
    for j in range(ids.shape[0]):
        i = ids[j]
        count[i] += 1
        v = (bids[j] - asks[j]) / (bids[j] + asks[j])
        last[i] = v
        out[j] = v
    return -1


class VwapStream(Stream):
    """Cumulative VWAP for n_instruments instruments: update(ids, price, volume) -> outputs."""

    input_names = ("price", "volume")

    def __init__(self, n_instruments: int):
        super().__init__(n_instruments)
        self.state = np.zeros((self.n_instruments, 2))
        self._arrays.append(self.state)

    def _run(self, ids, inputs, outs) -> int:
        return vwap_stream_kernel(self.count, self.state, ids, *inputs, outs[0])


class ImbalanceStream(Stream):
    """Order-book imbalance for n_instruments instruments: update(ids, bid_qty, ask_qty) -> outputs."""

    input_names = ("bid_qty", "ask_qty")

    def __init__(self, n_instruments: int):
        super().__init__(n_instruments)
        self.last = np.full(self.n_instruments, np.nan)
        self._arrays.append(self.last)

    def _run(self, ids, inputs, outs) -> int:
        return imbalance_stream_kernel(self.count, self.last, ids, *inputs, outs[0])

    def reset(self, instrument_ids=None) -> None:
        super().reset(instrument_ids)
        if instrument_ids is None:
            self.last.fill(np.nan)
        else:
            self.last[np.asarray(instrument_ids, np.int64)] = np.nan
