"""With NUMBA_DISABLE_JIT=1 the kernels are plain Python functions; they must still work.

Each test runs a script in a subprocess (the flag is read when numba is first
imported) and checks that the jit really was off.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from microex.core.idmap import ID_HEADER

ROOT = Path(__file__).resolve().parents[3]
CASE = ROOT / "tests" / "data" / "conformance" / "04_cancel_modify.csv"

JIT_OFF_CHECK = """
import inspect
from numba.core import config
from microex.core import book, idmap, matching
assert config.DISABLE_JIT
assert all(inspect.isfunction(f) for f in (matching.process_batch, book.level_for_price, idmap.id_find)), \\
    "the kernels should be plain Python functions"
"""


def run_script(script: str, jit: bool) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_DISABLE_JIT"}
    if not jit:
        env["NUMBA_DISABLE_JIT"] = "1"
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


JIT_ON_CHECK = """
import inspect
from microex.core import matching
assert not inspect.isfunction(matching.process_batch), "the kernels should be compiled"
"""


def output_of(script: str, jit: bool) -> str:
    done = run_script((JIT_ON_CHECK if jit else JIT_OFF_CHECK) + textwrap.dedent(script), jit)
    assert done.returncode == 0, f"script failed (jit={jit}):\n{done.stderr[-3000:]}"
    return done.stdout


BOOK_SCRIPT = """
import json
from microex.core.book import level_drop_if_empty, level_for_price, link_tail, order_alloc, order_free, unlink
from microex.core.config import EngineConfig
from microex.core.state import O_ID, O_LEAVES, O_LEVEL, ORDER_STRIDE, allocate_state, views

state = allocate_state(EngineConfig(max_instruments=1, max_orders=16, max_levels=8))
v = views(state)
orders, levels, keys, lidx, counts = (v[k].reshape(-1) if v[k].ndim > 1 else v[k]
                                      for k in ("orders", "levels", "keys", "lidx", "counts"))
slots = []
for i, (side, price) in enumerate([(1, 100), (1, 98), (2, 103), (1, 100), (2, 101), (1, 99), (2, 103)]):
    slot = order_alloc(state, orders)
    orders[slot * ORDER_STRIDE + O_ID] = i + 1
    orders[slot * ORDER_STRIDE + O_LEAVES] = 10 + i
    lv = level_for_price(state, levels, keys, lidx, counts, 8, 2 + side - 1, side, price)
    link_tail(orders, levels, lv, slot)
    slots.append((slot, side))
for slot, side in (slots[0], slots[3], slots[4]):
    lv = orders[slot * ORDER_STRIDE + O_LEVEL]
    unlink(orders, levels, lv, slot)
    order_free(state, orders, slot)
    level_drop_if_empty(state, levels, keys, lidx, counts, 8, lv, side)
print(json.dumps([int(x) for x in state]))
"""


def test_book_primitives_run_as_plain_python() -> None:
    """book.py gives the same state, bit for bit, compiled and as plain Python."""
    plain = json.loads(output_of(BOOK_SCRIPT, jit=False))
    compiled = json.loads(output_of(BOOK_SCRIPT, jit=True))
    assert plain == compiled
    assert any(plain), "the script should have built a book"


ENGINE_SCRIPT = f"""
import sys
from microex.core.engine import MatchingEngine
from microex.protocol.conformance_csv import CommandCsvDecoder, EventCsvEncoder
engine = MatchingEngine()
decoder = CommandCsvDecoder(engine.config.max_instruments)
rows = open({str(CASE)!r}).read().split("\\n")[1:]
print("\\n".join(EventCsvEncoder(decoder).encode(engine.process(decoder.decode(rows)))))
"""


def test_engine_runs_conformance_as_plain_python() -> None:
    out = output_of(ENGINE_SCRIPT, jit=False)
    expected = CASE.with_suffix(".expected").read_text().split("\n")[1:]
    assert [r.rstrip() for r in out.rstrip().split("\n")] == [r.rstrip() for r in "\n".join(expected).rstrip().split("\n")]


STREAM_SCRIPT = """
import json
import numpy as np
from microex.core.config import EngineConfig
from microex.core.engine import MatchingEngine
from microex.core.records import COMMAND

rng = np.random.default_rng(7)
n = 1500
cmds = np.zeros(n, dtype=COMMAND)
cmds["seq"] = np.arange(1, n + 1)
cmds["action"] = rng.choice([1, 1, 1, 2, 3], n)
new_ids = (1 << 62) + rng.integers(0, 1 << 61, n)  # large ids: the id hash must agree in both modes
cmds["order_id"] = np.where(cmds["action"] == 1, new_ids, new_ids[np.maximum(np.arange(n) - rng.integers(0, 30, n), 0)])
cmds["account"] = rng.integers(1, 4, n)
cmds["instrument"] = rng.integers(1, 3, n)
cmds["side"] = rng.integers(1, 3, n)
cmds["ord_type"] = rng.choice([1, 1, 1, 1, 2], n)
cmds["tif"] = rng.choice([1, 1, 1, 2, 3], n)
cmds["flags"] = rng.choice([0, 0, 0, 0, 1, 2], n)
cmds["price_ticks"] = rng.integers(95, 106, n)
cmds["qty_lots"] = rng.integers(1, 20, n)
config = EngineConfig(max_instruments=2, max_orders=64, max_levels=6, id_capacity=2, event_capacity=16,
                      id_hash_multiplier=0x5DEECE66D)
engine = MatchingEngine(config)
events = engine.process(cmds)
print(json.dumps({"events": events.tolist(), "state": engine.state.tolist(), "ids": engine.ids.tolist()}))
"""


def test_engine_plain_python_equals_compiled() -> None:
    """A long random stream (large ids, tight capacities, growth) gives the same events and state both ways."""
    plain = json.loads(output_of(STREAM_SCRIPT, jit=False))
    compiled = json.loads(output_of(STREAM_SCRIPT, jit=True))
    assert len(compiled["events"]) > 3000 and len(compiled["ids"]) > ID_HEADER + 2 * 2
    assert plain == compiled


def test_engine_warm_up_as_plain_python() -> None:
    out = output_of(
        """
        from microex.core.engine import MatchingEngine
        engine = MatchingEngine()
        engine.warm_up()
        print(engine.live_orders)
        """,
        jit=False,
    )
    assert out.strip() == "0"
