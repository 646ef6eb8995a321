"""Findings of a review of the colocated gateway (gateway/colocated.py, gateway/lane.py,
gateway/client_ids.py) and the engine-loop wiring around it (pipeline/engine_process.py): each
test failed on one bug, fixed since, and keeps it from coming back.

The harness is _colocated_harness.py's (one thread: a `Harness` turns the gateway as
pipeline/engine_process.py does, clients are non-blocking loopback sockets), with its knobs for
the engine's capacities, the gateway's `expected_orders` and the engine loop's batch size.
"""

from __future__ import annotations

import socket
import time

import numpy as np

from microex.core.config import EngineConfig
from microex.core.records import COMMAND, Action, Side
from microex.gateway import lane as lane_module
from microex.gateway.client_ids import capacity
from microex.pipeline.metrics import G_REPORT_BYTES
from microex.protocol.binary import (
    MsgType,
    ProtocolReason,
)


def types(frames) -> list[MsgType]:
    return [t for t, _ in frames]
from tests.unit.gateway._colocated_harness import BATCH, login, new_order

# -- 1. cancel-on-disconnect of more orders than a batch holds stalls the gateway for good -----------


def test_cancel_on_disconnect_of_more_open_orders_than_a_batch_does_not_stall_the_gateway(harness):
    """colocated.py `_put_later` only ever moves a *whole* array of `_later` into the batch
    (`len(self._later[0]) <= limit - at`), and `poll` returns early while `_later` is not empty.
    `_end` appends a session's cancel-on-disconnect CANCELs as one array (GatewaySessions.on_disconnect:
    one per open order), so a session with more open orders than the engine's batch (16,384; the venue
    allows 2^18 resting orders and no per-account limit by default) leaves an array that never fits: from
    then on every poll returns at once. Its orders are never cancelled, and the gateway reads, accepts and
    answers nothing more until the engine stops (sessions then time out, adding more stuck CANCELs).
    Fix: let `_put_later` split the head of `_later` (put `limit - at` rows, keep the rest as the new head),
    or cut on_disconnect's array into batch-sized pieces when it is appended."""
    h = harness(engine_config=EngineConfig(max_orders=1 << 15, max_levels=256, id_capacity=1 << 16))
    a = h.login(b"alice", cod=True)
    b = h.login(b"bob")
    n = BATCH + 1
    h.send_all(a, b"".join(new_order(a.enc, cid, Side.BUY, price=90 + cid % 8) for cid in range(1, n + 1)))
    h.pump(lambda: h.engine.live_orders == n, what=f"{n} resting orders")
    a.close()
    h.clients.remove(a)
    cancelled = h.pump(lambda: h.engine.live_orders == 0, timeout=2.0, fail=False)
    b.send(new_order(b.enc, 1, Side.SELL, price=200))
    answered = h.pump(lambda: len(b.frames()) >= 1, timeout=2.0, fail=False)
    assert cancelled, f"alice's cancel-on-disconnect never ran: {h.engine.live_orders} orders still rest"
    assert answered and types(b.take()) == [MsgType.EXEC_ACCEPTED], "the gateway stopped answering bob"


# -- 2. the lane reserves a whole batch of ids per poll: tables sized for `expected_orders` double early ----


def test_tables_sized_for_expected_orders_do_not_double_long_before_that_many_orders(harness):
    """docs/serve.md (`expected_orders`): the engine's and the gateway's id tables are built for
    `expected_orders` at start and double only past it (logged, `expected_orders_too_low`). But
    FastLane.read calls `sessions.make_room(limit - at)` on every poll, i.e. room for a whole batch
    (16,384) of *new* orders on top of those already taken, whatever the sockets hold: OrderIdMap (sized
    exactly `expected_orders`) doubles once `used > expected_orders - 16384`, the client-id table (2x,
    rounded up to a power of two) once `used > capacity/2 - 16384`. With expected_orders = 2^14 both
    double on the second order, with the default 2^16 the OrderIdMap doubles at 49,153 orders: the
    millisecond rehash/copy with the loop stopped that the setting exists to avoid, plus a false
    "expected_orders_too_low" log. Fix: build the tables with a batch's slack on top of expected_orders
    (OrderIdMap(E + BATCH), ClientIdMap(E + BATCH)), or reserve in the lane only what a turn's reads can
    hold (at most arena bytes // MIN_ORDER_FRAME, and no more than `limit - at`) on top of a slack that the
    constructor already includes."""
    expected = 1 << 14
    h = harness(expected_orders=expected)
    status, table = h.sessions.ids.status, h.sessions.cids.table
    c = h.login(b"alice")
    for cid in range(1, 11):  # 10 orders of the 16,384 the venue was sized for
        c.send(new_order(c.enc, cid, Side.BUY, price=90 + cid))
        h.expect(c, 1)
        assert types(c.take()) == [MsgType.EXEC_ACCEPTED]
    assert h.sessions.ids.used == 10
    assert h.sessions.ids.status is status, (
        f"the engine-id table grew from {len(status)} to {len(h.sessions.ids.status)} slots after 10 orders")
    assert h.sessions.cids.table is table, (
        f"the client-id table doubled from {capacity(table)} to {capacity(h.sessions.cids.table)} after 10 orders")


