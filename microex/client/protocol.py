"""The client side of the binary protocol, sans-I/O: calls in, bytes out; bytes in, typed events out.

How it works. One `ClientProtocol` is one connection (a reconnect makes a new
one: seq counts from 1 again on both sides). The send methods (`login`,
`new_order`, `new_orders`, `cancel`, `modify`, `heartbeat`, `logout`) return the
frames to write, numbered by a `FrameEncoder` (the per-order ones packed with
`struct`, byte-identical to the codec's); `feed(data)` decodes whatever the
socket delivered (any split) with a `BinaryDecoder(GATEWAY_MESSAGES)` and
returns small typed events in stream order. `feed_arrays(data)` is the same but
hands each run of execution reports of one kind as one structured array
(`ExecReports`), for high-rate users; `feed` expands those runs into
`ExecReport` tuples. `on_timer(now)` says when a HEARTBEAT is due and when the
gateway has been silent too long. No I/O, no asyncio, no clocks but the one given.

Invariants:
- `feed` never raises on content: a bad frame from the gateway is a
  `ProtocolViolation` event (closing=True when the stream cannot be resynced;
  the protocol is then CLOSED and the caller should drop the connection); a
  message the state does not expect (an execution report before LOGIN_ACK, a
  second LOGIN_ACK) is a `ProtocolViolation` too and changes nothing.
- Sending is checked against the state (`SENDABLE`): orders only once logged
  in, LOGIN once, nothing once closed; a wrong call raises `ProtocolStateError`
  (a programming error of the caller, never the peer's).
- State (`TRANSITIONS`: (state, received type) -> handler):

  | state     | LOGIN_ACK     | LOGIN_REJECT | LOGOUT   | HEARTBEAT, PROTOCOL_ERROR | EXEC_*     |
  |-----------|---------------|--------------|----------|---------------------------|------------|
  | CONNECTED | -> LOGGED_IN  | -> CLOSED    | -> CLOSED| event                     | violation  |
  | LOGGED_IN | violation     | violation    | -> CLOSED| event                     | event      |
  | CLOSING   | violation     | violation    | -> CLOSED| event                     | event      |
  | CLOSED    | dropped       | dropped      | dropped  | dropped                   | dropped    |

  CLOSING is "we sent LOGOUT": reports still in flight keep arriving until the
  gateway's LOGOUT.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from enum import IntEnum
from operator import itemgetter
from typing import NamedTuple

import numpy as np

from microex.core.records import OrdType, Reason, Tif
from microex.gateway.session import GatewayReason
from microex.protocol.binary import (
    DTYPES,
    GATEWAY_MESSAGES,
    NEW_ORDER,
    PROTOCOL_VERSION,
    BinaryDecoder,
    DecodeError,
    FrameEncoder,
    LoginFlag,
    MsgType,
    ProtocolReason,
    encode_message,
)

_HB_TIMEOUT_INTERVALS = 3  # the gateway is declared lost after this many silent heartbeat intervals
API_KEY_SIZE = 32

EXEC_TYPES = frozenset({MsgType.EXEC_ACCEPTED, MsgType.EXEC_REJECTED, MsgType.EXEC_FILL, MsgType.EXEC_CANCELLED,
                        MsgType.EXEC_MODIFIED})


def reason_name(code: int) -> str:
    """The name of a reason code from any stage (engine, risk, gateway), or its number."""
    for enum in (Reason, ProtocolReason, GatewayReason):
        try:
            return enum(code).name
        except ValueError:
            pass
    return str(code)


class ClientState(IntEnum):
    CONNECTED = 1
    LOGGED_IN = 2
    CLOSING = 3  # LOGOUT sent, waiting for the gateway's
    CLOSED = 4


class ProtocolStateError(RuntimeError):
    """A send the connection's state does not allow (e.g. an order before LOGIN_ACK)."""


# -- events ---------------------------------------------------------------------------------------


class LoginAccepted(NamedTuple):
    session: int
    heartbeat_ms: int
    account: int


class LoginRejected(NamedTuple):
    reason: int


class Logout(NamedTuple):
    reason: int  # 0: normal, else a ProtocolReason (e.g. HEARTBEAT_TIMEOUT, SHUTDOWN)


class Heartbeat(NamedTuple):
    pass


class ProtocolError(NamedTuple):
    """The gateway's PROTOCOL_ERROR about one of our frames (ref_seq is that frame's seq)."""

    reason: int
    ref_type: int
    ref_seq: int


class ProtocolViolation(NamedTuple):
    """Something wrong in what the gateway sent (a bad frame, or a message out of place)."""

    reason: int  # a ProtocolReason
    msg_type: int
    seq: int
    closing: bool  # the stream cannot be resynced: drop the connection


