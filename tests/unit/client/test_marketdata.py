"""The SDK's market-data side, sans-I/O: the replica kernel against a dict twin, and the resync
state machine under injected gaps, duplicates and reordering (the replica must equal the venue)."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from microex.client.md_book import OrderBookReplica
from microex.client.md_protocol import BookChanged, MarketDataProtocol, Trades
from microex.core.records import MD_UPDATE, MdKind, MdMsg
from microex.core.raw import concat
from microex.protocol.md_binary import CLIENT_MESSAGES, MdDecoder

from tests.unit.marketdata._venue import Venue, frames


def _level(seq, side, price, qty, count=1, inst=1, kind=MdKind.LEVEL):
    r = np.zeros(1, MD_UPDATE)
    r["md_seq"], r["side"], r["price_ticks"], r["qty_lots"], r["count"] = seq, side, price, qty, count
    r["instrument"], r["kind"], r["length"], r["msg_type"] = inst, kind, 64, MdMsg.INCREMENT
    return r


@settings(max_examples=60, deadline=None)
@given(ops=st.lists(st.tuples(st.integers(1, 2), st.integers(90, 110), st.integers(0, 5), st.integers(1, 3)),
                    max_size=300))
def test_replica_kernel_equals_a_dict_twin(ops):
    """Level states applied in order (including removals of absent levels and growth past 256)."""
    rep = OrderBookReplica(1, capacity=2)
    twin = ({}, {})
    recs = concat([_level(k + 1, s, p, q, c) for k, (s, p, q, c) in enumerate(ops)], MD_UPDATE)
    for k, (s, p, q, c) in enumerate(ops):
        if q:
            twin[s - 1][p] = (q, c)
        else:
            twin[s - 1].pop(p, None)
    stop, gap, applied = rep.apply_increments(recs)
    assert (stop, gap, bool(applied.all())) == (len(ops), False, True) and rep.md_seq == len(ops)
    for s in (1, 2):
        want = sorted(((p, *v) for p, v in twin[s - 1].items()), reverse=s == 1)
        assert rep.depth(s, 10**6) == want
    best = max(twin[0]) if twin[0] else None
    assert rep.best_bid() == ((best, twin[0][best][0]) if twin[0] else (0, 0))


def test_gaps_duplicates_and_old_seqs():
    rep = OrderBookReplica(1)
    rep.load_snapshot(concat([_level(0, 1, 100, 5), _level(0, 2, 101, 5)], MD_UPDATE), 10)
    recs = concat([_level(9, 1, 100, 1), _level(11, 1, 99, 2), _level(11, 1, 99, 7), _level(12, 2, 101, 0),
                   _level(14, 1, 98, 1)], MD_UPDATE)
    stop, gap, applied = rep.apply_increments(recs)
    assert (stop, gap, applied.tolist(), rep.md_seq) == (4, True, [False, True, False, True], 12)
    assert rep.bids() == [(100, 5, 1), (99, 2, 1)] and rep.asks() == []


class FaultyLink:
    """The venue's stream to one client, with faults injected into its increment frames."""

    def __init__(self, venue: Venue, client: MarketDataProtocol, rng, p_drop, p_dup, p_swap, p_split) -> None:
        self.v, self.c, self.rng = venue, client, rng
        self.p_drop, self.p_dup, self.p_swap, self.p_split = p_drop, p_dup, p_swap, p_split
        self.dropped = self.duplicated = self.swapped = 0
        self.events: list = []
        self.requests = MdDecoder(CLIENT_MESSAGES)  # the server side of the connection
        self.requests.expected_seq = client.encoder.next_seq

    def deliver(self, data: bytes) -> None:
        if self.rng.random() < self.p_split and len(data) > 1:  # any split of the bytes
            cut = int(self.rng.integers(1, len(data)))
            self.events += self.c.feed(data[:cut])
            data = data[cut:]
        self.events += self.c.feed(data)
        self.answer()

    def answer(self) -> None:
        """The client's snapshot requests, answered at the venue's current seq (as the stage does)."""
        out = self.c.take_output()
        for t, recs in self.requests.feed(out):
            assert t == MdMsg.SNAPSHOT_REQUEST
            for i in recs["instrument"].tolist():
                self.deliver(self.v.state.snapshot(i)[1])

    def batch(self, n: int, faults: bool = True) -> None:
        out = self.v.batch(n)
        fs = frames(out.updates.tobytes())
        if faults:
            k = 0
            while k < len(fs):
                u = self.rng.random()
                if u < self.p_drop:
                    del fs[k]
                    self.dropped += 1
                    continue
                if u < self.p_drop + self.p_dup:
                    fs.insert(k, fs[k])
                    self.duplicated += 1
                    k += 1
                elif u < self.p_drop + self.p_dup + self.p_swap and k + 1 < len(fs):
                    fs[k], fs[k + 1] = fs[k + 1], fs[k]
                    self.swapped += 1
                    k += 1
                k += 1
        self.deliver(b"".join(fs) + out.bbo.tobytes())


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31), p_drop=st.sampled_from([0.0, 0.002, 0.02, 0.2]),
       p_dup=st.sampled_from([0.0, 0.01, 0.1]), p_swap=st.sampled_from([0.0, 0.01, 0.1]),
       p_split=st.sampled_from([0.0, 0.5]))
