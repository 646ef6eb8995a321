"""Structural invariants of a MatchingEngine's book, checked from Python.

`check_book_invariants(engine)` raises AssertionError, naming the book side,
level or order slot at fault, when the engine's flat state (state.py) or its
order-id map (idmap.py) is inconsistent. It is for tests and debugging: plain
Python over numpy views, fine for books of a few thousand orders.

How it works:
1. Every book side (book = instrument * 2 + side - 1) with live levels: its
   first counts[book] keys are strictly ascending, and each is the level's
   price for bids or -price for asks (so the best price is last); the level
   belongs to that book and to no other side.
2. Every level's FIFO is walked from L_HEAD along O_NEXT: each order's O_PREV
   is the order before it, L_TAIL is the last one, and the level's L_COUNT and
   L_QTY are the number of orders and the sum of their leaves. Each order has
   a non-zero id, leaves > 0, the level's price, O_LEVEL pointing back, and
   meta (instrument, side, flags) matching the book. No slot is seen twice
   (this also stops the walk on a cycle).
3. Per instrument, best bid < best ask when both sides have levels.
4. The orders found are all the live orders (state[H_LIVE_ORDERS]); the free
   order and level lists hold exactly the used slots that are not live.
5. The id map: ids[0] is the number of non-zero keys, no key appears twice,
   probing (idmap.id_find) for each live order's id finds its slot, and no
   entry leads to a slot holding its id outside the books.
"""

from __future__ import annotations

import numpy as np

