"""microex.strategy: the strategy runtime, simulation and live trading (issue #9).

    class MyStrategy(Strategy):
        def on_book(self, instrument, book):
            if book.two_sided and not self.orders:
                self.place(instrument, Side.BUY, book.bid, 1)

    sim = Simulation(SimConfig(seed=1, duration_s=30))
    sim.add(MyStrategy(), instruments=[1], limits=Limits(max_position=50, max_loss=100_000))
    report = sim.run(); print(report.text()); report.plot("out/sim.png")

Live, the same strategy runs on an event loop against a venue through the SDK
`Client` (live.py: `LiveRunner`). See docs/strategies.md.
"""

from microex.strategy.base import Strategy
from microex.strategy.book_events import BookFromEvents
from microex.strategy.limits import Limits, StopReason
from microex.strategy.market import MARKET, BookView, MdKind, Trade, book_records, trade_records
from microex.strategy.market_sim import MarketParams, RecordedMarket, SyntheticMarket
from microex.strategy.pnl import Pnl
from microex.strategy.report import SimReport
from microex.strategy.runtime import OrderLink, StrategyRuntime
from microex.strategy.simulation import SimConfig, Simulation

__all__ = [
    "Strategy", "StrategyRuntime", "OrderLink", "Limits", "StopReason", "Pnl",
    "MARKET", "MdKind", "BookView", "Trade", "book_records", "trade_records", "BookFromEvents",
    "Simulation", "SimConfig", "SimReport", "MarketParams", "SyntheticMarket", "RecordedMarket",
]
