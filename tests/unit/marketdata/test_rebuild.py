"""Start-up rebuild from a data directory: journal replay (same md seqs) or newest snapshot + tail."""

from __future__ import annotations

import numpy as np

from microex.core.config import EngineConfig
from microex.marketdata.rebuild import rebuild
from microex.marketdata.state import MarketState
from microex.pipeline.datadir import DataDir
from microex.pipeline.journal import Journal
from microex.pipeline.snapshot import write_snapshot

from tests.unit.marketdata._streams import random_commands

CONFIG = EngineConfig(max_instruments=3, max_levels=256, max_orders=1 << 12, id_hash_multiplier=0x1E3779B97F4A7C15)


def _venue(tmp_path, n: int, snapshot_at: int | None):
    """A data directory with n journaled commands (as the engine process leaves it) and the
    live stage's state after all of them."""
    data = DataDir(tmp_path / "data")
    data.create(CONFIG, None)
    engine = data.new_engine()
    live = MarketState(3, 256)
    cmds = random_commands(17, n, spread=12)
    with Journal.open(data.journal, "none") as journal:
        for k in range(0, n, 250):
            batch = cmds[k:k + 250]
            journal.append(batch)
            engine.run(batch, live.apply)
            if snapshot_at is not None and int(batch["seq"][-1]) == snapshot_at:
                write_snapshot(data.snapshots, engine, snapshot_at)
    return data, engine, live


def _same_books(state: MarketState, engine) -> None:
    for i in (1, 2, 3):
        for side in (1, 2):
            assert state.depth(i, side, 10**6) == engine.depth(i, side, 10**6)


def test_replay_rebuilds_everything_of_a_stage_that_never_stopped(tmp_path):
    data, engine, live = _venue(tmp_path, 3000, snapshot_at=1500)
    state, last, how = rebuild(data.root)
    assert (how, last) == ("replay", 3000)
    _same_books(state, engine)
    for name in ("inst", "tape", "candles", "cn"):
        assert np.array_equal(getattr(state, name), getattr(live, name)), name
    now = int(random_commands(17, 3000)["ts_ns"][-1])
    assert state.tickers(now).tobytes() == live.tickers(now).tobytes()


def test_snapshot_path_seeds_the_books_then_applies_the_tail(tmp_path):
    data, engine, live = _venue(tmp_path, 3000, snapshot_at=1500)
    state, last, how = rebuild(data.root, max_replay=100)
    assert (how, last) == ("snapshot", 3000)
    _same_books(state, engine)
    assert all(0 < state.md_seq(i) < live.md_seq(i) for i in (1, 2, 3))  # only the tail's updates are counted
    assert state.bbo(1) == live.bbo(1)


def test_an_empty_venue(tmp_path):
    data = DataDir(tmp_path / "data")
    data.create(CONFIG, None)
    state, last, how = rebuild(data.root)
    assert (how, last, state.n_instruments, state.max_levels) == ("empty", 0, 3, 256)
