"""The gateway session layer (microex/gateway/session.py), driven with bytes and a real MatchingEngine."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from microex.core.config import EngineConfig
from microex.core.engine import MatchingEngine
from microex.core.records import COMMAND, Action, OrdType, Reason, Side, Tif
from microex.gateway.session import TRANSITIONS, GatewayReason, GatewaySessions, State
from microex.protocol.binary import (
    GATEWAY_MESSAGES,
    PROTOCOL_VERSION,
    BinaryDecoder,
    FrameEncoder,
    Liquidity,
    Messages,
    MsgType,
    ProtocolReason,
)

KEYS = {b"alice-key": 11, b"bob-key": 22, b"carol-key": 33}
HB_MS = 1000
MS = 1_000_000


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000_000

    def __call__(self) -> int:
        return self.now


class Client:
    """The client side of one connection: numbered frames out, gateway frames parsed."""

    def __init__(self, conn: int) -> None:
        self.conn = conn
        self.enc = FrameEncoder()
        self.dec = BinaryDecoder(GATEWAY_MESSAGES)

    def login(self, key: bytes, cod: bool = False, version: int = PROTOCOL_VERSION) -> bytes:
        return self.enc.message(MsgType.LOGIN, api_key=key, flags=int(cod), version=version)

    def new(self, cid: int, side: int, price: int, qty: int, instrument: int = 1, tif: int = Tif.GTC) -> bytes:
        return self.enc.message(MsgType.NEW_ORDER, client_order_id=cid, price_ticks=price, qty_lots=qty,
                                instrument=instrument, side=side, ord_type=OrdType.LIMIT, tif=tif)

    def cancel(self, cid: int) -> bytes:
        return self.enc.message(MsgType.CANCEL, client_order_id=cid)

    def modify(self, cid: int, price: int, qty: int) -> bytes:
        return self.enc.message(MsgType.MODIFY, client_order_id=cid, price_ticks=price, qty_lots=qty)

    def parse(self, data: bytes) -> list[tuple[MsgType, np.void]]:
        out = []
        for item in self.dec.feed(data):
            assert isinstance(item, Messages), item  # the gateway only sends well-formed, numbered frames
            out.extend((item.msg_type, r) for r in item.records)
        return out


class Venue:
    """GatewaySessions + a real engine, wired as the server and the engine process would be."""

    def __init__(self, **kw) -> None:
        self.clock = Clock()
        self.gw = GatewaySessions(KEYS, heartbeat_ms=HB_MS, clock=self.clock, **kw)
        self.engine = MatchingEngine(EngineConfig(max_instruments=4, max_orders=1024, max_levels=64,
                                                  id_capacity=1024))
        self.clients: dict[int, Client] = {}
        self.closed: list[tuple[int, int]] = []
        self.sent: list[np.ndarray] = []  # every COMMAND array given to the engine

    def connect(self, conn: int) -> Client:
        self.gw.on_connect(conn)
        self.clients[conn] = Client(conn)
        return self.clients[conn]

    def run(self, cmds: np.ndarray) -> dict[int, list]:
        got: dict[int, list] = {}
        if len(cmds):
            assert cmds.dtype == COMMAND
            self.sent.append(cmds)
            events = self.engine.process(cmds)
            for conn, data in self.gw.on_events(events).items():
                got.setdefault(conn, []).extend(self.clients[conn].parse(data))
        return got

    def send(self, client: Client, *frames: bytes) -> dict[int, list]:
        """Bytes from a client; returns every connection's parsed replies (direct ones first)."""
        cmds, replies, closed = self.gw.on_bytes(client.conn, b"".join(frames))
        self.closed.extend(closed)
        got = {conn: self.clients[conn].parse(data) for conn, data in replies.items()}
        for conn, msgs in self.run(cmds).items():
            got.setdefault(conn, []).extend(msgs)
        return got

    def disconnect(self, client: Client) -> dict[int, list]:
        return self.run(self.gw.on_disconnect(client.conn))

    def logged_in(self, conn: int, key: bytes, cod: bool = False) -> Client:
        c = self.connect(conn)
        got = self.send(c, c.login(key, cod))
        assert [t for t, _ in got[conn]] == [MsgType.LOGIN_ACK]
        return c


