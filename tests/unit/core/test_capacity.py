"""Capacity limits: full order pool, full book side, unknown instruments, growth of the id map and event buffer.

Each scenario runs through the compiled engine and the reference matcher; both
must give the rows written here, and the engine's book must stay consistent.
"""

from __future__ import annotations

import numpy as np
import pytest

from microex.core.config import EngineConfig
from microex.core.engine import MatchingEngine
from microex.core.idmap import ID_HEADER
from microex.core.invariants import check_book_invariants
from microex.core.reference import ReferenceMatcher

from ._helpers import CsvSession, commands, engine_book, reference_book


class Both:
    """The engine and the reference side by side, fed the same CSV rows."""

    def __init__(self, config: EngineConfig) -> None:
        self.engine = MatchingEngine(config)
        self.ref = ReferenceMatcher(config)
        self._eng = CsvSession(self.engine)
        self._ref = CsvSession(self.ref)

    def send(self, text: str) -> list[str]:
        got, want = self._eng.send(text), self._ref.send(text)
        assert got == want, f"engine and reference differ:\n{got}\n{want}"
        check_book_invariants(self.engine)
        assert engine_book(self.engine) == reference_book(self.ref)
        return got


def test_full_order_pool_rejects_gtc_but_immediate_orders_trade() -> None:
    m = Both(EngineConfig(max_instruments=2, max_orders=3, max_levels=4))
    m.send("new,1,1,X,sell,limit,gtc,100,5,\nnew,2,2,X,sell,limit,gtc,101,5,\nnew,3,3,X,buy,limit,gtc,98,5,")
    assert m.engine.live_orders == 3
    before = m.engine.state.copy()
    # a GTC order needs a free slot, checked before anything changes: even one that would fill at once
    assert m.send("new,4,4,X,sell,limit,gtc,102,1,\nnew,5,4,X,buy,limit,gtc,100,1,") == [
        "rejected,4,,,,,,,capacity_orders",
        "rejected,5,,,,,,,capacity_orders",
    ]
    assert np.array_equal(m.engine.state, before), "a rejected command must not change the book"
    assert m.send("new,6,4,X,buy,limit,ioc,100,2,\nnew,7,4,X,buy,market,,,4,\nnew,8,4,X,sell,limit,fok,98,5,") == [
        "accepted,6,X,buy,100,2,2,,",
        "trade,6,X,buy,100,2,0,1,",
        "accepted,7,X,buy,,4,4,,",
        "trade,7,X,buy,100,3,1,1,",
        "trade,7,X,buy,101,1,0,2,",
        "accepted,8,X,sell,98,5,5,,",
        "trade,8,X,sell,98,5,0,3,",
    ]
    assert m.engine.live_orders == 1
    # slots freed by fills are reused; the id of a capacity reject stays taken
    assert m.send(
        "new,4,4,X,sell,limit,gtc,102,1,\n"
        "new,9,4,X,sell,limit,gtc,102,1,\n"
        "new,10,4,Y,buy,limit,gtc,10,1,\n"
        "new,11,4,Y,buy,limit,gtc,11,1,\n"
        "modify,10,,,,,,12,3,\n"
        "cancel,9\n"
        "new,12,4,Y,buy,limit,gtc,11,1,\n"
        "new,13,5,Y,sell,limit,gtc,11,4,"
    ) == [
        "rejected,4,,,,,,,duplicate_order_id",
        "accepted,9,X,sell,102,1,1,,",
        "accepted,10,Y,buy,10,1,1,,",
        "rejected,11,,,,,,,capacity_orders",
        "modified,10,Y,buy,12,,3,,",
        "cancelled,9,X,sell,102,1,0,,user",
        "accepted,12,Y,buy,11,1,1,,",
        "rejected,13,,,,,,,capacity_orders",
    ]
    assert m.send("cancel,2\nnew,13,5,Y,sell,limit,gtc,11,4,") == [
        "cancelled,2,X,sell,101,4,0,,user",
        "rejected,13,,,,,,,duplicate_order_id",
    ]
    assert m.send("new,14,5,Y,sell,limit,gtc,11,5,") == [
        "accepted,14,Y,sell,11,5,5,,",
        "trade,14,Y,sell,12,3,2,10,",
        "trade,14,Y,sell,11,1,1,12,",
    ]
    assert m.engine.live_orders == 1  # order 14 rests with 1 lot


