"""The binary market-data feed, as a sans-I/O codec: bytes in, message runs out; records in, bytes out.

Framing is the order-entry protocol's (docs/protocol.md, docs/marketdata.md has the
byte tables): an 8-byte header (length u16, msg_type u16, seq u32), fixed-size
little-endian frames, every size a multiple of 8, at most MAX_FRAME_SIZE (256).
- Client -> server (HEARTBEAT, SUBSCRIBE, UNSUBSCRIBE, SNAPSHOT_REQUEST): seq is the
  client's frame number (1, 2, 3...), checked by the server (BAD_SEQUENCE).
- Server -> client: the data frames are the market-data records of
  core/records.py themselves (MD_UPDATE, MD_BOOK, MD_BBO, MD_CANDLE, MD_TICKER):
  seq is the low 32 bits of the record's md_seq, identical for every subscriber
  so one encoded buffer serves them all; ordering and gaps are checked per
  instrument with md_seq in the body (the client decoder does not check seq).
  STATUS and RESYNC carry the md_seq they refer to, ERROR and HEARTBEAT seq 0.
Decoding (`MdDecoder.feed`) reuses the order-entry codec's compiled frame scan: a
whole receive buffer at once, one `Messages(msg_type, records)` per run of valid
frames of one type (a copy) and one `DecodeError` per bad frame, in stream order;
never raises on content. Errors and what they do are binary.py's: unknown type,
bad length and bad seq skip the frame; a length that cannot be trusted (< 8, not a
multiple of 8, > 256) closes the decoder (`closing`).
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import IntEnum, IntFlag

import numpy as np

from microex.core.records import MD_BBO, MD_BOOK, MD_CANDLE, MD_TICKER, MD_UPDATE, MdMsg, MdReason
from microex.protocol.binary import HEADER_SIZE, MAX_FRAME_SIZE, BinaryDecoder, DecodeError, Messages, encode_frame

__all__ = ["MdMsg", "MdReason", "SubFlag", "MdStatus", "DTYPES", "CLIENT_MESSAGES", "SERVER_MESSAGES", "Messages",
           "DecodeError", "MdDecoder", "encode", "MdFrameEncoder", "status", "error", "resync", "HEARTBEAT_FRAME"]

_HEADER = [("length", "<u2", 0), ("msg_type", "<u2", 2), ("seq", "<u4", 4)]


class SubFlag(IntFlag):
    """SUBSCRIBE flags: what a subscription delivers (0 means DEFAULT)."""

    NONE = 0
    BOOK = 1  # a full snapshot now, then every INCREMENT (levels, and trades: md_seq counts both)
    TRADES = 2  # INCREMENT kind TRADE
    BBO = 4  # MD_BBO after each batch that changed L1
    CANDLES = 8  # MD_CANDLE: closed ones, and the running ones every second
    TICKER = 16  # MD_TICKER every second
    PERIODIC_BOOK = 32  # a FULL snapshot (top `depth` levels) every second
    RECOVERY = 64  # no stream: snapshots on request only (a multicast receiver's recovery line)
    DEFAULT = BOOK | TRADES | BBO | CANDLES | TICKER
    ALL = DEFAULT | PERIODIC_BOOK | RECOVERY


class MdStatus(IntEnum):
    """STATUS codes."""

    NONE = 0
    SUBSCRIBED = 1  # md_seq: the instrument's seq now (a snapshot follows with BOOK)
    UNSUBSCRIBED = 2
    CONFLATED = 3  # reason CONFLATED: trades and candles are dropped until LIVE
    LIVE = 4  # conflation is over (its last bundle has been sent)
    END = 5  # a replay ended (reason REPLAY_END)


def _dtype(fields: list[tuple[str, str, int]], itemsize: int) -> np.dtype:
    fields = _HEADER + fields
    return np.dtype({"names": [f[0] for f in fields], "formats": [f[1] for f in fields],
                     "offsets": [f[2] for f in fields], "itemsize": itemsize})


HEARTBEAT = _dtype([], 8)
SUBSCRIBE = _dtype([("instrument", "<i4", 8), ("depth", "<u2", 12), ("flags", "<u2", 14)], 16)
UNSUBSCRIBE = _dtype([("instrument", "<i4", 8)], 16)
SNAPSHOT_REQUEST = _dtype([("instrument", "<i4", 8), ("depth", "<u2", 12)], 16)
STATUS = _dtype([("md_seq", "<i8", 8), ("instrument", "<i4", 16), ("status", "u1", 20), ("reason", "<u2", 22)], 24)
ERROR = _dtype([("reason", "<u2", 8), ("ref_type", "<u2", 10), ("ref_seq", "<u4", 12)], 16)
RESYNC = _dtype([("md_seq", "<i8", 8), ("instrument", "<i4", 16), ("reason", "<u2", 20)], 24)

DTYPES: dict[MdMsg, np.dtype] = {
    MdMsg.HEARTBEAT: HEARTBEAT,
    MdMsg.SUBSCRIBE: SUBSCRIBE,
    MdMsg.UNSUBSCRIBE: UNSUBSCRIBE,
    MdMsg.SNAPSHOT_REQUEST: SNAPSHOT_REQUEST,
    MdMsg.STATUS: STATUS,
    MdMsg.ERROR: ERROR,
    MdMsg.RESYNC: RESYNC,
    MdMsg.SNAPSHOT_BEGIN: MD_BOOK,
    MdMsg.SNAPSHOT_LEVEL: MD_UPDATE,
    MdMsg.SNAPSHOT_END: MD_BOOK,
    MdMsg.INCREMENT: MD_UPDATE,
    MdMsg.BBO: MD_BBO,
    MdMsg.CANDLE: MD_CANDLE,
    MdMsg.TICKER: MD_TICKER,
}
CLIENT_MESSAGES = frozenset({MdMsg.HEARTBEAT, MdMsg.SUBSCRIBE, MdMsg.UNSUBSCRIBE, MdMsg.SNAPSHOT_REQUEST})
SERVER_MESSAGES = frozenset(DTYPES) - {MdMsg.SUBSCRIBE, MdMsg.UNSUBSCRIBE, MdMsg.SNAPSHOT_REQUEST}

_TABLE_SIZE = 64
for _t, _dt in DTYPES.items():
    assert _dt.itemsize % 8 == 0 and HEADER_SIZE <= _dt.itemsize <= MAX_FRAME_SIZE and _t < _TABLE_SIZE, _t
_BY_CODE = {int(t): (t, dt) for t, dt in DTYPES.items()}


class MdDecoder(BinaryDecoder):
    """Frames in (any split across feeds), runs and errors out: the order-entry decoder over this
    feed's message types. `accept`: CLIENT_MESSAGES on the server (seq checked), SERVER_MESSAGES
    on a client (seq not checked: see the module doc)."""

    TYPES = _BY_CODE
    INITIAL_FRAMES = 8  # small: a feed server holds one decoder per subscriber (10,000+ idle ones)

    def __init__(self, accept: Iterable[MdMsg] = CLIENT_MESSAGES, *, check_sequence: bool | None = None) -> None:
        accept = frozenset(accept)
        super().__init__(accept, check_sequence=(accept <= CLIENT_MESSAGES) if check_sequence is None
                         else check_sequence)


def encode(msg_type: MdMsg, seq: int = 0, **fields) -> bytes:
    """One frame of `msg_type` with the given body fields (others zero)."""
    return encode_frame(DTYPES[msg_type], msg_type, seq, fields)


class MdFrameEncoder:
    """A client's outgoing side: numbers its frames 1, 2, 3..."""

    def __init__(self) -> None:
        self.next_seq = 1

    def _frame(self, msg_type: MdMsg, **fields) -> bytes:
        data = encode(msg_type, self.next_seq, **fields)
        self.next_seq += 1
        return data

    def subscribe(self, instrument: int, depth: int = 0, flags: int = SubFlag.DEFAULT) -> bytes:
        return self._frame(MdMsg.SUBSCRIBE, instrument=instrument, depth=depth, flags=int(flags))

    def unsubscribe(self, instrument: int) -> bytes:
        return self._frame(MdMsg.UNSUBSCRIBE, instrument=instrument)

    def snapshot_request(self, instrument: int, depth: int = 0) -> bytes:
        return self._frame(MdMsg.SNAPSHOT_REQUEST, instrument=instrument, depth=depth)

    def heartbeat(self) -> bytes:
        return self._frame(MdMsg.HEARTBEAT)


def status(instrument: int, code: int, md_seq: int = 0, reason: int = 0) -> bytes:
    return encode(MdMsg.STATUS, md_seq, md_seq=md_seq, instrument=instrument, status=code, reason=reason)


def error(reason: int, ref_type: int = 0, ref_seq: int = 0) -> bytes:
    return encode(MdMsg.ERROR, 0, reason=reason, ref_type=ref_type, ref_seq=ref_seq)


def resync(instrument: int, md_seq: int, reason: int = MdReason.RESYNC) -> bytes:
    return encode(MdMsg.RESYNC, md_seq, md_seq=md_seq, instrument=instrument, reason=reason)


HEARTBEAT_FRAME = encode(MdMsg.HEARTBEAT, 0)
