"""Load processes for `microex bench md`: many feed subscribers, and an order driver.

How it works
- `subscribers_main`: one process holds many TCP connections to the market-data
  port, each subscribed to one instrument (book: a snapshot, then every level
  change). No asyncio: one compiled loop (`receive_ready`, numba over libc's
  epoll_wait, recv and clock_gettime) reads every ready socket into one buffer and
  scans it: it counts the frames (INCREMENT, SNAPSHOT_LEVEL/END, STATUS CONFLATED,
  RESYNC, ERROR) and samples latency: receive time minus the update's ts_ns (the
  time the gateway read the order that caused it, CLOCK_REALTIME), so the figure
  is order entry -> subscriber, an upper bound of publish -> receive. A partial
  frame waits in the connection's carry for the rest. With `multicast` the
  subscribers are UDP sockets joined to their instrument's group instead, read by
  the same loop (a datagram holds whole frames). Compiled because the
  subscribers share the 2 cores with the venue: a Python loop per ready socket
  cost about twice the CPU for the same reads.
  It obeys the parent over a Pipe: "count" zeroes the window counters, "report"
  sends them (with its CPU time), "stop" ends it.
- `driver_main`: one binary-protocol session placing and cancelling resting bids
  at a fixed rate over 10 instruments (NEW on even steps, CANCEL of that order on
  odd ones): each command changes one price level, so each is one published
  update. It wakes every `TICK_S` (1 ms) and sends what fell due since (10 commands
  a tick at 10k/s), as a feed's source publishes in bursts; waking per command
  would spend a core of this 2-core machine on wake-ups of the driver, gateway and
  engine, which the fan-out and the subscribers need. Its reports are read and dropped.
"""

from __future__ import annotations

import ctypes
import select
import socket
import time

import numpy as np
from numba import njit

from microex.core.records import MdMsg
from microex.protocol.binary import (
    CANCEL,
    NEW_ORDER,
    PROTOCOL_VERSION,
    FrameEncoder,
    MsgType,
)
from microex.protocol.md_binary import MdFrameEncoder, MdStatus, SubFlag

BUF = 1 << 22
TICK_S = 0.001
C_INCREMENTS, C_LEVELS, C_SNAPSHOTS, C_CONFLATED, C_RESYNC, C_ERRORS, C_SAMPLES = range(7)
_INCREMENT, _LEVEL, _END = int(MdMsg.INCREMENT), int(MdMsg.SNAPSHOT_LEVEL), int(MdMsg.SNAPSHOT_END)
_STATUS, _RESYNC, _ERROR = int(MdMsg.STATUS), int(MdMsg.RESYNC), int(MdMsg.ERROR)
_CONFLATED = int(MdStatus.CONFLATED)


@njit(cache=True)
def scan_feed(buf, n, now_ns, counters, samples, sample_every):
    """Count whole frames of buf[:n]; returns the bytes consumed (-1: a frame that cannot be)."""
    pos = 0
    while n - pos >= 8:
        length = np.int64(buf[pos]) | (np.int64(buf[pos + 1]) << 8)
        if length < 8 or length > 256 or (length & 7):
            return -1
        if n - pos < length:
            break
        mtype = np.int64(buf[pos + 2]) | (np.int64(buf[pos + 3]) << 8)
        if mtype == _INCREMENT:
            counters[C_INCREMENTS] += 1
            if counters[C_INCREMENTS] % sample_every == 0 and counters[C_SAMPLES] < samples.shape[0]:
                ts = np.int64(0)
                for b in range(8):
                    ts |= np.int64(buf[pos + 16 + b]) << (8 * b)
                samples[counters[C_SAMPLES]] = now_ns - ts
                counters[C_SAMPLES] += 1
        elif mtype == _LEVEL:
            counters[C_LEVELS] += 1
        elif mtype == _END:
            counters[C_SNAPSHOTS] += 1
        elif mtype == _STATUS:
            if buf[pos + 20] == _CONFLATED:
                counters[C_CONFLATED] += 1
        elif mtype == _RESYNC:
            counters[C_RESYNC] += 1
        elif mtype == _ERROR:
            counters[C_ERRORS] += 1
        pos += length
    return pos


