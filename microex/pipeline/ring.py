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

import mmap
import os
import platform
import time
import warnings
import zlib
from multiprocessing import resource_tracker
from multiprocessing.shared_memory import SharedMemory

import numpy as np

from microex.pipeline.wait import (FENCED, BlockingWaitStrategy, WaitStrategy, full_fence, open_wake_fifo,
                                   signal_waiter, wake_path)

if platform.machine().lower() not in ("x86_64", "amd64"):
    warnings.warn("microex.pipeline.ring assumes x86-64 store/load ordering (TSO); "
                  f"on {platform.machine()} a reader may see a slot before its contents", RuntimeWarning)

MAGIC = int.from_bytes(b"MEXRING1", "little")  # marks an initialised ring header
VERSION = 1
MAX_CONSUMERS = 64  # one waiting byte each, in one 64-byte run of the header

# Header layout, in int64 words. One "line" is 16 words = 128 bytes.
_LINE = 16
_MAGIC, _VERSION, _CAPACITY, _ITEMSIZE, _MAX_CONSUMERS, _HEADER_BYTES, _DTYPE_FP, _CREATOR = range(8)
_CURSOR = 1 * _LINE  # next sequence to publish: everything below it is readable
_WRITER_WAITING = 2 * _LINE  # 1 while the writer is blocked on space
_WAITING = 3 * _LINE  # MAX_CONSUMERS bytes: byte i = 1 while consumer i is blocked
_CONSUMERS = 4 * _LINE  # consumer i's line starts at word _CONSUMERS + i * _LINE
_SEQ, _ATTACHED, _PID, _START = range(4)  # word offsets inside a consumer's line
_JOINING, _READY = 1, 2  # attached states (0: detached); both gate the writer

_NEVER = (1 << 63) - 1  # above every sequence


def dtype_fingerprint(dtype: np.dtype) -> int:
    """A stable 32-bit digest of a dtype's fields, offsets and itemsize."""
    dtype = np.dtype(dtype)
    text = repr((dtype.descr if dtype.names else dtype.str, dtype.itemsize))
    return zlib.crc32(text.encode())


def header_bytes(max_consumers: int) -> int:
    return 8 * (_CONSUMERS + _LINE * max_consumers)


def _proc_stat(pid: int) -> tuple[bytes, int] | None:
    """(state letter, start time in clock ticks) from /proc, or None without /proc."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rindex(b")") + 2:].split()  # the command name may contain spaces
    return fields[0], int(fields[19])


def process_alive(pid: int, start_time: int = 0) -> bool:
    """True if `pid` runs and (when start_time is given) is the same process as then."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    stat = _proc_stat(pid)
    if stat is None:
        return True
    state, started = stat
    if state in (b"Z", b"X"):  # killed but not yet reaped by its parent: dead to us
        return False
    return not start_time or started == start_time


class _Untracked:
    """Silence the resource tracker for a moment (attach, and unlink by a non-creator).

    Python < 3.13 registers every attach with the tracker, which then unlinks the
    segment when the attaching process exits; only the creator should own it.
    """

    def __enter__(self):
        # process-wide: another thread creating a segment at this instant would go untracked
        self.saved = resource_tracker.register, resource_tracker.unregister
        resource_tracker.register = resource_tracker.unregister = lambda *a, **k: None

    def __exit__(self, *exc):
        resource_tracker.register, resource_tracker.unregister = self.saved


def _attach_untracked(name: str) -> SharedMemory:
    with _Untracked():
        return SharedMemory(name=name)


def advise_huge_pages(shm: SharedMemory) -> bool:
    """Ask for transparent huge pages on the segment (fewer TLB misses on big rings).
    Honoured only where the kernel allows it for shared memory (shmem_enabled);
    elsewhere the advice is refused or ignored, which is harmless."""
    mm = getattr(shm, "_mmap", None)
    advice = getattr(mmap, "MADV_HUGEPAGE", None)
    if mm is None or advice is None:
        return False
    try:
        mm.madvise(advice)
    except (OSError, ValueError):
        return False
    return True