def types(msgs) -> list[MsgType]:
    return [t for t, _ in msgs]


@pytest.fixture
def venue() -> Venue:
    return Venue()


# -- login -----------------------------------------------------------------------------------------


def test_transition_table_covers_every_open_state_and_client_message():
    assert len(TRANSITIONS) == 12
    assert all(s in (State.CONNECTED, State.LOGGED_IN) for s, _ in TRANSITIONS)


def test_login_ok(venue):
    c = venue.connect(1)
    got = venue.send(c, c.login(b"bob-key"))[1]
    assert types(got) == [MsgType.LOGIN_ACK]
    ack = got[0][1]
    assert ack["account"] == 22 and ack["heartbeat_ms"] == HB_MS and ack["session"] >= 1 and ack["seq"] == 1
    assert venue.gw.conns[1].state is State.LOGGED_IN and not venue.closed


def test_bad_key_is_rejected_and_closed(venue):
    c = venue.connect(1)
    got = venue.send(c, c.login(b"mallory"), c.new(1, Side.BUY, 100, 1))[1]
    assert types(got) == [MsgType.LOGIN_REJECT]
    assert got[0][1]["reason"] == ProtocolReason.AUTH_FAILED
    assert venue.closed == [(1, ProtocolReason.AUTH_FAILED)]
    assert not venue.sent  # the order behind it was not acted on
    assert venue.send(c, c.new(2, Side.BUY, 100, 1)) == {}  # closed: nothing more


def test_wrong_version_is_rejected(venue):
    c = venue.connect(1)
    got = venue.send(c, c.login(b"bob-key", version=9))[1]
    assert got[0][1]["reason"] == ProtocolReason.UNSUPPORTED_VERSION and venue.closed


def test_orders_before_login_and_second_login(venue):
    c = venue.connect(1)
    got = venue.send(c, c.new(1, Side.BUY, 100, 1), c.cancel(1), c.enc.message(MsgType.HEARTBEAT))[1]
    assert types(got) == [MsgType.PROTOCOL_ERROR] * 2
    assert [int(r["reason"]) for _, r in got] == [ProtocolReason.NOT_LOGGED_IN] * 2
    assert [(int(r["ref_type"]), int(r["ref_seq"])) for _, r in got] == [(MsgType.NEW_ORDER, 1), (MsgType.CANCEL, 2)]
    assert not venue.sent
    got = venue.send(c, c.login(b"alice-key"), c.login(b"alice-key"))[1]
    assert types(got) == [MsgType.LOGIN_ACK, MsgType.PROTOCOL_ERROR]
    assert got[1][1]["reason"] == ProtocolReason.ALREADY_LOGGED_IN and not venue.closed


def test_logout(venue):
    c = venue.logged_in(1, b"alice-key")
    got = venue.send(c, c.enc.message(MsgType.LOGOUT, reason=0))[1]
    assert types(got) == [MsgType.LOGOUT] and venue.closed == [(1, 0)]


# -- orders ----------------------------------------------------------------------------------------


def test_new_order_accepted_with_client_id(venue):
    a = venue.logged_in(1, b"alice-key")
    got = venue.send(a, a.new(777, Side.BUY, 100, 5))[1]
    assert types(got) == [MsgType.EXEC_ACCEPTED]
    r = got[0][1]
    assert (r["client_order_id"], r["price_ticks"], r["qty_lots"], r["leaves_lots"]) == (777, 100, 5, 5)
    cmd = venue.sent[0][0]
    assert cmd["account"] == 11 and cmd["session"] == venue.gw.conns[1].session_id
    assert cmd["action"] == Action.NEW and cmd["ts_ns"] == venue.clock.now and cmd["order_id"] >= 1


