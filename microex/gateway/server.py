"""GatewayServer: the asyncio edge of the binary protocol. It only moves bytes.

How it works
- Each TCP connection is an `asyncio.Protocol` (`_Connection`, TCP_NODELAY set).
  Whatever a read returns goes whole to `GatewaySessions.on_bytes`, which decodes
  the buffer at once and answers (commands for the engine, reply bytes, sessions
  to close). The commands go to the engine link in one `submit` per read: a
  read's worth of orders is one batch.
- The engine link (`EngineLink`) calls `on_events` with EVENT records as the
  engine publishes them; `GatewaySessions.on_events` turns them into execution
  reports per connection, written with one `transport.write` each.
- A timer (every `timer_s`) drives heartbeats and idle timeouts (`on_timer`).
- `busy_poll`: a task keeps the loop turning (each turn polls epoll with a zero
  timeout, pumps the link and yields the core to any runnable process), so the
  process never sleeps: no wake-up latency, a core's worth of CPU.
- A connection whose unsent output passes `max_write_buffer` bytes does not read
  its reports: it is told SLOW_CONSUMER and closed (its orders are cancelled if
  it asked for cancel-on-disconnect), so one slow client never grows the
  gateway's memory or stalls the others.
- A read larger than `max_read_chunk` cannot happen (asyncio reads at most 256 KiB);
  the codec bounds every frame (MAX_FRAME_SIZE) and keeps at most one partial frame.
Invariant: the order of a session's reports is the order the link delivers
events; replies of one `on_bytes` call are written before its commands are
submitted, so a reject for a bad frame precedes the reports of later frames.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import os
import socket
import time
from collections.abc import Callable, Hashable
from typing import Protocol

import numpy as np

from microex.gateway.session import GatewaySessions
from microex.pipeline.metrics import (
    BUCKETS,
    G_ACK_HIST,
    G_BYTES_IN,
    G_COMMANDS,
    G_CONNECTIONS,
    G_READ_HIST,
    G_READS,
    G_REPORT_BYTES,
    G_SESSIONS,
    G_SLOW,
    GATEWAY_WORDS,
    observe,
)
from microex.protocol.binary import ProtocolReason

MAX_WRITE_BUFFER = 4 << 20
log = logging.getLogger(__name__)


class EngineLink(Protocol):
    """Where the gateway's commands go and its events come from."""

    def start(self, loop: asyncio.AbstractEventLoop, on_events: Callable[[np.ndarray], None]) -> None: ...

    def submit(self, cmds: np.ndarray) -> None: ...

    def close(self) -> None: ...


class _Connection(asyncio.Protocol):
    __slots__ = ("server", "conn_id", "transport")

    def __init__(self, server: GatewayServer, conn_id: int) -> None:
        self.server, self.conn_id, self.transport = server, conn_id, None

    def connection_made(self, transport) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server._connected(self)

    def data_received(self, data: bytes) -> None:
        self.server._received(self, data)

    def connection_lost(self, exc) -> None:
        self.server._lost(self)