from microex.core.idmap import ID_HEADER, id_find
from microex.core.state import (
    H_BUMP_LEVEL,
    H_BUMP_ORDER,
    H_FREE_LEVEL,
    H_FREE_ORDER,
    H_LIVE_ORDERS,
    H_MAX_INSTRUMENTS,
    H_MAX_LEVELS,
    H_MAX_ORDERS,
    L_BOOK,
    L_COUNT,
    L_HEAD,
    L_NEXT_FREE,
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

BUY = 1
_VALID_FLAGS = (0, 1, 2)  # none, post_only, stp


def check_book_invariants(engine) -> None:
    """Raise AssertionError if the engine's book or id map is inconsistent."""
    state, ids = engine.state, engine.ids
    v = views(state)
    orders, levels, keys, lidx, counts = v["orders"], v["levels"], v["keys"], v["lidx"], v["counts"]
    max_orders = int(state[H_MAX_ORDERS])
    max_levels = int(state[H_MAX_LEVELS])
    max_instruments = int(state[H_MAX_INSTRUMENTS])

    live_slots: set[int] = set()
    live_levels: set[int] = set()
    best: dict[tuple[int, int], int] = {}  # (instrument, side) -> best price
    for book in np.flatnonzero(counts).tolist():
        inst, side = book // 2, book % 2 + 1
        n = int(counts[book])
        where = f"book {book} (instrument {inst}, side {side})"
        assert 1 <= inst <= max_instruments, f"{where}: {n} levels on an invalid instrument"
        assert n <= max_levels, f"{where}: {n} levels > max_levels {max_levels}"
        k = keys[book, :n]
        assert np.all(k[1:] > k[:-1]), f"{where}: keys not strictly ascending: {k.tolist()}"
        for j in range(n):
            lv = int(lidx[book, j])
            assert 0 <= lv < max_orders, f"{where}: key {j} -> level slot {lv} out of range"
            assert lv not in live_levels, f"{where}: level slot {lv} listed twice"
            live_levels.add(lv)
            price = int(levels[lv, L_PRICE])
            assert price > 0, f"{where}: level {lv} has price {price}"
            want_key = price if side == BUY else -price
            assert k[j] == want_key, f"{where}: key {int(k[j])} != {want_key} for level {lv} at price {price}"
            assert levels[lv, L_BOOK] == book, f"{where}: level {lv} says book {int(levels[lv, L_BOOK])}"
            _check_level(orders, levels, lv, book, price, max_orders, live_slots)
        best[(inst, side)] = int(k[n - 1]) if side == BUY else -int(k[n - 1])

    for inst in sorted({inst for inst, _ in best}):
        bid, ask = best.get((inst, 1)), best.get((inst, 2))
        if bid is not None and ask is not None:
            assert bid < ask, f"instrument {inst}: crossed book, best bid {bid} >= best ask {ask}"

    live = int(state[H_LIVE_ORDERS])
    assert len(live_slots) == live, f"{len(live_slots)} orders in the books, state says {live} live"
    _check_free_list(orders, O_NEXT, int(state[H_FREE_ORDER]), int(state[H_BUMP_ORDER]), live_slots, "order")
    _check_free_list(levels, L_NEXT_FREE, int(state[H_FREE_LEVEL]), int(state[H_BUMP_LEVEL]), live_levels, "level")
    _check_id_map(ids, orders, live_slots)


def _check_level(orders, levels, lv, book, price, max_orders, seen: set[int]) -> None:
    """Walk one level's FIFO; add its order slots to `seen`."""
    inst, side = book // 2, book % 2 + 1
    where = f"level {lv} (book {book}, price {price})"
    prev, o, count, qty = NIL, int(levels[lv, L_HEAD]), 0, 0
    while o != NIL:
        at = f"{where}, order slot {o}"
        assert 0 <= o < max_orders, f"{at}: slot out of range"
        assert o not in seen, f"{at}: slot appears twice (or the FIFO has a cycle)"
        seen.add(o)
        row = orders[o]
        assert row[O_ID] > 0, f"{at}: order id {int(row[O_ID])} (0 marks a free slot)"
        assert row[O_PREV] == prev, f"{at}: O_PREV {int(row[O_PREV])} != {prev}"
        assert row[O_LEVEL] == lv, f"{at}: O_LEVEL {int(row[O_LEVEL])} does not point back"
        assert row[O_LEAVES] > 0, f"{at}: leaves {int(row[O_LEAVES])} <= 0"
        assert row[O_PRICE] == price, f"{at}: price {int(row[O_PRICE])} != level price"
        meta = int(row[O_META])
        assert (meta >> 8, meta & 3) == (inst, side), f"{at}: meta says instrument {meta >> 8} side {meta & 3}"
        assert (meta >> 2) & 63 in _VALID_FLAGS, f"{at}: meta flags {(meta >> 2) & 63}"
        count += 1
        qty += int(row[O_LEAVES])
        prev, o = o, int(row[O_NEXT])
    assert count >= 1, f"{where}: live level without orders"
    assert levels[lv, L_TAIL] == prev, f"{where}: L_TAIL {int(levels[lv, L_TAIL])} != last order {prev}"
    assert levels[lv, L_COUNT] == count, f"{where}: L_COUNT {int(levels[lv, L_COUNT])} != {count} orders"
    assert levels[lv, L_QTY] == qty, f"{where}: L_QTY {int(levels[lv, L_QTY])} != sum of leaves {qty}"


def _check_free_list(table, link, head, bump, live: set[int], what: str) -> None:
    """Slots below the bump pointer are live or on the free list, never both."""
    assert 0 <= bump <= len(table), f"{what} bump pointer {bump} outside 0..{len(table)}"
    free: set[int] = set()
    s = head
    while s != NIL:
        assert 0 <= s < bump, f"free {what} list: slot {s} outside the used range 0..{bump - 1}"
        assert s not in free, f"free {what} list: slot {s} twice (cycle)"
        assert s not in live, f"free {what} list: slot {s} is also live"
        free.add(s)
        s = int(table[s, link])
    assert len(free) + len(live) == bump, f"{what} slots: {len(live)} live + {len(free)} free != {bump} used"
    assert all(s < bump for s in live), f"live {what} slot beyond the bump pointer {bump}"


def _check_id_map(ids, orders, live_slots: set[int]) -> None:
    cap = 1 << int(ids[1])
    assert len(ids) == ID_HEADER + 2 * cap, f"id map: {len(ids)} words for capacity {cap}"
    pairs = ids[ID_HEADER:].reshape(cap, 2)
    used = pairs[pairs[:, 0] != 0, 0]
    assert int(ids[0]) == len(used), f"id map: ids[0] = {int(ids[0])}, {len(used)} non-zero keys"
    assert len(np.unique(used)) == len(used), "id map: a key appears twice"
    for slot in live_slots:
        oid = int(orders[slot, O_ID])
        h = int(id_find(ids, oid))
        assert pairs[h, 0] == oid, f"id map: live order {oid} (slot {slot}) is not in the map"
        assert pairs[h, 1] == slot, f"id map: order {oid} maps to slot {int(pairs[h, 1])}, lives in {slot}"
    for oid, slot in pairs[pairs[:, 0] != 0].tolist():  # no entry may lead to an order outside the books
        assert slot == NIL or 0 <= slot < len(orders), f"id map: order {oid} maps to slot {slot}, out of range"
        if slot != NIL and orders[slot, O_ID] == oid:
            assert slot in live_slots, f"id map: order {oid} found in slot {slot}, which is in no book"
