"""Plain-Python twins of the indicator kernels' contracts: the textbook formulas, for tests.

Each twin takes and returns Python lists of floats (NaN in the warm-up) and says what the
kernel computes without the kernel's bookkeeping: window sums are exact (math.fsum), the
deviation is a two-pass one, the smoothing steps are written as in the literature. They share
the kernels' conventions, which are TA-Lib's: a series starts at its first non-NaN value;
EMA seeded by the mean of its first n values; RSI and ATR with Wilder's smoothing and their
first value at index n; MACD's fast EMA seeded on the same bar as the slow one; Bollinger
with the population deviation; RSI 0 when there was neither gain nor loss.

Invariants: no numpy, no numba; a twin agrees with its kernel within rounding (the tests
allow 1e-9 relative), and never reads past the index it writes.
"""

from __future__ import annotations

import math

NAN = float("nan")


def _start(*series: list[float]) -> int:
    i = 0
    while i < len(series[0]) and any(math.isnan(s[i]) for s in series):
        i += 1
    return i


def _ema_from(values: list[float], n: int) -> list[float]:
    """EMA over values (no NaN): NaN before index n-1, the mean of values[:n] there, then the EMA step."""
    out = [NAN] * len(values)
    if len(values) < n:
        return out
    if n == 1:
        return list(values)
    k = 2.0 / (n + 1)
    prev = math.fsum(values[:n]) / n
    out[n - 1] = prev
    for i in range(n, len(values)):
        prev = prev + k * (values[i] - prev)
        out[i] = prev
    return out


def sma(x: list[float], n: int) -> list[float]:
    b = _start(x)
    out = [NAN] * len(x)
    for i in range(b + n - 1, len(x)):
        out[i] = math.fsum(x[i - n + 1:i + 1]) / n
    return out


def ema(x: list[float], n: int) -> list[float]:
    b = _start(x)
    return [NAN] * b + _ema_from(x[b:], n)


def rsi(x: list[float], n: int) -> list[float]:
    b = _start(x)
    out = [NAN] * len(x)
    if len(x) <= b + n:
        return out
    changes = [x[i] - x[i - 1] for i in range(b + 1, len(x))]
    gains = [max(d, 0.0) for d in changes]
    losses = [max(-d, 0.0) for d in changes]
    avg_gain = math.fsum(gains[:n]) / n
    avg_loss = math.fsum(losses[:n]) / n
    for j in range(n - 1, len(changes)):
        if j >= n:
            avg_gain = (avg_gain * (n - 1) + gains[j]) / n
            avg_loss = (avg_loss * (n - 1) + losses[j]) / n
        total = avg_gain + avg_loss
        out[b + 1 + j] = 100.0 * avg_gain / total if total > 0 else 0.0
    return out


def macd(x: list[float], fast: int = 12, slow: int = 26, signal: int = 9) -> tuple[list, list, list]:
    fast, slow = min(fast, slow), max(fast, slow)
    b = _start(x)
    v = x[b:]
    nan3 = ([NAN] * len(x), [NAN] * len(x), [NAN] * len(x))
    if len(v) < slow + signal - 1:
        return nan3
    slow_ema = _ema_from(v, slow)
    fast_ema = [NAN] * (slow - fast) + _ema_from(v[slow - fast:], fast)  # both start at index slow-1
    line = [f - s for f, s in zip(fast_ema[slow - 1:], slow_ema[slow - 1:])]
    sig = _ema_from(line, signal)
    out_line, out_sig, out_hist = nan3
    for j in range(signal - 1, len(line)):
        i = b + slow - 1 + j
        out_line[i], out_sig[i], out_hist[i] = line[j], sig[j], line[j] - sig[j]
    return out_line, out_sig, out_hist


def bollinger(x: list[float], n: int = 20, k: float = 2.0) -> tuple[list, list, list]:
    b = _start(x)
    upper, middle, lower = [NAN] * len(x), [NAN] * len(x), [NAN] * len(x)
    for i in range(b + n - 1, len(x)):
        window = x[i - n + 1:i + 1]
        mean = math.fsum(window) / n
        sd = math.sqrt(math.fsum((w - mean) ** 2 for w in window) / n)
        upper[i], middle[i], lower[i] = mean + k * sd, mean, mean - k * sd
    return upper, middle, lower


def true_range(high: float, low: float, prev_close: float) -> float:
    return max(high - low, abs(high - prev_close), abs(low - prev_close))


def atr(high: list[float], low: list[float], close: list[float], n: int = 14) -> list[float]:
    b = _start(high, low, close)
    out = [NAN] * len(close)
    if len(close) <= b + n:
        return out
    tr = [true_range(high[i], low[i], close[i - 1]) for i in range(b + 1, len(close))]
    avg = math.fsum(tr[:n]) / n
    out[b + n] = avg
    for j in range(n, len(tr)):
        avg = (avg * (n - 1) + tr[j]) / n
        out[b + 1 + j] = avg
    return out


def vwap(price: list[float], volume: list[float]) -> list[float]:
    out = []
    pv = vol = 0.0
    for p, v in zip(price, volume):
        pv += p * v
        vol += v
        out.append(pv / vol if vol != 0 else NAN)
    return out


def book_imbalance(bid_qty: list[float], ask_qty: list[float]) -> list[float]:
    return [(b - a) / (b + a) if b + a != 0 else NAN for b, a in zip(bid_qty, ask_qty)]
