"""Fanout: subscribers, what each one is sent, and the slow-consumer policy. Sans-I/O.

How it works
- A subscriber is a `Transport` (anything that takes bytes and reports how many it
  still holds: an asyncio transport, a gRPC stream, a test double) plus its
  subscriptions: instrument -> flags (SubFlag), depth, and the last md_seq it was
  sent. The stage hands every batch's records to `publish`; records are grouped by
  instrument once and each group is encoded once (`.tobytes()`: the records are
  the frames) and the same bytes go to every live subscriber of it.
- The hot path is per group, not per subscriber: the live subscribers of an
  instrument are grouped by what they take (book and trades, book, trades, BBO,
  candles, ticker), each group cached until a subscription, conflation or transport
  changes (`invalidate`). A group's sockets whose transport is a `DirectTransport`
  with nothing queued are sent the bytes in one compiled call (socket_send.py);
  a short send hands the rest to that transport, which queues it and leaves the
  direct set until it drains. Other transports (gRPC, tests) are written one by one.
  Each subscription's last sent md_seq lives in one array (a slot per Sub), set per
  group with one numpy store.
- Subscribing with BOOK sends STATUS(SUBSCRIBED) and a FULL snapshot from the
  `BookSource` at the current md_seq; increments after it follow, so the
  subscriber's replica is exact from then on.
- Slow consumers (never blocks, never stalls the stage):
  1. buffer above `high_water` bytes after a write: the subscriber is CONFLATED
     (STATUS CONFLATED per instrument). Nothing more is queued for it; the
     instrument's `LevelLog` keeps the latest state of every level changed since
     (one log per instrument, shared by all its conflated subscribers).
  2. buffer back below `low_water` (checked at each publish and timer): per
     instrument one PARTIAL bundle: SNAPSHOT_BEGIN(first_seq = last sent + 1,
     md_seq = now), the changed levels in their current state, SNAPSHOT_END; then
     the current BBO and ticker, STATUS LIVE. Trades and candles of the conflated
     period are dropped (the subscriber was told by STATUS CONFLATED).
  3. a LevelLog past `max_conflated_levels`: its conflated subscribers get RESYNC
     and, once drained, a FULL snapshot instead of a bundle.
  4. buffer above `drop_bytes`, or conflated longer than `max_conflated_s`: dropped
     (transport aborted, reason SLOW_CONSUMER in `closed_reasons`).
Invariant: for every subscriber of an instrument with BOOK, the frames sent are a
snapshot at S followed by increments S+1, S+2... or bundles that continue exactly
where the previous frame ended, so its replica equals the venue's book (tests).
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from typing import Protocol

import numpy as np

from microex.core.records import MD_UPDATE, BookCause, BookFlag, MdKind, MdMsg, MdReason
from microex.marketdata.level_log import LevelLog
from microex.marketdata.raw import take
from microex.marketdata.socket_send import send_each
from microex.marketdata.state import book_frames
from microex.protocol.md_binary import MdStatus, SubFlag, error, resync, status

HIGH_WATER = 256 << 10
LOW_WATER = 64 << 10
DROP_BYTES = 16 << 20
MAX_CONFLATED_LEVELS = 4096
MAX_CONFLATED_S = 30.0
MAX_SUBSCRIPTIONS = 256
# plain ints: IntFlag arithmetic builds enum objects (~1 us an operation) and these run per subscriber
F_BOOK, F_TRADES, F_BBO, F_CANDLES, F_TICKER, F_PERIODIC_BOOK = (
    int(f) for f in (SubFlag.BOOK, SubFlag.TRADES, SubFlag.BBO, SubFlag.CANDLES, SubFlag.TICKER, SubFlag.PERIODIC_BOOK))
K_LEVEL, K_TRADE = int(MdKind.LEVEL), int(MdKind.TRADE)
_BOTH = F_BOOK | F_TRADES
_UPDATE_KINDS = (_BOTH, F_BOOK, F_TRADES, 0)  # group keys of increments (0: neither, only last_seq moves)


class Transport(Protocol):
    """Where a subscriber's bytes go (another transport attaches by implementing this)."""

    def write(self, data: bytes) -> None: ...

    def buffered(self) -> int: ...  # bytes written but not yet sent

    def abort(self) -> None: ...


class DirectTransport(Transport, Protocol):
    """A socket the Fanout may send to itself while `direct` (nothing queued, so order is kept)."""

    fd: int
    direct: bool
    on_direct_change: Callable[[], None] | None  # set by the Fanout; called when `direct` flips

    def sent_directly(self, data: bytes, n: int) -> None: ...  # a send took n bytes of data (-1: none)


