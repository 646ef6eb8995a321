"""LevelLog: the latest state of every price level changed on one instrument, for conflation.

How it works: while at least one subscriber of an instrument is conflated (fanout.py), each
published LEVEL update is recorded under its (price, side): a dict from that key to a row
of a growing MD_UPDATE array, overwritten by later updates of the same level. A conflated
subscriber that was last sent md_seq L is caught up by `since(L)`: the rows changed after
L, in md_seq order, as SNAPSHOT_LEVEL frames. One log serves every conflated subscriber
of the instrument (each asks with its own L), so conflation costs one dict update per
published level, not one per subscriber.
Invariant: for every level changed after the log started, its row holds its latest state
(qty 0: gone), so the state at L plus since(L) is the book now.
"""

from __future__ import annotations

import numpy as np

from microex.core.records import MD_UPDATE, MdMsg
from microex.core.raw import take


class LevelLog:
    """The latest state of every level changed while someone is conflated on an instrument."""

    def __init__(self) -> None:
        self.rows: dict[int, int] = {}
        self.recs = np.zeros(64, MD_UPDATE)

    def __len__(self) -> int:
        return len(self.rows)

    def add(self, levels: np.ndarray) -> None:
        keys = (levels["price_ticks"] * 4 + levels["side"]).tolist()
        rows = self.rows
        for j, key in enumerate(keys):
            r = rows.get(key)
            if r is None:
                r = rows[key] = len(rows)
                if r >= len(self.recs):
                    grown = np.zeros(2 * len(self.recs), MD_UPDATE)
                    grown[: len(self.recs)] = self.recs
                    self.recs = grown
            self.recs[r] = levels[j]  # element assignment copies the fields into zeroed memory

    def since(self, seq: int) -> np.ndarray:
        """Levels last changed after `seq`, in md_seq order, as SNAPSHOT_LEVEL frames (a copy)."""
        recs = self.recs[: len(self.rows)]
        out = take(recs, recs["md_seq"] > seq)
        out = take(out, np.argsort(out["md_seq"], kind="stable"))
        out["msg_type"] = MdMsg.SNAPSHOT_LEVEL
        return out
