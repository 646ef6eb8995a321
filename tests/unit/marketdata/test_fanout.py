"""Fanout: shared encoding, subscription replies, and the slow-consumer policy (conflation, resync, drop).

Each subscriber's bytes go through the SDK's sans-I/O MarketDataProtocol; its replica must
equal the venue's book whatever the policy did to its stream.
"""

from __future__ import annotations

import numpy as np
import pytest

from microex.client.md_protocol import MarketDataProtocol, Status, Trades
from microex.core.records import BookFlag, MdMsg, MdReason
from microex.marketdata.fanout import Fanout
from microex.core.raw import take
from microex.protocol.md_binary import SERVER_MESSAGES, MdDecoder, MdStatus, SubFlag

from tests.unit.marketdata._venue import FakeTransport, Venue


class Peer:
    """A subscriber: a fake transport on the fanout side, the SDK protocol on the other."""

    def __init__(self, fanout: Fanout, sub_id: int, instruments, flags=SubFlag.DEFAULT) -> None:
        self.fanout, self.sub_id = fanout, sub_id
        self.t = FakeTransport()
        self.proto = MarketDataProtocol()
        self.events: list = []
        self.frames: list = []
        fanout.add(sub_id, self.t)
        for i in instruments:
            self.proto.subscribe(i, flags)
            fanout.subscribe(sub_id, i, 0, flags)

    def read(self) -> None:
        data = self.t.read()
        self.frames += [t for t, _ in MdDecoder(SERVER_MESSAGES).feed(data)]
        self.events += self.proto.feed(data)
        self.proto.take_output()  # the fanout never causes a gap: nothing to ask for

    def replica(self, i):
        return self.proto.books[i].replica


def test_live_subscribers_share_one_encoding_and_stay_exact():
    v = Venue(seed=3)
    fan = Fanout(v.state)
    a, b = Peer(fan, 1, [1, 2, 3]), Peer(fan, 2, [2])
    for _ in range(30):
        out = v.batch(80)
        fan.publish(out.updates, out.bbo, out.candles)
        a.read()
        b.read()
    for i in (1, 2, 3):
        v.assert_equal(a.replica(i), i)
        assert a.proto.books[i].live and a.proto.books[i].gaps == 0
    v.assert_equal(b.replica(2), 2)
    out = v.batch(200)
    fan.publish(out.updates)
    seg2 = take(out.updates, out.updates["instrument"] == 2)
    [chunk_b] = b.t.chunks
    assert chunk_b == seg2.tobytes() and any(c is chunk_b for c in a.t.chunks)  # one encoding, shared
    assert b.frames.count(MdMsg.SNAPSHOT_BEGIN) == 1 and MdMsg.BBO in b.frames and MdMsg.CANDLE in b.frames


def test_requests_errors_and_unsubscribe():
    v = Venue()
    fan = Fanout(v.state, max_subscriptions=2)
    t = FakeTransport()
    fan.add(1, t)
    fan.subscribe(1, 9, ref_seq=4)
    fan.subscribe(1, 1, 0, 0x4000, ref_seq=5)
    fan.snapshot_request(1, 2, ref_seq=6)
    fan.unsubscribe(1, 3, ref_seq=7)
    errs = MdDecoder(SERVER_MESSAGES).feed(t.read())[0][1]
    assert errs[["reason", "ref_type", "ref_seq"]].tolist() == [
        (MdReason.UNKNOWN_INSTRUMENT, MdMsg.SUBSCRIBE, 4), (MdReason.BAD_REQUEST, MdMsg.SUBSCRIBE, 5),
        (MdReason.NOT_SUBSCRIBED, MdMsg.SNAPSHOT_REQUEST, 6), (MdReason.NOT_SUBSCRIBED, MdMsg.UNSUBSCRIBE, 7)]
    fan.subscribe(1, 1, 0, SubFlag.TRADES)
    fan.subscribe(1, 2, 0, SubFlag.TRADES)
    fan.subscribe(1, 3, 0, SubFlag.TRADES, ref_seq=8)
    assert MdDecoder(SERVER_MESSAGES).feed(t.read())[-1][1]["reason"][0] == MdReason.TOO_MANY_SUBSCRIPTIONS
    out = v.batch(400)
    fan.publish(out.updates, out.bbo, out.candles)
    got = MdDecoder(SERVER_MESSAGES).feed(t.read())
    assert [m for m, _ in got] == [MdMsg.INCREMENT]  # trades only: no levels, BBO or candles
    trades = got[0][1]
    assert set(trades["kind"].tolist()) == {2} and set(trades["instrument"].tolist()) <= {1, 2}
    fan.unsubscribe(1, 1)
    out = v.batch(400)
    fan.publish(out.updates)
    items = MdDecoder(SERVER_MESSAGES).feed(t.read())
    assert items[0][0] == MdMsg.STATUS and items[0][1]["status"][0] == MdStatus.UNSUBSCRIBED
    assert set(items[1][1]["instrument"].tolist()) == {2}


