"""The market-data feed codec: round trips, any split, framing errors with reasons, fuzzed."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from microex.core.records import MD_BBO, MD_CANDLE, MD_TICKER, MD_UPDATE, MdMsg, MdReason
from microex.core.raw import concat
from microex.marketdata.state import MarketState
from microex.protocol.binary import MAX_FRAME_SIZE, DecodeError, ProtocolReason
from microex.protocol.md_binary import (CLIENT_MESSAGES, DTYPES, SERVER_MESSAGES, Messages, MdDecoder, MdFrameEncoder,
                                        MdStatus, SubFlag, encode, error, resync, status)

from tests.unit.marketdata._streams import engine, random_commands


def _server_stream() -> tuple[bytes, list[tuple[MdMsg, np.ndarray]]]:
    """Real stage output for a random stream: snapshot, increments, BBO, candles, ticker, control frames."""
    ms = MarketState(3)
    events = engine().process(random_commands(3, 600))
    parts, expect = [], []
    seq, snap = ms.snapshot(1)
    parts.append(snap)
    for t, r in MdDecoder(SERVER_MESSAGES).feed(snap):
        expect.append((t, r))
    out = ms.apply(events)
    for t, recs in ((MdMsg.INCREMENT, out.updates), (MdMsg.BBO, out.bbo), (MdMsg.CANDLE, out.candles),
                    (MdMsg.TICKER, ms.tickers(int(events["ts_ns"][-1])))):
        parts.append(recs.tobytes())
        expect.append((t, np.frombuffer(recs.tobytes(), recs.dtype)))  # copy() would not keep padding
    for frame, t in ((status(2, MdStatus.CONFLATED, 77, MdReason.CONFLATED), MdMsg.STATUS),
                     (resync(2, 78), MdMsg.RESYNC), (error(MdReason.NOT_SUBSCRIBED, 3, 9), MdMsg.ERROR)):
        parts.append(frame)
        expect.append((t, np.frombuffer(frame, DTYPES[t])))  # copy() would leave the padding bytes undefined
    return b"".join(parts), expect


def _merge(items):
    """Runs of one type that a split may have cut in two, merged back."""
    merged = []
    for it in items:
        if merged and isinstance(it, Messages) and isinstance(merged[-1], Messages) and merged[-1][0] == it[0]:
            merged[-1] = Messages(it[0], concat([merged[-1][1], it[1]], it[1].dtype))
        else:
            merged.append(it)
    return merged


STREAM, EXPECT = _server_stream()


def test_server_records_are_frames():
    items = MdDecoder(SERVER_MESSAGES).feed(STREAM)
    assert [t for t, _ in items] == [t for t, _ in EXPECT]
    for (t, got), (_, want) in zip(items, EXPECT):
        assert got.dtype == DTYPES[t] and got.tobytes() == want.tobytes()
    assert {MD_UPDATE, MD_BBO, MD_CANDLE, MD_TICKER} <= {DTYPES[t] for t, _ in items}
    [incs] = [r for t, r in items if t == MdMsg.INCREMENT]
    assert (incs["seq"] == incs["md_seq"] & 0xFFFFFFFF).all() and len(incs) > 100


@settings(max_examples=60, deadline=None)
@given(cuts=st.lists(st.integers(0, len(STREAM)), max_size=30))
def test_any_split_decodes_the_same(cuts):
    dec = MdDecoder(SERVER_MESSAGES)
    items = []
    pos = 0
    for c in sorted(cuts) + [len(STREAM)]:
        items += dec.feed(STREAM[pos:c])
        pos = c
    assert dec.buffered == 0
    assert [(t, r.tobytes()) for t, r in _merge(items)] == [(t, r.tobytes()) for t, r in EXPECT]


def test_client_messages_round_trip_and_seq_checks():
    enc = MdFrameEncoder()
    data = enc.subscribe(3, 10, SubFlag.BOOK | SubFlag.TRADES) + enc.snapshot_request(3, 5) + enc.heartbeat() + \
        enc.unsubscribe(3)
    items = MdDecoder(CLIENT_MESSAGES).feed(data)
    assert [t for t, _ in items] == [MdMsg.SUBSCRIBE, MdMsg.SNAPSHOT_REQUEST, MdMsg.HEARTBEAT, MdMsg.UNSUBSCRIBE]
    sub = items[0][1][0]
    assert (sub["instrument"], sub["depth"], sub["flags"], sub["seq"]) == (3, 10, 3, 1)
    assert items[3][1]["seq"][0] == 4
    # a skipped seq, a server message sent by a client, a bad length: skipped with reasons, then it goes on
    dec = MdDecoder(CLIENT_MESSAGES)
    bad_len = bytearray(encode(MdMsg.UNSUBSCRIBE, 3, instrument=1))
    bad_len[0] = 24
    bad_len += bytes(8)
    stream = (encode(MdMsg.HEARTBEAT, 1) + encode(MdMsg.HEARTBEAT, 5) + encode(MdMsg.STATUS, 6)
              + bytes(bad_len) + encode(MdMsg.SUBSCRIBE, 4, instrument=2))
    items = dec.feed(stream)
    assert [(type(i).__name__, i[0]) for i in items] == [
        ("Messages", MdMsg.HEARTBEAT), ("DecodeError", ProtocolReason.BAD_SEQUENCE),
        ("DecodeError", ProtocolReason.UNKNOWN_MESSAGE_TYPE), ("DecodeError", ProtocolReason.BAD_LENGTH),
        ("Messages", MdMsg.SUBSCRIBE)]  # counting goes on from each frame's seq, bad ones included
    assert not dec.closed


def test_untrusted_lengths_close_the_decoder():
    for length, reason in ((4, ProtocolReason.BAD_FRAMING), (12, ProtocolReason.BAD_FRAMING),
                           (MAX_FRAME_SIZE + 8, ProtocolReason.FRAME_TOO_LARGE)):
        dec = MdDecoder(SERVER_MESSAGES)
        items = dec.feed(encode(MdMsg.HEARTBEAT) + length.to_bytes(2, "little"))
        assert isinstance(items[-1], DecodeError) and items[-1].closing and items[-1].reason == reason
        assert dec.closed and dec.feed(encode(MdMsg.HEARTBEAT)) == []


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=600), server=st.booleans(), split=st.integers(0, 600))
def test_random_bytes_never_raise(data, server, split):
    dec = MdDecoder(SERVER_MESSAGES if server else CLIENT_MESSAGES)
    items = dec.feed(data[:split]) + dec.feed(data[split:])
    for it in items:
        if isinstance(it, DecodeError):
            assert it.reason in ProtocolReason
        else:
            assert it.records.dtype == DTYPES[it.msg_type] and len(it.records) > 0
    assert dec.buffered <= MAX_FRAME_SIZE
    closing = [it for it in items if isinstance(it, DecodeError) and it.closing]
    assert len(closing) <= 1 and (not closing or items[-1] is closing[0])


@settings(max_examples=100, deadline=None)
@given(noise=st.binary(min_size=1, max_size=64), pos=st.integers(0, len(STREAM)))
def test_garbage_inside_a_valid_stream_never_raises(noise, pos):
    dec = MdDecoder(SERVER_MESSAGES)
    dec.feed(STREAM[:pos] + noise + STREAM[pos:])  # anything may come out, nothing may escape