def test_cross_between_two_sessions_reports_to_both(venue):
    a = venue.logged_in(1, b"alice-key")
    b = venue.logged_in(2, b"bob-key")
    venue.send(a, a.new(5, Side.SELL, 100, 10))
    got = venue.send(b, b.new(5, Side.BUY, 100, 4), b.new(6, Side.BUY, 101, 3))
    assert types(got[2]) == [MsgType.EXEC_ACCEPTED, MsgType.EXEC_FILL, MsgType.EXEC_ACCEPTED, MsgType.EXEC_FILL]
    fills_b = [r for t, r in got[2] if t == MsgType.EXEC_FILL]
    assert [(int(r["client_order_id"]), int(r["qty_lots"]), int(r["leaves_lots"]), int(r["liquidity"]),
             int(r["side"])) for r in fills_b] == [(5, 4, 0, Liquidity.TAKER, Side.BUY),
                                                   (6, 3, 0, Liquidity.TAKER, Side.BUY)]
    assert types(got[1]) == [MsgType.EXEC_FILL, MsgType.EXEC_FILL]
    assert [(int(r["client_order_id"]), int(r["qty_lots"]), int(r["leaves_lots"]), int(r["liquidity"]),
             int(r["side"]), int(r["price_ticks"])) for _, r in got[1]] == [
        (5, 4, 6, Liquidity.MAKER, Side.SELL, 100), (5, 3, 3, Liquidity.MAKER, Side.SELL, 100)]
    # both sessions' client ids 5 are different engine orders
    assert len({int(c["order_id"]) for arr in venue.sent for c in arr}) == 3


def test_cancel_and_modify_by_client_id(venue):
    a = venue.logged_in(1, b"alice-key")
    venue.send(a, a.new(1, Side.BUY, 100, 5), a.new(2, Side.BUY, 99, 5))
    got = venue.send(a, a.modify(2, 98, 3), a.cancel(1))[1]
    assert types(got) == [MsgType.EXEC_MODIFIED, MsgType.EXEC_CANCELLED]
    assert (got[0][1]["client_order_id"], got[0][1]["price_ticks"], got[0][1]["leaves_lots"]) == (2, 98, 3)
    assert (got[1][1]["client_order_id"], got[1][1]["reason"], got[1][1]["qty_lots"]) == (1, Reason.USER, 5)
    assert venue.engine.best(1) == (98, 0)
    # cancel again: the engine says it does not rest
    got = venue.send(a, a.cancel(1))[1]
    assert types(got) == [MsgType.EXEC_REJECTED] and got[0][1]["reason"] == Reason.UNKNOWN_ORDER


def test_duplicate_and_unknown_client_ids_never_reach_the_engine(venue):
    a = venue.logged_in(1, b"alice-key")
    venue.send(a, a.new(1, Side.BUY, 100, 5))
    n_sent = len(venue.sent)
    got = venue.send(a, a.new(1, Side.BUY, 100, 5), a.cancel(42), a.modify(43, 100, 1))[1]
    assert types(got) == [MsgType.EXEC_REJECTED] * 3
    assert [(int(r["client_order_id"]), int(r["reason"])) for _, r in got] == [
        (1, Reason.DUPLICATE_ORDER_ID), (42, Reason.UNKNOWN_ORDER), (43, Reason.UNKNOWN_ORDER)]
    assert got[0][1]["instrument"] == 1 and got[0][1]["side"] == Side.BUY
    assert len(venue.sent) == n_sent
    # a duplicate inside one run: the first wins
    got = venue.send(a, a.new(9, Side.BUY, 90, 1), a.new(9, Side.BUY, 91, 1))[1]
    assert sorted(types(got)) == [MsgType.EXEC_ACCEPTED, MsgType.EXEC_REJECTED]
    assert len(venue.sent[-1]) == 1 and venue.sent[-1][0]["price_ticks"] == 90
    # another session may use the same client id
    b = venue.logged_in(2, b"bob-key")
    assert types(venue.send(b, b.new(1, Side.SELL, 200, 1))[2]) == [MsgType.EXEC_ACCEPTED]


