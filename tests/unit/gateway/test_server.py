"""GatewayServer over real loopback sockets, with the in-process engine link."""

from __future__ import annotations

import asyncio

import numpy as np

from microex.core.records import OrdType, Reason, Side, Tif
from microex.gateway.inprocess import InProcessVenue
from microex.pipeline.metrics import G_SLOW
from microex.protocol.binary import (
    GATEWAY_MESSAGES,
    PROTOCOL_VERSION,
    BinaryDecoder,
    DecodeError,
    FrameEncoder,
    MsgType,
    ProtocolReason,
)

KEYS = {b"alice": 1, b"bob": 2}


class RawClient:
    def __init__(self, reader, writer) -> None:
        self.reader, self.writer = reader, writer
        self.enc = FrameEncoder()
        self.dec = BinaryDecoder(GATEWAY_MESSAGES)
        self.frames: list[tuple[int, np.void]] = []

    @classmethod
    async def connect(cls, port: int) -> RawClient:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    async def expect(self, n: int, timeout: float = 5.0) -> list[tuple[int, np.void]]:
        async def fill():
            while len(self.frames) < n:
                data = await self.reader.read(65536)
                if not data:
                    break
                for item in self.dec.feed(data):
                    assert not isinstance(item, DecodeError), item
                    self.frames.extend((item.msg_type, r) for r in item.records)
        await asyncio.wait_for(fill(), timeout)
        out, self.frames = self.frames[:n], self.frames[n:]
        return out

    async def login(self, key: bytes, cod: bool = False) -> np.void:
        self.send(self.enc.message(MsgType.LOGIN, api_key=key, flags=int(cod), version=PROTOCOL_VERSION))
        [(t, rec)] = await self.expect(1)
        assert t == MsgType.LOGIN_ACK
        return rec

    def new(self, cid: int, side: int, price: int, qty: int, tif: int = Tif.GTC) -> None:
        self.send(self.enc.message(MsgType.NEW_ORDER, client_order_id=cid, price_ticks=price, qty_lots=qty,
                                   instrument=1, side=side, ord_type=OrdType.LIMIT, tif=tif))


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


def test_orders_acks_and_fills_reach_the_owning_sessions():
    async def main():
        async with InProcessVenue(KEYS) as venue:
            a, b = await RawClient.connect(venue.port), await RawClient.connect(venue.port)
            assert (await a.login(b"alice"))["account"] == 1
            assert (await b.login(b"bob"))["account"] == 2
            a.new(7, Side.BUY, 100, 5)
            [(t, r)] = await a.expect(1)
            assert t == MsgType.EXEC_ACCEPTED and r["client_order_id"] == 7
            b.new(7, Side.SELL, 100, 2)  # same client id, other session: fine
            got = await b.expect(2)
            assert [t for t, _ in got] == [MsgType.EXEC_ACCEPTED, MsgType.EXEC_FILL]
            [(t, fill)] = await a.expect(1)
            assert t == MsgType.EXEC_FILL and fill["client_order_id"] == 7 and fill["leaves_lots"] == 3
            assert venue.engine.best(1)[0] == 100
            b.writer.close()
            a.writer.close()
    run(main())


def test_bad_frames_get_reasons_and_the_session_goes_on():
    async def main():
        async with InProcessVenue(KEYS) as venue:
            c = await RawClient.connect(venue.port)
            await c.login(b"alice")
            c.send(c.enc.message(MsgType.LOGIN_ACK, session=1, heartbeat_ms=1, account=1))  # wrong direction
            [(t, r)] = await c.expect(1)
            assert t == MsgType.PROTOCOL_ERROR and r["reason"] == ProtocolReason.UNKNOWN_MESSAGE_TYPE
            c.new(1, Side.BUY, 100, 0)  # engine reject, with its reason
            [(t, r)] = await c.expect(1)
            assert t == MsgType.EXEC_REJECTED and r["reason"] == Reason.INVALID_QTY
            c.new(2, Side.BUY, 100, 1)
            [(t, r)] = await c.expect(1)
            assert t == MsgType.EXEC_ACCEPTED
            c.send(b"\x03\x00\x00\x00")  # length 3: cannot resync -> LOGOUT + close
            [(t, r)] = await c.expect(1)
            assert t == MsgType.LOGOUT and r["reason"] == ProtocolReason.BAD_FRAMING
            assert await c.reader.read(100) == b""
            # the venue goes on for others
            d = await RawClient.connect(venue.port)
            await d.login(b"bob")
    run(main())


def test_cancel_on_disconnect_and_shutdown_logout():
    async def main():
        async with InProcessVenue(KEYS) as venue:
            c = await RawClient.connect(venue.port)
            await c.login(b"alice", cod=True)
            c.new(1, Side.BUY, 100, 1)
            await c.expect(1)
            assert venue.engine.best(1)[0] == 100
            c.writer.close()
            for _ in range(100):
                await asyncio.sleep(0.01)
                if venue.engine.best(1)[0] != 100:
                    break
            assert venue.engine.best(1)[0] != 100
            d = await RawClient.connect(venue.port)
            await d.login(b"bob")
            await venue.server.close()
            [(t, r)] = await d.expect(1)
            assert t == MsgType.LOGOUT and r["reason"] == ProtocolReason.SHUTDOWN
    run(main())


def test_a_client_that_does_not_read_is_closed_as_slow_consumer():
    async def main():
        async with InProcessVenue(KEYS, rate_per_s=1e9) as venue:
            venue.server.max_write_buffer = 64 << 10
            c = await RawClient.connect(venue.port)
            await c.login(b"alice")
            sock = c.writer.get_extra_info("socket")
            sock.setsockopt(__import__("socket").SOL_SOCKET, __import__("socket").SO_RCVBUF, 4096)
            # every order is rejected (qty 0): 32 bytes back per 40 in, never read by us
            burst = b"".join(c.enc.message(MsgType.NEW_ORDER, client_order_id=i, price_ticks=1, qty_lots=0,
                                           instrument=1, side=Side.BUY, ord_type=OrdType.LIMIT, tif=Tif.GTC)
                             for i in range(1, 20_001))
            for _ in range(20):
                try:
                    c.send(burst)
                    await c.writer.drain()
                except ConnectionError:
                    break  # the gateway aborted us
                if venue.server.counters[G_SLOW]:
                    break
                burst = b"".join(c.enc.message(MsgType.NEW_ORDER, client_order_id=0, price_ticks=1, qty_lots=0,
                                               instrument=1, side=Side.BUY, ord_type=OrdType.LIMIT, tif=Tif.GTC)
                                 for _ in range(20_000))
            assert venue.server.counters[G_SLOW] == 1
            assert not venue.server.connections  # gone, and the venue goes on
            d = await RawClient.connect(venue.port)
            await d.login(b"bob")
            assert any(r == ProtocolReason.SLOW_CONSUMER for _, r in venue.server.closed_reasons)
    run(main())
