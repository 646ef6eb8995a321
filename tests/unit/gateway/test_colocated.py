"""ColocatedGateway (microex/gateway/colocated.py) and its FastLane (gateway/lane.py) over real loopback TCP.

Everything runs in the test's one thread: a `Harness` (_colocated_harness.py) plays the
engine loop of pipeline/engine_process.py (poll -> stamp -> MatchingEngine.run with the
gateway's on_events as the sink -> zero the batch rows), and the clients are non-blocking
sockets the test sends on, then turns the harness until the expected bytes are back.
The sans-I/O reference (`Reference`) is a second GatewaySessions + MatchingEngine fed
the same bytes with on_bytes, replies before the engine's reports, as the server does.
"""

from __future__ import annotations

import itertools
import os
import socket
import time

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from microex.core import raw
from microex.core.records import COMMAND, Action, OrdType, Reason, Side, Tif
from microex.gateway.lane import EXPECTED
from microex.gateway.session import GatewayReason, GatewaySessions
from microex.pipeline.metrics import (
    G_BYTES_IN,
    G_COMMANDS,
    G_CONNECTIONS,
    G_READS,
    G_REPORT_BYTES,
    G_SESSIONS,
    G_SLOW,
)
from microex.pipeline.sequencer import stamp
from microex.protocol.binary import (
    CANCEL,
    GATEWAY_MESSAGES,
    BinaryDecoder,
    FrameEncoder,
    MsgType,
    ProtocolReason,
    encode_frame,
    encode_message,
)


def types(frames) -> list[MsgType]:
    return [t for t, _ in frames]
from tests.unit.gateway._colocated_harness import (
    KEYS,
    TIMEOUT,
    Client,
    comparable,
    login,
    make_engine,
    new_order,
    parse,
)

# -- 1. the colocated gateway answers as the sans-I/O reference does -------------------------------


class Reference:
    """GatewaySessions + its own MatchingEngine, fed with on_bytes: replies first, then the reports."""

    def __init__(self) -> None:
        self.engine = make_engine()
        self.sessions = GatewaySessions(KEYS, heartbeat_ms=60_000, rate_per_s=1e9)
        self.seq = 0
        self.out: dict[int, bytearray] = {}

    def connect(self, conn: int) -> None:
        self.sessions.on_connect(conn)
        self.out[conn] = bytearray()

    def _run(self, cmds: np.ndarray, got: dict[int, int]) -> None:
        if not len(cmds):
            return
        cmds = raw.copy(cmds)
        stamp(cmds, self.seq + 1, time.time_ns())
        self.seq += len(cmds)
        for conn, data in self.sessions.on_events(self.engine.process(cmds)).items():
            self.out[conn] += data
            got[conn] = got.get(conn, 0) + len(data)

    def feed(self, conn: int, chunk: bytes) -> dict[int, int]:
        """Bytes from conn -> how many bytes each connection is answered."""
        cmds, replies, closed = self.sessions.on_bytes(conn, chunk)
        got: dict[int, int] = {}
        for c, data in replies.items():
            self.out[c] += data
            got[c] = len(data)
        self._run(cmds, got)
        for c, _ in closed:
            self._run(self.sessions.on_disconnect(c), got)
        return got


def _message(enc: FrameEncoder, m: tuple) -> bytes:
    kind = m[0]
    if kind == "new":
        _, cid, side, price, qty = m
        return new_order(enc, cid, side, price, qty)
    if kind == "cancel":
        return enc.message(MsgType.CANCEL, client_order_id=m[1])
    if kind == "modify":
        return enc.message(MsgType.MODIFY, client_order_id=m[1], price_ticks=m[2], qty_lots=m[3])
    if kind == "hb":
        return enc.message(MsgType.HEARTBEAT)
    if kind == "unknown_type":  # a well-framed 16-byte frame of a type nobody knows
        frame = encode_frame(CANCEL, 9, enc.next_seq, {"client_order_id": 1})
        enc.next_seq += 1
        return frame
    if kind == "bad_seq":  # a frame out of sequence; the client goes on counting from it, as the decoder does
        seq = enc.next_seq + m[1]
        enc.next_seq = seq + 1
        return encode_message(MsgType.CANCEL, seq, client_order_id=1)
    if kind == "login":  # a second LOGIN: ALREADY_LOGGED_IN
        return login(enc, b"alice")
    raise AssertionError(kind)