def test_full_book_side_rejects_new_levels() -> None:
    m = Both(EngineConfig(max_instruments=2, max_orders=16, max_levels=2))
    assert m.send(
        "new,1,1,X,buy,limit,gtc,100,1,\n"
        "new,2,1,X,buy,limit,gtc,99,1,\n"
        "new,3,1,X,buy,limit,gtc,98,1,\n"
        "new,4,2,X,buy,limit,gtc,99,2,\n"
        "new,5,1,X,sell,limit,gtc,105,1,\n"
        "new,6,1,X,sell,limit,gtc,106,1,\n"
        "new,7,1,Y,buy,limit,gtc,98,1,\n"
        "new,8,3,X,buy,limit,ioc,98,1,\n"
        "new,9,3,X,sell,limit,gtc,100,1,\n"
        "new,10,3,X,sell,limit,ioc,100,1,"
    ) == [
        "accepted,1,X,buy,100,1,1,,",
        "accepted,2,X,buy,99,1,1,,",
        "rejected,3,,,,,,,capacity_levels",
        "accepted,4,X,buy,99,2,2,,",  # an existing level takes more orders
        "accepted,5,X,sell,105,1,1,,",  # the other side has its own levels
        "accepted,6,X,sell,106,1,1,,",
        "accepted,7,Y,buy,98,1,1,,",  # and so has another instrument
        "accepted,8,X,buy,98,1,1,,",  # an immediate order needs no level
        "cancelled,8,X,buy,98,1,0,,ioc",
        "rejected,9,,,,,,,capacity_levels",  # checked before matching, like the order pool
        "accepted,10,X,sell,100,1,1,,",
        "trade,10,X,sell,100,1,0,1,",
    ]
    # bids are now 99 (orders 2, 4) and 100: moving 4 to a new price needs a level there is no room for
    assert m.send("new,11,1,X,buy,limit,gtc,100,1,\nmodify,4,,,,,,97,2,") == [
        "accepted,11,X,buy,100,1,1,,",
        "rejected,4,,,,,,,capacity_levels",
    ]
    # ...unless the order leaves a level it is alone in
    assert m.send("modify,11,,,,,,97,1,\nnew,12,3,X,sell,limit,ioc,99,2,") == [
        "modified,11,X,buy,97,,1,,",
        "accepted,12,X,sell,99,2,2,,",
        "trade,12,X,sell,99,1,1,2,",
        "trade,12,X,sell,99,1,0,4,",  # order 4 kept its place behind order 2
    ]
    assert m.send("modify,4,,,,,,98,1,\nnew,13,1,X,buy,limit,gtc,96,1,\ncancel,4\nnew,14,1,X,buy,limit,gtc,96,1,") == [
        "modified,4,X,buy,98,,1,,",  # alone at 99 now: its level moves
        "rejected,13,,,,,,,capacity_levels",
        "cancelled,4,X,buy,98,1,0,,user",
        "accepted,14,X,buy,96,1,1,,",
    ]


