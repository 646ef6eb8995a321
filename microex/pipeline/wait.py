"""Wait strategies: how a ring consumer waits for data, or the writer for space.

How it works
- Every strategy has one method, `wait(barrier, target, timeout=None) -> int`. It returns
  `barrier.value()` as soon as that is >= `target`; if `timeout` seconds pass first it
  returns the last value read (< target), so a caller checks the result instead of
  catching an exception. `timeout=None` waits forever.
- A barrier is what `microex.pipeline.ring` hands in: `value()` reads a shared sequence
  (the published cursor for a consumer, the slowest gating consumer for the writer),
  `arm()` / `disarm()` register / unregister this side as a blocked waiter in the
  ring's header, `wakeup_fd()` is a file descriptor that becomes readable when the
  other side signals, and `lossless` says whether the arm/signal handshake is fenced
  (no wake-up can be lost). Only `BlockingWaitStrategy` uses the last four.
- The end of the module is the waking side's kit, shared with the ring: `full_fence()`
  (a numba intrinsic, the fence of the arm/signal handshake) and the wake-up FIFOs
  (`wake_path`, `open_wake_fifo`, `signal_waiter`); ring.py says why FIFOs.
- Strategies keep no per-wait state, so one instance may be shared by any number of
  consumers and writers in a process (not across threads of one consumer, which the
  ring does not support anyway).

Choosing one (2-core machines especially):
- `BusySpinWaitStrategy`: lowest latency; burns its core at 100% while waiting, so a
  busy-spinning writer and consumer own both cores of a 2-core box.
- `YieldingWaitStrategy`: spins a little, then `os.sched_yield()` between checks; still
  100% CPU when nothing else is runnable, but gives the core away to anything that is.
- `SleepingWaitStrategy`: spins, yields, then sleeps `sleep_s` between checks; near zero
  CPU when idle, wake-up delay of about `sleep_s` plus the kernel's timer slack (~50 µs).
- `BlockingWaitStrategy`: the waiter blocks in `select()` on its wake-up FIFO and the
  other side writes one byte to it when it moves its sequence while a waiter is armed.
  Purely event-driven: the ring's arm/publish handshake uses full fences, so no wake-up
  is lost, and the wake-up delay is the kernel's (tens of µs on a VM), not a polling
  period. Each `select()` still times out after `safety_s` (10 ms) as a backstop, or
  after at most 100 µs when the barrier is not `lossless` (numba's JIT disabled, so no
  fence): then a missed wake-up costs at most 100 µs. A 100 µs poll would cost an idle
  waiter ~18% of a core on this project's VM, 10 ms well under 1%.
"""

from __future__ import annotations

import os
import select
import tempfile
import time
from typing import Callable, Protocol

from numba import config as numba_config
from numba import njit, types
from numba.core.extending import intrinsic


class Barrier(Protocol):
    """What a strategy waits on (implemented by the ring's consumer and writer sides)."""

    value: Callable[[], int]
    lossless: bool

    def arm(self) -> None: ...

    def disarm(self) -> None: ...

    def wakeup_fd(self) -> int: ...


class WaitStrategy:
    """Base class: `wait(barrier, target, timeout)` -> the barrier's value (>= target unless timed out)."""

    name = "abstract"

    def wait(self, barrier: Barrier, target: int, timeout: float | None = None) -> int:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class BusySpinWaitStrategy(WaitStrategy):
    """Re-read the sequence in a tight loop. The clock is read once per `check_every` reads."""

    name = "busy_spin"

    def __init__(self, check_every: int = 256):
        self.check_every = check_every

    def wait(self, barrier: Barrier, target: int, timeout: float | None = None) -> int:
        value = barrier.value
        v = value()
        if v >= target:
            return v
        deadline = None if timeout is None else time.monotonic() + timeout
        inner = range(self.check_every)
        while True:
            for _ in inner:
                v = value()
                if v >= target:
                    return v
            if deadline is not None and time.monotonic() >= deadline:
                return v


class YieldingWaitStrategy(WaitStrategy):
    """Spin `spins` times, then call `os.sched_yield()` between reads."""

    name = "yield"

    def __init__(self, spins: int = 100):
        self.spins = spins

    def wait(self, barrier: Barrier, target: int, timeout: float | None = None) -> int:
        value = barrier.value
        for _ in range(self.spins):
            v = value()
            if v >= target:
                return v
        deadline = None if timeout is None else time.monotonic() + timeout
        yield_ = os.sched_yield
        while True:
            v = value()
            if v >= target:
                return v
            if deadline is not None and time.monotonic() >= deadline:
                return v
            yield_()


