"""The edge's read replica: journal tailing (rolls, torn frames), bit-identical state, history, start points."""

from __future__ import annotations

import numpy as np
import pytest

from microex.binance import history_kernels as K
from microex.binance.replica import choose_start
from microex.binance.tailer import JournalTailer
from microex.core.records import Side
from microex.pipeline.journal import HEADER_SIZE, list_segments
from microex.pipeline.snapshot import write_snapshot
from tests.unit.binance.venue import BTCUSDT, JournalVenue, orders, trading_rows


@pytest.fixture
def venue(tmp_path):
    v = JournalVenue(tmp_path / "data")
    yield v
    v.close()


def test_replica_is_bit_identical_and_history_matches_the_events(venue):
    venue.append(orders(trading_rows()))
    edge = venue.edge()
    edge.catch_up()
    engine = venue.engine()
    assert edge.replica.engine.digest() == engine.digest()
    h = edge.history
    # alice's bid: 4 of 10 filled by bob's IOC
    r = h.row(11)
    assert (h.ot[r, K.OR_STATUS], h.ot[r, K.OR_EXEC], h.ot[r, K.OR_LEAVES]) == (K.ST_PARTIAL, 4, 6)
    assert h.ot[r, K.OR_CUMQ] == 5_990_000 * 4 * 10
    assert h.ot[h.row(12), K.OR_STATUS] == K.ST_FILLED
    assert h.ot[h.row(14), K.OR_STATUS] == K.ST_FILLED  # carol's market buy took 2 of bob's 7 at 60,100
    assert [int(x) for x in h.open_rows(1)] == [r]
    trades = h.trades()
    assert trades[:, K.TR_QTY].tolist() == [4, 2] and trades[:, K.TR_PRICE].tolist() == [5_990_000, 6_010_000]
    assert trades[0, K.TR_TAKER_FEE] == -(-5_990_000 * 4 * 10 * 5 // 10_000)  # ceil, as the engine charges
    # fees as the engine settled them: account 0 holds both sides' fees of both trades
    fees = int(trades[:, K.TR_TAKER_FEE].sum() + trades[:, K.TR_MAKER_FEE].sum())
    assert int(engine.balances()[0, 2, 0]) == fees
    rows, makers = h.account_trades(2, BTCUSDT)
    assert rows[:, K.TR_ID].tolist() == sorted(rows[:, K.TR_ID].tolist()) and makers.tolist() == [False, True]


def test_tailer_follows_appends_segment_rolls_and_waits_for_a_torn_frame(tmp_path):
    v = JournalVenue(tmp_path / "data", segment_bytes=HEADER_SIZE + 64 * 40)
    t = JournalTailer(v.data.journal, 1)
    got = [int(s) for a in t.poll() for s in a["seq"]]
    assert got == list(range(1, v.seq + 1))
    for k in range(5):  # several segments
        v.append(orders([(100 + k, 1, BTCUSDT, Side.BUY, 5_900_000 - k, 1)] * 1))
    assert len(list_segments(v.data.journal)) > 1
    assert [int(s) for a in t.poll() for s in a["seq"]] == list(range(got[-1] + 1, v.seq + 1))
    assert t.poll() == []
    # a frame half written: nothing until the rest of it is there
    v.append(orders([(200, 1, BTCUSDT, Side.BUY, 5_800_000, 1)]))
    last_seg = list_segments(v.data.journal)[-1][1]
    content = last_seg.read_bytes()
    frame = content[-(HEADER_SIZE + 64):]
    last_seg.write_bytes(content[:-(HEADER_SIZE + 64)] + frame[:50])
    assert t.poll() == []
    last_seg.write_bytes(content)
    [a] = t.poll()
    assert a["seq"].tolist() == [v.seq] and a["order_id"].tolist() == [200]
    v.close()


def test_replica_started_from_a_snapshot_seeds_open_orders_and_books(venue):
    venue.append(orders(trading_rows()))
    engine = venue.engine()
    write_snapshot(venue.data.snapshots, engine, venue.seq)
    venue.append(orders([(21, 4, BTCUSDT, Side.SELL, 5_990_000, 1, 2)]))  # IOC: trades with alice's bid
    edge = venue.edge(history_commands=0)
    assert edge.replica.start_seq == venue.seq - 1
    edge.catch_up()
    assert edge.replica.engine.digest() == venue.engine().digest()
    h = edge.history
    r = h.row(11)
    assert (h.ot[r, K.OR_LEAVES], h.ot[r, K.OR_STATUS]) == (5, K.ST_PARTIAL)  # seeded with 6 leaves, 1 filled since
    last, bids, asks = edge.market.book(BTCUSDT, 10)
    e = edge.replica.engine
    assert bids == [(p, q) for p, q, _ in e.depth(BTCUSDT, 1)] and asks == [(p, q) for p, q, _ in e.depth(BTCUSDT, 2)]


def test_choose_start_prefers_enough_history_without_replaying_too_much():
    # journal from 1, snapshots at 100 and 900, end at 1000
    assert choose_start(1, 1000, [100, 900], 500, 10_000)[0] == 100
    assert choose_start(1, 1000, [100, 900], 50, 10_000)[0] == 900
    assert choose_start(1, 1000, [100, 900], 5_000, 10_000)[0] == 0
    assert choose_start(1, 1000, [100, 900], 5_000, 950)[0] == 100  # the empty start would replay too much
    assert choose_start(501, 1000, [100, 900], 5_000, 10_000) == [900]  # pruned journal: only what it covers
    assert choose_start(501, 1000, [], 5_000, 10_000) == []
    assert np.array_equal(choose_start(1, 1000, [100, 900], 500, 10_000), [100, 900, 0])
