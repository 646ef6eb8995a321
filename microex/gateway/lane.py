"""FastLane: the colocated gateway's compiled reads and sends (numba over libc epoll_wait, recv, send).

How it works
- A session is *in the lane* while its next bytes can only go through the fast
  path: logged in, its decoder holds no partial frame and is not closed, and its
  connection has nothing queued to send and is not closing. While it is in, the
  lane's arrays (not its Session object) hold its decoder's expected seq, its
  token bucket and its last receive and send times; `leave` writes them back
  to the Session, `enter` takes them from it. ColocatedGateway decides who is in.
- `read(cmds, at, limit)`: one `epoll_wait` (timeout 0); each ready socket of a
  session in the lane gets one `recv` into the arena, then order_frames.py's
  pass (the very kernel of the session layer's fast path: same commands, same
  rejects, same token arithmetic). Everything else goes back to Python as a
  *slow* entry `(fd, epoll mask, start, end)`: a socket not in the lane, a
  hang-up, an error or EOF (start -1), or the bytes from the first frame the
  pass did not take (another message, a partial frame: arena[start:end]); such
  a session has left the lane (the kernel clears its fd) and Python's
  `leave` syncs it before the session layer sees those bytes.
- A read takes at most as many bytes as the batch, the arena and the reject
  buffers have room for the frames of (and at least a largest frame's worth); a
  socket skipped for room stays ready (level-triggered epoll) for the next turn.
- `send(events)`: orders.route_reports, then one libc `send` per session in the
  lane. A segment of a session outside it, or what a socket did not take, goes
  back to Python to be queued (that session leaves the lane: its bytes stay in order).
Invariants: a session's frames are consumed in arrival order and its reports go
out in event order; the lane never blocks and never raises on a client's bytes;
rejects come back in stream order with their session, to be sent before the batch runs.
"""

from __future__ import annotations

import ctypes
import platform
import select
import socket

import numpy as np
from numba import njit

from microex.gateway.order_frames import MIN_ORDER_FRAME, order_frames
from microex.gateway.orders import route_reports
from microex.gateway.session import GatewayReason, GatewaySessions, Session
from microex.protocol.binary import MAX_FRAME_SIZE

_libc = ctypes.CDLL(None)
_epoll_wait = _libc.epoll_wait
_epoll_wait.argtypes = [ctypes.c_int, ctypes.c_size_t, ctypes.c_int, ctypes.c_int]
_epoll_wait.restype = ctypes.c_int
_recv = _libc.recv
_recv.argtypes = [ctypes.c_int, ctypes.c_size_t, ctypes.c_size_t, ctypes.c_int]  # pointers as integers
_recv.restype = ctypes.c_ssize_t
_send = _libc.send
_send.argtypes = [ctypes.c_int, ctypes.c_size_t, ctypes.c_size_t, ctypes.c_int]
_send.restype = ctypes.c_ssize_t

# struct epoll_event: u32 events, then the data (Python puts the fd there); packed on x86-64 only
_PACKED = platform.machine().lower() in ("x86_64", "amd64")
_EVENT_SIZE = 12 if _PACKED else 16
_FD_AT = 4 if _PACKED else 8
MAX_EVENTS = 64
READ_MAX = 1 << 16  # one recv: at most READ_MAX // MIN_ORDER_FRAME frames
FRAMES_PER_READ = READ_MAX // MIN_ORDER_FRAME
_MIN_READ = MAX_FRAME_SIZE  # a read smaller than the largest frame waits for a turn with more room
_EPOLLIN = select.EPOLLIN
_DONTWAIT = socket.MSG_DONTWAIT
_SEND_FLAGS = socket.MSG_DONTWAIT | socket.MSG_NOSIGNAL  # no SIGPIPE from a peer that has gone
_RATE_LIMITED = int(GatewayReason.RATE_LIMITED)
# per-session columns of FastLane.state
EXPECTED, TOKENS_NS, LAST_RECV, LAST_SENT, SESSION_ID, ACCOUNT, FD = range(7)
_COLUMNS = 7


