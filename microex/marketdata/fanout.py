"""Fanout: subscribers, what each one is sent, and the slow-consumer policy. Sans-I/O.

How it works
- A subscriber is a `Transport` plus its subscriptions: instrument -> flags (SubFlag),
  depth, and the last md_seq it was sent (subscription.py). The stage hands every
  batch's records to `publish`, which groups them by instrument and queues them
  (pending.py). A flush of instrument i sends its queue to each `Group` of i's live
  subscriptions (those taking the same streams: one encoding per group, however many
  batches were queued): the direct sockets of the group in one compiled call
  (socket_send.py), a short send handing the rest to its transport (which queues it
  and leaves the direct set until drained), other transports one by one. Groups are
  cached until a subscription, conflation or transport changes (`invalidate`).
- Without `defer`, publish flushes at once. With `defer` (the live stage), the stage
  calls `flush_next` between ring polls: one instrument a step, the one queued
  longest first, so at 1,000 subscribers an update waits for one round of the
  instruments' sends rather than for a whole fan-out and then its turn in the next.
  Whatever sets a subscription's position from the current state (subscribe, a
  snapshot request, the end of a conflation) or sends a snapshot to all flushes the
  instrument first, so nothing queued before a snapshot follows it.
- Subscribing with BOOK sends STATUS(SUBSCRIBED) and a FULL snapshot from the
  `BookSource` at the current md_seq; increments after it follow, so the
  subscriber's replica is exact from then on.
- Slow consumers (never blocks, never stalls the stage):
  1. buffer above `high_water` bytes after a write: the subscriber is CONFLATED
     (STATUS CONFLATED per instrument). Nothing more is queued for it; the
     instrument's `LevelLog` keeps the latest state of every level changed since
     (one log per instrument, shared by all its conflated subscribers; a new log
     starts with the instrument's queued levels, which were never sent).
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

import numpy as np

from microex.core.records import MD_UPDATE, BookCause, BookFlag, MdKind, MdMsg, MdReason
from microex.marketdata.level_log import LevelLog
from microex.marketdata.multicast import MulticastFeed
from microex.marketdata.pending import UPDATES, Pending, bytes_for
from microex.marketdata.pending import last_seq as pending_last_seq
from microex.core import raw
from microex.core.raw import take
from microex.marketdata.socket_send import send_each
from microex.marketdata.state import book_frames
from microex.marketdata.subscription import (
    BookSource,
    Group,
    Sub,
    Subscriber,
    Transport,
)
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
_STREAMS = F_BOOK | F_TRADES | F_BBO | F_CANDLES | F_TICKER  # what decides the bytes a subscription is sent


class Fanout:
    def __init__(self, source: BookSource, *, high_water: int = HIGH_WATER, low_water: int = LOW_WATER,
                 drop_bytes: int = DROP_BYTES, max_conflated_levels: int = MAX_CONFLATED_LEVELS,
                 max_conflated_s: float = MAX_CONFLATED_S, max_subscriptions: int = MAX_SUBSCRIPTIONS,
                 clock: Callable[[], float] | None = None, defer: bool = False,
                 multicast: MulticastFeed | None = None) -> None:
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
        self.sends = np.zeros(1024, dtype=np.int64)  # per Sub slot: flushes that sent it bytes (heartbeats)
        self._seen_sends = self.sends.copy()
        self._free_slots: list[int] = list(range(1023, -1, -1))
        self._plans: dict[int, dict[int, Group]] = {}  # instrument -> streams -> Group, until invalidated
        self.defer = defer
        self.pending = Pending()
        self.multicast = multicast

    def invalidate(self) -> None:
        """Who gets what changed (a subscription, a conflation, a transport's direct state)."""
        self._plans.clear()

    def _slot(self, sub_id: int) -> int:
        if not self._free_slots:
            n = len(self.last_seqs)
            self.last_seqs = np.concatenate([self.last_seqs, np.zeros(n, dtype=np.int64)])
            self.slot_owner = np.concatenate([self.slot_owner, np.zeros(n, dtype=np.int64)])
            self.sends = np.concatenate([self.sends, np.zeros(n, dtype=np.int64)])
            self._free_slots = list(range(2 * n - 1, n - 1, -1))
        slot = self._free_slots.pop()
        self.slot_owner[slot] = sub_id
        return slot

    def moved_subscribers(self) -> set[int]:
        """Ids of the subscribers a flush sent bytes to since the previous call (heartbeats skip them)."""
        seen = self._seen_sends
        if len(seen) != len(self.sends):
            seen = np.concatenate([seen, np.zeros(len(self.sends) - len(seen), dtype=np.int64)])
        moved = np.flatnonzero(self.sends != seen)
        self._seen_sends = self.sends.copy()
        return set(self.slot_owner[moved].tolist())

    def _groups(self, i: int) -> dict[int, Group]:
        """The live subscriptions of i by the streams they take (cached until invalidated)."""
        plan = self._plans.get(i)
        if plan is None:
            by: dict[int, list[Sub]] = {}
            for s in self.subs_of.get(i, {}).values():
                if s.owner.conflated_since is None and s.flags & _STREAMS:  # RECOVERY alone: no stream
                    by.setdefault(s.flags & _STREAMS, []).append(s)
            plan = self._plans[i] = {streams: Group(subs) for streams, subs in by.items()}
        return plan

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
        sub = self.subscribers.get(sub_id)
        if sub is None:  # dropped while its requests were being read
            return
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
        self._flush_instrument(instrument)  # what was published before the snapshot goes to the others first
        if sub_id not in self.subscribers:  # that flush dropped it (slow consumer): nothing to answer
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
        sub = self.subscribers.get(sub_id)
        if sub is None:
            return
        if instrument not in sub.subs:
            sub.transport.write(error(MdReason.NOT_SUBSCRIBED, MdMsg.UNSUBSCRIBE, ref_seq))
            return
        self._drop_sub(sub, instrument)
        sub.transport.write(status(instrument, MdStatus.UNSUBSCRIBED, self.source.md_seq(instrument)))

    def snapshot_request(self, sub_id: int, instrument: int, depth: int = 0, ref_seq: int = 0) -> None:
        sub = self.subscribers.get(sub_id)
        if sub is None:
            return
        s = sub.subs.get(instrument)
        if s is None:
            reason = (MdReason.UNKNOWN_INSTRUMENT if not 1 <= instrument <= self.source.n_instruments
                      else MdReason.NOT_SUBSCRIBED)
            sub.transport.write(error(reason, MdMsg.SNAPSHOT_REQUEST, ref_seq))
            return
        if sub.conflated_since is not None:
            s.need_snapshot = True  # sent when it drains; a bundle would be smaller but it asked
            return
        self._flush_instrument(instrument)
        if sub_id not in self.subscribers:  # that flush dropped it
            return
        seq, frames = self.source.snapshot(instrument, depth, BookCause.REQUEST)
        if depth == 0:
            s.last_seq = max(s.last_seq, seq)
        self._write(sub, frames)

    # -- publishing ----------------------------------------------------------------------------------

    def publish(self, updates: np.ndarray, bbo: np.ndarray | None = None, candles: np.ndarray | None = None) -> None:
        """One batch of the stage's output: increments (MD_UPDATE), then BBO and candle records.

        Sent at once, or with `defer` kept pending until flush_next / flush_all send it."""
        if len(updates):
            for i, seg in _by_instrument(updates):
                log = self.logs.get(i)
                if log is not None:
                    log.add(take(seg, seg["kind"] == K_LEVEL))
                subs = self.subs_of.get(i)
                if subs and self.conflated:
                    _count_dropped_trades(seg, subs)
                if subs or self.multicast:
                    self.pending.add(i, UPDATES, seg)
                if log is not None and len(log) > self.max_conflated_levels:
                    self._resync_log(i)
        if bbo is not None and len(bbo):
            self._add_records(bbo, F_BBO)
        if candles is not None and len(candles):
            self._add_records(candles, F_CANDLES)
        if not self.defer:
            self.flush_all()
        self.check_conflated()

    def publish_records(self, recs: np.ndarray, flag: int) -> None:
        """MD_BBO / MD_CANDLE / MD_TICKER records to the live subscribers that asked for `flag`."""
        self._add_records(recs, int(flag))
        if not self.defer:
            self.flush_all()

    def _add_records(self, recs: np.ndarray, flag: int) -> None:
        for i, seg in _by_instrument(recs):
            if flag == F_TICKER:
                seg = seg[-1:]
                self.last_ticker[i] = seg.tobytes()  # a slice: raw bytes
            if self.subs_of.get(i) or self.multicast:
                self.pending.add(i, flag, seg)

    def flush_next(self) -> bool:
        """Send what the instrument pending longest has; True while more is pending."""
        i = self.pending.next()
        if i:
            self._flush_instrument(i)
        return bool(self.pending)

    def flush_all(self) -> None:
        while self.pending:
            self._flush_instrument(self.pending.next())

    def _flush_instrument(self, i: int) -> None:
        entries = self.pending.pop(i)
        if not entries:
            return
        made: dict[int, bytes] = {}  # streams -> bytes: the multicast's are a DEFAULT group's too
        if self.multicast is not None:  # first: one send reaches every receiver of the group
            made[_STREAMS] = bytes_for(entries, _STREAMS)
            self.multicast.send(i, made[_STREAMS])
        last = pending_last_seq(entries)
        for streams, g in self._groups(i).items():
            if last:
                self.last_seqs[g.slots] = last
            data = made.get(streams)
            if data is None:
                data = bytes_for(entries, streams)
            if data:
                self.sends[g.slots] += 1
                self._send(g, data)

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

    def publish_books(self, cause: int = BookCause.SCHEDULE) -> None:
        """A FULL snapshot to every live subscription with PERIODIC_BOOK (one encoding per depth)."""
        made: dict[tuple[int, int], bytes] = {}
        for i, subs in list(self.subs_of.items()):  # a send may drop a subscriber (the policy)
            for s in list(subs.values()):
                if s.flags & F_PERIODIC_BOOK and s.owner.conflated_since is None:
                    key = (i, s.depth)
                    if key not in made:
                        self._flush_instrument(i)  # what is queued predates the snapshot
                        made[key] = self.source.snapshot(i, s.depth, cause)[1]
                    self._write(s.owner, made[key])

    def _write(self, sub: Subscriber, data: bytes) -> None:
        if sub.sub_id not in self.subscribers:  # dropped meanwhile (a flush before this write)
            return
        sub.write(data)
        if sub.conflated_since is None and sub.buffered() > self.high_water:
            self._conflate(sub)

    # -- the slow-consumer policy ----------------------------------------------------------------

    def _conflate(self, sub: Subscriber) -> None:
        if sub.conflated_since is not None or sub.sub_id not in self.subscribers:
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
                log = self.logs[i] = LevelLog()
                for levels in self.pending.levels(i):  # published, not yet sent: the log starts there
                    log.add(levels)
            if s.flags & F_TRADES:  # queued trades it will not be sent
                n = self.pending.trades(i)
                s.dropped += n
                sub.dropped_trades += n
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
        for i in sub.subs:  # what is pending predates the bundle: it goes to the live ones first
            self._flush_instrument(i)
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
        for s in list(self.subs_of.get(i, {}).values()):  # a write may drop one (the policy)
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
        self.flush_all()
        frame = error(MdReason.SHUTDOWN)
        for sub in list(self.subscribers.values()):
            sub.transport.write(frame)


def _count_dropped_trades(seg: np.ndarray, subs: dict[int, Sub]) -> None:
    n = -1
    for s in subs.values():
        if s.owner.conflated_since is not None and s.flags & F_TRADES:
            if n < 0:
                n = int(np.count_nonzero(seg["kind"] == K_TRADE))
            s.dropped += n
            s.owner.dropped_trades += n


def _needs_log(s: Sub) -> bool:
    return s.owner.conflated_since is not None and bool(s.flags & F_BOOK) and not s.need_snapshot


def _by_instrument(recs: np.ndarray):
    """(instrument, records of it) groups, each in its original order, each a copy of its own
    (recs may be a view of the stage's output buffers, which the next batch overwrites)."""
    inst = recs["instrument"]
    if inst[0] == inst[-1] and (len(recs) < 3 or (inst == inst[0]).all()):
        yield int(inst[0]), raw.copy(recs)
        return
    srt = take(recs, np.argsort(inst, kind="stable"))
    keys = srt["instrument"]
    cuts = (np.flatnonzero(keys[1:] != keys[:-1]) + 1).tolist()  # plain ints: this runs per ring batch
    starts = [0, *cuts]
    yield from zip(keys[starts].tolist(), (srt[a:b] for a, b in zip(starts, [*cuts, len(srt)])))
