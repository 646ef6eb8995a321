"""order_frames: one compiled pass over a logged-in session's receive buffer (the gateway's fast path).

How it works: from `pos`, while the next frame is whole, in sequence and a NEW_ORDER,
CANCEL, MODIFY or HEARTBEAT of its type's exact size, it does what the session layer's
transitions do for a run of that type (session.py `_new_orders`, `_cancels`,
`_modifies`, `_nothing`), frame by frame in stream order: a token of the rate limit per
order message (none left: reject RATE_LIMITED), a new client id -> the next engine id
and a NEW command (a reused one: reject DUPLICATE_ORDER_ID), a known client id -> a
CANCEL / MODIFY command (unknown: reject UNKNOWN_ORDER). At the first frame that is
anything else (another type, a bad length or seq, an incomplete frame) it stops and
returns where: the decoder and the transition table take the rest, so every error
and every other message keeps exactly one implementation. A read that mixes NEWs and
CANCELs costs one call instead of a decoded run, a kernel call and an array per run.
Invariants: frames are consumed in order and only whole; the commands and rejects
come out in stream order; `cmds` must be zeroed (padding bytes reach the journal).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from microex.core.records import Action, Reason
from microex.gateway import client_ids
from microex.gateway.orders import command_head, take_order_id
from microex.protocol.binary import CANCEL, HEARTBEAT, MODIFY, NEW_ORDER, MsgType

_NEW_T, _CANCEL_T, _MODIFY_T, _HB_T = (int(MsgType.NEW_ORDER), int(MsgType.CANCEL), int(MsgType.MODIFY),
                                      int(MsgType.HEARTBEAT))
_NEW_SIZE, _CANCEL_SIZE, _MODIFY_SIZE, _HB_SIZE = (NEW_ORDER.itemsize, CANCEL.itemsize, MODIFY.itemsize,
                                                   HEARTBEAT.itemsize)
_A_NEW, _A_CANCEL, _A_MODIFY = int(Action.NEW), int(Action.CANCEL), int(Action.MODIFY)
_UNKNOWN_ORDER, _DUPLICATE = int(Reason.UNKNOWN_ORDER), int(Reason.DUPLICATE_ORDER_ID)
MIN_ORDER_FRAME = _CANCEL_SIZE  # the smallest order message: bounds the commands a buffer can hold
assert NEW_ORDER.fields["client_order_id"][1] == CANCEL.fields["client_order_id"][1] == 8
assert (NEW_ORDER.fields["price_ticks"][1], NEW_ORDER.fields["qty_lots"][1], NEW_ORDER.fields["instrument"][1],
        NEW_ORDER.fields["side"][1]) == (16, 24, 32, 36)
assert (MODIFY.fields["price_ticks"][1], MODIFY.fields["qty_lots"][1]) == (16, 24)


@njit(cache=True, inline="always")
def _int(buf, pos, nbytes):
    """A little-endian unsigned integer of nbytes at buf[pos] (as int64: ids above 2^63 wrap, as numpy's do)."""
    v = np.uint64(0)
    for b in range(nbytes):
        v |= np.uint64(buf[pos + b]) << np.uint64(8 * b)
    return np.int64(v)


@njit(cache=True)
def order_frames(buf, pos, expected, tokens, cids, session_id, sidx, account, now, eid0, base, owner_sidx,
                 owner_cid, status, cmds, rej_cid, rej_reason, rej_inst, rej_side, rate_reason):
    """Returns (position reached, next expected seq, commands, rejects, tokens used, next engine id)."""
    n = buf.shape[0]
    m = 0
    r = 0
    used = 0
    eid = eid0
    while n - pos >= 8:
        length = _int(buf, pos, 2)
        mtype = _int(buf, pos + 2, 2)
        if not ((mtype == _NEW_T and length == _NEW_SIZE) or (mtype == _CANCEL_T and length == _CANCEL_SIZE)
                or (mtype == _MODIFY_T and length == _MODIFY_SIZE) or (mtype == _HB_T and length == _HB_SIZE)):
            break
        if n - pos < length or _int(buf, pos + 4, 4) != expected:
            break
        expected = (expected + 1) & 0xFFFFFFFF
        if mtype != _HB_T:
            cid = np.uint64(_int(buf, pos + 8, 8))
            limited = used >= tokens
            if not limited:
                used += 1
            if mtype == _NEW_T:
                inst = np.int32(_int(buf, pos + 32, 4))
                side = buf[pos + 36]
                if limited or client_ids.get(cids, sidx, np.int64(cid)) != 0:
                    rej_cid[r] = cid
                    rej_reason[r] = rate_reason if limited else _DUPLICATE
                    rej_inst[r] = inst
                    rej_side[r] = side
                    r += 1
                else:
                    take_order_id(cids, cid, eid, base, sidx, owner_sidx, owner_cid, status)
                    c = cmds[m]
                    command_head(c, now, eid, account, session_id, _A_NEW)
                    c.price_ticks = _int(buf, pos + 16, 8)
                    c.qty_lots = _int(buf, pos + 24, 8)
                    c.instrument = inst
                    c.side = side
                    c.ord_type = buf[pos + 37]
                    c.tif = buf[pos + 38]
                    c.flags = buf[pos + 39]
                    m += 1
                    eid += 1
            else:
                known = client_ids.get(cids, sidx, np.int64(cid)) if not limited else 0
                if known == 0:
                    rej_cid[r] = cid
                    rej_reason[r] = rate_reason if limited else _UNKNOWN_ORDER
                    rej_inst[r] = 0
                    rej_side[r] = 0
                    r += 1
                else:
                    c = cmds[m]
                    command_head(c, now, known, account, session_id, _A_CANCEL if mtype == _CANCEL_T else _A_MODIFY)
                    if mtype == _MODIFY_T:
                        c.price_ticks = _int(buf, pos + 16, 8)
                        c.qty_lots = _int(buf, pos + 24, 8)
                    m += 1
        pos += length
    return pos, expected, m, r, used, eid
