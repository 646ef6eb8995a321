"""The feed over gRPC (marketdata/grpc_server.py + client/md_grpc.py), in process: a stage fed by a
MatchingEngine, the gRPC server on a free port, the SDK's gRPC client; slow gRPC readers go through the
Fanout's slow-consumer policy exactly like TCP ones."""

from __future__ import annotations

import asyncio

import grpc
import numpy as np
import pytest

from microex.client.md_grpc import GrpcMarketDataClient
from microex.client.md_protocol import MarketDataProtocol, Status
from microex.core.records import MdMsg, MdReason
from microex.marketdata.grpc_server import SNAPSHOT_METHOD, SUBSCRIBE_METHOD, GrpcMdServer, split_frames
from microex.marketdata.stage import MarketDataStage
from microex.marketdata.state import MarketState
from microex.protocol.md_binary import SERVER_MESSAGES, MdDecoder, MdFrameEncoder, MdStatus, SubFlag

from tests.unit.marketdata._streams import engine, random_commands

SMALL_WINDOW = (("grpc.http2.bdp_probe", 0),)  # no window growth: a slow reader holds ~100 KB in flight, not MBs


async def _until(pred, timeout=10.0):
    async with asyncio.timeout(timeout):
        while not pred():
            await asyncio.sleep(0.005)


class _Venue:
    """An engine, the stage, and the gRPC server in front of it."""

    def __init__(self, **fanout) -> None:
        self.eng = engine()
        self.state = MarketState(3)
        self.stage = MarketDataStage(self.state, **fanout)
        self.server = GrpcMdServer(self.stage, heartbeat_s=0.2, stage_timer=True)
        self.next_seq = 1

    async def start(self) -> str:
        return f"127.0.0.1:{await self.server.start('127.0.0.1', 0)}"

    def trade(self, n: int, seed: int, chunks: int = 2) -> None:
        ev = self.eng.process(random_commands(seed, n, first_seq=self.next_seq, first_id=self.next_seq))
        self.next_seq += n
        for part in np.array_split(np.arange(len(ev)), chunks):
            if len(part):
                self.stage.on_events(ev[part[0]:part[-1] + 1])

    def assert_book(self, replica, i: int) -> None:
        assert replica.depth(1, 10**6) == self.eng.depth(i, 1, 10**6)
        assert replica.depth(2, 10**6) == self.eng.depth(i, 2, 10**6)
        assert replica.md_seq == self.state.md_seq(i)


def test_sdk_over_grpc_equals_the_engine():
    async def main():
        v = _Venue()
        v.trade(300, 1)  # a book before anyone subscribes: the snapshot carries it
        target = await v.start()
        trades, statuses, books = [], [], []
        md = await GrpcMarketDataClient.connect(target, on_trade=trades.append, on_book=lambda i, b: books.append(i))
        md.on_status.append(statuses.append)
        await md.subscribe(1)
        await md.subscribe(2)
        await md.subscribe(3, SubFlag.TRADES)
        await md.wait_synced(1)
        await md.wait_synced(2)
        await md.wait_until(lambda: 3 in {s.instrument for s in statuses})  # trades only: no book to wait for
        first_trade = {i: int(v.state.inst[i, 1]) for i in (1, 2, 3)}  # trades so far per instrument
        for k in range(20):
            v.trade(200, 100 + k)
            if k % 5 == 0:
                v.stage.on_timer()
            await asyncio.sleep(0)
        await _until(lambda: all(md.book(i).md_seq == v.state.md_seq(i) for i in (1, 2)))
        for i in (1, 2):
            v.assert_book(md.book(i), i)
        assert md.book(3) is None  # trades only: no replica
        n_trades = sum(int(v.state.inst[i, 1]) - first_trade[i] for i in (1, 2, 3))
        await _until(lambda: len(trades) == n_trades)
        for i in (1, 2, 3):  # trade ids consecutive per instrument: none lost, none doubled
            ids = [int(t["count"]) for t in trades if int(t["instrument"]) == i]
            assert ids == list(range(first_trade[i] + 1, int(v.state.inst[i, 1]) + 1))
        assert {s.status for s in statuses} == {MdStatus.SUBSCRIBED} and books
        assert all(s["gaps"] == 0 and s["restarts"] == 0 for s in md.stats().values() if "gaps" in s)

        snap = await md.snapshot(1)  # the unary Snapshot method
        v.assert_book(snap, 1)
        top = await md.snapshot(2, depth=2)
        assert top.depth(1, 10) == v.eng.depth(2, 1, 2) and top.depth(2, 10) == v.eng.depth(2, 2, 2)
        with pytest.raises(LookupError):
            await md.snapshot(9)

        await md.unsubscribe(2)
        await _until(lambda: len(v.server.streams) == 2)
        assert len(v.stage.fanout.subscribers) == 2  # the cancelled stream left the Fanout
        await md.close()
        await _until(lambda: not v.server.streams and not v.stage.fanout.subscribers)
        await v.server.close()

    asyncio.run(main())


