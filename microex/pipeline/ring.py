"""RingBuffer: fixed-size records in shared memory, one writer, several consumers.

How it works
- One `multiprocessing.shared_memory` segment: a header, then `capacity` (a power of two)
  slots of one numpy record dtype. Sequence numbers are int64 and only grow; sequence s
  lives in slot `s & (capacity - 1)`.
- The header holds the ring's shape (magic, layout version, capacity, itemsize, a
  fingerprint of the dtype, max consumers) so `attach` with another dtype or a
  non-ring segment fails with a clear message; then, each on its own 128-byte line (two
  cache lines, so the adjacent-line prefetcher does not make them share), the writer's
  published `cursor`, the writer's waiting flag, one waiting byte per consumer, and one
  line per consumer: its `Sequence` (next sequence it has not consumed), attached flag,
  pid and process start time.
- Writer (one process at a time; it resumes from the cursor when it creates or attaches
  the ring): `claim(n)` waits until n slots are free and returns their views, the caller
  fills them, `publish(hi)` stores the cursor. `write(records)` does both, in as many
  chunks as free space requires.
  Invariant: the writer never fills sequence s while an attached consumer's Sequence is
  <= s - capacity, i.e. it never overwrites a slot a live consumer has not committed.
  The slowest Sequence is read only when the cached limit is used up, so a claim costs
  O(1) Python calls, not O(consumers).
- Consumer `i` (`ring.consumer(i)`, one process per index): `poll(max_n)` returns the
  published records after its read position as one or two zero-copy views (two when
  they wrap past the end) without blocking, `read`/`wait` block per a wait strategy, and
  `commit(seq)` stores its Sequence, which frees the slots below seq for the writer.
  Views stay valid until the consumer commits past them.
- A consumer starts at the cursor of the moment it attaches, so consumers attach before
  the writer starts publishing (`wait_for_consumers(n)` lets the writer wait for them).
  Joining a running ring is safe too, as in the Disruptor: the consumer first gates at
  the cursor, fences, then starts at the cursor read after that. Both the writer's
  publish and the consumer's join fence between their store and their load, so a writer
  that looked at the Sequences without seeing the newcomer was gated by values at most
  the cursor the newcomer starts from. With no consumer attached the writer gates on its
  own cursor: it overwrites a record one lap after publishing it and looks for new
  consumers again at least once a lap.

Why a reader never sees a half-written slot (platform assumption: x86-64)
- The writer copies records into slots (numpy calls) and only then stores the cursor (an
  aligned 8-byte store through a memoryview, atomic on x86-64). These are separate C
  calls made by the interpreter, so no compiler reorders them, and x86-64's TSO memory
  model keeps stores in program order: a reader that sees the cursor sees the slots.
- A reader loads the cursor first and the slots after; TSO does not reorder loads with
  loads. A consumer's reads of a slot happen before its commit store (TSO never lets a
  store pass an earlier load), so the writer reuses a slot only after it was read.
- On a weakly ordered CPU (ARM, POWER) this argument does not hold: release/acquire
  fences would be needed around the cursor. The module warns at import there.

Blocked waiters (BlockingWaitStrategy) and the lost-wake-up race
- A waiter sets its waiting flag, then re-reads the sequence it waits on; the other side
  stores its sequence, then reads the flag and, only if set, writes one byte to the
  waiter's wake-up FIFO. x86-64 may let a load pass an earlier store, so both sides put
  a full fence (a numba intrinsic: `lock or` on x86-64) between their store and their
  load: then at least one of them sees the other and no wake-up is lost, so the waiter
  needs no polling (its 10 ms select() timeout is a backstop; with numba's JIT disabled
  there is no fence and it polls every <= 100 µs). The fast path (nobody blocked) costs
  one fence (~70 ns with the call) and one 8-byte load per publish and per commit.
- Wake-ups go through named FIFOs next to the segment (`/dev/shm/<name>.wake.w` for the
  writer, `.wake.<i>` for consumer i), opened O_RDWR|O_NONBLOCK by whoever needs them.
  A name works in any process: forked children, children started with 'spawn', and
  unrelated processes that `attach`, which an eventfd inherited through fork would not.

Dead consumers
- A consumer line records its pid and start time. When the writer has waited longer
  than `dead_consumer_timeout` seconds (default 1 s) for space, it checks each consumer
  holding it back: if the pid is gone, a zombie, or now belongs to a newer process (start
  time differs), the consumer is detached (its flag cleared; it no longer gates) and the
  writer goes on. A live consumer that is merely slow is never detached: backpressure.
  Attaching to an index whose recorded process is dead takes the index over.

Lifetime: `close()` unmaps (views handed out keep the mapping alive until dropped),
`unlink()` removes the segment and FIFOs. Only the creator registers the segment with
multiprocessing's resource tracker (which unlinks it if the creator dies without doing
so); attachers do not, so their exit never destroys a ring others still use.
"""

