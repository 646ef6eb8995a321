"""The gateway load generator: a separate process that trades on a venue over loopback.

How it works
- Two binary-protocol sessions (accounts A and B). Order i goes from A when i
  is even and from B when odd, both GTC limit at one price for one lot, on
  opposite sides, so every pair trades: each order gets EXEC_ACCEPTED, and each
  pair two fills. The book stays empty, and sides swap pair by pair (A buys,
  then sells...) so neither account runs out of either asset.
- Every order's frame is built before the clock starts (one vectorised encode
  per session), so sending n due orders is one `send` of a byte slice.
- Fixed rate (`run_fixed_rate`): order i is scheduled at t0 + i/rate. The loop
  sends every order whose time has come and reads whatever arrived; an order's
  latency is its ack's receive time minus its *scheduled* time, so a stall of
  the venue (or of this process) counts against every order that should have
  gone out during it: no coordinated omission.
- Max rate (`run_max_rate`): keep at most `window` orders unacknowledged, send
  in chunks; the rate is acks over the time from the first send to the last ack.
- Between events it sleeps in select() on its sockets until an ack arrives or
  20 µs before the next order is due (then spins), so on a 2-core machine it
  leaves the venue's processes a core instead of competing with them; or, against
  a busy-polling venue (`spin`), it polls too, yielding its core to any runnable
  process (a sleeping process pays a VM's wake-up on every ack).
- Every order's actual send time is kept: the lateness of sends (actual minus
  scheduled) shows whether the generator kept its schedule.
- A second latency per order, `socket_latency_ns`, ends at the kernel's receive
  timestamp of the ack on our socket (SO_TIMESTAMPNS, read with recvmsg) instead of
  the moment this process read it: what a capture on the wire would see, without
  the load generator's own wake-up and scheduling (on loopback, the timestamp is
  taken in the venue's send call). For a read of several acks it is the newest
  packet's time, so it can only overstate the earlier ones.
- The process measures its own CPU time, so the report shows whether the load
  generator, not the venue, was the bottleneck.
- The garbage collector is off while a fixed-rate run is measured (it is collected
  just before): the loop makes only short-lived objects, and a collection of the
  heap numpy and numba leave behind stalls it for milliseconds, which would be
  charged to the venue as late sends.
"""

from __future__ import annotations

import ctypes
import gc
import os
import select
import socket
import struct
import time
from dataclasses import dataclass

import numpy as np
from numba import njit

from microex.core.records import OrdType, Side, Tif
from microex.protocol.binary import (
    GATEWAY_MESSAGES,
    NEW_ORDER,
    PROTOCOL_VERSION,
    BinaryDecoder,
    DecodeError,
    FrameEncoder,
    MsgType,
)

PRICE_TICKS = 1000
SPIN_BEFORE_S = 20e-6  # wake this long before an order is due, then spin: sends go out on time
_PR_SET_TIMERSLACK = 29
_RECV = 1 << 20
_SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux; SCM_TIMESTAMPNS has the same value
_ANC = socket.CMSG_SPACE(16)  # one struct timespec
_ACCEPTED, _REJECTED = int(MsgType.EXEC_ACCEPTED), int(MsgType.EXEC_REJECTED)
_TIMESPEC = struct.Struct("qq")


@dataclass(frozen=True)
class OrderSpec:
    """What every order is: a GTC limit order, one instrument, one price, one size."""

    instrument: int = 1
    price_ticks: int = PRICE_TICKS
    qty_lots: int = 1


