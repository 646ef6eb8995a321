"""The gateway's session layer, sans-I/O: bytes and engine events in; commands, bytes and closes out.

One `GatewaySessions` per gateway process owns every connection's `Session` and
the gateway-wide order-id map. The asyncio server (not here) only moves bytes:

    server                          GatewaySessions                      engine
    accept()        -> on_connect(conn)
    recv(data)      -> on_bytes(conn, data) -> (commands, replies, closed)
                                               commands --------------->  inbound ring
    outbound ring   -> on_events(events)   -> replies   <---------------  EVENT records
    every ~100 ms   -> on_timer(now)       -> (replies, closed)
    socket gone /
    closed by us    -> on_disconnect(conn) -> commands (cancel-on-disconnect)

`replies` is `{conn_id: bytes to write}`; `closed` is `[(conn_id, reason)]`:
connections the server must close after writing their replies (reason 0: a
normal LOGOUT, else a ProtocolReason); it then calls `on_disconnect` for them,
as for a connection the peer dropped. Nothing a client sends raises.

Session state machine (`TRANSITIONS`: (state, message type) -> action)

| state     | LOGIN               | HEARTBEAT | LOGOUT          | NEW_ORDER / CANCEL / MODIFY |
|-----------|---------------------|-----------|-----------------|-----------------------------|
| CONNECTED | login (-> LOGGED_IN, or LOGIN_REJECT + close) | nothing | LOGOUT + close | PROTOCOL_ERROR NOT_LOGGED_IN |
| LOGGED_IN | PROTOCOL_ERROR ALREADY_LOGGED_IN | nothing | LOGOUT + close | engine COMMANDs |
| CLOSED    | dropped             | dropped   | dropped         | dropped                     |

Any received byte counts as life for the heartbeat timeout. Decoder errors in
any open state: PROTOCOL_ERROR (frame skipped, session goes on) or, for an
untrusted length, LOGOUT with the reason + close. A LOGIN with a version other
than PROTOCOL_VERSION: LOGIN_REJECT UNSUPPORTED_VERSION + close; an unknown API
key: LOGIN_REJECT AUTH_FAILED + close.

Order ids. The client names its orders with u64 client order ids, unique per
session for the session's whole life: a NEW_ORDER reusing one (whatever became
of the first order) is rejected by the gateway (EXEC_REJECTED DUPLICATE_ORDER_ID)
and never reaches the engine; a CANCEL/MODIFY naming an id the session never
used is rejected with UNKNOWN_ORDER likewise. The gateway gives each accepted
NEW_ORDER an engine order id from its own counter (`first_order_id`,
`first_order_id + 1`, ...): several gateways feeding one engine must be given
disjoint ranges (gateway/process.py: per gateway and per run of the venue);
events whose ids are outside this gateway's range are ignored, so all gateways
may read one outbound ring. The engine id -> (session, client id, liveness) map
is gateway/orders.py's OrderIdMap: three arrays indexed by `engine id -
first_order_id` (17 bytes per order ever sent, never freed; a long-running
gateway would recycle them per trading day). The per-order hot paths (new
orders, report routing) are compiled kernels there; this module keeps the
session logic. A logged-in session's read goes first through order_frames.py,
one compiled pass that takes NEW_ORDER / CANCEL / MODIFY / HEARTBEAT frames
as the transitions below would, up to the first frame that is anything else;
the decoder and the transition table take the rest (a hypothesis test checks
the two paths give the same commands and replies).

Rate limit: a token bucket per session over NEW_ORDER, CANCEL and MODIFY alike
(`rate_per_s` tokens per second, `burst` at most); a message without a token is
answered EXEC_REJECTED `GatewayReason.RATE_LIMITED` (72) and dropped.

Cancel-on-disconnect (LOGIN flags bit 0): when the connection ends (whichever
side closes it, LOGOUT included) `on_disconnect` returns a CANCEL command for
each of the session's orders that may rest: counted from the moment the NEW is
sent (so an order still in flight is cancelled right behind it: one gateway's
commands stay in order) until the events show it filled, cancelled or rejected.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Hashable, Mapping
from enum import IntEnum

import numpy as np

from microex.core.records import COMMAND, EVENT, Action, EventKind, Reason
from microex.gateway.order_frames import MIN_ORDER_FRAME, order_frames
from microex.gateway.client_ids import ClientIdMap
from microex.gateway.orders import OrderIdMap, ReportBuffers, lookup_orders, new_order_commands, route_reports
from microex.pipeline.metrics import BUCKETS
from microex.protocol.binary import (
    CLIENT_MESSAGES,
    PROTOCOL_VERSION,
    BinaryDecoder,
    DecodeError,
    FrameEncoder,
    LoginFlag,
    Messages,
    MsgType,
    ProtocolReason,
)


class GatewayReason(IntEnum):
    """Gateway reason codes not in binary.ProtocolReason (60-71); 72-79 is theirs.

    RATE_LIMITED: the session's order-message rate limit was exceeded; the
    message is rejected (EXEC_REJECTED with this reason) and the session goes on.
    """

    RATE_LIMITED = 72


assert min(GatewayReason) > max(ProtocolReason) and max(GatewayReason) <= 79


log = logging.getLogger(__name__)


class State(IntEnum):
    CONNECTED = 1
    LOGGED_IN = 2
    CLOSED = 3


# Order liveness as the gateway sees it (for cancel-on-disconnect).
_HB_TIMEOUT_INTERVALS = 3


class Session:
    """One connection's state."""

    __slots__ = ("conn_id", "state", "index", "session_id", "account", "cancel_on_disconnect", "decoder", "encoder",
                 "last_recv_ns", "last_sent_ns", "tokens", "tokens_ns")

    def __init__(self, conn_id: Hashable, index: int, encoder: FrameEncoder, now_ns: int, burst: float) -> None:
        self.conn_id = conn_id
        self.state = State.CONNECTED
        self.index = index  # per connection, from 0: the row of this session in the gateway's arrays
        self.session_id = 0  # given at login
        self.account = 0
        self.cancel_on_disconnect = False
        self.decoder = BinaryDecoder(CLIENT_MESSAGES)
        self.encoder = encoder
        self.last_recv_ns = now_ns
        self.last_sent_ns = now_ns
        self.tokens = float(burst)
        self.tokens_ns = now_ns


