"""The simulation report: fills, PnL, drawdown, per-strategy stats, reconciliation, plot.

How it works. `build_report` reads the runtime (per-strategy counters, PnL and
positions, latency histograms), the sampled PnL/position paths and the venue's
balances at the end of a run. Reconciliation: for strategy k (account 2 + k)
and each instrument i, the venue's base balance B_i (available + held) must be
deposit_base + position_i (lot 1), and its USD balance deposit_quote minus
sum_i (cost_i - realized_i) x tick - fees (the cash spent on what is held, net
of what was realized: core/positions.py's average-cost identity), so every fill
the venue settled is one the runtime booked, at the same price and fee.

`deterministic()` is everything but the wall-clock latencies: two runs with
one seed give equal dicts (and equal engine digests). Drawdown is the largest
fall of the PnL from its running peak (peak starting at 0), at the sampling
resolution. The plot (matplotlib, Agg backend) shows PnL and position over
simulated time for up to 8 strategies.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from microex.strategy.pnl import P_COST, P_LOTS, P_REALIZED

if TYPE_CHECKING:
    from microex.strategy.simulation import Simulation

_MAX_PLOTTED = 8


def max_drawdown(path: np.ndarray) -> int:
    """Largest peak-to-trough fall of a PnL path, the peak starting at 0."""
    if len(path) == 0:
        return 0
    peak = np.maximum.accumulate(np.maximum(path, 0))
    return int((peak - path).max())


@dataclass
class SimReport:
    config: dict
    strategies: list[dict]
    totals: dict
    engine: dict
    times_ns: np.ndarray = field(repr=False)
    pnl: np.ndarray = field(repr=False)  # (samples, strategies), quote units
    position: np.ndarray = field(repr=False)  # (samples, strategies), lots summed over instruments

    _LATENCY = ("tick_to_trade", "order_to_ack")

    def deterministic(self) -> dict:
        """The report without wall-clock latencies: equal for equal seeds."""
        strategies = [{k: v for k, v in s.items() if k not in self._LATENCY} for s in self.strategies]
        return {"config": self.config, "strategies": strategies, "totals": self.totals, "engine": self.engine,
                "pnl_path": self.pnl.tolist(), "position_path": self.position.tolist()}

    def to_dict(self) -> dict:
        return {"config": self.config, "strategies": self.strategies, "totals": self.totals, "engine": self.engine}

    def write_json(self, path: str | Path) -> Path:
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(self.to_dict(), indent=1, default=str) + "\n")
        return out

    def plot(self, path: str | Path, title: str = "simulation") -> Path:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        t = self.times_ns / 1e9
        fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
        shown = self.strategies[:_MAX_PLOTTED]
        for j, s in enumerate(shown):
            ax1.plot(t, self.pnl[:, j], lw=1, label=s["name"])
            ax2.step(t, self.position[:, j], where="post", lw=1, label=s["name"])
        if len(self.strategies) > 1:
            ax1.plot(t, self.pnl.sum(axis=1), lw=1.5, color="black", label="total")
        ax1.set_ylabel("PnL (quote units)")
        ax2.set_ylabel("position (lots)")
        ax2.set_xlabel("simulated time (s)")
        ax1.set_title(f"{title}: seed {self.config.get('seed')}, {len(self.strategies)} strateg"
                      f"{'y' if len(self.strategies) == 1 else 'ies'}")
        ax1.legend(loc="upper left", fontsize=8)
        for ax in (ax1, ax2):
            ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(out, dpi=100)
        plt.close(fig)
        return out

    def text(self) -> str:
        """A plain-text summary (one line per strategy)."""
        t = self.totals
        lines = [f"simulation: seed {self.config['seed']}, {self.config['duration_s']:g} s simulated, "
                 f"{self.engine['commands']} commands, {self.engine['trades']} trades",
                 f"strategies: fills {t['fills']}, volume {t['volume']} lots, PnL {t['pnl']} "
                 f"(realized {t['realized']}, unrealized {t['unrealized']}, fees {t['fees']}), "
                 f"max drawdown {t['max_drawdown']}, reconciled with the venue: {t['reconciled']}",
                 f"{'strategy':<24}{'state':>16}{'orders':>8}{'fills':>7}{'pos':>7}{'PnL':>10}{'maxDD':>8}"
                 f"{'t2t p50':>10}{'p99':>10}{'ack p50':>10}"]
        for s in self.strategies:
            state = "running" if s["running"] else s["stop_reason"]
            t2t, ack = s["tick_to_trade"], s["order_to_ack"]
            lines.append(f"{s['name'][:23]:<24}{state:>16}{s['orders']:>8}{s['fills']:>7}{s['position']:>7}"
                         f"{s['pnl']['total']:>10}{s['max_drawdown']:>8}{_us(t2t.get('p50_ns')):>10}"
                         f"{_us(t2t.get('p99_ns')):>10}{_us(ack.get('p50_ns')):>10}")
            if s["error"]:
                lines.append(f"    stopped: {s['error']}")
        return "\n".join(lines)


def _us(ns) -> str:
    return "-" if ns is None else f"{ns / 1000:.1f}us"


def reconcile(sim: Simulation, index: int) -> tuple[bool, list[str]]:
    """Venue balances of strategy `index`'s account vs its positions, PnL and fees (see above)."""
    from microex.strategy.simulation import FIRST_STRATEGY_ACCOUNT

    c = sim.config
    bal = sim.engine.balances()
    acc = FIRST_STRATEGY_ACCOUNT + index
    pos = sim.runtime.pnl.pos[index]
    tick = sim.runtime.pnl.tick
    problems = []
    cash = 0
    for inst, asset in sim.base_asset.items():
        have = int(bal[acc, asset, 0] + bal[acc, asset, 1])
        want = c.deposit_base + int(pos[inst, P_LOTS])
        if have != want:
            problems.append(f"B{inst}: venue {have}, runtime {want}")
        cash += (int(pos[inst, P_COST]) - int(pos[inst, P_REALIZED])) * int(tick[inst])
    fees = int(sim.runtime.pnl.totals[index, 1])
    have = int(bal[acc, sim.usd, 0] + bal[acc, sim.usd, 1])
    want = c.deposit_quote - cash - fees
    if have != want:
        problems.append(f"USD: venue {have}, runtime {want}")
    return not problems, problems