_libc = ctypes.CDLL(None)
_recv = _libc.recv
_recv.argtypes = [ctypes.c_int, ctypes.c_size_t, ctypes.c_size_t, ctypes.c_int]
_recv.restype = ctypes.c_ssize_t
_epoll_wait = _libc.epoll_wait
_epoll_wait.argtypes = [ctypes.c_int, ctypes.c_size_t, ctypes.c_int, ctypes.c_int]
_epoll_wait.restype = ctypes.c_int
_epoll_ctl = _libc.epoll_ctl
_epoll_ctl.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_size_t]
_epoll_ctl.restype = ctypes.c_int
_clock_gettime = _libc.clock_gettime
_clock_gettime.argtypes = [ctypes.c_int, ctypes.c_size_t]
_clock_gettime.restype = ctypes.c_int
_EVENT_SIZE = 12  # struct epoll_event is packed on x86-64: u32 events, then the u64 data (our fd)
_MAX_EVENTS = 1024
_MAX_FRAME = 256
_ERR_HUP = select.EPOLLERR | select.EPOLLHUP
_DEL = 2  # EPOLL_CTL_DEL


@njit(nogil=True)
def receive_ready(epfd, events, timeout_ms, sub_of_fd, buf, carry, carry_len, timespec, counters, samples,
                  sample_every, per_sub) -> int:
    """One epoll_wait and a read of every ready socket; returns how many connections closed."""
    n = _epoll_wait(epfd, events.ctypes.data, _MAX_EVENTS, timeout_ms)
    closed = 0
    for e in range(max(n, 0)):
        base = e * _EVENT_SIZE
        flags = np.int64(events[base]) | (np.int64(events[base + 1]) << 8)
        fd = np.int64(events[base + 4]) | (np.int64(events[base + 5]) << 8) | (np.int64(events[base + 6]) << 16)
        i = sub_of_fd[fd]
        head = carry_len[i]
        for b in range(head):
            buf[b] = carry[i, b]
        got = _recv(fd, buf.ctypes.data + head, buf.shape[0] - head, 0x40)  # MSG_DONTWAIT
        if got == 0 or (got < 0 and flags & _ERR_HUP):  # the server dropped us (slow consumer) or closed
            _epoll_ctl(epfd, _DEL, fd, 0)
            closed += 1
            continue
        if got < 0:
            continue
        _clock_gettime(0, timespec.ctypes.data)  # CLOCK_REALTIME, as the venue stamps ts_ns
        now = timespec[0] * 1_000_000_000 + timespec[1]
        before = counters[C_INCREMENTS]
        total = head + got
        used = scan_feed(buf, total, now, counters, samples, sample_every)
        if used < 0:
            counters[C_ERRORS] += 1
            carry_len[i] = 0
            continue
        per_sub[i] += counters[C_INCREMENTS] - before
        rest = total - used
        for b in range(rest):
            carry[i, b] = buf[used + b]
        carry_len[i] = rest
    return closed


def _connect_all(host: str, port: int, instruments: list[int]) -> list[socket.socket]:
    socks = []
    for k, inst in enumerate(instruments):
        for attempt in range(50):
            try:
                s = socket.create_connection((host, port), timeout=10)
                break
            except OSError:  # the listen backlog is full: let the server accept
                time.sleep(0.02 * (attempt + 1))
        else:
            raise ConnectionError(f"could not connect subscriber {k}")
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(MdFrameEncoder().subscribe(inst, 0, SubFlag.BOOK))
        s.setblocking(False)
        socks.append(s)
    return socks


def _join_all(group_base: str, port: int, instruments: list[int]) -> list[socket.socket]:
    """One UDP socket per subscriber, joined to its instrument's group (what the SDK's receiver does)."""
    from microex.client.md_multicast import multicast_socket
    from microex.marketdata.multicast import group_address

    return [multicast_socket(group_address(group_base, inst), port, rcvbuf=1 << 20) for inst in instruments]