def test_engine_rejects_carry_the_client_id(venue):
    a = venue.logged_in(1, b"alice-key")
    got = venue.send(a, a.new(3, Side.BUY, 100, 0))[1]
    assert types(got) == [MsgType.EXEC_REJECTED]
    assert (got[0][1]["client_order_id"], got[0][1]["reason"]) == (3, Reason.INVALID_QTY)


# -- cancel on disconnect --------------------------------------------------------------------------


def _resting_setup(venue: Venue, cod: bool):
    a = venue.logged_in(1, b"alice-key", cod=cod)
    b = venue.logged_in(2, b"bob-key", cod=True)
    venue.send(a, a.new(1, Side.BUY, 100, 5), a.new(2, Side.SELL, 110, 5), a.new(3, Side.BUY, 90, 1),
               a.new(4, Side.BUY, 80, 0))  # 4: rejected by the engine
    venue.send(a, a.cancel(3))
    venue.send(b, b.new(1, Side.SELL, 100, 5), b.new(2, Side.BUY, 95, 2))  # fills a's 1 fully; 2 rests
    return a, b


def test_cancel_on_disconnect_cancels_only_that_sessions_resting_orders(venue):
    a, b = _resting_setup(venue, cod=True)
    cmds = venue.gw.on_disconnect(1)
    assert (cmds["action"] == Action.CANCEL).all() and (cmds["account"] == 11).all()
    assert len(cmds) == 1  # only a's 2 still rests (1 filled, 3 cancelled, 4 rejected)
    got = venue.run(cmds)
    assert got == {}  # a is gone; b's orders untouched, b gets nothing
    assert venue.engine.best(1) == (95, 0)
    assert venue.gw.on_disconnect(1).size == 0  # a second call is harmless


def test_no_cancel_on_disconnect_without_the_flag(venue):
    _resting_setup(venue, cod=False)
    assert venue.gw.on_disconnect(1).size == 0
    assert venue.engine.best(1) == (95, 110)


def test_cancel_on_disconnect_covers_orders_still_in_flight(venue):
    a = venue.logged_in(1, b"alice-key", cod=True)
    cmds, _, _ = venue.gw.on_bytes(1, a.new(1, Side.BUY, 100, 5))  # not yet at the engine
    cancels = venue.gw.on_disconnect(1)
    both = np.zeros(len(cmds) + len(cancels), dtype=COMMAND)
    both[: len(cmds)], both[len(cmds) :] = cmds, cancels
    venue.run(both)  # one gateway's commands stay in order
    assert venue.engine.best(1) == (0, 0)


def test_maker_fill_after_disconnect_is_dropped(venue):
    a = venue.logged_in(1, b"alice-key")
    b = venue.logged_in(2, b"bob-key")
    venue.send(a, a.new(1, Side.SELL, 100, 5))
    venue.disconnect(a)
    got = venue.send(b, b.new(1, Side.BUY, 100, 5))
    assert list(got) == [2] and types(got[2]) == [MsgType.EXEC_ACCEPTED, MsgType.EXEC_FILL]


# -- heartbeats ------------------------------------------------------------------------------------


