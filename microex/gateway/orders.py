"""The gateway's order book-keeping and its two compiled hot paths.

How it works
- `OrderIdMap`: the engine order ids this gateway gives are base, base+1, ...;
  id `base + slot` is described by three arrays at `slot`: the owning session's
  index (session id - first session id), the client's own order id, and the
  order's liveness as the gateway sees it (DONE, PENDING: sent but not yet
  acknowledged, LIVE: may rest). Per session: a typed dict client id -> engine
  id (numba's, so kernels read it) and the outgoing frame seq (`next_seq`, an
  array shared with the session's encoder).
- `new_order_commands` turns a run of one session's NEW_ORDER frames into
  COMMAND records, in order: the first `allowed` (the rate limit's tokens) whose
  client id is new get the next engine ids; the others become (index, reason) rejects.
- `route_reports` turns engine EVENT records into execution-report frames: for
  every client event whose order id is ours, a report to the owning session
  (for a trade also one to the maker's session, with the maker's id, side and
  leaves); the frames are grouped by session (engine order kept within one),
  numbered with each session's seq and cut to their type's size, into one byte
  buffer with a (session index, start, end) segment per session. Liveness is
  updated event by event.
Invariants: a slot is written once (ids are never reused); a session's frames
carry consecutive seqs in the order written; events of other gateways' ids are
skipped, so every gateway may read the same outbound ring.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from microex.core.records import Action, EventKind, Reason
from microex.gateway import client_ids
from microex.pipeline.metrics import observe
from microex.protocol.binary import DTYPES, EXEC_REPORT, Liquidity, MsgType

DONE, PENDING, LIVE = 0, 1, 2

_ACCEPTED, _REJECTED, _TRADE = int(EventKind.ACCEPTED), int(EventKind.REJECTED), int(EventKind.TRADE)
_CANCELLED, _MODIFIED = int(EventKind.CANCELLED), int(EventKind.MODIFIED)
_UNKNOWN_ORDER, _DUPLICATE = int(Reason.UNKNOWN_ORDER), int(Reason.DUPLICATE_ORDER_ID)
_NEW = int(Action.NEW)
_MAKER, _TAKER = int(Liquidity.MAKER), int(Liquidity.TAKER)
# per event kind: the report's msg_type and frame size
_TYPE_OF = np.zeros(8, dtype=np.int64)
_SIZE_OF = np.zeros(8, dtype=np.int64)
for _k, _t in ((_ACCEPTED, MsgType.EXEC_ACCEPTED), (_REJECTED, MsgType.EXEC_REJECTED), (_TRADE, MsgType.EXEC_FILL),
               (_CANCELLED, MsgType.EXEC_CANCELLED), (_MODIFIED, MsgType.EXEC_MODIFIED)):
    _TYPE_OF[_k], _SIZE_OF[_k] = int(_t), DTYPES[_t].itemsize


@njit(cache=True, inline="always")
def take_order_id(cids, cid, eid, base, sidx, owner_sidx, owner_cid, status):
    """Session sidx's client id cid becomes engine id eid: sent, not yet acknowledged."""
    client_ids.put(cids, sidx, np.int64(cid), eid)
    slot = eid - base
    owner_sidx[slot] = sidx
    owner_cid[slot] = cid
    status[slot] = PENDING


@njit(cache=True, inline="always")
def command_head(c, now, order_id, account, session_id, action):
    c.ts_ns = now
    c.order_id = order_id
    c.account = account
    c.session = session_id
    c.action = action


@njit(cache=True)
def new_order_commands(recs, allowed, cids, session_id, sidx, account, now, eid0, base, owner_sidx, owner_cid,
                       status, cmds, rej_idx, rej_reason, rate_reason):
    """Returns (commands written, rejects written). cmds must be zeroed (padding bytes)."""
    m = 0
    r = 0
    eid = eid0
    for i in range(recs.shape[0]):
        cid = recs[i].client_order_id
        if i >= allowed:
            rej_idx[r] = i
            rej_reason[r] = rate_reason
            r += 1
            continue
        if client_ids.get(cids, sidx, np.int64(cid)) != 0:
            rej_idx[r] = i
            rej_reason[r] = _DUPLICATE
            r += 1
            continue
        take_order_id(cids, cid, eid, base, sidx, owner_sidx, owner_cid, status)
        c = cmds[m]
        command_head(c, now, eid, account, session_id, _NEW)
        c.price_ticks = recs[i].price_ticks
        c.qty_lots = recs[i].qty_lots
        c.instrument = recs[i].instrument
        c.side = recs[i].side
        c.ord_type = recs[i].ord_type
        c.tif = recs[i].tif
        c.flags = recs[i].flags
        m += 1
        eid += 1
    return m, r


@njit(cache=True)
def lookup_orders(recs, allowed, cids, sidx, eids):
    """Engine ids of a run's client ids (0: unknown, or past the `allowed` rate-limit tokens)."""
    for i in range(recs.shape[0]):
        eids[i] = client_ids.get(cids, sidx, np.int64(recs[i].client_order_id)) if i < allowed else 0