# -- 3. lane_send reads past the lane's state rows ------------------------------------------------------


def test_reports_for_a_session_that_never_entered_the_lane_do_not_read_past_the_lane_state(harness, monkeypatch):
    """lane.py `lane_send` reads `state[s, FD]` for the session index of every report segment, but
    FastLane.state has 64 rows at start and grows only in `enter` (`_room`). Session indexes count
    connections over the gateway's life (they are never reused), so after 64 connections a session that
    has not entered the lane yet (its login read ended inside a frame, or its socket had bytes queued)
    gets its reports routed with an index past the array: the compiled kernel (no bounds checks) reads
    heap memory beyond `state` as that session's fd. It is benign only while the garbage does not happen
    to pass the `fd_sidx[fd] == s + 1` check (and the write `state[s, LAST_SENT]` is not reached).
    The test runs the kernel's Python body (numpy checks bounds) to make the read visible.
    Fix: in lane_send treat `s >= state.shape[0]` as not in the lane (sent = -2), or grow `state` (and
    `tokens`) when a session is created rather than when it enters."""
    h = harness()
    ghosts = [h.connect() for _ in range(64)]  # 64 connections come and go: indexes 0..63
    for g in ghosts:
        g.close()
        h.clients.remove(g)
    h.pump(lambda: not h.gw.conns, what="the 64 connections closed")
    assert len(h.gw.lane.state) == 64  # nobody logged in: the lane's rows never grew
    monkeypatch.setattr(lane_module, "lane_send", lane_module.lane_send.py_func)

    c = h.connect()
    # LOGIN and a NEW, then half a HEARTBEAT: the session layer keeps 4 bytes, so it stays out of the lane
    c.send(login(c.enc, b"alice") + new_order(c.enc, 1, Side.BUY, price=95) + c.enc.message(MsgType.HEARTBEAT)[:4])
    h.expect(c, 2)
    assert h.session(c).index == 64 and h.session(c).index not in h.gw.lane.members
    assert types(c.take()) == [MsgType.LOGIN_ACK, MsgType.EXEC_ACCEPTED]


# -- 4. reserve_ids makes the live engine's digest differ from replay's ----------------------------------


def test_recover_and_replay_agree_on_the_digest_of_an_engine_run_with_expected_orders(tmp_path):
    """engine_process.py: `engine.reserve_ids(s.expected_orders)` grows the engine's id map before the first
    batch; serve always passes `expected_orders` (default 65,536, more than half the default id_capacity of
    65,536, so every served venue's map is doubled). MatchingEngine.digest() hashes the id map's raw bytes
    (its capacity and every pair's position), so the snapshots the engine writes, and `microex recover`,
    give another digest than `microex replay` for the same commands (docs/pipeline.md: "same line, same
    digest"; recovery.py: "its digest equals replay's"). Fix: make the digest independent of the map's
    capacity (hash the map's (id, value) pairs sorted by id), or record the reservation in the data
    directory's identity so replay/recover build the same map (e.g. apply it in DataDir.new_engine)."""
    from microex.perf.workload import match_mix
    from microex.pipeline.datadir import DataDir
    from microex.pipeline.local import LocalPipeline
    from microex.pipeline.recovery import recover, replay

    config = EngineConfig(max_instruments=2, max_orders=1 << 12, max_levels=1 << 10, id_capacity=1 << 10)
    w = match_mix(400, seed=3, book_target=100)
    cmds = np.zeros(len(w.setup) + len(w.cmds), dtype=COMMAND)
    cmds[: len(w.setup)] = w.setup
    cmds[len(w.setup) :] = w.cmds
    data = DataDir(tmp_path / "data")
    data.create(config, None)
    with LocalPipeline(str(data.root), expected_orders=1 << 12) as pipe:  # as serve runs the engine
        pipe.feed(cmds)
        pipe.wait_for(len(cmds))
    # the stop wrote a snapshot at the last seq: recover = that snapshot; replay = the journal from empty
    n_rec, recovered, _ = recover(data)
    n_rep, replayed = replay(data)
    assert n_rec == n_rep == len(cmds)
    assert recovered == replayed, "microex recover and microex replay print different digests"