class ExecReport(NamedTuple):
    """One execution report. Fields a kind does not carry are 0 (e.g. qty_lots of EXEC_MODIFIED)."""

    kind: MsgType
    client_order_id: int
    ts_ns: int
    instrument: int
    side: int
    liquidity: int  # fills: binary.Liquidity (1 maker, 2 taker)
    reason: int  # rejected, cancelled
    price_ticks: int
    qty_lots: int
    leaves_lots: int


class ExecReports(NamedTuple):
    """A run of execution reports of one kind: `records` has dtype binary.DTYPES[kind]."""

    kind: MsgType
    records: np.ndarray


Event = LoginAccepted | LoginRejected | Logout | Heartbeat | ProtocolError | ProtocolViolation | ExecReport

_HEARTBEAT = Heartbeat()
_ZERO = (0,)
# per report kind: picks ExecReport's fields out of a record tuple + (0,) (a field the kind lacks: the 0)
_PICK = {t: itemgetter(*(DTYPES[t].names.index(f) if f in DTYPES[t].names else len(DTYPES[t].names)
                         for f in ExecReport._fields[1:])) for t in EXEC_TYPES}


def expand(run: ExecReports) -> list[ExecReport]:
    """A run of reports as ExecReport tuples (one tolist() of the records, then a tuple pick each)."""
    pick, head = _PICK[run.kind], (run.kind,)
    return [ExecReport._make(head + pick(t + _ZERO)) for t in run.records.tolist()]


# The per-order messages as struct packs: ~40x faster than a one-record numpy encode, which
# matters on the order->ack path; checked byte for byte against the codec at import (below).
_PACKERS = {
    MsgType.HEARTBEAT: struct.Struct("<HHI"),
    MsgType.NEW_ORDER: struct.Struct("<HHIQqqiBBBB"),  # cid, price, qty, instrument, side, type, tif, flags
    MsgType.CANCEL: struct.Struct("<HHIQ"),
    MsgType.MODIFY: struct.Struct("<HHIQqq"),  # cid, price, qty
}
for _t, _p in _PACKERS.items():
    _body = tuple(range(1, len(DTYPES[_t].names) - 2))
    assert _p.pack(DTYPES[_t].itemsize, _t, 7, *_body) == encode_message(
        _t, 7, **dict(zip(DTYPES[_t].names[3:], _body))), _t


# -- the protocol ---------------------------------------------------------------------------------

# What may be sent in each state.
SENDABLE: dict[ClientState, frozenset[MsgType]] = {
    ClientState.CONNECTED: frozenset({MsgType.LOGIN, MsgType.HEARTBEAT, MsgType.LOGOUT}),
    ClientState.LOGGED_IN: frozenset({MsgType.NEW_ORDER, MsgType.CANCEL, MsgType.MODIFY, MsgType.HEARTBEAT,
                                      MsgType.LOGOUT}),
    ClientState.CLOSING: frozenset(),
    ClientState.CLOSED: frozenset(),
}