_cids = st.integers(1, 6)
_prices = st.integers(98, 102)
_new = st.tuples(st.just("new"), _cids, st.sampled_from([Side.BUY, Side.SELL]), _prices, st.integers(1, 4))
_messages = st.one_of(
    _new, _new, _new,  # mostly orders (unknown cids in CANCEL / MODIFY: 7, 8)
    st.tuples(st.just("cancel"), st.integers(1, 8)),
    st.tuples(st.just("modify"), st.integers(1, 8), _prices, st.integers(0, 4)),
    st.tuples(st.just("hb")),
    st.one_of(st.tuples(st.sampled_from(["unknown_type", "login"])),  # the odd bad frame
              st.tuples(st.just("bad_seq"), st.integers(1, 5))),
)


@st.composite
def client_streams(draw):
    """Per client: its bytes (LOGIN first), cut into chunks (a cut may fall inside a frame); and the order
    in which the clients' chunks are sent (each client's in its own order)."""
    chunks = []
    for key, min_msgs, max_msgs in ((b"alice", 4, 30), (b"bob", 0, 8)):
        enc = FrameEncoder()
        msgs = draw(st.lists(_messages, min_size=min_msgs, max_size=max_msgs))
        frames = [login(enc, key)] + [_message(enc, m) for m in msgs]
        data = b"".join(frames)
        ends = np.cumsum([len(f) for f in frames])[:-1].tolist()  # most cuts fall between frames (the lane's
        cuts = draw(st.sets(st.sampled_from(ends), max_size=8)) if ends else set()  # reads), some inside one
        cuts = sorted(cuts | draw(st.sets(st.integers(1, len(data) - 1), max_size=2)))
        bounds = [0, *cuts, len(data)]
        chunks.append([data[a:b] for a, b in itertools.pairwise(bounds)])
    order = draw(st.permutations([0] * len(chunks[0]) + [1] * len(chunks[1])))
    return chunks, order


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                HealthCheck.function_scoped_fixture])
@given(streams=client_streams())
def test_answers_equal_the_sans_io_reference(harness, streams):
    chunks, order = streams
    h = harness()
    ref = Reference()
    clients = [h.connect(), h.connect()]  # accepted in this order: the reference's connections 1, 2
    for c in clients:
        ref.connect(c.conn_id)
    expected = {c.conn_id: 0 for c in clients}
    nxt = [0, 0]
    try:
        for who in order:
            c = clients[who]
            chunk = chunks[who][nxt[who]]
            nxt[who] += 1
            for conn, n in ref.feed(c.conn_id, chunk).items():
                expected[conn] += n
            c.send(chunk)
            if not h.pump(lambda: all(len(x.received) >= expected[x.conn_id] for x in clients), timeout=3.0,
                          fail=False):
                break  # fewer bytes than the reference's: the comparison below shows the difference
        h.pump_for(0.005)  # nothing more comes
        for c in clients:
            assert comparable(bytes(c.received)) == comparable(bytes(ref.out[c.conn_id]))
            assert len(c.received) == expected[c.conn_id]
        assert h.engine.live_orders == ref.engine.live_orders
    finally:
        h.close()
        h.clients.clear()


# -- 2. session state in and out of the lane --------------------------------------------------------


