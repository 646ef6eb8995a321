"""A momentum strategy on MACD(12, 26, 9) and RSI(14) of the mid, sampled in bars.

Every `bar_ms` it feeds each instrument's mid into streaming indicators from
microex.indicators (one MacdStream and one RsiStream hold all instruments).
Once both are warm: MACD histogram above +threshold with RSI below 70 means a
long target, below -threshold with RSI above 30 a short one, otherwise flat.
It moves to its target with IOC limit orders priced `reach` ticks through the
touch (it takes liquidity, so it pays the spread).

    python examples/strategy_momentum.py --seed 1 [--duration 60] [--out sim-out]
    microex sim momentum --seed 1
"""

from __future__ import annotations

import math
import sys

from microex.core.records import Side, Tif
from microex.indicators import MacdStream, RsiStream
from microex.strategy import Limits, Strategy


class Momentum(Strategy):
    name = "momentum"

    def __init__(self, instruments=(1,), target: int = 10, threshold: float = 0.05, reach: int = 2,
                 max_instrument: int = 16) -> None:
        super().__init__()
        self.instruments = tuple(instruments)
        self.target, self.threshold, self.reach = target, threshold, reach
        self.macd = MacdStream(max_instrument + 1, 12, 26, 9)
        self.rsi = RsiStream(max_instrument + 1, 14)
        self.mids: dict[int, float] = {}
        self.books: dict[int, object] = {}
        self.signals: dict[int, tuple[float, float]] = {}

    def on_book(self, instrument: int, book) -> None:
        if book.two_sided:
            self.mids[instrument] = book.mid
            self.books[instrument] = book

    def on_timer(self, now_ns: int) -> None:
        for inst in self.instruments:
            mid = self.mids.get(inst)
            if mid is None:
                continue
            _, _, hist = self.macd.update_one(inst, mid)
            rsi = self.rsi.update_one(inst, mid)
            if math.isnan(hist) or math.isnan(rsi):
                continue  # warming up
            self.signals[inst] = (hist, rsi)
            if hist > self.threshold and rsi < 70:
                want = self.target
            elif hist < -self.threshold and rsi > 30:
                want = -self.target
            else:
                want = 0
            self._trade_to(inst, want)

    def _trade_to(self, inst: int, want: int) -> None:
        if self.open_qty(inst, Side.BUY) or self.open_qty(inst, Side.SELL):
            return  # an IOC is still in flight
        delta = want - self.position(inst)
        book = self.books[inst]
        if delta > 0:
            self.place(inst, Side.BUY, book.ask + self.reach, delta, tif=Tif.IOC)
        elif delta < 0:
            self.place(inst, Side.SELL, max(1, book.bid - self.reach), -delta, tif=Tif.IOC)


def setup(sim) -> None:
    """What `microex sim momentum` runs."""
    sim.add(Momentum(), instruments=[1], timer_ms=200,
            limits=Limits(max_position=25, max_order_rate=50, max_loss=100_000))


if __name__ == "__main__":
    from microex.app.sim import run_example

    sys.exit(run_example(setup, "momentum", __doc__))
