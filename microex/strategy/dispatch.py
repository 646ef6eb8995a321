"""The dispatch table: instrument -> subscribed strategies, as CSR arrays and callback lists.

How it works. Subscriptions are declared when a strategy is registered and
never change afterwards, so the table is built once (and again only when a
strategy stops): `offsets[inst]:offsets[inst + 1]` slices `subs`, the strategy
indices subscribed to `inst`, in registration order. These int arrays are what
the numba kernels use (pnl.mark_batch: routed-event counts, re-marking and
loss checks for one MARKET chunk, with the `active` mask).

Python callbacks cannot be called from numba, so the same table is also kept
as per-instrument lists of bound methods, `book_cbs[inst]` and
`trade_cbs[inst]`, holding only running strategies that override `on_book` /
`on_trade` (a no-op base method is never called): the runtime's fan-out loop
is then one list walk per MARKET record, with no lookup, test or index per
call (measured in docs/strategies.md). The lists are rebuilt as new objects
when a strategy stops, so a fan-out in progress finishes over the old list.

Invariants: `subs` holds every registered strategy (running or not; positions
of a stopped one are still marked); the callback lists hold only running ones;
every list is in registration order, so dispatch order is deterministic.
"""

from __future__ import annotations

import numpy as np


class DispatchTable:
    def __init__(self, max_instruments: int) -> None:
        self.max_instruments = max_instruments
        self.subscriptions: list[tuple[int, ...]] = []  # per strategy index
        self.offsets = np.zeros(max_instruments + 2, np.int64)
        self.subs = np.zeros(0, np.int64)
        self.active = np.zeros(16, np.uint8)
        self.book_cbs: list[list] = [[] for _ in range(max_instruments + 1)]
        self.trade_cbs: list[list] = [[] for _ in range(max_instruments + 1)]
        self._handlers: list[tuple] = []  # per strategy: (on_book or None, on_trade or None)
        self._dirty = False

    @property
    def dirty(self) -> bool:
        return self._dirty

    def add(self, instruments, on_book, on_trade) -> int:
        """Register a strategy's subscription; returns its index. on_book/on_trade: bound methods, or
        None for a strategy that does not handle that kind of event."""
        insts = tuple(dict.fromkeys(int(i) for i in instruments))
        for i in insts:
            if not 1 <= i <= self.max_instruments:
                raise ValueError(f"instrument {i} is outside 1..{self.max_instruments}")
        idx = len(self.subscriptions)
        self.subscriptions.append(insts)
        self._handlers.append((on_book, on_trade))
        if idx >= len(self.active):
            grown = np.zeros(2 * len(self.active), np.uint8)
            grown[: len(self.active)] = self.active
            self.active = grown
        self.active[idx] = 1
        self._dirty = True
        return idx

    def deactivate(self, idx: int) -> None:
        self.build()
        self.active[idx] = 0
        self._rebuild_callbacks(touched=self.subscriptions[idx])

    def build(self) -> None:
        """CSR arrays and callback lists from the subscriptions (after registrations)."""
        if not self._dirty:
            return
        counts = np.zeros(self.max_instruments + 2, np.int64)
        for insts in self.subscriptions:
            for i in insts:
                counts[i + 1] += 1
        self.offsets = np.cumsum(counts)
        subs = np.zeros(int(self.offsets[-1]), np.int64)
        fill = self.offsets[:-1].copy()
        for s, insts in enumerate(self.subscriptions):
            for i in insts:
                subs[fill[i]] = s
                fill[i] += 1
        self.subs = subs
        self._rebuild_callbacks(touched=range(1, self.max_instruments + 1))
        self._dirty = False

    def subscribers(self, instrument: int) -> np.ndarray:
        return self.subs[self.offsets[instrument]:self.offsets[instrument + 1]]

    def _rebuild_callbacks(self, touched) -> None:
        for inst in touched:
            strategies = [int(s) for s in self.subscribers(inst) if self.active[s]]
            self.book_cbs[inst] = [self._handlers[s][0] for s in strategies if self._handlers[s][0] is not None]
            self.trade_cbs[inst] = [self._handlers[s][1] for s in strategies if self._handlers[s][1] is not None]
