"""A market maker: one bid and one ask around the mid, skewed against its inventory.

Quotes `size` lots at mid -/+ `half_spread` ticks, shifted by `skew` ticks per
lot held (long: both quotes move down, so it sells more readily and buys less),
post-only so it never crosses. A quote is moved (modify) only when its price
should change, or re-placed when it traded away. Sizes shrink so that position
plus open orders stays within `max_inventory` lots: well inside the runtime's
max_position limit, which would stop it.

    python examples/strategy_market_maker.py --seed 1 [--duration 60] [--out sim-out]
    microex sim market_maker --seed 1
"""

from __future__ import annotations

import math
import sys

from microex.core.records import Flag, Side
from microex.strategy import Limits, Strategy


class MarketMaker(Strategy):
    name = "market_maker"

    def __init__(self, half_spread: float = 1.5, size: int = 5, skew: float = 0.2, max_inventory: int = 40) -> None:
        super().__init__()
        self.half_spread, self.size, self.skew, self.max_inventory = half_spread, size, skew, max_inventory
        self.quotes: dict[int, dict[int, int]] = {}  # instrument -> side -> client order id

    def on_book(self, instrument: int, book) -> None:
        if not book.two_sided:
            return
        pos = self.position(instrument)
        fair = book.mid - self.skew * pos
        targets = {Side.BUY: math.floor(fair - self.half_spread), Side.SELL: math.ceil(fair + self.half_spread)}
        quotes = self.quotes.setdefault(instrument, {})
        for side, price in targets.items():
            room = self.max_inventory - (pos if side == Side.BUY else -pos)
            cid = quotes.get(side)
            order = self.orders.get(cid) if cid else None
            others = self.open_qty(instrument, side) - (order.leaves_lots if order else 0)
            qty = min(self.size, room - others)
            if order is None:
                if qty > 0:
                    quotes[side] = self.place(instrument, side, price, qty, flags=Flag.POST_ONLY)
            elif qty <= 0:
                self.cancel(cid)
            elif order.acked and (order.price_ticks != price or order.leaves_lots > qty):
                self.modify(cid, price, min(qty, order.leaves_lots) if order.price_ticks == price else qty)


def setup(sim) -> None:
    """What `microex sim market_maker` runs."""
    sim.add(MarketMaker(), instruments=[1], limits=Limits(max_position=60, max_order_rate=500, max_loss=200_000))


if __name__ == "__main__":
    from microex.app.sim import run_example

    sys.exit(run_example(setup, "market_maker", __doc__))
