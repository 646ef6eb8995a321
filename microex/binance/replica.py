"""Replica: a second MatchingEngine that follows the engine's journal, for the edge's queries.

How it works
- Built like recovery (pipeline/recovery.py): `DataDir.new_engine()` (the same
  engine.json identity: config, venue, id-hash multiplier), a snapshot, then the
  journal after it. The core is deterministic, so after the same commands the
  replica's state is bit-identical to the engine's (equal digests): balances, open
  orders and books read from it are exact, not estimates.
- Start point (`choose_start`): the edge's history (orders, trades, candles) is what
  the replica's events show, so it starts `history_commands` before the journal's
  end when it can: the newest start point (an empty engine if the journal begins at
  seq 1, or a snapshot) at or before that, else the oldest one there is, but never
  one that would replay more than `max_replay` commands when a newer one exists.
- `poll()` takes the journal's new frames (tailer.py) and runs each through the
  engine; `on_batch(cmds, events)` gets every frame's commands and all their events
  (EVENT records, a copy), in order. The caller polls every millisecond or so.
- `open_orders()` lists the resting orders from the order pool (for the history
  seeded at a snapshot, whose earlier events the replica never saw).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from microex.binance.tailer import JournalTailer
from microex.core.engine import MatchingEngine
from microex.core.records import EVENT
from microex.core.state import H_BUMP_ORDER, O_ACCOUNT, O_ID, O_LEAVES, O_META, O_PRICE, views
from microex.pipeline.datadir import DataDir
from microex.pipeline.journal import RECORD_SIZE, list_segments
from microex.pipeline.snapshot import list_snapshots, load_snapshot


def choose_start(journal_first: int | None, journal_last: int, snapshots: list[int], history_commands: int,
                 max_replay: int) -> list[int]:
    """Start points to try in order (0: an empty engine; s: the snapshot at seq s)."""
    candidates = sorted(set(([0] if journal_first in (None, 1) else [])
                            + [s for s in snapshots if journal_first is None or s + 1 >= journal_first]))
    if not candidates:
        return []
    target = journal_last - history_commands
    before = [c for c in candidates if c <= target]
    best = before[-1] if before else candidates[0]
    newer = [c for c in candidates if c > best]
    while newer and journal_last - best > max_replay:
        best, newer = newer[0], newer[1:]
    # fallbacks if a snapshot does not load: newer ones first, then older
    return [best] + [c for c in candidates if c > best] + [c for c in reversed(candidates) if c < best]


class Replica:
    def __init__(self, data: str, history_commands: int = 1_000_000, max_replay: int = 10_000_000) -> None:
        self.data = DataDir(data)
        segments = list_segments(self.data.journal) if self.data.journal.is_dir() else []
        journal_first = segments[0][0] if segments else None
        size = sum(p.stat().st_size for _, p in segments)
        snaps = dict(list_snapshots(self.data.snapshots)) if self.data.snapshots.is_dir() else {}
        journal_last = max([(journal_first or 1) - 1 + size // RECORD_SIZE, *snaps])  # an upper bound
        self.engine: MatchingEngine | None = None
        for start in choose_start(journal_first, journal_last, sorted(snaps), history_commands, max_replay):
            engine = self.data.new_engine()
            if start == 0 or load_snapshot(snaps[start], engine) == start:
                self.engine, self.start_seq = engine, start
                break
        if self.engine is None:
            raise RuntimeError(f"{self.data.root}: no snapshot loads and the journal does not start at seq 1")
        self.seq = self.start_seq
        self.tailer = JournalTailer(self.data.journal, self.seq + 1)
        self._chunks: list[np.ndarray] = []

    @property
    def config(self):
        return self.engine.config

    def poll(self, on_batch: Callable[[np.ndarray, np.ndarray], None], max_frames: int = 1 << 30) -> int:
        """Run the journal's new frames; the number of commands run."""
        done = 0
        for cmds in self.tailer.poll():
            events = self.run(cmds)
            self.seq = int(cmds["seq"][-1])
            done += len(cmds)
            on_batch(cmds, events)
        return done

    def run(self, cmds: np.ndarray) -> np.ndarray:
        chunks = self._chunks
        chunks.clear()
        total = self.engine.run(cmds, lambda ev: chunks.append(ev.copy()))
        if len(chunks) == 1:
            return chunks[0]
        out = np.zeros(total, dtype=EVENT)
        pos = 0
        for c in chunks:
            out[pos:pos + len(c)] = c
            pos += len(c)
        return out

    def open_orders(self) -> np.ndarray:
        """Resting orders from the pool: int64 rows (order id, account, instrument, side, flags, price, leaves)."""
        state = self.engine.state
        pool = views(state)["orders"][: int(state[H_BUMP_ORDER])]
        live = pool[pool[:, O_ID] != 0]
        meta = live[:, O_META]
        return np.stack([live[:, O_ID], live[:, O_ACCOUNT], meta >> 8, meta & 3, (meta >> 2) & 63,
                         live[:, O_PRICE], live[:, O_LEAVES]], axis=1) if len(live) else np.zeros((0, 7), np.int64)

    def close(self) -> None:
        self.tailer.close()
