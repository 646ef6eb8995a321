"""Market flow for simulations: a seeded synthetic market, or recorded commands replayed.

How it works. A market source hands the simulation, for each time step
[now, now + step), the COMMAND records the "market" participant (account 1,
order ids below 1 << 32) sends to the same engine the strategies trade on.

`SyntheticMarket` (deterministic for a seed: one numpy Generator, used in a
fixed order): per instrument, a fair value in ticks follows a Gaussian random
walk (`volatility` ticks per sqrt(second)); with probability `refresh_prob`
per step the participant cancels its resting ladder and posts a new one,
`levels` prices a side from fair -/+ `half_spread` ticks outwards, random
sizes; takers arrive as a Poisson process (`taker_rate` per second), each an
IOC limit order `taker_reach` ticks through the fair value, so it trades with
whatever rests there: the ladder and the strategies' quotes alike. Cancels of
ladder orders that already traded away are answered unknown_order by the
engine: harmless, and cheaper than tracking fills here.

`RecordedMarket` replays a COMMAND array (a .npy file, e.g. one written by
`Simulation(record=...)`, or a conformance CSV) by its ts_ns; records without
timestamps are spread evenly at `rate` per second. Replaying the recording of
a synthetic run reproduces that run exactly (the tests check it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from microex.core.records import COMMAND, Action, OrdType, Side, Tif

MARKET_ACCOUNT = 1
MAX_MARKET_ID = (1 << 32) - 1
_NEW, _CANCEL = int(Action.NEW), int(Action.CANCEL)
_LIMIT, _GTC, _IOC = int(OrdType.LIMIT), int(Tif.GTC), int(Tif.IOC)


@dataclass(frozen=True)
class MarketParams:
    instruments: int = 1
    start_price: int = 10_000  # ticks
    volatility: float = 3.0  # ticks per sqrt(second)
    levels: int = 10  # ladder prices per side
    half_spread: int = 2  # ticks from the fair value to the ladder's best prices
    max_qty: int = 20  # lots per ladder order (uniform 1..max_qty)
    refresh_prob: float = 0.25  # per step and instrument
    taker_rate: float = 20.0  # IOC orders per second and instrument
    taker_qty: int = 5  # lots per taker order (uniform 1..taker_qty)
    taker_reach: int = 4  # ticks through the fair value


class SyntheticMarket:
    def __init__(self, params: MarketParams = MarketParams(), seed: int = 1) -> None:
        self.p = params
        self.rng = np.random.default_rng(seed)
        self.fair = np.full(params.instruments + 1, float(params.start_price))
        self.resting: list[list[int]] = [[] for _ in range(params.instruments + 1)]
        self.next_id = 1
        self.fair_path: list[tuple[int, list[float]]] = []  # (ns, fair per instrument), one per step

    @property
    def instruments(self) -> range:
        return range(1, self.p.instruments + 1)

    def _id(self) -> int:
        oid = self.next_id
        if oid > MAX_MARKET_ID:
            raise OverflowError("the synthetic market ran out of order ids below 1 << 32")
        self.next_id = oid + 1
        return oid

    def step(self, now_ns: int, step_ns: int) -> np.ndarray:
        p, rng = self.p, self.rng
        dt = step_ns / 1e9
        rows: list[tuple] = []
        for inst in self.instruments:
            # draws in a fixed order per instrument and step: the run is a function of the seed
            move, refresh_u, n_takers = rng.normal(), rng.random(), rng.poisson(p.taker_rate * dt)
            fair = self.fair[inst] = max(self.fair[inst] + p.volatility * math.sqrt(dt) * move, 2.0 * p.levels + 10)
            if refresh_u < p.refresh_prob or not self.resting[inst]:
                for oid in self.resting[inst]:
                    rows.append((0, now_ns, oid, MARKET_ACCOUNT, 0, 0, inst, 0, _CANCEL, 0, 0, 0, 0))
                self.resting[inst] = []
                sizes = rng.integers(1, p.max_qty + 1, 2 * p.levels)
                best_bid = math.floor(fair) - p.half_spread + 1
                best_ask = math.ceil(fair) + p.half_spread - 1
                for k in range(p.levels):
                    for side, price, qty in ((Side.BUY, best_bid - k, sizes[2 * k]),
                                             (Side.SELL, best_ask + k, sizes[2 * k + 1])):
                        oid = self._id()
                        self.resting[inst].append(oid)
                        rows.append((0, now_ns, oid, MARKET_ACCOUNT, price, int(qty), inst, 0, _NEW, int(side),
                                     _LIMIT, _GTC, 0))
            if n_takers:
                sides = rng.integers(1, 3, n_takers)
                qtys = rng.integers(1, p.taker_qty + 1, n_takers)
                for side, qty in zip(sides.tolist(), qtys.tolist()):
                    price = round(fair) + (p.taker_reach if side == Side.BUY else -p.taker_reach)
                    rows.append((0, now_ns, self._id(), MARKET_ACCOUNT, max(price, 1), qty, inst, 0, _NEW, side,
                                 _LIMIT, _IOC, 0))
        self.fair_path.append((now_ns, [float(self.fair[i]) for i in self.instruments]))
        return np.array(rows, dtype=COMMAND) if rows else np.zeros(0, dtype=COMMAND)


class RecordedMarket:
    """Replays recorded market COMMAND records by timestamp (account 1, ids below 1 << 32)."""

    def __init__(self, cmds: np.ndarray, rate: float = 1_000.0) -> None:
        cmds = np.ascontiguousarray(cmds, dtype=COMMAND).copy()
        orders = cmds["action"] <= Action.MODIFY
        cmds = cmds[orders]  # account actions (deposits...) belong to the simulation's set-up
        if len(cmds) and int(cmds["order_id"].max()) > MAX_MARKET_ID:
            raise ValueError("recorded order ids must be below 1 << 32 (strategies use the ids above)")
        if len(cmds) and not cmds["ts_ns"].any():
            cmds["ts_ns"] = (np.arange(len(cmds)) * (1e9 / rate)).astype(np.int64)
        if np.any(np.diff(cmds["ts_ns"]) < 0):
            raise ValueError("recorded commands must be in time order")
        cmds["account"] = MARKET_ACCOUNT
        self.cmds = cmds
        self.pos = 0
        found = np.unique(cmds["instrument"][cmds["instrument"] > 0])
        self._instruments = [int(i) for i in found]

    @property
    def instruments(self) -> list[int]:
        return self._instruments

    @classmethod
    def load(cls, path: str | Path, rate: float = 1_000.0) -> RecordedMarket:
        """A .npy of COMMAND records, or a conformance command CSV (instruments numbered 1, 2...
        in order of first appearance)."""
        path = Path(path)
        if path.suffix == ".npy":
            return cls(np.load(path), rate)
        from microex.protocol.conformance_csv import CommandCsvDecoder

        lines = path.read_text().splitlines()[1:]
        return cls(CommandCsvDecoder(max_instruments=256).decode(lines), rate)

    @property
    def end_ns(self) -> int:
        return int(self.cmds["ts_ns"][-1]) if len(self.cmds) else 0

    def step(self, now_ns: int, step_ns: int) -> np.ndarray:
        ts = self.cmds["ts_ns"]
        end = int(np.searchsorted(ts, now_ns + step_ns, side="left"))
        out = self.cmds[self.pos:end]
        self.pos = end
        return out
