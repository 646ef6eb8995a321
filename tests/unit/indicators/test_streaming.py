"""The streams: value by value they reproduce the batch output bit for bit (hence TA-Lib's),
many instruments interleaved in one call each get their own series' result, and the
one-value path, out=, reset() and leading NaNs behave like the array path."""

from __future__ import annotations

import numpy as np
import pytest
import talib
from hypothesis import given, settings
from hypothesis import strategies as st

import microex.indicators as mi
from tests.unit.indicators._helpers import KINDS, assert_like, bars, scale_of, series


def _inputs(name: str, length: int, seed: int, kind: str = "walk", scale: float = 100.0) -> tuple:
    if name == "atr":
        return bars(kind, length, seed, scale)
    if name == "vwap":
        rng = np.random.default_rng(seed + 2)
        return series(kind, length, seed, scale), rng.integers(0, 50, length).astype(float)
    if name == "book_imbalance":
        rng = np.random.default_rng(seed + 3)
        return tuple(rng.integers(0, 20, (2, length)).astype(float))
    return (series(kind, length, seed, scale),)


# name -> (stream factory, batch function of the inputs, TA-Lib (or None))
SPECS = {
    "sma": (lambda m: mi.SmaStream(m, 7), lambda *a: mi.sma(*a, 7), lambda x: talib.SMA(x, 7)),
    "ema": (lambda m: mi.EmaStream(m, 9), lambda *a: mi.ema(*a, 9), lambda x: talib.EMA(x, 9)),
    "rsi": (lambda m: mi.RsiStream(m, 14), lambda *a: mi.rsi(*a, 14), lambda x: talib.RSI(x, 14)),
    "macd": (lambda m: mi.MacdStream(m), lambda *a: mi.macd(*a), lambda x: talib.MACD(x)),
    "bollinger": (lambda m: mi.BollingerStream(m, 20, 2.0), lambda *a: mi.bollinger(*a, 20, 2.0),
                  lambda x: talib.BBANDS(x, 20, 2.0, 2.0, 0)),
    "atr": (lambda m: mi.AtrStream(m, 14), lambda *a: mi.atr(*a, 14), lambda h, lo, c: talib.ATR(h, lo, c, 14)),
    "vwap": (lambda m: mi.VwapStream(m), mi.vwap, None),
    "book_imbalance": (lambda m: mi.ImbalanceStream(m), mi.book_imbalance, None),
}


def _tuple(out) -> tuple:
    return out if isinstance(out, tuple) else (out,)


def _equal(a, b) -> None:
    for u, v in zip(_tuple(a), _tuple(b), strict=True):
        np.testing.assert_array_equal(u, v)  # NaN == NaN here, bits otherwise


@pytest.mark.parametrize("name", sorted(SPECS))
@pytest.mark.parametrize("kind", KINDS)
def test_value_by_value_equals_batch_and_talib(name, kind):
    make, batch, ta = SPECS[name]
    for length in (0, 1, 20, 34, 700):
        inputs = _inputs(name, length, seed=length, kind=kind)
        stream = make(1)
        ids = np.zeros(length, np.int64)
        chunked = [stream.update(ids[a:a + 37], *(x[a:a + 37] for x in inputs)) for a in range(0, length, 37)]
        got = tuple(np.concatenate([_tuple(c)[k] for c in chunked]) if chunked else np.zeros(0)
                    for k in range(len(_tuple(batch(*inputs)))))
        _equal(got, batch(*inputs))
        if ta is not None:
            for u, v in zip(got, _tuple(ta(*inputs))):
                assert_like(u, v, scale_of(*inputs))


@pytest.mark.parametrize("name", sorted(SPECS))
def test_interleaved_instruments_get_their_own_series(name):
    make, batch, _ = SPECS[name]
    m = 5
    lengths = [0, 1, 40, 300, 77]
    per = [_inputs(name, lengths[i], seed=100 + i, kind=KINDS[i % len(KINDS)], scale=10.0 ** i) for i in range(m)]
    order = np.concatenate([np.full(lengths[i], i) for i in range(m)])
    np.random.default_rng(0).shuffle(order)
    pos = np.zeros(m, int)
    idx = np.empty(len(order), int)
    for j, i in enumerate(order):
        idx[j] = pos[i]
        pos[i] += 1
    n_in = len(per[0])
    flat = [np.array([per[i][k][idx[j]] for j, i in enumerate(order)]) for k in range(n_in)]
    stream = make(m)
    outs = []
    for a in range(0, len(order), 64):  # several calls, each with many instruments
        outs.append(_tuple(stream.update(order[a:a + 64], *(f[a:a + 64] for f in flat))))
    got = [np.concatenate([o[k] for o in outs]) for k in range(len(outs[0]))]
    for i in range(m):
        mine = order == i
        _equal(tuple(g[mine] for g in got), batch(*per[i]))


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_updates=st.integers(0, 600), m=st.integers(1, 6),
       name=st.sampled_from(sorted(SPECS)))
