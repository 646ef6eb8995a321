"""GrpcMarketDataClient: the SDK's market-data client over gRPC (service microex.MarketData), with local books.

    md = await GrpcMarketDataClient.connect("127.0.0.1:9003", on_trade=print)
    await md.subscribe(1)                  # one Subscribe stream: snapshot, then increments
    book = await md.wait_synced(1)         # an OrderBookReplica, kept exact like MarketDataClient's
    top = await md.snapshot(1, depth=5)    # a one-off book (the Snapshot method)

How it works. Every subscribed instrument has its own server stream (Subscribe,
request = one SUBSCRIBE frame; HTTP/2 multiplexes them over one channel), whose
messages (runs of the feed's frames, docs/marketdata.md) go into a sans-I/O
`MarketDataProtocol` (client/md_protocol.py), the one the TCP MarketDataClient uses:
the same OrderBookReplica, the same handling of duplicates, conflation bundles and
RESYNC. Callbacks and accessors are MarketDataClient's: on_book(instrument,
replica), on_trade(record), on_candle / on_ticker / on_bbo (record), on_status.
- A gap cannot be healed with SNAPSHOT_REQUEST (the stream is one-way, and one
  ordered stream has no gaps unless something broke): when the protocol asks for a
  snapshot, the client subscribes again on a new stream, which brings a fresh FULL
  snapshot (`resubscribes` counts it; `book(i)` is then a new replica).
- A stream that ends or fails (server restart, SLOW_CONSUMER drop = RESOURCE_EXHAUSTED)
  is opened again with exponential back-off, also a fresh snapshot; INVALID_ARGUMENT
  (unknown instrument, bad flags: the ERROR frames are in `errors`) is final. The
  server heartbeats idle streams every second; `timeout_s` of silence restarts one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import grpc
import numpy as np

from microex.client.md_book import OrderBookReplica, warm_up
from microex.client.md_events import FeedEvents
from microex.client.md_protocol import MarketDataProtocol
from microex.core.records import MD_UPDATE, MdMsg
from microex.core.raw import concat
from microex.protocol.md_binary import SERVER_MESSAGES, DecodeError, MdDecoder, MdFrameEncoder, SubFlag


SUBSCRIBE_METHOD = "/microex.MarketData/Subscribe"
SNAPSHOT_METHOD = "/microex.MarketData/Snapshot"
CHANNEL_OPTIONS = (("grpc.max_receive_message_length", -1),)


class _Feed:
    """One instrument's stream: its protocol (replica) and the task reading it."""

    __slots__ = ("instrument", "flags", "depth", "proto", "call", "task", "last_rx", "stale", "restarts",
                 "resubscribes", "final")

    def __init__(self, instrument: int, flags: int, depth: int) -> None:
        self.instrument, self.flags, self.depth = instrument, flags, depth
        self.proto: MarketDataProtocol | None = None
        self.call = None
        self.task: asyncio.Task | None = None
        self.last_rx = time.monotonic()
        self.stale = False
        self.restarts = self.resubscribes = 0
        self.final: grpc.aio.AioRpcError | None = None