def _close_shm(shm: SharedMemory) -> None:
    try:
        shm.close()
    except BufferError:
        # Views handed out still export the mapping. Forget it here: the mmap object
        # unmaps itself when the last view goes (and SharedMemory.__del__ stays quiet).
        shm._buf = shm._mmap = None
        if shm._fd >= 0:
            os.close(shm._fd)
            shm._fd = -1


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
        self.capacity = q[_CAPACITY]
        self.max_consumers = q[_MAX_CONSUMERS]
        self._mask = self.capacity - 1
        self.slots = np.ndarray((self.capacity,), self.dtype, buffer=shm.buf, offset=q[_HEADER_BYTES])
        self._empty = self.slots[:0]
        self._void = np.dtype((np.void, self.dtype.itemsize))
        self.raw = self.slots.view(self._void)  # the slots as opaque records: fast whole-record copies
        self._raw = self.raw
        self._src = self._src_raw = None  # write()'s one-entry cache of a source array's raw view
        mc = self.max_consumers
        self._consumer_words = [(_CONSUMERS + i * _LINE + _ATTACHED, _CONSUMERS + i * _LINE + _SEQ)
                                for i in range(mc)]
        self._waiting_words = tuple(range(_WAITING, _WAITING + (mc + 7) // 8))
        # writer-local state: claimed (filled or being filled) up to _claimed; may claim
        # below _limit without looking at the consumers again
        self._claimed = q[_CURSOR]
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
        q[_VERSION], q[_CAPACITY], q[_ITEMSIZE] = VERSION, capacity, dtype.itemsize
        q[_MAX_CONSUMERS], q[_HEADER_BYTES], q[_DTYPE_FP] = max_consumers, hb, dtype_fingerprint(dtype)
        q[_CREATOR] = os.getpid()
        q[_MAGIC] = MAGIC  # last: an attacher never sees a half-initialised header as valid
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
        shm = _attach_untracked(name)
        try:
            cls._check_header(shm, dtype, capacity)
        except BaseException:
            shm.close()
            raise
        return cls(shm, dtype, owner=False, strategy=strategy, dead_consumer_timeout=dead_consumer_timeout)

    @staticmethod
    def _check_header(shm: SharedMemory, dtype: np.dtype, capacity: int | None) -> None:
        where = f"shared memory {shm.name!r}"
        if shm.size < 8 * _CONSUMERS:
            raise RingAttachError(f"{where} is {shm.size} bytes, too small to be a ring")
        q = shm.buf.cast("q")
        try:
            if q[_MAGIC] != MAGIC:
                raise RingAttachError(f"{where} is not a microex ring (bad magic {q[_MAGIC]:#x})")
            if q[_VERSION] != VERSION:
                raise RingAttachError(f"{where} has ring layout version {q[_VERSION]}, this code reads {VERSION}")
            if q[_ITEMSIZE] != dtype.itemsize:
                raise RingAttachError(f"{where} holds {q[_ITEMSIZE]}-byte records, "
                                      f"attach asked for a {dtype.itemsize}-byte dtype")
            if q[_DTYPE_FP] != dtype_fingerprint(dtype):
                raise RingAttachError(f"{where} holds records of another dtype with the same itemsize "
                                      f"(fingerprint {q[_DTYPE_FP]:#x} != {dtype_fingerprint(dtype):#x})")
            if capacity is not None and q[_CAPACITY] != capacity:
                raise RingAttachError(f"{where} has capacity {q[_CAPACITY]}, attach asked for {capacity}")
            if shm.size < q[_HEADER_BYTES] + q[_CAPACITY] * dtype.itemsize:
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
        return self._q[_CURSOR]

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
            if hi - self._q[_CURSOR] > self.capacity:
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
        q[_CURSOR] = hi  # after the slot copies: TSO keeps this store behind them
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
            q[_CURSOR] = hi
            full_fence()
            for w in self._waiting_words:
                if q[w]:
                    self._wake_consumers(w)
        return self._claimed

    def _min_gating(self) -> int:
        """The slowest attached consumer's Sequence; the cursor itself when none is attached.

        With no consumer the writer acts as its own: it may overwrite a record one lap
        after publishing it, and looks for new consumers again at least once a lap.
        """
        q = self._q
        m = _NEVER
        for attached, seq in self._consumer_words:
            if q[attached]:
                s = q[seq]
                if s < m:
                    m = s
        return q[_CURSOR] if m == _NEVER else m

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

    def detach_dead_consumers(self, below: int = _NEVER) -> list[int]:
        """Detach every attached consumer whose Sequence is below `below` and whose process is gone."""
        q = self._q
        dead = []
        for i, (attached, seq) in enumerate(self._consumer_words):
            if q[attached] and q[seq] < below:
                base = _CONSUMERS + i * _LINE
                pid = q[base + _PID]
                # re-read pid last: a process taking the index over right now (it writes its
                # pid first) keeps it; no CAS in Python, so this narrows rather than closes
                # that window, which needs a takeover during the very reap
                if not process_alive(pid, q[base + _START]) and q[base + _PID] == pid:
                    q[attached] = 0
                    self._b[8 * _WAITING + i] = 0
                    dead.append(i)
        return dead

    def _wake_consumers(self, word: int) -> None:
        b = self._b
        first = (word - _WAITING) * 8
        for i in range(first, min(first + 8, self.max_consumers)):
            if b[8 * _WAITING + i]:
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
        return [i for i, (attached, _) in enumerate(self._consumer_words) if q[attached] == _READY]

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
        _close_shm(self._shm)

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
                with _Untracked():
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
        self.ring._q[_WRITER_WAITING] = 1
        full_fence()  # visible before the strategy re-reads the Sequences

    def disarm(self) -> None:
        self.ring._q[_WRITER_WAITING] = 0

    def wakeup_fd(self) -> int:
        return self.ring._fd("w")


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
        base = _CONSUMERS + index * _LINE
        self._seq_word, self._attached_word = base + _SEQ, base + _ATTACHED
        self._flag_byte = 8 * _WAITING + index
        if q[base + _ATTACHED]:
            pid = q[base + _PID]
            if process_alive(pid, q[base + _START]):
                raise RuntimeError(f"ring {ring.name!r}: consumer {index} is attached by live process {pid}")
        pid = os.getpid()
        stat = _proc_stat(pid)
        q[base + _PID], q[base + _START] = pid, stat[1] if stat else 0
        ring._b[self._flag_byte] = 0
        # Join as the Disruptor adds a gating sequence: gate at the cursor first, make that
        # visible (fence), then start at the cursor read after it. A writer that had not
        # seen us yet was gated by a cursor it had published, with a fence, before it
        # looked, so it overwrote only below what we read now (see the module docstring).
        q[base + _SEQ] = q[_CURSOR]
        q[base + _ATTACHED] = _JOINING
        full_fence()
        self._pos = q[_CURSOR]
        q[base + _SEQ] = self._pos
        q[base + _ATTACHED] = _READY  # wait_for_consumers() lets the writer start only now
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
        return self._q[_CURSOR] - self._pos

    def poll(self, max_n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Published records after the read position, as (first, second) views; never blocks.

        Both are empty when nothing is new; `second` is empty unless the batch wraps.
        At most `max_n` records (all available when None).
        """
        pos = self._pos
        n = self._q[_CURSOR] - pos
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
        n = min(self._q[_CURSOR] - pos, len(out) if max_n is None else min(max_n, len(out)))
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
        c = self._q[_CURSOR]
        if c >= min_seq:
            return c
        return (strategy or self.strategy).wait(self.barrier, min_seq, timeout)

    def read(self, max_n: int | None = None, strategy: WaitStrategy | None = None,
             timeout: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Like poll, but first waits for at least one record (empty views only on timeout)."""
        pos = self._pos
        if self._q[_CURSOR] <= pos:
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
        if q[_WRITER_WAITING]:
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
        self.value = lambda: q[_CURSOR]
        self._ring, self._who, self._flag_byte = ring, str(index), 8 * _WAITING + index

    def arm(self) -> None:
        self._ring._b[self._flag_byte] = 1
        full_fence()  # visible before the strategy re-reads the cursor

    def disarm(self) -> None:
        self._ring._b[self._flag_byte] = 0

    def wakeup_fd(self) -> int:
        return self._ring._fd(self._who)
