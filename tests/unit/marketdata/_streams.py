"""Random engine streams for the market-data tests: commands through a MatchingEngine, events out."""

from __future__ import annotations

import numpy as np

from microex.core.config import EngineConfig
from microex.core.engine import MatchingEngine
from microex.core.records import COMMAND

T0 = 1_700_000_000_000_000_000  # engine time of the first command


def random_commands(seed: int, n: int, instruments: int = 3, spread: int = 10, max_step_ns: int = 2_000_000_000,
                    first_seq: int = 1, first_id: int = 1, t0: int = T0) -> np.ndarray:
    """New/cancel/modify of limit, market, IOC and FOK orders around price 100 on a few instruments."""
    rng = np.random.default_rng(seed)
    c = np.zeros(n, dtype=COMMAND)
    c["seq"] = np.arange(first_seq, first_seq + n)
    c["ts_ns"] = t0 + np.cumsum(rng.integers(0, max_step_ns + 1, n))
    c["action"] = rng.choice([1, 1, 1, 2, 3], n)
    ids = np.arange(first_id, first_id + n)
    c["order_id"] = np.where(c["action"] == 1, ids, np.maximum(ids - rng.integers(1, 40, n), 1))
    c["account"] = rng.integers(1, 5, n)
    c["instrument"] = rng.integers(1, instruments + 1, n)
    c["side"] = rng.integers(1, 3, n)
    c["ord_type"] = rng.choice([1, 1, 1, 1, 1, 2], n)
    c["tif"] = rng.choice([1, 1, 1, 1, 2, 3], n)
    c["flags"] = rng.choice([0, 0, 0, 0, 0, 2], n)
    c["price_ticks"] = 100 + rng.integers(-spread, spread + 1, n)
    c["qty_lots"] = rng.integers(1, 25, n)
    return c


def engine(instruments: int = 3, max_levels: int = 4096) -> MatchingEngine:
    return MatchingEngine(EngineConfig(max_instruments=instruments, max_levels=max_levels, max_orders=1 << 14))


def chunks(events: np.ndarray, rng: np.random.Generator, max_chunk: int = 500):
    """The events cut at random points (as the ring hands them over)."""
    pos = 0
    while pos < len(events):
        k = int(rng.integers(1, max_chunk + 1))
        yield events[pos:pos + k]
        pos += k
