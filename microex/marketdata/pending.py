"""Pending: what the Fanout was given to publish but has not sent yet, per instrument, in order.

How it works: `add(i, flag, recs)` keeps records for instrument i (the caller's own copy)
(flag 0: MD_UPDATE increments; F_BBO, F_CANDLES, F_TICKER: those records). `pop(i)`
hands back an instrument's entries and forgets them, `next()` the instrument that has
waited longest. `bytes_for(entries, streams)` is what one subscription whose stream
flags are `streams` gets of the entries: every increment with BOOK (a TRADE increment
moves md_seq, so a book subscriber needs it to see there is no gap), only the trades
with TRADES alone, records by their flag, all in publish order, as one string (one send per subscriber, however
many batches were pending). `last_seq(entries)` is the md_seq the increments reach.
Invariant: instruments leave `next()` in the order they first had something pending,
so with the Fanout flushing one instrument per step, an update waits at most one round
of the other instruments' sends.
"""

from __future__ import annotations

import collections

import numpy as np

from microex.core.records import MdKind
from microex.core import raw
from microex.protocol.md_binary import SubFlag

UPDATES = 0
F_BOOK, F_TRADES = int(SubFlag.BOOK), int(SubFlag.TRADES)
K_LEVEL, K_TRADE = int(MdKind.LEVEL), int(MdKind.TRADE)


class Pending:
    def __init__(self) -> None:
        self._entries: dict[int, list[tuple[int, np.ndarray]]] = {}
        self._order: collections.deque[int] = collections.deque()

    def __bool__(self) -> bool:
        return bool(self._entries)

    def add(self, i: int, flag: int, recs: np.ndarray) -> None:
        """Keep recs as they are: the caller hands over an array nobody writes again (a copy)."""
        entries = self._entries.get(i)
        if entries is None:
            entries = self._entries[i] = []
            self._order.append(i)
        entries.append((flag, recs))

    def pop(self, i: int) -> list[tuple[int, np.ndarray]]:
        """Instrument i's entries (empty if none); they are no longer pending."""
        entries = self._entries.pop(i, None)
        if entries is None:
            return []
        self._order.remove(i)
        return entries

    def next(self) -> int:
        """The instrument pending longest (0: none)."""
        return self._order[0] if self._order else 0

    def trades(self, i: int) -> int:
        """How many trade increments of instrument i are pending."""
        return sum(int(np.count_nonzero(r["kind"] == K_TRADE)) for f, r in self._entries.get(i, ()) if f == UPDATES)

    def levels(self, i: int) -> list[np.ndarray]:
        """Instrument i's pending level increments (a new conflation log starts from them)."""
        return [raw.take(r, r["kind"] == K_LEVEL) for f, r in self._entries.get(i, ()) if f == UPDATES]


def bytes_for(entries: list[tuple[int, np.ndarray]], streams: int) -> bytes:
    parts = []
    for flag, recs in entries:
        if flag == UPDATES:
            if streams & F_BOOK:  # every increment: trades move md_seq too, and md_seq finds the gaps
                parts.append(recs.tobytes())
            elif streams & F_TRADES:
                parts.append(raw.take(recs, recs["kind"] == K_TRADE).tobytes())
        elif streams & flag:
            parts.append(recs.tobytes())
    return b"".join(parts)


def last_seq(entries: list[tuple[int, np.ndarray]]) -> int:
    """The md_seq the increments among entries reach (0: none)."""
    seqs = [int(r["md_seq"][-1]) for f, r in entries if f == UPDATES and len(r)]
    return max(seqs) if seqs else 0