class GrpcMarketDataClient(FeedEvents):
    def __init__(self, target: str, *, reconnect: bool = True, timeout: float = 5.0, timeout_s: float = 5.0,
                 reconnect_delay_s: float = 0.05, max_reconnect_delay_s: float = 2.0,
                 options: tuple = ()) -> None:
        super().__init__()
        self.target, self.reconnect, self.timeout, self.timeout_s = target, reconnect, timeout, timeout_s
        self.reconnect_delay_s, self.max_reconnect_delay_s = reconnect_delay_s, max_reconnect_delay_s
        self.feeds: dict[int, _Feed] = {}
        self.reconnects = 0
        self._channel = grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS + tuple(options))
        self._subscribe = self._channel.unary_stream(SUBSCRIBE_METHOD)
        self._snapshot = self._channel.unary_unary(SNAPSHOT_METHOD)
        self._closing = False
        self._timer: asyncio.Task | None = None

    @classmethod
    async def connect(cls, target: str, port: int | None = None, *, on_book: Callable | None = None,
                      on_trade: Callable | None = None, on_candle: Callable | None = None,
                      **options) -> GrpcMarketDataClient:
        """target "host:port" (or host, port). Waits until the channel is up: ConnectionError otherwise."""
        warm_up()  # compile the replica kernel before the stream
        client = cls(target if port is None else f"{target}:{port}", **options)
        client._add_callbacks(on_book, on_trade, on_candle)
        try:
            async with asyncio.timeout(client.timeout):
                await client._channel.channel_ready()
        except TimeoutError as e:
            await client._channel.close()
            raise ConnectionError(f"cannot connect to gRPC market data at {client.target}") from e
        client._timer = asyncio.get_running_loop().create_task(client._watch())
        return client

    async def __aenter__(self) -> GrpcMarketDataClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    # -- subscriptions -------------------------------------------------------------------------

    async def subscribe(self, instrument: int, flags: int = SubFlag.DEFAULT, depth: int = 0) -> None:
        """Open instrument's stream (a re-subscribe replaces it: a fresh snapshot)."""
        await self.unsubscribe(instrument)
        feed = self.feeds[instrument] = _Feed(instrument, int(flags) or int(SubFlag.DEFAULT), depth)
        self._start(feed)
        feed.task = asyncio.get_running_loop().create_task(self._run(feed))

    async def unsubscribe(self, instrument: int) -> None:
        feed = self.feeds.pop(instrument, None)
        if feed is not None and feed.task is not None:
            feed.task.cancel()
            try:
                await feed.task
            except asyncio.CancelledError:
                pass

    def book(self, instrument: int) -> OrderBookReplica | None:
        """The current replica of a subscribed instrument (None without BOOK)."""
        feed = self.feeds.get(instrument)
        sync = feed.proto.books.get(instrument) if feed is not None and feed.proto is not None else None
        return sync.replica if sync is not None else None

    def synced(self, instrument: int) -> bool:
        feed = self.feeds.get(instrument)
        sync = feed.proto.books.get(instrument) if feed is not None and feed.proto is not None else None
        return bool(sync is not None and sync.live)

    async def wait_synced(self, instrument: int, timeout: float | None = 10.0) -> OrderBookReplica:
        await self.wait_until(lambda: self.synced(instrument), timeout)
        return self.book(instrument)

    def stats(self) -> dict[int, dict[str, int]]:
        out = {}
        for i, feed in self.feeds.items():
            s = feed.proto.books.get(i) if feed.proto is not None else None
            row = {"restarts": feed.restarts, "resubscribes": feed.resubscribes}
            if s is not None:
                row.update(md_seq=s.replica.md_seq, gaps=s.gaps, resyncs=s.resyncs, duplicates=s.duplicates)
            out[i] = row
        return out

    async def snapshot(self, instrument: int, depth: int = 0, timeout: float | None = 5.0) -> OrderBookReplica:
        """The book now (Snapshot method): a replica at the snapshot's md_seq, depth levels per side (0: all).
        LookupError if the server answered ERROR (e.g. UNKNOWN_INSTRUMENT)."""
        data = await self._snapshot(MdFrameEncoder().snapshot_request(instrument, depth), timeout=timeout)
        begin, parts = None, []
        for item in MdDecoder(SERVER_MESSAGES).feed(data):
            if isinstance(item, DecodeError):
                raise ValueError(f"bad snapshot frames (reason {int(item.reason)})")
            t, recs = item
            if t == MdMsg.ERROR:
                raise LookupError(f"snapshot of {instrument} refused (reason {int(recs[0]['reason'])})")
            if t == MdMsg.SNAPSHOT_BEGIN:
                begin = recs[0]
            elif t == MdMsg.SNAPSHOT_LEVEL:
                parts.append(recs)
        if begin is None:
            raise ValueError("no snapshot in the answer")
        replica = OrderBookReplica(instrument)
        replica.load_snapshot(concat(parts, MD_UPDATE) if parts else np.zeros(0, MD_UPDATE), int(begin["md_seq"]))
        return replica

    # -- streams -------------------------------------------------------------------------------

    def _start(self, feed: _Feed) -> None:
        """A new protocol (a new replica) and a new Subscribe call for it."""
        feed.proto = MarketDataProtocol()
        feed.call = self._subscribe(feed.proto.subscribe(feed.instrument, feed.flags, feed.depth))
        feed.last_rx = time.monotonic()
        feed.stale = False
        self._changed.set()

    async def _run(self, feed: _Feed) -> None:
        delay = self.reconnect_delay_s
        while True:
            call, got = feed.call, False
            again_now = False
            try:
                while True:
                    msg = await call.read()
                    if msg is grpc.aio.EOF:
                        break
                    got = True
                    feed.last_rx = time.monotonic()
                    if self._on_data(feed, msg):  # a gap: a new stream brings a fresh snapshot
                        feed.resubscribes += 1
                        again_now = True
                        break
            except asyncio.CancelledError:
                if not feed.stale or asyncio.current_task().cancelling():
                    call.cancel()
                    raise
                self.last_error = ConnectionError(f"gRPC market data stream silent for {self.timeout_s}s")
            except grpc.aio.AioRpcError as e:
                self.last_error = e
                if e.code() == grpc.StatusCode.INVALID_ARGUMENT:
                    feed.final = e
                    self._changed.set()
                    return
            call.cancel()
            self._changed.set()
            if self._closing or not self.reconnect and not again_now:
                return
            if not again_now:
                delay = self.reconnect_delay_s if got else min(delay * 2, self.max_reconnect_delay_s)
                await asyncio.sleep(delay)
                self.reconnects += 1
                feed.restarts += 1
            self._start(feed)

    async def _watch(self) -> None:
        """Restart streams silent for timeout_s (the server heartbeats idle ones every second)."""
        while not self._closing:
            await asyncio.sleep(self.timeout_s / 4)
            now = time.monotonic()
            for feed in list(self.feeds.values()):
                if now - feed.last_rx > self.timeout_s and feed.call is not None and not feed.call.done():
                    feed.stale = True
                    feed.call.cancel()

    def _on_data(self, feed: _Feed, data: bytes) -> bool:
        """Feed one message; True: the protocol wants a snapshot (resubscribe)."""
        if self._dispatch(feed.proto, data) is not None:
            return True
        return bool(feed.proto.take_output())

    async def close(self) -> None:
        self._closing = True
        if self._timer is not None:
            self._timer.cancel()
        for i in list(self.feeds):
            await self.unsubscribe(i)
        await self._channel.close()