def test_a_frame_split_across_reads_is_taken_once_and_the_session_returns_to_the_lane(harness):
    h = harness()
    c = h.login(b"alice")
    sess = h.session(c)
    lane = h.gw.lane
    h.pump(lambda: sess.index in lane.members, what="the session in the lane")

    first = new_order(c.enc, 1, price=99)
    second = new_order(c.enc, 2, price=99)
    c.send(first + second[:20])  # the second NEW ends mid-frame
    h.expect(c, 1)
    [(t, r)] = c.take()
    assert t == MsgType.EXEC_ACCEPTED and r["client_order_id"] == 1
    h.pump_for(0.01)
    assert sess.decoder.buffered == 20 and sess.index not in lane.members  # a partial frame: out of the lane

    c.send(second[20:] + new_order(c.enc, 3, price=98))
    h.expect(c, 2)
    got = c.take()
    assert [(t, int(r["client_order_id"])) for t, r in got] == [(MsgType.EXEC_ACCEPTED, 2), (MsgType.EXEC_ACCEPTED, 3)]
    assert sess.decoder.buffered == 0 and lane.members.get(sess.index) is not None  # back in the lane

    # the next order goes through the lane: its seq is counted in the lane's row, not in the decoder
    expected_before = int(lane.state[sess.index, EXPECTED])
    decoder_before = sess.decoder.expected_seq
    c.send(new_order(c.enc, 4, price=97))
    h.expect(c, 1)
    [(t, r)] = c.take()
    assert t == MsgType.EXEC_ACCEPTED and r["client_order_id"] == 4
    assert int(lane.state[sess.index, EXPECTED]) == expected_before + 1
    assert sess.decoder.expected_seq == decoder_before  # untouched: the lane held the session

    # a wrong seq, after all that moving in and out: PROTOCOL_ERROR, and the session goes on
    bad_seq = c.enc.next_seq + 3
    c.send(encode_message(MsgType.NEW_ORDER, bad_seq, client_order_id=5, price_ticks=96, qty_lots=1, instrument=1,
                          side=Side.BUY, ord_type=OrdType.LIMIT, tif=Tif.GTC))
    h.expect(c, 1)
    [(t, r)] = c.take()
    assert t == MsgType.PROTOCOL_ERROR and r["reason"] == ProtocolReason.BAD_SEQUENCE
    assert r["ref_type"] == MsgType.NEW_ORDER and r["ref_seq"] == bad_seq
    c.enc.next_seq = bad_seq + 1  # the gateway counts on from the bad frame
    c.send(new_order(c.enc, 6, price=95))
    h.expect(c, 1)
    [(t, r)] = c.take()
    assert t == MsgType.EXEC_ACCEPTED and r["client_order_id"] == 6
    h.pump(lambda: sess.index in lane.members, what="the session back in the lane")

    # every order was taken once: 1, 2, 3, 4, 6 rest (5 was never an order); one NEW each in the engine
    assert h.engine.live_orders == 5
    news = np.concatenate([b[b["action"] == Action.NEW] for b in h.batches])
    assert sorted(news["price_ticks"].tolist()) == [95, 97, 98, 99, 99]
    assert [x for x, _ in parse(bytes(c.received))].count(MsgType.EXEC_ACCEPTED) == 5


# -- 3. the lane's rejects ---------------------------------------------------------------------------


def test_rate_limited_orders_are_rejected_in_the_lane_before_the_batch_runs(harness):
    h = harness(rate_per_s=5, burst=5)
    c = h.login(b"alice")
    sess = h.session(c)
    h.pump(lambda: sess.index in h.gw.lane.members, what="the session in the lane")
    reads = int(h.gw.counters[G_READS])
    c.send(b"".join(new_order(c.enc, cid, price=90 + cid) for cid in range(1, 9)))
    h.expect(c, 8)
    got = [(t, int(r["client_order_id"]), int(r["reason"]) if t == MsgType.EXEC_REJECTED else 0) for t, r in c.take()]
    assert int(h.gw.counters[G_READS]) == reads + 1  # one read: the lane's pass made all 8 answers
    # the module docstrings: a read's rejects are sent at once, in stream order, before its batch runs
    # (so before the acks of the orders that came before them in the stream)
    assert got == ([(MsgType.EXEC_REJECTED, cid, GatewayReason.RATE_LIMITED) for cid in (6, 7, 8)]
                   + [(MsgType.EXEC_ACCEPTED, cid, 0) for cid in (1, 2, 3, 4, 5)])
    assert h.engine.live_orders == 5
    assert sum(len(b) for b in h.batches) == 5  # the rejected ones never reached the engine
    rej = [r for t, r in parse(bytes(c.received)) if t == MsgType.EXEC_REJECTED]
    assert all(r["instrument"] == 1 and r["side"] == Side.BUY for r in rej)


