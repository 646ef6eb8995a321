"""With NUMBA_DISABLE_JIT=1 the indicator kernels are plain Python and still give TA-Lib's results.

A subprocess (the flag is read when numba is first imported) checks the jit is really off,
then runs the batch and streaming forms of EMA (with the fused multiply-add's Python
fallback), MACD, Bollinger and VWAP on a short series against TA-Lib and numpy.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

SCRIPT = """
import inspect
import numpy as np
import talib
from numba.core import config
import microex.indicators as mi
from microex.indicators import moving, macd_batch, streams_volatility
assert config.DISABLE_JIT
assert all(inspect.isfunction(f) for f in (moving.ema_kernel, macd_batch.macd_kernel,
                                          streams_volatility.bollinger_stream_kernel))

rng = np.random.default_rng(3)
x = 100 + np.cumsum(rng.normal(0, 1, 300))
v = rng.integers(1, 50, 300).astype(float)

def close(a, b):
    np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
    m = ~np.isnan(b)
    np.testing.assert_allclose(a[m], b[m], rtol=1e-9, atol=1e-10)

close(mi.ema(x, 10), talib.EMA(x, 10))
for a, b in zip(mi.macd(x), talib.MACD(x)):
    close(a, b)
for a, b in zip(mi.bollinger(x, 20, 2.0), talib.BBANDS(x, 20, 2.0, 2.0, 0)):
    close(a, b)
ids = np.zeros(300, np.int64)
close(mi.EmaStream(1, 10).update(ids, x), mi.ema(x, 10))
for a, b in zip(mi.BollingerStream(1, 20).update(ids, x), mi.bollinger(x, 20)):
    close(a, b)
close(mi.vwap(x, v), np.cumsum(x * v) / np.cumsum(v))
print("ok")
"""


def test_indicators_run_without_the_jit():
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_DISABLE_JIT"}
    env["NUMBA_DISABLE_JIT"] = "1"
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(SCRIPT)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith("ok")
