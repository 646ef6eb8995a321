"""Consumer: one reader of a RingBuffer, with its own Sequence in the shared header.

See ring.py for the protocol (why a reader never sees a half-written slot, how
commits gate the writer, and the wake-up handshake with a blocked writer).
"""

from __future__ import annotations

import os
import select
import time
from typing import TYPE_CHECKING

import numpy as np

from microex.pipeline.shm import (C_ATTACHED, C_PID, C_SEQ, C_START, JOINING, LINE, READY, W_CONSUMERS, W_CURSOR, W_WAITING, W_WRITER_WAITING, proc_stat, process_alive)
from microex.pipeline.wait import FENCED, BlockingWaitStrategy, WaitStrategy, _drain, full_fence, signal_waiter

if TYPE_CHECKING:
    from microex.pipeline.ring import RingBuffer


class Consumer:
    """One consumer's view of a ring: a read position (local) and a Sequence (shared).

    `poll`/`read` advance the read position; `commit` publishes the Sequence that gates
    the writer. Records handed out stay intact until committed past.
    """

    def __init__(self, ring: RingBuffer, index: int, strategy: WaitStrategy):
        if not 0 <= index < ring.max_consumers:
            raise ValueError(f"consumer index {index} outside 0..{ring.max_consumers - 1}")
        self.ring, self.index, self.strategy = ring, index, strategy
        q = ring._q
        base = W_CONSUMERS + index * LINE
        self._seq_word, self._attached_word = base + C_SEQ, base + C_ATTACHED
        self._flag_byte = 8 * W_WAITING + index
        if q[base + C_ATTACHED]:
            pid = q[base + C_PID]
            if process_alive(pid, q[base + C_START]):
                raise RuntimeError(f"ring {ring.name!r}: consumer {index} is attached by live process {pid}")
        pid = os.getpid()
        stat = proc_stat(pid)
        q[base + C_PID], q[base + C_START] = pid, stat[1] if stat else 0
        ring._b[self._flag_byte] = 0
        # Join as the Disruptor adds a gating sequence: gate at the cursor first, make that
        # visible (fence), then start at the cursor read after it. A writer that had not
        # seen us yet was gated by a cursor it had published, with a fence, before it
        # looked, so it overwrote only below what we read now (see the module docstring).
        q[base + C_SEQ] = q[W_CURSOR]
        q[base + C_ATTACHED] = JOINING
        full_fence()
        self._pos = q[W_CURSOR]
        q[base + C_SEQ] = self._pos
        q[base + C_ATTACHED] = READY  # wait_for_consumers() lets the writer start only now
        self._q, self._mask, self._cap = q, ring._mask, ring.capacity
        self._slots, self._empty = ring.slots, ring._empty
        self._nothing = (ring._empty, ring._empty)
        self.barrier = _CursorBarrier(ring, index)

    @property
    def position(self) -> int:
        """Next sequence poll/read will return."""
        return self._pos

    @property
    def sequence(self) -> int:
        """The committed Sequence (what gates the writer)."""
        return self._q[self._seq_word]

    @property
    def attached(self) -> bool:
        return bool(self._q[self._attached_word])

    def available(self) -> int:
        return self._q[W_CURSOR] - self._pos

    def poll(self, max_n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Published records after the read position, as (first, second) views; never blocks.

        Both are empty when nothing is new; `second` is empty unless the batch wraps.
        At most `max_n` records (all available when None).
        """
        pos = self._pos
        n = self._q[W_CURSOR] - pos
        if n <= 0:
            return self._nothing
        if max_n is not None and n > max_n:
            n = max_n
        self._pos = pos + n
        i = pos & self._mask
        j = i + n
        if j <= self._cap:
            return self._slots[i:j], self._empty
        return self._slots[i:], self._slots[:j - self._cap]

    def poll_into(self, out: np.ndarray, max_n: int | None = None) -> int:
        """Copy up to min(len(out), max_n) new records into `out`; return how many. Never blocks."""
        if out.dtype != self.ring.dtype:
            raise TypeError(f"out has dtype {out.dtype}, the ring holds {self.ring.dtype}")
        pos = self._pos
        n = min(self._q[W_CURSOR] - pos, len(out) if max_n is None else min(max_n, len(out)))
        if n <= 0:
            return 0
        self._pos = pos + n
        dst, src = out.view(self.ring._void), self.ring._raw  # plain-bytes copies, see write()
        i = pos & self._mask
        j = i + n
        if j <= self._cap:
            dst[:n] = src[i:j]
        else:
            split = self._cap - i
            dst[:split] = src[i:]
            dst[split:n] = src[:j - self._cap]
        return n

    def wait(self, min_seq: int, strategy: WaitStrategy | None = None, timeout: float | None = None) -> int:
        """Block until the cursor is >= min_seq; return the cursor (< min_seq only on timeout)."""
        c = self._q[W_CURSOR]
        if c >= min_seq:
            return c
        return (strategy or self.strategy).wait(self.barrier, min_seq, timeout)

    def read(self, max_n: int | None = None, strategy: WaitStrategy | None = None,
             timeout: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Like poll, but first waits for at least one record (empty views only on timeout)."""
        pos = self._pos
        if self._q[W_CURSOR] <= pos:
            (strategy or self.strategy).wait(self.barrier, pos + 1, timeout)
        return self.poll(max_n)

    def commit(self, seq: int | None = None) -> None:
        """Release every record below `seq` (default: everything polled) to the writer."""
        q = self._q
        if seq is None:
            seq = self._pos
        elif not q[self._seq_word] <= seq <= self._pos:
            raise ValueError(f"commit({seq}) outside committed {q[self._seq_word]} .. read {self._pos}")
        q[self._seq_word] = seq
        full_fence()  # the store must be visible before we look for a blocked writer
        if q[W_WRITER_WAITING]:
            signal_waiter(self.ring._fd("w"))

    def close(self) -> None:
        """Detach: this consumer stops gating the writer."""
        if not self.ring._closed:
            self._q[self._attached_word] = 0
            self.ring._b[self._flag_byte] = 0

    def __enter__(self) -> Consumer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __reduce__(self):
        raise TypeError("a Consumer belongs to the process that attached it; pass the ring and "
                        "call ring.consumer(index) in the child")


class _CursorBarrier:
    """A consumer's barrier: the published cursor; blocked consumers use their own FIFO."""

    lossless = FENCED

    def __init__(self, ring: RingBuffer, index: int):
        q = ring._q
        self.value = lambda: q[W_CURSOR]
        self._ring, self._who, self._flag_byte = ring, str(index), 8 * W_WAITING + index

    def arm(self) -> None:
        self._ring._b[self._flag_byte] = 1
        full_fence()  # visible before the strategy re-reads the cursor

    def disarm(self) -> None:
        self._ring._b[self._flag_byte] = 0

    def wakeup_fd(self) -> int:
        return self._ring._fd(self._who)


def wait_any(consumers: list[Consumer], timeout: float, spin_s: float = 0.0, block: bool = True,
             fds: tuple[int, ...] = ()) -> bool:
    """Block until any of `consumers` has a record, or `timeout` seconds pass; True if one has.

    First polls for `spin_s` seconds (yielding the core between polls, so a spinning
    waiter gives way to any runnable process): a producer that publishes within that
    time is seen without a kernel wake-up, which costs tens of µs on a VM. Then arms
    every consumer's wake-up flag, re-reads (the arm/publish handshake of ring.py: no
    wake-up is lost) and sleeps in one select() over all their FIFOs. Without the
    fences (JIT disabled) select() wakes at least every 100 µs. With block=False it
    returns after the polling instead (a busy-polling engine that never sleeps).
    `fds` (e.g. a colocated gateway's epoll fd) also end the sleep when readable.
    """
    for _ in range(64):
        for c in consumers:
            if c.available() > 0:
                return True
    if spin_s > 0:
        deadline = time.perf_counter() + spin_s
        while time.perf_counter() < deadline:
            for c in consumers:
                if c.available() > 0:
                    return True
            os.sched_yield()
    if not block:
        return False
    barriers = [c.barrier for c in consumers]
    for b in barriers:
        b.arm()
    try:
        for c in consumers:
            if c.available() > 0:
                return True
        if not FENCED:
            timeout = min(timeout, BlockingWaitStrategy.UNFENCED_POLL_S)
        wakeups = [b.wakeup_fd() for b in barriers]
        ready = select.select(wakeups + list(fds), (), (), timeout)[0]
        for fd in ready:
            if fd not in fds:
                _drain(fd)
        return any(c.available() > 0 for c in consumers)
    finally:
        for b in barriers:
            b.disarm()
