"""The market-data stage process: the binary feed over TCP (asyncio, uvloop), fed by the outbound ring.

    engine --outbound ring (consumer k)--> RingEventSource --> MarketDataStage --> Fanout --> MdServer --> TCP

How it works
- `MdServer` only moves bytes. It accepts on its own non-blocking listening socket and
  each connection (`_Conn`, TCP_NODELAY) is a Fanout subscriber whose transport it is
  itself: a raw socket watched with the loop's add_reader, plus a queue of unsent
  bytes. While nothing is queued the connection is `direct` and the Fanout sends to
  its fd in one compiled call for the whole group (socket_send.py); a short send
  queues the rest here, the loop's add_writer drains it, and the connection is
  direct again once empty. Raw sockets rather than asyncio transports because the
  Fanout writes to the fd itself: the fd must stay open exactly as long as the
  Fanout knows the subscriber (closed only in `_Conn.close`, after the Fanout has
  forgotten it), and uvloop closes its transports' fds on its own schedule.
  Reads go whole to `FeedSessions.on_bytes`. A timer (every 100 ms) runs the stage's
  clock work and sends HEARTBEAT to connections that were sent nothing for
  `heartbeat_s`. Another transport (gRPC, WebSocket) attaches the same way: a Fanout
  subscriber with write / buffered / abort.
- `serve_md` (the process): attach to the ring first, rebuild the state from the data
  directory (rebuild.py says why no event is lost or doubled), open the port
  (SO_REUSEPORT, like the gateways), then start taking events; `ready` is set once it
  serves. SIGTERM/SIGINT: ERROR SHUTDOWN to every subscriber, close, detach.
"""

from __future__ import annotations

import asyncio
import errno
import gc
import itertools
import logging
import os
import signal
import socket
import time
from dataclasses import dataclass

from microex.marketdata.stage import FeedSessions
from microex.protocol.md_binary import HEARTBEAT_FRAME

log = logging.getLogger(__name__)
TIMER_S = 0.1
ACCEPT_RETRY_S = 0.1  # after an accept failed for want of fds or memory
_OUT_OF_RESOURCES = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}


class _Conn:
    """One subscriber's connection; also its Fanout transport (a DirectTransport)."""

    __slots__ = ("server", "sub_id", "sock", "fd", "queued", "on_direct_change", "wrote", "closed")

    def __init__(self, server: MdServer, sub_id: int, sock: socket.socket) -> None:
        self.server, self.sub_id, self.sock, self.fd = server, sub_id, sock, sock.fileno()
        self.queued: bytearray | None = None  # bytes the socket has not taken yet
        self.on_direct_change = None
        self.wrote, self.closed = True, False

    def on_readable(self) -> None:
        try:
            data = self.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data or not self.server.sessions.on_bytes(self.sub_id, data):
            self.close()

    # the Fanout's transport
    def write(self, data: bytes) -> None:
        if self.closed:
            return
        self.wrote = True
        if self.queued is not None:
            self.queued += data
            return
        try:
            n = self.sock.send(data)
        except OSError:  # would block, or the peer is gone: queued, and the writer callback finds out
            n = 0  # which (never a close from inside a write: the Fanout may be looping over subscribers)
        if n < len(data):
            self._queue(memoryview(data)[n:])

    @property
    def direct(self) -> bool:
        """Nothing queued and open: the Fanout may send to the fd itself without reordering bytes."""
        return self.queued is None and not self.closed

    def sent_directly(self, data: bytes, n: int) -> None:
        """The Fanout's send took n bytes of data (-1: none; the writer finds out why)."""
        self._queue(memoryview(data)[max(n, 0):])

    def buffered(self) -> int:
        return 0 if self.queued is None else len(self.queued)

    def abort(self) -> None:
        self.close(flush=False)

    def _queue(self, rest) -> None:
        self.queued = bytearray(rest)
        self.server.loop.add_writer(self.fd, self._on_writable)
        if self.on_direct_change is not None:
            self.on_direct_change()

    def _on_writable(self) -> None:
        try:
            n = self.sock.send(self.queued)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.abort()
            return
        del self.queued[:n]
        if not self.queued:
            self.queued = None
            self.server.loop.remove_writer(self.fd)
            if self.on_direct_change is not None:
                self.on_direct_change()

    def close(self, flush: bool = True) -> None:
        """Forget the subscriber, then close the socket (in that order: the Fanout sends to the fd)."""
        if self.closed:
            return
        self.closed = True
        self.server._lost(self)
        loop = self.server.loop
        loop.remove_reader(self.fd)
        if self.queued is not None:
            loop.remove_writer(self.fd)
            if flush:
                try:  # what fits now (an ERROR before a close): no waiting for a slow reader
                    self.sock.send(self.queued)
                except OSError:
                    pass
        self.sock.close()