class BookSource(Protocol):
    """The books the fanout serves snapshots from (MarketState, or a replay's books)."""

    n_instruments: int

    def md_seq(self, instrument: int) -> int: ...

    def snapshot(self, instrument: int, depth: int = 0, cause: int = BookCause.REQUEST) -> tuple[int, bytes]: ...

    def bbo_record(self, instrument: int) -> np.ndarray: ...


class Sub:
    """One subscription of one subscriber; its last sent md_seq is slot `slot` of the Fanout's array."""

    __slots__ = ("owner", "instrument", "flags", "depth", "fan", "slot", "need_snapshot", "dropped")

    def __init__(self, owner: Subscriber, instrument: int, flags: int, depth: int, fan: Fanout, slot: int) -> None:
        self.owner, self.instrument, self.flags, self.depth = owner, instrument, flags, depth
        self.fan, self.slot, self.need_snapshot, self.dropped = fan, slot, False, 0

    @property
    def last_seq(self) -> int:
        return int(self.fan.last_seqs[self.slot])

    @last_seq.setter
    def last_seq(self, seq: int) -> None:
        self.fan.last_seqs[self.slot] = seq


class Group:
    """The live subscriptions of one instrument that take one kind of bytes, ready for a send."""

    __slots__ = ("fds", "direct", "sent", "slow", "slots")

    def __init__(self, subs: list[Sub]) -> None:
        direct = [s for s in subs if getattr(s.owner.transport, "direct", False)]
        self.direct = [s.owner for s in direct]
        self.fds = np.array([s.owner.transport.fd for s in direct], dtype=np.int32)
        self.sent = np.zeros(len(direct), dtype=np.int64)
        self.slow = [s.owner for s in subs if not getattr(s.owner.transport, "direct", False)]
        self.slots = np.array([s.slot for s in subs], dtype=np.int64)

    def __bool__(self) -> bool:
        return bool(len(self.slots))


class Subscriber:
    __slots__ = ("sub_id", "transport", "write", "buffered", "subs", "conflated_since", "dropped_trades")

    def __init__(self, sub_id: int, transport: Transport) -> None:
        self.sub_id, self.transport = sub_id, transport
        self.write, self.buffered = transport.write, transport.buffered  # bound once: called per batch
        self.subs: dict[int, Sub] = {}
        self.conflated_since: float | None = None
        self.dropped_trades = 0