def test_a_duplicate_client_order_id_is_rejected_in_the_lane(harness):
    h = harness()
    c = h.login(b"alice")
    sess = h.session(c)
    h.pump(lambda: sess.index in h.gw.lane.members, what="the session in the lane")
    c.send(new_order(c.enc, 1, price=90) + new_order(c.enc, 2, price=91) + new_order(c.enc, 1, price=92)
           + new_order(c.enc, 3, price=93))
    h.expect(c, 4)
    got = [(t, int(r["client_order_id"]), int(r["reason"]) if t == MsgType.EXEC_REJECTED else 0) for t, r in c.take()]
    assert got == [(MsgType.EXEC_REJECTED, 1, Reason.DUPLICATE_ORDER_ID), (MsgType.EXEC_ACCEPTED, 1, 0),
                   (MsgType.EXEC_ACCEPTED, 2, 0), (MsgType.EXEC_ACCEPTED, 3, 0)]
    assert sess.index in h.gw.lane.members
    # a later read reusing a client id (whatever became of its order) is rejected too, alone
    c.send(new_order(c.enc, 2, price=94))
    h.expect(c, 1)
    [(t, r)] = c.take()
    assert t == MsgType.EXEC_REJECTED and r["reason"] == Reason.DUPLICATE_ORDER_ID and r["client_order_id"] == 2
    assert sorted(h.batches[-1]["price_ticks"].tolist()) == [90, 91, 93] and h.engine.live_orders == 3


# -- 4. slow consumer --------------------------------------------------------------------------------


def test_a_client_that_does_not_read_is_closed_as_slow_consumer_and_its_orders_cancelled(harness):
    h = harness(max_write_buffer=4096)
    a = h.login(b"alice", cod=True, rcvbuf=4096)
    b = h.login(b"bob")
    for cid in (1, 2, 3):
        a.send(new_order(a.enc, cid, Side.BUY, price=90 + cid))
    h.expect(a, 3)
    assert types(a.take()) == [MsgType.EXEC_ACCEPTED] * 3
    b.send(new_order(b.enc, 1, Side.SELL, price=200))
    h.expect(b, 1)
    b.take()
    assert h.engine.live_orders == 4
    sess_a = h.session(a)
    sid_a, idx_a = sess_a.session_id, sess_a.index

    a.reading = False  # from now on a never reads: every order is rejected by the engine (qty 0), 32 bytes back
    cids = iter(range(10, 1 << 30))
    flood, pos = b"", 0
    deadline = time.monotonic() + 15
    while not h.gw.counters[G_SLOW]:
        assert time.monotonic() < deadline, "never found slow"
        if pos == len(flood):
            flood = b"".join(new_order(a.enc, next(cids), qty=0) for _ in range(4000))
            pos = 0
        try:
            pos += a.sock.send(flood[pos:])
        except (BlockingIOError, ConnectionError):
            pass  # a's socket is full (the gateway reads on), or the gateway has aborted it
        h.turn()
        b.drain()
    assert h.gw.counters[G_SLOW] == 1
    assert (a.conn_id, int(ProtocolReason.SLOW_CONSUMER)) in h.gw.closed_reasons
    assert all(conn.conn_id != a.conn_id for conn in h.gw.conns.values())
    assert a.conn_id not in h.sessions.conns and sid_a not in h.sessions.sessions  # forgotten
    assert idx_a not in h.gw.lane.members
    h.turn()  # its cancel-on-disconnect: the next batch
    cancels = np.concatenate([x[x["action"] == Action.CANCEL] for x in h.batches])
    assert len(cancels) == 3 and set(cancels["session"].tolist()) == {sid_a}
    assert h.engine.live_orders == 1  # b's order only
    assert h.engine.best(1) == (0, 200)
    # b goes on, in the lane
    b.send(new_order(b.enc, 2, Side.SELL, price=201))
    h.expect(b, 1)
    [(t, r)] = b.take()
    assert t == MsgType.EXEC_ACCEPTED and r["client_order_id"] == 2
    assert h.session(b).index in h.gw.lane.members
    assert h.gw.counters[G_CONNECTIONS] == 1 and h.gw.counters[G_SESSIONS] == 1