@pytest.mark.parametrize("max_levels", [4096, 3])
def test_a_slow_subscriber_is_conflated_then_exact(max_levels):
    """B reads only now and then: it is conflated (or told to resync, with a tight level bound),
    gets bundles or a snapshot when it drains, and its book ends equal to the venue's."""
    v = Venue(seed=5, spread=6)
    fan = Fanout(v.state, high_water=8000, low_water=2000, max_conflated_levels=max_levels)
    fast, slow = Peer(fan, 1, [1, 2, 3]), Peer(fan, 2, [1, 2, 3])
    for k in range(60):
        out = v.batch(60)
        fan.publish(out.updates, out.bbo, out.candles)
        fast.read()
        if k % 7 == 6:
            slow.read()
            fan.check_conflated()  # drained: the next publish (or this timer call) flushes it
            slow.read()
    slow.read()
    fan.check_conflated()
    slow.read()
    for i in (1, 2, 3):
        v.assert_equal(fast.replica(i), i)
        v.assert_equal(slow.replica(i), i)
        assert slow.proto.books[i].live and slow.proto.books[i].gaps == 0
    statuses = [e.status for e in slow.events if isinstance(e, Status)]
    assert statuses.count(MdStatus.CONFLATED) >= 3 and statuses.count(MdStatus.LIVE) >= 3
    assert fan.stats["conflations"] >= 1 and fan.stats["flushes"] >= 1 and not fan.conflated
    assert not fan.logs  # nobody conflated: no level log kept
    if max_levels == 3:
        assert fan.stats["resyncs"] >= 1 and MdMsg.RESYNC in slow.frames
        assert sum(s.resyncs for s in slow.proto.books.values()) > 3  # FULL snapshots after the first three
    else:
        assert fan.stats["resyncs"] == 0
    assert fan.subscribers[2].dropped_trades > 0  # conflation dropped trades, and said so
    trade_ids = [int(r["count"]) for e in slow.events if isinstance(e, Trades) and e.instrument == 1 for r in e.records]
    assert trade_ids == sorted(set(trade_ids))  # never a duplicate trade


def test_bundles_are_partial_and_continue_the_stream():
    v = Venue(seed=8)
    fan = Fanout(v.state, high_water=500, low_water=100)
    slow = Peer(fan, 1, [1])
    slow.read()
    last = v.state.md_seq(1)
    for _ in range(5):
        out = v.batch(100)
        fan.publish(out.updates)
    assert 1 in fan.conflated
    data = slow.t.read()
    fan.check_conflated()
    data += slow.t.read()
    items = MdDecoder(SERVER_MESSAGES).feed(data)
    begins = [r for t, r in items if t == MdMsg.SNAPSHOT_BEGIN]
    bundle = begins[-1][0]
    assert bundle["flags"] == BookFlag.PARTIAL and bundle["md_seq"] == v.state.md_seq(1)
    incs = np.concatenate([r["md_seq"] for t, r in items if t == MdMsg.INCREMENT])
    assert bundle["first_seq"] == incs[-1] + 1 and incs[0] == last + 1  # no hole, no overlap
    slow.proto.feed(data)
    v.assert_equal(slow.replica(1), 1)


def test_a_subscriber_that_never_reads_is_dropped():
    v = Venue(seed=2)
    now = [0.0]
    fan = Fanout(v.state, high_water=20_000, low_water=100, drop_bytes=50_000, max_conflated_s=5,
                 clock=lambda: now[0])
    stuck, gone, ok = Peer(fan, 1, [1, 2, 3]), Peer(fan, 2, [1]), Peer(fan, 3, [1])
    gone.t.pending = 60_000  # its socket buffer is already past the drop bound
    for k in range(20):
        out = v.batch(100)
        fan.publish(out.updates, out.bbo)
        ok.read()
        now[0] += 1
    assert gone.t.aborted and stuck.t.aborted
    assert sorted(fan.closed_reasons) == [(1, MdReason.SLOW_CONSUMER), (2, MdReason.SLOW_CONSUMER)]
    assert set(fan.subscribers) == {3} and not fan.conflated and not fan.logs
    v.assert_equal(ok.replica(1), 1)


