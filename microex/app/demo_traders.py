"""The simulated participants of `microex demo`: strategies trading on the venue through the SDK.

How it works
- One process (uvloop) runs one `StrategyRuntime` per account, each with its own
  order-entry `Client` and its own `MarketDataClient` feed (the venue's binary
  market-data port), driven by `LiveRunner`, all on one event loop.
- Market makers (demo accounts 1-3) quote a ladder of post-only orders on both
  sides of a fair value that follows a random walk from each instrument's
  reference price, re-quoting every `requote_ms`, skewed against their inventory.
- Noise takers (accounts 4-6) now and then cross the spread with small IOC orders.
- A momentum trader (account 7) is examples/strategy_momentum.py (MACD and RSI).
- Seeded: the same seed gives the same decisions for the same market.
Client-side limits keep every participant inside the venue's risk limits.
"""

from __future__ import annotations

import asyncio
import importlib.util
import math
import random
import signal
from dataclasses import dataclass, field
from pathlib import Path

from microex.core.records import Flag, Side, Tif
from microex.strategy import Limits, Strategy, StrategyRuntime


class FairValueMaker(Strategy):
    """A quote ladder around a random-walk fair value, skewed against inventory."""

    def __init__(self, ref_prices: dict[int, int], seed: int, levels: int = 3, spread_bps: float = 4.0,
                 step_bps: float = 2.0, vol_bps: float = 3.0, size: int = 5, skew_bps: float = 0.5) -> None:
        super().__init__()
        self.fair = {i: float(p) for i, p in ref_prices.items()}
        self.rnd = random.Random(seed)
        self.levels, self.spread, self.step, self.vol = levels, spread_bps * 1e-4, step_bps * 1e-4, vol_bps * 1e-4
        self.size, self.skew = size, skew_bps * 1e-4

    def on_timer(self, now_ns: int) -> None:
        for inst, fair in self.fair.items():
            fair *= math.exp(self.rnd.gauss(0.0, self.vol))
            self.fair[inst] = fair
            self.cancel_all(inst)
            center = fair * (1 - self.skew * self.position(inst))
            for k in range(self.levels):
                off = self.spread + k * self.step
                self.place(inst, Side.BUY, max(1, math.floor(center * (1 - off))), self.size, flags=Flag.POST_ONLY)
                self.place(inst, Side.SELL, math.ceil(center * (1 + off)), self.size, flags=Flag.POST_ONLY)


class NoiseTaker(Strategy):
    """Small IOC orders through the touch, at random."""

    def __init__(self, instruments: list[int], seed: int, prob: float = 0.3, max_size: int = 3) -> None:
        super().__init__()
        self.instruments, self.rnd, self.prob, self.max_size = instruments, random.Random(seed), prob, max_size
        self.books: dict[int, object] = {}

    def on_book(self, instrument: int, book) -> None:
        self.books[instrument] = book

    def on_timer(self, now_ns: int) -> None:
        if self.rnd.random() > self.prob:
            return
        inst = self.rnd.choice(self.instruments)
        book = self.books.get(inst)
        if book is None or not book.two_sided:
            return
        # lean against the position so a taker's inventory wanders but stays bounded
        buy = self.rnd.random() < 0.5 - 0.02 * self.position(inst)
        qty = self.rnd.randint(1, self.max_size)
        if buy:
            self.place(inst, Side.BUY, book.ask, qty, tif=Tif.IOC)
        else:
            self.place(inst, Side.SELL, book.bid, qty, tif=Tif.IOC)


def _momentum_class():
    path = Path(__file__).resolve().parents[2] / "examples" / "strategy_momentum.py"
    if not path.exists():
        return None
    spec = importlib.util.spec_from_file_location("microex_demo_momentum", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.Momentum


@dataclass
class TradersSettings:
    host: str
    bin_port: int
    md_port: int
    keys: list[bytes]  # api keys of demo accounts 1.. in order
    ref_prices: dict[int, int] = field(default_factory=dict)  # instrument id -> ticks
    seed: int = 1
    requote_ms: float = 500.0


def participants(s: TradersSettings) -> list[tuple[int, list[tuple[Strategy, Limits, float]]]]:
    """(key index, [(strategy, limits, timer_ms)]) per account."""
    insts = sorted(s.ref_prices)
    out: list = []
    for k in range(min(3, len(s.keys))):
        out.append((k, [(FairValueMaker(s.ref_prices, seed=s.seed, spread_bps=3 + 2 * k),  # one fair value walk
                         Limits(max_position=400, max_order_rate=400), s.requote_ms)]))
    for k in range(3, min(6, len(s.keys))):
        out.append((k, [(NoiseTaker(insts, seed=s.seed * 100 + k), Limits(max_position=200, max_order_rate=50),
                         150.0 + 50 * k)]))
    momentum = _momentum_class()
    if momentum is not None and len(s.keys) > 6:
        out.append((6, [(momentum(instruments=insts), Limits(max_position=50, max_order_rate=20), 250.0)]))
    return out


async def run_traders(s: TradersSettings, stop: asyncio.Event, ready=None) -> None:
    from microex.client import Client
    from microex.client.marketdata import MarketDataClient
    from microex.strategy.live import LiveRunner
    from microex.strategy.md_client_source import MarketDataClientSource

    runners, clients = [], []
    insts = sorted(s.ref_prices)
    for key_index, strategies in participants(s):
        client = await Client.connect(s.host, s.bin_port, s.keys[key_index], cancel_on_disconnect=True)
        feed = await MarketDataClient.connect(s.host, s.md_port)
        source = MarketDataClientSource(feed, insts)
        await source.subscribe_all()
        runtime = StrategyRuntime()
        for strategy, limits, timer_ms in strategies:
            runtime.add(strategy, insts, limits, timer_ms=timer_ms)
        runners.append(LiveRunner(runtime, client, source, timer_ms=20.0))
        clients.append((client, feed))
    if ready is not None:
        ready.set()
    try:
        await asyncio.gather(*(r.run(stop=stop) for r in runners))
    finally:
        for client, feed in clients:
            await client.close()
            await feed.close()


def traders_main(settings: TradersSettings, ready=None) -> None:
    """Process entry point: trade until SIGTERM/SIGINT."""
    import uvloop

    async def main():
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await run_traders(settings, stop, ready)

    uvloop.run(main())