class SleepingWaitStrategy(WaitStrategy):
    """Spin `spins` times, yield `yields` times, then sleep `sleep_s` between reads."""

    name = "sleep"

    def __init__(self, spins: int = 100, yields: int = 100, sleep_s: float = 50e-6):
        self.spins, self.yields, self.sleep_s = spins, yields, sleep_s

    def wait(self, barrier: Barrier, target: int, timeout: float | None = None) -> int:
        value = barrier.value
        for _ in range(self.spins):
            v = value()
            if v >= target:
                return v
        deadline = None if timeout is None else time.monotonic() + timeout
        for _ in range(self.yields):
            v = value()
            if v >= target:
                return v
            os.sched_yield()
        sleep, pause = time.sleep, self.sleep_s
        while True:
            v = value()
            if v >= target:
                return v
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return v
                sleep(min(pause, left))
            else:
                sleep(pause)


class BlockingWaitStrategy(WaitStrategy):
    """Block in `select()` on the barrier's wake-up FIFO until signalled.

    `spins` reads happen first (0 by default: block at once). `safety_s` is the longest a
    single `select()` sleeps before re-reading the sequence; a lossless barrier does not
    rely on it (see the module docstring). Without the fences, at most `UNFENCED_POLL_S`.
    """

    name = "blocking"
    UNFENCED_POLL_S = 100e-6

    def __init__(self, spins: int = 0, safety_s: float = 0.01):
        self.spins, self.safety_s = spins, safety_s

    def wait(self, barrier: Barrier, target: int, timeout: float | None = None) -> int:
        value = barrier.value
        v = value()
        if v >= target:
            return v
        for _ in range(self.spins):
            v = value()
            if v >= target:
                return v
        deadline = None if timeout is None else time.monotonic() + timeout
        fd = barrier.wakeup_fd()
        rlist = [fd]
        poll_s = self.safety_s if barrier.lossless else min(self.safety_s, self.UNFENCED_POLL_S)
        barrier.arm()  # publishes "I am blocked" with a full fence before the re-read below
        try:
            while True:
                v = value()
                if v >= target:
                    return v
                step = poll_s
                if deadline is not None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return v
                    step = min(step, left)
                if select.select(rlist, (), (), step)[0]:
                    _drain(fd)
        finally:
            barrier.disarm()


# -- the waker's side: the full fence of the arm/signal handshake and the wake-up FIFOs --------

@intrinsic
def _fence_intrinsic(typingctx):
    def codegen(context, builder, signature, args):
        builder.fence("seq_cst")  # `lock or` on x86-64, `dmb ish` on ARM
        return context.get_dummy_value()

    return types.void(), codegen


@njit(cache=True)
def _full_fence_jit():
    _fence_intrinsic()


def _no_fence():
    pass


# Under NUMBA_DISABLE_JIT the intrinsic cannot run: barriers then say they are not
# lossless and BlockingWaitStrategy polls every 100 µs at most instead.
FENCED = not numba_config.DISABLE_JIT
full_fence = _full_fence_jit if FENCED else _no_fence
full_fence()  # compile (or load from numba's cache) now, not inside someone's first publish


def wake_path(name: str, who: str) -> str:
    """The wake-up FIFO of ring `name` for `who` ("w": the writer, "<i>": consumer i)."""
    folder = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()
    return os.path.join(folder, f"{name}.wake.{who}")


def open_wake_fifo(path: str) -> int:
    # O_RDWR never blocks on a FIFO (Linux) and keeps a reader present: writes never SIGPIPE.
    return os.open(path, os.O_RDWR | os.O_NONBLOCK)


def signal_waiter(fd: int) -> None:
    try:
        os.write(fd, b"\x01")
    except BlockingIOError:
        pass  # FIFO full: the waiter has plenty of wake-ups pending already


def _drain(fd: int) -> None:
    # Several signals may have piled up while we were busy; one read empties the FIFO.
    try:
        os.read(fd, 65536)
    except BlockingIOError:
        pass


STRATEGIES: dict[str, type[WaitStrategy]] = {
    cls.name: cls for cls in (BusySpinWaitStrategy, YieldingWaitStrategy, SleepingWaitStrategy, BlockingWaitStrategy)
}


def strategy_named(name: str, **kwargs) -> WaitStrategy:
    """`busy_spin`, `yield`, `sleep` or `blocking` -> a fresh strategy instance."""
    try:
        return STRATEGIES[name](**kwargs)
    except KeyError:
        raise ValueError(f"unknown wait strategy {name!r}; one of {', '.join(STRATEGIES)}") from None