def _stream_is_exact(data: bytes) -> None:
    """Per instrument, after each FULL snapshot (md_seq S) or PARTIAL bundle (first..S), the
    increments are S+1, S+2... with no hole and no repeat (a book-only stream too: BOOK brings
    the trade increments, whose md_seqs count)."""
    expect: dict[int, int] = {}
    for t, recs in MdDecoder(SERVER_MESSAGES).feed(data):
        if t == MdMsg.SNAPSHOT_END:
            for r in recs:
                expect[int(r["instrument"])] = int(r["md_seq"]) + 1
        elif t == MdMsg.INCREMENT:
            for r in recs:
                i = int(r["instrument"])
                seq = int(r["md_seq"])
                assert seq == expect[i], f"instrument {i}: {seq} after {expect[i] - 1}"
                expect[i] = seq + 1


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_deferred_steps_keep_every_stream_exact(seed):
    """defer=True (the live stage): publish only queues, flush_next sends one instrument at a
    time. Subscribers that join, ask for snapshots, conflate and drain between the steps all
    get exact streams and end with the venue's books."""
    rng = np.random.default_rng(seed)
    v = Venue(seed=seed, spread=6)
    fan = Fanout(v.state, high_water=6000, low_water=1500, defer=True)
    peers = [Peer(fan, 1, [1, 2, 3]), Peer(fan, 2, [2, 3], SubFlag.BOOK), Peer(fan, 3, [1, 3])]
    raw = {p.sub_id: bytearray() for p in peers}

    def read(p):
        data = p.t.read()
        raw.setdefault(p.sub_id, bytearray()).extend(data)
        p.t.chunks.append(data)  # Peer.read takes it from there
        p.read()

    for k in range(90):
        out = v.batch(int(rng.integers(1, 60)))
        fan.publish(out.updates, out.bbo, out.candles)
        for _ in range(int(rng.integers(0, 4))):
            fan.flush_next()
        if k == 25:
            peers.append(Peer(fan, 4, [1, 2, 3]))  # joins while updates are pending
        if k == 40:
            fan.snapshot_request(1, 2)
        for p in peers:
            if p.sub_id != 2 or k % 9 == 8:  # 2 reads only now and then: it gets conflated
                read(p)
        if k % 9 == 8:
            fan.check_conflated()
    for _ in range(2):
        fan.flush_all()
        for p in peers:
            read(p)
        fan.check_conflated()
    for p in peers:
        _stream_is_exact(bytes(raw[p.sub_id]))
        for i, book in p.proto.books.items():
            v.assert_equal(book.replica, i)
            assert book.gaps == 0
    assert fan.stats["conflations"] >= 1 and fan.stats["flushes"] >= 1 and not fan.pending


def test_deferred_publish_waits_for_its_step():
    v = Venue(seed=4)
    fan = Fanout(v.state, defer=True)
    a, b = Peer(fan, 1, [1]), Peer(fan, 2, [2, 3])
    a.read()
    b.read()
    out = v.batch(300)
    fan.publish(out.updates, out.bbo)
    assert not a.t.chunks and not b.t.chunks  # queued, not sent
    first = fan.pending.next()
    assert first in (1, 2, 3) and fan.flush_next()
    sent_to = {p.sub_id for p in (a, b) if p.t.chunks}
    assert sent_to == ({1} if first == 1 else {2})
    fan.flush_all()
    a.read()
    b.read()
    for p, insts in ((a, [1]), (b, [2, 3])):
        for i in insts:
            v.assert_equal(p.replica(i), i)


def test_a_subscriber_dropped_by_the_flush_before_its_request_stays_gone():
    """subscribe and snapshot_request first send the instrument's queue; if that send drops the
    subscriber (past drop_bytes), the request is not answered and nothing of it is left behind."""

    class Closing(FakeTransport):
        def write(self, data: bytes) -> None:
            if not self.aborted:  # a closed connection takes nothing more
                super().write(data)

    v = Venue(seed=1)
    fan = Fanout(v.state, high_water=2000, low_water=500, drop_bytes=4000, defer=True)
    t = Closing()
    fan.add(1, t)
    fan.subscribe(1, 1, 0, SubFlag.BOOK)
    t.read()
    out = v.batch(400)
    fan.publish(out.updates, out.bbo, out.candles)  # queued: more than drop_bytes for instrument 1
    fan.subscribe(1, 1, 0, SubFlag.BOOK)  # a re-subscribe: its flush drops the subscriber
    fan.snapshot_request(1, 1)
    assert t.aborted and 1 not in fan.subscribers and not fan.subs_of[1]
    for _ in range(3):
        out = v.batch(50)
        fan.publish(out.updates)
        fan.flush_all()
    assert fan.stats["dropped"] == 1 and list(fan.closed_reasons) == [(1, MdReason.SLOW_CONSUMER)]