def test_leftover_bytes_of_a_connection_closed_by_its_lane_rejects_are_not_fed_to_the_next_connection(harness):
    """A read the lane cut in two (its rejects, then bytes left to the session layer) whose rejects make
    the connection a slow consumer: it is closed in `_lane_rejects`, while its leftover bytes still wait in
    the same poll's slow entries. A connection accepted later in that poll gets the closed one's fd (the
    kernel hands out the lowest free fd): the leftovers must not be fed to the new connection's session."""
    h = harness(max_write_buffer=4096)
    x = h.login(b"alice", rcvbuf=4096)
    x_sess = h.session(x)
    x_fd = next(fd for fd, conn in h.gw.conns.items() if conn.conn_id == x.conn_id)
    h.gw.conns[x_fd].sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)  # a congested link: no autotuning
    x.send(new_order(x.enc, 1, price=90))
    h.expect(x, 1)
    x.take()
    h.pump(lambda: x_sess.index in h.gw.lane.members, what="x in the lane")
    x.reading = False

    def free(fd: int) -> bool:
        try:
            os.fstat(fd)
        except OSError:
            return True
        return False

    held = [os.open(os.devnull, os.O_RDONLY) for fd in range(x_fd) if free(fd)]  # x_fd: the lowest once x closes
    try:
        h.pump_for(0.01)  # nothing is ready now: below, the listener becomes ready first, then x
        y = Client(h.gw.port)  # a new connection waits in the listener's queue
        h.clients.append(y)
        dups = b"".join(new_order(x.enc, 1, price=90) for _ in range(1000))  # 1000 lane rejects: 32 KB back
        x.send(dups + x.enc.message(MsgType.HEARTBEAT)[:4])  # then half a frame: the session layer's
        h.turn()  # one poll: x's rejects close it (slow consumer), then y is accepted, then x's leftovers
    finally:
        for fd in held:
            os.close(fd)
    assert (x.conn_id, int(ProtocolReason.SLOW_CONSUMER)) in h.gw.closed_reasons and h.gw.counters[G_SLOW] == 1
    [y_conn] = h.gw.conns.values()
    y.conn_id = y_conn.conn_id
    assert y_conn.fd == x_fd  # the situation of this test: y has x's fd
    assert h.sessions.conns[y.conn_id].decoder.buffered == 0, "x's leftover bytes were fed to y's session"
    y.send(login(y.enc, b"bob"))
    h.expect(y, 1)
    [(t, ack)] = y.take()
    assert t == MsgType.LOGIN_ACK and ack["account"] == 2


# -- 5. disconnect and shutdown ----------------------------------------------------------------------


