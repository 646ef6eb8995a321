"""The binary protocol (the fast path), as a sans-I/O codec: bytes in, messages out.

Framing (docs/protocol.md has the byte table of every message):
- Every frame starts with an 8-byte header: `length` u16 (the whole frame,
  header included), `msg_type` u16, `seq` u32 (the sender's session sequence
  number: 1 for its first frame, +1 per frame, every message type included).
  All integers are little-endian.
- Every message type has one fixed size, a multiple of 8; its numpy dtype
  (`DTYPES[msg_type]`) covers the whole frame, header included, so a run of
  frames of one type is one `np.frombuffer` and a batch of records is one
  `.tobytes()`.

Decoding (`BinaryDecoder.feed`) never raises on content. It scans a whole
receive buffer at once (one compiled pass over the bytes finds the frames),
then returns, in stream order, one `Messages(msg_type, records)` per run of
consecutive valid frames of one type (a structured array, a copy) and one
`DecodeError` per bad frame. What is an error:
- a frame whose length is trusted (8 <= length <= MAX_FRAME_SIZE, a multiple
  of 8) but whose type is unknown/not accepted in this direction, whose length
  is not its type's size, or whose seq is not the previous frame's seq + 1:
  an error item with the frame's type and seq; the frame is skipped and the
  session goes on (the gateway answers with a ProtocolError);
- a length that cannot be trusted (< 8, not a multiple of 8, or above
  MAX_FRAME_SIZE): the stream cannot be resynced, so the error is `closing`,
  the decoder enters its closed state and never decodes anything again (the
  gateway sends Logout with that reason and closes the connection). The
  length is checked as soon as its two bytes arrive.
Field values are not validated here (a side code of 7 decodes as 7): that is
the engine's job, which rejects them with a reason like any other command.

Encoding: `encode_message` (one frame from keyword fields), `encode_records`
(a batch of records of one type, headers filled in vectorised) and
`encode_exec_reports` (a batch of core EVENT records for one session into
execution-report frames in one go), and `FrameEncoder`, which keeps a
session's outgoing sequence number.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import IntEnum
from typing import NamedTuple

import numpy as np
from numba import njit

from microex.core.records import EVENT, EventKind

PROTOCOL_VERSION = 1
HEADER_SIZE = 8
# Largest frame a peer may announce. Every message today is at most 56 bytes;
# the headroom lets a later version add messages without changing the rule.
MAX_FRAME_SIZE = 256
_SEQ_MASK = 0xFFFFFFFF


class MsgType(IntEnum):
    """The u16 `msg_type` of a frame. 0 is never valid."""

    NONE = 0
    # both directions
    HEARTBEAT = 1
    LOGOUT = 2
    # client -> gateway
    LOGIN = 3
    NEW_ORDER = 4
    CANCEL = 5
    MODIFY = 6
    # gateway -> client
    LOGIN_ACK = 16
    LOGIN_REJECT = 17
    PROTOCOL_ERROR = 18
    EXEC_ACCEPTED = 32
    EXEC_REJECTED = 33
    EXEC_FILL = 34
    EXEC_CANCELLED = 35
    EXEC_MODIFIED = 36


class ProtocolReason(IntEnum):
    """Gateway reason codes: the 60-79 range of core.records.Reason (reserved for the gateway).

    They travel in the same u16 `reason` fields as the engine's codes.
    """

    UNKNOWN_MESSAGE_TYPE = 60  # frame skipped, session goes on
    BAD_LENGTH = 61  # length is not the type's size: frame skipped, session goes on
    BAD_SEQUENCE = 62  # seq is not previous + 1: frame skipped, session goes on
    FRAME_TOO_LARGE = 63  # length > MAX_FRAME_SIZE: closes the session
    BAD_FRAMING = 64  # length < 8 or not a multiple of 8: closes the session
    NOT_LOGGED_IN = 65  # (session layer) anything but Login/Heartbeat/Logout before LoginAck
    ALREADY_LOGGED_IN = 66  # (session layer) a second Login
    AUTH_FAILED = 67  # (session layer) unknown or disabled API key
    UNSUPPORTED_VERSION = 68  # (session layer) Login.version != PROTOCOL_VERSION
    HEARTBEAT_TIMEOUT = 69  # (session layer) peer silent too long: closes the session
    SLOW_CONSUMER = 70  # (session layer) client does not read its reports: closes the session
    SHUTDOWN = 71  # (session layer) the gateway is stopping


CLOSING_REASONS = frozenset({ProtocolReason.FRAME_TOO_LARGE, ProtocolReason.BAD_FRAMING})


class LoginFlag(IntEnum):
    NONE = 0
    CANCEL_ON_DISCONNECT = 1


class Liquidity(IntEnum):
    NONE = 0
    MAKER = 1
    TAKER = 2


# -- dtypes: one per message, covering the whole frame ------------------------------------------

_HEADER = [("length", "<u2", 0), ("msg_type", "<u2", 2), ("seq", "<u4", 4)]


def _dtype(fields: list[tuple[str, str, int]], itemsize: int) -> np.dtype:
    fields = _HEADER + fields
    return np.dtype(
        {
            "names": [f[0] for f in fields],
            "formats": [f[1] for f in fields],
            "offsets": [f[2] for f in fields],
            "itemsize": itemsize,
        }
    )


HEARTBEAT = _dtype([], 8)
LOGOUT = _dtype([("reason", "<u2", 8)], 16)
LOGIN = _dtype([("api_key", "S32", 8), ("flags", "u1", 40), ("version", "u1", 41)], 48)
NEW_ORDER = _dtype(
    [
        ("client_order_id", "<u8", 8),
        ("price_ticks", "<i8", 16),
        ("qty_lots", "<i8", 24),
        ("instrument", "<i4", 32),
        ("side", "u1", 36),
        ("ord_type", "u1", 37),
        ("tif", "u1", 38),
        ("flags", "u1", 39),
    ],
    40,
)
CANCEL = _dtype([("client_order_id", "<u8", 8)], 16)
MODIFY = _dtype([("client_order_id", "<u8", 8), ("price_ticks", "<i8", 16), ("qty_lots", "<i8", 24)], 32)

LOGIN_ACK = _dtype([("session", "<i4", 8), ("heartbeat_ms", "<u4", 12), ("account", "<i8", 16)], 24)
LOGIN_REJECT = _dtype([("reason", "<u2", 8)], 16)
PROTOCOL_ERROR = _dtype([("reason", "<u2", 8), ("ref_type", "<u2", 10), ("ref_seq", "<u4", 12)], 16)

# Execution reports: every kind's layout is a prefix of this one (same offsets),
# so a batch is built once in this superset and each frame cut to its kind's size.
_EXEC_FIELDS = [
    ("client_order_id", "<u8", 8),
    ("ts_ns", "<i8", 16),
    ("instrument", "<i4", 24),
    ("side", "u1", 28),
    ("liquidity", "u1", 29),  # fills only (Liquidity); 0 otherwise
    ("reason", "<u2", 30),  # rejected, cancelled; 0 otherwise
    ("price_ticks", "<i8", 32),
    ("qty_lots", "<i8", 40),
    ("leaves_lots", "<i8", 48),
]
EXEC_REPORT = _dtype(_EXEC_FIELDS, 56)


def _exec_dtype(names: tuple[str, ...], itemsize: int) -> np.dtype:
    return _dtype([f for f in _EXEC_FIELDS if f[0] in names], itemsize)


EXEC_ACCEPTED = _exec_dtype(("client_order_id", "ts_ns", "instrument", "side", "price_ticks", "qty_lots",
                             "leaves_lots"), 56)
EXEC_REJECTED = _exec_dtype(("client_order_id", "ts_ns", "instrument", "side", "reason"), 32)
EXEC_FILL = _exec_dtype(("client_order_id", "ts_ns", "instrument", "side", "liquidity", "price_ticks", "qty_lots",
                         "leaves_lots"), 56)
EXEC_CANCELLED = _exec_dtype(("client_order_id", "ts_ns", "instrument", "side", "reason", "price_ticks",
                              "qty_lots"), 48)
EXEC_MODIFIED = _exec_dtype(("client_order_id", "ts_ns", "instrument", "side", "price_ticks", "leaves_lots"), 56)

DTYPES: dict[MsgType, np.dtype] = {
    MsgType.HEARTBEAT: HEARTBEAT,
    MsgType.LOGOUT: LOGOUT,
    MsgType.LOGIN: LOGIN,
    MsgType.NEW_ORDER: NEW_ORDER,
    MsgType.CANCEL: CANCEL,
    MsgType.MODIFY: MODIFY,
    MsgType.LOGIN_ACK: LOGIN_ACK,
    MsgType.LOGIN_REJECT: LOGIN_REJECT,
    MsgType.PROTOCOL_ERROR: PROTOCOL_ERROR,
    MsgType.EXEC_ACCEPTED: EXEC_ACCEPTED,
    MsgType.EXEC_REJECTED: EXEC_REJECTED,
    MsgType.EXEC_FILL: EXEC_FILL,
    MsgType.EXEC_CANCELLED: EXEC_CANCELLED,
    MsgType.EXEC_MODIFIED: EXEC_MODIFIED,
}

CLIENT_MESSAGES = frozenset({MsgType.HEARTBEAT, MsgType.LOGOUT, MsgType.LOGIN, MsgType.NEW_ORDER, MsgType.CANCEL,
                             MsgType.MODIFY})  # what a gateway accepts
GATEWAY_MESSAGES = frozenset({MsgType.HEARTBEAT, MsgType.LOGOUT, MsgType.LOGIN_ACK, MsgType.LOGIN_REJECT,
                              MsgType.PROTOCOL_ERROR, MsgType.EXEC_ACCEPTED, MsgType.EXEC_REJECTED,
                              MsgType.EXEC_FILL, MsgType.EXEC_CANCELLED, MsgType.EXEC_MODIFIED})  # what a client accepts

for _t, _dt in DTYPES.items():
    assert _dt.itemsize % 8 == 0 and HEADER_SIZE <= _dt.itemsize <= MAX_FRAME_SIZE, _t
_TABLE_SIZE = 64  # msg_type codes at or above it are unknown
assert max(DTYPES) < _TABLE_SIZE
_BY_CODE = {int(t): (t, dt) for t, dt in DTYPES.items()}


# -- decoding ------------------------------------------------------------------------------------


class Messages(NamedTuple):
    """A run of consecutive valid frames of one type: `records` has dtype DTYPES[msg_type]."""

    msg_type: MsgType
    records: np.ndarray


class DecodeError(NamedTuple):
    """A bad frame. `msg_type` and `seq` are the frame's header fields (0 when `closing`)."""

    reason: ProtocolReason
    msg_type: int
    seq: int
    closing: bool