# -- 5. a batch smaller than a lane read: the lane never reads --------------------------------------------


def test_a_batch_smaller_than_one_lane_read_still_serves_orders(harness):
    """lane.py `lane_read` skips every socket of the lane while `limit - at < FRAMES_PER_READ` (4,096),
    leaving it readable for "the next turn"; with an engine loop whose batch is below 4,096
    (EngineSettings.batch / LocalPipeline(batch=...) are configurable, and poll's contract is
    cmds[at:limit] for any limit) that turn never comes: a logged-in session's orders are never read, and
    its always-ready socket keeps the idle loop from sleeping (100% CPU). Fix: size the recv to the room
    (`min(READ_MAX, (limit - at) * MIN_ORDER_FRAME, ...)`), or refuse batch < FRAMES_PER_READ when a
    gateway is colocated."""
    h = harness(batch=1024)
    c = h.login(b"alice")  # the login goes through the session layer: answered
    h.pump(lambda: h.session(c).index in h.gw.lane.members, what="alice in the lane")
    c.send(new_order(c.enc, 1, Side.BUY, price=95))
    answered = h.pump(lambda: len(c.frames()) - c._parsed >= 1, timeout=1.0, fail=False)
    assert answered, "an order from a session in the lane is never read when the batch is under 4,096"
    assert types(c.take()) == [MsgType.EXEC_ACCEPTED]


# -- 6. a closed session whose peer stopped reading is never disconnected ---------------------------------


def test_a_timed_out_session_that_no_longer_reads_is_disconnected_and_its_orders_cancelled(harness):
    """colocated.py `_deliver`: a session the sessions close (here HEARTBEAT_TIMEOUT) whose connection still
    has bytes queued is only marked `closing` and left registered for EPOLLOUT, to be ended "once its bytes
    are out"; nothing bounds that wait. A client that hangs (stops reading and sending: exactly the case
    the heartbeat timeout is for) keeps its socket buffers full, so the connection is never ended: its fd
    and Session stay forever and its cancel-on-disconnect never runs, its orders rest in the book although
    the venue logged it out. (GatewayServer's transport.close() waits the same way.)
    Fix: give a closing connection a deadline (e.g. one heartbeat interval) after which it is aborted
    (`_end`), and/or abort at once when the reason is HEARTBEAT_TIMEOUT or SLOW_CONSUMER."""
    h = harness(heartbeat_ms=100, timer_s=0.005)
    a = h.login(b"alice", cod=True, rcvbuf=4096)
    conn = next(x for x in h.gw.conns.values() if x.conn_id == a.conn_id)
    conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)  # a congested link: no autotuning
    a.send(new_order(a.enc, 1, Side.BUY, price=95))
    h.expect(a, 1)
    assert types(a.take()) == [MsgType.EXEC_ACCEPTED] and h.engine.live_orders == 1

    a.reading = False  # alice hangs: from now on she reads nothing
    cids = iter(range(10, 1 << 30))
    deadline = time.monotonic() + 5
    pending = b""
    while not conn.queued:  # orders the engine rejects (qty 0) until the socket has stopped taking reports
        assert time.monotonic() < deadline, "the socket never filled"
        if not pending:
            pending = b"".join(new_order(a.enc, next(cids), qty=0) for _ in range(50))
        try:
            pending = pending[a.sock.send(pending) :]
        except BlockingIOError:
            pass
        h.turn()
    while pending:  # whole frames only: the rest of the last chunk
        try:
            pending = pending[a.sock.send(pending) :]
        except BlockingIOError:
            pass
        h.turn()
    assert conn.queued and not conn.closing  # alice's connection has bytes waiting, and she is silent now

    h.pump(lambda: (a.conn_id, int(ProtocolReason.HEARTBEAT_TIMEOUT)) in h.gw.closed_reasons,
           what="the heartbeat timeout")
    h.pump_for(1.0)  # ten heartbeat intervals after it
    assert all(x.conn_id != a.conn_id for x in h.gw.conns.values()), "the timed-out connection is never ended"
    assert h.engine.live_orders == 0, "the timed-out session's cancel-on-disconnect never ran"
    cancels = np.concatenate([x[x["action"] == Action.CANCEL] for x in h.batches])
    assert len(cancels) == 1


