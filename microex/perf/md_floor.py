"""The floor under `microex bench md`: the fan-out alone, with no venue behind it.

How it works: one process listens like the market-data port. Each connection's
SUBSCRIBE is answered with an empty book (SNAPSHOT_BEGIN/END from a MarketState),
which is all the subscribers of md_load.py wait for. On "go" the
process makes `rate` level updates a second itself, in 1 ms ticks as the md driver
sends its orders (MD_UPDATE records round-robin over the instruments, ts_ns = the
moment each is made) and sends them the way the
live stage does: queued per instrument, one instrument a step, all of its
subscribers in one socket_send.send_each call. No gateway, engine, ring, state
kernel, asyncio or Python per subscriber: the latency the same subscribers measure
is make -> receive, what this design of fan-out costs on this machine with the
subscribers' processes competing for its cores. A socket that cannot take a whole
send is counted (`short`) and skipped: the floor never blocks and never queues, so a
short send cuts that subscriber's stream mid-frame and a run with `short` > 0 is not
a valid floor (the row says how many; the bench test requires none).
"""

from __future__ import annotations

import collections
import select
import socket
import time

import numpy as np

from microex.core.records import MD_UPDATE, MdKind, MdMsg
from microex.marketdata.socket_send import send_each, warm_up
from microex.marketdata.state import MarketState
from microex.protocol.md_binary import CLIENT_MESSAGES, MdDecoder, Messages

TICK_S = 0.001


def _updates(first: int, k: int, instruments: int, seqs: np.ndarray) -> np.ndarray:
    """k level updates, the first of them update number `first` overall (instrument = its number mod n)."""
    recs = np.zeros(k, dtype=MD_UPDATE)
    inst = (np.arange(first, first + k) % instruments) + 1
    recs["length"], recs["msg_type"] = MD_UPDATE.itemsize, MdMsg.INCREMENT
    recs["instrument"], recs["kind"], recs["side"] = inst, MdKind.LEVEL, 1
    recs["price_ticks"], recs["qty_lots"] = 1000 + np.arange(first, first + k) % 37, 1
    for i in np.unique(inst):
        mine = inst == i
        n = int(mine.sum())
        recs["md_seq"][mine] = seqs[i] + 1 + np.arange(n)
        seqs[i] += n
    recs["seq"] = recs["md_seq"] & 0xFFFFFFFF
    recs["ts_ns"] = time.time_ns()
    return recs


def floor_main(conn, instruments: int) -> None:
    """Process entry point. Parent: ("go", rate, seconds) -> {"made", "wall_s", "short"}; "stop"."""
    warm_up()
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(4096)
    lsock.setblocking(False)
    ep = select.epoll()
    ep.register(lsock.fileno(), select.EPOLLIN)
    conn.send(lsock.getsockname()[1])
    state = MarketState(instruments)
    socks: dict[int, tuple[socket.socket, MdDecoder]] = {}
    fds_of: dict[int, list[int]] = collections.defaultdict(list)
    arrays: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    pending: dict[int, list[bytes]] = {}
    order: collections.deque[int] = collections.deque()
    seqs = np.zeros(instruments + 1, dtype=np.int64)
    running, t0, made, seconds, rate, short, per_tick = False, 0.0, 0, 0.0, 0.0, 0, 1
    while True:
        if conn.poll():
            cmd = conn.recv()
            if cmd == "stop":
                break
            _, rate, seconds = cmd
            running, t0, made, short = True, time.perf_counter(), 0, 0
            per_tick = max(1, round(rate * TICK_S))
        wait = 0.005
        if order:
            wait = 0
        elif running:
            wait = max(0.0, t0 + (made // per_tick + 1) * TICK_S - time.perf_counter())
        for fd, _ev in ep.poll(wait):
            if fd == lsock.fileno():
                while True:
                    try:
                        s, _ = lsock.accept()
                    except BlockingIOError:
                        break
                    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    socks[s.fileno()] = (s, MdDecoder(CLIENT_MESSAGES))
                    ep.register(s.fileno(), select.EPOLLIN)
                continue
            s, dec = socks[fd]
            data = s.recv(65536)
            if not data:  # forget it before its fd number can be given to another connection
                ep.unregister(fd)
                del socks[fd]
                for i, fds in fds_of.items():
                    if fd in fds:
                        fds.remove(fd)
                        arrays[i] = (np.array(fds, dtype=np.int32), np.zeros(len(fds), np.int64))
                s.close()
                continue
            for item in dec.feed(data):
                if isinstance(item, Messages) and item.msg_type == MdMsg.SUBSCRIBE:
                    for r in item.records:
                        i = int(r["instrument"])
                        s.sendall(state.snapshot(i)[1])
                        fds_of[i].append(fd)
                        arrays[i] = (np.array(fds_of[i], dtype=np.int32), np.zeros(len(fds_of[i]), np.int64))
        if running:
            ticks = int((time.perf_counter() - t0) / TICK_S)  # made in 1 ms ticks, as the md driver sends
            due = min(ticks * per_tick, int(rate * seconds))
            if due > made:
                recs = _updates(made, due - made, instruments, seqs)
                for i in np.unique(recs["instrument"]):
                    i = int(i)
                    if i not in pending:
                        pending[i] = []
                        order.append(i)
                    pending[i].append(recs[recs["instrument"] == i].tobytes())
                made = due
            if made >= int(rate * seconds) and not order:
                running = False
                conn.send({"made": made, "wall_s": time.perf_counter() - t0, "short": short})
        if order:
            i = order.popleft()
            data = b"".join(pending.pop(i))
            if i in arrays:
                fds, sent = arrays[i]
                short += len(fds) - send_each(fds, np.frombuffer(data, dtype=np.uint8), sent)
    for s, _ in socks.values():
        s.close()
    lsock.close()


class FloorServer:
    """The floor process, with the `md_port` that md_load's subscribers connect to."""

    def __init__(self, instruments: int) -> None:
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        self.pipe, there = ctx.Pipe()
        self.proc = ctx.Process(target=floor_main, args=(there, instruments), name="md-floor")
        self.proc.start()
        if not self.pipe.poll(120):
            raise TimeoutError("the floor process did not start")
        self.md_port = self.pipe.recv()

    def run(self, rate: float, seconds: float) -> dict:
        self.pipe.send(("go", rate, seconds))
        if not self.pipe.poll(seconds + 60):
            raise TimeoutError("the floor process did not finish")
        return self.pipe.recv()

    def close(self) -> None:
        self.pipe.send("stop")
        self.proc.join(30)
        if self.proc.is_alive():
            self.proc.kill()