def test_the_replica_heals_gaps_duplicates_and_reordering(seed, p_drop, p_dup, p_swap, p_split):
    rng = np.random.default_rng(seed)
    v = Venue(seed=seed % 1000 + 1, spread=8)
    c = MarketDataProtocol()
    v.batch(50)  # a book before the client subscribes
    for i in (1, 2, 3):
        c.subscribe(i)
    link = FaultyLink(v, c, rng, p_drop, p_dup, p_swap, p_split)
    for i in (1, 2, 3):
        link.deliver(v.state.snapshot(i)[1])  # the stage answers a SUBSCRIBE with a snapshot
    for _ in range(25):
        link.batch(40)
        for i in (1, 2, 3):
            sync = c.books[i]
            if sync.live and sync.replica.md_seq == v.state.md_seq(i):
                v.assert_equal(sync.replica, i)  # whenever it claims to be current, it is exact
    link.batch(80, faults=False)  # clean traffic: any gap left is detected and repaired
    for i in (1, 2, 3):
        sync = c.books[i]
        assert sync.live, (i, sync.pending, sync.bundles)
        v.assert_equal(sync.replica, i)
    if link.dropped:
        assert sum(s.gaps for s in c.books.values()) > 0
    trades = [(e.instrument, int(r["count"])) for e in link.events if isinstance(e, Trades) for r in e.records]
    for i in (1, 2, 3):
        ids = [t for inst, t in trades if inst == i]
        assert ids == sorted(set(ids)), "a trade was delivered twice or out of order"
        if not link.dropped:
            assert ids == list(range(ids[0], ids[0] + len(ids))) if ids else True
    assert any(isinstance(e, BookChanged) for e in link.events)


def test_reordering_heals_without_a_snapshot():
    v = Venue(seed=4)
    c = MarketDataProtocol()
    c.subscribe(1)
    c.feed(v.state.snapshot(1)[1])
    out = v.batch(60)
    mine = [f for f in frames(out.updates.tobytes()) if int.from_bytes(f[56:60], "little") == 1]
    assert len(mine) > 4
    mine[1], mine[3] = mine[3], mine[1]
    c.feed(b"".join(mine))
    sync = c.books[1]
    assert sync.gaps == 1 and sync.live and sync.resyncs == 1  # only the subscribe snapshot
    v.assert_equal(sync.replica, 1)
    assert c.take_output() == b""  # the frames that filled the gap came in the same chunk: no request
    # a gap filled by a later chunk: a request goes out, and its (older) answer changes nothing
    out = v.batch(60)
    mine = [f for f in frames(out.updates.tobytes()) if int.from_bytes(f[56:60], "little") == 1]
    c.feed(b"".join(mine[:1] + mine[2:]))
    assert not sync.live and c.take_output()
    stale = v.state.snapshot(1)[1]
    c.feed(mine[1])
    assert sync.live and sync.gaps == 2
    v.assert_equal(sync.replica, 1)
    c.feed(stale)
    v.assert_equal(sync.replica, 1)
