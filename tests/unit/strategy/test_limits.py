"""Client-side limits: a breach cancels the strategy's orders and stops it with a reason code (90-99)."""

from __future__ import annotations

from conftest import accepted, fill

from microex.core.records import Side
from microex.strategy import Limits, Strategy, StopReason, book_records
from microex.strategy.limits import rate_admit


class Idle(Strategy):
    pass


def test_reason_codes_are_in_their_own_range():
    assert all(90 <= r <= 99 for r in StopReason if r != StopReason.NONE)


def test_max_position_counts_open_orders_and_a_breach_cancels_everything(rt):
    s = Idle()
    rt.add(s, [1, 2], Limits(max_position=10))
    rt.start()
    a = s.place(1, Side.BUY, 100, 6)
    b = s.place(2, Side.SELL, 200, 3)
    assert a and b
    assert s.place(1, Side.BUY, 99, 4)  # 6 + 4 = 10: at the limit, allowed
    assert s.place(1, Side.SELL, 101, 10)  # the sell side has its own room
    sent = len(rt.link.sent)
    assert s.place(1, Side.BUY, 98, 1) == 0  # 11 > 10 if everything filled
    slot = rt.slots[0]
    assert not slot.active and slot.reason == StopReason.MAX_POSITION and "11 > 10" in slot.error
    cancels = [m[1] for m in rt.link.sent[sent:]]
    assert rt.link.kinds()[sent:] == ["cancel"] * 4 and sorted(cancels) == sorted(slot.orders)
    assert s.cancel(a) == 0 and s.modify(b, 1, 1) == 0  # stopped: nothing more goes out


def test_max_position_sees_fills_and_modifies(rt):
    s = Idle()
    rt.add(s, [1], Limits(max_position=10))
    rt.start()
    cid = s.place(1, Side.BUY, 100, 8)
    rt.on_report(accepted(cid, 1, Side.BUY, 100, 8))
    rt.on_report(fill(cid, 1, Side.BUY, 100, 8, 0))
    assert s.position(1) == 8 and s.open_qty(1, Side.BUY) == 0
    c2 = s.place(1, Side.BUY, 100, 2)
    rt.on_report(accepted(c2, 1, Side.BUY, 100, 2))
    assert s.modify(c2, 100, 1) == c2  # shrinking is always fine
    assert rt.slots[0].active
    assert s.modify(c2, 100, 3) == 0  # 8 + 3 > 10
    assert rt.slots[0].reason == StopReason.MAX_POSITION
    assert rt.link.sent[-1] == ("cancel", c2)


def test_order_rate_limit_allows_the_burst_then_stops(rt):
    s = Idle()
    rt.add(s, [1], Limits(max_order_rate=100, burst=5))  # one message per 10 ms, 5 at once
    rt.start()
    for _ in range(5):
        assert s.place(1, Side.BUY, 100, 1)
    rt.now += 10_000_000  # 10 ms later: one more token
    assert s.place(1, Side.BUY, 100, 1)
    assert rt.slots[0].active
    assert s.place(1, Side.BUY, 100, 1) == 0
    slot = rt.slots[0]
    assert slot.reason == StopReason.MAX_ORDER_RATE and not slot.active
    assert rt.link.kinds().count("cancel") == 6  # every open order


def test_gcra_spaces_messages_by_the_interval():
    tat, admitted = 0, 0
    for now in range(0, 1_000_000_000, 1_000_000):  # a message every 1 ms for 1 s, limit 100/s, burst 1
        t = rate_admit(tat, now, 10_000_000, 0)
        if t >= 0:
            tat, admitted = t, admitted + 1
    assert admitted == 100
    assert rate_admit(0, 5, 0, 0) == 0  # no limit


def test_max_loss_on_a_mark_stops_and_cancels(rt):
    s, other = Idle(), Idle()
    rt.add(s, [1], Limits(max_loss=500))
    rt.add(other, [1])
    rt.start()
    cid = s.place(1, Side.BUY, 100, 20)
    rt.on_report(accepted(cid, 1, Side.BUY, 100, 20))
    rt.on_report(fill(cid, 1, Side.BUY, 100, 10, 10))
    rt.on_market(book_records([(1, 60, 1, 62, 1)]))  # long 10 at 100, mid 61: -390
    assert rt.slots[0].active and s.pnl() == (0, -390, 0, -390)
    rt.on_market(book_records([(1, 0, 0, 40, 1)]))  # one-sided book: no mark, no breach
    assert rt.slots[0].active and s.pnl().total == -390
    rt.on_market(book_records([(1, 48, 1, 50, 1), (1, 70, 1, 72, 1)]))  # conflated: only the last mark counts
    assert rt.slots[0].active and s.pnl().total == -290
    rt.on_market(book_records([(1, 48, 1, 50, 1)]))  # mid 49: -510
    slot = rt.slots[0]
    assert slot.reason == StopReason.MAX_LOSS and not slot.active and "-510 < -500" in slot.error
    assert rt.link.sent[-1] == ("cancel", cid)
    assert rt.slots[1].active  # the other subscriber is untouched
    rt.on_market(book_records([(1, 38, 1, 40, 1)]))  # a stopped strategy's position is still marked
    assert s.pnl().total == -610


def test_max_loss_on_a_fill(rt):
    s = Idle()
    rt.add(s, [1], Limits(max_loss=100))
    rt.start()
    rt.on_market(book_records([(1, 99, 1, 101, 1)]))
    cid = s.place(1, Side.SELL, 100, 10)
    rt.on_report(accepted(cid, 1, Side.SELL, 100, 10))
    rt.on_report(fill(cid, 1, Side.SELL, 100, 4, 6))
    assert rt.slots[0].active  # short 4 at 100 vs mid 100
    rt.on_market(book_records([(1, 119, 1, 121, 1)]))  # mid 120: -80
    assert rt.slots[0].active
    rt.on_report(fill(cid, 1, Side.SELL, 100, 2, 4))  # short 6 at 100: -120
    assert rt.slots[0].reason == StopReason.MAX_LOSS
    assert s.pnl().total == -120


def test_cancel_all_per_instrument_and_in_all(rt):
    s = Idle()
    rt.add(s, [1, 2])
    rt.start()
    a, b, c = s.place(1, Side.BUY, 1, 1), s.place(2, Side.BUY, 1, 1), s.place(1, Side.SELL, 9, 1)
    assert s.cancel_all(1) == 2 and rt.link.sent[-2:] == [("cancel", a), ("cancel", c)]
    assert s.cancel_all() == 3  # the orders stay open until the venue confirms
    assert rt.slots[0].active and rt.link.sent[-1] == ("cancel", c) and b in s.orders
