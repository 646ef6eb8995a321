"""check_book_invariants must pass on healthy books and catch each kind of corruption."""

from __future__ import annotations

import numpy as np
import pytest

from microex.core.config import EngineConfig
from microex.core.engine import MatchingEngine
from microex.core.idmap import ID_HEADER, id_find
from microex.core.invariants import check_book_invariants
from microex.core.state import (
    H_FREE_ORDER,
    H_LIVE_ORDERS,
    L_COUNT,
    L_HEAD,
    L_PRICE,
    L_QTY,
    L_TAIL,
    NIL,
    O_ID,
    O_LEAVES,
    O_LEVEL,
    O_META,
    O_NEXT,
    O_PREV,
    O_PRICE,
    views,
)

from ._helpers import CsvSession, engine_book

SCRIPT = """\
new,1,1,AAA,buy,limit,gtc,100,5,
new,2,2,AAA,buy,limit,gtc,100,3,
new,3,3,AAA,buy,limit,gtc,100,4,
new,4,1,AAA,buy,limit,gtc,99,2,
new,5,2,AAA,sell,limit,gtc,102,6,
new,6,3,AAA,sell,limit,gtc,103,1,
new,7,1,AAA,sell,limit,gtc,103,2,
new,8,2,BBB,sell,limit,gtc,50,2,
new,9,3,BBB,buy,limit,gtc,49,2,
new,10,4,AAA,sell,limit,ioc,99,1,
new,11,4,AAA,buy,limit,gtc,98,1,
cancel,11
"""
AAA, BUY, SELL = 1, 1, 2


@pytest.fixture
def engine() -> MatchingEngine:
    eng = MatchingEngine(EngineConfig(max_instruments=2, max_orders=32, max_levels=8, id_capacity=64))
    CsvSession(eng).send(SCRIPT)
    return eng


def slot_of(eng: MatchingEngine, oid: int) -> int:
    (slots,) = np.nonzero(views(eng.state)["orders"][:, O_ID] == oid)
    assert len(slots) == 1
    return int(slots[0])


def level_of(eng: MatchingEngine, oid: int) -> int:
    return int(views(eng.state)["orders"][slot_of(eng, oid), O_LEVEL])


def key_pos(eng: MatchingEngine, book: int, key: int) -> int:
    v = views(eng.state)
    return int(np.nonzero(v["keys"][book, : v["counts"][book]] == key)[0][0])


def test_fixture_book_is_as_scripted(engine: MatchingEngine) -> None:
    check_book_invariants(engine)
    assert engine_book(engine) == {
        (1, BUY): [(100, 11, [(1, 1, 4, 0), (2, 2, 3, 0), (3, 3, 4, 0)]), (99, 2, [(4, 1, 2, 0)])],
        (1, SELL): [(102, 6, [(5, 2, 6, 0)]), (103, 3, [(6, 3, 1, 0), (7, 1, 2, 0)])],
        (2, BUY): [(49, 2, [(9, 3, 2, 0)])],
        (2, SELL): [(50, 2, [(8, 2, 2, 0)])],
    }


def test_empty_engine_passes() -> None:
    check_book_invariants(MatchingEngine(EngineConfig(max_instruments=1, max_orders=1, max_levels=1)))


def _move_bid_level(eng, price):
    """Move AAA's bid level at 100 (keys, level and orders together) to `price`."""
    v = views(eng.state)
    lv = level_of(eng, 1)
    v["keys"][AAA * 2, key_pos(eng, AAA * 2, 100)] = price
    v["levels"][lv, L_PRICE] = price
    for oid in (1, 2, 3):
        v["orders"][slot_of(eng, oid), O_PRICE] = price


def _swap_bid_keys(eng):
    v = views(eng.state)
    b = AAA * 2
    v["keys"][b, [0, 1]] = v["keys"][b, [1, 0]]
    v["lidx"][b, [0, 1]] = v["lidx"][b, [1, 0]]


def _id_pair(eng, oid):
    h = int(id_find(eng.ids, oid))
    return ID_HEADER + 2 * h


def _drop_id(eng, oid):
    p = _id_pair(eng, oid)
    eng.ids[p] = 0
    eng.ids[0] -= 1


def _ghost_order(eng):
    """Order 11 was cancelled; its freed slot gets its id back while in no book."""
    slot = int(eng.ids[_id_pair(eng, 11) + 1])
    views(eng.state)["orders"][slot, O_ID] = 11


def _set(table, row_fn, col, value_fn):
    """A corruption: views[table][row, col] = value_fn(engine, old value) (col None: a 1-d table)."""

    def corrupt(eng):
        t = views(eng.state)[table]
        at = row_fn(eng) if col is None else (row_fn(eng), col)
        t[at] = value_fn(eng, int(t[at]))

    return corrupt


