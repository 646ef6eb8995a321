"""RingEngineLink over real shared-memory rings: events reach on_events; FIFO wake-ups only when asked."""

from __future__ import annotations

import os
import uuid

import numpy as np

from microex.core.records import COMMAND, EVENT, EventKind
from microex.gateway.ring_link import RingEngineLink
from microex.pipeline.ring import RingBuffer


def _fifo_bytes(fd: int) -> int:
    try:
        return len(os.read(fd, 4096))
    except BlockingIOError:
        return 0


def test_pump_arms_the_wakeup_only_when_not_polled():
    tag = uuid.uuid4().hex[:8]
    inbound = RingBuffer.create(f"mx-t-in-{tag}", COMMAND, 1 << 10)
    outbound = RingBuffer.create(f"mx-t-out-{tag}", EVENT, 1 << 10, max_consumers=1)
    link = RingEngineLink(inbound.name, outbound.name, 0)
    got = []
    link._on_events = lambda ev: got.append(ev["order_id"].copy())
    try:
        ev = np.zeros(2, dtype=EVENT)
        ev["kind"], ev["order_id"] = EventKind.ACCEPTED, [7, 8]
        link.polled = True  # a busy-polling gateway: empty ring, no wake-up asked
        link.pump()
        outbound.write(ev)
        assert _fifo_bytes(link._fd) == 0  # the publisher did not signal
        link.pump()
        assert [list(g) for g in got] == [[7, 8]]
        link.polled = False
        link.pump()  # a sleeping gateway arms its flag: the next publish signals its FIFO
        outbound.write(ev)
        assert _fifo_bytes(link._fd) == 1
        link.pump()
        assert len(got) == 2
    finally:
        link.close()
        inbound.close()
        outbound.close()
        inbound.unlink()
        outbound.unlink()
