"""MarketDataStage without I/O: client frames in, subscriber bytes out, on a given clock."""

from __future__ import annotations

from microex.core.records import BookFlag, CandleInterval, MdMsg, MdReason
from microex.marketdata.stage import MarketDataStage
from microex.marketdata.state import MarketState
from microex.protocol.binary import ProtocolReason
from microex.protocol.md_binary import SERVER_MESSAGES, MdDecoder, MdFrameEncoder, SubFlag, encode

from tests.unit.marketdata._streams import engine, random_commands
from tests.unit.marketdata._venue import FakeTransport


def _frames(t: FakeTransport) -> list[tuple[MdMsg, object]]:
    return MdDecoder(SERVER_MESSAGES).feed(t.read())


def test_requests_events_and_the_clock():
    eng = engine()
    cmds = random_commands(9, 1200, max_step_ns=100_000_000)
    head = eng.process(cmds[:600])
    state = MarketState(3)
    state.apply(head)
    stage = MarketDataStage(state, min_seq=600)
    t = FakeTransport()
    stage.connect(7, t)
    enc = MdFrameEncoder()
    data = (enc.subscribe(1, 0, SubFlag.DEFAULT | SubFlag.PERIODIC_BOOK) + enc.subscribe(2, 1, SubFlag.PERIODIC_BOOK)
            + enc.snapshot_request(3) + encode(MdMsg.HEARTBEAT, 9))
    assert stage.on_bytes(7, data)
    got = _frames(t)
    types = [m for m, _ in got]
    assert types[:3] == [MdMsg.STATUS, MdMsg.SNAPSHOT_BEGIN, MdMsg.SNAPSHOT_LEVEL]
    errors = [e for m, r in got if m == MdMsg.ERROR for e in r]
    assert [(int(e["reason"]), int(e["ref_seq"])) for e in errors] == [
        (MdReason.NOT_SUBSCRIBED, 3), (ProtocolReason.BAD_SEQUENCE, 9)]
    # the whole stream again: events of commands <= 600 are already in the state and are skipped
    eng.process(cmds[600:])
    stage.on_events(_all_events(cmds))
    incs = [r for m, r in _frames(t) if m == MdMsg.INCREMENT]
    assert incs and all(set(r["instrument"].tolist()) == {1} for r in incs)
    assert all((r["engine_seq"] > 600).all() for r in incs)
    assert state.depth(1, 1, 999) == eng.depth(1, 1, 999) and state.depth(2, 2, 999) == eng.depth(2, 2, 999)
    now = int(cmds["ts_ns"][-1]) + 1
    stage.on_timer(now)
    got = _frames(t)
    books = [r[0] for m, r in got if m == MdMsg.SNAPSHOT_BEGIN]
    assert sorted((int(b["instrument"]), int(b["flags"])) for b in books) == [
        (1, BookFlag.FULL), (2, BookFlag.FULL | BookFlag.TRUNCATED)]  # PERIODIC_BOOK, at each one's depth
    tickers = [r for m, r in got if m == MdMsg.TICKER]
    assert [int(r["instrument"][0]) for r in tickers] == [1]  # only subscription 1 asked for tickers
    candles = [r for m, r in got if m == MdMsg.CANDLE]
    assert all((c["instrument"] == 1).all() for c in candles)
    assert any((c["flags"] == 0).any() for c in candles)  # the running ones (closed ones may come too)
    stage.on_timer(now + 10**8)  # within the same second: nothing periodic again
    assert not [m for m, _ in _frames(t) if m in (MdMsg.TICKER, MdMsg.SNAPSHOT_BEGIN)]
    stage.on_timer(now + 3_600 * 10**9 + 10**9)  # every running candle's bucket is over
    closed = [r for m, r in _frames(t) if m == MdMsg.CANDLE]
    closed_1 = [c for r in closed for c in r if c["flags"] == 1]
    assert CandleInterval.H1 in [int(c["interval"]) for c in closed_1]
    assert len(state.running_candles(only_changed=False)) == 0  # nothing left running anywhere


def _all_events(cmds):
    return engine().process(cmds)


def test_a_frame_that_cannot_be_resynced_closes_the_connection():
    stage = MarketDataStage(MarketState(1))
    t = FakeTransport()
    stage.connect(1, t)
    assert not stage.on_bytes(1, b"\x04\x00\x02\x00\x01\x00\x00\x00")
    [(m, err)] = _frames(t)
    assert m == MdMsg.ERROR and err["reason"][0] == ProtocolReason.BAD_FRAMING
    stage.disconnect(1)
    assert not stage.on_bytes(1, b"") and not stage.fanout.subscribers