class _SeqEncoder(FrameEncoder):
    """A FrameEncoder whose seq lives in the gateway's per-session array (route_reports numbers frames too)."""

    def __init__(self, owner: GatewaySessions, index: int) -> None:
        self._owner, self._index = owner, index

    @property
    def next_seq(self) -> int:
        return int(self._owner._next_seq[self._index])

    @next_seq.setter
    def next_seq(self, value: int) -> None:
        self._owner._next_seq[self._index] = value


class _Out:
    """What one call produces."""

    __slots__ = ("commands", "replies", "closed")

    def __init__(self) -> None:
        self.commands: list[np.ndarray] = []
        self.replies: dict[Hashable, list[bytes]] = {}
        self.closed: list[tuple[Hashable, int]] = []

    def send(self, sess: Session, data: bytes, now_ns: int) -> None:
        if data:
            self.replies.setdefault(sess.conn_id, []).append(data)
            sess.last_sent_ns = now_ns

    def close(self, sess: Session, reason: int) -> None:
        sess.state = State.CLOSED
        self.closed.append((sess.conn_id, int(reason)))

    def joined_replies(self) -> dict[Hashable, bytes]:
        return {c: b"".join(parts) for c, parts in self.replies.items()}

    def joined_commands(self) -> np.ndarray:
        if not self.commands:
            return np.zeros(0, dtype=COMMAND)
        if len(self.commands) == 1:
            return self.commands[0]
        out = np.zeros(sum(len(c) for c in self.commands), dtype=COMMAND)  # concatenate would drop the padding
        pos = 0
        for c in self.commands:
            out[pos : pos + len(c)] = c
            pos += len(c)
        return out


