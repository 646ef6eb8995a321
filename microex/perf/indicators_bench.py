"""`microex bench indicators`: microex.indicators, streaming and batch, beside TA-Lib in the same run.

Rows, for each of sma(30), ema(30), rsi(14), macd(12, 26, 9), bollinger(20, 2), atr(14), vwap,
book_imbalance:
- indicators.<name>.stream       updates/s: --instruments instruments (1,000), one Stream for
                                 all, updates with random instrument ids, --per-call updates in
                                 each update() call (new output arrays each call), --updates in all
- indicators.<name>.batch        input values/s of the batch function over one --length series
                                 (1M), with the ratio to TA-Lib's function on the same series
                                 (ratio_vs talib); vwap and book_imbalance, which TA-Lib lacks,
                                 are compared with their numpy formulas (ratio_vs numpy)
- indicators.<name>.batch.talib  TA-Lib's own speed (.batch.numpy for vwap and book_imbalance)
Each figure is the median of --runs runs; a batch run times --batch-reps calls of ours and as
many of the baseline's, alternating call by call, each going first every other time (so drifts
in clock speed and cache state hit both alike). Inputs are generated before
any timing; every kernel is compiled (or loaded from numba's cache) before it is timed.
Targets (issue #9): streaming >= 10M updates/s per indicator; batch at least as fast as TA-Lib.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

import microex.indicators as mi
from microex.perf.results import print_rows, throughput_fields, write_results

TARGET_STREAM = 10e6  # updates/s
TARGET_BATCH_RATIO = 1.0  # our speed / TA-Lib's
NAMES = ("sma", "ema", "rsi", "macd", "bollinger", "atr", "vwap", "book_imbalance")
# name -> (our call, the baseline's call), as the rows' workload text says them
CALLS = {
    "sma": ("sma(x, 30)", "talib.SMA(x, 30)"),
    "ema": ("ema(x, 30)", "talib.EMA(x, 30)"),
    "rsi": ("rsi(x, 14)", "talib.RSI(x, 14)"),
    "macd": ("macd(x, 12, 26, 9)", "talib.MACD(x, 12, 26, 9)"),
    "bollinger": ("bollinger(x, 20, 2.0)", "talib.BBANDS(x, 20, 2.0, 2.0, SMA)"),
    "atr": ("atr(high, low, close, 14)", "talib.ATR(high, low, close, 14)"),
    "vwap": ("vwap(price, volume)", "np.cumsum(price * volume) / np.cumsum(volume)"),
    "book_imbalance": ("book_imbalance(bid_qty, ask_qty)", "(bid - ask) / (bid + ask)"),
}


def add_arguments(parser) -> None:
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--instruments", type=int, default=1_000, help="instruments in each stream")
    parser.add_argument("--updates", type=int, default=4_000_000, help="stream updates per run")
    parser.add_argument("--per-call", type=int, default=10_000, help="updates per Stream.update() call")
    parser.add_argument("--length", type=int, default=1_000_000, help="values in the batch series")
    parser.add_argument("--batch-reps", type=int, default=20, help="batch calls timed in each run")
    parser.add_argument("--runs", type=int, default=3, help="runs per variant; the median is reported")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--only", help="comma-separated indicator names (default: all)")


class Inputs:
    """Price-like series for the batch runs and one update stream for the streaming runs."""

    def __init__(self, length: int, updates: int, instruments: int, seed: int):
        rng = np.random.default_rng(seed)
        self.x = 100.0 + np.cumsum(rng.normal(0.0, 1.0, length))
        spread = np.abs(rng.normal(0.0, 0.5, (2, length)))
        self.high, self.low = self.x + spread[0], self.x - spread[1]
        self.volume = rng.integers(1, 1_000, length).astype(np.float64)
        self.bid, self.ask = rng.integers(0, 500, (2, length)).astype(np.float64)
        self.ids = rng.integers(0, instruments, updates).astype(np.int64)
        self.u = 100.0 + rng.normal(0.0, 1.0, updates)  # stream values: around 100 for every instrument
        self.u_high, self.u_low = self.u + 0.5, self.u - 0.5
        self.u_volume = rng.integers(1, 1_000, updates).astype(np.float64)
        self.u_bid, self.u_ask = rng.integers(0, 500, (2, updates)).astype(np.float64)


def batch_calls(name: str, d: Inputs, talib) -> tuple[Callable, Callable | None, str]:
    """(ours, the baseline, the baseline's name) for one indicator, as zero-argument calls."""
    x = d.x
    if name == "vwap":
        return lambda: mi.vwap(x, d.volume), lambda: np.cumsum(x * d.volume) / np.cumsum(d.volume), "numpy"
    if name == "book_imbalance":
        return (lambda: mi.book_imbalance(d.bid, d.ask),
                lambda: _numpy_imbalance(d.bid, d.ask), "numpy")
    ours = {"sma": lambda: mi.sma(x, 30), "ema": lambda: mi.ema(x, 30), "rsi": lambda: mi.rsi(x, 14),
            "macd": lambda: mi.macd(x, 12, 26, 9), "bollinger": lambda: mi.bollinger(x, 20, 2.0),
            "atr": lambda: mi.atr(d.high, d.low, x, 14)}[name]
    if talib is None:
        return ours, None, "talib"
    theirs = {"sma": lambda: talib.SMA(x, 30), "ema": lambda: talib.EMA(x, 30), "rsi": lambda: talib.RSI(x, 14),
              "macd": lambda: talib.MACD(x, 12, 26, 9), "bollinger": lambda: talib.BBANDS(x, 20, 2.0, 2.0, 0),
              "atr": lambda: talib.ATR(d.high, d.low, x, 14)}[name]
    return ours, theirs, "talib"


def _numpy_imbalance(b, a):
    with np.errstate(divide="ignore", invalid="ignore"):
        return (b - a) / (b + a)


def stream_for(name: str, instruments: int, d: Inputs) -> tuple[mi.Stream, tuple[np.ndarray, ...], str]:
    """A fresh stream, its input arrays (aligned with d.ids), and how it is parameterised."""
    if name == "atr":
        return mi.AtrStream(instruments, 14), (d.u_high, d.u_low, d.u), "AtrStream(n=14), high/low/close"
    if name == "vwap":
        return mi.VwapStream(instruments), (d.u, d.u_volume), "VwapStream, price/volume"
    if name == "book_imbalance":
        return mi.ImbalanceStream(instruments), (d.u_bid, d.u_ask), "ImbalanceStream, bid/ask quantities"
    make = {"sma": (lambda: mi.SmaStream(instruments, 30), "SmaStream(n=30)"),
            "ema": (lambda: mi.EmaStream(instruments, 30), "EmaStream(n=30)"),
            "rsi": (lambda: mi.RsiStream(instruments, 14), "RsiStream(n=14)"),
            "macd": (lambda: mi.MacdStream(instruments, 12, 26, 9), "MacdStream(12, 26, 9)"),
            "bollinger": (lambda: mi.BollingerStream(instruments, 20, 2.0), "BollingerStream(n=20, k=2)")}[name]
    return make[0](), (d.u,), make[1]


def time_stream(name: str, args, d: Inputs) -> float:
    """Seconds for --updates updates in calls of --per-call, on a fresh (warmed-up, then reset) stream."""
    stream, inputs, _ = stream_for(name, args.instruments, d)
    per = args.per_call
    stream.update(d.ids[:per], *(a[:per] for a in inputs))  # compile or load the kernel
    stream.reset()
    chunks = [(d.ids[a:a + per], *(x[a:a + per] for x in inputs)) for a in range(0, len(d.ids), per)]
    update = stream.update
    t0 = time.perf_counter()
    for c in chunks:
        update(*c)
    return time.perf_counter() - t0


def time_calls(ours: Callable, theirs: Callable | None, reps: int) -> tuple[float, float | None]:
    """Seconds per call of each, the calls alternating and each going first every other time
    (ours, theirs, theirs, ours, ...): a change of clock speed, a noisy neighbour or the state
    the previous call left in the caches hits both alike."""
    clock = time.perf_counter
    spent = {ours: 0.0, theirs: 0.0}
    pair = (ours,) if theirs is None else (ours, theirs)
    for r in range(reps):
        for fn in (pair if r % 2 == 0 else pair[::-1]):
            t0 = clock()
            fn()
            spent[fn] += clock() - t0
    return spent[ours] / reps, (spent[theirs] / reps if theirs is not None else None)


def _verdict(met: bool) -> str:
    return "target met" if met else "target MISSED"


def main(args) -> int:
    console = Console(stderr=True)
    try:
        import talib
    except ImportError:  # a test dependency; without it the batch rows have no ratio
        talib = None
        console.print("[yellow]ta-lib is not installed: no TA-Lib rows or ratios[/yellow]")
    names = NAMES if not args.only else tuple(n.strip() for n in args.only.split(","))
    unknown = set(names) - set(NAMES)
    if unknown:
        raise SystemExit(f"unknown indicator(s) {sorted(unknown)}; known: {', '.join(NAMES)}")
    d = Inputs(args.length, args.updates, args.instruments, args.seed)
    cores = os.cpu_count() or 1
    stream_s: dict[str, float] = {}
    batch_s: dict[str, tuple[float, float | None, str]] = {}
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=console, refresh_per_second=4)
    with progress:
        task = progress.add_task("indicators", total=len(names) * 2 * args.runs)
        for name in names:
            progress.update(task, description=f"indicators.{name}.stream")
            runs = []
            for _ in range(args.runs):
                runs.append(time_stream(name, args, d))
                progress.advance(task)
            stream_s[name] = statistics.median(runs)
            progress.update(task, description=f"indicators.{name}.batch")
            ours, theirs, vs = batch_calls(name, d, talib)
            ours()  # compile or load the kernel
            if theirs is not None:
                theirs()
            a, b = [], []
            for _ in range(args.runs):
                ta, tb = time_calls(ours, theirs, args.batch_reps)
                a.append(ta)
                if tb is not None:
                    b.append(tb)
                progress.advance(task)
            batch_s[name] = (statistics.median(a), statistics.median(b) if b else None, vs)

    rows: list[dict] = []
    common = f"{cores} cores, median of {args.runs} runs"
    for name in names:
        _, _, what = stream_for(name, args.instruments, d)
        tp = throughput_fields(args.updates, stream_s[name])
        met = tp["ops_per_s"] >= TARGET_STREAM
        rows.append({"name": f"indicators.{name}.stream",
                     "workload": f"{what} over {args.instruments:,} instruments: {args.updates:,} updates with "
                     f"random instrument ids, {args.per_call:,} per update() call (one njit kernel call each, "
                     f"new output arrays); ops/s = updates/s; {common}; target >= {TARGET_STREAM / 1e6:.0f}M "
                     f"updates/s: {_verdict(met)}",
                     **tp, "batch": args.per_call, "instruments": args.instruments,
                     "target_ops_per_s": TARGET_STREAM, "target_met": met})
        ours_s, base_s, vs = batch_s[name]
        call, base_call = CALLS[name]
        series = (f"one series of {args.length:,} float64 values (random walk around 100), "
                  f"{args.batch_reps} calls per run; ops/s = input values/s; {common}")
        tp = throughput_fields(args.length, ours_s)
        row = {"name": f"indicators.{name}.batch", "workload": f"microex.indicators.{call}, {series}", **tp}
        if base_s is not None:
            base = throughput_fields(args.length, base_s)
            ratio = tp["ops_per_s"] / base["ops_per_s"]
            met = ratio >= TARGET_BATCH_RATIO
            target = ("target: at least as fast as TA-Lib" if vs == "talib"
                      else "no TA-Lib equivalent; target: at least as fast as the numpy formula")
            row["workload"] += f", calls alternating with {base_call}; {target}: {_verdict(met)}"
            row.update(ratio=ratio, ratio_vs=vs, target_ratio=TARGET_BATCH_RATIO, target_met=met)
            rows.append(row)
            rows.append({"name": f"indicators.{name}.batch.{vs}", "workload": f"{base_call}, {series}", **base})
        else:
            rows.append(row)
    print_rows(rows)
    out = write_results(rows, args.json, "indicators")
    console.print(f"results written to {out}")
    return 0