@njit(nogil=True)  # not cached: numba cannot cache a kernel that holds a ctypes function
def lane_read(epfd, evbuf, fd_sidx, state, tokens, cids, base, eid, owner_sidx, owner_cid, status, rate_per_s,
              burst, now, arena, cmds, at, limit, rej_sidx, rej_cid, rej_reason, rej_inst, rej_side, slow):
    """Returns (new end of cmds, rejects, slow entries, next engine id, reads, bytes read)."""
    n = _epoll_wait(epfd, evbuf.ctypes.data, MAX_EVENTS, 0)
    nrej = 0
    nslow = 0
    apos = 0
    reads = 0
    nbytes = 0
    for k in range(max(n, 0)):
        off = k * _EVENT_SIZE
        mask = np.int64(evbuf[off]) | (np.int64(evbuf[off + 1]) << 8) | (np.int64(evbuf[off + 2]) << 16)
        f = off + _FD_AT
        fd = (np.int64(evbuf[f]) | (np.int64(evbuf[f + 1]) << 8) | (np.int64(evbuf[f + 2]) << 16)
              | (np.int64(evbuf[f + 3]) << 24))
        s1 = fd_sidx[fd] if fd < fd_sidx.shape[0] else 0
        if s1 == 0 or mask != _EPOLLIN:
            slow[nslow, 0], slow[nslow, 1], slow[nslow, 2], slow[nslow, 3] = fd, mask, -1, -1
            nslow += 1
            continue
        # as many bytes as the batch, the rejects and the arena have room for the frames of
        size = min(READ_MAX, (limit - at) * MIN_ORDER_FRAME, (rej_cid.shape[0] - nrej) * MIN_ORDER_FRAME,
                   arena.shape[0] - apos)
        if size < _MIN_READ:
            continue  # no room this turn: the socket stays ready
        got = _recv(fd, arena.ctypes.data + apos, size, _DONTWAIT)
        if got <= 0:  # EOF, an error, or nothing after all: Python's recv tells which
            slow[nslow, 0], slow[nslow, 1], slow[nslow, 2], slow[nslow, 3] = fd, mask, -1, -1
            nslow += 1
            fd_sidx[fd] = 0
            continue
        s = s1 - 1
        row = state[s]
        tk = min(burst, tokens[s] + max(now - row[TOKENS_NS], 0) * 1e-9 * rate_per_s)  # session._refill
        row[TOKENS_NS] = now
        pos, expected, m, r, used, eid = order_frames(
            arena[apos : apos + got], 0, row[EXPECTED], np.int64(tk), cids, row[SESSION_ID], s, row[ACCOUNT],
            now, eid, base, owner_sidx, owner_cid, status, cmds[at:], rej_cid[nrej:], rej_reason[nrej:],
            rej_inst[nrej:], rej_side[nrej:], _RATE_LIMITED)
        tokens[s] = tk - used
        row[EXPECTED] = expected
        row[LAST_RECV] = now
        rej_sidx[nrej : nrej + r] = s
        at += m
        nrej += r
        if pos < got:
            slow[nslow, 0], slow[nslow, 1], slow[nslow, 2], slow[nslow, 3] = fd, mask, apos + pos, apos + got
            nslow += 1
            fd_sidx[fd] = 0
        apos += got
        reads += 1
        nbytes += got
    return at, nrej, nslow, eid, reads, nbytes


@njit(nogil=True)
def lane_send(events, lo, hi, owner_sidx, owner_cid, status, next_seq, rec, rec_u8, frame_sidx, out, seg_sidx,
              seg_start, seg_end, now, ack_hist, state, fd_sidx, sent):
    """route_reports, then a send per session in the lane. sent[j]: bytes taken, -1 a failed send,
    -2 not in the lane (Python delivers). Returns (segments, segments not wholly sent, bytes sent)."""
    nseg = route_reports(events, lo, hi, owner_sidx, owner_cid, status, next_seq, rec, rec_u8, frame_sidx, out,
                         seg_sidx, seg_start, seg_end, now, ack_hist)
    left = 0
    nbytes = 0
    for j in range(nseg):
        s = seg_sidx[j]
        fd = state[s, FD] if s < state.shape[0] else -1  # sessions that never entered have no row
        if fd < 0 or fd >= fd_sidx.shape[0] or fd_sidx[fd] != s + 1:
            sent[j] = -2
            left += 1
            continue
        size = seg_end[j] - seg_start[j]
        r = _send(fd, out.ctypes.data + seg_start[j], size, _SEND_FLAGS)
        sent[j] = r
        if r > 0:
            state[s, LAST_SENT] = now
            nbytes += r
        if r != size:
            fd_sidx[fd] = 0  # the rest is queued by Python: the session is out until it drains
            left += 1
    return nseg, left, nbytes


