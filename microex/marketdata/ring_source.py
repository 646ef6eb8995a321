"""RingEventSource: the stage's place on the engine's outbound ring, woken through the event loop.

How it works (the pattern of gateway/ring_link.py, without an inbound ring): the stage
is consumer `index` of the outbound EVENT ring. It attaches at construction, before
the start-up rebuild (see rebuild.py: from then on the ring keeps every event for it).
`start` registers the consumer's wake-up FIFO with the loop (`add_reader`); `pump`
hands everything published to `on_events` (one call per contiguous run, at most
`max_batch` events), commits, and when the ring is empty arms the waiting flag,
re-checks (ring.py's arm/publish handshake: no wake-up is lost) and returns to the
loop. A 10 ms safety poll covers the JIT-disabled mode, where the handshake has no
fence. The stage never blocks on subscribers, so it keeps up and never gates the
engine for long. Events handed to on_events are ring views, valid until the commit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import numpy as np

from microex.core.records import EVENT, EventKind
from microex.pipeline.ring import RingBuffer
from microex.pipeline.wait import _drain

SAFETY_POLL_S = 0.01


class RingEventSource:
    def __init__(self, outbound: str, consumer_index: int, max_batch: int = 8192) -> None:
        self.ring = RingBuffer.attach(outbound, EVENT)
        self.events = self.ring.consumer(consumer_index)
        self.max_batch = max_batch
        self.last_seq = 0  # the last command seq whose BATCH event was seen
        self._on_events: Callable[[np.ndarray], None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._fd = self.events.barrier.wakeup_fd()
        self._safety: asyncio.TimerHandle | None = None

    def start(self, loop: asyncio.AbstractEventLoop, on_events: Callable[[np.ndarray], None]) -> None:
        self._loop, self._on_events = loop, on_events
        loop.add_reader(self._fd, self._wake)
        self._safety_poll()

    def _wake(self) -> None:
        _drain(self._fd)
        self.pump()

    def _safety_poll(self) -> None:
        self.pump()
        self._safety = self._loop.call_later(SAFETY_POLL_S, self._safety_poll)

    def pump(self) -> None:
        ev, barrier, on_events = self.events, self.events.barrier, self._on_events
        barrier.disarm()
        while True:
            a, b = ev.poll(self.max_batch)
            if not len(a):
                barrier.arm()  # fenced: a publish after this point signals our FIFO
                if ev.available() > 0:
                    barrier.disarm()
                    continue
                return
            for part in (a, b):
                if len(part):
                    on_events(part)
                    if part["kind"][-1] == EventKind.BATCH:
                        self.last_seq = int(part["seq"][-1])
            ev.commit()

    def close(self) -> None:
        if self._loop is not None:
            self._loop.remove_reader(self._fd)
            if self._safety is not None:
                self._safety.cancel()
            self._loop = None
        self.events.barrier.disarm()
        self.events.close()
        self.ring.close()