def test_instrument_beyond_capacity() -> None:
    config = EngineConfig(max_instruments=2, max_orders=8, max_levels=2)
    # action, order_id, account, instrument, side, type, tif, price, qty, flags
    cmds = commands(
        [
            (1, 1, 1, 3, 1, 1, 1, 100, 1, 0),
            (1, 2, 1, 0, 1, 1, 1, 100, 1, 0),
            (1, 3, 1, -1, 1, 1, 1, 100, 1, 0),
            (1, 4, 1, 3, 1, 1, 1, 0, 0, 0),  # instrument is checked before qty and price
            (1, 5, 1, 3, 0, 1, 1, 100, 1, 0),  # ...and after side
            (1, 6, 1, 1 << 30, 2, 2, 0, 0, 1, 0),
            (1, 7, 1, 2, 1, 1, 1, 100, 1, 0),
            (1, 3, 1, 2, 1, 1, 1, 100, 1, 0),  # the id of a rejected order is taken
        ]
    )
    engine = MatchingEngine(config)
    got = engine.process(cmds)
    assert got.tolist() == ReferenceMatcher(config).process(cmds).tolist()
    assert got["kind"].tolist() == [2, 2, 2, 2, 2, 2, 1, 6, 2]
    assert got["reason"].tolist() == [7, 5, 5, 7, 5, 7, 0, 0, 1]
    check_book_invariants(engine)
    # through the CSV: symbols beyond the capacity are unknown, the known ones keep working
    m = Both(config)
    assert m.send("new,1,1,A,buy,limit,gtc,5,1,\nnew,2,1,B,buy,limit,gtc,5,1,\nnew,3,1,C,buy,limit,gtc,5,1,\n"
                  "cancel,3\nnew,4,2,A,sell,limit,gtc,5,1,") == [
        "accepted,1,A,buy,5,1,1,,",
        "accepted,2,B,buy,5,1,1,,",
        "rejected,3,,,,,,,unknown_instrument",
        "rejected,3,,,,,,,unknown_order",
        "accepted,4,A,sell,5,1,1,,",
        "trade,4,A,sell,5,1,0,1,",
    ]


def test_event_buffer_grows_for_a_big_sweep() -> None:
    config = EngineConfig(max_instruments=1, max_orders=64, max_levels=64, event_capacity=16)
    rows = [(1, i, 1 + i % 3, 1, 2, 1, 1, 100 + i % 7, 1 + i % 4, 0) for i in range(1, 41)]
    rows.append((1, 41, 9, 1, 1, 2, 0, 0, 1000, 0))  # a market buy sweeping all 40 orders
    cmds = commands(rows)
    engine = MatchingEngine(config)
    got = engine.process(cmds)
    assert got.tolist() == ReferenceMatcher(config).process(cmds).tolist()
    assert len(engine.events) > 16
    sweep = got[got["seq"] == 41]
    assert (sweep["kind"] == 3).sum() == 40 and sweep[-1]["kind"] == 4  # 40 trades, then the ioc rest
    assert engine.live_orders == 0
    check_book_invariants(engine)


def test_small_event_buffer_is_drained_in_chunks() -> None:
    """The kernel stops before a command whose events might not fit; the caller drains and goes on."""
    config = EngineConfig(max_instruments=1, max_orders=4, max_levels=8, event_capacity=16)  # 2 * 4 + 8 fits
    rows = [(2, 1000 + i, 0, 0, 0, 0, 0, 0, 0, 0) for i in range(50)]  # cancels: one event each
    rows += [(1, i, 1, 1, 1 + i % 2, 1, 1, 100 + i % 3 * (1 if i % 2 else -1), 1, 0) for i in range(1, 30)]
    cmds = commands(rows)
    engine = MatchingEngine(config)
    chunks: list[list] = []
    engine.run(cmds, lambda ev: chunks.append(ev.tolist()), batch=1000)
    assert len(chunks) > 5 and max(len(c) for c in chunks) <= 16
    assert len(engine.events) == 16, "the buffer never needed to grow"
    assert [e for c in chunks for e in c] == ReferenceMatcher(config).process(cmds).tolist()
    check_book_invariants(engine)


