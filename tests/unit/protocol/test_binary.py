"""The binary protocol codec (microex/protocol/binary.py): round trips, framing, errors, fuzz."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from microex.core.config import EngineConfig
from microex.core.engine import MatchingEngine
from microex.core.records import COMMAND, Action, EventKind, Flag, OrdType, Reason, Side, Tif
from microex.protocol.binary import (
    CLIENT_MESSAGES,
    DTYPES,
    GATEWAY_MESSAGES,
    MAX_FRAME_SIZE,
    BinaryDecoder,
    DecodeError,
    FrameEncoder,
    Liquidity,
    Messages,
    MsgType,
    ProtocolReason,
    encode_exec_reports,
    encode_message,
    encode_records,
)

ALL = frozenset(DTYPES)
FUZZ = settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def flat(items) -> list:
    """Decoder output as comparable tuples: one per frame, whatever the run split."""
    out = []
    for it in items:
        if isinstance(it, Messages):
            assert it.records.dtype == DTYPES[it.msg_type] and len(it.records) > 0
            out.extend((int(it.msg_type), r.tobytes()) for r in it.records)
        else:
            out.append(("error", int(it.reason), it.msg_type, it.seq, it.closing))
    return out


def random_fields(dt: np.dtype, rng: np.random.Generator) -> dict:
    """Random values for every body field of a message dtype (any bit pattern)."""
    raw = np.frombuffer(rng.bytes(dt.itemsize), dtype=dt)[0]
    out = {}
    for name in dt.names[3:]:
        value = raw[name]
        out[name] = value.rstrip(b"\0") if isinstance(value, bytes) else value
    return out


def mixed_stream(rng: np.random.Generator, n: int, types=CLIENT_MESSAGES) -> tuple[bytes, list]:
    enc = FrameEncoder()
    frames = []
    kinds = sorted(types)
    for _ in range(n):
        t = MsgType(kinds[rng.integers(len(kinds))])
        frames.append(enc.message(t, **random_fields(DTYPES[t], rng)))
    return b"".join(frames), frames


# -- layouts and round trips -----------------------------------------------------------------------


def test_layouts_are_fixed_aligned_and_little_endian():
    for t, dt in DTYPES.items():
        assert dt.itemsize % 8 == 0 and 8 <= dt.itemsize <= MAX_FRAME_SIZE
        assert dt.names[:3] == ("length", "msg_type", "seq")
        assert [dt.fields[n][1] for n in dt.names[:3]] == [0, 2, 4]
        for name in dt.names:
            f = dt.fields[name][0]
            assert f.byteorder in ("<", "|", "="), (t, name)
            if f.kind in "iu":
                assert dt.fields[name][1] % f.itemsize == 0, (t, name)  # naturally aligned
    assert DTYPES[MsgType.NEW_ORDER].itemsize == 40
    assert DTYPES[MsgType.EXEC_FILL].itemsize == 56


@pytest.mark.parametrize("msg_type", sorted(DTYPES), ids=lambda t: MsgType(t).name)
def test_round_trip_every_message(msg_type):
    rng = np.random.default_rng(int(msg_type))
    dt = DTYPES[msg_type]
    fields = random_fields(dt, rng)
    data = encode_message(msg_type, 1, **fields)
    assert len(data) == dt.itemsize
    assert int.from_bytes(data[0:2], "little") == dt.itemsize
    assert int.from_bytes(data[2:4], "little") == msg_type
    assert int.from_bytes(data[4:8], "little") == 1
    items = BinaryDecoder(ALL).feed(data)
    assert len(items) == 1 and isinstance(items[0], Messages) and items[0].msg_type == msg_type
    rec = items[0].records[0]
    assert rec["seq"] == 1 and rec["length"] == dt.itemsize
    for name, value in fields.items():
        assert rec[name] == value, name


def test_directions():
    login = encode_message(MsgType.LOGIN, 1, api_key=b"secret", flags=1, version=1)
    ack = encode_message(MsgType.LOGIN_ACK, 1, session=3, heartbeat_ms=1000, account=7)
    gw = BinaryDecoder(CLIENT_MESSAGES)
    assert gw.feed(login)[0].records["api_key"][0] == b"secret"
    assert gw.feed(encode_message(MsgType.LOGIN_ACK, 2)) == [
        DecodeError(ProtocolReason.UNKNOWN_MESSAGE_TYPE, int(MsgType.LOGIN_ACK), 2, False)]
    cl = BinaryDecoder(GATEWAY_MESSAGES)
    assert cl.feed(ack)[0].records["account"][0] == 7
    assert cl.feed(encode_message(MsgType.NEW_ORDER, 2))[0].reason == ProtocolReason.UNKNOWN_MESSAGE_TYPE


def test_encode_records_and_sequence():
    rng = np.random.default_rng(1)
    recs = np.zeros(1000, dtype=DTYPES[MsgType.NEW_ORDER])
    recs["client_order_id"] = np.arange(1, 1001)
    recs["price_ticks"] = rng.integers(1, 1000, 1000)
    recs["qty_lots"] = rng.integers(1, 100, 1000)
    recs["side"] = rng.integers(1, 3, 1000)
    enc = FrameEncoder()
    data = enc.message(MsgType.HEARTBEAT) + enc.records(MsgType.NEW_ORDER, recs) + enc.message(MsgType.LOGOUT)
    assert enc.next_seq == 1003
    items = BinaryDecoder().feed(data)
    assert [it.msg_type for it in items] == [MsgType.HEARTBEAT, MsgType.NEW_ORDER, MsgType.LOGOUT]
    got = items[1].records
    assert len(got) == 1000
    assert (got["seq"] == np.arange(2, 1002)).all()
    for name in ("client_order_id", "price_ticks", "qty_lots", "side"):
        assert (got[name] == recs[name]).all()


# -- whole buffers and splits ----------------------------------------------------------------------


def test_many_frames_decode_at_once():
    rng = np.random.default_rng(2)
    recs = np.zeros(20_000, dtype=DTYPES[MsgType.NEW_ORDER])
    recs["client_order_id"] = np.arange(20_000)
    data = encode_records(MsgType.NEW_ORDER, recs, 1)
    items = BinaryDecoder().feed(data)
    assert len(items) == 1 and len(items[0].records) == 20_000  # one run: one frombuffer
    assert items[0].records.flags.writeable
    stream, frames = mixed_stream(rng, 500)
    items = BinaryDecoder().feed(stream)
    got = flat(items)
    assert [g[1] for g in got] == frames
    # runs are maximal: no two neighbouring items of one type
    assert all(a.msg_type != b.msg_type for a, b in zip(items, items[1:]))


def test_split_at_every_byte_boundary():
    rng = np.random.default_rng(3)
    stream, _ = mixed_stream(rng, 12)
    whole = flat(BinaryDecoder().feed(stream))
    for i in range(len(stream) + 1):
        d = BinaryDecoder()
        assert flat(d.feed(stream[:i]) + d.feed(stream[i:])) == whole, i
    d = BinaryDecoder()
    one_by_one = []
    for i in range(len(stream)):
        one_by_one += d.feed(stream[i : i + 1])
        assert d.buffered < MAX_FRAME_SIZE
    assert flat(one_by_one) == whole
    assert d.buffered == 0


def test_split_boundaries_with_errors():
    enc = FrameEncoder()
    parts = [enc.message(MsgType.NEW_ORDER, client_order_id=1),
             encode_message(MsgType.EXEC_FILL, enc.next_seq),  # wrong direction: skipped
             encode_message(MsgType.CANCEL, 99, client_order_id=1),  # seq gap: skipped
             encode_message(MsgType.MODIFY, 100, client_order_id=1)]
    stream = b"".join(parts)
    whole = flat(BinaryDecoder().feed(stream))
    assert [w[1] if w[0] == "error" else w[0] for w in whole] == [
        MsgType.NEW_ORDER, ProtocolReason.UNKNOWN_MESSAGE_TYPE, ProtocolReason.BAD_SEQUENCE, MsgType.MODIFY]
    for i in range(len(stream) + 1):
        d = BinaryDecoder()
        assert flat(d.feed(stream[:i]) + d.feed(stream[i:])) == whole


# -- malformed frames ------------------------------------------------------------------------------


def frame_header(length: int, msg_type: int, seq: int) -> bytes:
    return length.to_bytes(2, "little") + msg_type.to_bytes(2, "little") + seq.to_bytes(4, "little")


def test_recoverable_errors_skip_the_frame_and_go_on():
    good2 = encode_message(MsgType.HEARTBEAT, 2)
    cases = {
        ProtocolReason.UNKNOWN_MESSAGE_TYPE: frame_header(16, 999, 1) + bytes(8),
        ProtocolReason.BAD_LENGTH: frame_header(24, MsgType.CANCEL, 1) + bytes(16),
    }
    for reason, bad in cases.items():
        d = BinaryDecoder()
        items = d.feed(bad + good2)
        assert items[0] == DecodeError(reason, int.from_bytes(bad[2:4], "little"), 1, False)
        assert items[1].msg_type == MsgType.HEARTBEAT and not d.closed
    d = BinaryDecoder()
    items = d.feed(encode_message(MsgType.HEARTBEAT, 5) + encode_message(MsgType.HEARTBEAT, 6))
    assert items[0] == DecodeError(ProtocolReason.BAD_SEQUENCE, int(MsgType.HEARTBEAT), 5, False)
    assert items[1].records["seq"][0] == 6  # counting goes on from the bad frame
    d = BinaryDecoder(check_sequence=False)
    assert flat(d.feed(encode_message(MsgType.HEARTBEAT, 5)))[0][0] == MsgType.HEARTBEAT


@pytest.mark.parametrize("length,reason", [
    (0, ProtocolReason.BAD_FRAMING), (4, ProtocolReason.BAD_FRAMING), (17, ProtocolReason.BAD_FRAMING),
    (MAX_FRAME_SIZE + 8, ProtocolReason.FRAME_TOO_LARGE), (0xFFFF, ProtocolReason.FRAME_TOO_LARGE)])
def test_untrusted_length_closes(length, reason):
    d = BinaryDecoder()
    good = encode_message(MsgType.NEW_ORDER, 1, client_order_id=1)
    items = d.feed(good + length.to_bytes(2, "little"))  # only the length's 2 bytes: enough to close
    assert items[0].msg_type == MsgType.NEW_ORDER  # what came before is still decoded
    assert items[1] == DecodeError(reason, 0, 0, True)
    assert d.closed and d.close_reason == reason
    assert d.feed(encode_message(MsgType.HEARTBEAT, 2)) == []


def test_garbage_field_values_still_decode():
    """Field values are the engine's to validate (it rejects them with a reason); the codec passes them on."""
    data = encode_message(MsgType.NEW_ORDER, 1, client_order_id=0, instrument=-5, side=7, ord_type=200, tif=99,
                          flags=0xFF, price_ticks=-(1 << 63), qty_lots=-1)
    rec = BinaryDecoder().feed(data)[0].records[0]
    assert (rec["side"], rec["ord_type"], rec["tif"], rec["flags"]) == (7, 200, 99, 0xFF)
    assert (rec["instrument"], rec["price_ticks"], rec["qty_lots"]) == (-5, -(1 << 63), -1)
    data = encode_message(MsgType.LOGIN, 1, api_key=b"\xff" * 32, flags=0xFE, version=77)
    assert BinaryDecoder().feed(data)[0].records[0]["version"] == 77


