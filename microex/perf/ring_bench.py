"""`microex bench ring`: shared-memory rings against multiprocessing.Queue and Pipe.

Rows (every figure is cross-process: one process writes, another reads, the parent waits):
- ring.transfer                 the best batched ring transfer, with the ratio to mp_queue
- ring.transfer.batch_<N>       COMMAND records (64 bytes) written in batches of N (256, 4096)
                                through a RingBuffer; the consumer takes all that is published
                                at each read and touches every record (sums its `seq` field)
- ring.transfer.mp_queue        the same stream as numpy batches through multiprocessing.Queue
- ring.transfer.pipe            the same stream as bytes through multiprocessing.Pipe
                                (send_bytes / recv_bytes_into a preallocated buffer)
- ring.pingpong.<strategy>      one-record round trips over two rings (there and back), per
                                wait strategy: busy_spin, yield, sleep, blocking; latency is
                                the round trip seen by the sender, ops/s = round trips / s
- ring.pingpong.mp_queue/.pipe  the same round trip through two Queues / one duplex Pipe

Throughput is messages over the time from the writer's first write to the consumer's last
read (both clocks are CLOCK_MONOTONIC, shared by all processes). On a 2-core machine the
two processes of a busy-spin or yield run own both cores; the parent sleeps in join().
"""

from __future__ import annotations

import multiprocessing as mp
import os
import statistics
import time
import uuid

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from microex.core.records import COMMAND
from microex.perf.results import latency_fields, print_rows, throughput_fields, write_results
from microex.pipeline.ring import RingBuffer
from microex.pipeline.wait import BusySpinWaitStrategy, strategy_named

BATCHES = (256, 4096)
STRATEGIES = ("busy_spin", "yield", "sleep", "blocking")
TARGET_TRANSFER = 20e6  # msgs/s, batched
TARGET_PINGPONG_P50_NS = 5_000  # busy-spin round trip
_SOURCE_LEN = 1 << 18  # distinct records the writer cycles through (16 MiB)
_WARMUP = 2_000  # round trips not recorded (a tenth of a short run)


