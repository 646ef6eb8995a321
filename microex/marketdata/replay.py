"""Replay a market-data recording to subscribers, at the original pace or faster (`microex md replay`).

How it works
- `ReplayBooks` is the Fanout's BookSource for a replay: the recording's frames go
  through the SDK's own MarketDataProtocol (every instrument subscribed), so its
  replicas are the books a subscriber of everything would have had, and snapshots
  for new subscribers are made from them at their md_seq.
- `ReplayFeed` is a FeedSessions (subscribers connect and subscribe as to the live
  stage). `run` first loads the recording's leading snapshots into the books, then
  publishes its frames in order, paced by their time stamps: a record stamped t is
  published at start + (t - t0) / speed (records without a stamp, candles, go with
  the ones before them; speed 0: as fast as possible). Increments are applied to the
  books before they are published, so a snapshot between two publishes is exact.
  At the end every subscriber gets STATUS END (reason REPLAY_END).
Invariant: a subscriber of a replay sees the md_seqs, books and trades the live feed
had, so the SDK's gap detection and resync work unchanged.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np

from microex.client.md_protocol import MarketDataProtocol
from microex.core.records import BookCause, MdMsg, MdReason
from microex.marketdata.fanout import Fanout
from microex.marketdata.recording import read_header, read_recording
from microex.marketdata.stage import FeedSessions
from microex.marketdata.state import SEQ_MASK, snapshot_frames
from microex.protocol.md_binary import MdStatus, SubFlag, status

_STAMPED = (MdMsg.INCREMENT, MdMsg.BBO, MdMsg.TICKER)
_FLAG = {MdMsg.BBO: SubFlag.BBO, MdMsg.CANDLE: SubFlag.CANDLES, MdMsg.TICKER: SubFlag.TICKER}


class ReplayBooks:
    def __init__(self, n_instruments: int) -> None:
        self.n_instruments = n_instruments
        self.proto = MarketDataProtocol()
        for i in range(1, n_instruments + 1):
            self.proto.subscribe(i, SubFlag.BOOK)
        self.gaps = 0

    def feed(self, frames: bytes) -> None:
        self.proto.feed(frames)
        if self.proto.take_output():  # it asked for a snapshot: the recording has a hole
            self.gaps += 1

    def _replica(self, i: int):
        return self.proto.books[i].replica

    def md_seq(self, instrument: int) -> int:
        return self._replica(instrument).md_seq

    def snapshot(self, instrument: int, depth: int = 0, cause: int = BookCause.REQUEST) -> tuple[int, bytes]:
        r = self._replica(instrument)
        bids, asks = r.levels(1, depth), r.levels(2, depth)
        truncated = depth > 0 and (int(r.nlev[0]) > depth or int(r.nlev[1]) > depth)
        return r.md_seq, snapshot_frames(instrument, r.md_seq, 0, 0, bids, asks, depth, truncated, cause)

    def bbo_record(self, instrument: int) -> np.ndarray:
        from microex.core.records import MD_BBO

        r = self._replica(instrument)
        rec = np.zeros(1, MD_BBO)
        rec["length"], rec["msg_type"], rec["seq"], rec["md_seq"] = 64, MdMsg.BBO, r.md_seq & SEQ_MASK, r.md_seq
        (rec["bid_price"], rec["bid_qty"]), (rec["ask_price"], rec["ask_qty"]) = r.best_bid(), r.best_ask()
        rec["instrument"] = instrument
        return rec


class ReplayFeed(FeedSessions):
    def __init__(self, path: str | Path, speed: float = 1.0, **fanout_options) -> None:
        self.path = Path(path)
        self.header = read_header(self.path)
        self.books = ReplayBooks(self.header["n_instruments"])
        super().__init__(Fanout(self.books, **fanout_options))
        self.speed = speed
        self.published = 0
        self.done = False

    async def run(self, wait_subscribers: int = 0) -> None:
        runs = read_recording(self.path)
        pending = None
        for run in runs:  # the leading snapshots seed the books
            if run.msg_type in (MdMsg.SNAPSHOT_BEGIN, MdMsg.SNAPSHOT_LEVEL, MdMsg.SNAPSHOT_END):
                self.books.feed(run.records.tobytes())
                continue
            pending = run
            break
        while len(self.fanout.subscribers) < wait_subscribers:
            await asyncio.sleep(0.01)
        t0 = wall0 = None
        last_due = 0.0
        for run in _chain(pending, runs):
            t, recs = run
            if t in (MdMsg.SNAPSHOT_BEGIN, MdMsg.SNAPSHOT_LEVEL, MdMsg.SNAPSHOT_END):
                self.books.feed(recs.tobytes())  # a later full book (not published: subscribers have theirs)
                continue
            if t not in _STAMPED:
                self._publish(t, recs)
                continue
            ts = recs["ts_ns"]
            if t0 is None:
                t0, wall0 = int(ts[0]), time.monotonic()
            if self.speed <= 0:
                self._publish(t, recs)
                await asyncio.sleep(0)
                continue
            due = np.maximum.accumulate(wall0 + (ts - t0) / 1e9 / self.speed)
            due = np.maximum(due, last_due)
            k = 0
            while k < len(recs):
                now = time.monotonic()
                j = max(int(np.searchsorted(due, now, side="right")), k + 1) if due[k] <= now else k
                if j > k:
                    self._publish(t, recs[k:j])
                    k = j
                    await asyncio.sleep(0)
                else:
                    await asyncio.sleep(min(due[k] - now, 0.05))
            last_due = float(due[-1])
        for sub in list(self.fanout.subscribers.values()):
            for i in sub.subs:
                sub.transport.write(status(i, MdStatus.END, self.books.md_seq(i), MdReason.REPLAY_END))
        self.done = True

    def _publish(self, t: MdMsg, recs: np.ndarray) -> None:
        self.published += len(recs)
        if t == MdMsg.INCREMENT:
            self.books.feed(recs.tobytes())
            self.fanout.publish(recs)
        else:
            self.fanout.publish_records(recs, _FLAG[t])


def _chain(first, rest):
    if first is not None:
        yield first
    yield from rest


async def replay(path: str, speed: float, host: str, port: int, wait_subscribers: int = 0, linger_s: float = 1.0,
                 ready=None) -> ReplayFeed:
    from microex.marketdata.server import MdServer

    feed = ReplayFeed(path, speed)
    server = MdServer(feed)
    bound = await server.start(host, port)
    if ready is not None:
        ready(bound)
    try:
        await feed.run(wait_subscribers)
        await asyncio.sleep(linger_s)
    finally:
        await server.close()
    return feed


def main(args) -> int:
    from rich.console import Console

    console = Console()

    def ready(port: int) -> None:
        console.print(f"replaying {args.file} at {'full speed' if args.speed <= 0 else f'{args.speed}x'} "
                      f"on {args.host}:{port}")

    try:
        import uvloop
        run = uvloop.run
    except ImportError:
        run = asyncio.run
    feed = run(replay(args.file, args.speed, args.host, args.port, args.wait_subscribers, args.linger, ready))
    console.print(f"replayed {feed.published:,} records" + (f" ({feed.books.gaps} gaps)" if feed.books.gaps else ""))
    return 0
