"""The market-data stage process: the binary feed over TCP (asyncio, uvloop), fed by the outbound ring.

    engine --outbound ring (consumer k)--> RingEventSource --> MarketDataStage --> Fanout --> MdServer --> TCP

How it works
- `MdServer` only moves bytes: each TCP connection (an asyncio.Protocol, TCP_NODELAY)
  is a subscriber whose transport the Fanout writes to and whose unsent bytes
  (`get_write_buffer_size`) drive the slow-consumer policy; its reads go whole to
  `FeedSessions.on_bytes`. A timer (every 100 ms) runs the stage's clock work and
  sends HEARTBEAT to connections that got nothing for `heartbeat_s`. Another
  transport (gRPC, WebSocket) attaches the same way: a Fanout subscriber with
  write / buffered / abort.
- `serve_md` (the process): attach to the ring first, rebuild the state from the data
  directory (rebuild.py says why no event is lost or doubled), open the port
  (SO_REUSEPORT, like the gateways), then start taking events; `ready` is set once it
  serves. SIGTERM/SIGINT: ERROR SHUTDOWN to every subscriber, close, detach.
"""

from __future__ import annotations

import asyncio
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


class _Conn(asyncio.Protocol):
    """One subscriber's connection; also its Fanout transport (write / buffered / abort)."""

    __slots__ = ("server", "sub_id", "transport", "wrote")

    def __init__(self, server: MdServer, sub_id: int) -> None:
        self.server, self.sub_id, self.transport, self.wrote = server, sub_id, None, True

    def connection_made(self, transport) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server._connected(self)

    def data_received(self, data: bytes) -> None:
        if not self.server.sessions.on_bytes(self.sub_id, data):
            self.transport.close()

    def connection_lost(self, exc) -> None:
        self.server._lost(self)

    # the Fanout's Transport
    def write(self, data: bytes) -> None:
        if not self.transport.is_closing():
            self.transport.write(data)
            self.wrote = True

    def buffered(self) -> int:
        return self.transport.get_write_buffer_size()

    def abort(self) -> None:
        self.transport.abort()


class MdServer:
    def __init__(self, sessions: FeedSessions, heartbeat_s: float = 1.0) -> None:
        self.sessions = sessions
        self.heartbeat_s = heartbeat_s
        self.connections: dict[int, _Conn] = {}
        self._ids = itertools.count(1)
        self._servers: list = []
        self._timer: asyncio.Task | None = None

    async def start(self, host: str = "127.0.0.1", port: int = 0, *, reuse_port: bool = False) -> int:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: _Conn(self, next(self._ids)), host, port,
                                          reuse_port=reuse_port or None, backlog=1024)
        self._servers.append(server)
        if self._timer is None:
            self._timer = loop.create_task(self._tick())
        return server.sockets[0].getsockname()[1]

    def _connected(self, conn: _Conn) -> None:
        self.connections[conn.sub_id] = conn
        self.sessions.connect(conn.sub_id, conn)

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
                for conn in list(self.connections.values()):
                    if not conn.wrote:
                        conn.write(HEARTBEAT_FRAME)
                    conn.wrote = False

    async def close(self) -> None:
        for server in self._servers:
            server.close()
        if self._timer is not None:
            self._timer.cancel()
        close = getattr(self.sessions, "close", None)
        if close is not None:
            close()
        for conn in list(self.connections.values()):
            conn.transport.close()
        await asyncio.sleep(0)
        for server in self._servers:
            await server.wait_closed()


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


async def serve_md(s: MdSettings, ready=None) -> None:
    from microex.marketdata.rebuild import rebuild
    from microex.marketdata.recording import Recorder
    from microex.marketdata.ring_source import RingEventSource
    from microex.marketdata.stage import MarketDataStage

    source = RingEventSource(s.outbound, s.consumer_index)  # first: the ring keeps events for us from now on
    state, last_seq, how = rebuild(s.data)
    log.info("market data rebuilt by %s up to command %d", how, last_seq)
    recorder = Recorder.in_directory(s.record, state, last_seq) if s.record else None
    stage = MarketDataStage(state, min_seq=last_seq, recorder=recorder)
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
    source.start(loop, stage.on_events)
    gc.collect()
    gc.freeze()
    if ready is not None:
        ready.set()
    await stop.wait()
    source.close()
    await server.close()  # ERROR SHUTDOWN to every subscriber, gRPC streams included
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
