"""RingEventSource: the stage's place on the engine's outbound ring, polled from the event loop.

How it works: the stage is consumer `index` of the outbound EVENT ring. It attaches at
construction, before the start-up rebuild (see rebuild.py: from then on the ring keeps
every event for it). `start` polls the ring every `POLL_S` (1 ms) from the loop: a
poll hands what is published to `on_events` (one call per contiguous run, at most
`max_batch` events) and commits, then runs the stage's `step` (one instrument's
fan-out); while either had work the next poll follows at once (call_soon), so a
fan-out that takes milliseconds is cut into steps with a ring poll between each. Polled, not woken: a consumer blocked on its FIFO
makes the engine write to the FIFO after every batch and wake another process, which
costs the order path (the gateways) latency; a 1 ms poll costs market data at most
1 ms and batches more updates per write to each subscriber. The stage never blocks on
subscribers, so it keeps up and never gates the engine for long (the ring holds
2^18 events). Events handed to on_events are ring views, valid until the commit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import numpy as np

from microex.core.records import EVENT, EventKind
from microex.pipeline.ring import RingBuffer

POLL_S = 0.001


class RingEventSource:
    def __init__(self, outbound: str, consumer_index: int, max_batch: int = 8192) -> None:
        self.ring = RingBuffer.attach(outbound, EVENT)
        self.events = self.ring.consumer(consumer_index)
        self.max_batch = max_batch
        self.last_seq = 0  # the last command seq whose BATCH event was seen
        self._on_events: Callable[[np.ndarray], None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None

    def start(self, loop: asyncio.AbstractEventLoop, on_events: Callable[[np.ndarray], None],
              step: Callable[[], bool] | None = None) -> None:
        """Poll from now on; `step` (optional) runs after each poll and says whether it has more to do."""
        self._loop, self._on_events, self._step = loop, on_events, step
        self._poll()

    def _poll(self) -> None:
        start = self._loop.time()
        took = self.pump_once()
        more = self._step() if self._step is not None else False
        if took or more:  # again after the loop's other work, with whatever arrived meanwhile
            self._timer = self._loop.call_soon(self._poll)
        else:
            self._timer = self._loop.call_at(start + POLL_S, self._poll)

    def pump_once(self) -> int:
        """Hand on what is published now (at most max_batch events); returns how many."""
        a, b = self.events.poll(self.max_batch)
        if not len(a):
            return 0
        for part in (a, b):
            if len(part):
                self._on_events(part)
                if part["kind"][-1] == EventKind.BATCH:
                    self.last_seq = int(part["seq"][-1])
        self.events.commit()
        return len(a) + len(b)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._loop = None
        self.events.close()
        self.ring.close()