# -- fuzz ------------------------------------------------------------------------------------------


def check_items(items, closed_before: bool) -> bool:
    """Every item is a message run or an error with a reason; a closing error is the last thing ever."""
    if closed_before:
        assert items == []
    closed = closed_before
    for it in items:
        assert not closed, "something decoded after a closing error"
        if isinstance(it, Messages):
            assert it.msg_type in CLIENT_MESSAGES and it.records.dtype == DTYPES[it.msg_type] and len(it.records)
        else:
            assert isinstance(it, DecodeError) and isinstance(it.reason, ProtocolReason)
            assert 60 <= it.reason <= 79
            closed = it.closing
    return closed


@FUZZ
@given(chunks=st.lists(st.binary(max_size=300), max_size=12))
def test_fuzz_arbitrary_bytes_never_raise(chunks):
    d = BinaryDecoder()
    closed = False
    for chunk in chunks:
        closed = check_items(d.feed(chunk), closed)
        assert closed == d.closed
        assert d.buffered < MAX_FRAME_SIZE


_frame = st.one_of(
    st.sampled_from(sorted(DTYPES)).flatmap(
        lambda t: st.binary(min_size=DTYPES[t].itemsize - 8, max_size=DTYPES[t].itemsize - 8).map(
            lambda body, t=t: frame_header(DTYPES[t].itemsize, int(t), 0) + body)),
    st.binary(max_size=40),  # garbage
    st.tuples(st.integers(1, MAX_FRAME_SIZE // 8), st.integers(0, 0xFFFF)).map(
        lambda lt: frame_header(lt[0] * 8, lt[1], 0) + bytes(lt[0] * 8 - 8)),  # plausible length, any type
)


@FUZZ
@given(frames=st.lists(_frame, max_size=20), cuts=st.lists(st.integers(0, 2000), max_size=6))
def test_fuzz_split_invariance(frames, cuts):
    """Near-valid streams: the result never depends on how the bytes are split into feeds."""
    # number the frames 1, 2, ... where the bytes allow, so that most frames are valid
    stream = bytearray()
    for i, f in enumerate(frames, 1):
        f = bytearray(f)
        if len(f) >= 8:
            f[4:8] = i.to_bytes(4, "little")
        stream += f
    stream = bytes(stream)
    d = BinaryDecoder()
    whole = d.feed(stream)
    check_items(whole, False)
    points = sorted({min(c, len(stream)) for c in cuts})
    d2 = BinaryDecoder()
    got = []
    prev = 0
    for p in [*points, len(stream)]:
        got += d2.feed(stream[prev:p])
        prev = p
    assert flat(got) == flat(whole)
    assert d2.closed == d.closed


# -- execution reports from a real engine run ------------------------------------------------------


def engine_events() -> np.ndarray:
    rows = [  # action, order_id, account, instrument, side, type, tif, price, qty, flags
        (Action.NEW, 1, 1, 1, Side.SELL, OrdType.LIMIT, Tif.GTC, 101, 5, Flag.NONE),
        (Action.NEW, 2, 1, 1, Side.SELL, OrdType.LIMIT, Tif.GTC, 102, 5, Flag.NONE),
        (Action.NEW, 3, 2, 1, Side.BUY, OrdType.LIMIT, Tif.GTC, 102, 7, Flag.NONE),  # two fills
        (Action.NEW, 3, 2, 1, Side.BUY, OrdType.LIMIT, Tif.GTC, 99, 1, Flag.NONE),  # duplicate id
        (Action.NEW, 4, 2, 1, Side.BUY, OrdType.LIMIT, Tif.GTC, 98, 4, Flag.NONE),
        (Action.MODIFY, 4, 2, 1, Side.BUY, OrdType.LIMIT, Tif.GTC, 97, 2, Flag.NONE),
        (Action.CANCEL, 4, 2, 1, 0, 0, 0, 0, 0, Flag.NONE),
        (Action.NEW, 5, 2, 1, Side.BUY, OrdType.MARKET, Tif.IOC, 0, 9, Flag.NONE),  # fill 3, rest cancelled
        (Action.NEW, 6, 2, 1, 9, OrdType.LIMIT, Tif.GTC, 100, 1, Flag.NONE),  # bad side: rejected
    ]
    cmds = np.zeros(len(rows), dtype=COMMAND)
    for i, r in enumerate(rows):
        cmds[i]["seq"] = i + 1
        cmds[i]["ts_ns"] = 1_000 * (i + 1)
        for name, v in zip(("action", "order_id", "account", "instrument", "side", "ord_type", "tif",
                            "price_ticks", "qty_lots", "flags"), r):
            cmds[i][name] = v
    cfg = EngineConfig(max_instruments=4, max_orders=64, max_levels=16, id_capacity=64, event_capacity=256)
    return MatchingEngine(cfg).process(cmds)


def test_exec_reports_from_engine_round_trip():
    events = engine_events()
    kinds = set(events["kind"].tolist())
    assert {EventKind.ACCEPTED, EventKind.REJECTED, EventKind.TRADE, EventKind.CANCELLED,
            EventKind.MODIFIED, EventKind.LEVEL} <= kinds
    # one session owns every order: a trade is reported to the taker and to the maker
    trade = events["kind"] == EventKind.TRADE
    order = np.repeat(np.arange(len(events)), np.where(trade, 2, 1))
    session_events = events[order]
    is_maker = np.zeros(len(order), dtype=bool)
    is_maker[1:] = (order[1:] == order[:-1])
    cid_of = lambda oid: (oid.astype(np.uint64) + np.uint64(1 << 40))  # noqa: E731 - the client's own ids
    cids = np.where(is_maker, cid_of(session_events["maker_order_id"]), cid_of(session_events["order_id"]))

    enc = FrameEncoder(first_seq=10)
    data = enc.exec_reports(session_events, cids, is_maker)
    for_client = session_events["kind"] != EventKind.LEVEL
    n = int(for_client.sum())
    assert enc.next_seq == 10 + n

    d = BinaryDecoder(GATEWAY_MESSAGES, first_seq=10)
    got = [(t, rec) for t, rec in ((it.msg_type, r) for it in d.feed(data) for r in it.records)]
    assert len(got) == n and d.buffered == 0
    want = [(e, m, c) for e, m, c, k in zip(session_events, is_maker, cids, for_client) if k]
    types = {EventKind.ACCEPTED: MsgType.EXEC_ACCEPTED, EventKind.REJECTED: MsgType.EXEC_REJECTED,
             EventKind.TRADE: MsgType.EXEC_FILL, EventKind.CANCELLED: MsgType.EXEC_CANCELLED,
             EventKind.MODIFIED: MsgType.EXEC_MODIFIED}
    for i, ((t, rec), (ev, maker, cid)) in enumerate(zip(got, want)):
        assert t == types[int(ev["kind"])]
        assert rec["seq"] == 10 + i and rec["client_order_id"] == cid and rec["ts_ns"] == ev["ts_ns"]
        if t == MsgType.EXEC_REJECTED:
            assert rec["reason"] == ev["reason"] and rec["reason"] in (Reason.DUPLICATE_ORDER_ID,
                                                                       Reason.INVALID_COMMAND)
            continue
        assert rec["instrument"] == ev["instrument"] and rec["price_ticks"] == ev["price_ticks"]
        if t == MsgType.EXEC_FILL:
            assert rec["qty_lots"] == ev["qty_lots"]
            if maker:
                assert rec["liquidity"] == Liquidity.MAKER and rec["leaves_lots"] == ev["maker_leaves_lots"]
                assert rec["side"] == 3 - ev["side"]
            else:
                assert rec["liquidity"] == Liquidity.TAKER and rec["leaves_lots"] == ev["leaves_lots"]
                assert rec["side"] == ev["side"]
        elif t == MsgType.EXEC_ACCEPTED:
            assert rec["qty_lots"] == ev["qty_lots"] and rec["leaves_lots"] == ev["leaves_lots"]
        elif t == MsgType.EXEC_CANCELLED:
            assert rec["qty_lots"] == ev["qty_lots"] and rec["reason"] == ev["reason"]
        elif t == MsgType.EXEC_MODIFIED:
            assert rec["leaves_lots"] == ev["leaves_lots"]
    # the batch encoder agrees with the one-message encoder, byte for byte
    one_by_one = b"".join(
        encode_message(t, int(rec["seq"]), **{k: rec[k] for k in rec.dtype.names[3:]}) for t, rec in got)
    assert one_by_one == data


def test_exec_reports_edge_cases():
    events = engine_events()
    level_only = events[events["kind"] == EventKind.LEVEL]
    assert encode_exec_reports(level_only, np.zeros(len(level_only), np.uint64), 1) == (b"", 0)
    with pytest.raises(ValueError):
        encode_exec_reports(events, np.zeros(1, np.uint64), 1)
