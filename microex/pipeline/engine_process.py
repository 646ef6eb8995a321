"""The engine process: sequencer -> journal -> matching core -> outbound ring.

How it works (one loop in one process: the single writer of the trading state):
1. Take up to `batch` commands from the inbound rings (one ring per producer,
   polled in turn, so no producer starves another) into one preallocated array.
2. Sequencer: stamp them with consecutive global seq numbers (and ts_ns where
   the producer left 0).
3. Journal: append the batch as one frame; with fsync=batch it is on disk
   before step 4 (group commit: one fdatasync per batch, not per command).
4. Core: run the kernel over the batch; its events are copied into the
   outbound ring, followed by one BATCH event (seq = the batch's last command)
   that tells consumers which commands are done, events or not. At start-up,
   once recovered, it publishes a BATCH of 0 commands at its last seq.
5. Commit the inbound rings (producers may reuse those slots).
Invariant: no event is published before its command is journaled, so after a
kill -9 the journal holds every command whose events anyone saw; recovery
(newest snapshot + journal tail) rebuilds exactly that prefix.

On start it recovers its state from the data directory. Snapshots: every
`snapshot_every` commands (0: never), on SIGUSR1, and on clean shutdown
(SIGTERM/SIGINT: the current batch finishes first). Tuning: `cpu` pins the
process to a core; the GC is frozen after start-up (the loop makes no
per-event Python objects); when idle it polls its inbound rings for
`idle_spin_us` (yielding the core between polls: a kernel wake-up costs tens of
µs on a VM, a poll well under one), then blocks in one select() on their wake-up FIFOs (`wait_any`): no CPU when
idle, woken within the kernel's wake-up time when a producer publishes.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import time
from dataclasses import dataclass

import numpy as np

from microex.core.records import COMMAND, EVENT, EventKind
from microex.pipeline.datadir import DataDir
from microex.pipeline.journal import HEADER_SIZE, RECORD_SIZE, Journal
from microex.pipeline.logs import setup_logging
from microex.pipeline.metrics import MetricsBlock, count_commands, count_events
from microex.pipeline.recovery import recover
from microex.pipeline.ring import RingBuffer
from microex.pipeline.ring_consumer import wait_any
from microex.pipeline.sequencer import stamp
from microex.pipeline.snapshot import write_snapshot

IDLE_TIMEOUT_S = 0.05  # how often an idle engine looks at its stop/snapshot flags
log = logging.getLogger(__name__)


@dataclass
class EngineSettings:
    data: str
    inbound: list[str]  # shared-memory names of the inbound COMMAND rings
    outbound: str  # shared-memory name of the outbound EVENT ring
    fsync: str = "batch"
    batch: int = 16384
    snapshot_every: int = 0
    prune_journal: bool = False  # after a snapshot, drop journal segments it covers (replay then needs it)
    cpu: int | None = None  # pin the engine to this core
    gc_freeze: bool = True  # freeze start-up objects out of the GC's way
    metrics: str | None = None  # shared-memory name of the MetricsBlock to count into
    idle_spin_us: int = 0  # after the last command, poll this long (yielding) before blocking; < 0: never block
    gateway: object | None = None  # GatewaySettings: serve the binary port from this loop (colocated mode)
    expected_orders: int = 0  # order ids the run is sized for: the id map is grown for them before the first batch


class EngineLoop:
    def __init__(self, settings: EngineSettings) -> None:
        self.s = settings
        self.data = DataDir(settings.data)
        self.stop = False
        self.snapshot_requested = False

    def _on_stop(self, *_):
        self.stop = True

    def _on_snapshot(self, *_):
        self.snapshot_requested = True

    def run(self) -> int:
        s = self.s
        if s.cpu is not None:
            os.sched_setaffinity(0, {s.cpu})
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGUSR1, self._on_snapshot)
        last_seq, digest, engine = recover(self.data)
        engine.reserve_ids(s.expected_orders)
        log.info("recovered", extra={"seq": last_seq, "digest": digest, "fsync": s.fsync})
        journal = Journal.open(self.data.journal, s.fsync, start_seq=last_seq + 1)
        if journal.last_seq != last_seq:
            raise RuntimeError(f"journal ends at {journal.last_seq}, recovery at {last_seq}")
        rings = [RingBuffer.attach(name, COMMAND) for name in s.inbound]
        consumers = [r.consumer(0) for r in rings]
        out = RingBuffer.attach(s.outbound, EVENT)
        metrics = MetricsBlock.attach(s.metrics) if s.metrics else None
        words = metrics.words if metrics is not None else None
        sink = out.write
        if words is not None:
            def sink(events, write=out.write, words=words):
                write(events)
                count_events(words, events)
        clock = time.perf_counter_ns
        gateway = self._gateway(metrics)
        if gateway is not None:
            def sink(events, sink=sink, reports=gateway.on_events):
                reports(events)  # the clients' reports first: the ring's consumers are not waited on
                sink(events)
        cmds = np.zeros(s.batch, dtype=COMMAND)
        cmds_bytes = cmds.view(np.uint8)
        marker = np.zeros(1, dtype=EVENT)
        marker["kind"] = EventKind.BATCH
        marker["seq"] = last_seq  # "ready at seq N": a BATCH of no commands
        out.write(marker)
        since_snapshot = 0
        busy = False
        idle_sync = journal.policy.mode == "interval"  # batch synced at append; none never syncs

        def run_batch(batch: np.ndarray) -> None:
            nonlocal last_seq
            t0 = clock()
            n = len(batch)
            stamp(batch, last_seq + 1, time.time_ns())
            journal.append(batch)
            t1 = clock()
            last_seq += n
            engine.run(batch, sink)
            marker["seq"] = last_seq
            marker["qty_lots"] = n
            out.write(marker)
            for c in consumers:
                c.commit()
            if words is not None:
                count_commands(words, batch, clock() - t0, t1 - t0, HEADER_SIZE + n * RECORD_SIZE, last_seq,
                               journal.durable_seq)

        if s.gc_freeze:
            gc.collect()
            gc.freeze()  # everything built so far is permanent: the loop allocates no Python objects per event
        try:
            while not self.stop:
                n = 0
                for c in consumers:
                    n += c.poll_into(cmds[n:], s.batch - n)
                if gateway is not None:
                    n = gateway.poll(cmds, n, s.batch)
                if n == 0:
                    if idle_sync:
                        journal.sync()  # interval:N syncs at appends; when idle, catch up now
                    if gateway is not None:
                        self._idle_with_gateway(consumers, gateway, busy)
                    elif s.idle_spin_us < 0:  # busy-poll: never sleep, look at the flags every 50 ms
                        wait_any(consumers, IDLE_TIMEOUT_S, IDLE_TIMEOUT_S, block=False)
                    else:
                        wait_any(consumers, IDLE_TIMEOUT_S, s.idle_spin_us * 1e-6 if busy else 0.0)
                    busy = False  # spin once after activity, not every idle period
                    if self.snapshot_requested:
                        self._snapshot(engine, last_seq)
                    continue
                busy = True
                run_batch(cmds[:n])
                if gateway is not None:  # its compiled pass writes fields, not whole records: no stale bytes
                    cmds_bytes[: n * RECORD_SIZE] = 0
                since_snapshot += n
                if self.snapshot_requested or (s.snapshot_every and since_snapshot >= s.snapshot_every):
                    self._snapshot(engine, last_seq)
                    if s.prune_journal:
                        journal.prune(last_seq + 1)
                    since_snapshot = 0
            if gateway is not None:  # LOGOUT SHUTDOWN to its sessions; their cancel-on-disconnect runs now
                owed = gateway.shutdown()
                if len(owed):
                    run_batch(owed)
            journal.sync()
            self._snapshot(engine, last_seq)
            log.info("stopped", extra={"seq": last_seq})
        finally:
            journal.close()
            for c in consumers:
                c.close()
            for r in rings:
                r.close()
            out.close()
            if metrics is not None:
                metrics.close()
        return last_seq

    def _gateway(self, metrics):
        """Colocated mode: the binary port, listening before the engine says it is ready."""
        gs = self.s.gateway
        if gs is None:
            return None
        from microex.gateway.colocated import ColocatedGateway
        from microex.gateway.process import first_order_id, first_session_id
        from microex.gateway.session import GatewaySessions
        from microex.pipeline.metrics import GATEWAY_WORDS, gateway_base

        sessions = GatewaySessions(gs.api_keys, heartbeat_ms=gs.heartbeat_ms, rate_per_s=gs.rate_per_s,
                                   burst=gs.burst, first_order_id=first_order_id(gs.run, gs.gateway_no),
                                   first_session_id=first_session_id(gs.gateway_no),
                                   expected_orders=gs.expected_orders, read_room=self.s.batch)
        counters = None
        if metrics is not None:
            base = gateway_base(gs.gateway_no)
            counters = metrics.words[base : base + GATEWAY_WORDS]
        gateway = ColocatedGateway(sessions, gs.host, gs.bin_port, counters=counters)
        log.info("serving the binary port in the engine process", extra={"port": gateway.port})
        return gateway

    def _idle_with_gateway(self, consumers, gateway, busy: bool) -> None:
        """Nothing to do: poll again at once (busy-poll, or spinning after activity), else sleep
        until a ring, a socket or the gateway's timer needs the loop."""
        spin = self.s.idle_spin_us
        if spin < 0 or busy and spin > 0:
            deadline = time.perf_counter() + (IDLE_TIMEOUT_S if spin < 0 else spin * 1e-6)
            poll = gateway.epoll.poll
            while time.perf_counter() < deadline and not self.stop:
                if any(c.available() > 0 for c in consumers) or poll(0):
                    return
                os.sched_yield()
            return
        wait_any(consumers, gateway.timer_s, fds=(gateway.fileno(),))

    def _snapshot(self, engine, last_seq: int) -> None:
        self.snapshot_requested = False
        if last_seq:
            path = write_snapshot(self.data.snapshots, engine, last_seq)
            log.info("snapshot written", extra={"seq": last_seq, "path": str(path)})


def engine_main(settings: EngineSettings) -> None:
    """Process entry point (multiprocessing target)."""
    setup_logging(settings.data, "engine")
    EngineLoop(settings).run()
