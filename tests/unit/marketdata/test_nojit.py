"""With NUMBA_DISABLE_JIT=1 the market-data kernels are plain Python and give the same bytes.

A subprocess each way (the flag is read when numba is first imported): MarketState's batch,
timer and ticker kernels and the SDK replica's increment kernel on one engine stream.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

SCRIPT = """
import hashlib, inspect
import numpy as np
from numba.core import config
from microex.client import md_book
from microex.client.md_protocol import MarketDataProtocol
from microex.marketdata import book, state_kernels
from microex.marketdata.state import MarketState
from tests.unit.marketdata._streams import engine, random_commands

JIT = {jit}
assert config.DISABLE_JIT == (not JIT)
kernels = (state_kernels.apply_events, state_kernels.compute_tickers, book.side_set, md_book.apply_increments_kernel)
assert all(inspect.isfunction(f) != JIT for f in kernels), "jit state not as asked"
events = engine().process(random_commands(21, 1200, max_step_ns=900_000_000))
ms = MarketState(3)
client = MarketDataProtocol()
h = hashlib.sha256()
for i in (1, 2, 3):
    client.subscribe(i)
    client.feed(ms.snapshot(i)[1])
for k in range(0, len(events), 300):
    out = ms.apply(events[k:k + 300])
    for a in out:
        h.update(a.tobytes())
    client.feed(out.updates[::2].tobytes() + out.updates.tobytes())  # a gap healed by the rest
now = int(events["ts_ns"][-1])
h.update(ms.tickers(now).tobytes())
h.update(ms.close_candles(now + 10**12).tobytes())
for i in (1, 2, 3):
    r = client.books[i].replica
    assert client.books[i].live and r.depth(1, 999) == ms.depth(i, 1, 999) and r.depth(2, 999) == ms.depth(i, 2, 999)
    h.update(repr((r.md_seq, r.depth(1, 999), r.depth(2, 999))).encode())
print(h.hexdigest())
"""


def _run(jit: bool) -> str:
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_DISABLE_JIT"}
    if not jit:
        env["NUMBA_DISABLE_JIT"] = "1"
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(SCRIPT.format(jit=jit))], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip()


def test_kernels_without_the_jit_give_the_same_bytes():
    plain, compiled = _run(jit=False), _run(jit=True)
    assert len(plain) == len(hashlib.sha256().hexdigest()) and plain == compiled
