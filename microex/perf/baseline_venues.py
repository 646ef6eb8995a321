"""Baselines for `microex bench gateway`: the same load generator against less than a venue.

- `echo`: a uvloop server that answers every NEW_ORDER with an EXEC_ACCEPTED built
  with `struct`, and nothing else: the floor of "TCP -> a Python event loop -> TCP"
  on this machine (wake-ups, syscalls, the loop), with no sessions and no engine.
- `spin_echo`: the same answers from a loop that never sleeps (non-blocking sockets
  polled in turn, yielding the core between polls), pinned to a core: the floor of
  the colocated latency setup, which spins the same way. What is left of its p99 is
  the machine's: other processes and kernel threads taking one of the two cores.
- `inprocess`: microex's gateway server over an in-process MatchingEngine
  (`InProcessVenue`): sessions, codec and the compiled core, without the rings,
  the engine process and the journal.
The full venue minus `inprocess` is what the pipeline hop costs; `inprocess` minus
`echo` is what the gateway's and the core's Python costs; the colocated venue minus
`spin_echo` is what everything between a socket read and its ack costs.
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct

_HEAD = struct.Struct("<HH")
_LOGIN_ACK = struct.Struct("<HHIiIq")
_ACCEPTED = struct.Struct("<HHIQqiBBHqqq")


class _Acks:
    """One connection's answers: LOGIN_ACK for a LOGIN, EXEC_ACCEPTED for a NEW_ORDER, nothing else."""

    def __init__(self) -> None:
        self.seq, self.buf = 1, b""

    def answer(self, data: bytes) -> bytes:
        data = self.buf + data
        out, pos = [], 0
        while len(data) - pos >= 8:
            length, msg_type = _HEAD.unpack_from(data, pos)
            if length < 8 or len(data) - pos < length:
                break
            if msg_type == 3:  # LOGIN
                out.append(_LOGIN_ACK.pack(24, 16, self.seq, 1, 1000, 1))
                self.seq += 1
            elif msg_type == 4:  # NEW_ORDER -> EXEC_ACCEPTED with its client order id
                cid = struct.unpack_from("<Q", data, pos + 8)[0]
                out.append(_ACCEPTED.pack(56, 32, self.seq, cid, 0, 1, 1, 0, 0, 1, 1, 1))
                self.seq += 1
            pos += length
        self.buf = data[pos:]
        return b"".join(out)


class _EchoAcks(asyncio.Protocol):
    def connection_made(self, transport) -> None:
        self.transport, self.acks = transport, _Acks()
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        out = self.acks.answer(data)
        if out:
            self.transport.write(out)


def _spin_echo(port_conn, stop) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setblocking(False)
    port_conn.send(listener.getsockname()[1])
    conns: list[tuple[socket.socket, _Acks]] = []
    yield_core = os.sched_yield
    while not stop.is_set():
        for _ in range(20_000):  # look at the stop flag (a lock) only now and then
            try:
                sock, _ = listener.accept()
                sock.setblocking(False)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                conns.append((sock, _Acks()))
            except BlockingIOError:
                pass
            for sock, acks in conns:
                try:
                    data = sock.recv(1 << 16)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:
                    conns.remove((sock, acks))
                    sock.close()
                    break
                out = acks.answer(data)
                if out:
                    sock.sendall(out)
            yield_core()


async def _serve(kind: str, keys: tuple[bytes, bytes], port_conn, stop) -> None:
    loop = asyncio.get_running_loop()
    if kind == "echo":
        server = await loop.create_server(_EchoAcks, "127.0.0.1", 0)
        port_conn.send(server.sockets[0].getsockname()[1])
        while not stop.is_set():
            await asyncio.sleep(0.05)
        server.close()
        return
    from microex.gateway.inprocess import InProcessVenue

    venue = InProcessVenue({keys[0]: 1, keys[1]: 2}, rate_per_s=1e9)
    async with venue:
        port_conn.send(venue.port)
        while not stop.is_set():
            await asyncio.sleep(0.05)


def baseline_main(kind: str, keys: tuple[bytes, bytes], port_conn, stop, cpu: int | None = None) -> None:
    """Process entry point: serve until `stop` (an Event) is set; the port goes back over `port_conn`."""
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    if kind == "spin_echo":
        _spin_echo(port_conn, stop)
        return
    import uvloop

    uvloop.run(_serve(kind, keys, port_conn, stop))
