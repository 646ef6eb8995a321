"""ClientIdMap: the gateway's (session, client order id) -> engine id table, against a dict."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from microex.gateway import client_ids
from microex.gateway.client_ids import ClientIdMap, capacity

U64 = st.integers(0, 2**64 - 1)


def _bits(cid: int) -> np.int64:
    return np.uint64(cid).astype(np.int64)  # the kernels' view of a u64 client id


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.one_of(U64, st.integers(0, 40))), max_size=300),
       st.integers(1, 64))
def test_the_table_answers_as_a_dict_does_through_every_doubling(keys, hint):
    table = ClientIdMap(hint)
    ref: dict[tuple[int, int], int] = {}
    eid = 1
    for sidx, cid in keys:
        table.ensure(1)
        if (sidx, cid) in ref:
            assert client_ids.get(table.table, sidx, _bits(cid)) == ref[(sidx, cid)]
            continue
        assert client_ids.get(table.table, sidx, _bits(cid)) == 0
        client_ids.put(table.table, sidx, _bits(cid), eid)
        ref[(sidx, cid)] = eid
        eid += 1
        assert 2 * len(table) <= capacity(table.table)  # never more than half full: short probe runs
    assert len(table) == len(ref)
    for (sidx, cid), e in ref.items():
        assert table.get(sidx, cid) == e
    for sidx, cid in [(6, 0), (0, 2**64 - 2)]:
        if (sidx, cid) not in ref:
            assert table.get(sidx, cid) == 0


def test_the_same_client_id_in_two_sessions_is_two_orders_and_zero_and_max_are_ids():
    table = ClientIdMap(4)
    for sidx, cid, eid in [(0, 0, 11), (1, 0, 12), (0, 2**64 - 1, 13), (1, 2**64 - 1, 14)]:
        client_ids.put(table.table, sidx, _bits(cid), eid)
    assert [table.get(s, c) for s, c in [(0, 0), (1, 0), (0, 2**64 - 1), (1, 2**64 - 1), (2, 0)]] == [11, 12, 13, 14, 0]


def test_a_table_sized_for_the_day_never_doubles_and_a_small_one_says_when_it_does():
    sized = ClientIdMap(10_000)
    first = sized.table
    for i in range(10_000):
        assert not sized.ensure(1)
        client_ids.put(sized.table, 0, _bits(i), i + 1)
    assert sized.table is first  # no rehash on the order path
    assert sized.room() == capacity(sized.table) // 2 - 10_000 >= 0
    small = ClientIdMap(4)
    multiplier = int(small.table[2])
    grew = []
    for i in range(100):
        grew.append(small.ensure(1))
        client_ids.put(small.table, 3, _bits(i), i + 1)
    assert sum(grew) == 5  # 8 -> 16 -> ... -> 256 entries
    assert all(small.get(3, i) == i + 1 for i in range(100))
    assert int(small.table[2]) == multiplier and multiplier % 2 == 1


def test_each_gateway_hashes_with_its_own_multiplier():
    assert len({int(ClientIdMap(4).table[2]) for _ in range(8)}) > 1


def test_make_room_keeps_both_id_tables_able_to_take_what_it_promised():
    from microex.gateway.session import GatewaySessions

    gw = GatewaySessions({b"key-1": 1}, expected_orders=16, read_room=8)
    eid = gw.ids.next_eid
    for burst in [1, 8, 3, 8, 8, 2, 8, 8, 8, 8, 8, 8, 8, 8]:  # past the sizing: both tables must grow
        gw.make_room(burst)
        for _ in range(burst):
            client_ids.put(gw.cids.table, 0, _bits(eid), eid)
            eid += 1
        gw.ids.next_eid = eid
        assert 2 * len(gw.cids) <= capacity(gw.cids.table)  # never past half full
        assert gw.ids.next_eid - gw.ids.base <= len(gw.ids.status)