@njit(cache=True)
def _report(rec, k, e, cid, maker):
    kind = e.kind
    r = rec[k]
    r.length = _SIZE_OF[kind]
    r.msg_type = _TYPE_OF[kind]
    r.seq = 0
    r.client_order_id = cid
    r.ts_ns = e.ts_ns
    r.instrument = e.instrument
    side = e.side
    if maker:
        side = 2 if side == 1 else (1 if side == 2 else 0)
    r.side = side
    r.liquidity = (_MAKER if maker else _TAKER) if kind == _TRADE else 0
    r.reason = e.reason if (kind == _REJECTED or kind == _CANCELLED) else 0
    r.price_ticks = 0 if kind == _REJECTED else e.price_ticks
    r.qty_lots = 0 if (kind == _REJECTED or kind == _MODIFIED) else e.qty_lots
    r.leaves_lots = e.maker_leaves_lots if maker else e.leaves_lots


@njit(cache=True)
def route_reports(events, lo, hi, owner_sidx, owner_cid, status, next_seq, rec, rec_u8, frame_sidx, out,
                  seg_sidx, seg_start, seg_end, now_ns, ack_hist):
    """Returns the number of segments (sessions with frames). See the module docstring.

    The first answer to each of our NEWs (accepted or rejected, its status still
    pending) adds now_ns - the command's ts_ns (stamped when the gateway read it)
    to the latency histogram ack_hist (metrics.observe's layout)."""
    k = 0
    for i in range(events.shape[0]):
        e = events[i]
        kind = e.kind
        if kind < _ACCEPTED or kind > _MODIFIED:
            continue
        oid = e.order_id
        if lo <= oid < hi:
            slot = oid - lo
            _report(rec, k, e, owner_cid[slot], False)
            frame_sidx[k] = owner_sidx[slot]
            k += 1
            st = status[slot]
            if st == PENDING and (kind == _ACCEPTED or kind == _REJECTED):
                observe(ack_hist, 0, now_ns - e.ts_ns)
            if kind == _TRADE:
                status[slot] = DONE if e.leaves_lots <= 0 else LIVE
            elif kind == _CANCELLED:
                status[slot] = DONE
            elif kind == _REJECTED:
                # a NEW's reject ends it (still pending); a bad CANCEL/MODIFY of a live one does not
                if st == PENDING or e.reason == _UNKNOWN_ORDER:
                    status[slot] = DONE
            elif st != DONE:
                status[slot] = LIVE
        if kind == _TRADE:
            moid = e.maker_order_id
            if lo <= moid < hi:
                slot = moid - lo
                _report(rec, k, e, owner_cid[slot], True)
                frame_sidx[k] = owner_sidx[slot]
                k += 1
                status[slot] = DONE if e.maker_leaves_lots <= 0 else LIVE
    if k == 0:
        return 0
    order = np.argsort(frame_sidx[:k], kind="mergesort")  # stable: engine order within a session
    pos = 0
    nseg = 0
    prev = -1
    for j in range(k):
        f = order[j]
        s = frame_sidx[f]
        if s != prev:
            if nseg:
                seg_end[nseg - 1] = pos
            seg_sidx[nseg] = s
            seg_start[nseg] = pos
            nseg += 1
            prev = s
        size = rec[f].length
        out[pos : pos + size] = rec_u8[f, :size]
        seq = next_seq[s] & 0xFFFFFFFF
        next_seq[s] += 1
        out[pos + 4] = seq & 0xFF
        out[pos + 5] = (seq >> 8) & 0xFF
        out[pos + 6] = (seq >> 16) & 0xFF
        out[pos + 7] = (seq >> 24) & 0xFF
        pos += size
    seg_end[nseg - 1] = pos
    return nseg


class ReportBuffers:
    """Preallocated outputs of route_reports, grown by doubling."""

    def __init__(self, frames: int = 1024) -> None:
        self._alloc(frames)

    def _alloc(self, frames: int) -> None:
        self.frames = frames
        self.rec = np.zeros(frames, dtype=EXEC_REPORT)
        self.rec_u8 = self.rec.view(np.uint8).reshape(frames, EXEC_REPORT.itemsize)
        self.frame_sidx = np.zeros(frames, dtype=np.int64)
        self.out = np.zeros(frames * EXEC_REPORT.itemsize, dtype=np.uint8)
        self.seg_sidx = np.zeros(frames, dtype=np.int64)
        self.seg_start = np.zeros(frames, dtype=np.int64)
        self.seg_end = np.zeros(frames, dtype=np.int64)

    def ensure(self, frames: int) -> None:
        if frames > self.frames:
            n = self.frames
            while n < frames:
                n *= 2
            self._alloc(n)


class OrderIdMap:
    """Engine ids base.. -> (session index, client id, liveness); grown by doubling, never freed."""

    def __init__(self, base: int, capacity: int = 1 << 12) -> None:
        self.base = base
        self.next_eid = base
        self.owner_sidx = np.zeros(capacity, dtype=np.int64)
        self.owner_cid = np.zeros(capacity, dtype=np.uint64)
        self.status = np.zeros(capacity, dtype=np.uint8)

    @property
    def used(self) -> int:
        return self.next_eid - self.base

    def ensure(self, n: int) -> None:
        need = self.used + n
        cap = len(self.status)
        if need <= cap:
            return
        while cap < need:
            cap *= 2
        for name in ("owner_sidx", "owner_cid", "status"):
            old = getattr(self, name)
            new = np.zeros(cap, dtype=old.dtype)
            new[: len(old)] = old
            setattr(self, name, new)

    def open_orders_of(self, sidx: int) -> np.ndarray:
        """Engine ids of a session's orders that may rest (pending or live)."""
        n = self.used
        return np.flatnonzero((self.owner_sidx[:n] == sidx) & (self.status[:n] != DONE)) + self.base
