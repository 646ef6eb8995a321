"""The Strategy base class: callbacks in, orders out through the runtime.

How it works. A strategy overrides the callbacks it needs; the runtime calls
them on one thread (one event loop), never concurrently:

- `on_start()` once, when the runtime starts (or at registration if it runs);
- `on_book(instrument, book)` after a book update of a subscribed instrument
  (`book` is a `BookView` updated in place: the same object every call);
- `on_trade(trade)` for each public trade of a subscribed instrument;
- `on_order(report)` for each execution report of its own orders (an SDK
  `ExecReport`, in simulation too), after positions were updated by it;
- `on_timer(now_ns)` every `timer_ms` given at registration.

Actions: `place` (returns the client order id, 0 when nothing was sent: the
strategy is stopped, or a limit refused the order and stopped it), `cancel`,
`modify` (new price and new leaves), `cancel_all`. All in ticks and lots. A
strategy may trade only the instruments it subscribed to (its limits and
marks need their books). Views: `position(inst)`, `pnl()`, `orders` (open
orders by client id), `now_ns` (venue-independent clock: simulated time in a
simulation), `running`, `stop_reason`.

A callback that raises stops this strategy (StopReason.STRATEGY_ERROR: its
orders are cancelled, the error is in the report); the others go on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from microex.core.records import OrdType, Tif

if TYPE_CHECKING:
    from microex.client.protocol import ExecReport
    from microex.strategy.market import BookView, Trade
    from microex.strategy.orders import StrategySlot
    from microex.strategy.pnl import Pnl
    from microex.strategy.runtime import StrategyRuntime


class Strategy:
    """Subclass and override the callbacks; `name` defaults to the class name."""

    name: str = ""

    def __init__(self) -> None:
        self._rt: StrategyRuntime | None = None
        self._slot: StrategySlot | None = None

    # -- callbacks (defaults do nothing; the runtime never calls a book/trade one that is not overridden)

    def on_start(self) -> None:
        pass

    def on_book(self, instrument: int, book: BookView) -> None:
        pass

    def on_trade(self, trade: Trade) -> None:
        pass

    def on_order(self, report: ExecReport) -> None:
        pass

    def on_timer(self, now_ns: int) -> None:
        pass

    # -- actions

    def place(self, instrument: int, side: int, price_ticks: int, qty_lots: int, ord_type: int = OrdType.LIMIT,
              tif: int = Tif.GTC, flags: int = 0) -> int:
        """Send a new order; its client order id, or 0 if nothing was sent."""
        return self._rt.place(self._slot, instrument, side, price_ticks, qty_lots, ord_type, tif, flags)

    def cancel(self, client_order_id: int) -> int:
        """Cancel one of its open orders; the id, or 0 if it is not open (or the strategy is stopped)."""
        return self._rt.cancel(self._slot, client_order_id)

    def modify(self, client_order_id: int, price_ticks: int, qty_lots: int) -> int:
        """New price and leaves for an open order; the id, or 0 if nothing was sent."""
        return self._rt.modify(self._slot, client_order_id, price_ticks, qty_lots)

    def cancel_all(self, instrument: int | None = None) -> int:
        """Cancel its open orders (of one instrument); how many cancels were sent."""
        cids = [cid for cid, o in self._slot.orders.items() if instrument is None or o.instrument == instrument]
        return sum(1 for cid in cids if self.cancel(cid))

    # -- views

    @property
    def orders(self):
        """Open orders (sent and not yet finished) by client order id: OpenOrder records."""
        return self._slot.orders

    def position(self, instrument: int) -> int:
        return self._slot.position.get(instrument, 0)

    def open_qty(self, instrument: int, side: int) -> int:
        """Leaves of its open orders on one side of an instrument (lots)."""
        return (self._slot.open_buy if side == 1 else self._slot.open_sell).get(instrument, 0)

    def pnl(self) -> Pnl:
        return self._rt.pnl.pnl(self._slot.index)

    @property
    def now_ns(self) -> int:
        return self._rt.clock()

    @property
    def running(self) -> bool:
        return self._slot is not None and self._slot.active

    @property
    def stop_reason(self):
        return self._slot.reason

    def log(self, message: str) -> None:
        """A line in the strategy's report (kept: the last 100)."""
        self._slot.log(self._rt.clock(), message)