@pytest.mark.parametrize("stp", [0, 2], ids=["plain", "stp"])
@pytest.mark.parametrize("ord_type, tif", [(1, 2), (2, 0), (1, 3)], ids=["ioc", "market", "fok"])
def test_sweep_at_every_buffer_offset(ord_type: int, tif: int, stp: int) -> None:
    """A command that meets many makers, started at each position of a 16-event buffer:
    the kernel must stop before it, and never write past the buffer or lose events."""
    config = EngineConfig(max_instruments=1, max_orders=32, max_levels=32, event_capacity=16)
    for offset in range(17):
        rows = [(1, 100 + i, 1 + i % 2, 1, 2, 1, 1, 100 + i, 1, 0) for i in range(12)]  # 12 one-lot asks
        rows += [(1, 50, 2, 1, 1, 1, 1, 50, 1, stp)]  # a bid, out of the way
        rows += [(2, 999, 0, 0, 0, 0, 0, 0, 0, 0)] * offset  # unknown cancels: one event each
        rows += [(1, 1, 1, 1, 1, ord_type, tif, 200, 5, stp)]  # a buy for 5 lots (stp: cancels account 1's asks)
        rows += [(3, 50, 0, 0, 0, 0, 0, 200, 20, 0)]  # the bid moved up, sweeping the rest (stp: its own flag)
        cmds = commands(rows)
        engine = MatchingEngine(config)
        chunks: list = []
        kernel_call = engine.call

        def call(cmds, start, count):
            processed, n_events = kernel_call(cmds, start, count)
            assert n_events <= len(engine.events), f"offset {offset}: {n_events} events in a buffer of {len(engine.events)}"
            return processed, n_events

        engine.call = call
        engine.run(cmds, lambda ev: chunks.append(ev.tolist()), batch=len(cmds))
        assert [e for c in chunks for e in c] == ReferenceMatcher(config).process(cmds).tolist(), f"offset {offset}"
        check_book_invariants(engine)
        assert engine.live_orders == 1  # only the moved bid is left, resting


def test_id_map_doubles_and_keeps_every_id() -> None:
    config = EngineConfig(max_instruments=1, max_orders=256, max_levels=256, id_capacity=2, event_capacity=32)
    ids = [(i * 0x9E3779B97F4A7C15) % (1 << 63) or 1 for i in range(1, 151)]  # spread over the id space
    cmds = commands([(1, oid, 1, 1, 1, 1, 1, 1 + i, 1, 0) for i, oid in enumerate(ids)])
    engine, ref = MatchingEngine(config), ReferenceMatcher(config)
    assert engine.process(cmds).tolist() == ref.process(cmds).tolist()
    check_book_invariants(engine)
    assert engine.live_orders == 150 and len(engine.ids) >= ID_HEADER + 2 * 512  # doubled until less than half full
    assert int(engine.ids[0]) == 150
    again = commands([(1, oid, 1, 1, 1, 1, 1, 1, 1, 0) for oid in ids[::7]] + [(2, oid) for oid in reversed(ids)])
    got = engine.process(again)
    assert got.tolist() == ref.process(again).tolist()
    assert set(got[got["kind"] == 2]["reason"].tolist()) == {1}  # duplicates still found after rehashing
    assert (got["kind"] == 4).sum() == 150 and engine.live_orders == 0
    check_book_invariants(engine)


def test_smallest_id_map_makes_progress() -> None:
    """id_capacity 2 takes one id, then doubles between kernel calls; 1 is refused."""
    with pytest.raises(ValueError):
        EngineConfig(id_capacity=1)
    engine = MatchingEngine(EngineConfig(id_capacity=2))
    calls = 0
    kernel_call = engine.call

    def guarded(cmds, start, count):
        nonlocal calls
        calls += 1
        assert calls < 100, "MatchingEngine.run made no progress after 100 kernel calls"
        return kernel_call(cmds, start, count)

    engine.call = guarded
    got = engine.process(commands([(1, oid, 1, 1, 1, 1, 1, 100, 1, 0) for oid in range(1, 6)]))
    assert got["kind"].tolist() == [1, 6] * 5
    assert int(engine.ids[0]) == 5 and len(engine.ids) >= ID_HEADER + 2 * 16
