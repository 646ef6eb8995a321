"""`microex bench core`: the matching engine on core.match_mix, against the reference.

Rows (all on the same generated stream, generated before any timing):
- core.match_mix                 batch 65,536, with the ratio to the reference matcher
- core.match_mix.batch_<N>       N = 65,536, 256, 16, 1 (one command per call from Python)
- core.match_mix.latency_batch_1 per-command latency of one-command calls from Python
- core.match_mix.reference       the plain-Python reference matcher on the stream's start
- core.risk_check                core.match_mix with risk on (holds, fees, every pre-trade
                                 check) against risk off, batch 65,536, runs interleaved
- core.input.<file>              a conformance-format CSV stream (--input)
- core.start.first / .cached     wall time of `microex match` on a 10-line stream,
                                 with an empty numba cache, then with a warm one
Each throughput figure is the median of --runs runs on a fresh engine; the
event sink does nothing (events stay in the engine's buffer, as a ring
publisher would copy them out).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from microex.core.config import EngineConfig
from microex.core.engine import MatchingEngine
from microex.core.reference import ReferenceMatcher
from microex.perf.results import latency_fields, print_rows, throughput_fields, write_results
from microex.perf.workload import Workload, describe, funding, match_mix, risk_venue

BATCHES = (65536, 256, 16, 1)
_LOW32 = (1 << 32) - 1
_SINK = lambda events: None  # noqa: E731


def _fresh(w: Workload, risk: bool = False) -> MatchingEngine:
    if risk:
        engine = MatchingEngine(w.config(), venue=risk_venue())
        engine.warm_up()
        engine.process(funding())
    else:
        engine = MatchingEngine(w.config())
        engine.warm_up()
    engine.process(w.setup)
    return engine


def run_one_by_one(engine: MatchingEngine, cmds: np.ndarray, latencies: np.ndarray | None = None) -> None:
    """One kernel call per command, as a caller with one message in hand would."""
    kernel = engine._kernel
    clock = time.perf_counter_ns
    i, n = 0, len(cmds)
    while i < n:
        state, ids, events = engine.state, engine.ids, engine.events
        if latencies is None:
            while i < n and kernel(state, ids, cmds, i, 1, events) & _LOW32:
                i += 1
        else:
            while i < n:
                t0 = clock()
                r = kernel(state, ids, cmds, i, 1, events)
                latencies[i] = clock() - t0
                if not r & _LOW32:
                    break
                i += 1
        if i < n:
            engine._make_room(stalled=True)


def time_engine(w: Workload, batch: int, risk: bool = False) -> float:
    engine = _fresh(w, risk)
    t0 = time.perf_counter()
    if batch == 1:
        run_one_by_one(engine, w.cmds)
    else:
        engine.run(w.cmds, _SINK, batch=batch)
    return time.perf_counter() - t0


def time_reference(w: Workload, n: int) -> float:
    ref = ReferenceMatcher(w.config())
    ref.process(w.setup)
    t0 = time.perf_counter()
    ref.process(w.cmds[:n])
    return time.perf_counter() - t0


def timer_overhead_ns() -> float:
    clock = time.perf_counter_ns
    samples = []
    for _ in range(100_000):
        t0 = clock()
        samples.append(clock() - t0)
    return float(np.median(samples))


def startup_rows(runs: int) -> list[dict]:
    """`microex match` on a 10-line stream: first start (empty numba cache), then cached."""
    stream = Path(__file__).resolve().parents[2] / "tests" / "data" / "conformance" / "05_rejects_postonly_stp.csv"
    lines = stream.read_text().splitlines()[:11] if stream.exists() else [
        "action,order_id,account,instrument,side,type,tif,price,qty,flags"
    ] + [f"new,{i},1,XYZ,{'buy' if i % 2 else 'sell'},limit,gtc,100,5," for i in range(1, 11)]
    text = "\n".join(lines) + "\n"
    exe = [sys.executable, "-m", "microex.app.cli", "match"]
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)

        def once() -> float:
            t0 = time.perf_counter()
            subprocess.run(exe, input=text, env=env, capture_output=True, text=True, check=True)
            return time.perf_counter() - t0

        first = once()
        cached = statistics.median(once() for _ in range(runs))
    return [
        {"name": "core.start.first", "workload": "`microex match` on a 10-line stream, empty numba cache",
         "wall_s": first},
        {"name": "core.start.cached", "workload": "`microex match` on a 10-line stream, warm numba cache "
         f"(median of {runs})", "wall_s": cached},
    ]


def input_rows(path: str, runs: int) -> list[dict]:
    from microex.protocol.conformance_csv import CommandCsvDecoder

    config = EngineConfig(max_instruments=1024, max_orders=1 << 20, max_levels=1 << 14, id_capacity=1 << 20)
    lines = Path(path).read_text().splitlines()[1:]
    cmds = CommandCsvDecoder(config.max_instruments).decode(lines)
    times = []
    for _ in range(runs):
        engine = MatchingEngine(config)
        engine.warm_up()
        t0 = time.perf_counter()
        engine.run(cmds, _SINK)
        times.append(time.perf_counter() - t0)
    return [{"name": f"core.input.{Path(path).stem}",
             "workload": f"{path}: {len(cmds)} commands, batch 65,536, median of {runs}",
             **throughput_fields(len(cmds), statistics.median(times))}]


def main(args) -> int:
    console = Console(stderr=True)
    rows: list[dict] = []
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=console)
    with progress:
        task = progress.add_task("generating core.match_mix", total=args.commands)
        w = match_mix(args.commands, seed=args.seed, progress=lambda n: progress.advance(task, n))
        check = _fresh(w)
        stats = describe(check.process(w.cmds), w.cmds)
        del check
        medians = {}
        task = progress.add_task("engine runs", total=len(BATCHES) * args.runs)
        for batch in BATCHES:
            times = []
            for _ in range(args.runs):
                times.append(time_engine(w, batch))
                progress.advance(task)
            medians[batch] = statistics.median(times)
        task = progress.add_task("risk on / off", total=2 * args.runs)
        risk_times = {True: [], False: []}
        for _ in range(args.runs):
            for risk in (False, True):
                risk_times[risk].append(time_engine(w, BATCHES[0], risk))
                progress.advance(task)
        check = _fresh(w, risk=True)
        risk_rejects = int((check.process(w.cmds)["kind"] == 2).sum())
        del check
        n_ref = min(args.reference_commands, len(w.cmds))
        task = progress.add_task(f"reference matcher, {n_ref} commands", total=1)
        ref_s = time_reference(w, n_ref)
        progress.advance(task)
        task = progress.add_task("batch-1 latency", total=1)
        n_lat = min(args.latency_commands, len(w.cmds))
        engine = _fresh(w)
        lat = np.zeros(n_lat, dtype=np.int64)
        run_one_by_one(engine, w.cmds[:n_lat], lat)
        progress.advance(task)

    workload = (f"{w.description}; outcome: {stats['trades']} trades, {stats['cancels_hit']} of "
                f"{stats['cancels']} cancels found their order, {stats['rejected']} rejects, "
                f"{stats['level_updates']} L2 level events")
    ref = throughput_fields(n_ref, ref_s)
    big = throughput_fields(len(w.cmds), medians[BATCHES[0]])
    rows.append({"name": "core.match_mix", "workload": workload + f"; batch 65,536, median of {args.runs}",
                 **big, "ratio": big["ops_per_s"] / ref["ops_per_s"], "ratio_vs": "reference"})
    for batch in BATCHES:
        rows.append({"name": f"core.match_mix.batch_{batch}",
                     "workload": f"core.match_mix, {batch} command(s) per kernel call, median of {args.runs}",
                     **throughput_fields(len(w.cmds), medians[batch])})
    rows.append({"name": "core.match_mix.latency_batch_1",
                 "workload": f"first {n_lat} commands of core.match_mix, one call each from Python, "
                 f"timed with perf_counter_ns (its own cost, {timer_overhead_ns():.0f} ns, included)",
                 **latency_fields(lat)})
    on, off = statistics.median(risk_times[True]), statistics.median(risk_times[False])
    rows.append({"name": "core.risk_check",
                 "workload": f"core.match_mix with risk on (100 funded accounts; holds, fees 2/5 bps, band 20%, "
                 f"qty/notional/open-order limits, none binding; {risk_rejects} rejects) vs off, batch 65,536, "
                 f"median of {args.runs} interleaved runs; ratio = time on / time off",
                 **throughput_fields(len(w.cmds), on), "ratio": on / off, "ratio_vs": "risk off",
                 "risk_ns_per_command": (on - off) * 1e9 / len(w.cmds)})
    rows.append({"name": "core.match_mix.reference",
                 "workload": f"plain-Python reference matcher, first {n_ref} commands of core.match_mix",
                 **ref})
    if args.input:
        rows += input_rows(args.input, args.runs)
    if not args.no_startup:
        rows += startup_rows(args.runs)
    print_rows(rows)
    out = write_results(rows, args.json, "core")
    console.print(f"results written to {out}")
    return 0