def test_heartbeat_sent_when_quiet_and_timeout_when_silent(venue):
    a = venue.logged_in(1, b"alice-key")
    pre = venue.connect(2)  # never logs in
    venue.clock.now += HB_MS * MS - 1
    assert venue.gw.on_timer() == ({}, [])
    venue.clock.now += 1
    replies, closed = venue.gw.on_timer()
    assert list(replies) == [1] and types(a.parse(replies[1])) == [MsgType.HEARTBEAT] and closed == []
    assert venue.gw.on_timer() == ({}, [])  # just sent: quiet again only one interval later
    venue.clock.now += HB_MS * MS // 2
    venue.send(a, a.enc.message(MsgType.HEARTBEAT))  # a is alive
    venue.clock.now += 2 * HB_MS * MS
    replies, closed = venue.gw.on_timer()
    assert closed == [(2, ProtocolReason.HEARTBEAT_TIMEOUT)]
    assert types(pre.parse(replies[2])) == [MsgType.LOGOUT]
    assert types(a.parse(replies[1])) == [MsgType.HEARTBEAT]
    venue.clock.now += HB_MS * MS
    replies, closed = venue.gw.on_timer()
    assert closed == [(1, ProtocolReason.HEARTBEAT_TIMEOUT)]
    msgs = a.parse(replies[1])
    assert types(msgs) == [MsgType.LOGOUT] and msgs[0][1]["reason"] == ProtocolReason.HEARTBEAT_TIMEOUT


# -- rate limit ------------------------------------------------------------------------------------


def test_rate_limit_token_bucket():
    venue = Venue(rate_per_s=10, burst=3)
    a = venue.logged_in(1, b"alice-key")
    got = venue.send(a, *[a.new(i, Side.BUY, 100 - i, 1) for i in range(1, 6)])[1]
    rejected = [(int(r["client_order_id"]), int(r["reason"])) for t, r in got if t == MsgType.EXEC_REJECTED]
    assert rejected == [(4, GatewayReason.RATE_LIMITED), (5, GatewayReason.RATE_LIMITED)]
    assert types(got).count(MsgType.EXEC_ACCEPTED) == 3 and len(venue.sent[-1]) == 3
    got = venue.send(a, a.cancel(1))[1]  # cancels count too: no token yet
    assert types(got) == [MsgType.EXEC_REJECTED] and got[0][1]["reason"] == GatewayReason.RATE_LIMITED
    venue.clock.now += 100 * MS  # one token back
    got = venue.send(a, a.cancel(1), a.cancel(2))[1]
    assert types(got) == [MsgType.EXEC_REJECTED, MsgType.EXEC_CANCELLED]
    # a rate-limited client id was never taken: it can be used once tokens are back
    venue.clock.now += 1000 * MS
    assert MsgType.EXEC_ACCEPTED in types(venue.send(a, a.new(4, Side.BUY, 50, 1))[1])


# -- bad bytes -------------------------------------------------------------------------------------


def test_malformed_frames_get_protocol_errors_and_the_session_goes_on(venue):
    a = venue.logged_in(1, b"alice-key")
    bad_type = a.enc.message(MsgType.LOGIN_ACK)  # a gateway->client type: unknown here
    bad_len = bytearray(a.enc.message(MsgType.HEARTBEAT))
    bad_len[0:2] = (16).to_bytes(2, "little")
    bad_len += bytes(8)
    gap = FrameEncoder(a.enc.next_seq + 5).message(MsgType.HEARTBEAT)  # seq jumps
    a.enc.next_seq += 6
    got = venue.send(a, bad_type, bytes(bad_len), gap, a.new(1, Side.BUY, 100, 1))[1]
    assert types(got) == [MsgType.PROTOCOL_ERROR] * 3 + [MsgType.EXEC_ACCEPTED]
    assert [int(r["reason"]) for _, r in got[:3]] == [ProtocolReason.UNKNOWN_MESSAGE_TYPE,
                                                      ProtocolReason.BAD_LENGTH, ProtocolReason.BAD_SEQUENCE]
    assert not venue.closed


