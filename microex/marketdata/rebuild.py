"""Start-up: rebuild the stage's MarketState from the venue's data directory before attaching.

How it works. The engine recovers from its journal before it publishes anything, and
a stage that (re)starts later must begin with the same book. The stage therefore
(1) attaches to the outbound ring first (from then on every event is kept for it),
(2) calls `rebuild`, which reads the data directory with the pipeline's own pieces
and returns the state and the last command seq N it covers, and (3) applies ring
events of commands > N only (MarketState.apply's min_seq).
Why no event is lost or doubled: an event published before the attach belongs to a
command journaled before it (commands are journaled before their events are
published), so the journal read after the attach covers it (seq <= N: skipped in the
ring); a command the read did not see (seq > N, a torn tail included) had its events
published after the read began, so after the attach: all of them are in the ring.
Two ways, chosen by the journal:
- replay (the journal starts at seq 1 and holds at most `max_replay` commands): every
  command through a fresh engine, its events through MarketState: books, md seqs,
  tape, candles and ticker are exactly those of a stage that never stopped, so a
  client's md seqs stay valid across a venue restart;
- snapshot: the newest engine snapshot, its books seeded into MarketState (md seqs
  start at 0 and the tape, candles and ticker hold only what follows), then the
  journal after it with its events (a pruned or very long journal).
"""

from __future__ import annotations

from pathlib import Path

from microex.core.engine import MatchingEngine
from microex.marketdata.state import MarketState
from microex.pipeline.datadir import DataDir
from microex.pipeline.journal import RECORD_SIZE, Journal, list_segments
from microex.pipeline.snapshot import load_newest

MAX_REPLAY = 20_000_000  # commands: a few seconds of kernel time


def rebuild(data_dir: str | Path, max_replay: int = MAX_REPLAY, **state_options) -> tuple[MarketState, int, str]:
    """(state, last command seq it covers, "replay" | "snapshot" | "empty")."""
    data = DataDir(data_dir)
    config, _, _ = data.load()
    state = MarketState(config.max_instruments, config.max_levels, **state_options)
    segments = list_segments(data.journal) if data.journal.is_dir() else []
    if not segments:
        return state, 0, "empty"
    engine = data.new_engine()
    size = sum(p.stat().st_size for _, p in segments) // RECORD_SIZE
    if segments[0][0] == 1 and size <= max_replay:
        return state, _run(data, engine, state, 1), "replay"
    start = load_newest(data.snapshots, engine)
    _seed(state, engine)
    return state, _run(data, engine, state, start + 1, start), "snapshot"


def _run(data: DataDir, engine: MatchingEngine, state: MarketState, from_seq: int, last: int = 0) -> int:
    def sink(events) -> None:
        state.apply(events)

    for batch in Journal.read(data.journal, from_seq):
        engine.run(batch, sink)
        last = int(batch["seq"][-1])
    return last


def _seed(state: MarketState, engine: MatchingEngine) -> None:
    for i in range(1, state.n_instruments + 1):
        for side in (1, 2):
            state.seed_book(i, side, engine.depth(i, side, state.max_levels))