def _rejects(n: int, ts_ns: int, reasons, instrument=0, side=0) -> np.ndarray:
    """Gateway-made REJECTED events (to go through encode_exec_reports like the engine's)."""
    ev = np.zeros(n, dtype=EVENT)
    ev["kind"] = EventKind.REJECTED
    ev["ts_ns"] = ts_ns
    ev["reason"] = reasons
    ev["instrument"] = instrument
    ev["side"] = side
    return ev


class GatewaySessions:
    """Every session of one gateway process (see the module docstring)."""

    def __init__(self, api_keys: Mapping[bytes, int], *, heartbeat_ms: int = 1000, rate_per_s: float = 1000.0,
                 burst: float | None = None, first_order_id: int = 1, first_session_id: int = 1,
                 expected_orders: int = 1 << 12, read_room: int = 1 << 14,
                 clock: Callable[[], int] = time.time_ns) -> None:
        if first_order_id < 1 or heartbeat_ms < 1 or rate_per_s <= 0:
            raise ValueError("first_order_id, heartbeat_ms and rate_per_s must be positive")
        self.api_keys = {bytes(k).rstrip(b"\0"): int(v) for k, v in api_keys.items()}
        self.heartbeat_ms = int(heartbeat_ms)
        self.rate_per_s = float(rate_per_s)
        self.burst = float(rate_per_s if burst is None else burst)
        self.clock = clock
        self.conns: dict[Hashable, Session] = {}
        self.sessions: dict[int, Session] = {}  # logged-in, not yet disconnected
        self._first_session = int(first_session_id)
        # Sized for `expected_orders` (orders this gateway sends in a run) plus `read_room` (the
        # most a read reserves ahead: make_room): past it, each doubling copies or rehashes every
        # id ever sent, with this gateway stopped (milliseconds).
        size = max(int(expected_orders), 16) + int(read_room)
        self.ids = OrderIdMap(int(first_order_id), size)
        self.cids = ClientIdMap(size)  # (session, client order id) -> engine order id
        self._room_eid = 0  # make_room's next full check
        self._by_index: list[Session | None] = []  # logged-in sessions by index (None: not or no longer)
        self._next_seq = np.ones(64, dtype=np.int64)  # per session index: its next outgoing frame seq
        self._reports = ReportBuffers()
        # order -> ack inside the venue (pipeline/metrics.py histogram layout); the server may
        # point it at the shared metrics block
        self.ack_hist = np.zeros(BUCKETS + 1, dtype=np.int64)
        self.logins: list[tuple[Hashable, int, int]] = []  # (conn, session, account) since the server last looked

    # -- connections -------------------------------------------------------------------------------

    def on_connect(self, conn_id: Hashable, now_ns: int | None = None) -> Session:
        now = self.clock() if now_ns is None else now_ns
        index = len(self._by_index)
        self._by_index.append(None)
        if index >= len(self._next_seq):
            grown = np.ones(2 * len(self._next_seq), dtype=np.int64)
            grown[: len(self._next_seq)] = self._next_seq
            self._next_seq = grown
        sess = Session(conn_id, index, _SeqEncoder(self, index), now, self.burst)
        self.conns[conn_id] = sess
        return sess

    def on_disconnect(self, conn_id: Hashable, now_ns: int | None = None) -> np.ndarray:
        """The connection is gone: forget it; CANCEL commands if its login asked for cancel-on-disconnect."""
        sess = self.conns.pop(conn_id, None)
        if sess is None:
            return np.zeros(0, dtype=COMMAND)
        sess.state = State.CLOSED
        self._by_index[sess.index] = None
        sid = sess.session_id
        if sid:
            self.sessions.pop(sid, None)
        if not (sid and sess.cancel_on_disconnect):
            return np.zeros(0, dtype=COMMAND)
        eids = self.ids.open_orders_of(sess.index)
        cmds = np.zeros(len(eids), dtype=COMMAND)
        cmds["ts_ns"] = self.clock() if now_ns is None else now_ns
        cmds["order_id"] = eids
        cmds["account"] = sess.account
        cmds["session"] = sid
        cmds["action"] = Action.CANCEL
        return cmds

    # -- bytes in ----------------------------------------------------------------------------------

    def on_bytes(self, conn_id: Hashable, data: bytes, now_ns: int | None = None
                 ) -> tuple[np.ndarray, dict[Hashable, bytes], list[tuple[Hashable, int]]]:
        """Bytes from a connection -> (COMMAND array for the engine, replies, connections to close)."""
        now = self.clock() if now_ns is None else now_ns
        out = _Out()
        sess = self.conns.get(conn_id)
        if sess is None:
            sess = self.on_connect(conn_id, now)
        if sess.state is State.CLOSED:
            return out.joined_commands(), {}, []
        if data:
            sess.last_recv_ns = now
            if sess.state is State.LOGGED_IN and not sess.decoder.buffered and not sess.decoder.closed:
                done = self._order_frames(sess, data, out, now)
                if done:
                    data = data[done:]
        for item in sess.decoder.feed(data):
            if sess.state is State.CLOSED:
                break
            if isinstance(item, DecodeError):
                self._decode_error(sess, item, out, now)
            else:
                action = TRANSITIONS[(sess.state, item.msg_type)]
                action(self, sess, item, out, now)
        return out.joined_commands(), out.joined_replies(), out.closed

    def _order_frames(self, sess: Session, data: bytes, out: _Out, now: int) -> int:
        """The fast path (order_frames.py) over the front of data; returns the bytes it consumed."""
        buf = np.frombuffer(data, dtype=np.uint8)
        bound = len(data) // MIN_ORDER_FRAME
        ids = self.ids
        self.make_room(bound)
        cmds = np.zeros(bound, dtype=COMMAND)
        rej_cid = np.empty(bound, dtype=np.uint64)
        rej_reason = np.empty(bound, dtype=np.uint16)
        rej_inst = np.empty(bound, dtype=np.int32)
        rej_side = np.empty(bound, dtype=np.uint8)
        self._refill(sess, now)
        dec = sess.decoder
        pos, dec.expected_seq, m, r, used, ids.next_eid = order_frames(
            buf, 0, dec.expected_seq, int(sess.tokens), self.cids.table, sess.session_id, sess.index, sess.account, now,
            ids.next_eid, ids.base, ids.owner_sidx, ids.owner_cid, ids.status, cmds, rej_cid, rej_reason, rej_inst,
            rej_side, int(GatewayReason.RATE_LIMITED))
        sess.tokens -= used
        if m:
            out.commands.append(cmds[:m])
        if r:
            self._reject(sess, out, now, rej_cid[:r], rej_reason[:r], rej_inst[:r], rej_side[:r])
        return pos

    def _decode_error(self, sess: Session, err: DecodeError, out: _Out, now: int) -> None:
        if err.closing:
            out.send(sess, sess.encoder.message(MsgType.LOGOUT, reason=err.reason), now)
            out.close(sess, err.reason)
        else:
            out.send(sess, sess.encoder.message(MsgType.PROTOCOL_ERROR, reason=err.reason, ref_type=err.msg_type,
                                                ref_seq=err.seq), now)

    # transition actions: (self, session, Messages run, out, now)

    def _protocol_errors(self, sess: Session, msgs: Messages, out: _Out, now: int, reason: int) -> None:
        recs = np.zeros(len(msgs.records), dtype=[("reason", "<u2"), ("ref_type", "<u2"), ("ref_seq", "<u4")])
        recs["reason"] = reason
        recs["ref_type"] = msgs.msg_type
        recs["ref_seq"] = msgs.records["seq"]
        out.send(sess, sess.encoder.records(MsgType.PROTOCOL_ERROR, recs), now)

    def _not_logged_in(self, sess, msgs, out, now) -> None:
        self._protocol_errors(sess, msgs, out, now, ProtocolReason.NOT_LOGGED_IN)

    def _already_logged_in(self, sess, msgs, out, now) -> None:
        self._protocol_errors(sess, msgs, out, now, ProtocolReason.ALREADY_LOGGED_IN)

    def _nothing(self, sess, msgs, out, now) -> None:
        pass

    def _logout(self, sess, msgs, out, now) -> None:
        out.send(sess, sess.encoder.message(MsgType.LOGOUT, reason=0), now)
        out.close(sess, 0)

    def _login(self, sess, msgs, out, now) -> None:
        rec = msgs.records[0]
        reason = 0
        account = None
        if int(rec["version"]) != PROTOCOL_VERSION:
            reason = ProtocolReason.UNSUPPORTED_VERSION
        else:
            account = self.api_keys.get(bytes(rec["api_key"]).rstrip(b"\0"))
            if account is None:
                reason = ProtocolReason.AUTH_FAILED
        if reason:
            out.send(sess, sess.encoder.message(MsgType.LOGIN_REJECT, reason=reason), now)
            out.close(sess, reason)
            return
        sid = self._first_session + sess.index
        sess.session_id = sid
        self._by_index[sess.index] = sess
        sess.account = account
        sess.cancel_on_disconnect = bool(int(rec["flags"]) & LoginFlag.CANCEL_ON_DISCONNECT)
        sess.state = State.LOGGED_IN
        self.sessions[sid] = sess
        self.logins.append((sess.conn_id, sid, account))
        out.send(sess, sess.encoder.message(MsgType.LOGIN_ACK, session=sid, heartbeat_ms=self.heartbeat_ms,
                                            account=account), now)
        if len(msgs.records) > 1:  # the rest of a run of LOGINs
            self._already_logged_in(sess, Messages(msgs.msg_type, msgs.records[1:]), out, now)

    def make_room(self, n: int) -> None:
        """Room for n more orders in the id tables (the kernels never grow them).

        Every engine id given takes at most one client-id entry, so below `_room_eid` (worked
        out at the last full check) both tables have room: one comparison per read."""
        ids = self.ids
        if ids.next_eid + n <= self._room_eid:
            return
        ids.ensure(n)
        if self.cids.ensure(n):
            log.info("client-id table doubled", extra={"entries": len(self.cids), "expected_orders_too_low": True})
        cids = self.cids
        self._room_eid = min(ids.base + len(ids.status), ids.next_eid + cids.room())

    def _refill(self, sess: Session, now: int) -> None:
        elapsed = max(now - sess.tokens_ns, 0)
        sess.tokens = min(self.burst, sess.tokens + elapsed * 1e-9 * self.rate_per_s)
        sess.tokens_ns = now

    def _take_tokens(self, sess: Session, n: int, now: int) -> int:
        """How many of n order messages the session's bucket lets through now."""
        self._refill(sess, now)
        k = min(n, int(sess.tokens))
        sess.tokens -= k
        return k

    def _reject(self, sess: Session, out: _Out, now: int, cids, reasons, instrument=0, side=0) -> None:
        out.send(sess, self.reject_frames(sess, now, cids, reasons, instrument, side), now)

    @staticmethod
    def reject_frames(sess: Session, now: int, cids, reasons, instrument=0, side=0) -> bytes:
        """Gateway-made EXEC_REJECTED frames for the session (numbered by its encoder)."""
        return sess.encoder.exec_reports(_rejects(len(cids), now, reasons, instrument, side), cids)

    def _commands(self, sess: Session, n: int, now: int, action: Action) -> np.ndarray:
        cmds = np.zeros(n, dtype=COMMAND)
        cmds["ts_ns"] = now
        cmds["account"] = sess.account
        cmds["session"] = sess.session_id
        cmds["action"] = action
        return cmds

    def _new_orders(self, sess, msgs, out, now) -> None:
        recs = msgs.records
        n = len(recs)
        allowed = self._take_tokens(sess, n, now)
        ids = self.ids
        self.make_room(n)
        cmds = np.zeros(n, dtype=COMMAND)  # zeroed: padding bytes reach the journal
        rej_idx = np.empty(n, dtype=np.int64)
        rej_reason = np.empty(n, dtype=np.uint16)
        m, r = new_order_commands(recs, allowed, self.cids.table, sess.session_id, sess.index, sess.account, now,
                                  ids.next_eid, ids.base, ids.owner_sidx, ids.owner_cid, ids.status, cmds,
                                  rej_idx, rej_reason, int(GatewayReason.RATE_LIMITED))
        ids.next_eid += m
        if m:
            out.commands.append(cmds if m == n else cmds[:m])
        if r:
            bad = recs[rej_idx[:r]]
            self._reject(sess, out, now, bad["client_order_id"], rej_reason[:r], bad["instrument"], bad["side"])

    def _lookup(self, sess, msgs, out, now) -> tuple[np.ndarray, np.ndarray]:
        """Rate limit and client id -> engine id for a CANCEL/MODIFY run; rejects the rest.

        Returns (records that go on, their engine ids)."""
        recs = msgs.records
        n = len(recs)
        allowed = self._take_tokens(sess, n, now)
        eids = np.empty(n, dtype=np.int64)
        lookup_orders(recs, allowed, self.cids.table, sess.index, eids)
        ok = eids != 0
        if ok.all():
            return recs, eids
        reasons = np.where(np.arange(n) < allowed, Reason.UNKNOWN_ORDER, GatewayReason.RATE_LIMITED).astype(np.uint16)
        self._reject(sess, out, now, recs["client_order_id"][~ok], reasons[~ok])
        return recs[ok], eids[ok]

    def _cancels(self, sess, msgs, out, now) -> None:
        recs, eids = self._lookup(sess, msgs, out, now)
        if len(eids):
            cmds = self._commands(sess, len(eids), now, Action.CANCEL)
            cmds["order_id"] = eids
            out.commands.append(cmds)

    def _modifies(self, sess, msgs, out, now) -> None:
        recs, eids = self._lookup(sess, msgs, out, now)
        if len(eids):
            cmds = self._commands(sess, len(eids), now, Action.MODIFY)
            cmds["order_id"] = eids
            cmds["price_ticks"] = recs["price_ticks"]
            cmds["qty_lots"] = recs["qty_lots"]
            out.commands.append(cmds)

    # -- events in ---------------------------------------------------------------------------------

    def on_events(self, events: np.ndarray, now_ns: int | None = None) -> dict[Hashable, bytes]:
        """Engine EVENT records -> execution reports per connection (LEVEL, BATCH, other gateways' ignored).

        A trade goes to the aggressor's session and to the maker's (is_maker),
        each with its own client order id and leaves (orders.route_reports)."""
        n = len(events)
        if not n:
            return {}
        ids, buf = self.ids, self._reports
        buf.ensure(2 * n)
        now = self.clock() if now_ns is None else now_ns
        nseg = route_reports(events, ids.base, ids.next_eid, ids.owner_sidx, ids.owner_cid, ids.status,
                             self._next_seq, buf.rec, buf.rec_u8, buf.frame_sidx, buf.out, buf.seg_sidx,
                             buf.seg_start, buf.seg_end, now, self.ack_hist)
        if not nseg:
            return {}
        replies = {}
        by_index, out = self._by_index, buf.out
        for sidx, a, b in zip(buf.seg_sidx[:nseg].tolist(), buf.seg_start[:nseg].tolist(),
                              buf.seg_end[:nseg].tolist()):
            sess = by_index[sidx]
            if sess is None or sess.state is not State.LOGGED_IN:
                continue  # disconnected (its orders may still trade or be cancelled)
            replies[sess.conn_id] = out[a:b].tobytes()
            sess.last_sent_ns = now
        return replies

    # -- time --------------------------------------------------------------------------------------

    def on_timer(self, now_ns: int | None = None) -> tuple[dict[Hashable, bytes], list[tuple[Hashable, int]]]:
        """HEARTBEAT to logged-in sessions quiet for heartbeat_ms; close those silent for 3 intervals."""
        now = self.clock() if now_ns is None else now_ns
        hb_ns = self.heartbeat_ms * 1_000_000
        out = _Out()
        for sess in list(self.conns.values()):
            if sess.state is State.CLOSED:
                continue
            if now - sess.last_recv_ns >= _HB_TIMEOUT_INTERVALS * hb_ns:
                out.send(sess, sess.encoder.message(MsgType.LOGOUT, reason=ProtocolReason.HEARTBEAT_TIMEOUT), now)
                out.close(sess, ProtocolReason.HEARTBEAT_TIMEOUT)
            elif sess.state is State.LOGGED_IN and now - sess.last_sent_ns >= hb_ns:
                out.send(sess, sess.encoder.message(MsgType.HEARTBEAT), now)
        return out.joined_replies(), out.closed


    @staticmethod
    def warm_up() -> None:
        """Compile (or load from numba's cache) every kernel of the session paths now, at start-up:
        a first order compiling them would stall its event loop past clients' heartbeat timeouts."""
        key = b"warm-up-key"
        gw = GatewaySessions({key: 1}, rate_per_s=1e9)
        enc = FrameEncoder()
        gw.on_bytes(0, enc.message(MsgType.LOGIN, api_key=key, flags=LoginFlag.CANCEL_ON_DISCONNECT,
                                   version=PROTOCOL_VERSION))
        frames = (enc.message(MsgType.NEW_ORDER, client_order_id=1, price_ticks=1, qty_lots=1, instrument=1, side=1,
                              ord_type=1, tif=1) + enc.message(MsgType.CANCEL, client_order_id=1)
                  + enc.message(MsgType.MODIFY, client_order_id=1, price_ticks=1, qty_lots=1))
        cmds, _, _ = gw.on_bytes(0, frames)  # the fast path
        gw.on_bytes(0, frames[:3])  # split frames: the decoder's runs and their kernels
        gw.on_bytes(0, frames[3:].replace(b"\x01\x00\x00\x00\x00\x00\x00\x00", b"\x02" + b"\x00" * 7, 1))
        ev = np.zeros(1, dtype=EVENT)
        ev["kind"], ev["order_id"] = EventKind.ACCEPTED, cmds["order_id"][0]
        gw.on_events(ev)
        gw.on_disconnect(0)

    def on_shutdown(self, now_ns: int | None = None) -> tuple[dict[Hashable, bytes], list[tuple[Hashable, int]]]:
        """The gateway is stopping: LOGOUT SHUTDOWN to every open session, and close them all."""
        now = self.clock() if now_ns is None else now_ns
        out = _Out()
        for sess in list(self.conns.values()):
            if sess.state is not State.CLOSED:
                out.send(sess, sess.encoder.message(MsgType.LOGOUT, reason=ProtocolReason.SHUTDOWN), now)
                out.close(sess, ProtocolReason.SHUTDOWN)
        return out.joined_replies(), out.closed


