"""BookFromEvents: replicas equal the engine's books; one BOOK record per instrument and chunk."""

from __future__ import annotations

import numpy as np

from microex.core.engine import MatchingEngine
from microex.core.records import COMMAND, EVENT, Action, EventKind
from microex.strategy import BookFromEvents, MdKind


def random_commands(n: int, seed: int, instruments: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    c = np.zeros(n, COMMAND)
    c["seq"] = c["order_id"] = np.arange(1, n + 1)
    c["account"] = rng.integers(1, 5, n)
    c["action"] = np.where(rng.random(n) < 0.25, Action.CANCEL, Action.NEW)
    c["side"] = rng.integers(1, 3, n)
    c["ord_type"] = np.where(rng.random(n) < 0.05, 2, 1)
    c["tif"] = np.where(rng.random(n) < 0.1, 2, 1)
    c["price_ticks"] = rng.integers(90, 111, n)
    c["qty_lots"] = rng.integers(1, 10, n)
    c["instrument"] = rng.integers(1, instruments + 1, n)
    cancel = c["action"] == Action.CANCEL
    c["order_id"][cancel] = rng.integers(1, n, cancel.sum())
    return c


def test_replica_equals_the_engine_book_on_random_streams():
    cmds = random_commands(20_000, 3)
    engine = MatchingEngine()
    engine.warm_up()
    books = BookFromEvents(max_instruments=4, max_levels=64)
    trades = md_trades = 0
    for a in range(0, len(cmds), 777):
        ev = engine.process(cmds[a:a + 777])
        md = books.apply(ev)
        trades += int((ev["kind"] == EventKind.TRADE).sum())
        md_trades += int((md["kind"] == MdKind.TRADE).sum())
        for inst in (1, 2, 3):
            for side in (1, 2):
                assert books.depth(inst, side, 100) == engine.depth(inst, side, 100)
            bid, ask = engine.best(inst)
            t = books.top(inst)
            assert (t[0], t[2]) == (bid, ask)
            last = md[(md["kind"] == MdKind.BOOK) & (md["instrument"] == inst)]
            if len(last):  # the chunk's BOOK record is the book after the whole chunk
                assert (int(last[-1]["bid"]), int(last[-1]["ask"])) == (bid, ask)
    assert trades == md_trades > 100 and books.truncated == 0


def level(inst, side, price, qty, orders=1, seq=0):
    e = np.zeros(1, EVENT)
    e["kind"], e["instrument"], e["side"], e["price_ticks"], e["qty_lots"], e["level_orders"], e["seq"] = \
        EventKind.LEVEL, inst, side, price, qty, orders, seq
    return e


def trade(inst, side, price, qty, seq=0):
    e = np.zeros(1, EVENT)
    e["kind"], e["instrument"], e["side"], e["price_ticks"], e["qty_lots"], e["seq"] = \
        EventKind.TRADE, inst, side, price, qty, seq
    return e


def test_one_book_record_per_instrument_at_its_last_level_event():
    books = BookFromEvents(4, 8)
    ev = np.concatenate([level(1, 1, 100, 5, seq=1), level(2, 2, 200, 3, seq=2), trade(1, 2, 100, 2, seq=3),
                         level(1, 1, 100, 3, seq=3), level(1, 2, 102, 4, seq=4), trade(2, 1, 200, 1, seq=5)])
    md = books.apply(ev)
    rows = [(int(r["kind"]), int(r["instrument"]), int(r["seq"])) for r in md]
    assert rows == [(1, 2, 2), (2, 1, 3), (1, 1, 4), (2, 2, 5)]
    b1 = md[2]
    assert (b1["bid"], b1["bid_qty"], b1["ask"], b1["ask_qty"]) == (100, 3, 102, 4)
    # the next chunk starts afresh: only instrument 1 changes
    md = books.apply(level(1, 1, 100, 0, seq=6))
    assert len(md) == 1 and (md[0]["bid"], md[0]["ask"]) == (0, 102)


def test_a_full_side_keeps_the_best_levels():
    books = BookFromEvents(1, 3)
    ev = np.concatenate([level(1, 1, p, 1) for p in (100, 101, 102, 99, 103)] +
                        [level(1, 2, p, 1) for p in (110, 109, 111, 108)])
    books.apply(ev)
    assert [p for p, _, _ in books.depth(1, 1, 5)] == [103, 102, 101]
    assert [p for p, _, _ in books.depth(1, 2, 5)] == [108, 109, 110]
    assert books.truncated == 3
