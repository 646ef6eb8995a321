"""MarketDataClient: the async SDK for the binary market-data feed, with local book replicas.

    md = await MarketDataClient.connect("127.0.0.1", 9002, on_book=print_top)
    await md.subscribe(1)                  # snapshot, then increments: md.book(1) stays exact
    await md.wait_synced(1)
    bid, ask = md.book(1).best_bid(), md.book(1).best_ask()

How it works. One TCP connection (an asyncio.Protocol, TCP_NODELAY) feeds a sans-I/O
`MarketDataProtocol` (client/md_protocol.py), which keeps an `OrderBookReplica` per
instrument and resyncs by itself: a gap in md_seq makes it buffer increments, ask for
a snapshot and apply what is newer than it; duplicates and old seqs are ignored. This
module only moves bytes, runs the heartbeat timer and the reconnect, and calls back:
on_book(instrument, replica) once per received chunk that changed a synced book,
on_trade(record) per trade (MD_UPDATE kind TRADE), on_candle / on_ticker / on_bbo
(record), on_status(Status). Callbacks run on the event loop; a failing one is logged.
- Heartbeats: a HEARTBEAT after `heartbeat_s` without sending; a server silent for
  `timeout_s` (it heartbeats every second) counts as a lost connection.
- Reconnect: when the connection drops (and close() was not called) the client
  reconnects with exponential back-off and subscribes again; each book starts afresh
  from a new snapshot (`book(i)` is then a new replica; `synced(i)` is False until it
  has its snapshot).
- Multicast (`multicast=(base, port)`): `subscribe(i)` joins group base + i on `port`
  (client/md_multicast.py, on `multicast_interface`) and subscribes over TCP with
  RECOVERY: the TCP connection then carries only heartbeats and the snapshots the
  protocol asks for (the first one at once, then one per gap), while every stream of
  the instrument (`flags` do not apply) arrives in datagrams, fed to
  `MarketDataProtocol.feed_datagram`. unsubscribe and close() leave the groups; a
  reconnect subscribes again over TCP and keeps the groups joined.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from typing import Self

from microex.client.md_book import OrderBookReplica, warm_up
from microex.client.md_events import FeedEvents
from microex.client.md_multicast import DatagramReceiver, multicast_socket
from microex.client.md_protocol import MarketDataProtocol
from microex.marketdata.multicast import group_address
from microex.protocol.md_binary import SubFlag


class _Link(asyncio.Protocol):
    def __init__(self, client: MarketDataClient, proto: MarketDataProtocol) -> None:
        self.client, self.proto = client, proto
        self.transport: asyncio.Transport | None = None
        self.lost = asyncio.get_running_loop().create_future()
        self.last_rx = self.last_tx = time.monotonic()

    def connection_made(self, transport) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.last_rx = time.monotonic()
        self.client._on_data(self, data)

    def connection_lost(self, exc) -> None:
        if not self.lost.done():
            self.lost.set_result(exc)
        self.client._on_lost(self)


class MarketDataClient(FeedEvents):
    def __init__(self, host: str, port: int, *, reconnect: bool = True, timeout: float = 5.0,
                 heartbeat_s: float = 1.0, timeout_s: float = 5.0, reconnect_delay_s: float = 0.05,
                 max_reconnect_delay_s: float = 2.0, multicast: tuple[str, int] | None = None,
                 multicast_interface: str = "127.0.0.1") -> None:
        super().__init__()
        self.host, self.port, self.reconnect, self.timeout = host, port, reconnect, timeout
        self.heartbeat_s, self.timeout_s = heartbeat_s, timeout_s
        self.reconnect_delay_s, self.max_reconnect_delay_s = reconnect_delay_s, max_reconnect_delay_s
        self.multicast, self.multicast_interface = multicast, multicast_interface
        self.groups: dict[int, asyncio.DatagramTransport] = {}  # instrument -> its joined group's endpoint
        self.subscriptions: dict[int, int] = {}  # instrument -> flags, replayed on reconnect
        self.replicas: dict[int, OrderBookReplica] = {}
        self.reconnects = 0
        self._link: _Link | None = None
        self._proto: MarketDataProtocol | None = None
        self._closing = False
        self._tasks: list[asyncio.Task] = []

    @classmethod
    async def connect(cls, host: str, port: int, *, on_book: Callable | None = None, on_trade: Callable | None = None,
                      on_candle: Callable | None = None, **options) -> MarketDataClient:
        warm_up()  # the kernel's first call compiles: do it before the stream, not in the middle of it
        client = cls(host, port, **options)
        client._add_callbacks(on_book, on_trade, on_candle)
        await client._open()
        client._tasks.append(asyncio.get_running_loop().create_task(client._timer()))
        return client

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    @property
    def connected(self) -> bool:
        return self._link is not None

    # -- subscriptions -----------------------------------------------------------------------

    async def subscribe(self, instrument: int, flags: int = SubFlag.DEFAULT) -> None:
        """Subscribe (BOOK in flags: a replica is kept, see book(); multicast: always, flags unused)."""
        if self.multicast is not None and instrument not in self.groups:
            await self._join(instrument)  # before the snapshot request: no datagram after it is missed
        self.subscriptions[instrument] = int(flags) or int(SubFlag.DEFAULT)
        if self._link is not None:
            self._send(self._subscribe_frames(self._proto, instrument))
            self._adopt(instrument)

    async def unsubscribe(self, instrument: int) -> None:
        self.subscriptions.pop(instrument, None)
        self.replicas.pop(instrument, None)
        group = self.groups.pop(instrument, None)
        if group is not None:
            group.close()
        if self._link is not None:
            self._send(self._proto.unsubscribe(instrument))

    def book(self, instrument: int) -> OrderBookReplica | None:
        """The replica of a subscribed instrument (`synced(i)` says if it is current)."""
        return self.replicas.get(instrument)

    def synced(self, instrument: int) -> bool:
        sync = self._proto.books.get(instrument) if self._proto is not None else None
        return bool(sync is not None and sync.live)

    async def wait_synced(self, instrument: int, timeout: float | None = 10.0) -> OrderBookReplica:
        return await self.wait_until(lambda: self.synced(instrument), timeout) or self.replicas[instrument]

    def stats(self) -> dict[int, dict[str, int]]:
        proto = self._proto
        if proto is None:
            return {}
        return {i: {"md_seq": s.replica.md_seq, "gaps": s.gaps, "resyncs": s.resyncs, "duplicates": s.duplicates}
                for i, s in proto.books.items()}

    # -- connection ----------------------------------------------------------------------------

    async def _open(self) -> None:
        loop = asyncio.get_running_loop()
        proto = MarketDataProtocol()
        try:
            async with asyncio.timeout(self.timeout):
                _, link = await loop.create_connection(lambda: _Link(self, proto), self.host, self.port)
        except (OSError, TimeoutError) as e:
            raise ConnectionError(f"cannot connect to {self.host}:{self.port}: {e}") from e
        self._link, self._proto = link, proto
        for i in self.subscriptions:
            self._send(self._subscribe_frames(proto, i))
            self._adopt(i)

    def _subscribe_frames(self, proto: MarketDataProtocol, instrument: int) -> bytes:
        if self.multicast is not None:
            return proto.subscribe_multicast(instrument)
        return proto.subscribe(instrument, self.subscriptions[instrument])

    async def _join(self, instrument: int) -> None:
        base, port = self.multicast
        sock = multicast_socket(group_address(base, instrument), port, self.multicast_interface)
        transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
            lambda: DatagramReceiver(self._on_datagram), sock=sock)
        if self._closing or instrument in self.groups:  # closed, or joined by another subscribe, meanwhile
            transport.close()
            return
        self.groups[instrument] = transport

    def _adopt(self, instrument: int) -> None:
        sync = self._proto.books.get(instrument)
        if sync is not None:
            self.replicas[instrument] = sync.replica

    def _send(self, data: bytes) -> None:
        link = self._link
        if data and link is not None and not link.transport.is_closing():
            link.transport.write(data)
            link.last_tx = time.monotonic()

    def _on_lost(self, link: _Link) -> None:
        if link is not self._link:
            return
        self._link = None
        self._changed.set()
        if not self._closing and self.reconnect:
            self._tasks.append(asyncio.get_running_loop().create_task(self._reconnect()))

    async def _reconnect(self) -> None:
        delay = self.reconnect_delay_s
        while not self._closing and self._link is None:
            await asyncio.sleep(delay)
            try:
                await self._open()
                self.reconnects += 1
                return
            except ConnectionError as e:
                self.last_error = e
                delay = min(delay * 2, self.max_reconnect_delay_s)

    async def _timer(self) -> None:
        while not self._closing:
            await asyncio.sleep(min(self.heartbeat_s, self.timeout_s) / 2)
            link = self._link
            if link is None:
                continue
            now = time.monotonic()
            if now - link.last_rx > self.timeout_s:
                self.last_error = ConnectionError(f"market data server silent for {self.timeout_s}s")
                link.transport.abort()
            elif now - link.last_tx > self.heartbeat_s:
                self._send(self._proto.heartbeat())

    async def close(self) -> None:
        self._closing = True
        for t in self._tasks:
            t.cancel()
        for group in self.groups.values():
            group.close()
        self.groups.clear()
        link = self._link
        if link is not None:
            link.transport.close()
            try:
                await asyncio.wait_for(asyncio.shield(link.lost), 1.0)
            except TimeoutError:
                link.transport.abort()
        self._link = None

    # -- bytes in ------------------------------------------------------------------------------

    def _on_data(self, link: _Link, data: bytes) -> None:
        if self._dispatch(link.proto, data) is not None:
            link.transport.abort()
        self._send(link.proto.take_output())

    def _on_datagram(self, data: bytes) -> None:
        # between connections the old protocol takes them: its requests go nowhere, and the
        # reconnect starts every book afresh anyway
        proto = self._proto
        self._dispatch(proto, data, proto.feed_datagram)
        self._send(proto.take_output())
