"""Market events go only to subscribers, in order; a strategy that raises is stopped, the others go on."""

from __future__ import annotations

import numpy as np

from microex.strategy import Strategy, StopReason, book_records, trade_records
from microex.strategy.market import MARKET


class Recorder(Strategy):
    def __init__(self):
        super().__init__()
        self.books, self.trades, self.started = [], [], 0

    def on_start(self):
        self.started += 1

    def on_book(self, instrument, book):
        self.books.append((instrument, book.bid, book.ask, book.seq))

    def on_trade(self, trade):
        self.trades.append((trade.instrument, trade.side, trade.price_ticks, trade.qty_lots))


class Raiser(Recorder):
    def on_book(self, instrument, book):
        super().on_book(instrument, book)
        if book.bid == 13:
            raise RuntimeError("unlucky")


def mixed_md():
    books = book_records([(1, 10, 5, 12, 5), (2, 20, 1, 22, 1), (3, 30, 1, 31, 1), (1, 11, 5, 12, 5),
                          (2, 13, 1, 14, 1), (1, 9, 5, 12, 5)])
    trades = trade_records([(1, 1, 12, 3), (3, 2, 30, 1)])
    md = np.concatenate([books[:2], trades[:1], books[2:5], trades[1:], books[5:]])
    md["seq"] = np.arange(1, len(md) + 1)
    return md


def test_only_subscribers_get_events_in_stream_order(rt):
    a, b, c = Recorder(), Recorder(), Recorder()
    rt.add(a, [1])
    rt.add(b, [2, 3])
    rt.add(c, [1, 3])
    rt.start()
    rt.on_market(mixed_md())
    assert a.books == [(1, 10, 12, 1), (1, 11, 12, 5), (1, 9, 12, 8)]
    assert [x[0] for x in b.books] == [2, 3, 2] and b.trades == [(3, 2, 30, 1)]
    assert [x[3] for x in c.books] == [1, 4, 5, 8] and c.trades == [(1, 1, 12, 3), (3, 2, 30, 1)]
    assert a.started == b.started == c.started == 1
    # routed-event counts come from the numba side of the table (books and trades alike)
    assert rt.delivered[:3].tolist() == [4, 4, 6]
    assert rt.market_events == 8
    assert rt.table.subscribers(3).tolist() == [1, 2]


def test_book_view_is_updated_in_place_and_has_depth_when_given(rt):
    seen = []

    class Keep(Strategy):
        def on_book(self, instrument, book):
            seen.append(book)

    rt.add(Keep(), [1])
    rt.set_depth(lambda inst, side, n: [(99, 1, 1)] * n)
    rt.start()
    rt.on_market(book_records([(1, 10, 5, 12, 6), (1, 11, 5, 12, 6)]))
    assert seen[0] is seen[1] and seen[0].bid == 11 and seen[0].mid == 11.5 and seen[0].spread == 1
    assert seen[0].depth(1, 2) == [(99, 1, 1), (99, 1, 1)]


def test_a_raising_strategy_is_stopped_and_the_others_go_on(rt):
    good1, bad, good2 = Recorder(), Raiser(), Recorder()
    for s in (good1, bad, good2):
        rt.add(s, [1, 2])
    rt.start()
    bad.place(1, 1, 5, 1)  # an open order: stopping it must cancel it
    cid = next(iter(bad.orders))
    rt.on_market(mixed_md())
    slot = rt.slots[1]
    assert not slot.active and slot.reason == StopReason.STRATEGY_ERROR and "unlucky" in slot.error
    assert rt.stopped == [slot]
    assert [x[1] for x in bad.books] == [10, 20, 11, 13]  # called until it raised, never after
    assert len(good1.books) == len(good2.books) == 5  # the others saw everything
    assert ("cancel", cid) in rt.link.sent
    assert bad.place(1, 1, 5, 1) == 0  # a stopped strategy sends nothing
    rt.on_market(book_records([(1, 13, 1, 14, 1)]))
    assert len(good1.books) == 6 and len(bad.books) == 4


def test_raising_in_on_start_on_order_and_on_timer_stops_only_that_strategy(rt):
    class BadStart(Strategy):
        def on_start(self):
            raise ValueError("no")

    class BadTimer(Strategy):
        def on_timer(self, now_ns):
            raise KeyError("tick")

    ok = Recorder()
    rt.add(BadStart(), [1])
    rt.add(BadTimer(), [1], timer_ms=1)
    rt.add(ok, [1])
    rt.start()
    rt.now = 2_000_000
    rt.on_timer()
    assert [s.reason for s in rt.slots] == [StopReason.STRATEGY_ERROR] * 2 + [StopReason.NONE]
    rt.on_market(book_records([(1, 10, 1, 11, 1)]))
    assert ok.books == [(1, 10, 11, 1)]


def test_strategy_added_after_start_is_started_and_dispatched(rt):
    a = Recorder()
    rt.add(a, [1])
    rt.start()
    late = Recorder()
    rt.add(late, [1])
    assert late.started == 1
    rt.on_market(book_records([(1, 10, 1, 11, 1)]))
    assert len(late.books) == len(a.books) == 1


def test_timers_fire_on_their_period_in_runtime_time(rt):
    ticks = []

    class T(Strategy):
        def on_timer(self, now_ns):
            ticks.append(now_ns)

    rt.add(T(), [1], timer_ms=10)
    rt.start()
    for now in range(0, 50_000_001, 5_000_000):
        rt.now = now
        rt.on_timer()
    assert ticks == [10_000_000, 20_000_000, 30_000_000, 40_000_000, 50_000_000]


def test_instruments_outside_the_table_are_ignored(rt):
    a = Recorder()
    rt.add(a, [1])
    rt.start()
    md = np.zeros(2, dtype=MARKET)
    md["kind"], md["instrument"], md["bid"], md["ask"] = 1, [99, 1], 5, 6
    rt.on_market(md)
    assert a.books == [(1, 5, 6, 0)]


def test_a_thousand_strategies_each_get_exactly_their_instruments_records():
    from microex.strategy import StrategyRuntime

    rng = np.random.default_rng(11)
    rt = StrategyRuntime(max_instruments=100)
    rt.attach(object())
    subs = [rng.choice(100, 2, replace=False) + 1 for _ in range(1_000)]
    strategies = [Recorder() for _ in subs]
    for s, insts in zip(strategies, subs):
        rt.add(s, insts.tolist())
    rt.start()
    rows = [(int(i), 100, 1, 101, 1) for i in rng.integers(1, 101, 5_000)]
    md = book_records(rows)
    for a in range(0, len(md), 256):
        rt.on_market(md[a:a + 256])
    per_inst = np.bincount(md["instrument"], minlength=101)
    for s, insts in zip(strategies, subs):
        assert len(s.books) == per_inst[insts].sum()
        assert {b[0] for b in s.books} <= set(insts.tolist())
    assert rt.delivered[:1_000].tolist() == [int(per_inst[i].sum()) for i in subs]


def test_trading_an_instrument_it_did_not_subscribe_to_stops_the_strategy(rt):
    class Stray(Strategy):
        def on_book(self, instrument, book):
            self.place(2, 1, book.bid, 1)

    rt.add(Stray(), [1])
    rt.start()
    rt.on_market(book_records([(1, 10, 1, 11, 1)]))
    slot = rt.slots[0]
    assert slot.reason == StopReason.STRATEGY_ERROR and "may only trade" in slot.error and not rt.link.sent