@njit(cache=True)
def _scan(buf, pos, sizes, max_frame, expected, check_seq, offs, types, status, seqs, runs):
    """Find the frames of buf[pos:]; fill offs/types/status/seqs for each complete frame.

    Returns (frames, runs, position after the last complete frame, closing reason
    or 0, next expected seq). status is 0 for a good frame, else its ProtocolReason.
    runs[j] is the first frame of the j-th run: consecutive good frames of one
    type, or a single bad frame.
    """
    n = buf.shape[0]
    k = 0
    nruns = 0
    while n - pos >= 2:
        length = np.int64(buf[pos]) | (np.int64(buf[pos + 1]) << 8)
        if length > max_frame:
            return k, nruns, pos, 63, expected  # FRAME_TOO_LARGE
        if length < 8 or (length & 7) != 0:
            return k, nruns, pos, 64, expected  # BAD_FRAMING
        if n - pos < length:
            break
        mtype = np.int64(buf[pos + 2]) | (np.int64(buf[pos + 3]) << 8)
        seq = (np.int64(buf[pos + 4]) | (np.int64(buf[pos + 5]) << 8) | (np.int64(buf[pos + 6]) << 16)
               | (np.int64(buf[pos + 7]) << 24))
        size = sizes[mtype] if mtype < sizes.shape[0] else 0
        st = 0
        if size == 0:
            st = 60  # UNKNOWN_MESSAGE_TYPE
        elif size != length:
            st = 61  # BAD_LENGTH
        elif check_seq and seq != expected:
            st = 62  # BAD_SEQUENCE
        expected = (seq + 1) & 0xFFFFFFFF
        if k == 0 or st != 0 or status[k - 1] != 0 or types[k - 1] != mtype:
            runs[nruns] = k
            nruns += 1
        offs[k] = pos
        types[k] = mtype
        status[k] = st
        seqs[k] = seq
        k += 1
        pos += length
    return k, nruns, pos, 0, expected


