"""ClientProtocol (sans-I/O) against the real gateway session layer and a real engine, no sockets."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from microex.client.protocol import (
    TRANSITIONS,
    ClientProtocol,
    ClientState,
    ExecReport,
    ExecReports,
    Heartbeat,
    LoginAccepted,
    LoginRejected,
    Logout,
    ProtocolError,
    ProtocolStateError,
    ProtocolViolation,
    answered_request,
    expand,
    order_records,
    reason_name,
)
from microex.core.config import EngineConfig
from microex.core.engine import MatchingEngine
from microex.core.records import OrdType, Reason, Side, Tif
from microex.gateway.session import GatewayReason, GatewaySessions
from microex.protocol.binary import FrameEncoder, Liquidity, MsgType, ProtocolReason

KEYS = {b"alice-key": 11, b"bob-key": 22}
HB_MS = 1000
MS = 1_000_000


class Clock:
    def __init__(self) -> None:
        self.now = 5_000_000_000

    def __call__(self) -> int:
        return self.now


class Venue:
    """GatewaySessions + a MatchingEngine, wired as the server would be; clients are ClientProtocols."""

    def __init__(self, **kw) -> None:
        self.clock = Clock()
        self.gw = GatewaySessions(KEYS, heartbeat_ms=HB_MS, clock=self.clock, **kw)
        self.engine = MatchingEngine(EngineConfig(max_instruments=4, max_orders=1024, max_levels=64,
                                                  id_capacity=1024))
        self.clients: dict[int, ClientProtocol] = {}
        self.closed: list[tuple[int, int]] = []
        self.seq = 0

    def connect(self, conn: int) -> ClientProtocol:
        self.gw.on_connect(conn)
        self.clients[conn] = ClientProtocol(clock=self.clock)
        return self.clients[conn]

    def _run(self, cmds: np.ndarray, got: dict[int, list]) -> None:
        if not len(cmds):
            return
        cmds = cmds.copy()
        cmds["seq"] = np.arange(self.seq + 1, self.seq + 1 + len(cmds))  # the sequencer's job
        self.seq += len(cmds)
        for conn, data in self.gw.on_events(self.engine.process(cmds)).items():
            got.setdefault(conn, []).extend(self.clients[conn].feed(data))

    def send(self, conn: int, *frames: bytes) -> dict[int, list]:
        """Client bytes in; every connection's events out (the gateway's direct replies first)."""
        cmds, replies, closed = self.gw.on_bytes(conn, b"".join(frames))
        self.closed.extend(closed)
        got = {c: self.clients[c].feed(data) for c, data in replies.items()}
        self._run(cmds, got)
        return got

    def disconnect(self, conn: int) -> dict[int, list]:
        got: dict[int, list] = {}
        self.clients[conn].connection_lost()
        self._run(self.gw.on_disconnect(conn), got)
        return got

    def logged_in(self, conn: int, key: bytes, cod: bool = False) -> ClientProtocol:
        c = self.connect(conn)
        [ack] = self.send(conn, c.login(key, cod))[conn]
        assert type(ack) is LoginAccepted
        return c


@pytest.fixture
def venue() -> Venue:
    return Venue()


def only(events: list, kind: MsgType) -> list[ExecReport]:
    return [e for e in events if type(e) is ExecReport and e.kind == kind]


# -- login and logout ------------------------------------------------------------------------------


def test_transition_table_has_a_row_per_open_state_and_message():
    assert len(TRANSITIONS) == 11  # CONNECTED: ack, reject + 3 common; LOGGED_IN and CLOSING: 3 common each
    assert all(state is not ClientState.CLOSED for state, _ in TRANSITIONS)


def test_login_accepted(venue):
    c = venue.connect(1)
    assert c.state is ClientState.CONNECTED
    [ev] = venue.send(1, c.login(b"bob-key"))[1]
    assert ev == LoginAccepted(venue.gw.conns[1].session_id, HB_MS, 22)
    assert c.state is ClientState.LOGGED_IN and (c.session, c.account, c.heartbeat_ms) == (ev.session, 22, HB_MS)


def test_login_rejected_with_reason(venue):
    c = venue.connect(1)
    [ev] = venue.send(1, c.login(b"mallory"))[1]
    assert ev == LoginRejected(ProtocolReason.AUTH_FAILED)
    assert c.state is ClientState.CLOSED and c.close_reason == ProtocolReason.AUTH_FAILED
    assert venue.closed == [(1, ProtocolReason.AUTH_FAILED)]
    assert reason_name(ev.reason) == "AUTH_FAILED"
    with pytest.raises(ProtocolStateError):
        c.heartbeat()


def test_cancel_on_disconnect_flag_reaches_the_gateway(venue):
    venue.logged_in(1, b"alice-key", cod=True)
    venue.logged_in(2, b"bob-key")
    assert venue.gw.conns[1].cancel_on_disconnect and not venue.gw.conns[2].cancel_on_disconnect


def test_sends_are_checked_against_the_state(venue):
    c = venue.connect(1)
    with pytest.raises(ProtocolStateError):
        c.new_order(1, 1, Side.BUY, 100, 1)  # before LOGIN_ACK
    c.login(b"alice-key")
    with pytest.raises(ProtocolStateError):
        c.login(b"alice-key")  # once per connection
    with pytest.raises(ValueError):
        ClientProtocol().login(b"k" * 33)


def test_a_value_out_of_range_raises_and_uses_no_seq(venue):
    c = venue.logged_in(1, b"alice-key")
    seq = c.next_seq
    with pytest.raises(ValueError):
        c.new_order(1, 1, 300, 100, 1)  # side is a u8
    with pytest.raises(ValueError):
        c.cancel(-1)  # client ids are u64
    assert c.next_seq == seq
    [ack] = venue.send(1, c.new_order(1, 1, Side.BUY, 100, 1))[1]  # numbering intact: no BAD_SEQUENCE
    assert ack.kind == MsgType.EXEC_ACCEPTED


def test_logout_round_trip(venue):
    c = venue.logged_in(1, b"alice-key")
    data = c.logout()
    assert c.state is ClientState.CLOSING
    with pytest.raises(ProtocolStateError):
        c.cancel(1)
    [ev] = venue.send(1, data)[1]
    assert ev == Logout(0) and c.state is ClientState.CLOSED and venue.closed == [(1, 0)]
    assert c.feed(c.encoder.message(MsgType.HEARTBEAT)) == []  # closed: nothing more is decoded


# -- orders ----------------------------------------------------------------------------------------


def test_accept_and_engine_reject_carry_the_client_id(venue):
    c = venue.logged_in(1, b"alice-key")
    got = venue.send(1, c.new_order(7, 1, Side.BUY, 100, 5), c.new_order(8, 1, Side.BUY, 100, 0))[1]
    assert [e.kind for e in got] == [MsgType.EXEC_ACCEPTED, MsgType.EXEC_REJECTED]
    acc, rej = got
    assert (acc.client_order_id, acc.instrument, acc.side, acc.price_ticks, acc.qty_lots, acc.leaves_lots) == \
        (7, 1, Side.BUY, 100, 5, 5)
    assert acc.ts_ns == venue.clock.now
    assert (rej.client_order_id, rej.reason) == (8, Reason.INVALID_QTY)
    assert venue.engine.best(1) == (100, 0)


def test_fill_reported_to_both_sides_with_their_own_ids(venue):
    a = venue.logged_in(1, b"alice-key")
    b = venue.logged_in(2, b"bob-key")
    venue.send(1, a.new_order(50, 1, Side.SELL, 100, 10))
    got = venue.send(2, b.new_order(900, 1, Side.BUY, 101, 4))
    [taker] = only(got[2], MsgType.EXEC_FILL)
    [maker] = only(got[1], MsgType.EXEC_FILL)
    assert (taker.client_order_id, taker.side, taker.liquidity, taker.price_ticks, taker.qty_lots,
            taker.leaves_lots) == (900, Side.BUY, Liquidity.TAKER, 100, 4, 0)
    assert (maker.client_order_id, maker.side, maker.liquidity, maker.price_ticks, maker.qty_lots,
            maker.leaves_lots) == (50, Side.SELL, Liquidity.MAKER, 100, 4, 6)
    assert [e.kind for e in got[2]] == [MsgType.EXEC_ACCEPTED, MsgType.EXEC_FILL]


def test_ioc_remainder_is_cancelled_after_the_fill(venue):
    a = venue.logged_in(1, b"alice-key")
    b = venue.logged_in(2, b"bob-key")
    venue.send(1, a.new_order(1, 1, Side.SELL, 100, 2))
    got = venue.send(2, b.new_order(1, 1, Side.BUY, 100, 5, OrdType.LIMIT, Tif.IOC))[2]
    assert [e.kind for e in got] == [MsgType.EXEC_ACCEPTED, MsgType.EXEC_FILL, MsgType.EXEC_CANCELLED]
    assert (got[2].reason, got[2].qty_lots) == (Reason.IOC, 3)


def test_modify_and_cancel(venue):
    c = venue.logged_in(1, b"alice-key")
    venue.send(1, c.new_order(1, 1, Side.BUY, 100, 5))
    [mod] = venue.send(1, c.modify(1, 98, 3))[1]
    assert (mod.kind, mod.client_order_id, mod.price_ticks, mod.leaves_lots, mod.qty_lots) == \
        (MsgType.EXEC_MODIFIED, 1, 98, 3, 0)
    assert venue.engine.best(1) == (98, 0)
    [can] = venue.send(1, c.cancel(1))[1]
    assert (can.kind, can.client_order_id, can.reason, can.qty_lots, can.price_ticks, can.leaves_lots) == \
        (MsgType.EXEC_CANCELLED, 1, Reason.USER, 3, 98, 0)
    assert venue.engine.best(1) == (0, 0)


def test_unknown_order_rejects(venue):
    c = venue.logged_in(1, b"alice-key")
    got = venue.send(1, c.cancel(42), c.modify(43, 100, 1))[1]
    assert [(e.kind, e.client_order_id, e.reason) for e in got] == [
        (MsgType.EXEC_REJECTED, 42, Reason.UNKNOWN_ORDER), (MsgType.EXEC_REJECTED, 43, Reason.UNKNOWN_ORDER)]
    venue.send(1, c.new_order(1, 1, Side.BUY, 100, 1))
    venue.send(1, c.cancel(1))
    [again] = venue.send(1, c.cancel(1))[1]  # known id, no longer resting: the engine says so
    assert (again.kind, again.reason) == (MsgType.EXEC_REJECTED, Reason.UNKNOWN_ORDER)


def test_rate_limited_reject_carries_the_new_orders_side():
    venue = Venue(rate_per_s=10, burst=1)
    c = venue.logged_in(1, b"alice-key")
    got = venue.send(1, c.new_order(1, 1, Side.SELL, 100, 1), c.new_order(2, 1, Side.SELL, 101, 1), c.cancel(1))[1]
    rejects = [(e.client_order_id, e.reason, e.side) for e in only(got, MsgType.EXEC_REJECTED)]
    # what Client's request matching relies on: a NEW's reject echoes its side, a CANCEL's does not
    assert rejects == [(2, GatewayReason.RATE_LIMITED, Side.SELL), (1, GatewayReason.RATE_LIMITED, 0)]


def test_batch_of_orders_is_one_write_and_reports_come_as_arrays(venue):
    c = venue.logged_in(1, b"alice-key")
    recs = order_records(100)
    recs["client_order_id"] = np.arange(1000, 1100)
    recs["instrument"], recs["side"], recs["ord_type"], recs["tif"] = 1, Side.BUY, OrdType.LIMIT, Tif.GTC
    recs["price_ticks"] = np.arange(100, 200) % 50 + 1
    recs["qty_lots"] = 2
    seq0 = c.next_seq
    data = c.new_orders(recs)
    assert len(data) == 100 * 40 and c.next_seq == seq0 + 100
    cmds, replies, _ = venue.gw.on_bytes(1, data)
    assert len(cmds) == 100 and not replies
    cmds["seq"] = np.arange(1, 101)
    reply = venue.gw.on_events(venue.engine.process(cmds))[1]
    [run] = c.feed_arrays(reply)
    assert type(run) is ExecReports and run.kind == MsgType.EXEC_ACCEPTED
    assert run.records["client_order_id"].tolist() == list(range(1000, 1100))
    reports = expand(run)
    assert reports[5] == ExecReport(MsgType.EXEC_ACCEPTED, 1005, int(cmds[5]["ts_ns"]), 1, Side.BUY, 0, 0,
                                    int(recs[5]["price_ticks"]), 2, 2)
    assert c.new_orders(order_records(0)) == b""


def _rej(reason: int, side: int = 0) -> ExecReport:
    return ExecReport(MsgType.EXEC_REJECTED, 1, 0, 1 if side else 0, side, 0, reason, 0, 0, 0)


def _rep(kind: MsgType) -> ExecReport:
    return ExecReport(kind, 1, 0, 1, Side.BUY, 0, 0, 100, 1, 1)


def test_answered_request_matching():
    new, can, mod = MsgType.NEW_ORDER, MsgType.CANCEL, MsgType.MODIFY
    # in order: the oldest request, if the report is an answer to it
    assert answered_request([new, can], _rep(MsgType.EXEC_ACCEPTED)) == 0
    assert answered_request([new], _rep(MsgType.EXEC_FILL)) is None
    assert answered_request([can], _rep(MsgType.EXEC_FILL)) is None
    assert answered_request([mod, can], _rep(MsgType.EXEC_CANCELLED)) is None  # e.g. STP: the modify waits on
    assert answered_request([can, mod], _rej(Reason.UNKNOWN_ORDER)) == 0
    # gateway-made rejects overtake engine answers
    assert answered_request([new, can], _rej(GatewayReason.RATE_LIMITED)) == 1
    assert answered_request([new, can], _rej(GatewayReason.RATE_LIMITED, Side.SELL)) == 0
    assert answered_request([can, new, mod], _rej(GatewayReason.RATE_LIMITED, Side.BUY)) == 1
    assert answered_request([new, new], _rej(Reason.DUPLICATE_ORDER_ID, Side.BUY)) == 1


# -- timing, framing, bad input --------------------------------------------------------------------


def test_heartbeat_when_quiet_and_lost_when_the_gateway_is_silent(venue):
    c = venue.logged_in(1, b"alice-key")
    assert c.on_timer() == (b"", False)
    venue.clock.now += HB_MS * MS
    data, lost = c.on_timer()
    assert not lost and data and c.on_timer() == (b"", False)  # just sent: quiet again only later
    assert venue.send(1, data) == {}  # the gateway takes it silently
    venue.clock.now += HB_MS * MS
    replies, _ = venue.gw.on_timer()
    assert c.feed(replies[1]) == [Heartbeat()]  # the gateway's heartbeat is life
    venue.clock.now += 3 * HB_MS * MS - 1
    assert c.on_timer()[1] is False
    venue.clock.now += 1
    assert c.on_timer()[1] is True


def test_no_heartbeats_before_login(venue):
    c = venue.connect(1)
    venue.clock.now += 10 * HB_MS * MS
    assert c.on_timer() == (b"", False)


def test_frames_fed_byte_by_byte(venue):
    a = venue.logged_in(1, b"alice-key")
    b = venue.logged_in(2, b"bob-key")
    venue.send(1, a.new_order(1, 1, Side.SELL, 100, 3))
    cmds, _, _ = venue.gw.on_bytes(2, b.new_order(2, 1, Side.BUY, 100, 3) + b.modify(2, 1, 1))
    cmds["seq"] = np.arange(1, len(cmds) + 1) + 1000
    replies = venue.gw.on_events(venue.engine.process(cmds))
    fresh = ClientProtocol()  # b's twin, fed one byte at a time
    fresh.state = ClientState.LOGGED_IN
    fresh.decoder.expected_seq = b.decoder.expected_seq
    whole = b.feed(replies[2])
    split = [e for i in range(len(replies[2])) for e in fresh.feed(replies[2][i : i + 1])]
    assert split == whole and [e.kind for e in whole] == [MsgType.EXEC_ACCEPTED, MsgType.EXEC_FILL,
                                                          MsgType.EXEC_REJECTED]
    assert fresh.decoder.buffered == 0


def test_gateway_protocol_error_names_our_frame(venue):
    c = venue.logged_in(1, b"alice-key")
    c.encoder.next_seq += 3  # a gap in our numbering
    seq = c.next_seq
    [ev] = venue.send(1, c.heartbeat())[1]
    assert ev == ProtocolError(ProtocolReason.BAD_SEQUENCE, MsgType.HEARTBEAT, seq)


def test_bad_frames_from_the_gateway_become_violations():
    c = ClientProtocol()
    gw = FrameEncoder()
    early = gw.message(MsgType.EXEC_FILL, client_order_id=1)  # before LOGIN_ACK
    unknown = gw.message(MsgType.NEW_ORDER)  # a client->gateway type
    ack = gw.message(MsgType.LOGIN_ACK, session=3, heartbeat_ms=500, account=9)
    second = gw.message(MsgType.LOGIN_ACK, session=4)
    evs = c.feed(early + unknown + ack + second)
    assert evs == [ProtocolViolation(ProtocolReason.NOT_LOGGED_IN, MsgType.EXEC_FILL, 1, False),
                   ProtocolViolation(ProtocolReason.UNKNOWN_MESSAGE_TYPE, MsgType.NEW_ORDER, 2, False),
                   LoginAccepted(3, 500, 9),
                   ProtocolViolation(ProtocolReason.ALREADY_LOGGED_IN, MsgType.LOGIN_ACK, 4, False)]
    assert c.session == 3 and c.state is ClientState.LOGGED_IN
    [ev] = c.feed((12).to_bytes(2, "little") + bytes(10))  # an untrusted length: the stream is lost
    assert ev == ProtocolViolation(ProtocolReason.BAD_FRAMING, 0, 0, True)
    assert c.state is ClientState.CLOSED and c.feed(gw.message(MsgType.HEARTBEAT)) == []


def test_disconnect_with_cancel_on_disconnect_pulls_resting_orders(venue):
    a = venue.logged_in(1, b"alice-key", cod=True)
    venue.send(1, a.new_order(1, 1, Side.BUY, 100, 1), a.new_order(2, 1, Side.SELL, 110, 1))
    assert venue.engine.best(1) == (100, 110)
    assert venue.disconnect(1) == {}  # a is gone: nobody to report to
    assert venue.engine.best(1) == (0, 0) and a.state is ClientState.CLOSED


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chunks=st.lists(st.binary(max_size=300), max_size=8), login_first=st.booleans(), frames=st.booleans())
def test_fuzz_random_bytes_never_raise(chunks, login_first, frames):
    c = ClientProtocol(clock=lambda: 0)
    gw = FrameEncoder()
    if login_first:
        c.feed(gw.message(MsgType.LOGIN_ACK, session=1, heartbeat_ms=10, account=1))
    for chunk in chunks:
        if frames:  # a well-formed header with a random body, to reach the decoders of every type
            mtype = MsgType.EXEC_ACCEPTED + len(chunk) % 5 if len(chunk) % 3 else MsgType.LOGOUT
            chunk = gw.message(mtype, client_order_id=int.from_bytes(chunk[:8].ljust(8, b"\0"), "little")) \
                if mtype != MsgType.LOGOUT else chunk
        for ev in c.feed(chunk):
            assert isinstance(ev, (LoginAccepted, LoginRejected, Logout, Heartbeat, ProtocolError,
                                   ProtocolViolation, ExecReport))
        c.on_timer(10**12)