class ClientProtocol:
    """One connection's client side (see the module docstring)."""

    def __init__(self, *, clock: Callable[[], int] = time.monotonic_ns) -> None:
        self.clock = clock
        self.state = ClientState.CONNECTED
        self.encoder = FrameEncoder()
        self.decoder = BinaryDecoder(GATEWAY_MESSAGES)
        self.session = 0
        self.account = 0
        self.heartbeat_ms = 0  # from LOGIN_ACK; 0 until then (no heartbeats before login)
        self.close_reason: int | None = None  # why the gateway ended it (LOGOUT/LOGIN_REJECT reason)
        self._login_sent = False
        now = clock()
        self.last_sent_ns = now
        self.last_recv_ns = now

    @property
    def next_seq(self) -> int:
        """The seq the next frame will carry (PROTOCOL_ERROR.ref_seq names frames by it)."""
        return self.encoder.next_seq & 0xFFFFFFFF

    # -- sending ----------------------------------------------------------------------------------

    def _check(self, msg_type: MsgType) -> None:
        if msg_type not in SENDABLE[self.state]:
            raise ProtocolStateError(f"cannot send {msg_type.name} in state {self.state.name}")

    def _sent(self, data: bytes) -> bytes:
        self.last_sent_ns = self.clock()
        return data

    def _pack(self, msg_type: MsgType, *body) -> bytes:
        self._check(msg_type)
        seq = self.encoder.next_seq  # the FrameEncoder keeps the count for every frame type
        try:
            data = _PACKERS[msg_type].pack(DTYPES[msg_type].itemsize, msg_type, seq & 0xFFFFFFFF, *body)
        except struct.error as e:  # nothing sent, no seq used
            raise ValueError(f"{msg_type.name}: a field is out of its range ({e})") from None
        self.encoder.next_seq = seq + 1
        return self._sent(data)

    def login(self, api_key: bytes, cancel_on_disconnect: bool = False) -> bytes:
        self._check(MsgType.LOGIN)
        if self._login_sent:
            raise ProtocolStateError("LOGIN was already sent on this connection")
        if len(api_key) > API_KEY_SIZE:
            raise ValueError(f"an API key is at most {API_KEY_SIZE} bytes")
        self._login_sent = True
        flags = LoginFlag.CANCEL_ON_DISCONNECT if cancel_on_disconnect else LoginFlag.NONE
        return self._sent(self.encoder.message(MsgType.LOGIN, api_key=api_key, flags=flags,
                                               version=PROTOCOL_VERSION))

    def new_order(self, client_order_id: int, instrument: int, side: int, price_ticks: int, qty_lots: int,
                  ord_type: int = OrdType.LIMIT, tif: int = Tif.GTC, flags: int = 0) -> bytes:
        return self._pack(MsgType.NEW_ORDER, client_order_id, price_ticks, qty_lots, instrument, side, ord_type, tif,
                          flags)

    def new_orders(self, records: np.ndarray) -> bytes:
        """A batch of orders in one go: `records` has the NEW_ORDER body fields (e.g. dtype binary.NEW_ORDER;
        header fields are ignored). One bytes object, for pipelining."""
        self._check(MsgType.NEW_ORDER)
        if not len(records):
            return b""
        return self._sent(self.encoder.records(MsgType.NEW_ORDER, records))

    def cancel(self, client_order_id: int) -> bytes:
        return self._pack(MsgType.CANCEL, client_order_id)

    def modify(self, client_order_id: int, price_ticks: int, qty_lots: int) -> bytes:
        return self._pack(MsgType.MODIFY, client_order_id, price_ticks, qty_lots)

    def heartbeat(self) -> bytes:
        return self._pack(MsgType.HEARTBEAT)

    def logout(self) -> bytes:
        self._check(MsgType.LOGOUT)
        self.state = ClientState.CLOSING
        return self._sent(self.encoder.message(MsgType.LOGOUT, reason=0))

    def connection_lost(self) -> None:
        """The transport is gone: nothing more is sent or decoded."""
        self.state = ClientState.CLOSED

    # -- time -------------------------------------------------------------------------------------

    def on_timer(self, now_ns: int | None = None) -> tuple[bytes, bool]:
        """(a HEARTBEAT to send if nothing was sent for heartbeat_ms, else b""; True if the gateway
        has been silent for 3 heartbeat intervals and the connection should be treated as lost)."""
        if self.state is not ClientState.LOGGED_IN or not self.heartbeat_ms:
            return b"", False
        now = self.clock() if now_ns is None else now_ns
        hb_ns = self.heartbeat_ms * 1_000_000
        if now - self.last_recv_ns >= _HB_TIMEOUT_INTERVALS * hb_ns:
            return b"", True
        if now - self.last_sent_ns >= hb_ns:
            data = self.encoder.message(MsgType.HEARTBEAT)
            self.last_sent_ns = now
            return data, False
        return b"", False

    # -- receiving --------------------------------------------------------------------------------

    def feed(self, data: bytes | bytearray | memoryview) -> list[Event]:
        """Bytes from the gateway -> events in stream order (execution reports one by one)."""
        out: list[Event] = []
        for item in self.feed_arrays(data):
            if type(item) is ExecReports:
                out.extend(expand(item))
            else:
                out.append(item)
        return out

    def feed_arrays(self, data: bytes | bytearray | memoryview) -> list[Event | ExecReports]:
        """As `feed`, but each run of execution reports of one kind comes as one `ExecReports` array."""
        if self.state is ClientState.CLOSED:
            return []
        if data:
            self.last_recv_ns = self.clock()
        out: list = []
        for item in self.decoder.feed(data):
            if self.state is ClientState.CLOSED:
                break
            if isinstance(item, DecodeError):
                out.append(ProtocolViolation(int(item.reason), item.msg_type, item.seq, item.closing))
                if item.closing:
                    self.state = ClientState.CLOSED
                    self.close_reason = int(item.reason)
            elif item.msg_type in EXEC_TYPES and self.state is not ClientState.CONNECTED:
                out.append(ExecReports(item.msg_type, item.records))  # a whole run, no state change
            else:
                for rec in item.records:
                    if self.state is ClientState.CLOSED:
                        break
                    handler = TRANSITIONS.get((self.state, item.msg_type), ClientProtocol._unexpected)
                    out.append(handler(self, item.msg_type, rec))
        return out

    # transition handlers: (self, msg_type, record) -> event

    def _login_ack(self, msg_type, rec) -> LoginAccepted:
        self.state = ClientState.LOGGED_IN
        self.session = int(rec["session"])
        self.heartbeat_ms = int(rec["heartbeat_ms"])
        self.account = int(rec["account"])
        return LoginAccepted(self.session, self.heartbeat_ms, self.account)

    def _login_reject(self, msg_type, rec) -> LoginRejected:
        self.state = ClientState.CLOSED
        self.close_reason = int(rec["reason"])
        return LoginRejected(self.close_reason)

    def _logout(self, msg_type, rec) -> Logout:
        self.state = ClientState.CLOSED
        self.close_reason = int(rec["reason"])
        return Logout(self.close_reason)

    def _heartbeat(self, msg_type, rec) -> Heartbeat:
        return _HEARTBEAT

    def _protocol_error(self, msg_type, rec) -> ProtocolError:
        return ProtocolError(int(rec["reason"]), int(rec["ref_type"]), int(rec["ref_seq"]))

    def _unexpected(self, msg_type, rec) -> ProtocolViolation:
        reason = ProtocolReason.NOT_LOGGED_IN if self.state is ClientState.CONNECTED \
            else ProtocolReason.ALREADY_LOGGED_IN
        return ProtocolViolation(int(reason), int(msg_type), int(rec["seq"]), False)