async def _raw_call(target: str, request: bytes, options=()):
    ch = grpc.aio.insecure_channel(target, options=options)
    return ch, ch.unary_stream(SUBSCRIBE_METHOD)(request)


def test_raw_frames_bad_requests_heartbeats_and_shutdown():
    """What any gRPC client sees: whole frames; ERROR + INVALID_ARGUMENT for a bad request; heartbeats; SHUTDOWN."""

    async def main():
        v = _Venue()
        v.trade(200, 3)
        target = await v.start()
        enc = MdFrameEncoder()
        ch, call = await _raw_call(target, enc.subscribe(1, 0, SubFlag.BOOK))
        first = await call.read()
        dec = MdDecoder(SERVER_MESSAGES)
        types = [t for t, _ in dec.feed(first)]
        assert types[:4] == [MdMsg.STATUS, MdMsg.SNAPSHOT_BEGIN, MdMsg.SNAPSHOT_LEVEL, MdMsg.SNAPSHOT_END]
        assert dec.buffered == 0  # a message holds whole frames
        assert await asyncio.wait_for(call.read(), 2) == bytes(dec_heartbeat())  # idle: HEARTBEAT after 0.2 s

        bad = MdFrameEncoder()
        ch2, call2 = await _raw_call(target, bad.subscribe(7) + bad.subscribe(1, 0, 1 << 9))
        msgs = []
        with pytest.raises(grpc.aio.AioRpcError) as err:
            async for m in call2:
                msgs.append(m)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        recs = [r for t, rs in MdDecoder(SERVER_MESSAGES).feed(b"".join(msgs)) for r in rs]
        assert [(int(r["reason"]), int(r["ref_seq"])) for r in recs] == [(MdReason.UNKNOWN_INSTRUMENT, 1),
                                                                           (MdReason.BAD_REQUEST, 2)]
        snap = await ch2.unary_unary(SNAPSHOT_METHOD)(MdFrameEncoder().snapshot_request(1))
        assert [t for t, _ in MdDecoder(SERVER_MESSAGES).feed(snap)] == [MdMsg.SNAPSHOT_BEGIN, MdMsg.SNAPSHOT_LEVEL,
                                                                          MdMsg.SNAPSHOT_END]
        v.stage.close()  # the stage stops: ERROR SHUTDOWN, then the stream ends OK
        await v.server.close()
        rest = b""
        while (m := await call.read()) is not grpc.aio.EOF:
            rest += m
        items = MdDecoder(SERVER_MESSAGES).feed(rest)
        assert items[-1].msg_type == MdMsg.ERROR and int(items[-1].records[-1]["reason"]) == MdReason.SHUTDOWN
        await ch.close()
        await ch2.close()

    asyncio.run(main())


def dec_heartbeat() -> bytes:
    from microex.protocol.md_binary import HEARTBEAT_FRAME

    return HEARTBEAT_FRAME


