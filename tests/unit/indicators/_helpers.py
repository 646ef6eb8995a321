"""Series generators and the TA-Lib comparison shared by the indicator tests."""

from __future__ import annotations

import numpy as np
import talib
from hypothesis import strategies as st

import microex.indicators as mi

KINDS = ("walk", "trend", "geometric", "ticks", "flat_then_walk")
RTOL = 1e-9


def series(kind: str, n: int, seed: int, scale: float = 100.0) -> np.ndarray:
    """A price-like series: a random walk, a trending walk, a geometric walk, a walk rounded to
    ticks (many exact repeats), or a flat stretch then a walk."""
    rng = np.random.default_rng(seed)
    step = rng.normal(0.0, 0.01 * scale, n)
    if kind == "walk":
        x = scale + np.cumsum(step)
    elif kind == "trend":
        x = scale + np.cumsum(step + 0.002 * scale * rng.choice((-1, 1)))
    elif kind == "geometric":
        x = scale * np.exp(np.cumsum(rng.normal(0.0, 0.02, n)))
    elif kind == "ticks":
        x = np.round((scale + np.cumsum(step)) / (0.01 * scale)) * (0.01 * scale)
    else:
        x = scale + np.cumsum(np.where(np.arange(n) < n // 3, 0.0, step))
    return x.astype(np.float64)


def bars(kind: str, n: int, seed: int, scale: float = 100.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(high, low, close) around series(kind ...)."""
    close = series(kind, n, seed, scale)
    rng = np.random.default_rng(seed + 1)
    spread = np.abs(rng.normal(0.0, 0.01 * scale, (2, n)))
    return close + spread[0], close - spread[1], close


@st.composite
def price_series(draw, max_len: int = 400):
    kind = draw(st.sampled_from(KINDS))
    n = draw(st.integers(0, max_len))
    seed = draw(st.integers(0, 2**32 - 1))
    scale = draw(st.sampled_from((1e-4, 1.0, 100.0, 1e6)))
    return series(kind, n, seed, scale)


def assert_like(ours, ref, scale: float = 1.0) -> None:
    """Same NaN positions, and equal within 1e-9 relative (plus 1e-12 of the series' scale, for
    values that cross zero: the MACD line and histogram)."""
    ours, ref = np.asarray(ours), np.asarray(ref)
    assert ours.shape == ref.shape
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(ref), err_msg="NaN positions differ")
    m = ~np.isnan(ref)
    np.testing.assert_allclose(ours[m], ref[m], rtol=RTOL, atol=1e-12 * scale)


def scale_of(*arrays) -> float:
    vals = [np.nanmax(np.abs(a)) for a in arrays if len(a) and not np.isnan(a).all()]
    return max([1.0, *vals])


# indicator -> (ours, TA-Lib's, number of outputs, input kind): the single-period ones
CASES = {
    "sma": (mi.sma, lambda x, n: talib.SMA(x, n), 1, "series"),
    "ema": (mi.ema, lambda x, n: talib.EMA(x, n), 1, "series"),
    "rsi": (mi.rsi, lambda x, n: talib.RSI(x, n), 1, "series"),
    "bollinger": (lambda x, n: mi.bollinger(x, n, 2.0), lambda x, n: talib.BBANDS(x, n, 2.0, 2.0, 0), 3, "series"),
    "atr": (mi.atr, lambda h, lo, c, n: talib.ATR(h, lo, c, n), 1, "bars"),
}
