"""`microex sim`: run a strategy file (or an example by name) in simulation; report, JSON and PNG.

A strategy file defines `setup(sim)`, which registers its strategies with
`sim.add(...)` (examples/strategy_*.py). An example name `market_maker` is
examples/strategy_market_maker.py of this checkout (or of the current directory).
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from collections.abc import Callable
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser, with_strategy: bool = True) -> None:
    if with_strategy:
        p.add_argument("strategy", help="a strategy file defining setup(sim), or an example name "
                                        "(market_maker, momentum)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--duration", type=float, default=60.0, help="simulated seconds")
    p.add_argument("--step-ms", type=float, default=10.0, help="simulated time step")
    p.add_argument("--instruments", type=int, default=1, help="synthetic instruments")
    p.add_argument("--maker-fee-bps", type=int, default=0)
    p.add_argument("--taker-fee-bps", type=int, default=0)
    p.add_argument("--market", help="replay recorded market commands (.npy of COMMAND records or a "
                                    "conformance CSV) instead of the synthetic market")
    p.add_argument("--record", help="save the market's commands as .npy (replay them with --market)")
    p.add_argument("--out", default="sim-out", help="directory for the report JSON and the PNG plot")


def examples_dir() -> Path:
    here = Path(__file__).resolve().parents[2] / "examples"
    return here if here.is_dir() else Path.cwd() / "examples"


def load_setup(spec: str) -> tuple[Callable, str]:
    """(setup function, name) from a file path or an example name."""
    path = Path(spec)
    if not path.suffix:
        path = examples_dir() / f"strategy_{spec}.py"
    if not path.is_file():
        raise SystemExit(f"microex sim: no strategy file {path}")
    module_spec = importlib.util.spec_from_file_location(f"microex_sim_{path.stem}", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    setup = getattr(module, "setup", None)
    if setup is None:
        raise SystemExit(f"microex sim: {path} defines no setup(sim)")
    name = path.stem.removeprefix("strategy_")
    return setup, name


def run(args, setup: Callable, name: str) -> int:
    # imported here: `microex --help` and the other subcommands should not load the strategy stack
    from microex.strategy.market_sim import MarketParams, RecordedMarket
    from microex.strategy.simulation import SimConfig, Simulation

    config = SimConfig(seed=args.seed, duration_s=args.duration, step_ms=args.step_ms,
                       market=MarketParams(instruments=args.instruments), maker_fee_bps=args.maker_fee_bps,
                       taker_fee_bps=args.taker_fee_bps)
    market = RecordedMarket.load(args.market) if args.market else None
    sim = Simulation(config, market=market, record=args.record)
    setup(sim)
    t0 = time.perf_counter()
    report = sim.run()
    wall = time.perf_counter() - t0
    print(report.text())
    out = Path(args.out)
    stem = f"{name}-seed{args.seed}"
    png = report.plot(out / f"{stem}.png", title=name)
    js = report.write_json(out / f"{stem}.json")
    print(f"wrote {png} and {js} ({wall:.2f} s wall for {args.duration:g} s simulated)")
    return 0 if report.totals["reconciled"] else 1


def run_example(setup: Callable, name: str, description: str | None = None) -> int:
    """The `python examples/strategy_x.py --seed 1` entry point."""
    p = argparse.ArgumentParser(description=(description or "").strip().splitlines()[0] if description else None)
    add_arguments(p, with_strategy=False)
    return run(p.parse_args(), setup, name)


def main(args) -> int:
    setup, name = load_setup(args.strategy)
    return run(args, setup, name)
