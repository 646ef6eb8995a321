"""RingEngineLink: a gateway process's link to the engine process, over shared-memory rings.

How it works
- Commands: the gateway is the one producer of its own inbound COMMAND ring;
  `submit` writes a read's batch of commands with one `write` (if the ring is
  full it waits: backpressure reaches the gateway's event loop, never the engine).
- Events: the gateway is consumer `index` of the engine's outbound EVENT ring.
  The consumer's wake-up FIFO is registered with the event loop (`add_reader`):
  the pump takes everything published, hands it to `on_events` (one call per
  contiguous run), commits, and when the ring is empty arms its waiting flag,
  re-checks (ring.py's arm/publish handshake: no wake-up is lost) and returns to
  the loop. The engine writes one byte to the FIFO when it publishes while the
  flag is set, so an idle gateway costs no CPU and a busy one no syscalls.
- With `ack_spin_us`, `submit` waits up to that long (polling) for the engine to
  consume what it wrote, then pumps: the reports go out in the same event-loop
  turn that read the orders, with no wake-up in between.
- A 10 ms safety poll covers the JIT-disabled mode, where the handshake has no fence.
Events handed to `on_events` are views into the ring, valid until the commit that
follows the call: the callback must not keep them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import numpy as np

from microex.core.records import COMMAND, EVENT
from microex.pipeline.ring import RingBuffer
from microex.pipeline.wait import _drain

SAFETY_POLL_S = 0.01


class RingEngineLink:
    def __init__(self, inbound: str, outbound: str, consumer_index: int, max_batch: int = 8192,
                 write_timeout: float = 30.0, ack_spin_us: int = 0) -> None:
        self.ack_spin_s = ack_spin_us * 1e-6
        self.inbound = RingBuffer.attach(inbound, COMMAND)
        self.outbound = RingBuffer.attach(outbound, EVENT)
        self.events = self.outbound.consumer(consumer_index)
        self.max_batch = max_batch
        self.write_timeout = write_timeout
        self._on_events: Callable[[np.ndarray], None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._fd = self.events.barrier.wakeup_fd()
        self._safety: asyncio.TimerHandle | None = None
        self.polled = False  # a busy-polling loop pumps us every turn (see pump)

    def start(self, loop: asyncio.AbstractEventLoop, on_events: Callable[[np.ndarray], None]) -> None:
        self._loop, self._on_events = loop, on_events
        loop.add_reader(self._fd, self._wake)
        self._safety_poll()

    def submit(self, cmds: np.ndarray) -> None:
        hi = self.inbound.write(cmds, timeout=self.write_timeout)
        if self.ack_spin_s > 0:
            # The engine commits its inbound rings only after publishing the batch's events,
            # so once it has consumed up to `hi` our reports are in the outbound ring: take
            # them now rather than through a FIFO wake-up (tens of µs on a VM).
            deadline = time.perf_counter() + self.ack_spin_s
            consumed = self.inbound.consumed
            while consumed() < hi and time.perf_counter() < deadline:
                pass
            self.pump()

    def _wake(self) -> None:
        _drain(self._fd)
        self.pump()

    def _safety_poll(self) -> None:
        self.pump()
        self._safety = self._loop.call_later(SAFETY_POLL_S, self._safety_poll)

    def pump(self) -> None:
        """Hand on everything published; then, unless `polled`, ask for a FIFO wake-up at the next publish.

        `polled` (set by a busy-polling gateway, which pumps on every loop turn): never arm. It
        will look again in a moment anyway, and an armed flag would make the engine write to
        our FIFO after every batch (a syscall on the order path) and wake our loop for it."""
        ev, barrier, on_events = self.events, self.events.barrier, self._on_events
        barrier.disarm()
        while True:
            a, b = ev.poll(self.max_batch)
            if not len(a):
                if self.polled:
                    return
                barrier.arm()  # fenced: a publish after this point signals our FIFO
                if ev.available() > 0:
                    barrier.disarm()
                    continue
                return
            on_events(a)
            if len(b):
                on_events(b)
            ev.commit()

    def close(self) -> None:
        if self._loop is not None:
            self._loop.remove_reader(self._fd)
            if self._safety is not None:
                self._safety.cancel()
            self._loop = None
        self.events.barrier.disarm()
        self.events.close()
        self.inbound.close()
        self.outbound.close()