from __future__ import annotations

import os
import platform
import time
import warnings
from multiprocessing.shared_memory import SharedMemory

import numpy as np

from microex.pipeline.ring_consumer import Consumer
from microex.pipeline.shm import (C_ATTACHED, C_PID, C_SEQ, C_START, LINE, MAGIC, MAX_CONSUMERS, NEVER, READY, Untracked, VERSION, W_CAPACITY, W_CONSUMERS, W_CREATOR, W_CURSOR, W_DTYPE_FP, W_HEADER_BYTES, W_ITEMSIZE, W_MAGIC, W_MAX_CONSUMERS, W_VERSION, W_WAITING, W_WRITER_WAITING, advise_huge_pages, attach_untracked, close_shm, dtype_fingerprint, header_bytes, process_alive)
from microex.pipeline.wait import (FENCED, BlockingWaitStrategy, WaitStrategy, full_fence, open_wake_fifo,
                                   signal_waiter, wake_path)

if platform.machine().lower() not in ("x86_64", "amd64"):
    warnings.warn("microex.pipeline.ring assumes x86-64 store/load ordering (TSO); "
                  f"on {platform.machine()} a reader may see a slot before its contents", RuntimeWarning)

class RingAttachError(ValueError):
    """The named segment is not a ring of this dtype (or not a ring at all)."""


