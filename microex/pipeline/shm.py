"""Shared-memory plumbing of a RingBuffer: the header layout, and the process
and segment helpers around it (see ring.py for how the ring uses them).

Header words (int64): W_* are word indexes of the ring's own fields, one
128-byte line each for the cursor and the waiting flags; consumer i's line
starts at W_CONSUMERS + i * LINE, with its Sequence (C_SEQ), attached state,
pid and process start time.
"""

from __future__ import annotations

import mmap
import os
import zlib
from multiprocessing import resource_tracker
from multiprocessing.shared_memory import SharedMemory

import numpy as np

MAGIC = int.from_bytes(b"MEXRING1", "little")  # marks an initialised ring header
VERSION = 1
MAX_CONSUMERS = 64  # one waiting byte each, in one 64-byte run of the header

# Header layout, in int64 words. One "line" is 16 words = 128 bytes.
LINE = 16
W_MAGIC, W_VERSION, W_CAPACITY, W_ITEMSIZE, W_MAX_CONSUMERS, W_HEADER_BYTES, W_DTYPE_FP, W_CREATOR = range(8)
W_CURSOR = 1 * LINE  # next sequence to publish: everything below it is readable
W_WRITER_WAITING = 2 * LINE  # 1 while the writer is blocked on space
W_WAITING = 3 * LINE  # MAX_CONSUMERS bytes: byte i = 1 while consumer i is blocked
W_CONSUMERS = 4 * LINE  # consumer i's line starts at word W_CONSUMERS + i * LINE
C_SEQ, C_ATTACHED, C_PID, C_START = range(4)  # word offsets inside a consumer's line
JOINING, READY = 1, 2  # attached states (0: detached); both gate the writer

NEVER = (1 << 63) - 1  # above every sequence


def dtype_fingerprint(dtype: np.dtype) -> int:
    """A stable 32-bit digest of a dtype's fields, offsets and itemsize."""
    dtype = np.dtype(dtype)
    text = repr((dtype.descr if dtype.names else dtype.str, dtype.itemsize))
    return zlib.crc32(text.encode())


def header_bytes(max_consumers: int) -> int:
    return 8 * (W_CONSUMERS + LINE * max_consumers)


def proc_stat(pid: int) -> tuple[bytes, int] | None:
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
    stat = proc_stat(pid)
    if stat is None:
        return True
    state, started = stat
    if state in (b"Z", b"X"):  # killed but not yet reaped by its parent: dead to us
        return False
    return not start_time or started == start_time


class Untracked:
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


def attach_untracked(name: str) -> SharedMemory:
    with Untracked():
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


def close_shm(shm: SharedMemory) -> None:
    try:
        shm.close()
    except BufferError:
        # Views handed out still export the mapping. Forget it here: the mmap object
        # unmaps itself when the last view goes (and SharedMemory.__del__ stays quiet).
        shm._buf = shm._mmap = None
        if shm._fd >= 0:
            os.close(shm._fd)
            shm._fd = -1
