"""Simulation: strategies against the compiled matching engine, in simulated time.

How it works. One `MatchingEngine` in risk mode (instruments SIM1.. with base
assets B1.. and one quote asset USD, tick 1, lot 1, the configured fees; no
price band) holds the market participant (account 1) and every strategy
(strategy k is account 2 + k, with `deposit_base` lots of each base asset and
`deposit_quote` USD, so selling short of the start inventory works). Time is
simulated: `now` advances by `step_ms` per step and is the clock of the runtime
(timers, rate limits, ExecReport and BookView timestamps). Each step:

1. the market source's commands for [now, now + step) run through the engine;
2. due timers run (runtime.on_timer);
3. the strategies' orders (EngineLink.pending) run through the engine, and
   again for orders placed in reaction, up to `max_rounds` rounds a step;
4. every sample interval, each strategy's PnL and position are recorded.

Every engine call's events go, in this order, to the runtime as execution
reports (sim_link.reports_from_events) and as MARKET records from
`BookFromEvents` (conflated per call). Deterministic: the engine's id-hash
multiplier is fixed, the market draws from one seeded Generator and nothing
reads the wall clock except the latency histograms (which reports keep apart
from the deterministic part). At the end every open order is cancelled and the
venue's balances are reconciled with the runtime's positions (report.py).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from microex.core.config import EngineConfig
from microex.core.engine import MatchingEngine
from microex.core.records import COMMAND, EventKind
from microex.core.venue import InstrumentSpec, VenueConfig
from microex.gateway.inprocess import deposit_commands
from microex.strategy.base import Strategy
from microex.strategy.book_events import BookFromEvents
from microex.strategy.limits import Limits
from microex.strategy.market_sim import MARKET_ACCOUNT, MarketParams, RecordedMarket, SyntheticMarket
from microex.strategy.report import SimReport, build_report
from microex.strategy.runtime import StrategyRuntime
from microex.strategy.sim_link import EngineLink, reports_from_events

FIRST_STRATEGY_ACCOUNT = 2
_ID_HASH = 0x5851F42D4C957F2D  # fixed id-map layout: the engine digest is part of the report
_TRADE = int(EventKind.TRADE)


@dataclass(frozen=True)
class SimConfig:
    seed: int = 1
    duration_s: float = 60.0
    step_ms: float = 10.0
    market: MarketParams = MarketParams()
    maker_fee_bps: int = 0
    taker_fee_bps: int = 0
    deposit_base: int = 1_000_000  # lots of each base asset per strategy
    deposit_quote: int = 10**13  # USD units per strategy
    samples: int = 1_000  # PnL / position samples over the run
    max_rounds: int = 16  # strategy order rounds per step
    book_levels: int = 1024  # replica depth per book side

    def to_dict(self) -> dict:
        return asdict(self)


class Simulation:
    def __init__(self, config: SimConfig = SimConfig(), market: SyntheticMarket | RecordedMarket | None = None,
                 record: str | Path | None = None) -> None:
        self.config = config
        self.market = market or SyntheticMarket(config.market, config.seed)
        self.instruments = list(self.market.instruments) or [1]
        self.n_instruments = max(max(self.instruments), config.market.instruments)
        self.now = 0
        self.runtime = StrategyRuntime(max_instruments=self.n_instruments, clock=lambda: self.now)
        self.record_path = record
        self._recorded: list[np.ndarray] = []
        self.engine: MatchingEngine | None = None
        self.commands = self.events = self.trades = 0

    def add(self, strategy: Strategy, instruments=(1,), limits: Limits = Limits(), timer_ms: float | None = None,
            name: str | None = None) -> int:
        return self.runtime.add(strategy, instruments, limits, timer_ms, name)

    # -- set-up ------------------------------------------------------------------------------------

    def _venue(self) -> VenueConfig:
        c = self.config
        insts = tuple(InstrumentSpec(f"SIM{i}", f"B{i}", "USD", maker_fee_bps=c.maker_fee_bps,
                                     taker_fee_bps=c.taker_fee_bps) for i in range(1, self.n_instruments + 1))
        n_accounts = FIRST_STRATEGY_ACCOUNT + len(self.runtime.slots)
        return VenueConfig(instruments=insts, max_accounts=n_accounts)

    def _build(self) -> None:
        c = self.config
        venue = self._venue()
        self.venue = venue
        self.engine = MatchingEngine(EngineConfig(max_instruments=self.n_instruments, id_hash_multiplier=_ID_HASH),
                                     venue)
        self.engine.warm_up()
        assets = venue.asset_ids()
        self.usd = assets["USD"]
        self.base_asset = {i: assets[f"B{i}"] for i in range(1, self.n_instruments + 1)}
        deposits = [(MARKET_ACCOUNT, a, 1 << 58) for a in assets.values()]
        for slot in self.runtime.slots:
            acc = FIRST_STRATEGY_ACCOUNT + slot.index
            deposits += [(acc, self.base_asset[i], c.deposit_base) for i in self.base_asset]
            deposits.append((acc, self.usd, c.deposit_quote))
        self.engine.process(deposit_commands(deposits, ts_ns=0))
        for i in range(1, self.n_instruments + 1):
            self.runtime.pnl.set_instrument(i, 1, c.maker_fee_bps, c.taker_fee_bps)
        self.books = BookFromEvents(self.n_instruments, c.book_levels)
        self.link = EngineLink(lambda: self.now, FIRST_STRATEGY_ACCOUNT)
        self.runtime.set_depth(self.books.depth)
        self.runtime.attach(self.link)

    # -- the run -----------------------------------------------------------------------------------

    def _process(self, cmds: np.ndarray) -> None:
        events = self.engine.process(cmds)
        self.commands += len(cmds)
        self.events += len(events)
        self.trades += int(np.count_nonzero(events["kind"] == _TRADE))
        reports = reports_from_events(events)
        if reports:
            self.runtime.on_reports(reports)
        md = self.books.apply(events)
        if len(md):
            self.runtime.on_market(md)

    def _flush(self) -> None:
        for _ in range(self.config.max_rounds):
            if not self.link.pending:
                return
            self._process(self.link.take())

    def _market(self, now: int, step_ns: int) -> None:
        cmds = self.market.step(now, step_ns)
        if len(cmds):
            if self.record_path is not None:
                self._recorded.append(cmds.copy())
            cmds = cmds.copy()
            cmds["seq"] = np.arange(self.link.seq + 1, self.link.seq + len(cmds) + 1)
            self.link.seq += len(cmds)
            self._process(cmds)

    def run(self) -> SimReport:
        c = self.config
        if self.engine is not None:
            raise RuntimeError("a Simulation runs once")
        if not self.runtime.slots:
            raise ValueError("add at least one strategy before run()")
        self._build()
        step_ns = int(c.step_ms * 1e6)
        steps = max(1, int(round(c.duration_s * 1e9 / step_ns)))
        every = max(1, steps // max(1, c.samples))
        n_s = len(self.runtime.slots)
        times, pnl, pos = [], [], []
        self.runtime.start()
        self._flush()
        for k in range(steps):
            self.now = k * step_ns
            self._market(self.now, step_ns)
            self.runtime.on_timer(self.now)
            self._flush()
            if k % every == 0 or k == steps - 1:
                times.append(self.now)
                totals = self.runtime.pnl.totals[:n_s]
                pnl.append(totals[:, 0] - totals[:, 1] + totals[:, 2])
                pos.append(self.runtime.pnl.pos[:n_s, :, 0].sum(axis=1))
        self.now = steps * step_ns
        self.runtime.cancel_everything()
        self._flush()
        if self.record_path is not None:
            rec = np.concatenate(self._recorded) if self._recorded else np.zeros(0, dtype=COMMAND)
            np.save(self.record_path, rec)
        return build_report(self, np.array(times, np.int64), np.array(pnl, np.int64).reshape(-1, n_s),
                            np.array(pos, np.int64).reshape(-1, n_s))
