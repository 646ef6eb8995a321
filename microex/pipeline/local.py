"""LocalPipeline: an engine process and its rings on this machine, wired in one place.

    inbound rings (COMMAND, one per producer)  ->  engine process  ->  outbound ring (EVENT)

The caller is the producer of the first inbound ring (or hands `inbound_name` to
a producer process; `producers` > 1 makes one ring per producer, in `inbounds`)
and consumer 0 of the outbound ring (`consumers` > 1 leaves indices 1.. for
other processes, which attach once the engine is up). Start-up order matters and lives here: the
rings exist and the outbound consumer is attached before the engine starts;
producers may publish only once the engine is attached to the inbound ring
(records published before would be skipped); the engine's first BATCH event
(0 commands) gives the seq it recovered to.
"""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import signal
import time

import numpy as np

from microex.core.records import COMMAND, EVENT, EventKind
from microex.pipeline.engine_process import EngineSettings, engine_main
from microex.pipeline.ring import RingBuffer

INBOUND_SLOTS = 1 << 16
_PR_SET_PDEATHSIG = 1


class ReadyFlag:
    """A child's "I am up" for its parent: one shared byte, set once, polled.

    Not multiprocessing.Event: its set() waits for every sleeping waiter to wake,
    so a child whose parent died while waiting would hang in set() for ever
    (signals included). Setting a byte cannot block.
    """

    def __init__(self, ctx) -> None:
        self._flag = ctx.RawValue("b", 0)

    def set(self) -> None:
        self._flag.value = 1

    def is_set(self) -> bool:
        return bool(self._flag.value)

    def wait(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._flag.value:
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(0.005)
        return True


def run_child(target, *args) -> None:
    """Run a pipeline process: out of the terminal's process group (Ctrl-C goes to the
    parent, which stops its children in order) and SIGTERMed if the parent dies."""
    os.setpgrp()
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: the parent's close() still stops us
        pass
    if os.getppid() == 1:  # the parent died before prctl took effect
        return
    target(*args)
OUTBOUND_SLOTS = 1 << 18


class LocalPipeline:
    def __init__(self, data: str, fsync: str = "batch", batch: int = 16384, snapshot_every: int = 0,
                 inbound_slots: int = INBOUND_SLOTS, outbound_slots: int = OUTBOUND_SLOTS,
                 start_timeout: float = 300.0, cpu: int | None = None, gc_freeze: bool = True,
                 consumers: int = 1, producers: int = 1, idle_spin_us: int = 0,
                 metrics: str | None = None, gateway=None, expected_orders: int = 0) -> None:
        tag = f"mx{os.getpid()}x{time.monotonic_ns() % 10**9}"
        self.inbounds = [RingBuffer.create(f"{tag}i{k}", COMMAND, inbound_slots, 1) for k in range(producers)]
        self.inbound = self.inbounds[0]
        self.outbound = RingBuffer.create(f"{tag}o", EVENT, outbound_slots, consumers)  # ours is index 0
        self.events = self.outbound.consumer(0)
        settings = EngineSettings(data=data, inbound=[r.name for r in self.inbounds], outbound=self.outbound.name,
                                  fsync=fsync, batch=batch, snapshot_every=snapshot_every, cpu=cpu,
                                  gc_freeze=gc_freeze, idle_spin_us=idle_spin_us, metrics=metrics,
                                  gateway=gateway, expected_orders=expected_orders)
        self.proc = mp.get_context("spawn").Process(target=run_child, args=(engine_main, settings), daemon=True,
                                                    name="microex-engine")
        self.proc.start()
        self.published = -1  # last seq whose BATCH event was seen
        deadline = time.monotonic() + start_timeout  # the first start may compile the kernel
        while self.published < 0:
            self.check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError("the engine process did not start")
            self.drain(wait=0.05)
        self.start_seq = self.published

    @property
    def inbound_name(self) -> str:
        return self.inbound.name

    def check_alive(self) -> None:
        if not self.proc.is_alive():
            raise RuntimeError(f"the engine process died (exit code {self.proc.exitcode}) at seq {self.published}")

    def drain(self, wait: float = 0.0, on_events=None) -> int:
        """Consume what the engine published; returns the last completed seq."""
        a, b = self.events.read(timeout=wait) if wait else self.events.poll()
        for part in (a, b):
            if len(part):
                if on_events is not None:
                    on_events(part)
                marks = part["seq"][part["kind"] == EventKind.BATCH]
                if len(marks):
                    self.published = int(marks[-1])
        self.events.commit()
        return self.published

    def feed(self, cmds: np.ndarray, chunk: int = 4096, on_events=None) -> None:
        """Write commands (as their producer), draining events as it goes."""
        for i in range(0, len(cmds), chunk):
            self.inbound.write(cmds[i : i + chunk], timeout=60)
            self.drain(on_events=on_events)

    def wait_for(self, seq: int, timeout: float = 120.0, on_events=None) -> None:
        deadline = time.monotonic() + timeout
        while self.published < seq:
            self.check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"the engine is at {self.published}, waiting for {seq}")
            self.drain(wait=0.01, on_events=on_events)

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.join(timeout=30)

    def stop_engine(self, timeout: float = 120.0, on_events=None) -> None:
        """Clean stop of the engine process (it finishes its batch and snapshots), draining our
        consumer meanwhile so its last events never wait for ring space."""
        if self.proc.is_alive():
            self.proc.terminate()
        deadline = time.monotonic() + timeout
        while self.proc.is_alive() and time.monotonic() < deadline:
            self.drain(on_events=on_events)
            self.proc.join(0.01)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()

    def close(self) -> None:
        """Clean stop (the engine snapshots), then remove the rings."""
        self.stop_engine()
        self.events.close()
        for ring in (*self.inbounds, self.outbound):
            ring.close()
            ring.unlink()

    def __enter__(self) -> LocalPipeline:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
