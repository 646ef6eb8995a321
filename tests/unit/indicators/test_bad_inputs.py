"""Bad arguments are ValueErrors with a message naming the argument; a stream update with a bad
id changes nothing."""

from __future__ import annotations

import numpy as np
import pytest

import microex.indicators as mi

X = np.linspace(1.0, 2.0, 50)


@pytest.mark.parametrize("call", [
    lambda n: mi.sma(X, n), lambda n: mi.ema(X, n), lambda n: mi.rsi(X, n), lambda n: mi.bollinger(X, n),
    lambda n: mi.atr(X, X, X, n), lambda n: mi.macd(X, n, 26, 9), lambda n: mi.macd(X, 12, n, 9),
    lambda n: mi.macd(X, 12, 26, n), lambda n: mi.SmaStream(3, n), lambda n: mi.EmaStream(3, n),
    lambda n: mi.RsiStream(3, n), lambda n: mi.MacdStream(3, 12, 26, n), lambda n: mi.BollingerStream(3, n),
    lambda n: mi.AtrStream(3, n), lambda n: mi.VwapStream(n),
])
@pytest.mark.parametrize("bad", [0, -1, 2.5, "3", None])
def test_period_below_one_or_not_an_integer(call, bad):
    with pytest.raises(ValueError, match="must be an integer >= 1"):
        call(bad)


@pytest.mark.parametrize("call,names", [
    (lambda: mi.atr(X, X[:-1], X, 14), "high and low and close"),
    (lambda: mi.vwap(X, X[:10]), "price and volume"),
    (lambda: mi.book_imbalance(X[:3], X), "bid_qty and ask_qty"),
    (lambda: mi.EmaStream(2).update([0, 1], [1.0]), "instrument_ids and values"),
    (lambda: mi.AtrStream(2).update([0], [1.0], [1.0], [1.0, 2.0]), "instrument_ids and high and low and close"),
])
def test_mismatched_lengths(call, names):
    with pytest.raises(ValueError, match=f"{names} must have the same length"):
        call()


def test_not_one_dimensional():
    with pytest.raises(ValueError, match="x must be a 1-D array"):
        mi.sma(np.ones((3, 3)), 2)
    with pytest.raises(ValueError, match="instrument_ids must be a 1-D array"):
        mi.SmaStream(2).update(np.zeros((2, 2), int), np.ones(4))
    with pytest.raises(ValueError, match="instrument_ids must be integers"):
        mi.SmaStream(2).update(np.array([0.5]), np.ones(1))


def test_bollinger_k_must_be_finite():
    with pytest.raises(ValueError, match="k must be finite"):
        mi.bollinger(X, 20, np.inf)
    with pytest.raises(ValueError, match="k must be a number"):
        mi.BollingerStream(2, 20, "wide")


@pytest.mark.parametrize("bad_id", [-1, 3, 1 << 40])
def test_bad_instrument_id_updates_nothing(bad_id):
    s = mi.EmaStream(3, 2)
    s.update([0, 1, 2], [1.0, 2.0, 3.0])
    before = (s.count.copy(), s.state.copy())
    with pytest.raises(ValueError, match=f"instrument id {bad_id} at position 2 is outside \\[0, 3\\)"):
        s.update([0, 1, bad_id, 2], [5.0, 6.0, 7.0, 8.0])
    assert (s.count == before[0]).all() and (s.state == before[1]).all()
    with pytest.raises(ValueError, match="is outside"):
        s.update_one(bad_id, 1.0)
    with pytest.raises(ValueError, match="must be in"):
        s.reset([bad_id])


def test_wrong_number_of_inputs_and_bad_out():
    with pytest.raises(ValueError, match="takes instrument_ids and high, low, close"):
        mi.AtrStream(2).update([0], [1.0])
    with pytest.raises(ValueError, match="takes instrument_id and price, volume"):
        mi.VwapStream(2).update_one(0, 1.0)
    with pytest.raises(ValueError, match="out must be 3 arrays"):
        mi.MacdStream(2).update([0], [1.0], out=(np.empty(1),))
    with pytest.raises(ValueError, match="length 2"):
        mi.SmaStream(2).update([0, 1], [1.0, 2.0], out=np.empty(3))
    with pytest.raises(ValueError, match="n_instruments must be an integer >= 1"):
        mi.SmaStream(0)