class Fanout:
    def __init__(self, source: BookSource, *, high_water: int = HIGH_WATER, low_water: int = LOW_WATER,
                 drop_bytes: int = DROP_BYTES, max_conflated_levels: int = MAX_CONFLATED_LEVELS,
                 max_conflated_s: float = MAX_CONFLATED_S, max_subscriptions: int = MAX_SUBSCRIPTIONS,
                 clock: Callable[[], float] | None = None) -> None:
        import time

        self.source = source
        self.high_water, self.low_water, self.drop_bytes = high_water, low_water, drop_bytes
        self.max_conflated_levels, self.max_conflated_s = max_conflated_levels, max_conflated_s
        self.max_subscriptions = max_subscriptions
        self.clock = clock or time.monotonic
        self.subscribers: dict[int, Subscriber] = {}
        self.subs_of: dict[int, dict[int, Sub]] = collections.defaultdict(dict)
        self.logs: dict[int, LevelLog] = {}  # instrument -> log, while someone is conflated on it
        self.conflated: dict[int, Subscriber] = {}
        self.last_ticker: dict[int, bytes] = {}
        self.closed_reasons: collections.deque = collections.deque(maxlen=1000)  # (sub_id, reason)
        self.stats = collections.Counter()
        self.last_seqs = np.zeros(1024, dtype=np.int64)  # per Sub slot: the last md_seq sent to it
        self.slot_owner = np.zeros(1024, dtype=np.int64)  # per Sub slot: its subscriber's id
        self._seen_seqs = self.last_seqs.copy()
        self._free_slots: list[int] = list(range(1023, -1, -1))
        self._plans: dict[int, dict] = {}  # instrument -> group key -> Group, until invalidated

    def invalidate(self) -> None:
        """Who gets what changed (a subscription, a conflation, a transport's direct state)."""
        self._plans.clear()

    def _slot(self, sub_id: int) -> int:
        if not self._free_slots:
            n = len(self.last_seqs)
            self.last_seqs = np.concatenate([self.last_seqs, np.zeros(n, dtype=np.int64)])
            self.slot_owner = np.concatenate([self.slot_owner, np.zeros(n, dtype=np.int64)])
            self._free_slots = list(range(2 * n - 1, n - 1, -1))
        slot = self._free_slots.pop()
        self.slot_owner[slot] = sub_id
        return slot

    def moved_subscribers(self) -> set[int]:
        """Ids of the subscribers sent increments since the previous call (heartbeats skip them)."""
        seen = self._seen_seqs
        if len(seen) != len(self.last_seqs):
            seen = np.concatenate([seen, np.zeros(len(self.last_seqs) - len(seen), dtype=np.int64)])
        moved = np.flatnonzero(self.last_seqs != seen)
        self._seen_seqs = self.last_seqs.copy()
        return set(self.slot_owner[moved].tolist())

    def _group(self, i: int, key: int) -> Group:
        """Live subscriptions of i taking `key`: an update kind (BOTH, F_BOOK, F_TRADES, 0) or a record flag << 8."""
        plan = self._plans.get(i)
        if plan is None:
            plan = self._plans[i] = {}
        g = plan.get(key)
        if g is None:
            live = [s for s in self.subs_of.get(i, {}).values() if s.owner.conflated_since is None]
            if key >= 256:
                members = [s for s in live if s.flags & (key >> 8)]
            else:
                members = [s for s in live if s.flags & _BOTH == key]
            g = plan[key] = Group(members)
        return g

    # -- subscribers and requests ----------------------------------------------------------------

    def add(self, sub_id: int, transport: Transport) -> Subscriber:
        sub = self.subscribers[sub_id] = Subscriber(sub_id, transport)
        if hasattr(transport, "on_direct_change"):
            transport.on_direct_change = self.invalidate
        return sub

    def remove(self, sub_id: int) -> None:
        sub = self.subscribers.pop(sub_id, None)
        if sub is None:
            return
        for i in list(sub.subs):
            self._drop_sub(sub, i)
        self.conflated.pop(sub_id, None)

    def _drop_sub(self, sub: Subscriber, i: int) -> None:
        s = sub.subs.pop(i, None)
        if s is not None:
            self._free_slots.append(s.slot)
            self.invalidate()
        self.subs_of[i].pop(sub.sub_id, None)
        self._release_log(i)

    def subscribe(self, sub_id: int, instrument: int, depth: int = 0, flags: int = 0, ref_seq: int = 0) -> None:
        sub = self.subscribers[sub_id]
        flags = int(flags) or int(SubFlag.DEFAULT)
        if not 1 <= instrument <= self.source.n_instruments:
            sub.transport.write(error(MdReason.UNKNOWN_INSTRUMENT, MdMsg.SUBSCRIBE, ref_seq))
            return
        if flags & ~int(SubFlag.ALL):
            sub.transport.write(error(MdReason.BAD_REQUEST, MdMsg.SUBSCRIBE, ref_seq))
            return
        if instrument not in sub.subs and len(sub.subs) >= self.max_subscriptions:
            sub.transport.write(error(MdReason.TOO_MANY_SUBSCRIPTIONS, MdMsg.SUBSCRIBE, ref_seq))
            return
        self._drop_sub(sub, instrument)  # a re-subscribe replaces the old one
        seq = self.source.md_seq(instrument)
        s = Sub(sub, instrument, flags, depth, self, self._slot(sub_id))
        s.last_seq = seq
        sub.subs[instrument] = s
        self.subs_of[instrument][sub_id] = s
        self.invalidate()
        out = [status(instrument, MdStatus.SUBSCRIBED, seq)]
        if flags & F_BOOK:
            seq, frames = self.source.snapshot(instrument, depth, BookCause.SUBSCRIBE)
            s.last_seq = seq
            out.append(frames)
        if flags & F_BBO:
            out.append(self.source.bbo_record(instrument).tobytes())
        if instrument in self.last_ticker and flags & F_TICKER:
            out.append(self.last_ticker[instrument])
        if sub.conflated_since is not None:
            s.need_snapshot = bool(flags & F_BOOK)  # it gets its snapshot when it drains
            sub.transport.write(out[0])
            return
        self._write(sub, b"".join(out))

    def unsubscribe(self, sub_id: int, instrument: int, ref_seq: int = 0) -> None:
        sub = self.subscribers[sub_id]
        if instrument not in sub.subs:
            sub.transport.write(error(MdReason.NOT_SUBSCRIBED, MdMsg.UNSUBSCRIBE, ref_seq))
            return
        self._drop_sub(sub, instrument)
        sub.transport.write(status(instrument, MdStatus.UNSUBSCRIBED, self.source.md_seq(instrument)))

    def snapshot_request(self, sub_id: int, instrument: int, depth: int = 0, ref_seq: int = 0) -> None:
        sub = self.subscribers[sub_id]
        s = sub.subs.get(instrument)
        if s is None:
            reason = (MdReason.UNKNOWN_INSTRUMENT if not 1 <= instrument <= self.source.n_instruments
                      else MdReason.NOT_SUBSCRIBED)
            sub.transport.write(error(reason, MdMsg.SNAPSHOT_REQUEST, ref_seq))
            return
        if sub.conflated_since is not None:
            s.need_snapshot = True  # sent when it drains; a bundle would be smaller but it asked
            return
        seq, frames = self.source.snapshot(instrument, depth, BookCause.REQUEST)
        if depth == 0:
            s.last_seq = max(s.last_seq, seq)
        self._write(sub, frames)

    # -- publishing ----------------------------------------------------------------------------------

    def publish(self, updates: np.ndarray, bbo: np.ndarray | None = None, candles: np.ndarray | None = None) -> None:
        """One batch of the stage's output: increments (MD_UPDATE), then BBO and candle records."""
        if len(updates):
            for i, seg in _by_instrument(updates):
                subs = self.subs_of.get(i)
                if subs:
                    self._publish_updates(i, seg, subs)
                elif i in self.logs:
                    self.logs[i].add(take(seg, seg["kind"] == K_LEVEL))
        if bbo is not None and len(bbo):
            self.publish_records(bbo, F_BBO)
        if candles is not None and len(candles):
            self.publish_records(candles, F_CANDLES)
        self.check_conflated()

    def _publish_updates(self, i: int, seg: np.ndarray, subs: dict[int, Sub]) -> None:
        last = int(seg["md_seq"][-1])
        log = self.logs.get(i)
        if log is not None:
            log.add(take(seg, seg["kind"] == K_LEVEL))
        if self.conflated:
            for s in subs.values():
                if s.owner.conflated_since is not None and s.flags & F_TRADES:
                    n = int(np.count_nonzero(seg["kind"] == K_TRADE))
                    s.dropped += n
                    s.owner.dropped_trades += n
        for want in _UPDATE_KINDS:
            g = self._group(i, want)
            if not g:
                continue
            self.last_seqs[g.slots] = last
            if want == _BOTH:
                data = seg.tobytes()
            elif want == F_BOOK:
                data = take(seg, seg["kind"] == K_LEVEL).tobytes()
            elif want == F_TRADES:
                data = take(seg, seg["kind"] == K_TRADE).tobytes()
            else:
                continue
            if data:
                self._send(g, data)
        if log is not None and len(log) > self.max_conflated_levels:
            self._resync_log(i)

    def _send(self, g: Group, data: bytes) -> None:
        """data to every member of g: the direct sockets in one compiled call, the others one by one."""
        slow = []
        high = self.high_water
        if len(g.fds):
            n = len(data)
            if send_each(g.fds, np.frombuffer(data, dtype=np.uint8), g.sent) < len(g.fds):
                for k in np.flatnonzero(g.sent != n):
                    sub = g.direct[k]
                    sub.transport.sent_directly(data, int(g.sent[k]))
                    if sub.buffered() > high:
                        slow.append(sub)
        for sub in g.slow:
            sub.write(data)
            if sub.buffered() > high:
                slow.append(sub)
        for sub in slow:
            self._conflate(sub)

    def publish_records(self, recs: np.ndarray, flag: int) -> None:
        """MD_BBO / MD_CANDLE / MD_TICKER records to the live subscribers that asked for `flag`."""
        flag = int(flag)
        for i, seg in _by_instrument(recs):
            data = None
            if flag == F_TICKER:
                data = self.last_ticker[i] = seg[-1:].tobytes()  # a slice: raw bytes
            if i in self.subs_of:
                g = self._group(i, flag << 8)
                if g:
                    self._send(g, seg.tobytes() if data is None else data)

    def publish_books(self, cause: int = BookCause.SCHEDULE) -> None:
        """A FULL snapshot to every live subscription with PERIODIC_BOOK (one encoding per depth)."""
        made: dict[tuple[int, int], bytes] = {}
        for i, subs in self.subs_of.items():
            for s in subs.values():
                if s.flags & F_PERIODIC_BOOK and s.owner.conflated_since is None:
                    key = (i, s.depth)
                    if key not in made:
                        made[key] = self.source.snapshot(i, s.depth, cause)[1]
                    self._write(s.owner, made[key])

    def _write(self, sub: Subscriber, data: bytes) -> None:
        sub.write(data)
        if sub.conflated_since is None and sub.buffered() > self.high_water:
            self._conflate(sub)

    # -- the slow-consumer policy ----------------------------------------------------------------

    def _conflate(self, sub: Subscriber) -> None:
        if sub.conflated_since is not None:
            return
        if sub.transport.buffered() > self.drop_bytes:
            self._drop(sub)
            return
        sub.conflated_since = self.clock()
        self.conflated[sub.sub_id] = sub
        self.invalidate()
        self.stats["conflations"] += 1
        for i, s in sub.subs.items():
            if _needs_log(s) and i not in self.logs:
                self.logs[i] = LevelLog()
            sub.transport.write(status(i, MdStatus.CONFLATED, s.last_seq, MdReason.CONFLATED))

    def check_conflated(self) -> None:
        """Flush the conflated subscribers that drained; drop the ones stuck past the bounds."""
        if not self.conflated:
            return
        now = self.clock()
        for sub in list(self.conflated.values()):
            size = sub.transport.buffered()
            if size > self.drop_bytes or now - sub.conflated_since > self.max_conflated_s:
                self._drop(sub)
            elif size <= self.low_water:
                self._flush(sub)

    def _flush(self, sub: Subscriber) -> None:
        out = []
        for i, s in sub.subs.items():
            seq = self.source.md_seq(i)
            if s.need_snapshot:
                seq, frames = self.source.snapshot(i, s.depth, BookCause.RESYNC)
                out.append(frames)
                s.need_snapshot = False
            elif s.flags & F_BOOK and seq > s.last_seq:
                levels = self.logs[i].since(s.last_seq) if i in self.logs else np.zeros(0, MD_UPDATE)
                ts = int(levels["ts_ns"][-1]) if len(levels) else 0
                begin, end = book_frames(i, seq, s.last_seq + 1, ts, len(levels), 0, BookFlag.PARTIAL,
                                         BookCause.CONFLATION)
                out += [begin, levels.tobytes(), end]
            s.last_seq = seq
            if s.flags & F_BBO:
                out.append(self.source.bbo_record(i).tobytes())
            if s.flags & F_TICKER and i in self.last_ticker:
                out.append(self.last_ticker[i])
            out.append(status(i, MdStatus.LIVE, seq))
        sub.conflated_since = None
        del self.conflated[sub.sub_id]
        self.invalidate()
        self.stats["flushes"] += 1
        for i in sub.subs:
            self._release_log(i)
        self._write(sub, b"".join(out))

    def _resync_log(self, i: int) -> None:
        """The log of instrument i grew past its bound: its conflated subscribers resync instead."""
        for s in self.subs_of.get(i, {}).values():
            if _needs_log(s):
                s.need_snapshot = True
                self.stats["resyncs"] += 1
                s.owner.transport.write(resync(i, self.source.md_seq(i), MdReason.RESYNC))
        self.logs.pop(i, None)

    def _release_log(self, i: int) -> None:
        """Forget instrument i's log once none of its subscribers needs it."""
        if i in self.logs and not any(_needs_log(s) for s in self.subs_of.get(i, {}).values()):
            del self.logs[i]

    def _drop(self, sub: Subscriber) -> None:
        self.stats["dropped"] += 1
        self.closed_reasons.append((sub.sub_id, int(MdReason.SLOW_CONSUMER)))
        self.remove(sub.sub_id)
        sub.transport.abort()

    def shutdown(self) -> None:
        """Tell every subscriber the feed is stopping."""
        frame = error(MdReason.SHUTDOWN)
        for sub in self.subscribers.values():
            sub.transport.write(frame)


def _needs_log(s: Sub) -> bool:
    return s.owner.conflated_since is not None and bool(s.flags & F_BOOK) and not s.need_snapshot


def _by_instrument(recs: np.ndarray):
    """(instrument, records of it) groups, each in its original order."""
    inst = recs["instrument"]
    if inst[0] == inst[-1] and (len(recs) < 3 or (inst == inst[0]).all()):
        yield int(inst[0]), recs
        return
    srt = take(recs, np.argsort(inst, kind="stable"))
    keys = srt["instrument"]
    cuts = np.flatnonzero(keys[1:] != keys[:-1]) + 1
    for a, b in zip(np.concatenate(([0], cuts)), np.concatenate((cuts, [len(srt)]))):
        yield int(keys[a]), srt[a:b]
