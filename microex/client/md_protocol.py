"""The SDK's market-data feed, sans-I/O: bytes in, book replicas and typed events out.

How it works. `MarketDataProtocol` is one connection's worth of state: `subscribe`
etc. return the frames to send; `feed(data)` decodes what arrived (MdDecoder) and
returns events in stream order; `take_output()` hands over the frames the protocol
itself wants sent (snapshot requests when it resyncs). Per instrument a `BookSync`
keeps an OrderBookReplica:

  | state   | INCREMENT seq == md_seq + 1 | seq <= md_seq | seq > md_seq + 1        | FULL snapshot at S            |
  |---------|-----------------------------|---------------|-------------------------|-------------------------------|
  | LIVE    | applied                     | ignored       | -> SYNCING, ask, buffer | S > md_seq: replaces the book |
  | SYNCING | buffered                    | buffered      | buffered                | loaded, then the buffer > S   |

  (A snapshot no newer than a SYNCING replica's md_seq is not loaded either: the replica
  is exact up to its gap, and going back would apply buffered duplicates twice. A
  multicast replica that healed while its request was out ignores the answer: going
  back would make the datagrams in flight duplicates and lose their trades.)

- SYNCING holds the increments (and conflated bundles) that arrive, sorted by seq;
  after every arrival it tries to heal from the replica's md_seq (a reordering heals
  without the snapshot) and after a snapshot it applies what is newer than it. What
  connects is applied and the state is LIVE again; a remaining gap waits for the
  next snapshot (one request outstanding at a time; RESYNC from the server means a
  snapshot is on its way).
- A conflated bundle (PARTIAL, first_seq F, md_seq T): applied when F <= md_seq + 1
  (its levels are absolute states at T), ignored when T <= md_seq, else a gap.
- Events: BookChanged(instrument) once per feed per changed book, Trades (MD_UPDATE
  kind TRADE records, applied ones only: never a duplicate), Records for BBO,
  CANDLE and TICKER runs, Status, Error, Violation (bad frames; closing ones end the
  connection). feed never raises on content.
- Multicast: `subscribe_multicast(i)` subscribes with RECOVERY (no stream over TCP)
  and asks for a snapshot at once; `feed_datagram(data)` takes one UDP datagram (whole
  frames of one instrument: increments, BBO, candles, tickers) into the same BookSync,
  so loss, duplicates and reordering heal as above, snapshots coming over TCP (`feed`).
  A datagram is decoded on its own: a cut frame at its end is dropped (`truncated`),
  a framing error drops the rest of it, and neither touches the TCP decoder.
- Sequence hints: a BBO or TICKER record carries the md_seq of the book it was taken
  from. A LIVE replica behind it has lost increments that no later increment revealed
  (the last datagram before an instrument went quiet): it goes SYNCING and asks, and
  becomes LIVE only once it reaches that md_seq. The venue publishes every ticker
  once a second, so such a loss is found within a second (MoldUDP64's heartbeats).
Invariant: a LIVE replica equals the venue's book at its md_seq (the tests inject
gaps, duplicates and reordering and compare with the venue's MarketState).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from microex.client.md_book import OrderBookReplica
from microex.core.records import MD_UPDATE, BookFlag, MdKind, MdMsg
from microex.core.raw import concat, take
from microex.protocol.md_binary import (
    SERVER_MESSAGES,
    DecodeError,
    MdDecoder,
    MdFrameEncoder,
    SubFlag,
)

MAX_BUFFERED = 1 << 16  # increments held per instrument while syncing (the oldest go first)
# what a datagram may carry; HEARTBEAT too, so a sender may keep an idle group alive. Never
# snapshot or control frames: those belong to the TCP stream (a split snapshot in flight there)
DATAGRAM_MESSAGES = frozenset({MdMsg.INCREMENT, MdMsg.BBO, MdMsg.CANDLE, MdMsg.TICKER, MdMsg.HEARTBEAT})
MULTICAST_FLAGS = int(SubFlag.DEFAULT | SubFlag.RECOVERY)  # a group carries every stream of its instrument


class BookChanged(NamedTuple):
    instrument: int
    replica: OrderBookReplica


class Trades(NamedTuple):
    instrument: int
    records: np.ndarray  # MD_UPDATE, kind TRADE, in seq order


class Records(NamedTuple):
    msg_type: MdMsg  # BBO, CANDLE, TICKER
    records: np.ndarray


class Status(NamedTuple):
    instrument: int
    status: int  # MdStatus
    md_seq: int
    reason: int


class Error(NamedTuple):
    reason: int
    ref_type: int
    ref_seq: int


class Violation(NamedTuple):
    reason: int
    closing: bool


class BookSync:
    """One instrument's replica and its resync state."""

    def __init__(self, instrument: int, multicast: bool = False) -> None:
        self.instrument = instrument
        self.multicast = multicast  # increments by datagram, snapshots only as answers to our requests
        self.replica = OrderBookReplica(instrument)
        self.live = False
        self.requested = True  # a SUBSCRIBE with BOOK brings a snapshot
        self.pending: list[np.ndarray] = []  # buffered increments (arrays, this instrument)
        self.bundles: list[tuple[int, int, np.ndarray]] = []  # buffered (first, last, levels)
        self.gaps = self.resyncs = self.duplicates = 0
        self.floor_seq = 0  # the venue's md_seq as a BBO or TICKER last said: LIVE needs at least it

    def on_increments(self, recs: np.ndarray, out: list) -> bool:
        """Returns True if a snapshot should be requested."""
        if self.live:
            stop, gap, applied = self.replica.apply_increments(recs)
            self.duplicates += int(len(applied) - applied.sum())
            self._emit_trades(take(recs[:stop], applied), out)
            if not gap:
                return False
            self.gaps += 1
            self.live = False
            recs = recs[stop:]
        self.pending.append(recs)
        held = sum(len(p) for p in self.pending)
        while held > MAX_BUFFERED and len(self.pending) > 1:
            held -= len(self.pending.pop(0))
        return self._heal(out)

    def on_bundle(self, first: int, last: int, levels: np.ndarray, out: list) -> bool:
        if not self.live:
            self.bundles.append((first, last, levels))
            return self._heal(out)
        r = self.replica
        if last <= r.md_seq:
            return False
        if first <= r.md_seq + 1:
            r.apply_levels(levels)
            r.md_seq = last
            return False
        self.gaps += 1
        self.live = False
        self.bundles.append((first, last, levels))
        return self._heal(out)

    def on_snapshot(self, seq: int, levels: np.ndarray, out: list) -> bool:
        self.requested = False
        r = self.replica
        if self.live and self.multicast:
            # healed meanwhile (a late datagram): the answer only repeats what the datagrams bring,
            # and loading it would turn increments still in flight into duplicates, their trades lost
            return False
        if r.valid and seq <= r.md_seq:
            return False if self.live else self._heal(out)
        r.load_snapshot(levels, seq)
        self.resyncs += 1
        return self._heal(out)

    def on_seq_hint(self, seq: int) -> bool:
        """A BBO or TICKER record says the venue's book was at md_seq `seq`. A LIVE replica behind
        it missed increments that nothing after them revealed (the last datagram of a quiet
        instrument: the tickers, once a second, are the feed's sequence heartbeat). True: ask."""
        self.floor_seq = max(self.floor_seq, seq)
        if not self.live or seq <= self.replica.md_seq:
            return False
        self.gaps += 1
        self.live = False
        if self.requested:
            return False
        self.requested = True
        return True

    def on_resync(self) -> None:
        """The server said our stream broke and a snapshot follows."""
        self.live = False
        self.requested = True

    def _heal(self, out: list) -> bool:
        """Apply what connects to the replica's md_seq; LIVE if nothing is left. True: ask for a snapshot."""
        r = self.replica
        if r.valid:
            incs = concat(self.pending, MD_UPDATE)
            incs = take(incs, np.argsort(incs["md_seq"], kind="stable"))
            bundles = sorted(self.bundles)
            pos = 0
            while True:
                stop, gap, applied = r.apply_increments(incs, pos)
                self._emit_trades(take(incs[pos:stop], applied), out)
                pos = stop
                if not gap:
                    break
                nxt = [b for b in bundles if b[0] <= r.md_seq + 1 < b[1] + 1]
                if not nxt:
                    break
                _, last, levels = nxt[0]
                bundles.remove(nxt[0])
                r.apply_levels(levels)
                r.md_seq = last
            self.pending = [incs[pos:]] if pos < len(incs) else []
            self.bundles = [b for b in bundles if b[1] > r.md_seq]
            if not self.pending and not self.bundles and r.md_seq >= self.floor_seq:
                self.live = True
                return False
        if self.requested:
            return False
        self.requested = True
        return True

    def _emit_trades(self, applied: np.ndarray, out: list) -> None:
        if len(applied):
            trades = take(applied, applied["kind"] == MdKind.TRADE)
            if len(trades):
                out.append(Trades(self.instrument, trades))