@pytest.mark.parametrize("length,reason", [(12, ProtocolReason.BAD_FRAMING), (4096, ProtocolReason.FRAME_TOO_LARGE)])
def test_untrusted_length_closes_with_logout(venue, length, reason):
    a = venue.logged_in(1, b"alice-key", cod=True)
    venue.send(a, a.new(1, Side.BUY, 100, 1))
    got = venue.send(a, length.to_bytes(2, "little") + bytes(6), a.new(2, Side.BUY, 100, 1))[1]
    assert types(got) == [MsgType.LOGOUT] and got[0][1]["reason"] == reason
    assert venue.closed == [(1, reason)]
    assert len(venue.gw.on_disconnect(1)) == 1  # the server closes, then cancel-on-disconnect


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(chunks=st.lists(st.binary(max_size=200), max_size=8), valid=st.booleans())
def test_fuzz_random_bytes_on_a_logged_in_session_never_raise(chunks, valid):
    venue = Venue()
    a = venue.logged_in(1, b"alice-key", cod=True)
    for chunk in chunks:
        if valid:  # well-formed frames with random bodies, to reach the order paths too
            chunk = a.new(int.from_bytes(chunk[:2] or b"\0", "little"), 1 + len(chunk) % 3, len(chunk),
                          len(chunk) % 7) + chunk
        cmds, replies, closed = venue.gw.on_bytes(1, chunk)
        assert cmds.dtype == COMMAND
        venue.run(cmds)  # events back in too
        if replies:
            a.parse(replies[1])
        venue.clock.now += 10 * MS
        venue.gw.on_timer()
    venue.run(venue.gw.on_disconnect(1))


def _message_stream(draw_items) -> tuple[bytes, bytes]:
    """A LOGIN, then client frames from (kind, a, b) items: orders on a few client ids, heartbeats, bad frames."""
    c = Client(1)
    login = c.login(b"alice-key")
    out = []
    for kind, a, b in draw_items:
        if kind == 0:
            out.append(c.new(a, 1 + b % 2, 90 + b % 20, 1 + b % 3, instrument=1 + b % 2))
        elif kind == 1:
            out.append(c.cancel(a))
        elif kind == 2:
            out.append(c.modify(a, 90 + b % 20, 1 + b % 4))
        elif kind == 3:
            out.append(c.enc.message(MsgType.HEARTBEAT))
        elif kind == 4:
            c.enc.next_seq += 1 + b % 3  # a seq gap: BAD_SEQUENCE, counting goes on from it
            out.append(c.new(a, 1, 100, 1))
        elif kind == 5:
            out.append(c.enc.message(MsgType.LOGIN_ACK))  # a type the gateway does not take
        elif kind == 6:
            out.append(c.login(b"alice-key"))  # ALREADY_LOGGED_IN
        else:
            frame = bytearray(c.cancel(a))  # a known type with the wrong length
            frame[0:2] = (24).to_bytes(2, "little")
            out.append(bytes(frame) + bytes(8))
    return login, b"".join(out)


@settings(max_examples=200, deadline=None)
@given(items=st.lists(st.tuples(st.integers(0, 7), st.integers(1, 9), st.integers(0, 1000)), max_size=40),
       cuts=st.lists(st.integers(0, 4000), max_size=6))
def test_the_fast_path_equals_the_decoder_path(items, cuts):
    """order_frames (whole reads of orders, heartbeats) against the decoder and transition table
    (the same bytes one at a time, so the fast path never starts): the same commands, the same
    replies, in the same order, with the rate limit binding part of the time."""
    login, data = _message_stream(items)
    results = []
    fast = []
    for reads in ([login, *_split(data, cuts)], [(login + data)[k:k + 1] for k in range(len(login + data))]):
        venue = Venue(rate_per_s=1, burst=12)
        venue.gw.on_connect(1)
        real = venue.gw._order_frames
        venue.gw._order_frames = lambda *a: fast.append(real(*a)) or fast[-1]
        cmds, replies, closed = [], [], []
        for chunk in reads:
            c, r, cl = venue.gw.on_bytes(1, chunk)
            cmds.append(c.tobytes())
            replies.append(r.get(1, b""))
            closed += cl
        results.append((b"".join(cmds), b"".join(replies), closed))
    assert results[0] == results[1]
    if items and items[0][0] in (0, 1, 2, 3) and not cuts:
        assert fast and fast[0] > 0  # the whole read after the login went through order_frames


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    at = sorted({min(c, len(data)) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in zip(at, at[1:])]