def test_a_client_that_closes_has_its_orders_cancelled(harness):
    h = harness()
    a = h.login(b"alice", cod=True)
    b = h.login(b"bob")  # no cancel-on-disconnect
    a.send(new_order(a.enc, 1, Side.BUY, 99) + new_order(a.enc, 2, Side.BUY, 98, qty=3))
    b.send(new_order(b.enc, 1, Side.SELL, 110))
    h.expect(a, 2)
    h.expect(b, 1)
    assert types(a.take()) == [MsgType.EXEC_ACCEPTED] * 2 and types(b.take()) == [MsgType.EXEC_ACCEPTED]
    a.send(new_order(a.enc, 3, Side.BUY, 110, qty=1))  # fills b's order: nothing of it left to cancel
    h.expect(a, 2)
    assert types(a.take()) == [MsgType.EXEC_ACCEPTED, MsgType.EXEC_FILL]
    assert h.engine.live_orders == 2
    sid_a = h.session(a).session_id
    a.close()
    h.clients.remove(a)
    h.pump(lambda: h.engine.live_orders == 0, what="a's orders cancelled")
    cancels = np.concatenate([x[x["action"] == Action.CANCEL] for x in h.batches])
    assert len(cancels) == 2 and set(cancels["session"].tolist()) == {sid_a}
    assert a.conn_id not in h.sessions.conns and h.gw.counters[G_CONNECTIONS] == 1
    assert not h.gw.closed_reasons  # a plain EOF has no reason
    b.send(new_order(b.enc, 2, Side.BUY, 50))  # b goes on
    h.expect(b, 2)
    assert types(b.take()) == [MsgType.EXEC_FILL, MsgType.EXEC_ACCEPTED]
    assert h.engine.live_orders == 1


def test_shutdown_logs_everyone_out_and_returns_the_owed_cancels(harness):
    h = harness()
    a = h.login(b"alice", cod=True)
    b = h.login(b"bob")
    a.send(new_order(a.enc, 1, Side.BUY, 99) + new_order(a.enc, 2, Side.BUY, 98))
    b.send(new_order(b.enc, 1, Side.SELL, 120))
    h.expect(a, 2)
    h.expect(b, 1)
    a.take()
    b.take()
    sid_a = h.session(a).session_id
    owed = h.stop()
    assert owed.dtype == COMMAND and len(owed) == 2
    assert set(owed["action"].tolist()) == {Action.CANCEL} and set(owed["session"].tolist()) == {sid_a}
    for c in (a, b):
        deadline = time.monotonic() + TIMEOUT
        while not c.eof and time.monotonic() < deadline:
            c.drain()
            time.sleep(0.001)
        assert c.eof
        [(t, r)] = c.take()
        assert t == MsgType.LOGOUT and r["reason"] == ProtocolReason.SHUTDOWN
    assert not h.gw.conns and not h.sessions.conns and h.gw.counters[G_CONNECTIONS] == 0
    h.run(owed.copy())
    assert h.engine.live_orders == 1  # b's


# -- 6. heartbeats and timeouts ---------------------------------------------------------------------


def test_heartbeats_and_the_idle_timeout_and_the_lane_afterwards(harness):
    h = harness(heartbeat_ms=100, timer_s=0.005)
    idle = h.login(b"alice")
    live = h.login(b"bob")
    t0 = time.monotonic()
    last_hb = 0.0
    while not idle.eof:
        assert time.monotonic() - t0 < 3, "the idle client was never timed out"
        if time.monotonic() - last_hb > 0.02:  # live keeps talking (in the lane: HEARTBEAT frames)
            live.send(live.enc.message(MsgType.HEARTBEAT))
            last_hb = time.monotonic()
        h.turn()
        idle.drain()
        live.drain()
    got = idle.take()
    assert types(got[:-1]) and set(types(got[:-1])) == {MsgType.HEARTBEAT}  # heartbeats while it was quiet
    assert got[-1][0] == MsgType.LOGOUT and got[-1][1]["reason"] == ProtocolReason.HEARTBEAT_TIMEOUT
    assert (idle.conn_id, int(ProtocolReason.HEARTBEAT_TIMEOUT)) in h.gw.closed_reasons
    assert idle.conn_id not in h.sessions.conns
    # the timer ran many times (each moves every session out of the lane and back): the lane still serves
    assert not live.eof and set(types(live.take())) <= {MsgType.HEARTBEAT}
    sess = h.session(live)
    assert sess.index in h.gw.lane.members
    live.send(new_order(live.enc, 1, Side.SELL, 105))
    h.expect(live, 1)
    assert [(t, int(r["client_order_id"])) for t, r in live.take() if t != MsgType.HEARTBEAT] == [
        (MsgType.EXEC_ACCEPTED, 1)]
    assert h.gw.counters[G_CONNECTIONS] == 1