class _Conn:
    def __init__(self, host: str, port: int, api_key: bytes) -> None:
        self.sock = socket.create_connection((host, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.dec = BinaryDecoder(GATEWAY_MESSAGES)
        enc = FrameEncoder()
        self.sock.sendall(enc.message(MsgType.LOGIN, api_key=api_key, flags=0, version=PROTOCOL_VERSION))
        self.sock.settimeout(10)
        data = self.sock.recv(4096)
        items = self.dec.feed(data)
        if not items or isinstance(items[0], DecodeError) or items[0].msg_type != MsgType.LOGIN_ACK:
            raise ConnectionError(f"login failed: {items}")
        self.sock.setblocking(False)
        self.sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
        self.next_seq = enc.next_seq
        self.frames = b""
        self.arr = np.zeros(_RECV, dtype=np.uint8)
        self.view = memoryview(self.arr)
        self.carry = 0

    def prepare(self, cids: np.ndarray, first_side: int, order: OrderSpec) -> None:
        """This session's order frames; sides alternate pair by pair (first_side, then the
        other), so both accounts' inventories stay flat however long the run."""
        recs = np.zeros(len(cids), dtype=NEW_ORDER)
        recs["length"] = NEW_ORDER.itemsize
        recs["msg_type"] = MsgType.NEW_ORDER
        recs["seq"] = (self.next_seq + np.arange(len(cids))) & 0xFFFFFFFF
        recs["client_order_id"] = cids
        recs["price_ticks"] = order.price_ticks
        recs["qty_lots"] = order.qty_lots
        recs["instrument"] = order.instrument
        other = Side.SELL if first_side == Side.BUY else Side.BUY
        recs["side"] = np.where(np.arange(len(cids)) % 2 == 0, first_side, other)
        recs["ord_type"] = OrdType.LIMIT
        recs["tif"] = Tif.GTC
        self.frames = memoryview(recs.tobytes())

    def send(self, a: int, b: int) -> None:
        """Send orders a..b-1 of this session (blocking until the kernel took them)."""
        size = NEW_ORDER.itemsize
        view = self.frames[a * size : b * size]
        while view:
            try:
                view = view[self.sock.send(view):]
            except BlockingIOError:
                pass

    def poll(self, now_ns: int, first_cid: int, sched: np.ndarray, lat: np.ndarray,
             sock_lat: np.ndarray) -> tuple[int, int]:
        """Read what arrived; record each ack's latencies (read time, socket time). Returns (acks, rejects)."""
        try:
            n, anc, _flags, _addr = self.sock.recvmsg_into([self.view[self.carry:]], _ANC)
        except BlockingIOError:
            return 0, 0
        if n == 0:
            raise ConnectionError("the venue closed the connection")
        arrived = now_ns
        for level, kind, data in anc:
            if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS and len(data) >= 16:
                sec, nsec = _TIMESPEC.unpack_from(data)
                offset = time.time_ns() - time.perf_counter_ns()  # kernel timestamps are CLOCK_REALTIME (may slew)
                arrived = sec * 1_000_000_000 + nsec - offset
        end = self.carry + n
        used, acks, rejects = _record_acks(self.arr, end, now_ns, arrived, first_cid, sched, lat, sock_lat)
        if used < 0:
            raise RuntimeError("bad frame from the venue")
        self.carry = end - used
        if self.carry:
            self.arr[: self.carry] = self.arr[used:end]  # a partial frame waits for the rest
        return acks, rejects


@njit(cache=True)
def _record_acks(buf, end, now_ns, arrived_ns, first_cid, sched, lat, sock_lat):
    """Scan whole frames of buf[:end]; EXEC_ACCEPTED/REJECTED set lat[cid - first_cid] (once),
    and sock_lat from the socket's receive time.

    Returns (bytes consumed, acks, rejects); consumed is -1 on a frame that cannot be."""
    pos = 0
    acks = 0
    rejects = 0
    while end - pos >= 8:
        length = np.int64(buf[pos]) | (np.int64(buf[pos + 1]) << 8)
        if length < 8 or length > 256:
            return -1, acks, rejects
        if end - pos < length:
            break
        mtype = np.int64(buf[pos + 2]) | (np.int64(buf[pos + 3]) << 8)
        if mtype == _ACCEPTED or mtype == _REJECTED:
            cid = np.int64(0)
            for b in range(8):
                cid |= np.int64(buf[pos + 8 + b]) << (8 * b)
            i = cid - first_cid
            if 0 <= i < lat.shape[0] and lat[i] < 0:
                lat[i] = now_ns - sched[i]
                sock_lat[i] = min(arrived_ns, now_ns) - sched[i]
                acks += 1
                if mtype == _REJECTED:
                    rejects += 1
        pos += length
    return pos, acks, rejects


def _connect(host, port, keys):
    a, b = _Conn(host, port, keys[0]), _Conn(host, port, keys[1])
    return a, b


def run_fixed_rate(host: str, port: int, keys: tuple[bytes, bytes], rate: float, count: int,
                   first_cid: int, spin: bool = False, order: OrderSpec | None = None, on_start=None) -> dict:
    """`count` orders at `rate`/s; returns latencies (ns, from scheduled send to ack) and CPU use."""
    return run_schedule(host, port, keys, (np.arange(count) * (1e9 / rate)).astype(np.int64), first_cid, spin,
                        order, on_start=on_start)


def run_schedule(host: str, port: int, keys: tuple[bytes, bytes], offsets_ns: np.ndarray, first_cid: int,
                 spin: bool = False, order: OrderSpec | None = None, tolerate_loss: bool = False,
                 on_start=None) -> dict:
    """Order i is due `offsets_ns[i]` after the start (non-decreasing). Returns per order the
    latency from its scheduled time to its ack (-1: none came) and how late it was sent.

    Orders still unacknowledged 10 s after the last is due raise TimeoutError, or with
    `tolerate_loss` end the run (they count in `unacked`)."""
    order = order or OrderSpec()
    count = len(offsets_ns)
    conns = _connect(host, port, keys)
    cids = np.arange(first_cid, first_cid + count, dtype=np.uint64)
    conns[0].prepare(cids[0::2], Side.BUY, order)
    conns[1].prepare(cids[1::2], Side.SELL, order)
    lat = np.full(count, -1, dtype=np.int64)
    sock_lat = np.full(count, -1, dtype=np.int64)
    sent_at = np.zeros(count, dtype=np.int64)
    rejects = acked = sent = 0
    if on_start is not None:
        on_start()  # connected and prepared: the measured interval starts now
    gc.collect()
    gc.disable()  # a collection of the interpreter's heap stalls this loop for milliseconds (see the module doc)
    cpu0, t_wall0 = time.process_time(), time.perf_counter()
    t0 = time.perf_counter_ns() + 1_000_000
    sched = t0 + np.asarray(offsets_ns, dtype=np.int64)
    deadline = int(sched[-1]) + 10_000_000_000 if count else t0
    socks = [c.sock for c in conns]
    while acked < count:
        now = time.perf_counter_ns()
        if now > deadline:
            if tolerate_loss:
                break
            raise TimeoutError(f"{count - acked} of {count} orders unacknowledged 10 s after the last was due")
        due = int(np.searchsorted(sched, now, side="right")) if sent < count else count
        if due > sent:
            sent_at[sent:due] = now
            # orders sent..due-1: even ones are A's (index i//2), odd ones B's
            conns[0].send((sent + 1) // 2, (due + 1) // 2)
            conns[1].send(sent // 2, due // 2)
            sent = due
        got = 0
        t = time.perf_counter_ns()
        for c in conns:
            k, r = c.poll(t, first_cid, sched, lat, sock_lat)
            got += k
            rejects += r
        acked += got
        if got:
            continue
        if spin:
            os.sched_yield()  # busy-poll, but let a runnable process on our core go first
        elif sent < count:
            # Nothing arrived: sleep in select() until an ack arrives or shortly before the
            # next order is due (timer slack is 1 ns, see loadgen_main), else spin.
            wait = (int(sched[sent]) - time.perf_counter_ns()) / 1e9 - SPIN_BEFORE_S
            if wait > 0:
                select.select(socks, (), (), wait)
        else:
            select.select(socks, (), (), 0.001)
    cpu = time.process_time() - cpu0
    wall = time.perf_counter() - t_wall0
    gc.enable()
    for c in conns:
        c.sock.close()
    return {"latency_ns": lat, "socket_latency_ns": sock_lat, "send_late_ns": sent_at - sched, "sched_ns": sched - t0, "cpu_s": cpu,
            "wall_s": wall, "rejects": rejects, "unacked": count - acked}


def run_max_rate(host: str, port: int, keys: tuple[bytes, bytes], count: int, first_cid: int,
                 window: int = 8192, chunk: int = 1024, on_start=None) -> dict:
    """`count` orders as fast as the venue acknowledges them, at most `window` unacknowledged."""
    conns = _connect(host, port, keys)
    cids = np.arange(first_cid, first_cid + count, dtype=np.uint64)
    conns[0].prepare(cids[0::2], Side.BUY, OrderSpec())
    conns[1].prepare(cids[1::2], Side.SELL, OrderSpec())
    lat = np.full(count, -1, dtype=np.int64)
    sched = np.zeros(count, dtype=np.int64)
    rejects = acked = sent = 0
    if on_start is not None:
        on_start()
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    deadline = t0 + 120
    socks = [c.sock for c in conns]
    while acked < count:
        if sent < count and sent - acked < window:
            due = min(count, sent + chunk, acked + window)
            if due > sent:
                conns[0].send((sent + 1) // 2, (due + 1) // 2)
                conns[1].send(sent // 2, due // 2)
                sent = due
        got = 0
        for c in conns:
            k, r = c.poll(0, first_cid, sched, lat, lat)  # latencies unused here
            got += k
            rejects += r
        acked += got
        if not got and sent - acked >= window:
            select.select(socks, (), (), 0.001)
        if time.perf_counter() > deadline:
            raise TimeoutError(f"{count - acked} of {count} orders unacknowledged after 120 s")
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    for c in conns:
        c.sock.close()
    return {"orders": count, "wall_s": wall, "cpu_s": cpu, "rejects": rejects}


def loadgen_main(conn, host: str, port: int, keys: tuple[bytes, bytes], plan: list[dict],
                 cpu: int | None = None) -> None:
    """Process entry point: run each step of `plan`, send each result back over `conn` (a Pipe end)."""
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    _record_acks(np.zeros(64, dtype=np.uint8), 0, 0, 0, 1, np.zeros(1, dtype=np.int64), np.zeros(1, dtype=np.int64),
                 np.zeros(1, dtype=np.int64))  # compile (or load) before any clock starts
    cid = 1
    try:
        ctypes.CDLL(None).prctl(_PR_SET_TIMERSLACK, 1)  # select() timeouts to the µs, not +50 µs
    except (OSError, AttributeError):
        pass
    try:
        for step in plan:
            def starting():
                conn.send({"starting": True})

            if step["mode"] == "fixed":
                res = run_fixed_rate(host, port, keys, step["rate"], step["count"], cid, step.get("spin", False),
                                     on_start=starting)
            else:
                res = run_max_rate(host, port, keys, step["count"], cid, step.get("window", 8192), on_start=starting)
            cid += step["count"]
            conn.send(res)
    except Exception as e:  # reported to the parent, which prints it
        conn.send({"error": f"{type(e).__name__}: {e}"})
    finally:
        conn.close()
