"""send_each over real sockets, and MdServer's direct sends: queueing, conflation and draining."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np

from microex.client.md_protocol import MarketDataProtocol
from microex.marketdata.server import MdServer
from microex.marketdata.socket_send import send_each
from microex.marketdata.stage import MarketDataStage
from microex.protocol.md_binary import SubFlag
from tests.unit.marketdata._venue import Venue

ROOT = Path(__file__).resolve().parents[3]


def _send_cases() -> tuple[np.ndarray, int]:
    """Three sockets: one that takes everything, one whose peer is gone, one whose buffers are full."""
    ok, ok_peer = socket.socketpair()
    gone, gone_peer = socket.socketpair()
    gone_peer.close()
    full, full_peer = socket.socketpair()
    full.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    full.setblocking(False)
    try:
        while True:
            full.send(b"x" * 4096)
    except BlockingIOError:
        pass
    data = np.frombuffer(b"0123456789abcdef" * 4, dtype=np.uint8)
    fds = np.array([ok.fileno(), gone.fileno(), full.fileno()], dtype=np.int32)
    sent = np.full(3, 99, dtype=np.int64)
    whole = send_each(fds, data, sent)
    assert ok_peer.recv(1000) == data.tobytes()
    for s in (ok, ok_peer, gone, full, full_peer):
        s.close()
    return sent, whole


def test_send_each_reports_whole_failed_and_refused_sends():
    sent, whole = _send_cases()
    assert whole == 1 and sent.tolist() == [64, -1, -1]  # no SIGPIPE for the closed peer, no block


def test_send_each_without_jit():
    code = ("from tests.unit.marketdata.test_socket_send import _send_cases; import inspect;"
            "from microex.marketdata import socket_send;"
            "assert inspect.isfunction(socket_send.send_each);"
            "sent, whole = _send_cases(); print(sent.tolist(), whole)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "NUMBA_DISABLE_JIT": "1"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["[64,", "-1,", "-1]", "1"]


def test_a_slow_socket_is_queued_conflated_and_drained_exactly():
    """A raw subscriber that stops reading: its sends come up short and are queued by its
    connection (it leaves the direct set), it is conflated past high water, and once it reads
    again the queue drains, a bundle follows and its replica equals the venue's book. A reading
    subscriber stays exact and direct throughout."""

    async def main():
        v = Venue(seed=11, spread=8)
        stage = MarketDataStage(v.state, defer=True, high_water=32_000, low_water=4_000)
        server = MdServer(stage, heartbeat_s=60)
        port = await server.start("127.0.0.1", 0)
        fast_r, fast_w = await asyncio.open_connection("127.0.0.1", port)
        fast = MarketDataProtocol()
        fast_w.write(fast.subscribe(1, SubFlag.BOOK | SubFlag.TRADES))
        slow_sock = socket.socket()  # not on the loop: nothing reads it until we do
        slow_sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow_sock.connect(("127.0.0.1", port))
        slow_sock.setblocking(False)
        slow = MarketDataProtocol()
        slow_sock.send(slow.subscribe(1, SubFlag.BOOK | SubFlag.TRADES))
        while len(stage.fanout.subs_of.get(1, {})) < 2:
            await asyncio.sleep(0.01)
        fast_conn, slow_conn = (server.connections[k] for k in sorted(server.connections))
        slow_conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)

        async def drain_fast():
            while True:
                try:
                    data = await asyncio.wait_for(fast_r.read(1 << 20), 0.02)
                except TimeoutError:
                    return
                fast.feed(data)

        async def drain_slow():
            await asyncio.sleep(0.02)  # the server's writer callbacks run
            while True:
                try:
                    data = slow_sock.recv(1 << 20)
                except BlockingIOError:
                    return
                slow.feed(data)
                await asyncio.sleep(0.002)

        went_queued = False
        for _ in range(120):
            out = v.batch(80)
            stage.fanout.publish(out.updates, out.bbo, out.candles)
            while stage.step():
                pass
            went_queued |= not slow_conn.direct
            await drain_fast()
        assert went_queued and slow_conn.sub_id in stage.fanout.conflated
        assert fast_conn.direct
        for _ in range(50):  # it reads again: the queue drains, a bundle follows
            await drain_slow()
            stage.on_timer()
            while stage.step():
                pass
            if not stage.fanout.conflated and slow_conn.direct:
                break
        await drain_slow()
        await drain_fast()
        for proto in (fast, slow):
            v.assert_equal(proto.books[1].replica, 1)
            assert proto.books[1].live and proto.books[1].gaps == 0
        assert slow_conn.direct and stage.fanout.stats["conflations"] >= 1 and stage.fanout.stats["flushes"] >= 1
        slow_sock.close()
        await server.close()

    asyncio.run(main())