def test_a_session_answered_only_by_lane_rejects_is_not_sent_heartbeats(harness):
    """Any frame the gateway sends counts as its life (the session layer stamps last_sent_ns for its
    rejects): a session whose reads are only answered by rejects made in the lane is not quiet."""
    h = harness(heartbeat_ms=200, timer_s=0.005)
    c = h.login(b"alice")
    c.send(new_order(c.enc, 1, price=90))
    h.expect(c, 1)
    c.take()
    t0 = time.monotonic()
    while time.monotonic() - t0 < 0.7:  # a duplicate id every 20 ms: one EXEC_REJECTED each
        c.send(new_order(c.enc, 1, price=90))
        h.pump_for(0.02)
    got = types(c.take())
    assert got.count(MsgType.EXEC_REJECTED) >= 20
    # the session layer alone, same timing on a simulated clock: its rejects keep the session from being quiet
    now = [10**9]
    ref = GatewaySessions(KEYS, heartbeat_ms=200, clock=lambda: now[0])
    enc = FrameEncoder()
    dec = BinaryDecoder(GATEWAY_MESSAGES)
    _, replies, _ = ref.on_bytes(1, login(enc, b"alice") + new_order(enc, 1, price=90))
    dec.feed(replies[1])
    ref_got = []
    for ms in range(5, 705, 5):
        now[0] += 5_000_000
        _, replies, _ = ref.on_bytes(1, new_order(enc, 1, price=90)) if ms % 20 == 0 else (0, {}, 0)
        replies = [replies.get(1, b""), ref.on_timer()[0].get(1, b"")]
        ref_got += [item.msg_type for data in replies for item in dec.feed(data) for _ in item.records]
    assert MsgType.EXEC_REJECTED in ref_got and MsgType.HEARTBEAT not in ref_got
    assert MsgType.HEARTBEAT not in got, f"{got.count(MsgType.HEARTBEAT)} heartbeats among {len(got)} frames: {got}"


# -- 7. counters --------------------------------------------------------------------------------------


def test_counters(harness):
    h = harness()
    a = h.login(b"alice")
    b = h.login(b"bob")
    a.send(new_order(a.enc, 1, Side.BUY, 100, qty=2) + new_order(a.enc, 2, Side.BUY, 99))
    h.expect(a, 2)
    b.send(new_order(b.enc, 1, Side.SELL, 100) + b.enc.message(MsgType.CANCEL, client_order_id=9))
    h.expect(b, 3)
    h.expect(a, 3)
    h.pump_for(0.005)
    cnt = h.gw.counters
    assert cnt[G_READS] >= 4
    assert cnt[G_BYTES_IN] == a.sent_bytes + b.sent_bytes
    assert cnt[G_REPORT_BYTES] == len(a.received) + len(b.received)
    assert cnt[G_CONNECTIONS] == 2 == len(h.gw.conns)
    assert cnt[G_SESSIONS] == 2
    assert sum(len(x) for x in h.batches) == 3  # NEW, NEW, NEW (the CANCEL of an unknown id is the gateway's)
    assert cnt[G_COMMANDS] == 3, "commands handed to the engine are counted (as GatewayServer counts them)"


def test_connection_counter_follows_closes(harness):
    h = harness()
    a = h.login(b"alice")
    b = h.login(b"bob")
    assert h.gw.counters[G_CONNECTIONS] == 2
    a.close()
    h.clients.remove(a)
    h.pump(lambda: h.gw.counters[G_CONNECTIONS] == 1, what="the close counted")
    assert len(h.gw.conns) == 1 and h.gw.counters[G_SESSIONS] == 1
    b.send(b.enc.message(MsgType.LOGOUT, reason=0))
    h.pump(lambda: b.eof, what="b's logout")
    assert types(b.take()) == [MsgType.LOGOUT]
    assert h.gw.counters[G_CONNECTIONS] == 0 == len(h.gw.conns) and h.gw.counters[G_SESSIONS] == 0