# -- 7. a flush that empties the queue puts the session in the lane before the same event's read ----------


def test_a_socket_writable_and_readable_at_once_keeps_the_sessions_seq(harness):
    """colocated.py `poll`, slow entry with mask EPOLLIN|EPOLLOUT (a connection with reports queued, which
    its client has just read, and which has sent a new order): `_flush` sends the whole queue and calls
    `_enter`, so the session is back in the lane (its row copied from the Session) *before* the same
    entry's `_read` hands the new bytes to the session layer. `on_bytes` then advances the Session's decoder
    seq (and tokens, last receive time) while the lane's row keeps the old values; the final `_enter` is a
    no-op (already a member), and the next `_leave` copies the stale row back over the Session. The
    client's next frame is answered PROTOCOL_ERROR BAD_SEQUENCE and dropped: an order lost for a client
    that did nothing wrong. Fix: `_flush` should not `_enter` (the slow loop's final `_enter`, after the
    read, does it), or `_leave` before the session layer reads."""
    h = harness()
    a = h.login(b"alice", rcvbuf=4096)
    sess = h.session(a)
    conn = next(x for x in h.gw.conns.values() if x.conn_id == a.conn_id)
    conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)  # a congested link: no autotuning
    h.pump(lambda: sess.index in h.gw.lane.members, what="alice in the lane")

    a.reading = False  # alice is busy: one order a turn (one report each) until a report no longer fits
    cid = 0
    deadline = time.monotonic() + 5
    while not conn.queued:
        assert time.monotonic() < deadline, "the socket never filled"
        cid += 1
        a.send(new_order(a.enc, cid, Side.BUY, price=50 + cid % 40))
        h.turn()
        h.turn()
    assert sess.index not in h.gw.lane.members and len(conn.queued) <= 56
    h.pump_for(0.02)  # nothing else to read; the queue waits for EPOLLOUT

    a.reading = True  # alice reads everything the kernel holds for her, then sends her next order
    t0 = time.monotonic()
    while time.monotonic() - t0 < 0.05:
        a.drain()
    a.take()
    a.send(new_order(a.enc, 100_001, Side.BUY, price=45))
    time.sleep(0.01)
    h.turn()  # one poll: the socket is writable (queue flushed) and readable (the order)
    assert not conn.queued, "the queue was not flushed in that turn (the situation of this test)"
    h.expect(a, 1)
    got = [(t, int(r["client_order_id"])) for t, r in a.take() if t != MsgType.HEARTBEAT]
    assert got[-1] == (MsgType.EXEC_ACCEPTED, 100_001)

    a.send(new_order(a.enc, 100_002, Side.BUY, price=44))  # the next frame, in sequence
    h.expect(a, 1)
    [(t, r)] = a.take()
    assert t == MsgType.EXEC_ACCEPTED and r["client_order_id"] == 100_002, (
        f"got {t.name} (reason {int(r['reason'])}) for an order in sequence")


# -- 8. report bytes counted for sessions that are gone -------------------------------------------------


def test_report_bytes_count_only_what_was_sent(harness):
    """colocated.py `on_events` adds every routed segment to microex_gateway_report_bytes
    (`counters[G_REPORT_BYTES] += seg_end[nseg - 1]`), including the segments of sessions that have
    disconnected, which are then skipped and never sent. route_reports routes by the order's owner
    whether or not it is still connected, so every cancel-on-disconnect (one EXEC_CANCELLED per order of
    the session that just left) and every fill of a gone session's resting order inflates the counter;
    GatewayServer counts only the bytes it writes. Fix: count per segment as it is delivered (the lane's
    sent bytes plus what `_send` queues), not the whole buffer up front."""
    h = harness()
    a = h.login(b"alice", cod=True)
    b = h.login(b"bob")
    a.send(new_order(a.enc, 1, Side.BUY, 99) + new_order(a.enc, 2, Side.BUY, 98))
    h.expect(a, 2)
    a.take()
    received_by_a = len(a.received)
    a.close()
    h.clients.remove(a)
    h.pump(lambda: h.engine.live_orders == 0, what="alice's orders cancelled")  # two reports nobody gets
    b.send(new_order(b.enc, 1, Side.SELL, 120))
    h.expect(b, 1)
    h.pump_for(0.005)
    assert int(h.gw.counters[G_REPORT_BYTES]) == received_by_a + len(b.received)
