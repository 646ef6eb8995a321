"""RingBuffer and wait strategies: no loss, no duplicate, order kept; backpressure; attach
checks; dead consumers; cross-process (fork and spawn); every wait strategy delivers.

Timing is only ever asserted as a generous upper bound (this runs on a noisy 2-core VM).
Every ring is unlinked at the end of its test, pass or fail.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import signal
import sys
import threading
import time
import uuid
from multiprocessing.shared_memory import SharedMemory

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from microex.core.records import COMMAND, EVENT
from microex.pipeline.ring import RingAttachError, RingBuffer
from microex.pipeline.shm import process_alive
from microex.pipeline.wait import (BlockingWaitStrategy, BusySpinWaitStrategy, SleepingWaitStrategy,
                                   YieldingWaitStrategy, strategy_named, wake_path)

CHILD_TIMEOUT = 60  # seconds a child process may take before the test fails (and kills it)


def _name() -> str:
    return f"mxt-{uuid.uuid4().hex[:16]}"


def _records(lo: int, n: int) -> np.ndarray:
    recs = np.zeros(n, COMMAND)
    recs["seq"] = np.arange(lo, lo + n)
    recs["order_id"] = recs["seq"] * 3 + 1  # a second field, so a torn copy would show
    return recs


def _unlink_quietly(ring: RingBuffer) -> None:
    ring.close()
    ring.unlink()


@pytest.fixture
def make_ring():
    """make_ring(capacity, max_consumers, dtype=COMMAND, **kw): every ring made is unlinked after."""
    made: list[RingBuffer] = []

    def make(capacity: int, max_consumers: int = 1, dtype=COMMAND, **kw) -> RingBuffer:
        ring = RingBuffer.create(_name(), dtype, capacity, max_consumers, **kw)
        made.append(ring)
        return ring

    yield make
    for ring in made:
        _unlink_quietly(ring)
        assert not os.path.exists(f"/dev/shm/{ring.name}")
        assert not os.path.exists(wake_path(ring.name, "w"))


def _run_children(procs: list, timeout: float = CHILD_TIMEOUT) -> None:
    for p in procs:
        p.start()
    deadline = time.monotonic() + timeout
    try:
        for p in procs:
            p.join(max(0.1, deadline - time.monotonic()))
        stuck = [p.name for p in procs if p.is_alive()]
        assert not stuck, f"child processes still running after {timeout} s: {stuck}"
        assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join()


# -- single process: a random interleaving of writes, reads and commits (hypothesis) --------------

_ops = st.lists(
    st.one_of(
        st.tuples(st.just("write"), st.integers(1, 70), st.booleans()),  # size, through claim()
        st.tuples(st.just("read"), st.integers(0, 3), st.integers(1, 70), st.sampled_from(["poll", "into"]),
                  st.booleans()),  # consumer, max_n, how, commit now
    ),
    min_size=1, max_size=60,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(capacity_log2=st.integers(1, 6), consumers=st.integers(1, 4), ops=_ops)
def test_interleaved_writes_and_reads_lose_nothing_and_keep_order(capacity_log2, consumers, ops):
    cap = 1 << capacity_log2
    ring = RingBuffer.create(_name(), COMMAND, cap, consumers)
    try:
        cons = [ring.consumer(i) for i in range(consumers)]
        seen = [[] for _ in range(consumers)]
        written = 0
        for op in ops:
            if op[0] == "write":
                _, size, via_claim = op
                free = min(c.sequence for c in cons) + cap - ring.cursor
                size = min(size, free, cap)  # a single thread must never wait for itself
                if size == 0:
                    continue
                recs = _records(written, size)
                if via_claim:
                    lo, a, b = ring.claim(size)
                    assert lo == written and len(a) + len(b) == size
                    a.view(ring.raw.dtype)[:] = recs[:len(a)].view(ring.raw.dtype)
                    b["seq"], b["order_id"] = recs["seq"][len(a):], recs["order_id"][len(a):]
                    ring.publish(lo + size)
                else:
                    assert ring.write(recs, timeout=5) == written + size
                written += size
            else:
                _, k, max_n, how, commit_now = op
                if k >= consumers:
                    continue
                c = cons[k]
                if how == "poll":
                    a, b = c.poll(max_n)
                    got = np.concatenate([a, b]) if len(b) else a.copy()
                else:
                    out = np.zeros(max_n, COMMAND)
                    got = out[:c.poll_into(out)]
                assert len(got) <= max_n
                assert np.array_equal(got["order_id"], got["seq"] * 3 + 1)
                seen[k].extend(got["seq"].tolist())
                if commit_now:
                    c.commit()
        for k, c in enumerate(cons):  # drain what is left
            while True:
                a, b = c.poll()
                if not len(a):
                    break
                seen[k].extend(a["seq"].tolist() + b["seq"].tolist())
            c.commit()
            assert seen[k] == list(range(written)), f"consumer {k}"
            assert c.sequence == c.position == ring.cursor == written
    finally:
        _unlink_quietly(ring)


# -- threads: the same properties under real concurrency (GIL switches anywhere) ------------------

def _thread_consumer(ring, index, n, strategy, out):
    c = ring.consumer(index)
    try:
        got = []
        while len(got) < n:
            a, b = c.read(None, strategy, timeout=20)
            assert len(a), "consumer starved"
            got.extend(a["seq"].tolist())
            got.extend(b["seq"].tolist())
            c.commit()
        out[index] = got
    finally:
        c.close()


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(capacity_log2=st.integers(1, 8), consumers=st.integers(1, 3),
       batches=st.lists(st.integers(1, 200), min_size=1, max_size=20), strategy=st.sampled_from(["yield", "sleep"]))
def test_threads_deliver_every_record_once_in_order(capacity_log2, consumers, batches, strategy):
    ring = RingBuffer.create(_name(), COMMAND, 1 << capacity_log2, consumers)
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-4)  # hand the GIL around often: more interleavings, less idle spinning
    try:
        total = sum(batches)
        out = {}
        threads = [threading.Thread(target=_thread_consumer, args=(ring, i, total, strategy_named(strategy), out))
                   for i in range(consumers)]
        for t in threads:
            t.start()
        ring.wait_for_consumers(consumers)
        lo = 0
        for size in batches:
            ring.write(_records(lo, size), strategy_named(strategy), timeout=20)
            lo += size
        for t in threads:
            t.join(30)
        assert all(out.get(i) == list(range(total)) for i in range(consumers))
    finally:
        sys.setswitchinterval(switch)
        _unlink_quietly(ring)


# -- backpressure -------------------------------------------------------------------------------

def test_writer_blocks_until_the_slowest_consumer_commits(make_ring):
    ring = make_ring(8, 2)
    fast, slow = ring.consumer(0), ring.consumer(1)
    done = threading.Event()

    def writer():
        ring.write(_records(0, 20), SleepingWaitStrategy(sleep_s=1e-3), timeout=30)
        done.set()

    t = threading.Thread(target=writer)
    t.start()
    try:
        deadline = time.monotonic() + 10
        while ring.cursor < 8 and time.monotonic() < deadline:
            time.sleep(0.005)
        assert ring.cursor == 8
        fast.poll()
        fast.commit()
        time.sleep(0.2)
        assert ring.cursor == 8 and not done.is_set()  # the slow one still holds every slot
        a, _ = slow.poll(4)
        assert a["seq"].tolist() == [0, 1, 2, 3]
        slow.commit()
        while ring.cursor < 12 and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(0.1)
        assert ring.cursor == 12  # exactly the 4 freed slots
        while not done.is_set() and time.monotonic() < deadline:  # let it finish
            for c in (fast, slow):
                c.poll()
                c.commit()
            time.sleep(0.002)
        assert done.wait(10)
        for c in (fast, slow):
            c.poll()
            c.commit()
            assert c.sequence == 20
    finally:
        fast.close()
        slow.close()
        t.join(10)


def test_full_ring_times_out_and_misuse_is_refused(make_ring):
    ring = make_ring(4)
    c = ring.consumer(0)
    ring.write(_records(0, 4))
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        ring.write(_records(4, 1), BusySpinWaitStrategy(), timeout=0.2)
    with pytest.raises(TimeoutError):
        ring.claim(1, BlockingWaitStrategy(), timeout=0.2)
    assert time.monotonic() - t0 < 5
    assert c.attached  # a live consumer is never detached for being slow
    with pytest.raises(ValueError):
        ring.claim(5)
    with pytest.raises(ValueError):
        ring.publish(ring.cursor + 1)  # nothing claimed there
    with pytest.raises(TypeError):
        ring.write(np.zeros(1, EVENT))
    with pytest.raises(ValueError):
        c.commit(3)  # beyond what it read
    c.poll(2)
    c.commit(2)
    with pytest.raises(ValueError):
        c.commit(1)  # backwards
    lo, a, b = ring.claim(2)
    assert (lo, len(a), len(b)) == (4, 2, 0)
    ring.publish(6)
    assert c.wait(6, timeout=1) == 6


def test_no_consumer_means_no_gating_and_a_late_consumer_starts_at_the_cursor(make_ring):
    ring = make_ring(8, 2)
    assert ring.write(_records(0, 50), timeout=5) == 50
    c = ring.consumer(1)
    assert c.position == c.sequence == 50
    assert c.poll()[0].size == 0
    ring.write(_records(50, 3))
    assert c.read(timeout=1)[0]["seq"].tolist() == [50, 51, 52]


# -- attach -------------------------------------------------------------------------------------

def test_attach_checks_the_header(make_ring):
    ring = make_ring(16, 3)
    ring.write(_records(0, 5))
    other = RingBuffer.attach(ring.name, COMMAND, capacity=16)
    try:
        assert (other.capacity, other.max_consumers, other.cursor) == (16, 3, 5)
        assert other.slots["seq"][:5].tolist() == [0, 1, 2, 3, 4]
    finally:
        other.close()
    with pytest.raises(RingAttachError, match="96-byte dtype"):
        RingBuffer.attach(ring.name, EVENT)
    same_size = np.dtype([("w", "<i8", (8,))])
    with pytest.raises(RingAttachError, match="another dtype"):
        RingBuffer.attach(ring.name, same_size)
    with pytest.raises(RingAttachError, match="capacity 16"):
        RingBuffer.attach(ring.name, COMMAND, capacity=32)
    with pytest.raises(FileNotFoundError):
        RingBuffer.attach(_name(), COMMAND)
    raw = SharedMemory(name=_name(), create=True, size=1 << 16)
    try:
        with pytest.raises(RingAttachError, match="not a microex ring"):
            RingBuffer.attach(raw.name, COMMAND)
    finally:
        raw.close()
        raw.unlink()
    for bad in (0, 3, 12):
        with pytest.raises(ValueError):
            RingBuffer.create(_name(), COMMAND, bad)
    with pytest.raises(ValueError):
        RingBuffer.create(_name(), COMMAND, 8, 0)


def test_consumer_index_is_exclusive_while_its_process_lives(make_ring):
    ring = make_ring(8, 2)
    c = ring.consumer(0)
    with pytest.raises(RuntimeError, match="live process"):
        ring.consumer(0)
    with pytest.raises(ValueError):
        ring.consumer(2)
    with pytest.raises(TypeError):
        pickle.dumps(c)
    c.close()
    ring.consumer(0).close()  # free again after close
    again = pickle.loads(pickle.dumps(ring))  # what 'spawn' does: re-attach by name
    assert (again.name, again.owner, again.capacity) == (ring.name, False, 8)
    del again  # closes itself, quietly


# -- dead consumers -----------------------------------------------------------------------------

def _attach_and_hang(ring, index, ready):
    ring.consumer(index)
    ready.set()
    time.sleep(300)


@pytest.mark.parametrize("reap", [True, False], ids=["reaped", "zombie"])
def test_a_killed_consumer_does_not_wedge_the_writer(make_ring, reap):
    ring = make_ring(8, 2, dead_consumer_timeout=0.3)
    live = ring.consumer(0)
    ctx = mp.get_context("fork")
    ready = ctx.Event()
    child = ctx.Process(target=_attach_and_hang, args=(ring, 1, ready), daemon=True)
    child.start()
    try:
        assert ready.wait(CHILD_TIMEOUT)
        assert ring.attached_consumers() == [0, 1]
        os.kill(child.pid, signal.SIGKILL)
        if reap:
            child.join(10)
        else:  # not reaped: a zombie, which kill(pid, 0) alone would call alive
            deadline = time.monotonic() + 10
            while process_alive(child.pid) and time.monotonic() < deadline:
                time.sleep(0.01)
        t0 = time.monotonic()
        lo = 0
        while lo < 40:  # five laps: the dead consumer (at 0) would block the second one
            ring.write(_records(lo, 4), SleepingWaitStrategy(sleep_s=1e-3), timeout=20)
            lo += 4
            a, b = live.poll()
            live.commit()
        assert time.monotonic() - t0 < 15
        assert ring.attached_consumers() == [0]
        again = ring.consumer(1)  # its index is free to take over
        assert again.position == ring.cursor
    finally:
        child.kill()
        child.join(10)


def test_process_alive():
    assert process_alive(os.getpid())
    assert not process_alive(0)
    stat_pid = os.getpid()
    with open(f"/proc/{stat_pid}/stat", "rb") as f:
        started = int(f.read().rsplit(b")", 1)[1].split()[19])
    assert process_alive(stat_pid, started)
    assert not process_alive(stat_pid, started + 1)  # same pid, another process


# -- cross-process ---------------------------------------------------------------------------------

def _xp_writer(ring, n, seed, strategy_name):
    rng = np.random.default_rng(seed)
    strategy = strategy_named(strategy_name, **({"safety_s": 20.0} if strategy_name == "blocking" else {}))
    ring.wait_for_consumers(ring.max_consumers, timeout=CHILD_TIMEOUT)
    src = _records(0, n)
    lo = 0
    while lo < n:
        k = int(min(n - lo, rng.integers(1, 3 * ring.capacity // 2)))
        if rng.random() < 0.3 and k <= ring.capacity:
            start, a, b = ring.claim(k, strategy, timeout=CHILD_TIMEOUT)
            raw = src[lo:lo + k].view(ring.raw.dtype)
            a.view(ring.raw.dtype)[:] = raw[:len(a)]
            b.view(ring.raw.dtype)[:] = raw[len(a):]
            ring.publish(start + k)
        else:
            ring.write(src[lo:lo + k], strategy, timeout=CHILD_TIMEOUT)
        lo += k
    ring.close()


def _xp_consumer(ring, index, n, seed, strategy_name):
    rng = np.random.default_rng(seed + 1 + index)
    strategy = strategy_named(strategy_name, **({"safety_s": 20.0} if strategy_name == "blocking" else {}))
    c = ring.consumer(index)
    got = np.zeros(n, COMMAND)
    have = 0
    while have < n:
        if rng.random() < 0.5:
            a, b = c.read(int(rng.integers(1, 2 * ring.capacity)), strategy, timeout=CHILD_TIMEOUT)
            assert len(a), "timed out waiting for records"
            got[have:have + len(a)] = a
            got[have + len(a):have + len(a) + len(b)] = b
            have += len(a) + len(b)
        else:
            c.wait(c.position + 1, strategy, timeout=CHILD_TIMEOUT)
            have += c.poll_into(got[have:])
        c.commit()
    assert np.array_equal(got["seq"], np.arange(n)), "lost, duplicated or reordered records"
    assert np.array_equal(got["order_id"], got["seq"] * 3 + 1), "torn records"
    c.close()
    ring.close()


@pytest.mark.parametrize("method,strategy,n", [("fork", "yield", 100_000), ("spawn", "blocking", 30_000)])
def test_writer_process_and_two_consumer_processes(make_ring, method, strategy, n):
    ring = make_ring(256, 2)
    ctx = mp.get_context(method)
    procs = [ctx.Process(target=_xp_writer, args=(ring, n, 7, strategy), name="writer")]
    procs += [ctx.Process(target=_xp_consumer, args=(ring, i, n, 7, strategy), name=f"consumer{i}")
              for i in range(2)]
    _run_children(procs)
    assert ring.cursor == n


@pytest.mark.parametrize("name", ["busy_spin", "yield", "sleep", "blocking"])
def test_every_wait_strategy_delivers_both_ways(make_ring, name):
    """Writer and consumer both wait with `name`; a 16-slot ring makes each wait for the other."""
    n = 10_000 if name in ("busy_spin", "yield") else 4_000
    ring = make_ring(16, 1)
    ctx = mp.get_context("fork")
    writer = ctx.Process(target=_xp_writer, args=(ring, n, 3, name), name="writer")
    consumer = ctx.Process(target=_xp_consumer, args=(ring, 0, n, 3, name), name="consumer")
    _run_children([writer, consumer])


def _echo(ping, pong, n, ready):
    inbox = ping.consumer(0)
    strategy = BlockingWaitStrategy(safety_s=30.0)  # no polling: only a signal can wake it in time
    ready.set()
    for _ in range(n):
        a, _ = inbox.read(1, strategy, timeout=CHILD_TIMEOUT)
        pong.write(a.copy(), strategy, timeout=CHILD_TIMEOUT)
        inbox.commit()


def test_blocking_strategy_wakes_promptly(make_ring):
    ping, pong = make_ring(4), make_ring(4)
    back = pong.consumer(0)
    ctx = mp.get_context("fork")
    ready = ctx.Event()
    n = 300
    child = ctx.Process(target=_echo, args=(ping, pong, n, ready), daemon=True)
    child.start()
    try:
        assert ready.wait(CHILD_TIMEOUT)
        strategy = BlockingWaitStrategy(safety_s=30.0)
        worst = 0.0
        for i in range(n):
            if i % 50 == 0:
                time.sleep(0.05)  # let the child really fall asleep in select()
            t0 = time.monotonic()
            ping.write(_records(i, 1), strategy, timeout=10)
            a, _ = back.read(1, strategy, timeout=10)
            worst = max(worst, time.monotonic() - t0)
            assert a["seq"].tolist() == [i]
            back.commit()
        assert worst < 1.0, f"a round trip took {worst:.3f} s: a wake-up was lost"
        child.join(10)
        assert child.exitcode == 0
    finally:
        if child.is_alive():
            child.kill()
            child.join()


def test_wait_strategies_time_out_and_return_the_last_value():
    class Stuck:
        lossless = True

        def __init__(self):
            self.value = lambda: 3
            self.r, self.w = os.pipe()

        def arm(self):
            pass

        def disarm(self):
            pass

        def wakeup_fd(self):
            return self.r

    stuck = Stuck()
    try:
        for s in (BusySpinWaitStrategy(), YieldingWaitStrategy(), SleepingWaitStrategy(), BlockingWaitStrategy()):
            t0 = time.monotonic()
            assert s.wait(stuck, 5, timeout=0.05) == 3
            assert s.wait(stuck, 3, timeout=0.05) == 3
            assert time.monotonic() - t0 < 2
    finally:
        os.close(stuck.r)
        os.close(stuck.w)
    with pytest.raises(ValueError):
        strategy_named("nope")


def test_ring_bench_runs_and_writes_every_row(tmp_path):
    import argparse
    import json

    from microex.perf import ring_bench

    parser = argparse.ArgumentParser()
    ring_bench.add_arguments(parser)
    out = tmp_path / "ring.json"
    args = parser.parse_args(["--json", str(out), "--messages", "300000", "--baseline-messages", "50000",
                              "--roundtrips", "1000", "--slow-roundtrips", "200", "--runs", "1"])
    assert ring_bench.main(args) == 0
    rows = {r["name"]: r for r in json.loads(out.read_text())["rows"]}
    transfer = ["ring.transfer", "ring.transfer.batch_256", "ring.transfer.batch_4096", "ring.transfer.mp_queue",
                "ring.transfer.pipe"]
    pingpong = [f"ring.pingpong.{s}" for s in ("busy_spin", "yield", "sleep", "blocking", "mp_queue", "pipe")]
    assert sorted(rows) == sorted(transfer + pingpong)
    for name in transfer + pingpong:
        assert rows[name]["ops_per_s"] > 0 and rows[name]["workload"]
    for name in pingpong:
        assert 0 < rows[name]["p50_ns"] <= rows[name]["p99_ns"] <= rows[name]["p999_ns"]
    assert rows["ring.transfer"]["ratio_vs"] == "mp_queue"
