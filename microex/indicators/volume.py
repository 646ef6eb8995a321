"""Batch VWAP and order-book imbalance: no TA-Lib equivalent, so each is its numpy formula, fused.

- vwap(price, volume)[i] = sum(price[:i+1] * volume[:i+1]) / sum(volume[:i+1]), the
  cumulative (session) VWAP: the same as `np.cumsum(price * volume) / np.cumsum(volume)`,
  bit for bit (both sums run left to right from 0.0), in one pass instead of four. While
  the cumulative volume is 0 it is NaN (0/0); a NaN input poisons everything after it, as
  in the formula.
- book_imbalance(bid_qty, ask_qty)[i] = (bid - ask) / (bid + ask): in [-1, 1] for
  non-negative quantities, NaN when both are 0 (0/0), exactly the numpy expression.

Invariants: outputs aligned to the inputs (no warm-up); IEEE division (error_model numpy),
so the kernels never raise; VwapStream and ImbalanceStream (streams_volume.py) produce the
same bits value by value.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from microex.indicators.checks import as_series, check_same_length


@njit(cache=True, error_model="numpy")
def vwap_kernel(price, volume, out):
    pv = 0.0
    vol = 0.0
    for i in range(price.shape[0]):
        pv += price[i] * volume[i]
        vol += volume[i]
        out[i] = pv / vol


@njit(cache=True, error_model="numpy")
def imbalance_kernel(bid, ask, out):
    for i in range(bid.shape[0]):
        out[i] = (bid[i] - ask[i]) / (bid[i] + ask[i])


def vwap(price, volume) -> np.ndarray:
    """Cumulative volume-weighted average price from the first value: NaN while the volume is 0."""
    price, volume = as_series(price, "price"), as_series(volume, "volume")
    check_same_length(price=price, volume=volume)
    out = np.empty_like(price)
    with np.errstate(divide="ignore", invalid="ignore"):  # only matters with NUMBA_DISABLE_JIT=1
        vwap_kernel(price, volume, out)
    return out


def book_imbalance(bid_qty, ask_qty) -> np.ndarray:
    """(bid - ask) / (bid + ask) per row: +1 all bids, -1 all asks, NaN for an empty book."""
    bid, ask = as_series(bid_qty, "bid_qty"), as_series(ask_qty, "ask_qty")
    check_same_length(bid_qty=bid, ask_qty=ask)
    out = np.empty_like(bid)
    with np.errstate(divide="ignore", invalid="ignore"):
        imbalance_kernel(bid, ask, out)
    return out