_OPEN_COMMON = {
    MsgType.LOGOUT: ClientProtocol._logout,
    MsgType.HEARTBEAT: ClientProtocol._heartbeat,
    MsgType.PROTOCOL_ERROR: ClientProtocol._protocol_error,
}

# (state, received message type) -> handler; anything else in an open state is _unexpected,
# execution-report runs in LOGGED_IN/CLOSING bypass the table (no state change, whole arrays).
TRANSITIONS: dict[tuple[ClientState, MsgType], Callable] = {
    (ClientState.CONNECTED, MsgType.LOGIN_ACK): ClientProtocol._login_ack,
    (ClientState.CONNECTED, MsgType.LOGIN_REJECT): ClientProtocol._login_reject,
    **{(ClientState.CONNECTED, t): h for t, h in _OPEN_COMMON.items()},
    **{(ClientState.LOGGED_IN, t): h for t, h in _OPEN_COMMON.items()},
    **{(ClientState.CLOSING, t): h for t, h in _OPEN_COMMON.items()},
}


# which reports answer which request (the first report for that client id of these kinds)
REQUEST_ANSWERS: dict[MsgType, frozenset[MsgType]] = {
    MsgType.NEW_ORDER: frozenset({MsgType.EXEC_ACCEPTED, MsgType.EXEC_REJECTED}),
    MsgType.CANCEL: frozenset({MsgType.EXEC_CANCELLED, MsgType.EXEC_REJECTED}),
    MsgType.MODIFY: frozenset({MsgType.EXEC_MODIFIED, MsgType.EXEC_REJECTED}),
}


def answered_request(requests: list[MsgType], r: ExecReport) -> int | None:
    """Which of one client id's unanswered requests (oldest first) report `r` answers; None: none.

    The gateway answers one session's requests in order, so it is the oldest,
    if `r` is of a kind that answers it (fills never answer anything), with two
    exceptions: a reject the gateway makes itself is written at once, ahead of
    the engine's answers to earlier requests. RATE_LIMITED goes to the oldest
    NEW if it carries a side (the gateway echoes a NEW's side and instrument,
    not a CANCEL's or MODIFY's), else to the oldest CANCEL/MODIFY;
    DUPLICATE_ORDER_ID answers the newest NEW (the first one with the id won).
    """
    if r.kind == MsgType.EXEC_REJECTED and len(requests) > 1:
        if r.reason == GatewayReason.RATE_LIMITED:
            want_new = r.side != 0
            for i, req in enumerate(requests):
                if (req == MsgType.NEW_ORDER) == want_new:
                    return i
        elif r.reason == Reason.DUPLICATE_ORDER_ID:
            for i in range(len(requests) - 1, -1, -1):
                if requests[i] == MsgType.NEW_ORDER:
                    return i
    return 0 if r.kind in REQUEST_ANSWERS[requests[0]] else None


def order_records(n: int) -> np.ndarray:
    """Zeroed NEW_ORDER records for `ClientProtocol.new_orders` / `Client.place_batch_nowait`."""
    return np.zeros(n, dtype=NEW_ORDER)