class _DatagramDecoder(MdDecoder):
    """Decodes whole datagrams: nothing carries over from one to the next."""

    def feed_whole(self, data: bytes) -> tuple[list, bool]:
        """(items, whether a cut frame was dropped at the end); a closing error closes nothing."""
        items = self.feed(data)
        cut = self.buffered > 0
        self.reset()
        return [e._replace(closing=False) if isinstance(e, DecodeError) else e for e in items], cut


class MarketDataProtocol:
    def __init__(self) -> None:
        self.decoder = MdDecoder(SERVER_MESSAGES)
        self.datagram_decoder = _DatagramDecoder(DATAGRAM_MESSAGES, check_sequence=False)
        self.datagrams = self.truncated = 0
        self.encoder = MdFrameEncoder()
        self.books: dict[int, BookSync] = {}
        self.flags: dict[int, int] = {}
        self._out: list[bytes] = []
        self._snap: tuple | None = None  # (begin record, [level arrays]) while a book is arriving

    # -- outgoing ------------------------------------------------------------------------------

    def subscribe(self, instrument: int, flags: int = SubFlag.DEFAULT, depth: int = 0) -> bytes:
        flags = int(flags) or int(SubFlag.DEFAULT)
        self.flags[instrument] = flags
        if flags & SubFlag.BOOK:
            self.books[instrument] = BookSync(instrument)
        return self.encoder.subscribe(instrument, depth, flags)

    def subscribe_multicast(self, instrument: int) -> bytes:
        """The TCP frames of a multicast receiver: SUBSCRIBE RECOVERY (heartbeats and answers only)
        and the first SNAPSHOT_REQUEST; the increments then come through feed_datagram."""
        self.flags[instrument] = MULTICAST_FLAGS
        self.books[instrument] = BookSync(instrument, multicast=True)
        return (self.encoder.subscribe(instrument, 0, SubFlag.RECOVERY)
                + self.encoder.snapshot_request(instrument, 0))

    def unsubscribe(self, instrument: int) -> bytes:
        self.flags.pop(instrument, None)
        self.books.pop(instrument, None)
        return self.encoder.unsubscribe(instrument)

    def snapshot_request(self, instrument: int) -> bytes:
        return self.encoder.snapshot_request(instrument, 0)

    def heartbeat(self) -> bytes:
        return self.encoder.heartbeat()

    def take_output(self) -> bytes:
        data = b"".join(self._out)
        self._out.clear()
        return data

    def _request(self, instrument: int) -> None:
        self._out.append(self.encoder.snapshot_request(instrument, 0))

    # -- incoming ------------------------------------------------------------------------------

    def feed(self, data: bytes) -> list:
        """Bytes from the TCP stream (any split)."""
        return self._events(self.decoder.feed(data))

    def feed_datagram(self, data: bytes) -> list:
        """One whole datagram of the multicast feed."""
        items, cut = self.datagram_decoder.feed_whole(data)
        self.datagrams += 1
        self.truncated += cut
        return self._events(items)

    def _events(self, items: list) -> list:
        out: list = []
        changed: dict[int, None] = {}
        for item in items:
            self._item(item, out, changed)
        for i in changed:
            out.append(BookChanged(i, self.books[i].replica))
        return out

    def _item(self, item, out: list, changed: dict) -> None:
        if isinstance(item, DecodeError):
            out.append(Violation(int(item.reason), item.closing))
            return
        t, recs = item
        if t == MdMsg.INCREMENT:
            self._increments(recs, out, changed)
        elif t == MdMsg.SNAPSHOT_BEGIN:
            self._snap = (recs[-1], [])
        elif t == MdMsg.SNAPSHOT_LEVEL:
            if self._snap is not None:
                self._snap[1].append(recs)
        elif t == MdMsg.SNAPSHOT_END:
            self._book_end(recs[-1], out, changed)
        elif t == MdMsg.STATUS:
            out.extend(Status(int(r["instrument"]), int(r["status"]), int(r["md_seq"]), int(r["reason"]))
                       for r in recs)
        elif t == MdMsg.RESYNC:
            for r in recs:
                sync = self.books.get(int(r["instrument"]))
                if sync is not None:
                    sync.on_resync()
        elif t == MdMsg.ERROR:
            out.extend(Error(int(r["reason"]), int(r["ref_type"]), int(r["ref_seq"])) for r in recs)
        elif t in (MdMsg.BBO, MdMsg.CANDLE, MdMsg.TICKER):
            out.append(Records(t, recs))
            if t != MdMsg.CANDLE:
                for i, seq in zip(recs["instrument"].tolist(), recs["md_seq"].tolist()):
                    sync = self.books.get(i)
                    if sync is not None and sync.on_seq_hint(seq):
                        self._request(i)

    def _increments(self, recs: np.ndarray, out: list, changed: dict) -> None:
        inst = recs["instrument"]
        groups = [int(inst[0])] if (inst == inst[0]).all() else np.unique(inst).tolist()
        for i in groups:
            seg = recs if len(groups) == 1 else take(recs, inst == i)
            sync = self.books.get(i)
            if sync is None:  # trades-only subscription (or not subscribed): hand trades on as they are
                trades = take(seg, seg["kind"] == MdKind.TRADE)
                if len(trades) and i in self.flags:
                    out.append(Trades(i, trades))
                continue
            before = sync.replica.md_seq
            if sync.on_increments(seg, out):
                self._request(i)
            if sync.replica.md_seq != before:
                changed[i] = None

    def _book_end(self, end: np.void, out: list, changed: dict) -> None:
        snap, self._snap = self._snap, None
        if snap is None:
            return
        begin, parts = snap
        i = int(begin["instrument"])
        levels = concat(parts, MD_UPDATE)
        if (int(end["instrument"]) != i or int(end["md_seq"]) != int(begin["md_seq"])
                or len(levels) != int(begin["levels"]) or (len(levels) and (levels["instrument"] != i).any())):
            out.append(Violation(0, False))  # a torn book: ignore it; a later gap or request repairs
            return
        sync = self.books.get(i)
        if sync is None:
            return
        flags, seq = int(begin["flags"]), int(begin["md_seq"])
        if flags & BookFlag.PARTIAL:
            ask = sync.on_bundle(int(begin["first_seq"]), seq, levels, out)
        elif flags & BookFlag.FULL and not flags & BookFlag.TRUNCATED:
            ask = sync.on_snapshot(seq, levels, out)
        else:
            return  # a depth-limited book cannot seed a replica
        if ask:
            self._request(i)
        changed[i] = None
