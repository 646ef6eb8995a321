"""The colocated gateway's test harness: one thread plays pipeline/engine_process.py's loop.

A `Harness` turns a ColocatedGateway over a MatchingEngine as the engine loop does (poll ->
stamp -> MatchingEngine.run with the gateway's on_events as the sink -> zero the batch rows);
`Client`s are non-blocking loopback sockets a test sends on, then turns the harness until the
expected bytes are back. Shared by test_colocated.py and test_colocated_review.py (the
`harness` fixture is in conftest.py).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

import numpy as np

from microex.core import raw
from microex.core.config import EngineConfig
from microex.core.engine import MatchingEngine
from microex.core.records import COMMAND, OrdType, Side, Tif
from microex.core.venue import InstrumentSpec, VenueConfig
from microex.gateway.colocated import ColocatedGateway
from microex.gateway.inprocess import deposit_commands
from microex.gateway.session import GatewaySessions
from microex.pipeline.sequencer import stamp
from microex.protocol.binary import (
    GATEWAY_MESSAGES,
    PROTOCOL_VERSION,
    BinaryDecoder,
    FrameEncoder,
    Messages,
    MsgType,
)

KEYS = {b"alice": 1, b"bob": 2}
VENUE = VenueConfig(instruments=(InstrumentSpec("SIM1", "B1", "USD"),), max_accounts=4)
DEPOSITS = [(account, asset, 10**12) for account in (1, 2) for asset in (1, 2)]  # assets: B1 = 1, USD = 2
BATCH = 16384  # pipeline/engine_process.py's EngineSettings.batch (the default, and what serve uses)
TIMEOUT = 5.0
SMALL = EngineConfig(max_orders=4096, max_levels=256, id_capacity=4096)


def make_engine(config: EngineConfig = SMALL) -> MatchingEngine:
    engine = MatchingEngine(config, VENUE)
    engine.warm_up()
    engine.process(deposit_commands(DEPOSITS))
    return engine


def new_order(enc: FrameEncoder, cid: int, side: int = Side.BUY, price: int = 100, qty: int = 1) -> bytes:
    return enc.message(MsgType.NEW_ORDER, client_order_id=cid, price_ticks=price, qty_lots=qty, instrument=1,
                       side=side, ord_type=OrdType.LIMIT, tif=Tif.GTC)


def login(enc: FrameEncoder, key: bytes, cod: bool = False) -> bytes:
    return enc.message(MsgType.LOGIN, api_key=key, flags=int(cod), version=PROTOCOL_VERSION)


def parse(data: bytes) -> list[tuple[MsgType, np.void]]:
    """Gateway frames, checked: whole, known types, consecutive seqs from 1."""
    dec = BinaryDecoder(GATEWAY_MESSAGES)
    out = []
    for item in dec.feed(data):
        assert isinstance(item, Messages), item
        out.extend((item.msg_type, r) for r in item.records)
    assert dec.buffered == 0, "a partial frame at the end"
    return out


def comparable(data: bytes) -> list[tuple]:
    """Every frame as (msg_type, (field, value)...) without ts_ns (the two venues' clocks differ)."""
    return [(int(t),) + tuple((name, r[name].item()) for name in r.dtype.names if name != "ts_ns")
            for t, r in parse(data)]


class Client:
    """One non-blocking loopback connection; what it receives is kept raw."""

    def __init__(self, port: int, rcvbuf: int | None = None) -> None:
        if rcvbuf is None:
            self.sock = socket.create_connection(("127.0.0.1", port))
        else:  # a small receive buffer must be set before connecting (it fixes the window scale)
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            self.sock.connect(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.setblocking(False)
        self.enc = FrameEncoder()
        self.received = bytearray()
        self.sent_bytes = 0
        self.eof = False
        self.conn_id = 0
        self._parsed = 0  # frames of `received` already handed out by take()
        self.reading = True

    def send(self, data: bytes) -> None:
        self.sock.setblocking(True)  # small test sends: the kernel takes them at once
        try:
            self.sock.sendall(data)
        finally:
            self.sock.setblocking(False)
        self.sent_bytes += len(data)

    def drain(self) -> None:
        if self.eof or not self.reading:
            return
        while True:
            try:
                data = self.sock.recv(1 << 16)
            except BlockingIOError:
                return
            except ConnectionError:
                self.eof = True
                return
            if not data:
                self.eof = True
                return
            self.received += data

    def frames(self) -> list[tuple[MsgType, np.void]]:
        """Every whole frame received so far."""
        dec = BinaryDecoder(GATEWAY_MESSAGES)
        out = []
        for item in dec.feed(bytes(self.received)):
            assert isinstance(item, Messages), item
            out.extend((item.msg_type, r) for r in item.records)
        return out

    def take(self) -> list[tuple[MsgType, np.void]]:
        """The frames received since the last take()."""
        all_frames = self.frames()
        new, self._parsed = all_frames[self._parsed :], len(all_frames)
        return new

    def close(self) -> None:
        self.sock.close()


class Harness:
    """A ColocatedGateway over a MatchingEngine, turned as pipeline/engine_process.py turns it."""

    def __init__(self, *, heartbeat_ms: int = 60_000, rate_per_s: float = 1e9, burst: float | None = None,
                 timer_s: float = 0.1, engine_config: EngineConfig = SMALL, expected_orders: int = 1 << 12,
                 batch: int = BATCH, **gateway_kw) -> None:
        self.engine = make_engine(engine_config)
        self.sessions = GatewaySessions(KEYS, heartbeat_ms=heartbeat_ms, rate_per_s=rate_per_s, burst=burst,
                                        expected_orders=expected_orders)
        self.gw = ColocatedGateway(self.sessions, timer_s=timer_s, **gateway_kw)
        self.batch = batch
        self.cmds = np.zeros(batch, dtype=COMMAND)
        self.seq = 0
        self.batches: list[np.ndarray] = []  # a copy of every batch the engine ran
        self.clients: list[Client] = []
        self.stopped = False

    def turn(self) -> int:
        n = self.gw.poll(self.cmds, 0, self.batch)
        if n:
            self.run(self.cmds[:n])
            self.cmds.view(np.uint8)[: n * COMMAND.itemsize] = 0
        return n

    def run(self, batch: np.ndarray) -> None:
        stamp(batch, self.seq + 1, time.time_ns())
        self.seq += len(batch)
        self.batches.append(raw.copy(batch))
        self.engine.run(batch, self.gw.on_events)

    def pump(self, done: Callable[[], bool], timeout: float = TIMEOUT, what: str = "", fail: bool = True) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            self.turn()
            for c in self.clients:
                c.drain()
            if done():
                return True
            if time.monotonic() > deadline:
                if fail:
                    raise AssertionError(f"timed out waiting for {what or done}")
                return False

    def pump_for(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.turn()
            for c in self.clients:
                c.drain()

    def send_all(self, c: Client, data: bytes, timeout: float = TIMEOUT) -> None:
        """Send more than the socket buffers hold: non-blocking sends between turns."""
        view, pos = memoryview(data), 0
        deadline = time.monotonic() + timeout
        while pos < len(data):
            assert time.monotonic() < deadline, f"sent {pos} of {len(data)} bytes"
            try:
                pos += c.sock.send(view[pos : pos + (1 << 16)])
            except BlockingIOError:
                pass
            self.turn()
            for x in self.clients:
                x.drain()

    def connect(self, rcvbuf: int | None = None) -> Client:
        c = Client(self.gw.port, rcvbuf)
        self.clients.append(c)
        name = c.sock.getsockname()

        def accepted() -> bool:
            return any(conn.sock.getpeername() == name for conn in self.gw.conns.values())

        self.pump(accepted, what="accept")
        c.conn_id = next(conn.conn_id for conn in self.gw.conns.values() if conn.sock.getpeername() == name)
        return c

    def login(self, key: bytes, cod: bool = False, rcvbuf: int | None = None) -> Client:
        c = self.connect(rcvbuf)
        c.send(login(c.enc, key, cod))
        self.expect(c, 1)
        [(t, ack)] = c.take()
        assert t == MsgType.LOGIN_ACK and ack["account"] == KEYS[key]
        return c

    def expect(self, c: Client, n: int, timeout: float = TIMEOUT) -> None:
        """Turn until c has n frames not yet taken."""
        self.pump(lambda: len(c.frames()) - c._parsed >= n, timeout, f"{n} frames")

    def session(self, c: Client):
        return self.sessions.conns[c.conn_id]

    def stop(self) -> np.ndarray:
        self.stopped = True
        return self.gw.shutdown()

    def close(self) -> None:
        if not self.stopped:
            self.stop()
        for c in self.clients:
            c.close()