class RingBuffer:
    """A shared-memory ring of `capacity` records of one dtype: one writer, several consumers."""

    def __init__(self, shm: SharedMemory, dtype: np.dtype, *, owner: bool,
                 strategy: WaitStrategy | None, dead_consumer_timeout: float):
        self._shm = shm
        self._closed = False
        self.name = shm.name
        self.dtype = np.dtype(dtype)
        self.owner = owner
        self.strategy = strategy or BlockingWaitStrategy()
        self.dead_consumer_timeout = dead_consumer_timeout
        self._q = shm.buf.cast("q")  # header words: 8-byte loads/stores, Python ints
        self._b = shm.buf.cast("B")  # header bytes: the per-consumer waiting flags
        q = self._q
        self.capacity = q[W_CAPACITY]
        self.max_consumers = q[W_MAX_CONSUMERS]
        self._mask = self.capacity - 1
        self.slots = np.ndarray((self.capacity,), self.dtype, buffer=shm.buf, offset=q[W_HEADER_BYTES])
        self._empty = self.slots[:0]
        self._void = np.dtype((np.void, self.dtype.itemsize))
        self.raw = self.slots.view(self._void)  # the slots as opaque records: fast whole-record copies
        self._raw = self.raw
        self._src = self._src_raw = None  # write()'s one-entry cache of a source array's raw view
        mc = self.max_consumers
        self._consumer_words = [(W_CONSUMERS + i * LINE + C_ATTACHED, W_CONSUMERS + i * LINE + C_SEQ)
                                for i in range(mc)]
        self._waiting_words = tuple(range(W_WAITING, W_WAITING + (mc + 7) // 8))
        # writer-local state: claimed (filled or being filled) up to _claimed; may claim
        # below _limit without looking at the consumers again
        self._claimed = q[W_CURSOR]
        self._limit = 0
        self._fds: dict[str, int] = {}

    # -- creation -------------------------------------------------------------------------

    @classmethod
    def create(cls, name: str | None, dtype, capacity: int, max_consumers: int = 1, *,
               strategy: WaitStrategy | None = None, dead_consumer_timeout: float = 1.0) -> RingBuffer:
        dtype = np.dtype(dtype)
        if capacity < 2 or capacity & (capacity - 1):
            raise ValueError(f"capacity must be a power of two >= 2, not {capacity}")
        if not 1 <= max_consumers <= MAX_CONSUMERS:
            raise ValueError(f"max_consumers must be in 1..{MAX_CONSUMERS}, not {max_consumers}")
        if dtype.itemsize == 0:
            raise ValueError("dtype has no size")
        hb = header_bytes(max_consumers)
        shm = SharedMemory(name=name, create=True, size=hb + capacity * dtype.itemsize)
        advise_huge_pages(shm)
        q = shm.buf.cast("q")
        q[W_VERSION], q[W_CAPACITY], q[W_ITEMSIZE] = VERSION, capacity, dtype.itemsize
        q[W_MAX_CONSUMERS], q[W_HEADER_BYTES], q[W_DTYPE_FP] = max_consumers, hb, dtype_fingerprint(dtype)
        q[W_CREATOR] = os.getpid()
        q[W_MAGIC] = MAGIC  # last: an attacher never sees a half-initialised header as valid
        q.release()
        for who in ["w"] + [str(i) for i in range(max_consumers)]:
            path = wake_path(shm.name, who)
            try:
                os.mkfifo(path, 0o600)
            except FileExistsError:  # left by a crashed ring of the same name: its segment is gone
                os.unlink(path)
                os.mkfifo(path, 0o600)
        return cls(shm, dtype, owner=True, strategy=strategy, dead_consumer_timeout=dead_consumer_timeout)

    @classmethod
    def attach(cls, name: str, dtype, *, capacity: int | None = None, strategy: WaitStrategy | None = None,
               dead_consumer_timeout: float = 1.0) -> RingBuffer:
        dtype = np.dtype(dtype)
        shm = attach_untracked(name)
        try:
            cls._check_header(shm, dtype, capacity)
        except BaseException:
            shm.close()
            raise
        return cls(shm, dtype, owner=False, strategy=strategy, dead_consumer_timeout=dead_consumer_timeout)

    @staticmethod
    def _check_header(shm: SharedMemory, dtype: np.dtype, capacity: int | None) -> None:
        where = f"shared memory {shm.name!r}"
        if shm.size < 8 * W_CONSUMERS:
            raise RingAttachError(f"{where} is {shm.size} bytes, too small to be a ring")
        q = shm.buf.cast("q")
        try:
            if q[W_MAGIC] != MAGIC:
                raise RingAttachError(f"{where} is not a microex ring (bad magic {q[W_MAGIC]:#x})")
            if q[W_VERSION] != VERSION:
                raise RingAttachError(f"{where} has ring layout version {q[W_VERSION]}, this code reads {VERSION}")
            if q[W_ITEMSIZE] != dtype.itemsize:
                raise RingAttachError(f"{where} holds {q[W_ITEMSIZE]}-byte records, "
                                      f"attach asked for a {dtype.itemsize}-byte dtype")
            if q[W_DTYPE_FP] != dtype_fingerprint(dtype):
                raise RingAttachError(f"{where} holds records of another dtype with the same itemsize "
                                      f"(fingerprint {q[W_DTYPE_FP]:#x} != {dtype_fingerprint(dtype):#x})")
            if capacity is not None and q[W_CAPACITY] != capacity:
                raise RingAttachError(f"{where} has capacity {q[W_CAPACITY]}, attach asked for {capacity}")
            if shm.size < q[W_HEADER_BYTES] + q[W_CAPACITY] * dtype.itemsize:
                raise RingAttachError(f"{where} is smaller than its header says")
        finally:
            q.release()

    def __reduce__(self):
        # Pickling (multiprocessing 'spawn' arguments) re-attaches by name in the child.
        return (_reattach, (self.name, self.dtype, self.strategy, self.dead_consumer_timeout))

    # -- writer -----------------------------------------------------------------------------

    @property
    def cursor(self) -> int:
        """Published sequence: records below it are readable."""
        return self._q[W_CURSOR]

    def claim(self, n: int, strategy: WaitStrategy | None = None,
              timeout: float | None = None) -> tuple[int, np.ndarray, np.ndarray]:
        """Wait for n free slots; return (lo, first, second): the views for sequences lo..lo+n.

        Fill `first` then `second` (empty unless the range wraps) and `publish(lo + n)`.
        Claims may be stacked before one publish. Raises TimeoutError after `timeout` s.
        The views have the ring's dtype; copy whole records through `.view(ring.raw.dtype)`
        (numpy copies a padded structured dtype field by field, 10x slower).
        """
        if not 0 <= n <= self.capacity:
            raise ValueError(f"claim of {n} slots on a ring of {self.capacity}")
        lo = self._claimed
        hi = lo + n
        if hi > self._limit:
            if hi - self._q[W_CURSOR] > self.capacity:
                raise ValueError(f"unpublished claims up to {hi} would not fit the ring: publish first")
            self._wait_space(hi, strategy, timeout)
        self._claimed = hi
        i = lo & self._mask
        j = i + n
        if j <= self.capacity:
            return lo, self.slots[i:j], self._empty
        return lo, self.slots[i:], self.slots[:j - self.capacity]

    def publish(self, hi: int) -> None:
        """Make every claimed record below sequence `hi` visible to consumers."""
        if hi > self._claimed:
            raise ValueError(f"publish({hi}) beyond the claimed sequence {self._claimed}")
        q = self._q
        q[W_CURSOR] = hi  # after the slot copies: TSO keeps this store behind them
        full_fence()  # the store must be visible before we look for blocked consumers
        for w in self._waiting_words:
            if q[w]:
                self._wake_consumers(w)

    def write(self, records: np.ndarray, strategy: WaitStrategy | None = None,
              timeout: float | None = None) -> int:
        """Copy all of `records` in, publishing as space allows; return the new cursor.

        Waits (per `strategy`) whenever the ring is full. On TimeoutError a first part of
        `records` may already be published: `ring.cursor` says how far it got.
        """
        if records is self._src:
            raw = self._src_raw
        else:
            if records.dtype != self.dtype:
                raise TypeError(f"records of dtype {records.dtype} written to a ring of {self.dtype}")
            # Whole-record copies go through a same-size void view: numpy copies a padded
            # structured dtype field by field (~20 ns a record, ~2 µs a call) but a void
            # one as plain bytes. One cached view, as writers tend to reuse their buffer.
            raw = records.view(self._void)
            self._src, self._src_raw = records, raw
        n = len(raw)
        cap, mask, slots, q = self.capacity, self._mask, self._raw, self._q
        done = 0
        while done < n:
            lo = self._claimed
            k = n - done
            if lo + k > self._limit:
                free = self._refresh_limit() - lo
                if free <= 0:
                    self._wait_space(lo + 1, strategy, timeout)
                    free = self._limit - lo
                k = min(k, free)
            i = lo & mask
            j = i + k
            if j <= cap:
                slots[i:j] = raw[done:done + k]
            else:
                split = cap - i
                slots[i:] = raw[done:done + split]
                slots[:j - cap] = raw[done + split:done + k]
            done += k
            hi = self._claimed = lo + k
            # publish(hi), inlined: this is the one-message path too
            q[W_CURSOR] = hi
            full_fence()
            for w in self._waiting_words:
                if q[w]:
                    self._wake_consumers(w)
        return self._claimed

    def consumed(self) -> int:
        """How far every attached consumer has committed (a producer waiting for its records to be done)."""
        return self._min_gating()

    def _min_gating(self) -> int:
        """The slowest attached consumer's Sequence; the cursor itself when none is attached.

        With no consumer the writer acts as its own: it may overwrite a record one lap
        after publishing it, and looks for new consumers again at least once a lap.
        """
        q = self._q
        m = NEVER
        for attached, seq in self._consumer_words:
            if q[attached]:
                s = q[seq]
                if s < m:
                    m = s
        return q[W_CURSOR] if m == NEVER else m

    def _refresh_limit(self) -> int:
        self._limit = self._min_gating() + self.capacity
        return self._limit

    def _wait_space(self, hi: int, strategy: WaitStrategy | None, timeout: float | None) -> None:
        if self._refresh_limit() >= hi:
            return
        strategy = strategy or self.strategy
        barrier = _SpaceBarrier(self)  # made per wait, not kept: no reference cycle (see __del__)
        target = hi - self.capacity  # every gating Sequence must reach this
        start = time.monotonic()
        deadline = None if timeout is None else start + timeout
        next_check = start + self.dead_consumer_timeout
        while True:
            now = time.monotonic()
            step = next_check - now
            if deadline is not None:
                step = min(step, deadline - now)
            strategy.wait(barrier, target, max(step, 0.0))
            if self._refresh_limit() >= hi:
                return
            now = time.monotonic()
            if now >= next_check:
                self.detach_dead_consumers(target)
                next_check = now + self.dead_consumer_timeout
                if self._refresh_limit() >= hi:
                    return
            if deadline is not None and now >= deadline:
                raise TimeoutError(f"ring {self.name!r}: no room for sequence {hi - 1} after {timeout} s "
                                   f"(slowest consumer at {self._min_gating()})")

    def detach_dead_consumers(self, below: int = NEVER) -> list[int]:
        """Detach every attached consumer whose Sequence is below `below` and whose process is gone."""
        q = self._q
        dead = []
        for i, (attached, seq) in enumerate(self._consumer_words):
            if q[attached] and q[seq] < below:
                base = W_CONSUMERS + i * LINE
                pid = q[base + C_PID]
                # re-read pid last: a process taking the index over right now (it writes its
                # pid first) keeps it; no CAS in Python, so this narrows rather than closes
                # that window, which needs a takeover during the very reap
                if not process_alive(pid, q[base + C_START]) and q[base + C_PID] == pid:
                    q[attached] = 0
                    self._b[8 * W_WAITING + i] = 0
                    dead.append(i)
        return dead

    def _wake_consumers(self, word: int) -> None:
        b = self._b
        first = (word - W_WAITING) * 8
        for i in range(first, min(first + 8, self.max_consumers)):
            if b[8 * W_WAITING + i]:
                signal_waiter(self._fd(str(i)))

    def _fd(self, who: str) -> int:
        fd = self._fds.get(who)
        if fd is None:
            fd = self._fds[who] = open_wake_fifo(wake_path(self.name, who))
        return fd

    # -- consumers --------------------------------------------------------------------------

    def consumer(self, index: int, strategy: WaitStrategy | None = None) -> Consumer:
        """Attach as consumer `index` (0 <= index < max_consumers) from this process."""
        return Consumer(self, index, strategy or self.strategy)

    def attached_consumers(self) -> list[int]:
        """Indices of the consumers attached and done joining."""
        q = self._q
        return [i for i, (attached, _) in enumerate(self._consumer_words) if q[attached] == READY]

    def wait_for_consumers(self, count: int, timeout: float = 10.0) -> None:
        """Block until at least `count` consumers are attached (start-up ordering).

        A consumer starts at the cursor of the moment it attaches: a writer that calls
        this before publishing is sure they all see the stream from its first record.
        """
        deadline = time.monotonic() + timeout
        while len(self.attached_consumers()) < count:
            if time.monotonic() >= deadline:
                raise TimeoutError(f"ring {self.name!r}: {len(self.attached_consumers())} of {count} "
                                   f"consumers attached after {timeout} s")
            time.sleep(0.001)

    # -- lifetime ---------------------------------------------------------------------------

    def close(self) -> None:
        """Unmap this process's view. Views still held elsewhere keep the mapping alive."""
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
        if self._closed:
            return
        self._closed = True
        self._q.release()  # later use of this ring or its consumers raises ValueError
        self._b.release()
        self.slots = self.raw = self._raw = self._empty = self._src = self._src_raw = None
        close_shm(self._shm)

    def unlink(self) -> None:
        """Remove the segment and the wake-up FIFOs (from any process; mappings stay valid)."""
        name = self.name
        for path in [wake_path(name, "w")] + [wake_path(name, str(i)) for i in range(self.max_consumers)]:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        try:
            if self.owner:
                self._shm.unlink()  # also tells the tracker it need not clean up
            else:
                with Untracked():
                    self._shm.unlink()
        except FileNotFoundError:
            pass

    def __del__(self):
        # Release our views before SharedMemory.__del__ tries to close the mmap under them.
        # (RingBuffer is kept out of reference cycles so that this runs first.)
        try:
            self.close()
        except Exception:
            pass

    def __enter__(self) -> RingBuffer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"RingBuffer({self.name!r}, {self.dtype.itemsize}-byte records, capacity={self.capacity}, "
                f"max_consumers={self.max_consumers}, owner={self.owner})")


def _reattach(name, dtype, strategy, dead_consumer_timeout):
    return RingBuffer.attach(name, dtype, strategy=strategy, dead_consumer_timeout=dead_consumer_timeout)


class _SpaceBarrier:
    """The writer's barrier: the slowest gating Sequence; blocked writers use the 'w' FIFO."""

    lossless = FENCED

    def __init__(self, ring: RingBuffer):
        self.ring = ring
        self.value = ring._min_gating

    def arm(self) -> None:
        self.ring._q[W_WRITER_WAITING] = 1
        full_fence()  # visible before the strategy re-reads the Sequences

    def disarm(self) -> None:
        self.ring._q[W_WRITER_WAITING] = 0

    def wakeup_fd(self) -> int:
        return self.ring._fd("w")