class GatewayServer:
    def __init__(self, sessions: GatewaySessions, link: EngineLink, *, timer_s: float = 0.1,
                 max_write_buffer: int = MAX_WRITE_BUFFER, busy_poll: bool = False,
                 counters: np.ndarray | None = None) -> None:
        # this gateway's metrics region (pipeline/metrics.py G_* words): a view into the
        # venue's shared MetricsBlock, or a private array
        self.counters = np.zeros(GATEWAY_WORDS, dtype=np.int64) if counters is None else counters
        sessions.ack_hist = self.counters[G_ACK_HIST : G_ACK_HIST + BUCKETS + 1]
        self.busy_poll = busy_poll
        self._spinner: asyncio.Task | None = None
        self.sessions = sessions
        self.link = link
        self.timer_s = timer_s
        self.max_write_buffer = max_write_buffer
        self.connections: dict[Hashable, _Connection] = {}
        self._ids = itertools.count(1)
        self._servers: list[asyncio.base_events.Server] = []
        self._timer: asyncio.Task | None = None
        self.closed_reasons: collections.deque = collections.deque(maxlen=1000)  # (conn, reason), newest last

    async def start(self, host: str = "127.0.0.1", port: int = 0, *, reuse_port: bool = False) -> int:
        """Listen (SO_REUSEPORT when several gateway processes share the port); returns the port."""
        loop = asyncio.get_running_loop()
        GatewaySessions.warm_up()
        self.link.start(loop, self.on_events)
        server = await loop.create_server(lambda: _Connection(self, next(self._ids)), host, port,
                                          reuse_port=reuse_port or None, backlog=1024)
        self._servers.append(server)
        if self._timer is None:
            self._timer = loop.create_task(self._tick())
            if self.busy_poll:
                self._spinner = loop.create_task(self._spin())
        return server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        """Stop listening, LOGOUT SHUTDOWN to every session, close them (cancel-on-disconnect applies)."""
        for server in self._servers:
            server.close()
        if self._timer is not None:
            self._timer.cancel()
        if self._spinner is not None:
            self._spinner.cancel()
        self._deliver(*self.sessions.on_shutdown())
        await asyncio.sleep(0)  # let the transports flush what they can and run connection_lost
        for server in self._servers:
            await server.wait_closed()
        self.link.close()

    # -- connections ---------------------------------------------------------------------------

    def _connected(self, conn: _Connection) -> None:
        self.connections[conn.conn_id] = conn
        self.sessions.on_connect(conn.conn_id)
        self.counters[G_CONNECTIONS] = len(self.connections)

    def _received(self, conn: _Connection, data: bytes) -> None:
        t0 = time.perf_counter_ns()
        cmds, replies, closed = self.sessions.on_bytes(conn.conn_id, data)
        if self.sessions.logins:
            for conn_id, sid, account in self.sessions.logins:
                log.info("login", extra={"conn": conn_id, "session": sid, "account": account})
            self.sessions.logins.clear()
        self._deliver(replies, closed)
        counters = self.counters
        if len(cmds):
            counters[G_COMMANDS] += len(cmds)
            self.link.submit(cmds)
        counters[G_READS] += 1
        counters[G_BYTES_IN] += len(data)
        counters[G_SESSIONS] = len(self.sessions.sessions)
        observe(counters, G_READ_HIST, time.perf_counter_ns() - t0)

    def _lost(self, conn: _Connection) -> None:
        if self.connections.pop(conn.conn_id, None) is None:
            return
        self.counters[G_CONNECTIONS] = len(self.connections)
        sess = self.sessions.conns.get(conn.conn_id)
        cmds = self.sessions.on_disconnect(conn.conn_id)
        if sess is not None and sess.session_id:
            log.info("disconnected", extra={"conn": conn.conn_id, "session": sess.session_id, "account": sess.account,
                                            "cancels": len(cmds)})
        if len(cmds):
            self.link.submit(cmds)

    def on_events(self, events: np.ndarray) -> None:
        self._deliver(self.sessions.on_events(events), ())

    def _deliver(self, replies: dict, closed) -> None:
        slow = []
        for conn_id, data in replies.items():
            conn = self.connections.get(conn_id)
            if conn is None or conn.transport.is_closing():
                continue
            conn.transport.write(data)
            self.counters[G_REPORT_BYTES] += len(data)
            if conn.transport.get_write_buffer_size() > self.max_write_buffer:
                slow.append(conn)
        for conn_id, reason in closed:
            if reason:
                self.closed_reasons.append((conn_id, reason))
            sess = self.sessions.conns.get(conn_id)
            log.info("session closed", extra={"conn": conn_id, "session": sess.session_id if sess else None,
                                              "account": sess.account if sess else None, "reason": int(reason)})
            conn = self.connections.get(conn_id)
            if conn is not None:
                conn.transport.close()  # after the LOGOUT written above; connection_lost follows
        for conn in slow:
            self._close_slow(conn)

    def _close_slow(self, conn: _Connection) -> None:
        # Its unread reports would pile up without bound. A LOGOUT SLOW_CONSUMER would only
        # queue behind them, so the connection is aborted (connection_lost follows).
        self.counters[G_SLOW] += 1
        sess = self.sessions.conns.get(conn.conn_id)
        log.warning("slow consumer aborted", extra={"conn": conn.conn_id, "session": sess.session_id if sess else None,
                                                    "account": sess.account if sess else None,
                                                    "reason": int(ProtocolReason.SLOW_CONSUMER)})
        self.closed_reasons.append((conn.conn_id, int(ProtocolReason.SLOW_CONSUMER)))
        conn.transport.abort()

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.timer_s)
            self._deliver(*self.sessions.on_timer())

    async def _spin(self) -> None:
        pump = getattr(self.link, "pump", None)
        if hasattr(self.link, "polled"):
            self.link.polled = True  # no FIFO wake-ups asked: this loop looks again next turn
        yield_core = os.sched_yield
        while True:
            await asyncio.sleep(0)  # one loop turn: ready sockets are read, epoll is not slept in
            if pump is not None:
                pump()
            yield_core()
