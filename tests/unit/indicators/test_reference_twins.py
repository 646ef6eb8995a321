"""The kernels against their plain-Python twins (microex.indicators.reference), and VWAP and
book imbalance, which TA-Lib lacks, against their numpy formulas."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import microex.indicators as mi
from microex.indicators import reference as ref
from tests.unit.indicators._helpers import KINDS, assert_like, bars, scale_of, series


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("length", (0, 1, 30, 250))
def test_kernels_agree_with_twins(kind, length):
    x = series(kind, length, seed=length + 1)
    h, lo, c = bars(kind, length, seed=length + 1)
    s = scale_of(x, h, lo)
    xl = x.tolist()
    for n in (1, 3, 14):
        assert_like(mi.sma(x, n), ref.sma(xl, n), s)
        assert_like(mi.ema(x, n), ref.ema(xl, n), s)
        assert_like(mi.rsi(x, n), ref.rsi(xl, n), s)
        assert_like(mi.atr(h, lo, c, n), ref.atr(h.tolist(), lo.tolist(), c.tolist(), n), s)
        for a, b in zip(mi.bollinger(x, n, 2.0), ref.bollinger(xl, n, 2.0)):
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9 * s)  # the twin's deviation is two-pass
    for a, b in zip(mi.macd(x, 5, 13, 4), ref.macd(xl, 5, 13, 4)):
        assert_like(a, b, s * 10)


def _numpy_vwap(p, v):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.cumsum(p * v) / np.cumsum(v)


def _numpy_imbalance(b, a):
    with np.errstate(divide="ignore", invalid="ignore"):
        return (b - a) / (b + a)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), length=st.integers(0, 500), zero_volume_prefix=st.integers(0, 5))
def test_vwap_is_the_numpy_formula_bit_for_bit(seed, length, zero_volume_prefix):
    rng = np.random.default_rng(seed)
    p = series("walk", length, seed)
    v = rng.integers(0, 100, length).astype(float)
    v[:zero_volume_prefix] = 0.0  # NaN while no volume traded
    got = mi.vwap(p, v)
    np.testing.assert_array_equal(got, _numpy_vwap(p, v))
    pos = v > 0
    if pos.any():
        np.testing.assert_allclose(got[pos], np.array(ref.vwap(p.tolist(), v.tolist()))[pos], rtol=1e-12)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), length=st.integers(0, 500))
def test_book_imbalance_is_the_numpy_formula_bit_for_bit(seed, length):
    rng = np.random.default_rng(seed)
    b, a = rng.integers(0, 10, (2, length)).astype(float)  # includes empty books: 0/0 -> NaN
    got = mi.book_imbalance(b, a)
    np.testing.assert_array_equal(got, _numpy_imbalance(b, a))
    np.testing.assert_array_equal(got, np.array(ref.book_imbalance(b.tolist(), a.tolist()), dtype=float))
    ok = ~np.isnan(got)
    assert ((got[ok] >= -1) & (got[ok] <= 1)).all()