def subscribers_main(conn, host: str, port: int, instruments: list[int], sample_every: int = 97,
                     multicast: tuple[str, int] | None = None) -> None:
    """Process entry point: one subscriber per entry of `instruments` (see the module docstring);
    with `multicast` (group base, port) each is a UDP receiver of its instrument's group instead
    (synced from the start: the bench counts increments, the SDK's tests cover recovery)."""
    raise_fd_limit()
    with select.epoll() as idle:  # compile before connecting, not while snapshots queue
        receive_ready(idle.fileno(), np.zeros(_MAX_EVENTS * _EVENT_SIZE, dtype=np.uint8), 0, np.zeros(1, np.int64),
                      np.zeros(8, np.uint8), np.zeros((1, _MAX_FRAME), np.uint8), np.zeros(1, np.int64),
                      np.zeros(2, np.int64), np.zeros(8, np.int64), np.zeros(1, np.int64), 1, np.zeros(1, np.int64))
    socks = _join_all(*multicast, instruments) if multicast else _connect_all(host, port, instruments)
    ep = select.epoll()
    sub_of_fd = np.zeros(max(s.fileno() for s in socks) + 1, dtype=np.int64)
    for i, s in enumerate(socks):
        ep.register(s.fileno(), select.EPOLLIN)
        sub_of_fd[s.fileno()] = i
    events = np.zeros(_MAX_EVENTS * _EVENT_SIZE, dtype=np.uint8)
    buf = np.zeros(BUF, dtype=np.uint8)
    carry = np.zeros((len(socks), _MAX_FRAME), dtype=np.uint8)
    carry_len = np.zeros(len(socks), dtype=np.int64)
    timespec = np.zeros(2, dtype=np.int64)
    counters = np.zeros(8, dtype=np.int64)
    per_sub = np.zeros(len(socks), dtype=np.int64)  # increments per subscriber (the window)
    samples = np.zeros(1 << 20, dtype=np.int64)
    closed = 0
    conn.send({"connected": len(socks)})
    cpu0 = time.process_time()
    while True:
        if conn.poll():
            cmd = conn.recv()
            if cmd == "stop":
                break
            if cmd == "count":
                counters[:] = 0
                per_sub[:] = 0
                cpu0 = time.process_time()
            elif cmd == "report":
                conn.send({"counters": counters.tolist(), "per_sub": per_sub, "closed": closed,
                           "samples": samples[: counters[C_SAMPLES]].copy(), "cpu_s": time.process_time() - cpu0,
                           "synced": len(socks) if multicast else int(counters[C_SNAPSHOTS])})
        closed += receive_ready(ep.fileno(), events, 5, sub_of_fd, buf, carry, carry_len, timespec, counters,
                                samples, sample_every, per_sub)
    for s in socks:
        s.close()


def driver_frames(count: int, instruments: int, first_seq: int) -> tuple[bytes, np.ndarray]:
    """NEW (even steps) and CANCEL of it (odd steps); offsets[k] = where step k's frame starts."""
    half = (count + 1) // 2
    cids = np.arange(1, half + 1, dtype=np.uint64)
    new = np.zeros(half, dtype=NEW_ORDER)
    new["length"], new["msg_type"] = NEW_ORDER.itemsize, MsgType.NEW_ORDER
    new["client_order_id"] = cids
    new["instrument"] = (np.arange(half) % instruments) + 1
    new["price_ticks"] = 1000 + (np.arange(half) // instruments) % 37
    new["qty_lots"], new["side"], new["ord_type"], new["tif"] = 1, 1, 1, 1
    can = np.zeros(count // 2, dtype=CANCEL)
    can["length"], can["msg_type"] = CANCEL.itemsize, MsgType.CANCEL
    can["client_order_id"] = cids[: count // 2]
    sizes = np.where(np.arange(count) % 2 == 0, NEW_ORDER.itemsize, CANCEL.itemsize)
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    out = bytearray(int(offsets[-1]))
    for k in range(count):
        rec = new[k // 2] if k % 2 == 0 else can[k // 2]
        rec = rec.copy()
        rec["seq"] = (first_seq + k) & 0xFFFFFFFF
        out[offsets[k] : offsets[k + 1]] = rec.tobytes()
    return bytes(out), offsets


def driver_main(conn, host: str, port: int, api_key: bytes, rate: float, seconds: float, instruments: int) -> None:
    """Process entry point: the order driver (see the module docstring); reports when done."""
    s = socket.create_connection((host, port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    enc = FrameEncoder()
    s.sendall(enc.message(MsgType.LOGIN, api_key=api_key, flags=0, version=PROTOCOL_VERSION))
    s.recv(4096)
    count = int(rate * seconds) // 2 * 2
    frames, offsets = driver_frames(count, instruments, enc.next_seq)
    s.setblocking(False)
    sink = bytearray(1 << 20)
    conn.send("ready")
    conn.recv()  # go
    t0 = time.perf_counter()
    sent = 0
    late = 0.0
    while sent < count:
        now = time.perf_counter()
        due = min(count, int((now - t0) * rate) + 1)
        if due > sent:
            late = max(late, now - t0 - sent / rate)
            data = memoryview(frames)[int(offsets[sent]) : int(offsets[due])]
            while data:
                try:
                    data = data[s.send(data):]
                except BlockingIOError:
                    select.select([], [s], [], 0.01)
            sent = due
        try:
            while s.recv_into(sink):
                pass
        except BlockingIOError:
            pass
        now = time.perf_counter()
        wait = max(t0 + sent / rate, now + TICK_S) - now
        if wait > 0:
            select.select([s], [], [], wait)
    wall = time.perf_counter() - t0
    conn.send({"commands": count, "wall_s": wall, "max_late_s": late})
    time.sleep(1.0)  # let the last reports arrive before closing (no cancel-on-disconnect asked)
    s.close()


def raise_fd_limit() -> int:
    """Soft RLIMIT_NOFILE up to the hard limit (10,000 connections need it); returns the new soft limit."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]