# The transition table: (state, message type) -> action. CLOSED sessions drop everything.
TRANSITIONS: dict[tuple[State, MsgType], Callable] = {
    (State.CONNECTED, MsgType.LOGIN): GatewaySessions._login,
    (State.CONNECTED, MsgType.HEARTBEAT): GatewaySessions._nothing,
    (State.CONNECTED, MsgType.LOGOUT): GatewaySessions._logout,
    (State.CONNECTED, MsgType.NEW_ORDER): GatewaySessions._not_logged_in,
    (State.CONNECTED, MsgType.CANCEL): GatewaySessions._not_logged_in,
    (State.CONNECTED, MsgType.MODIFY): GatewaySessions._not_logged_in,
    (State.LOGGED_IN, MsgType.LOGIN): GatewaySessions._already_logged_in,
    (State.LOGGED_IN, MsgType.HEARTBEAT): GatewaySessions._nothing,
    (State.LOGGED_IN, MsgType.LOGOUT): GatewaySessions._logout,
    (State.LOGGED_IN, MsgType.NEW_ORDER): GatewaySessions._new_orders,
    (State.LOGGED_IN, MsgType.CANCEL): GatewaySessions._cancels,
    (State.LOGGED_IN, MsgType.MODIFY): GatewaySessions._modifies,
}
assert {t for _, t in TRANSITIONS} == set(CLIENT_MESSAGES)