def build_report(sim: Simulation, times: np.ndarray, pnl: np.ndarray, position: np.ndarray) -> SimReport:
    rt = sim.runtime
    strategies = rt.summary()
    tot = {"fills": 0, "volume": 0, "realized": 0, "unrealized": 0, "fees": 0, "pnl": 0, "reconciled": True}
    for j, s in enumerate(strategies):
        s["position"] = int(position[-1, j]) if len(position) else 0
        s["max_drawdown"] = max_drawdown(pnl[:, j])
        ok, problems = reconcile(sim, j)
        s["reconciled"], s["reconcile_problems"] = ok, problems
        tot["reconciled"] &= ok
        tot["fills"] += s["fills"]
        tot["volume"] += sum(p["volume"] for p in s["positions"])
        for k, name in (("realized", "realized"), ("unrealized", "unrealized"), ("fees", "fees"), ("pnl", "total")):
            tot[k] += s["pnl"][name]
    tot["max_drawdown"] = max_drawdown(pnl.sum(axis=1)) if pnl.size else 0
    tot["stopped"] = [{"name": s.name, "reason": s.reason.name, "error": s.error} for s in rt.stopped]
    engine = {"commands": sim.commands, "events": sim.events, "trades": sim.trades, "digest": sim.engine.digest(),
              "book_levels_truncated": sim.books.truncated, "market_events": rt.market_events}
    return SimReport(sim.config.to_dict(), strategies, tot, engine, times, pnl, position)