def test_split_frames_keeps_frames_whole():
    recs = MdFrameEncoder()
    data = b"".join([recs.heartbeat(), recs.subscribe(1)] * 100)  # 8- and 16-byte frames
    parts = split_frames(data, 100)
    assert b"".join(parts) == data and all(len(p) <= 100 for p in parts)
    offs = np.cumsum([0] + [len(p) for p in parts[:-1]])
    for o in offs:  # each piece starts on a frame
        assert data[o:o + 2] in (b"\x08\x00", b"\x10\x00")


@pytest.mark.parametrize("max_levels", [4096, 4])
def test_slow_grpc_reader_is_conflated_then_exact(max_levels):
    """A gRPC reader that reads only now and then: conflated (or resynced with a tight level bound), and its
    replica, fed through the SDK's protocol, still equals the engine's book; a fast one on the same stage too."""

    async def main():
        v = _Venue(high_water=20_000, low_water=5_000, max_conflated_levels=max_levels)
        target = await v.start()
        fast = await GrpcMarketDataClient.connect(target)
        await fast.subscribe(1)
        slow_proto = MarketDataProtocol()
        ch, call = await _raw_call(target, slow_proto.subscribe(1), SMALL_WINDOW)
        events = []
        events += slow_proto.feed(await call.read())
        await fast.wait_synced(1)
        for k in range(60):
            v.trade(400, 1000 + k, chunks=4)
            await asyncio.sleep(0.002)
            if k % 10 == 0:
                events += slow_proto.feed(await call.read())  # one message now and then
        assert v.stage.fanout.stats["conflations"] >= 1

        async def drain():
            while not (slow_proto.books[1].live and slow_proto.books[1].replica.md_seq == v.state.md_seq(1)):
                msg = await call.read()
                events.extend(slow_proto.feed(msg))
                v.stage.on_timer()  # the drained subscriber gets its bundle at the next timer / publish

        await asyncio.wait_for(drain(), 10)
        assert not slow_proto.take_output()  # never asked for a snapshot: the server healed it
        v.assert_book(slow_proto.books[1].replica, 1)
        statuses = [e.status for e in events if isinstance(e, Status)]
        assert MdStatus.CONFLATED in statuses and statuses[-1] == MdStatus.LIVE
        if max_levels == 4:
            assert v.stage.fanout.stats["resyncs"] >= 1 and slow_proto.books[1].resyncs >= 2
        await _until(lambda: fast.book(1).md_seq == v.state.md_seq(1))
        v.assert_book(fast.book(1), 1)
        call.cancel()
        await ch.close()
        await fast.close()
        await v.server.close()

    asyncio.run(main())


def test_stuck_grpc_reader_is_dropped_and_the_sdk_resubscribes():
    async def main():
        v = _Venue(high_water=20_000, low_water=5_000, max_conflated_s=0.3)
        target = await v.start()
        stuck_proto = MarketDataProtocol()
        ch, stuck = await _raw_call(target, stuck_proto.subscribe(1), SMALL_WINDOW)
        await stuck.read()
        md = await GrpcMarketDataClient.connect(target, reconnect_delay_s=0.01)
        await md.subscribe(1)
        await md.wait_synced(1)
        for k in range(40):
            v.trade(400, 2000 + k)
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.4)
        v.stage.on_timer()
        assert [r for _, r in v.stage.fanout.closed_reasons][:1] == [MdReason.SLOW_CONSUMER]
        with pytest.raises(grpc.aio.AioRpcError) as err:
            while True:
                await stuck.read()
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        await _until(lambda: md.book(1).md_seq == v.state.md_seq(1))
        v.assert_book(md.book(1), 1)

        # the SDK's stream dropped by the server: it opens a new one (a fresh snapshot) and goes on
        for st in list(v.server.streams.values()):
            st.abort()
        await _until(lambda: md.reconnects == 1)
        v.trade(300, 3000)
        await _until(lambda: md.synced(1) and md.book(1).md_seq == v.state.md_seq(1))
        v.assert_book(md.book(1), 1)
        await ch.close()
        await md.close()
        await v.server.close()

    asyncio.run(main())
