"""ColocatedGateway: the binary port served from the engine process's own loop (`colocated = true`).

    TCP clients  <->  ColocatedGateway  <->  GatewaySessions  <->  the engine loop (same thread)

Why: with a gateway process, an order crosses two process hops (gateway -> inbound
ring -> engine -> outbound ring -> gateway); on a 2-core VM each hop is a core
handover or a wake-up. Here the engine's single writer thread also reads the
sockets, so an order is read, journaled, matched and acknowledged in one turn of
one loop, the way exchange-core runs its gateways inside the core's process.

How it works (no asyncio: the engine loop calls it, it never blocks)
- `poll(cmds, at, limit)`: one non-blocking epoll poll through the fast lane
  (lane.py): the sockets of sessions that can only send orders next are read and
  decoded by compiled code; every other ready socket (a new connection, a login,
  a partial frame, a socket with bytes queued...) goes to `GatewaySessions.on_bytes`,
  the same sessions, codec and transition table as a gateway process. The read's
  commands are written into the engine's batch array `cmds[at:limit]`; replies
  (rejects, login acks) are sent at once, before the batch runs, as a gateway
  process writes them before submitting. A socket whose commands would not fit
  in the batch is left readable for the next turn (epoll is level-triggered):
  the batch bound is backpressure, nothing is dropped.
- `on_events(events)`: the engine's events of a batch -> execution reports, one
  send per connection (the lane's compiled send for its sessions).
- Sends never block: what a socket does not take waits in that connection's
  queue (EPOLLOUT then drains it, in order); past `max_write_buffer` queued bytes
  the connection is a slow consumer and is aborted (cancel-on-disconnect applies).
- A connection that ends (EOF, reset, LOGOUT, timeout, slow consumer) is unregistered
  and closed once; its cancel-on-disconnect CANCELs go into the next batch.
- `on_timer` (called by the loop every `timer_s`): heartbeats and idle timeouts.
- `shutdown()`: LOGOUT SHUTDOWN to every session, close them: returns their
  cancel-on-disconnect commands for the engine's last batch.
Invariant: a session's bytes are decoded in the order they arrived and its reports
are sent in event order, as with a gateway process; the engine order-id and session-id
ranges are gateway 0's (`first_order_id(run, 0)`), so the HTTP edge's range (15)
stays disjoint.
"""

from __future__ import annotations

import errno
import itertools
import logging
import select
import socket
import time

import numpy as np

from microex.core import raw
from microex.core.records import COMMAND
from microex.gateway.lane import LAST_SENT, FastLane
from microex.gateway.server import MAX_WRITE_BUFFER
from microex.gateway.session import GatewaySessions, State
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

READ_CHUNK = 1 << 18  # as asyncio's largest read: the codec bounds frames, this bounds a read
_IN, _OUT = select.EPOLLIN, select.EPOLLOUT
log = logging.getLogger(__name__)


class _Conn:
    __slots__ = ("sock", "fd", "conn_id", "queued", "closing", "close_by")

    def __init__(self, sock: socket.socket, conn_id: int) -> None:
        self.sock, self.fd, self.conn_id = sock, sock.fileno(), conn_id
        self.queued = bytearray()  # bytes the socket has not taken yet, in order
        self.closing = 0  # a reason + 1 once the sessions asked to close it after its last bytes
        self.close_by = 0.0  # closing: when to give up on those bytes (monotonic s)


