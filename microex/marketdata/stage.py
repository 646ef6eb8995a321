"""The market-data stage's logic, without I/O: events in, subscriber bytes out, on a clock it is given.

How it works
- `FeedSessions` is the request side of a feed (live or replayed): one MdDecoder per
  connection; SUBSCRIBE / UNSUBSCRIBE / SNAPSHOT_REQUEST go to the Fanout, HEARTBEAT
  is only proof of life; a bad frame is answered with ERROR(reason, its type, its
  seq), and a frame that cannot be resynced closes the connection (on_bytes -> False).
- `MarketDataStage` adds the live part: `on_events(events)` (an outbound-ring batch,
  views) applies them to MarketState in one kernel call, skipping events of commands
  <= min_seq (already in the state rebuilt at start-up), and publishes the
  increments, BBO changes and closed candles (and records them). With
  `defer=True` (the live process) publishing only queues them and `step()` sends
  one instrument's worth: the ring source alternates polls and steps, so at 1,000
  subscribers an update waits for one round of instrument sends, not for a whole
  fan-out to end and then its place in the next; `on_timer(now_ns)`
  (every ~100 ms) closes the candles whose bucket ended `CANDLE_GRACE_NS` ago and,
  once a second, publishes the running candles that changed, every ticker and the
  periodic books, and flushes the recording.
- Single-threaded: snapshots are taken between two batches, so a snapshot at md_seq S
  is always followed, on the same connection, by increments S+1, S+2...
Invariants: nothing here blocks (slow subscribers are the Fanout's business); the
recording holds exactly the bytes published to a subscriber of everything.
"""

from __future__ import annotations

import time

import numpy as np

from microex.core.records import MdMsg
from microex.marketdata.fanout import Fanout
from microex.marketdata.subscription import Transport
from microex.marketdata.recording import Recorder
from microex.marketdata.state import MarketState
from microex.protocol.md_binary import CLIENT_MESSAGES, DecodeError, MdDecoder, SubFlag, error

CANDLE_GRACE_NS = 250_000_000  # engine time is receive time: let late events of a bucket arrive
SECOND_NS = 1_000_000_000


class FeedSessions:
    def __init__(self, fanout: Fanout) -> None:
        self.fanout = fanout
        self.decoders: dict[int, MdDecoder] = {}

    def connect(self, sub_id: int, transport: Transport) -> None:
        self.decoders[sub_id] = MdDecoder(CLIENT_MESSAGES)
        self.fanout.add(sub_id, transport)

    def disconnect(self, sub_id: int) -> None:
        self.decoders.pop(sub_id, None)
        self.fanout.remove(sub_id)

    def on_bytes(self, sub_id: int, data: bytes) -> bool:
        """Handle a read's worth of client frames; False: close the connection."""
        dec = self.decoders.get(sub_id)
        sub = self.fanout.subscribers.get(sub_id)
        if dec is None or sub is None:
            return False
        fan = self.fanout
        for item in dec.feed(data):
            if isinstance(item, DecodeError):
                sub.transport.write(error(item.reason, item.msg_type, item.seq))
                if item.closing:
                    return False
                continue
            t, recs = item
            if t == MdMsg.SUBSCRIBE:
                for r in recs:
                    fan.subscribe(sub_id, int(r["instrument"]), int(r["depth"]), int(r["flags"]), int(r["seq"]))
            elif t == MdMsg.UNSUBSCRIBE:
                for r in recs:
                    fan.unsubscribe(sub_id, int(r["instrument"]), int(r["seq"]))
            elif t == MdMsg.SNAPSHOT_REQUEST:
                for r in recs:
                    fan.snapshot_request(sub_id, int(r["instrument"]), int(r["depth"]), int(r["seq"]))
            if sub_id not in fan.subscribers:  # dropped as a slow consumer while answering
                return False
        return True

    def on_timer(self, now_ns: int) -> None:
        self.fanout.check_conflated()


class MarketDataStage(FeedSessions):
    def __init__(self, state: MarketState, *, min_seq: int = 0, recorder: Recorder | None = None,
                 **fanout_options) -> None:
        super().__init__(Fanout(state, **fanout_options))
        self.state = state
        self.min_seq = min_seq
        self.recorder = recorder
        self.stats = {"events": 0, "updates": 0, "batches": 0}
        self._next_second = 0

    def on_events(self, events: np.ndarray) -> None:
        out = self.state.apply(events, self.min_seq)
        self.stats["events"] += len(events)
        self.stats["batches"] += 1
        if len(out.updates) or len(out.bbo) or len(out.candles):
            self.stats["updates"] += len(out.updates)
            self.fanout.publish(out.updates, out.bbo, out.candles)
            if self.recorder is not None:
                self.recorder.write(out.updates, out.bbo, out.candles)

    def step(self) -> bool:
        """With a deferring Fanout: send one instrument's pending updates; True while more are pending."""
        return self.fanout.flush_next()

    def on_timer(self, now_ns: int | None = None) -> None:
        now = time.time_ns() if now_ns is None else now_ns
        closed = self.state.close_candles(now, CANDLE_GRACE_NS)
        if len(closed):
            self._publish(closed, SubFlag.CANDLES)
        if now >= self._next_second:
            self._next_second = now - now % SECOND_NS + SECOND_NS
            running = self.state.running_candles()
            if len(running):
                self._publish(running, SubFlag.CANDLES)
            self._publish(self.state.tickers(now), SubFlag.TICKER)
            self.fanout.publish_books()
            if self.recorder is not None:
                self.recorder.flush()
        self.fanout.check_conflated()

    def _publish(self, recs: np.ndarray, flag: int) -> None:
        self.fanout.publish_records(recs, flag)
        if self.recorder is not None:
            self.recorder.write(recs)

    def close(self) -> None:
        self.fanout.shutdown()
        if self.recorder is not None:
            self.recorder.close()
