"""The stage behind the TCP server, in process: the async SDK over loopback, recording and replay."""

from __future__ import annotations

import asyncio

import numpy as np

from microex.client.marketdata import MarketDataClient
from microex.core.records import EventKind, MdReason
from microex.marketdata.recording import read_header, read_recording
from microex.marketdata.recording import Recorder
from microex.marketdata.replay import replay
from microex.marketdata.server import MdServer
from microex.marketdata.stage import MarketDataStage
from microex.marketdata.state import MarketState
from microex.protocol.md_binary import MdStatus, SubFlag

from tests.unit.marketdata._streams import engine, random_commands


async def _until(pred, timeout=10.0):
    async with asyncio.timeout(timeout):
        while not pred():
            await asyncio.sleep(0.005)


def test_sdk_over_tcp_recording_and_replay(tmp_path):
    async def main():
        eng = engine()
        state = MarketState(3)
        warm = eng.process(random_commands(1, 300))
        state.apply(warm)  # a book before the stage serves (what the start-up rebuild does)
        rec = Recorder(tmp_path / "feed.mdrec", state, start_seq=300)
        stage = MarketDataStage(state, min_seq=300, recorder=rec)
        server = MdServer(stage, heartbeat_s=0.2)
        port = await server.start("127.0.0.1", 0)
        trades, tickers, statuses = [], [], []
        md = await MarketDataClient.connect("127.0.0.1", port, on_trade=trades.append)
        md.on_ticker.append(tickers.append)
        md.on_status.append(statuses.append)
        await md.subscribe(1)
        await md.subscribe(2)
        await md.subscribe(3, SubFlag.TRADES)
        await md.wait_synced(1)
        await md.wait_synced(2)
        for k in range(20):
            cmds = random_commands(100 + k, 200, first_seq=301 + 200 * k, first_id=301 + 200 * k)
            ev = eng.process(cmds)
            stage.on_events(ev[:len(ev) // 2])
            stage.on_events(ev[len(ev) // 2:])
            if k % 5 == 0:
                stage.on_timer()
            await asyncio.sleep(0)
        await _until(lambda: all(md.book(i).md_seq == state.md_seq(i) for i in (1, 2)))
        for i in (1, 2):
            assert md.book(i).depth(1, 10**6) == eng.depth(i, 1, 10**6)
            assert md.book(i).depth(2, 10**6) == eng.depth(i, 2, 10**6)
        assert md.book(3) is None  # trades only: no replica
        n_trades = int((state.inst[1:, 1]).sum() - 0)
        await _until(lambda: len(trades) == n_trades - _trades_before(warm))
        assert {int(t["instrument"]) for t in trades} == {1, 2, 3}
        assert tickers and {s.status for s in statuses} == {MdStatus.SUBSCRIBED}
        assert md.stats()[1]["gaps"] == 0
        await md.close()
        await server.close()
        return {i: (eng.depth(i, 1, 10**6), eng.depth(i, 2, 10**6), state.md_seq(i)) for i in (1, 2, 3)}, len(trades)

    books, n_trades = asyncio.run(main())
    assert read_header(tmp_path / "feed.mdrec")["start_seq"] == 300
    assert sum(len(r.records) for r in read_recording(tmp_path / "feed.mdrec")) > 1000

    async def replayed():
        started = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(replay(str(tmp_path / "feed.mdrec"), 0, "127.0.0.1", 0, wait_subscribers=1,
                                          linger_s=0.3, ready=started.set_result))
        port = await started
        trades, ended = [], []
        md = await MarketDataClient.connect("127.0.0.1", port, on_trade=trades.append)
        md.on_status.append(lambda s: ended.append(s) if s.status == MdStatus.END else None)
        for i in (1, 2, 3):
            await md.subscribe(i)
        feed = await task
        for i in (1, 2, 3):
            bids, asks, seq = books[i]
            assert md.book(i).md_seq == seq
            assert md.book(i).depth(1, 10**6) == bids and md.book(i).depth(2, 10**6) == asks
        assert len(ended) == 3 and ended[0].reason == MdReason.REPLAY_END
        assert len(trades) == n_trades and feed.books.gaps == 0
        await md.close()

    asyncio.run(replayed())


def _trades_before(events: np.ndarray) -> int:
    return int((events["kind"] == EventKind.TRADE).sum())


def test_client_reconnects_and_resyncs():
    async def main():
        eng = engine()
        state = MarketState(3)
        stage = MarketDataStage(state)
        server = MdServer(stage)
        port = await server.start("127.0.0.1", 0)
        md = await MarketDataClient.connect("127.0.0.1", port, reconnect_delay_s=0.01)
        await md.subscribe(1)
        await md.wait_synced(1)
        stage.on_events(eng.process(random_commands(7, 300)))
        for conn in list(server.connections.values()):
            conn.abort()  # the server drops every connection
        await _until(lambda: md.reconnects == 1)
        stage.on_events(eng.process(random_commands(8, 300, first_seq=301, first_id=301)))
        await _until(lambda: md.synced(1) and md.book(1).md_seq == state.md_seq(1))
        assert md.book(1).depth(1, 10**6) == eng.depth(1, 1, 10**6)
        await md.close()
        await server.close()

    asyncio.run(main())


def test_accept_out_of_fds_pauses_listening_then_resumes(monkeypatch):
    """An accept that fails (EMFILE) must not leave a readable listening socket on the loop
    (it would spin): the server stops watching it and looks again ACCEPT_RETRY_S later."""
    import errno
    import socket

    from microex.marketdata import server as server_mod

    monkeypatch.setattr(server_mod, "ACCEPT_RETRY_S", 0.5)  # wide enough to look in between

    class ExhaustedOnce:
        """The listening socket, whose first accept fails as when the process is out of fds."""

        def __init__(self, real):
            self.real, self.failed = real, False

        def __getattr__(self, name):
            return getattr(self.real, name)

        def accept(self):
            if not self.failed:
                self.failed = True
                raise OSError(errno.EMFILE, "Too many open files")
            return self.real.accept()

    async def main():
        server = MdServer(MarketDataStage(MarketState(1)))
        port = await server.start("127.0.0.1", 0)
        loop = asyncio.get_running_loop()
        lsock = server._listeners[0] = ExhaustedOnce(server._listeners[0])
        loop.add_reader(lsock.fileno(), server._accept, lsock)  # as start() does, with the wrapper
        client = socket.create_connection(("127.0.0.1", port))
        await _until(lambda: lsock.failed)
        assert not loop.remove_reader(lsock.fileno())  # no longer watched: no spinning on it
        assert not server.connections
        await _until(lambda: len(server.connections) == 1)  # resumed: the waiting connect is taken
        client.close()
        await server.close()

    asyncio.run(main())


def test_heartbeats_reach_subscribers_whose_streams_stay_quiet():
    """A TRADES-only subscription on an instrument whose levels change but never trades is sent
    nothing by the flushes: it still gets a HEARTBEAT every heartbeat_s, like an idle connection.
    A BOOK subscriber, sent increments all along, gets none."""
    import socket

    from microex.core.records import COMMAND, MdMsg
    from microex.protocol.md_binary import SERVER_MESSAGES, MdDecoder, MdFrameEncoder

    from tests.unit.marketdata._streams import T0

    async def main():
        eng = engine()
        stage = MarketDataStage(MarketState(3), defer=True)
        server = MdServer(stage, heartbeat_s=0.2)
        port = await server.start("127.0.0.1", 0)
        socks = {}
        for name, flags in (("trades", SubFlag.TRADES), ("book", SubFlag.BOOK), ("idle", None)):
            s = socks[name] = socket.create_connection(("127.0.0.1", port))
            s.setblocking(False)
            if flags is not None:
                s.sendall(MdFrameEncoder().subscribe(1, flags=flags))
        await _until(lambda: len(stage.fanout.subs_of.get(1, {})) == 2)
        got = {name: bytearray() for name in socks}
        for k in range(1, 31):  # 1.5 s of resting orders on both sides, never crossing: levels, no trades
            c = np.zeros(1, dtype=COMMAND)
            c["seq"], c["ts_ns"], c["action"], c["order_id"], c["account"] = k, T0 + k, 1, k, 1
            c["instrument"], c["side"], c["ord_type"], c["tif"], c["qty_lots"] = 1, 1 + k % 2, 1, 1, 1
            c["price_ticks"] = 110 if k % 2 else 90  # sells (side 2) above the buys
            stage.on_events(eng.process(c))
            while stage.step():
                pass
            await asyncio.sleep(0.05)
            for name, s in socks.items():
                try:
                    got[name] += s.recv(65536)
                except BlockingIOError:
                    pass
        await server.close()
        for s in socks.values():
            s.close()
        return {name: [t for t, recs in MdDecoder(SERVER_MESSAGES).feed(bytes(b)) for _ in recs]  # one per frame
                for name, b in got.items()}

    frames = asyncio.run(main())
    assert frames["trades"].count(MdMsg.HEARTBEAT) >= 4 and MdMsg.INCREMENT not in frames["trades"]
    assert frames["idle"].count(MdMsg.HEARTBEAT) >= 4
    assert MdMsg.HEARTBEAT not in frames["book"] and frames["book"].count(MdMsg.INCREMENT) >= 20


def test_a_peer_gone_before_shutdown_does_not_break_the_close():
    """A subscriber that reset its connection is found out by the writer callback, not inside the
    Fanout's loops: server.close() tells the others and closes every connection."""
    import socket
    import struct

    async def main():
        stage = MarketDataStage(MarketState(3), defer=True)
        server = MdServer(stage)
        port = await server.start("127.0.0.1", 0)
        gone, stays = socket.create_connection(("127.0.0.1", port)), socket.create_connection(("127.0.0.1", port))
        await _until(lambda: len(server.connections) == 2)
        gone.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        gone.close()  # RST, and no loop turn for the server to read it before closing
        await server.close()
        assert not server.connections
        stays.settimeout(5)
        assert stays.recv(4096)  # its ERROR SHUTDOWN
        stays.close()

    asyncio.run(main())