def test_hypothesis_random_interleaving(seed, n_updates, m, name):
    make, batch, _ = SPECS[name]
    rng = np.random.default_rng(seed)
    order = rng.integers(0, m, n_updates)
    flat = _inputs(name, n_updates, seed, kind=KINDS[seed % len(KINDS)])
    stream = make(m)
    got = _tuple(stream.update(order, *flat))
    for i in range(m):
        mine = order == i
        _equal(tuple(g[mine] for g in got), batch(*(x[mine] for x in flat)))


@pytest.mark.parametrize("name", sorted(SPECS))
def test_update_one_matches_update(name):
    make, batch, _ = SPECS[name]
    inputs = _inputs(name, 120, seed=9)
    one, many = make(3), make(3)
    got = [one.update_one(2, *(float(x[j]) for x in inputs)) for j in range(120)]
    expect = _tuple(many.update(np.full(120, 2), *inputs))
    got = [np.array([g if isinstance(g, float) else g[k] for g in got]) for k in range(len(expect))]
    _equal(tuple(got), expect)


def test_out_arrays_are_written_in_place():
    s = mi.MacdStream(2, 3, 6, 2)
    x = series("walk", 50, 1)
    outs = tuple(np.empty(50) for _ in range(3))
    ret = s.update(np.zeros(50, np.int64), x, out=outs)
    assert all(r is o for r, o in zip(ret, outs))
    _equal(outs, mi.macd(x, 3, 6, 2))
    e = mi.EmaStream(1, 5)
    buf = np.empty(50)
    assert e.update(np.zeros(50, np.int64), x, out=buf) is buf


def test_reset_restarts_the_warm_up():
    x = series("walk", 60, 4)
    s = mi.RsiStream(2, 5)
    s.update(np.zeros(60, np.int64), x)
    s.update(np.ones(30, np.int64), x[:30])
    s.reset([0])
    _equal(s.update(np.zeros(60, np.int64), x), mi.rsi(x, 5))  # instrument 0 from scratch
    _equal(s.update(np.ones(30, np.int64), x[30:]), mi.rsi(x, 5)[30:])  # instrument 1 untouched
    s.reset()
    assert (s.count == 0).all()
    b = mi.BollingerStream(1, 4)
    b.update(np.zeros(10, np.int64), x[:10])
    b.reset()
    _equal(b.update(np.zeros(60, np.int64), x), mi.bollinger(x, 4))


def test_leading_nans_do_not_start_a_series():
    x = series("walk", 80, 6)
    x[:4] = np.nan
    for name in ("sma", "ema", "rsi", "macd", "bollinger"):
        make, batch, _ = SPECS[name]
        _equal(make(1).update(np.zeros(80, np.int64), x), batch(x))
    h, lo, c = bars("walk", 80, 6)
    lo[:3] = np.nan
    _equal(mi.AtrStream(1, 14).update(np.zeros(80, np.int64), h, lo, c), mi.atr(h, lo, c, 14))


def test_bollinger_stream_through_reseeds():
    """Long enough for the periodic reseed (every 32n) and cancellation reseeds, many instruments."""
    rng = np.random.default_rng(3)
    m, length = 3, 2000
    xs = [1e6 + rng.normal(0, 0.01, length), np.round(100 + np.cumsum(rng.normal(0, 0.05, length)), 2),
          np.concatenate([np.full(500, 3.0), 3 + np.cumsum(rng.normal(0, 1, length - 500))])]
    order = np.repeat(np.arange(m), length)
    rng.shuffle(order)
    pos = np.zeros(m, int)
    vals = np.empty(len(order))
    for j, i in enumerate(order):
        vals[j] = xs[i][pos[i]]
        pos[i] += 1
    got = mi.BollingerStream(m, 5, 2.0).update(order, vals)
    for i in range(m):
        _equal(tuple(g[order == i] for g in got), mi.bollinger(xs[i], 5, 2.0))
