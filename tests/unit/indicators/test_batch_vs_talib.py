"""The batch functions against TA-Lib: same NaN positions, values within 1e-9 relative.

On random walks, trending, geometric and tick-rounded series, from empty to thousands of
values, at several periods (TA-Lib's own ranges: RSI and BBANDS from 2, the others from 1).
"""

from __future__ import annotations

import numpy as np
import pytest
import talib
from hypothesis import given, settings
from hypothesis import strategies as st

import microex.indicators as mi
from tests.unit.indicators._helpers import CASES, KINDS, assert_like, bars, price_series, scale_of, series

LENGTHS = (0, 1, 2, 13, 14, 15, 34, 35, 200, 3000)
PERIODS = {"sma": (1, 2, 5, 30), "ema": (1, 2, 5, 30), "rsi": (2, 5, 14, 30), "bollinger": (2, 5, 20),
           "atr": (1, 2, 14, 30)}


def _check(name: str, length: int, n: int, kind: str, seed: int, scale: float = 100.0) -> None:
    ours, theirs, n_out, inputs = CASES[name]
    args = bars(kind, length, seed, scale) if inputs == "bars" else (series(kind, length, seed, scale),)
    a, b = ours(*args, n), theirs(*args, n)
    if n_out == 1:
        a, b = (a,), (b,)
    assert len(a) == len(b) == n_out
    for x, y in zip(a, b):
        assert_like(x, y, scale_of(*args))


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("kind", KINDS)
def test_fixed_seeds_all_lengths_and_periods(name, kind):
    for length in LENGTHS:
        for n in PERIODS[name]:
            _check(name, length, n, kind, seed=length * 31 + n)


@pytest.mark.parametrize("name", sorted(CASES))
def test_long_series_stays_within_tolerance(name):
    """200,000 values: TA-Lib's running sums drift; ours drift the same way, in the same order."""
    _check(name, 200_000, {"rsi": 14, "atr": 14, "bollinger": 20}.get(name, 30), "walk", seed=7)


@pytest.mark.parametrize("fast,slow,signal", [(12, 26, 9), (3, 7, 4), (5, 10, 1), (2, 2, 2), (26, 12, 9), (8, 30, 20)])
@pytest.mark.parametrize("kind", KINDS)
def test_macd_fixed(fast, slow, signal, kind):
    for length in (0, 1, 25, 33, 34, 35, 400):
        x = series(kind, length, seed=length + fast, scale=50.0)
        for a, b in zip(mi.macd(x, fast, slow, signal), talib.MACD(x, fast, slow, signal)):
            assert_like(a, b, scale_of(x))


def test_macd_first_output_is_index_33():
    x = series("walk", 100, 1)
    line, sig, hist = mi.macd(x)
    for out in (line, sig, hist):
        assert np.isnan(out[:33]).all() and not np.isnan(out[33:]).any()


@settings(max_examples=40, deadline=None)
@given(x=price_series(), n=st.integers(2, 40), which=st.sampled_from(("sma", "ema", "rsi", "bollinger")))
def test_hypothesis_single_series(x, n, which):
    ours, theirs, n_out, _ = CASES[which]
    a, b = ours(x, n), theirs(x, n)
    for u, v in zip(*(((a,), (b,)) if n_out == 1 else (a, b))):
        assert_like(u, v, scale_of(x))


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), length=st.integers(0, 300), n=st.integers(1, 30),
       kind=st.sampled_from(KINDS), scale=st.sampled_from((1e-3, 100.0, 1e5)))
def test_hypothesis_atr(seed, length, n, kind, scale):
    h, lo, c = bars(kind, length, seed, scale)
    assert_like(mi.atr(h, lo, c, n), talib.ATR(h, lo, c, n), scale_of(h, lo, c))


@settings(max_examples=25, deadline=None)
@given(x=price_series(), fast=st.integers(2, 20), slow=st.integers(2, 40), signal=st.integers(1, 15))
def test_hypothesis_macd(x, fast, slow, signal):
    for a, b in zip(mi.macd(x, fast, slow, signal), talib.MACD(x, fast, slow, signal)):
        assert_like(a, b, scale_of(x))


@pytest.mark.parametrize("k", (0.5, 1.0, 2.0, 3.0))
def test_bollinger_multipliers(k):
    x = series("ticks", 500, 3)
    for a, b in zip(mi.bollinger(x, 20, k), talib.BBANDS(x, 20, k, k, 0)):
        assert_like(a, b, scale_of(x))


def test_bollinger_hard_cases_reseed_paths():
    """Large offset with tiny noise (cancellation), flat stretches then jumps (the variance floor)."""
    rng = np.random.default_rng(11)
    cases = [1e6 + rng.normal(0, 0.01, 3000),
             np.concatenate([np.full(100, 50.0), np.full(50, 51.0), 50 + np.cumsum(rng.normal(0, 1, 500)),
                             np.full(60, 7.0)])]
    for x in cases:
        for n in (3, 20):
            for a, b in zip(mi.bollinger(x, n, 2.0), talib.BBANDS(x, n, 2.0, 2.0, 0)):
                assert_like(a, b, scale_of(x))


def test_flat_series_conventions():
    x = np.full(40, 5.0)
    assert_like(mi.rsi(x, 14), talib.RSI(x, 14))  # 0 where neither gain nor loss (TA-Lib 0.8.1)
    assert (mi.rsi(x, 14)[14:] == 0.0).all()
    u, m, lo = mi.bollinger(x, 20)
    assert (u[19:] == 5.0).all() and (lo[19:] == 5.0).all()


def test_leading_and_inner_nans_like_talib():
    """TA-Lib's wrapper starts a series at its first non-NaN value; an inner NaN propagates."""
    x = series("walk", 120, 5)
    x[:3] = np.nan
    y = x.copy()
    y[60] = np.nan
    h, lo, c = bars("walk", 120, 5)
    h[:2] = np.nan
    c[4] = np.nan
    for z in (x, y):
        for name in ("sma", "ema", "rsi", "bollinger"):
            ours, theirs, n_out, _ = CASES[name]
            a, b = ours(z, 10), theirs(z, 10)
            for u, v in zip(*(((a,), (b,)) if n_out == 1 else (a, b))):
                assert_like(u, v, scale_of(z))
        for a, b in zip(mi.macd(z, 3, 8, 4), talib.MACD(z, 3, 8, 4)):
            assert_like(a, b, scale_of(z))
    assert_like(mi.atr(h, lo, c, 5), talib.ATR(h, lo, c, 5), scale_of(h))


def test_all_nan_and_integer_input():
    assert np.isnan(mi.sma(np.full(10, np.nan), 3)).all()
    ints = np.arange(50)
    assert_like(mi.ema(ints, 5), talib.EMA(ints.astype(float), 5))