class BinaryDecoder:
    """Frames in (any split across feeds), message runs and errors out, in stream order.

    `accept`: the message types valid in this direction (CLIENT_MESSAGES on a
    gateway, GATEWAY_MESSAGES on a client); any other type is UNKNOWN_MESSAGE_TYPE.
    `check_sequence`: the peer's seq must count 1, 2, 3... (a bad one is reported,
    its frame skipped, and counting goes on from it).
    """

    TYPES = _BY_CODE  # msg_type code -> (its enum member, its dtype): a subclass gives its protocol's
    INITIAL_FRAMES = 64  # scan outputs allocated up front (they grow with the largest receive buffer)

    def __init__(self, accept: Iterable[MsgType] = CLIENT_MESSAGES, *, check_sequence: bool = True,
                 first_seq: int = 1, max_frame: int = MAX_FRAME_SIZE) -> None:
        self.sizes = np.zeros(_TABLE_SIZE, dtype=np.int64)
        for t in accept:
            self.sizes[int(t)] = self.TYPES[int(t)][1].itemsize
        self.check_sequence = check_sequence
        self.expected_seq = first_seq & _SEQ_MASK
        self.max_frame = max_frame
        self.closed = False
        self.close_reason: ProtocolReason | None = None
        self._pending = b""
        self._alloc(self.INITIAL_FRAMES)

    def _alloc(self, frames: int) -> None:
        """Scan outputs, kept between feeds (a receive buffer of n bytes has at most n/8 frames)."""
        self._offs, self._types, self._status, self._seqs, self._runs = (
            np.empty(frames, dtype=np.int64) for _ in range(5))

    def reset(self) -> None:
        """Forget a partial frame and a closed state: the next feed starts a new stream (a datagram
        is one whole stream of its own)."""
        self._pending = b""
        self.closed, self.close_reason = False, None

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete frame held for the next feed (never more than max_frame)."""
        return len(self._pending)

    def feed(self, data: bytes | bytearray | memoryview) -> list[Messages | DecodeError]:
        """Decode everything complete in `data` (plus what earlier feeds left); never raises on content."""
        if self.closed:
            return []
        buf = self._pending + bytes(data) if self._pending else bytes(data)
        if not buf:
            return []
        arr = np.frombuffer(buf, dtype=np.uint8)
        cap = len(buf) // HEADER_SIZE + 1
        if cap > len(self._offs):
            self._alloc(max(cap, 2 * len(self._offs)))
        offs, types, status, seqs, runs = self._offs, self._types, self._status, self._seqs, self._runs
        k, nruns, pos, close, self.expected_seq = _scan(arr, 0, self.sizes, self.max_frame, self.expected_seq,
                                                        self.check_sequence, offs, types, status, seqs, runs)
        items: list[Messages | DecodeError] = []
        for j in range(nruns):
            a = int(runs[j])
            b = int(runs[j + 1]) if j + 1 < nruns else k
            st = int(status[a])
            if st:
                items.append(DecodeError(ProtocolReason(st), int(types[a]), int(seqs[a]), False))
            else:
                mt, dt = self.TYPES[int(types[a])]
                off = int(offs[a])
                # a raw byte copy (a structured copy would leave the padding bytes uninitialised)
                items.append(Messages(mt, arr[off : off + (b - a) * dt.itemsize].copy().view(dt)))
        if close:
            self.closed = True
            self.close_reason = ProtocolReason(close)
            self._pending = b""
            items.append(DecodeError(self.close_reason, 0, 0, True))
        else:
            self._pending = buf[pos:]
        return items


# -- encoding ------------------------------------------------------------------------------------


def encode_message(msg_type: MsgType, seq: int, **fields) -> bytes:
    """One frame of `msg_type` with its header and the given body fields (others zero)."""
    return encode_frame(DTYPES[msg_type], msg_type, seq, fields)


def encode_frame(dtype: np.dtype, msg_type: int, seq: int, fields: dict) -> bytes:
    """One frame of a message whose record is `dtype` (this protocol's or the market-data feed's)."""
    rec = np.zeros(1, dtype=dtype)
    rec["length"] = rec.dtype.itemsize
    rec["msg_type"] = msg_type
    rec["seq"] = seq & _SEQ_MASK
    for name, value in fields.items():
        rec[name] = value
    return rec.tobytes()


def encode_records(msg_type: MsgType, records: np.ndarray, first_seq: int) -> bytes:
    """A batch of records of `msg_type` (body fields set) as frames; seq counts from first_seq.

    The header fields of `records` are ignored (overwritten in a copy).
    """
    dt = DTYPES[msg_type]
    out = np.zeros(len(records), dtype=dt)
    for name in dt.names[3:]:
        out[name] = records[name]
    out["length"] = dt.itemsize
    out["msg_type"] = msg_type
    out["seq"] = (first_seq + np.arange(len(records), dtype=np.int64)) & _SEQ_MASK
    return out.tobytes()


_KIND_TO_TYPE = np.zeros(256, dtype=np.uint16)
_KIND_TO_TYPE[EventKind.ACCEPTED] = MsgType.EXEC_ACCEPTED
_KIND_TO_TYPE[EventKind.REJECTED] = MsgType.EXEC_REJECTED
_KIND_TO_TYPE[EventKind.TRADE] = MsgType.EXEC_FILL
_KIND_TO_TYPE[EventKind.CANCELLED] = MsgType.EXEC_CANCELLED
_KIND_TO_TYPE[EventKind.MODIFIED] = MsgType.EXEC_MODIFIED
_TYPE_TO_SIZE = np.zeros(_TABLE_SIZE, dtype=np.int64)
for _t, _dt in DTYPES.items():
    _TYPE_TO_SIZE[_t] = _dt.itemsize
_OTHER_SIDE = np.array([0, 2, 1] + [0] * 253, dtype=np.uint8)


def encode_exec_reports(events: np.ndarray, client_order_ids: np.ndarray, first_seq: int,
                        is_maker: np.ndarray | None = None) -> tuple[bytes, int]:
    """Execution reports for one session from a batch of core EVENT records, in one go.

    `events`: EVENT records already selected for this session, in engine order.
    `client_order_ids`: u64 array aligned with `events`, the client's own id of
    the order each event is about (for a trade: of this session's side of it).
    `is_maker`: bool array aligned with `events`; True where a trade event is
    reported to its maker (order id, leaves and side of the maker; liquidity
    MAKER), False (or None: all False) to its aggressor (liquidity TAKER). A
    trade between two orders of one session is passed twice, once each way.
    Events that are not for clients (LEVEL, BATCH, NONE) are skipped.
    Returns (frames, number of frames); the next seq is first_seq + that number.
    """
    events = np.asarray(events)
    assert events.dtype == EVENT, "events must be core EVENT records"
    cids = np.asarray(client_order_ids, dtype=np.uint64)
    if len(cids) != len(events):
        raise ValueError("client_order_ids must be aligned with events")
    mtypes_all = _KIND_TO_TYPE[events["kind"]]
    keep = mtypes_all != 0
    ev = events[keep]
    mtypes = mtypes_all[keep]
    n = len(ev)
    if n == 0:
        return b"", 0
    maker = np.zeros(n, dtype=bool) if is_maker is None else np.asarray(is_maker, dtype=bool)[keep]
    fill = mtypes == MsgType.EXEC_FILL
    maker &= fill

    rec = np.zeros(n, dtype=EXEC_REPORT)
    sizes = _TYPE_TO_SIZE[mtypes]
    rec["length"] = sizes
    rec["msg_type"] = mtypes
    rec["seq"] = (first_seq + np.arange(n, dtype=np.int64)) & _SEQ_MASK
    rec["client_order_id"] = cids[keep]
    rec["ts_ns"] = ev["ts_ns"]
    rec["instrument"] = ev["instrument"]
    rec["side"] = np.where(maker, _OTHER_SIDE[ev["side"]], ev["side"])
    rec["liquidity"] = np.where(fill, np.where(maker, Liquidity.MAKER, Liquidity.TAKER), 0)
    has_reason = (mtypes == MsgType.EXEC_REJECTED) | (mtypes == MsgType.EXEC_CANCELLED)
    rec["reason"] = np.where(has_reason, ev["reason"], 0)
    rec["price_ticks"] = np.where(mtypes == MsgType.EXEC_REJECTED, 0, ev["price_ticks"])
    rec["qty_lots"] = np.where((mtypes == MsgType.EXEC_REJECTED) | (mtypes == MsgType.EXEC_MODIFIED), 0,
                               ev["qty_lots"])
    rec["leaves_lots"] = np.where(maker, ev["maker_leaves_lots"], ev["leaves_lots"])

    # cut each frame to its kind's size: one boolean gather over 8-byte words, row by row
    words = rec.view(np.uint64).reshape(n, EXEC_REPORT.itemsize // 8)
    keep_words = np.arange(EXEC_REPORT.itemsize // 8) < (sizes // 8)[:, None]
    return words[keep_words].tobytes(), n


class FrameEncoder:
    """A session's outgoing side: builds frames and keeps the sequence number (first frame: 1)."""

    def __init__(self, first_seq: int = 1) -> None:
        self.next_seq = first_seq

    def message(self, msg_type: MsgType, **fields) -> bytes:
        data = encode_message(msg_type, self.next_seq, **fields)
        self.next_seq += 1
        return data

    def records(self, msg_type: MsgType, records: np.ndarray) -> bytes:
        data = encode_records(msg_type, records, self.next_seq)
        self.next_seq += len(records)
        return data

    def exec_reports(self, events: np.ndarray, client_order_ids: np.ndarray,
                     is_maker: np.ndarray | None = None) -> bytes:
        data, count = encode_exec_reports(events, client_order_ids, self.next_seq, is_maker)
        self.next_seq += count
        return data
