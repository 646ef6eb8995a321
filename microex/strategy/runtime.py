"""StrategyRuntime: many strategies in one process, fed market data, trading through one link.

How it works.
- Registration (`add`) declares a strategy's instruments, limits and timer; it
  gets an index, a client-order-id range (orders.py) and a row in the dispatch
  table, the PnL book and the latency histograms.
- `on_market(md)` takes a chunk of MARKET records (market.py): for each record,
  in order, it updates the instrument's BookView (or builds a Trade) and walks
  that instrument's callback list (dispatch.py); then one numba call
  (pnl.mark_batch) counts the routed events, re-marks the positions of the
  touched instruments and returns the strategies past their max loss, which
  are stopped.
- Orders go out through the attached link (an `OrderLink`: the simulation's
  engine link or the SDK client) after the client-side limits (limits.py).
  `on_report(report)` routes each execution report by its client order id to
  the owning strategy: order state, positions and PnL first, then `on_order`.
- Latency, per strategy (latency.py): tick-to-trade is perf_counter_ns from the
  moment `on_market` received the chunk to the moment the link returned from
  sending an order message (new, modify or cancel) from an on_book/on_trade
  callback of that chunk (one sample per message); order -> ack is from a new
  order's send to its first report (accepted or rejected).
- A callback that raises stops its strategy (STRATEGY_ERROR), a limit breach
  stops it with its reason; stopping cancels its open orders, removes it from
  the callback lists and is reported (`stopped`, `summary()`); the others go on.

Invariants: one thread; callbacks never run re-entrantly from a link (links
queue or write, they never deliver reports synchronously); a stopped strategy
gets no callbacks but its in-flight orders still update its positions.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Protocol

import numpy as np

from microex.protocol.binary import MsgType
from microex.strategy.base import Strategy
from microex.strategy.dispatch import DispatchTable
from microex.strategy.latency import LatencyRecorder
from microex.strategy.limits import Limits, StopReason, rate_admit, worst_position
from microex.strategy.market import BookView, MdKind, Trade
from microex.strategy.orders import OpenOrder, StrategySlot, owner_of
from microex.strategy.pnl import PnlBook, mark_batch

log = logging.getLogger(__name__)
_FILL = MsgType.EXEC_FILL
_BOOK = int(MdKind.BOOK)
_TRADE = int(MdKind.TRADE)


class OrderLink(Protocol):
    """Where orders go (simulation: the engine link; live: the SDK client). Reports come back
    through runtime.on_report, never from inside these calls."""

    def new_order(self, cid: int, instrument: int, side: int, price_ticks: int, qty_lots: int, ord_type: int,
                  tif: int, flags: int) -> None: ...

    def cancel(self, cid: int) -> None: ...

    def modify(self, cid: int, price_ticks: int, qty_lots: int) -> None: ...


class StrategyRuntime:
    def __init__(self, max_instruments: int = 256, clock: Callable[[], int] = time.monotonic_ns,
                 keep_raw_latency: bool = False) -> None:
        self.max_instruments = max_instruments
        self.clock = clock  # ns; simulated time in a simulation (rate limits, timers, now_ns)
        self.table = DispatchTable(max_instruments)
        self.pnl = PnlBook(max_instruments)
        self.slots: list[StrategySlot] = []
        self.books = [BookView(i) for i in range(max_instruments + 1)]
        self.ttt = LatencyRecorder(keep_raw=keep_raw_latency)
        self.ack = LatencyRecorder(keep_raw=keep_raw_latency)
        self.link: OrderLink | None = None
        self.started = False
        self.accepting = True  # False after cancel_everything(): no new orders or modifies, cancels still go
        self.market_events = 0  # MARKET records received
        self.foreign_reports = 0  # reports for ids no strategy owns
        self.stopped: list[StrategySlot] = []  # in stop order
        self.stop_listeners: list[Callable[[StrategySlot], None]] = []
        self._timed: list[StrategySlot] = []
        self._rx_ns = 0
        self._in_market = False
        self._breached = np.zeros(256, np.int64)
        self.delivered = np.zeros(16, np.int64)  # MARKET records routed to each strategy while running

    # -- set-up ------------------------------------------------------------------------------------

    def attach(self, link: OrderLink) -> None:
        self.link = link

    def set_depth(self, depth: Callable[[int, int, int], list]) -> None:
        """Give every BookView a full-depth reader (e.g. BookFromEvents.depth)."""
        for b in self.books:
            b._depth = depth

    def add(self, strategy: Strategy, instruments: Iterable[int], limits: Limits = Limits(),
            timer_ms: float | None = None, name: str | None = None) -> int:
        """Register a strategy, subscribed to `instruments`; returns its index."""
        if strategy._slot is not None:
            raise ValueError("this strategy object is already registered")
        cls = type(strategy)
        on_book = strategy.on_book if cls.on_book is not Strategy.on_book else None
        on_trade = strategy.on_trade if cls.on_trade is not Strategy.on_trade else None
        insts = tuple(dict.fromkeys(int(i) for i in instruments))
        index = self.table.add(insts, on_book, on_trade)
        label = name or strategy.name or f"{cls.__name__}-{index}"
        slot = StrategySlot(index, strategy, insts, limits, timer_ms, label)
        self.slots.append(slot)
        strategy._rt, strategy._slot = self, slot
        self.pnl.ensure(index + 1)
        self.pnl.max_loss[index] = limits.max_loss
        self.ttt.ensure(index + 1)
        self.ack.ensure(index + 1)
        if index >= len(self.delivered):
            self.delivered = np.concatenate([self.delivered, np.zeros(len(self.delivered), np.int64)])
        if slot.timer_ns:
            self._timed.append(slot)
        if self.started:
            self._start_slot(slot)
        return index

    def start(self) -> None:
        if self.link is None:
            raise RuntimeError("attach an OrderLink before start()")
        self.table.build()
        self.started = True
        for slot in list(self.slots):
            self._start_slot(slot)

    def _start_slot(self, slot: StrategySlot) -> None:
        slot.next_timer_ns = self.clock() + slot.timer_ns
        self._call(slot, slot.strategy.on_start)

    # -- events in ---------------------------------------------------------------------------------

    def on_market(self, md: np.ndarray) -> None:
        """A chunk of MARKET records: fan out to the subscribers, then marks and loss checks."""
        self._rx_ns = time.perf_counter_ns()
        table = self.table
        if table.dirty:
            table.build()
        books, book_cbs, trade_cbs, top = self.books, table.book_cbs, table.trade_cbs, self.max_instruments
        self._in_market = True
        try:
            for ts, seq, bid, bq, ask, aq, px, q, inst, kind, side in md.tolist():
                if not 0 < inst <= top:
                    continue
                if kind == _BOOK:
                    b = books[inst]
                    b.bid, b.bid_qty, b.ask, b.ask_qty, b.ts_ns, b.seq = bid, bq, ask, aq, ts, seq
                    for cb in book_cbs[inst]:
                        try:
                            cb(inst, b)
                        except Exception as e:  # the strategy is stopped; the others go on
                            self._failed(cb.__self__._slot, e)
                elif kind == _TRADE:
                    cbs = trade_cbs[inst]
                    if cbs:
                        t = Trade(inst, side, px, q, ts, seq)
                        for cb in cbs:
                            try:
                                cb(t)
                            except Exception as e:
                                self._failed(cb.__self__._slot, e)
        finally:
            self._in_market = False
        self.market_events += len(md)
        p = self.pnl
        if len(self._breached) < len(self.slots):
            self._breached = np.zeros(2 * len(self.slots), np.int64)
        n = mark_batch(md, table.offsets, table.subs, table.active, p.pos, p.totals, p.tick, p.mid2, p.max_loss,
                       p.stamp, self.delivered, self._breached)
        for k in range(n):
            self._loss_breach(self.slots[int(self._breached[k])])

    def on_report(self, r) -> None:
        """One execution report (an SDK ExecReport); routed by client order id to its strategy."""
        s = owner_of(r.client_order_id)
        if not 0 <= s < len(self.slots):
            self.foreign_reports += 1
            return
        slot = self.slots[s]
        order, first = slot.apply(r)
        if first:
            self.ack.record(s, time.perf_counter_ns() - order.sent_ns)
        if r.kind == _FILL:
            inst = r.instrument
            signed = r.qty_lots if r.side == 1 else -r.qty_lots
            total = self.pnl.fill(s, inst, signed, r.price_ticks, r.liquidity)
            slot.position[inst] = slot.position.get(inst, 0) + signed
            if slot.active:
                if slot.limits.max_loss and total < -slot.limits.max_loss:
                    self._loss_breach(slot)
                elif slot.max_position and abs(slot.position[inst]) > slot.max_position:
                    self.stop(slot, StopReason.MAX_POSITION, f"position {slot.position[inst]} in {inst}")
        if slot.active:
            self._call(slot, slot.strategy.on_order, r)

    def on_reports(self, reports: Iterable) -> None:
        for r in reports:
            self.on_report(r)

    def on_timer(self, now_ns: int | None = None) -> None:
        """Run the timers that are due (call it at least as often as the shortest timer)."""
        now = self.clock() if now_ns is None else now_ns
        for slot in self._timed:
            if slot.active and now >= slot.next_timer_ns:
                slot.next_timer_ns += slot.timer_ns
                if slot.next_timer_ns <= now:  # fell behind: no burst of catch-up calls
                    slot.next_timer_ns = now + slot.timer_ns
                self._call(slot, slot.strategy.on_timer, now)

    # -- orders out (called through Strategy.place/cancel/modify) -----------------------------------

    def place(self, slot: StrategySlot, inst: int, side: int, price: int, qty: int, ord_type: int, tif: int,
              flags: int) -> int:
        if not slot.active or not self.accepting:
            return 0
        if inst not in slot.subscribed:
            raise ValueError(f"{slot.name} may only trade its instruments {slot.instruments}, not {inst}")
        if side != 1 and side != 2:
            raise ValueError(f"side must be 1 (buy) or 2 (sell), not {side}")
        if slot.interval_ns and not self._admit(slot):
            return 0
        if slot.max_position:
            worst = worst_position(slot.position.get(inst, 0), (slot.open_buy if side == 1 else slot.open_sell).get(
                inst, 0), qty, 1 if side == 1 else -1)
            if worst > slot.max_position:
                self.stop(slot, StopReason.MAX_POSITION, f"order of {qty} could take the position to "
                                                         f"{worst} > {slot.max_position} in {inst}")
                return 0
        cid = slot.take_cid()
        order = OpenOrder(cid, inst, side, price, qty, 0)
        slot.add_open(order)
        try:
            self.link.new_order(cid, inst, side, price, qty, ord_type, tif, flags)
        except ConnectionError as e:
            slot.end(order)
            slot.counts["send_errors"] += 1
            slot.log(self.clock(), f"order not sent: {e}")
            return 0
        t = time.perf_counter_ns()
        order.sent_ns = t
        if self._in_market:
            self.ttt.record(slot.index, t - self._rx_ns)
        slot.counts["orders"] += 1
        return cid

    def cancel(self, slot: StrategySlot, cid: int) -> int:
        if not slot.active or cid not in slot.orders:
            return 0
        if slot.interval_ns and not self._admit(slot):
            return 0
        try:
            self.link.cancel(cid)
        except ConnectionError:
            slot.counts["send_errors"] += 1
            return 0
        if self._in_market:
            self.ttt.record(slot.index, time.perf_counter_ns() - self._rx_ns)
        slot.counts["cancels"] += 1
        return cid

    def modify(self, slot: StrategySlot, cid: int, price: int, qty: int) -> int:
        order = slot.orders.get(cid)
        if not slot.active or order is None or not self.accepting:
            return 0
        if slot.interval_ns and not self._admit(slot):
            return 0
        if slot.max_position:
            inst, buy = order.instrument, order.side == 1
            worst = worst_position(slot.position.get(inst, 0), (slot.open_buy if buy else slot.open_sell).get(inst, 0),
                                   qty - order.leaves_lots, 1 if buy else -1)
            if worst > slot.max_position:
                self.stop(slot, StopReason.MAX_POSITION, f"modify to {qty} could take the position to "
                                                         f"{worst} > {slot.max_position} in {inst}")
                return 0
        try:
            self.link.modify(cid, price, qty)
        except ConnectionError:
            slot.counts["send_errors"] += 1
            return 0
        if self._in_market:
            self.ttt.record(slot.index, time.perf_counter_ns() - self._rx_ns)
        slot.counts["modifies"] += 1
        return cid

    def _admit(self, slot: StrategySlot) -> bool:
        """GCRA (limits.py): within the order rate, or stop the strategy."""
        tat = rate_admit(slot.tat, self.clock(), slot.interval_ns, slot.tolerance_ns)
        if tat < 0:
            self.stop(slot, StopReason.MAX_ORDER_RATE, f"more than {slot.limits.max_order_rate:g} messages/s")
            return False
        slot.tat = tat
        return True

    # -- stopping ----------------------------------------------------------------------------------

    def stop(self, which: StrategySlot | int, reason: StopReason = StopReason.USER, error: str = "") -> None:
        """Stop a strategy: no more callbacks, its open orders cancelled, reported with the reason."""
        slot = self.slots[which] if isinstance(which, int) else which
        if not slot.active:
            return
        slot.active = False
        slot.reason = StopReason(reason)
        slot.error = error
        slot.stopped_ns = self.clock()
        self.table.deactivate(slot.index)
        self.cancel_open(slot)
        self.stopped.append(slot)
        log.warning("strategy %s stopped: %s%s", slot.name, slot.reason.name, f" ({error})" if error else "")
        for cb in self.stop_listeners:
            cb(slot)

    def cancel_open(self, slot: StrategySlot) -> int:
        """Cancel every open order of a strategy (not rate-limited: the runtime's own clean-up)."""
        sent = 0
        for cid in list(slot.orders):
            try:
                self.link.cancel(cid)
                sent += 1
            except ConnectionError:
                break
        return sent

    def cancel_everything(self) -> int:
        """End of a run: refuse new orders from now on (halt) and cancel every strategy's open orders;
        running strategies stay running (their stop reason stays NONE)."""
        self.accepting = False
        return sum(self.cancel_open(s) for s in self.slots)

    def _loss_breach(self, slot: StrategySlot) -> None:
        pnl = self.pnl.pnl(slot.index)
        self.stop(slot, StopReason.MAX_LOSS, f"PnL {pnl.total} < -{slot.limits.max_loss}")

    def _failed(self, slot: StrategySlot, e: BaseException) -> None:
        self.stop(slot, StopReason.STRATEGY_ERROR, f"{type(e).__name__}: {e}")

    def _call(self, slot: StrategySlot, fn, *args) -> None:
        try:
            fn(*args)
        except Exception as e:
            self._failed(slot, e)

    # -- reporting ---------------------------------------------------------------------------------

    def summary(self) -> list[dict]:
        """Per strategy: counters, stop reason, PnL, positions, latency percentiles."""
        delivered = self.delivered
        out = []
        for slot in self.slots:
            row = slot.summary()
            row["market_events"] = int(delivered[slot.index])
            row["pnl"] = self.pnl.pnl(slot.index)._asdict()
            row["positions"] = self.pnl.rows(slot.index)
            row["tick_to_trade"] = {"samples": self.ttt.samples(slot.index), **self.ttt.percentiles(slot.index)}
            row["order_to_ack"] = {"samples": self.ack.samples(slot.index), **self.ack.percentiles(slot.index)}
            out.append(row)
        return out
