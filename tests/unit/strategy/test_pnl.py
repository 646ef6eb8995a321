"""Positions and PnL from fills, by hand, and against core/positions.py's PositionBook."""

from __future__ import annotations

import numpy as np
from conftest import accepted, cancelled, fill

from microex.client.protocol import ExecReport
from microex.core.positions import PositionBook
from microex.core.records import EVENT, EventKind, Side
from microex.protocol.binary import MsgType
from microex.strategy import Strategy, book_records
from microex.strategy.pnl import PnlBook


class Idle(Strategy):
    def __init__(self):
        super().__init__()
        self.reports = []

    def on_order(self, report):
        self.reports.append(report)


def test_average_cost_realized_unrealized_and_fees_by_hand(rt):
    s = Idle()
    rt.add(s, [1])
    rt.pnl.set_instrument(1, tick=1, maker_fee_bps=10, taker_fee_bps=25)
    rt.start()
    rt.on_market(book_records([(1, 99, 1, 101, 1)]))
    b = s.place(1, Side.BUY, 100, 10)
    rt.on_report(accepted(b, 1, Side.BUY, 100, 10))
    rt.on_report(fill(b, 1, Side.BUY, 100, 4, 6, maker=True))  # 400 notional: fee ceil(0.4) = 1
    rt.on_report(fill(b, 1, Side.BUY, 98, 6, 0, maker=True))  # 588: fee 1; cost 988 for 10
    assert s.position(1) == 10 and not s.orders
    p = rt.pnl.rows(0)[0]
    assert (p["position"], p["cost"], p["realized"], p["fees"], p["fills"], p["volume"]) == (10, 988, 0, 2, 2, 10)
    assert p["unrealized"] == 12  # 10 x 100 (mid) - 988
    sell = s.place(1, Side.SELL, 105, 15)
    rt.on_report(accepted(sell, 1, Side.SELL, 105, 15))
    rt.on_report(fill(sell, 1, Side.SELL, 105, 15, 0, maker=False))  # taker: 1575 x 25 bps = 3.9375 -> 4
    # closes 10: realized 1050 - 988 = 62; short 5 at 105 (cost -525); mid 100: unrealized +25
    p = rt.pnl.rows(0)[0]
    assert (p["position"], p["cost"], p["realized"], p["fees"], p["unrealized"]) == (-5, -525, 62, 6, 25)
    assert s.pnl() == (62, 25, 6, 81)
    rt.on_market(book_records([(1, 109, 1, 112, 1)]))  # mid 110.5: 5 x (105 - 110.5) = -27.5 -> floor -28
    assert s.pnl() == (62, -28, 6, 28)
    assert [r.kind for r in s.reports] == [MsgType.EXEC_ACCEPTED, MsgType.EXEC_FILL, MsgType.EXEC_FILL,
                                           MsgType.EXEC_ACCEPTED, MsgType.EXEC_FILL]


def test_flat_means_zero_cost_and_zero_unrealized(rt):
    s = Idle()
    rt.add(s, [1])
    rt.start()
    rt.on_market(book_records([(1, 10, 1, 12, 1)]))
    for side, price in ((Side.BUY, 10), (Side.SELL, 13), (Side.BUY, 7), (Side.SELL, 7)):
        cid = s.place(1, side, price, 3)
        rt.on_report(accepted(cid, 1, side, price, 3))
        rt.on_report(fill(cid, 1, side, price, 3, 0))
    p = rt.pnl.rows(0)[0]
    assert (p["position"], p["cost"], p["unrealized"], p["realized"]) == (0, 0, 0, 9)
    assert s.pnl().total == 9


def test_order_lifecycle_and_open_qty(rt):
    s = Idle()
    rt.add(s, [1, 2])
    rt.start()
    a = s.place(1, Side.BUY, 100, 5)
    b = s.place(2, Side.SELL, 50, 7)
    assert a >> 32 == 1 and b == a + 1  # strategy 0 owns ids [1 << 32, 2 << 32)
    assert s.open_qty(1, Side.BUY) == 5 and s.open_qty(2, Side.SELL) == 7
    rt.on_report(accepted(a, 1, Side.BUY, 100, 5))
    rt.on_report(ExecReport(MsgType.EXEC_REJECTED, b, 0, 2, Side.SELL, 0, 30, 0, 0, 0))
    assert set(s.orders) == {a} and s.open_qty(2, Side.SELL) == 0
    assert s.modify(a, 101, 3) == a
    rt.on_report(ExecReport(MsgType.EXEC_MODIFIED, a, 0, 1, Side.BUY, 0, 0, 101, 0, 3))
    assert s.orders[a].price_ticks == 101 and s.open_qty(1, Side.BUY) == 3
    rt.on_report(fill(a, 1, Side.BUY, 101, 1, 2))
    assert s.open_qty(1, Side.BUY) == 2 and s.position(1) == 1
    assert s.cancel(a) == a and s.cancel(12345) == 0
    rt.on_report(ExecReport(MsgType.EXEC_REJECTED, a, 0, 1, 0, 0, 2, 0, 0, 0))  # e.g. a cancel refused
    assert a in s.orders  # an acked order is not ended by a reject
    rt.on_report(cancelled(a, 1, Side.BUY, 101, 2))
    assert not s.orders and s.open_qty(1, Side.BUY) == 0
    c = rt.slots[0].counts
    assert (c["orders"], c["acks"], c["rejects"], c["fills"], c["cancelled"], c["modified"]) == (2, 1, 2, 1, 1, 1)
    assert rt.ack.samples(0) == 2  # accepted a, rejected b: each order's first answer


def test_reports_are_routed_by_client_order_id_range(rt):
    s0, s1 = Idle(), Idle()
    rt.add(s0, [1])
    rt.add(s1, [1])
    rt.start()
    c0, c1 = s0.place(1, Side.BUY, 10, 1), s1.place(1, Side.SELL, 11, 1)
    assert c1 >> 32 == 2
    for cid, side in ((c1, Side.SELL), (c0, Side.BUY)):
        rt.on_report(accepted(cid, 1, side, 10, 1))
    rt.on_report(accepted(7, 1, Side.BUY, 10, 1))  # an id no strategy owns (the client's own use)
    assert [r.client_order_id for r in s0.reports] == [c0]
    assert [r.client_order_id for r in s1.reports] == [c1]
    assert rt.foreign_reports == 1


def test_fills_agree_with_core_positions_on_random_trades():
    rng = np.random.default_rng(5)
    n = 3_000
    ev = np.zeros(n, dtype=EVENT)
    ev["kind"] = EventKind.TRADE
    ev["instrument"] = rng.integers(1, 4, n)
    ev["side"] = rng.integers(1, 3, n)
    ev["account"] = rng.integers(1, 5, n)
    ev["maker_account"] = rng.integers(1, 5, n)
    ev["price_ticks"] = rng.integers(90, 110, n)
    ev["qty_lots"] = rng.integers(1, 20, n)
    ref = PositionBook(4, 3)
    ref.apply(ev)
    ours = PnlBook(3, 5)
    for e in ev.tolist():
        inst, side, acc, macc, price, qty = (e[10], e[13], e[4], e[5], e[6], e[7])
        buyer, seller = (acc, macc) if side == 1 else (macc, acc)
        ours.fill(buyer, inst, qty, price, 1)
        ours.fill(seller, inst, -qty, price, 1)
    assert np.array_equal(ours.pos[:5, :4, :3], ref.pos[:5, :4, :3])
    # totals are the sums over instruments
    assert np.array_equal(ours.totals[:5, 0], ours.pos[:5, :, 2].sum(axis=1))