def _warmup(n: int) -> int:
    return min(_WARMUP, max(10, n // 10))


def add_arguments(parser) -> None:
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--messages", type=int, default=32_000_000, help="records per ring transfer run")
    parser.add_argument("--baseline-messages", type=int, default=4_000_000,
                        help="records per Queue / Pipe transfer run (they are much slower)")
    parser.add_argument("--capacity", type=int, default=1 << 16, help="transfer ring slots (power of two)")
    parser.add_argument("--roundtrips", type=int, default=200_000,
                        help="ping-pong round trips for busy_spin and yield")
    parser.add_argument("--slow-roundtrips", type=int, default=20_000,
                        help="ping-pong round trips for sleep, blocking, Queue and Pipe (10-100x slower)")
    parser.add_argument("--runs", type=int, default=3, help="transfer runs per variant; the median is reported")
    parser.add_argument("--start-method", choices=("fork", "spawn", "forkserver"), default="fork")


def _source() -> np.ndarray:
    src = np.zeros(_SOURCE_LEN, COMMAND)
    src["seq"] = np.arange(_SOURCE_LEN)
    src["order_id"] = np.arange(_SOURCE_LEN) + 1
    src["account"], src["instrument"], src["qty_lots"], src["price_ticks"] = 7, 1, 10, 10_000
    src["action"], src["side"], src["ord_type"], src["tif"] = 1, 1, 1, 1
    return src


def _expected_checksum(messages: int) -> int:
    full, rest = divmod(messages, _SOURCE_LEN)
    return full * (_SOURCE_LEN * (_SOURCE_LEN - 1) // 2) + rest * (rest - 1) // 2


def _batches(messages: int, batch: int):
    """(offset, size) into the source for each batch of the stream."""
    off = 0
    left = messages
    while left:
        k = min(batch, left, _SOURCE_LEN - off)
        yield off, k
        left -= k
        off = (off + k) % _SOURCE_LEN


# -- transfer: child process bodies (module level, so 'spawn' can import them) ---------------

def _ring_writer(ring: RingBuffer, messages: int, batch: int, out) -> None:
    src = _source()
    spin = BusySpinWaitStrategy()
    views = [src[off:off + k] for off, k in _batches(_SOURCE_LEN, batch)]  # one pass over the source
    ring.wait_for_consumers(1)
    t0 = time.perf_counter_ns()
    write = ring.write
    sent = 0
    while sent < messages:
        for v in views:
            if sent + len(v) > messages:
                v = v[:messages - sent]
            write(v, spin)
            sent += len(v)
            if sent >= messages:
                break
    out.send(("t0", t0))
    ring.close()


def _ring_reader(ring: RingBuffer, messages: int, out) -> None:
    consumer = ring.consumer(0)
    spin = BusySpinWaitStrategy()
    read, commit = consumer.read, consumer.commit
    got = checksum = 0
    reads = 0
    while got < messages:
        a, b = read(None, spin)
        checksum += int(a["seq"].sum())
        got += len(a)
        if len(b):
            checksum += int(b["seq"].sum())
            got += len(b)
        commit()
        reads += 1
    t1 = time.perf_counter_ns()
    out.send(("t1", t1, got, checksum, reads))
    consumer.close()
    ring.close()


def _queue_writer(q, ready, messages: int, batch: int, out) -> None:
    src = _source()
    ready.wait()
    t0 = time.perf_counter_ns()
    for off, k in _batches(messages, batch):
        q.put(src[off:off + k])
    out.send(("t0", t0))
    q.close()
    q.join_thread()


def _queue_reader(q, ready, messages: int, out) -> None:
    ready.set()
    got = checksum = 0
    while got < messages:
        a = q.get()
        checksum += int(a["seq"].sum())
        got += len(a)
    out.send(("t1", time.perf_counter_ns(), got, checksum, 0))


def _pipe_writer(conn, ready, messages: int, batch: int, out) -> None:
    src = _source()
    ready.wait()
    t0 = time.perf_counter_ns()
    send = conn.send_bytes
    for off, k in _batches(messages, batch):
        send(src[off:off + k])
    out.send(("t0", t0))


def _pipe_reader(conn, ready, messages: int, batch: int, out) -> None:
    buf = np.zeros(batch, COMMAND)
    mem = memoryview(buf).cast("B")
    ready.set()
    got = checksum = 0
    recv = conn.recv_bytes_into
    while got < messages:
        k = recv(mem) // COMMAND.itemsize
        checksum += int(buf["seq"][:k].sum())
        got += k
    out.send(("t1", time.perf_counter_ns(), got, checksum, 0))


def _run_pair(ctx, writer, wargs, reader, rargs) -> dict:
    """Start reader then writer, collect their reports, join both."""
    pipes = [ctx.Pipe(duplex=False) for _ in range(2)]  # one each: big reports must not interleave
    procs = [ctx.Process(target=reader, args=(*rargs, pipes[0][1]), daemon=True),
             ctx.Process(target=writer, args=(*wargs, pipes[1][1]), daemon=True)]
    for p in procs:
        p.start()
    report = {}
    try:
        for recv, send in pipes:
            send.close()
            if not recv.poll(300):
                raise TimeoutError("a benchmark child process stopped reporting")
            msg = recv.recv()
            report[msg[0]] = msg[1:]
    finally:
        for p in procs:
            p.join(10)
            if p.is_alive():
                p.kill()
                p.join()
    return report


def _transfer_result(report: dict, messages: int) -> tuple[float, int]:
    (t0,), (t1, got, checksum, reads) = report["t0"], report["t1"]
    if got != messages or checksum != _expected_checksum(messages):
        raise RuntimeError(f"transfer lost or reordered records: got {got} of {messages}, "
                           f"checksum {checksum} != {_expected_checksum(messages)}")
    return (t1 - t0) / 1e9, reads


def transfer_ring(ctx, messages: int, batch: int, capacity: int) -> tuple[float, int]:
    ring = RingBuffer.create(f"mxb-{uuid.uuid4().hex[:12]}", COMMAND, capacity, 1)
    try:
        report = _run_pair(ctx, _ring_writer, (ring, messages, batch), _ring_reader, (ring, messages))
    finally:
        ring.close()
        ring.unlink()
    return _transfer_result(report, messages)


def transfer_queue(ctx, messages: int, batch: int, capacity: int) -> float:
    q, ready = ctx.Queue(maxsize=max(1, capacity // batch)), ctx.Event()
    report = _run_pair(ctx, _queue_writer, (q, ready, messages, batch), _queue_reader, (q, ready, messages))
    return _transfer_result(report, messages)[0]


def transfer_pipe(ctx, messages: int, batch: int) -> float:
    a, b = ctx.Pipe(duplex=False)
    ready = ctx.Event()
    report = _run_pair(ctx, _pipe_writer, (b, ready, messages, batch), _pipe_reader, (a, ready, messages, batch))
    return _transfer_result(report, messages)[0]


# -- ping-pong ---------------------------------------------------------------------------------

def _ring_ping(ping: RingBuffer, pong: RingBuffer, n: int, strategy_name: str, out) -> None:
    strategy = strategy_named(strategy_name)
    back = pong.consumer(0)
    ping.wait_for_consumers(1)
    msg = np.zeros(1, COMMAND)
    seq = msg["seq"]
    lat = np.zeros(n, np.int64)
    clock = time.perf_counter_ns
    write, read, commit = ping.write, back.read, back.commit
    last = -1
    t_start = 0
    for i in range(-_warmup(n), n):
        if i == 0:
            t_start = clock()
        seq[0] = i
        t0 = clock()
        write(msg, strategy)
        a, b = read(1, strategy)
        t1 = clock()
        last = a  # checked below, outside the timed path
        commit()
        if i >= 0:
            lat[i] = t1 - t0
    wall = clock() - t_start
    ok = int(last["seq"][0]) == n - 1
    out.send(("ping", lat, wall, ok))
    back.close()
    ping.close()
    pong.close()


def _ring_pong(ping: RingBuffer, pong: RingBuffer, n: int, strategy_name: str, out) -> None:
    strategy = strategy_named(strategy_name)
    inbox = ping.consumer(0)
    pong.wait_for_consumers(1)
    read, commit, write = inbox.read, inbox.commit, pong.write
    for _ in range(_warmup(n) + n):
        a, b = read(1, strategy)
        write(a, strategy)
        commit()
    out.send(("pong",))
    inbox.close()
    ping.close()
    pong.close()


def _queue_ping(q_there, q_back, ready, n: int, out) -> None:
    msg = np.zeros(1, COMMAND)
    lat = np.zeros(n, np.int64)
    clock = time.perf_counter_ns
    ready.wait()
    put, get = q_there.put, q_back.get
    t_start = 0
    for i in range(-_warmup(n), n):
        if i == 0:
            t_start = clock()
        msg["seq"] = i
        t0 = clock()
        put(msg)
        r = get()
        t1 = clock()
        if i >= 0:
            lat[i] = t1 - t0
    out.send(("ping", lat, clock() - t_start, int(r["seq"][0]) == n - 1))


def _queue_pong(q_there, q_back, ready, n: int, out) -> None:
    ready.set()
    get, put = q_there.get, q_back.put
    for _ in range(_warmup(n) + n):
        put(get())
    out.send(("pong",))


def _pipe_ping(conn, ready, n: int, out) -> None:
    msg = np.zeros(1, COMMAND)
    buf = np.zeros(1, COMMAND)
    mem = memoryview(buf).cast("B")
    lat = np.zeros(n, np.int64)
    clock = time.perf_counter_ns
    ready.wait()
    send, recv = conn.send_bytes, conn.recv_bytes_into
    t_start = 0
    for i in range(-_warmup(n), n):
        if i == 0:
            t_start = clock()
        msg["seq"] = i
        t0 = clock()
        send(msg)
        recv(mem)
        t1 = clock()
        if i >= 0:
            lat[i] = t1 - t0
    out.send(("ping", lat, clock() - t_start, int(buf["seq"][0]) == n - 1))


def _pipe_pong(conn, ready, n: int, out) -> None:
    buf = bytearray(COMMAND.itemsize)
    ready.set()
    send, recv = conn.send_bytes, conn.recv_bytes_into
    for _ in range(_warmup(n) + n):
        recv(buf)
        send(buf)
    out.send(("pong",))


def _pingpong_result(report: dict, what: str) -> tuple[np.ndarray, float]:
    lat, wall, ok = report["ping"]
    if not ok:
        raise RuntimeError(f"{what}: the last reply was not the last message sent")
    return lat, wall / 1e9


def pingpong_ring(ctx, n: int, strategy: str) -> tuple[np.ndarray, float]:
    tag = uuid.uuid4().hex[:12]
    ping = RingBuffer.create(f"mxb-{tag}-ping", COMMAND, 1024, 1)
    pong = RingBuffer.create(f"mxb-{tag}-pong", COMMAND, 1024, 1)
    try:
        report = _run_pair(ctx, _ring_ping, (ping, pong, n, strategy), _ring_pong, (ping, pong, n, strategy))
    finally:
        for r in (ping, pong):
            r.close()
            r.unlink()
    return _pingpong_result(report, f"ring.pingpong.{strategy}")


def pingpong_queue(ctx, n: int) -> tuple[np.ndarray, float]:
    there, back, ready = ctx.Queue(), ctx.Queue(), ctx.Event()
    report = _run_pair(ctx, _queue_ping, (there, back, ready, n), _queue_pong, (there, back, ready, n))
    return _pingpong_result(report, "ring.pingpong.mp_queue")


def pingpong_pipe(ctx, n: int) -> tuple[np.ndarray, float]:
    a, b = ctx.Pipe(duplex=True)
    ready = ctx.Event()
    report = _run_pair(ctx, _pipe_ping, (a, ready, n), _pipe_pong, (b, ready, n))
    return _pingpong_result(report, "ring.pingpong.pipe")


# -- the command ---------------------------------------------------------------------------------

def _verdict(met: bool) -> str:
    return "target met" if met else "target MISSED"


def main(args) -> int:
    console = Console(stderr=True)
    ctx = mp.get_context(args.start_method)
    cores = os.cpu_count() or 1
    rows: list[dict] = []
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=console, refresh_per_second=4)
    with progress:
        task = progress.add_task("ring.transfer", total=(len(BATCHES) + 2) * args.runs)
        ring_s = {}
        for batch in BATCHES:
            progress.update(task, description=f"ring.transfer.batch_{batch}")
            runs = []
            for _ in range(args.runs):
                runs.append(transfer_ring(ctx, args.messages, batch, args.capacity))
                progress.advance(task)
            ring_s[batch] = sorted(runs)[len(runs) // 2]  # median by time, with its read count
        base_batch = BATCHES[-1]
        progress.update(task, description="ring.transfer.mp_queue")
        runs = []
        for _ in range(args.runs):
            runs.append(transfer_queue(ctx, args.baseline_messages, base_batch, args.capacity))
            progress.advance(task)
        queue_s = statistics.median(runs)
        progress.update(task, description="ring.transfer.pipe")
        runs = []
        for _ in range(args.runs):
            runs.append(transfer_pipe(ctx, args.baseline_messages, base_batch))
            progress.advance(task)
        pipe_s = statistics.median(runs)

        task = progress.add_task("ring.pingpong", total=len(STRATEGIES) + 2)
        pp = {}
        for name in STRATEGIES:
            progress.update(task, description=f"ring.pingpong.{name}")
            n = args.roundtrips if name in ("busy_spin", "yield") else args.slow_roundtrips
            pp[name] = pingpong_ring(ctx, n, name)
            progress.advance(task)
        progress.update(task, description="ring.pingpong.mp_queue")
        pp["mp_queue"] = pingpong_queue(ctx, args.slow_roundtrips)
        progress.advance(task)
        progress.update(task, description="ring.pingpong.pipe")
        pp["pipe"] = pingpong_pipe(ctx, args.slow_roundtrips)
        progress.advance(task)

    queue_tp = throughput_fields(args.baseline_messages, queue_s)
    common = (f"64-byte COMMAND records, writer process -> consumer process, {cores} cores, "
              f"start method {args.start_method}")
    best = max(BATCHES, key=lambda b: args.messages / ring_s[b][0])
    for k, batch in enumerate((best, *BATCHES)):
        seconds, reads = ring_s[batch]
        tp = throughput_fields(args.messages, seconds)
        met = tp["ops_per_s"] >= TARGET_TRANSFER
        name = "ring.transfer" if k == 0 else f"ring.transfer.batch_{batch}"
        rows.append({"name": name,
                     "workload": f"{common}; {args.messages:,} records written in batches of {batch} into a "
                     f"{args.capacity:,}-slot RingBuffer, median of {args.runs} runs; the consumer reads all that "
                     f"is published ({args.messages / reads:,.0f} records a read) and sums each record's seq; "
                     f"both busy-spin (they own both cores); target >= {TARGET_TRANSFER / 1e6:.0f}M msgs/s: "
                     f"{_verdict(met)}",
                     **tp, "batch": batch, "ratio": tp["ops_per_s"] / queue_tp["ops_per_s"],
                     "ratio_vs": "mp_queue", "target_ops_per_s": TARGET_TRANSFER, "target_met": met})
    rows.append({"name": "ring.transfer.mp_queue",
                 "workload": f"{common}; {args.baseline_messages:,} records (median of {args.runs} runs) as numpy "
                 f"batches of {base_batch} through multiprocessing.Queue(maxsize="
                 f"{max(1, args.capacity // base_batch)}) (pickled), consumer sums each record's seq",
                 **queue_tp, "batch": base_batch})
    rows.append({"name": "ring.transfer.pipe",
                 "workload": f"{common}; {args.baseline_messages:,} records (median of {args.runs} runs) in "
                 f"batches of {base_batch} through multiprocessing.Pipe: send_bytes(array) / "
                 f"recv_bytes_into(preallocated array), consumer sums each record's seq",
                 **throughput_fields(args.baseline_messages, pipe_s), "batch": base_batch})
    notes = {
        "busy_spin": "both sides busy-spin: they pin both cores of this machine",
        "yield": "spin 100 reads, then sched_yield between reads (still 100% CPU on both cores)",
        "sleep": "spin 100, yield 100, then sleep 50 µs between reads (timer slack adds ~50 µs)",
        "blocking": "block in select() on a FIFO, woken by the writer (kernel wake-up on each hop)",
    }
    for name in (*STRATEGIES, "mp_queue", "pipe"):
        lat, wall = pp[name]
        n = len(lat)
        if name in STRATEGIES:
            what = (f"one 64-byte record there and back over two 1,024-slot RingBuffers, wait strategy "
                    f"{name} on both sides ({notes[name]})")
        elif name == "mp_queue":
            what = "one 1-record numpy array there and back over two multiprocessing.Queue"
        else:
            what = "64 bytes there and back over one duplex multiprocessing.Pipe (send_bytes/recv_bytes_into)"
        row = {"name": f"ring.pingpong.{name}",
               "workload": f"{what}; {n:,} round trips after {_warmup(n):,} warm-up, timed by the sender with "
               f"perf_counter_ns; ops/s = round trips / s",
               **throughput_fields(n, wall), **latency_fields(lat)}
        if name == "busy_spin":
            met = row["p50_ns"] <= TARGET_PINGPONG_P50_NS
            row["workload"] += f"; target p50 <= {TARGET_PINGPONG_P50_NS / 1000:.0f} µs: {_verdict(met)}"
            row.update(target_p50_ns=TARGET_PINGPONG_P50_NS, target_met=met)
        rows.append(row)
    print_rows(rows)
    out = write_results(rows, args.json, "ring")
    console.print(f"results written to {out}")
    return 0