class ColocatedGateway:
    def __init__(self, sessions: GatewaySessions, host: str = "127.0.0.1", port: int = 0, *,
                 max_write_buffer: int = MAX_WRITE_BUFFER, counters: np.ndarray | None = None,
                 timer_s: float = 0.1) -> None:
        self.sessions = sessions
        self.max_write_buffer = max_write_buffer
        self.timer_s = timer_s
        self.counters = np.zeros(GATEWAY_WORDS, dtype=np.int64) if counters is None else counters
        sessions.ack_hist = self.counters[G_ACK_HIST : G_ACK_HIST + BUCKETS + 1]
        GatewaySessions.warm_up()
        self.listener = socket.create_server((host, port), backlog=1024)
        self.listener.setblocking(False)
        self.port = self.listener.getsockname()[1]
        self.epoll = select.epoll()
        self.epoll.register(self.listener.fileno(), _IN)
        self._listening = True
        self.conns: dict[int, _Conn] = {}  # by fd
        self.by_id: dict[int, _Conn] = {}
        self._ids = itertools.count(1)
        self._later: list[np.ndarray] = []  # commands made outside poll (disconnects): the next batch's
        self._next_timer = time.monotonic() + timer_s
        self.closed_reasons: list[tuple[int, int]] = []
        self.lane = FastLane(sessions, self.epoll.fileno())
        self.lane.warm_up()
        self.clock = sessions.clock

    def fileno(self) -> int:
        """The epoll fd: readable when any socket of the gateway is (for an idle loop's select)."""
        return self.epoll.fileno()

    # -- bytes in ----------------------------------------------------------------------------------

    def poll(self, cmds: np.ndarray, at: int, limit: int) -> int:
        """Read what is ready; write the commands into cmds[at:limit]; returns the new end."""
        at0 = at
        at = self._put_later(cmds, at, limit)
        if time.monotonic() >= self._next_timer:
            self._next_timer = time.monotonic() + self.timer_s
            self._timer()
        if self._later:  # commands still owed come before anything read after them
            self.counters[G_COMMANDS] += at - at0
            return at
        lane = self.lane
        t0 = time.perf_counter_ns()
        at, nrej, nslow, reads, nbytes = lane.read(cmds, at, limit, self.clock())
        if reads:
            c = self.counters
            c[G_READS] += reads
            c[G_BYTES_IN] += nbytes
            observe(c, G_READ_HIST, time.perf_counter_ns() - t0)
        # Each slow entry's connection, taken before anything below may close one: an fd freed
        # here can be handed to a connection accepted in this same loop.
        slow = [(self.conns.get(fd), fd, mask, start, end) for fd, mask, start, end in lane.slow[:nslow].tolist()]
        if nrej:
            self._lane_rejects(nrej)
        for conn, fd, mask, start, end in slow:
            if conn is None:
                if fd == self.listener.fileno():
                    self._accept()
                continue
            if self.conns.get(fd) is not conn:
                continue  # it ended since (its unread bytes go with it)
            self._leave(conn)
            if start >= 0:  # bytes the lane read but did not take: the session layer's, in order
                at = self._on_data(conn, bytes(lane.arena[start:end]), cmds, at, limit)
                self._enter(conn)
                continue
            if mask & _OUT:
                self._flush(conn)
            elif conn.closing and mask & (select.EPOLLHUP | select.EPOLLERR):
                self._end(conn, conn.closing - 1)  # the peer is gone: its queued bytes never will be
            if mask & (_IN | select.EPOLLHUP | select.EPOLLERR) and fd in self.conns and not conn.closing:
                if not self._later:  # else the batch is full: this socket stays readable for the next turn
                    at = self._read(conn, cmds, at, limit)
            self._enter(conn)
        at = self._put_later(cmds, at, limit)  # e.g. the cancels of connections that ended just now
        self.counters[G_COMMANDS] += at - at0
        return at

    def _lane_rejects(self, n: int) -> None:
        """EXEC_REJECTED for the lane's rejects (rate limit, duplicate id), per session in stream order."""
        lane, now = self.lane, self.clock()
        sidx = lane.rej_sidx[:n]
        by_index = self.sessions._by_index
        for s in dict.fromkeys(sidx.tolist()):
            sess = by_index[s]
            conn = self.by_id.get(sess.conn_id) if sess is not None else None
            if conn is None:
                continue
            pick = sidx == s
            frames = self.sessions.reject_frames(sess, now, lane.rej_cid[:n][pick], lane.rej_reason[:n][pick],
                                                 lane.rej_inst[:n][pick], lane.rej_side[:n][pick])
            sess.last_sent_ns = now  # a reply like any other for the heartbeat timer (the lane's copy too)
            lane.state[s, LAST_SENT] = now
            self._send(conn, frames)

    def _put_later(self, cmds: np.ndarray, at: int, limit: int) -> int:
        """As much of the owed commands as the batch has room for, in order (a disconnect's
        cancels may be more than a whole batch)."""
        while self._later and at < limit:
            head = self._later[0]
            k = min(len(head), limit - at)
            at = raw.put(cmds, at, head[:k])
            if k == len(head):
                self._later.pop(0)
            else:
                self._later[0] = head[k:]
        return at

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:  # out of fds: stop listening for a timer tick instead of spinning on it
                log.warning("accept failed", extra={"errno": e.errno})
                self.epoll.unregister(self.listener.fileno())
                self._listening = False
                return
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Conn(sock, next(self._ids))
            self.conns[conn.fd] = conn
            self.by_id[conn.conn_id] = conn
            self.sessions.on_connect(conn.conn_id)
            self.epoll.register(conn.fd, _IN)
            self.counters[G_CONNECTIONS] = len(self.conns)

    def _read(self, conn: _Conn, cmds: np.ndarray, at: int, limit: int) -> int:
        try:
            data = conn.sock.recv(READ_CHUNK)
        except (BlockingIOError, InterruptedError):
            return at
        except OSError:
            data = b""
        if not data:
            self._end(conn, 0)
            return at
        c = self.counters
        c[G_READS] += 1
        c[G_BYTES_IN] += len(data)
        return self._on_data(conn, data, cmds, at, limit)

    def _on_data(self, conn: _Conn, data: bytes, cmds: np.ndarray, at: int, limit: int) -> int:
        """The session layer's turn with a connection's bytes (its session out of the lane)."""
        new, replies, closed = self.sessions.on_bytes(conn.conn_id, data)
        if len(new) <= limit - at:
            at = raw.put(cmds, at, new)
        else:  # the session's state already counts them: they open the next batch
            self._later.append(new)
        if self.sessions.logins:
            for conn_id, sid, account in self.sessions.logins:
                log.info("login", extra={"conn": conn_id, "session": sid, "account": account})
            self.sessions.logins.clear()
        self._deliver(replies, closed)
        self.counters[G_SESSIONS] = len(self.sessions.sessions)
        return at

    # -- the lane ----------------------------------------------------------------------------------

    def _enter(self, conn: _Conn) -> None:
        """Into the lane if only order frames can come next and nothing waits to be sent."""
        sess = self.sessions.conns.get(conn.conn_id)
        if (sess is not None and sess.state is State.LOGGED_IN and not sess.decoder.buffered
                and not sess.decoder.closed and not conn.queued and not conn.closing and conn.fd in self.conns):
            self.lane.enter(conn.fd, sess)

    def _leave(self, conn: _Conn) -> None:
        sess = self.sessions.conns.get(conn.conn_id)
        if sess is not None:
            self.lane.leave(sess)

    def _timer(self) -> None:
        """Heartbeats and idle timeouts read the sessions' times: every session leaves the lane for it."""
        if not self._listening:
            self.epoll.register(self.listener.fileno(), _IN)
            self._listening = True
        now = time.monotonic()
        for conn in [c for c in self.conns.values() if c.closing and c.close_by <= now]:
            self._end(conn, conn.closing - 1)
        conns = list(self.conns.values())
        for conn in conns:
            self._leave(conn)
        self._deliver(*self.sessions.on_timer())
        for conn in conns:
            self._enter(conn)

    # -- bytes out ---------------------------------------------------------------------------------

    def on_events(self, events: np.ndarray) -> None:
        """The engine's events -> execution reports: the lane sends those of its sessions."""
        now = self.clock()
        nseg, left, sent_bytes = self.lane.send(events, now)
        self.counters[G_REPORT_BYTES] += sent_bytes
        if not left:
            return
        buf = self.sessions._reports
        by_index, sent = self.sessions._by_index, self.lane.sent
        for j in range(nseg):
            a, b, r = int(buf.seg_start[j]), int(buf.seg_end[j]), int(sent[j])
            if r == b - a:
                continue
            sess = by_index[int(buf.seg_sidx[j])]
            if sess is None or sess.state is not State.LOGGED_IN:
                continue  # disconnected (its orders may still trade or be cancelled)
            conn = self.by_id.get(sess.conn_id)
            if conn is None or conn.closing:
                continue
            self._leave(conn)
            sess.last_sent_ns = now
            self._send(conn, buf.out[a + max(r, 0) : b].tobytes())

    def _deliver(self, replies: dict, closed) -> None:
        for conn_id, data in replies.items():
            conn = self.by_id.get(conn_id)
            if conn is not None and not conn.closing:
                self._send(conn, data)
        for conn_id, reason in closed:
            conn = self.by_id.get(conn_id)
            if reason:
                self.closed_reasons.append((conn_id, int(reason)))
            log.info("session closed", extra={"conn": conn_id, "reason": int(reason)})
            if conn is not None and not conn.closing:
                conn.closing = int(reason) + 1
                if conn.queued:
                    # no more reads: close once its bytes are out, or after a heartbeat interval
                    # if the client has stopped reading (its cancel-on-disconnect must not wait)
                    self.epoll.modify(conn.fd, _OUT)
                    conn.close_by = time.monotonic() + max(self.sessions.heartbeat_ms / 1000, self.timer_s)
                else:
                    self._end(conn, reason)

    def _send(self, conn: _Conn, data: bytes) -> None:
        self.counters[G_REPORT_BYTES] += len(data)
        if conn.queued:
            conn.queued += data
        else:
            try:
                n = conn.sock.send(data)
            except (BlockingIOError, InterruptedError):
                n = 0
            except OSError:
                self._end(conn, 0)
                return
            if n == len(data):
                return
            self._leave(conn)  # the lane must not send past queued bytes
            conn.queued += data[n:]
            self.epoll.modify(conn.fd, _IN | _OUT)
        if len(conn.queued) > self.max_write_buffer:
            self.counters[G_SLOW] += 1
            log.warning("slow consumer aborted", extra={"conn": conn.conn_id,
                                                        "reason": int(ProtocolReason.SLOW_CONSUMER)})
            self.closed_reasons.append((conn.conn_id, int(ProtocolReason.SLOW_CONSUMER)))
            self._end(conn, int(ProtocolReason.SLOW_CONSUMER))

    def _flush(self, conn: _Conn) -> None:
        try:
            n = conn.sock.send(conn.queued)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._end(conn, 0)
            return
        del conn.queued[:n]
        if not conn.queued:
            if conn.closing:
                self._end(conn, conn.closing - 1)
            else:
                # back to reads only; the caller puts the session back in the lane once this
                # readiness entry's read (if any) is done, so both copies of its state agree
                self.epoll.modify(conn.fd, _IN)

    def _end(self, conn: _Conn, reason: int) -> None:
        """Forget the connection and close its socket; its cancel-on-disconnect CANCELs wait for the next batch."""
        if conn.fd not in self.conns:
            return
        self._leave(conn)
        del self.conns[conn.fd]
        self.by_id.pop(conn.conn_id, None)
        try:
            self.epoll.unregister(conn.fd)
        except OSError as e:
            if e.errno != errno.EBADF:
                raise
        conn.sock.close()
        cmds = self.sessions.on_disconnect(conn.conn_id)
        if len(cmds):
            self._later.append(cmds)
        self.counters[G_CONNECTIONS] = len(self.conns)
        self.counters[G_SESSIONS] = len(self.sessions.sessions)
        log.info("disconnected", extra={"conn": conn.conn_id, "cancels": len(cmds), "reason": reason})

    # -- stop --------------------------------------------------------------------------------------

    def shutdown(self) -> np.ndarray:
        """LOGOUT SHUTDOWN to every session, close every connection; returns the commands still owed
        to the engine (cancel-on-disconnect and any held batch)."""
        if self._listening:
            self.epoll.unregister(self.listener.fileno())
        self.listener.close()
        for conn in self.conns.values():
            self._leave(conn)
        replies, closed = self.sessions.on_shutdown()
        for conn_id, data in replies.items():
            conn = self.by_id.get(conn_id)
            if conn is not None:
                conn.queued += data
                try:  # one non-blocking try: a client that does not read loses its LOGOUT, and no
                    conn.sock.send(conn.queued)  # number of such clients can hold up the stop
                except OSError:
                    pass
                conn.queued.clear()
        for conn in list(self.conns.values()):
            self._end(conn, int(ProtocolReason.SHUTDOWN))
        self.epoll.close()
        later, self._later = self._later, []
        return raw.concat(later, COMMAND)