CORRUPTIONS = {
    "level_qty": (_set("levels", lambda e: level_of(e, 1), L_QTY, lambda e, x: x + 1), "L_QTY"),
    "level_count": (_set("levels", lambda e: level_of(e, 1), L_COUNT, lambda e, x: x + 1), "L_COUNT"),
    "level_tail": (_set("levels", lambda e: level_of(e, 1), L_TAIL, lambda e, x: slot_of(e, 2)), "L_TAIL"),
    "level_head_skips_first": (_set("levels", lambda e: level_of(e, 1), L_HEAD, lambda e, x: slot_of(e, 2)),
                               "O_PREV"),
    "next_cut": (_set("orders", lambda e: slot_of(e, 1), O_NEXT, lambda e, x: NIL), "L_TAIL"),
    "next_skips": (_set("orders", lambda e: slot_of(e, 1), O_NEXT, lambda e, x: slot_of(e, 3)), "O_PREV"),
    "prev_wrong": (_set("orders", lambda e: slot_of(e, 2), O_PREV, lambda e, x: NIL), "O_PREV"),
    "fifo_cycle": (_set("orders", lambda e: slot_of(e, 3), O_NEXT, lambda e, x: slot_of(e, 1)), "twice"),
    "order_in_two_levels": (_set("levels", lambda e: level_of(e, 6), L_HEAD, lambda e, x: slot_of(e, 5)),
                            "O_LEVEL|twice"),
    "order_id_zero": (_set("orders", lambda e: slot_of(e, 2), O_ID, lambda e, x: 0), "order id"),
    "leaves_zero": (_set("orders", lambda e: slot_of(e, 4), O_LEAVES, lambda e, x: 0), "leaves"),
    "leaves_changed": (_set("orders", lambda e: slot_of(e, 2), O_LEAVES, lambda e, x: x + 2), "L_QTY"),
    "order_price": (_set("orders", lambda e: slot_of(e, 2), O_PRICE, lambda e, x: x - 1), "!= level price"),
    "order_level": (_set("orders", lambda e: slot_of(e, 2), O_LEVEL, lambda e, x: level_of(e, 4)), "O_LEVEL"),
    "meta_side": (_set("orders", lambda e: slot_of(e, 2), O_META, lambda e, x: x ^ 3), "meta says"),
    "meta_instrument": (_set("orders", lambda e: slot_of(e, 2), O_META, lambda e, x: x + (1 << 8)), "meta says"),
    "meta_flags": (_set("orders", lambda e: slot_of(e, 2), O_META, lambda e, x: x | (3 << 2)), "meta flags"),
    "key_changed": (_set("keys", lambda e: AAA * 2, 0, lambda e, x: x - 1), r"key -?\d+ != "),
    "keys_unsorted": (_swap_bid_keys, "ascending"),
    "level_price": (_set("levels", lambda e: level_of(e, 4), L_PRICE, lambda e, x: x + 7), r"key -?\d+ != "),
    "crossed_book": (lambda e: _move_bid_level(e, 102), "crossed"),
    "level_count_dropped": (_set("counts", lambda e: AAA * 2, None, lambda e, x: x - 1), "state says"),
    "book_of_instrument_0": (_set("counts", lambda e: 0, None, lambda e, x: 1), "invalid instrument"),
    "live_orders": (lambda e: e.state.__setitem__(H_LIVE_ORDERS, e.state[H_LIVE_ORDERS] + 1), "state says"),
    "free_list_holds_live": (lambda e: e.state.__setitem__(H_FREE_ORDER, slot_of(e, 5)), "also live"),
    "id_count": (lambda e: e.ids.__setitem__(0, e.ids[0] + 1), r"ids\[0\]"),
    "id_slot": (lambda e: e.ids.__setitem__(_id_pair(e, 2) + 1, slot_of(e, 3)), "maps to slot"),
    "id_missing": (lambda e: _drop_id(e, 5), "not in the map"),
    "id_ghost": (_ghost_order, "in no book"),
}


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_corruption_is_caught(engine: MatchingEngine, name: str) -> None:
    corrupt, message = CORRUPTIONS[name]
    check_book_invariants(engine)
    corrupt(engine)
    with pytest.raises(AssertionError, match=message):
        check_book_invariants(engine)


def test_the_book_works_after_the_checks(engine: MatchingEngine) -> None:
    """The checker only reads: the engine goes on matching as before."""
    before = engine.state.copy(), engine.ids.copy()
    check_book_invariants(engine)
    assert np.array_equal(engine.state, before[0]) and np.array_equal(engine.ids, before[1])
    rows = CsvSession(engine).send("new,12,5,AAA,sell,limit,gtc,100,5,")
    assert rows == ["accepted,12,AAA,sell,100,5,5,,", "trade,12,AAA,sell,100,4,1,1,", "trade,12,AAA,sell,100,1,0,2,"]
    check_book_invariants(engine)