class MdServer:
    def __init__(self, sessions: FeedSessions, heartbeat_s: float = 1.0) -> None:
        self.sessions = sessions
        self.heartbeat_s = heartbeat_s
        self.connections: dict[int, _Conn] = {}
        self.loop: asyncio.AbstractEventLoop | None = None
        self._ids = itertools.count(1)
        self._listeners: list[socket.socket] = []
        self._timer: asyncio.Task | None = None

    async def start(self, host: str = "127.0.0.1", port: int = 0, *, reuse_port: bool = False) -> int:
        self.loop = asyncio.get_running_loop()
        family = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]
        lsock = socket.socket(family, socket.SOCK_STREAM)
        lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        lsock.bind((host, port))
        lsock.listen(1024)
        lsock.setblocking(False)
        self.loop.add_reader(lsock.fileno(), self._accept, lsock)
        self._listeners.append(lsock)
        if self._timer is None:
            self._timer = self.loop.create_task(self._tick())
        return lsock.getsockname()[1]

    def _accept(self, lsock: socket.socket) -> None:
        for _ in range(64):  # a burst of connects: take some, let the loop breathe, take more
            try:
                sock, _addr = lsock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                log.warning("market-data accept failed: %s", e)
                if e.errno in _OUT_OF_RESOURCES:  # stop listening a moment (the backlog keeps the
                    self.loop.remove_reader(lsock.fileno())  # connects), or the loop would spin on it
                    self.loop.call_later(ACCEPT_RETRY_S, self._resume_accept, lsock)
                    return
                continue  # one connection failed (ECONNABORTED...): take the next
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Conn(self, next(self._ids), sock)
            self.connections[conn.sub_id] = conn
            self.sessions.connect(conn.sub_id, conn)
            self.loop.add_reader(conn.fd, conn.on_readable)

    def _resume_accept(self, lsock: socket.socket) -> None:
        if lsock in self._listeners:  # not closed meanwhile
            self.loop.add_reader(lsock.fileno(), self._accept, lsock)

    def _lost(self, conn: _Conn) -> None:
        if self.connections.pop(conn.sub_id, None) is not None:
            self.sessions.disconnect(conn.sub_id)

    async def _tick(self) -> None:
        beat = time.monotonic() + self.heartbeat_s
        while True:
            await asyncio.sleep(TIMER_S)
            try:
                self.sessions.on_timer(time.time_ns())
            except Exception:  # the feed must go on: log it, the next tick tries again
                log.exception("market-data timer failed")
            if time.monotonic() >= beat:
                beat = time.monotonic() + self.heartbeat_s
                moved = self.sessions.fanout.moved_subscribers()  # sent increments, maybe never through write
                for conn in list(self.connections.values()):
                    if not conn.wrote and conn.sub_id not in moved:
                        conn.write(HEARTBEAT_FRAME)
                    conn.wrote = False

    async def close(self) -> None:
        for lsock in self._listeners:
            self.loop.remove_reader(lsock.fileno())
            lsock.close()
        self._listeners.clear()
        if self._timer is not None:
            self._timer.cancel()
        close = getattr(self.sessions, "close", None)
        if close is not None:
            close()
        for conn in list(self.connections.values()):
            conn.close()
        await asyncio.sleep(0)


@dataclass
class MdSettings:
    data: str  # the venue's data directory (the start-up rebuild reads it)
    outbound: str  # the engine's outbound EVENT ring
    consumer_index: int
    host: str = "127.0.0.1"
    md_port: int = 9002
    grpc_port: int = 0  # the feed over gRPC streaming (grpc_server.py; 0: off)
    record: str | None = None  # directory for recordings (None: no recording)
    cpu: int | None = None
    multicast: str = ""  # "GROUP:PORT": also publish every instrument by UDP multicast (multicast.py)
    multicast_interface: str = "127.0.0.1"
    multicast_ttl: int = 0  # 0: this host only


async def serve_md(s: MdSettings, ready=None) -> None:
    from microex.marketdata.rebuild import rebuild
    from microex.marketdata.recording import Recorder
    from microex.marketdata.ring_source import RingEventSource
    from microex.marketdata.socket_send import warm_up
    from microex.marketdata.stage import MarketDataStage

    source = RingEventSource(s.outbound, s.consumer_index)  # first: the ring keeps events for us from now on
    state, last_seq, how = rebuild(s.data)
    log.info("market data rebuilt by %s up to command %d", how, last_seq)
    recorder = Recorder.in_directory(s.record, state, last_seq) if s.record else None
    multicast = None
    if s.multicast:
        from microex.marketdata.multicast import MulticastFeed, parse_endpoint

        multicast = MulticastFeed(*parse_endpoint(s.multicast), interface=s.multicast_interface, ttl=s.multicast_ttl)
    stage = MarketDataStage(state, min_seq=last_seq, recorder=recorder, defer=True, multicast=multicast)
    server = MdServer(stage)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await server.start(s.host, s.md_port, reuse_port=True)
    grpc_server = None
    if s.grpc_port:
        from microex.marketdata.grpc_server import GrpcMdServer

        grpc_server = GrpcMdServer(stage)
        await grpc_server.start(s.host, s.grpc_port)
    warm_up()
    source.start(loop, stage.on_events, stage.step)
    gc.collect()
    gc.freeze()
    if ready is not None:
        ready.set()
    await stop.wait()
    source.close()
    await server.close()  # ERROR SHUTDOWN to every subscriber, gRPC streams included
    if multicast is not None:
        log.info("multicast: %d datagrams sent, %d refused (last error: %s)", multicast.datagrams, multicast.dropped,
                 multicast.last_error)
        multicast.close()
    if grpc_server is not None:
        await grpc_server.close()


def md_main(settings: MdSettings, ready=None) -> None:
    """Process entry point (multiprocessing target)."""
    from microex.pipeline.logs import setup_logging

    setup_logging(settings.data, "md")
    if settings.cpu is not None:
        os.sched_setaffinity(0, {settings.cpu})
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve_md(settings, ready))
    else:
        uvloop.run(serve_md(settings, ready))