class FastLane:
    """The lane's arrays for one GatewaySessions; see the module docstring."""

    def __init__(self, sessions: GatewaySessions, epoll_fd: int, arena_bytes: int = 4 * READ_MAX) -> None:
        self.sessions = sessions
        self.epfd = epoll_fd
        self.evbuf = np.zeros(MAX_EVENTS * _EVENT_SIZE, dtype=np.uint8)
        self.fd_sidx = np.zeros(1024, dtype=np.int64)  # fd -> session index + 1 while in the lane
        self.state = np.zeros((64, _COLUMNS), dtype=np.int64)
        self.state[:, FD] = -1
        self.tokens = np.zeros(64, dtype=np.float64)
        self.members: dict[int, int] = {}  # session index -> fd, in the lane as Python sees it
        self.arena = np.zeros(arena_bytes, dtype=np.uint8)
        n = 4 * FRAMES_PER_READ
        self.rej_sidx = np.zeros(n, dtype=np.int64)
        self.rej_cid = np.zeros(n, dtype=np.uint64)
        self.rej_reason = np.zeros(n, dtype=np.uint16)
        self.rej_inst = np.zeros(n, dtype=np.int32)
        self.rej_side = np.zeros(n, dtype=np.uint8)
        self.slow = np.zeros((MAX_EVENTS, 4), dtype=np.int64)
        self.sent = np.zeros(64, dtype=np.int64)

    def warm_up(self) -> None:
        """Compile both kernels now (they cannot be cached): not on a client's first order."""
        from microex.core.records import COMMAND, EVENT

        ids, buf, sess = self.sessions.ids, self.sessions._reports, self.sessions
        ep = select.epoll()
        try:
            lane_read(ep.fileno(), self.evbuf, self.fd_sidx, self.state, self.tokens, sess.cids.table,
                      ids.base, ids.next_eid, ids.owner_sidx, ids.owner_cid, ids.status, 1.0, 1.0, 0, self.arena,
                      np.zeros(FRAMES_PER_READ, dtype=COMMAND), 0, 0, self.rej_sidx, self.rej_cid, self.rej_reason,
                      self.rej_inst, self.rej_side, self.slow)
        finally:
            ep.close()
        lane_send(np.zeros(0, dtype=EVENT), ids.base, ids.next_eid, ids.owner_sidx, ids.owner_cid, ids.status,
                  sess._next_seq, buf.rec, buf.rec_u8, buf.frame_sidx, buf.out, buf.seg_sidx, buf.seg_start,
                  buf.seg_end, 0, sess.ack_hist, self.state, self.fd_sidx, self.sent)

    # -- membership --------------------------------------------------------------------------------

    def enter(self, fd: int, sess: Session) -> None:
        s = sess.index
        if s in self.members:
            return
        self._room(fd, s)
        row = self.state[s]
        row[EXPECTED] = sess.decoder.expected_seq
        row[TOKENS_NS] = sess.tokens_ns
        row[LAST_RECV] = sess.last_recv_ns
        row[LAST_SENT] = sess.last_sent_ns
        row[SESSION_ID] = sess.session_id
        row[ACCOUNT] = sess.account
        row[FD] = fd
        self.tokens[s] = sess.tokens
        self.fd_sidx[fd] = s + 1
        self.members[s] = fd

    def leave(self, sess: Session) -> None:
        fd = self.members.pop(sess.index, None)
        if fd is None:
            return
        row = self.state[sess.index]
        sess.decoder.expected_seq = int(row[EXPECTED])
        sess.tokens = float(self.tokens[sess.index])
        sess.tokens_ns = int(row[TOKENS_NS])
        sess.last_recv_ns = int(row[LAST_RECV])
        sess.last_sent_ns = max(sess.last_sent_ns, int(row[LAST_SENT]))
        row[FD] = -1
        if self.fd_sidx[fd] == sess.index + 1:
            self.fd_sidx[fd] = 0

    def _room(self, fd: int, s: int) -> None:
        if fd >= len(self.fd_sidx):
            grown = np.zeros(max(2 * len(self.fd_sidx), fd + 1), dtype=np.int64)
            grown[: len(self.fd_sidx)] = self.fd_sidx
            self.fd_sidx = grown
        if s >= len(self.state):
            n = max(2 * len(self.state), s + 1)
            state = np.zeros((n, _COLUMNS), dtype=np.int64)
            state[:, FD] = -1
            state[: len(self.state)] = self.state
            tokens = np.zeros(n, dtype=np.float64)
            tokens[: len(self.tokens)] = self.tokens
            self.state, self.tokens = state, tokens

    # -- the turn ----------------------------------------------------------------------------------

    def read(self, cmds: np.ndarray, at: int, limit: int, now: int) -> tuple[int, int, int, int, int]:
        """One compiled read of every ready socket: (new end of cmds, rejects, slow entries, reads, bytes)."""
        sess = self.sessions
        ids = sess.ids
        sess.make_room(limit - at)
        at, nrej, nslow, ids.next_eid, reads, nbytes = lane_read(
            self.epfd, self.evbuf, self.fd_sidx, self.state, self.tokens, sess.cids.table, ids.base, ids.next_eid,
            ids.owner_sidx, ids.owner_cid, ids.status, sess.rate_per_s, sess.burst, now, self.arena, cmds, at, limit,
            self.rej_sidx, self.rej_cid, self.rej_reason, self.rej_inst, self.rej_side, self.slow)
        return at, nrej, nslow, reads, nbytes

    def send(self, events: np.ndarray, now: int) -> tuple[int, int, int]:
        """Route the events' reports and send those of sessions in the lane: (segments, segments left
        to Python, bytes sent). The segments are in sessions._reports, each one's result in self.sent."""
        sess = self.sessions
        ids, buf = sess.ids, sess._reports
        buf.ensure(2 * len(events))
        if len(self.sent) < buf.frames:
            self.sent = np.zeros(buf.frames, dtype=np.int64)
        return lane_send(events, ids.base, ids.next_eid, ids.owner_sidx, ids.owner_cid, ids.status, sess._next_seq,
                         buf.rec, buf.rec_u8, buf.frame_sidx, buf.out, buf.seg_sidx, buf.seg_start, buf.seg_end, now,
                         sess.ack_hist, self.state, self.fd_sidx, self.sent)
