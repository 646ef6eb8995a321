"""`microex bench strategy`: the strategy runtime's dispatch rate and tick-to-trade latency.

Rows:
- strategy.dispatch.strategies_1000   ops/s = MARKET records/s through StrategyRuntime.on_market with
                                      --strategies (1,000) strategies over --instruments (100)
                                      instruments, each subscribed to --subscriptions (2) random ones
                                      (so ~20 subscribers per instrument); records are BOOK updates and
                                      one TRADE in ten, random instruments, --chunk (256) per call; each
                                      strategy's on_book reads the top of book and compares the spread
                                      with a threshold (it never trades), on_trade counts. Includes the
                                      per-chunk numba call (routed counts, marks, loss checks).
- strategy.tick_to_trade.in_process   one trading strategy among the same 1,000; one BOOK record per
                                      on_market call; it places an IOC on every update; latency =
                                      perf_counter_ns from on_market's entry to the return of the link's
                                      new_order (the simulation's EngineLink: the COMMAND tuple is queued
                                      for the engine), recorded by the runtime itself. After each
                                      event the engine runs the order and the reports go back (untimed).
- strategy.tick_to_trade.loopback     the same strategy, its orders sent with the SDK Client over TCP
                                      loopback to an InProcessVenue (gateway + engine) in another
                                      process; --loopback-events BOOK records at --loopback-rate per s
                                      (paced, so the loop is not saturated); latency to the return of
                                      the Client's write.
- strategy.order_to_ack.loopback      those orders: send -> EXEC_ACCEPTED through the venue and back.
Each figure is the median of --runs runs (the loopback rows: one run).
Targets (issue #9): 1,000 strategies fed at >= 100k market events/s in one process;
tick-to-trade p50 <= 10 us in process.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import statistics
import time

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from microex.perf.results import latency_fields, print_rows, throughput_fields, write_results

TARGET_DISPATCH = 100_000  # market events/s to 1,000 strategies
TARGET_T2T_P50_NS = 10_000
_KEY = b"bench-key"


def add_arguments(parser) -> None:
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--strategies", type=int, default=1_000)
    parser.add_argument("--instruments", type=int, default=100)
    parser.add_argument("--subscriptions", type=int, default=2, help="instruments per strategy")
    parser.add_argument("--events", type=int, default=1_000_000, help="MARKET records per dispatch run")
    parser.add_argument("--chunk", type=int, default=256, help="MARKET records per on_market call")
    parser.add_argument("--t2t-events", type=int, default=50_000, help="events per in-process tick-to-trade run")
    parser.add_argument("--loopback-events", type=int, default=10_000)
    parser.add_argument("--loopback-rate", type=float, default=2_000.0, help="events/s in the loopback run")
    parser.add_argument("--no-loopback", action="store_true", help="skip the loopback rows")
    parser.add_argument("--runs", type=int, default=3, help="runs per variant; the median is reported")
    parser.add_argument("--seed", type=int, default=1)


def _strategies():
    """The benchmark's strategy classes (imported late: the CLI parser must stay light)."""
    from microex.core.records import Side, Tif
    from microex.strategy import Strategy

    class Reader(Strategy):
        """What a cheap signal does per update: read the top of book, compare, move on."""

        def __init__(self):
            super().__init__()
            self.books = self.trades = self.wide = 0

        def on_book(self, instrument, book):
            self.books += 1
            if book.ask - book.bid > 3:
                self.wide += 1

        def on_trade(self, trade):
            self.trades += 1

    class Trader(Strategy):
        """An IOC on every book update, priced away from the market: accepted, then cancelled (ioc)."""

        def on_book(self, instrument, book):
            self.place(instrument, Side.BUY, book.bid - 50, 1, tif=Tif.IOC)

    return Reader, Trader


def _runtime(args, rng, trader=None, **kw):
    from microex.strategy import StrategyRuntime

    Reader, _ = _strategies()
    rt = StrategyRuntime(max_instruments=args.instruments, **kw)
    if trader is not None:
        rt.add(trader, [1])
    n = args.strategies - (1 if trader is not None else 0)
    for _ in range(n):
        rt.add(Reader(), (rng.choice(args.instruments, args.subscriptions, replace=False) + 1).tolist())
    return rt


def _market(args, n, rng):
    from microex.strategy.market import MARKET, MdKind

    md = np.zeros(n, dtype=MARKET)
    md["instrument"] = rng.integers(1, args.instruments + 1, n)
    trade = rng.random(n) < 0.1
    md["kind"] = np.where(trade, MdKind.TRADE, MdKind.BOOK)
    mid = 10_000 + rng.integers(-50, 50, n)
    md["bid"] = np.where(trade, 0, mid - rng.integers(1, 4, n))
    md["ask"] = np.where(trade, 0, mid + rng.integers(1, 4, n))
    md["bid_qty"] = md["ask_qty"] = np.where(trade, 0, rng.integers(1, 100, n))
    md["price"] = np.where(trade, mid, 0)
    md["qty"] = np.where(trade, rng.integers(1, 10, n), 0)
    md["side"] = np.where(trade, rng.integers(1, 3, n), 0)
    md["seq"] = np.arange(1, n + 1)
    return md


class _NullLink:
    def new_order(self, *a):
        pass

    def cancel(self, cid):
        pass

    def modify(self, *a):
        pass


def dispatch_run(args, seed: int) -> tuple[float, int]:
    """(seconds for args.events records, callbacks made)."""
    rng = np.random.default_rng(seed)
    rt = _runtime(args, rng)
    rt.attach(_NullLink())
    rt.start()
    md = _market(args, args.events, rng)
    chunks = [md[a:a + args.chunk] for a in range(0, len(md), args.chunk)]
    rt.on_market(md[:args.chunk])  # compile or load the numba kernels before the clock
    before = sum(s.strategy.books + s.strategy.trades for s in rt.slots)
    on_market = rt.on_market
    t0 = time.perf_counter()
    for c in chunks:
        on_market(c)
    dt = time.perf_counter() - t0
    calls = sum(s.strategy.books + s.strategy.trades for s in rt.slots) - before
    return dt, calls


def t2t_in_process_run(args, seed: int) -> np.ndarray:
    from microex.core.engine import MatchingEngine
    from microex.strategy.market import book_records
    from microex.strategy.sim_link import EngineLink, reports_from_events

    rng = np.random.default_rng(seed)
    _, Trader = _strategies()
    engine = MatchingEngine()
    engine.warm_up()
    link = EngineLink(time.monotonic_ns)
    rt = _runtime(args, rng, trader=Trader(), keep_raw_latency=True)
    rt.attach(link)
    rt.start()
    rows = [(1, 10_000 + int(d), 5, 10_002 + int(d), 5) for d in rng.integers(-20, 20, args.t2t_events + 100)]
    md = book_records(rows)
    one = [md[i:i + 1] for i in range(len(md))]
    on_market, take, process, on_reports = rt.on_market, link.take, engine.process, rt.on_reports
    for i, m in enumerate(one):
        if i == 100:
            rt.ttt.take_raw()  # the first 100: warm-up (compilation, caches)
        on_market(m)
        on_reports(reports_from_events(process(take())))
    samples = rt.ttt.take_raw()
    if rt.slots[0].counts["acks"] != len(one):
        raise RuntimeError(f"the trader's orders were not all acknowledged: {rt.slots[0].counts}")
    return samples


def _venue_process(conn) -> None:
    """Child: an InProcessVenue on loopback; sends its port, runs until the parent writes to conn."""
    from microex.gateway.inprocess import InProcessVenue

    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass

    async def serve():
        async with InProcessVenue(api_keys={_KEY: 1}, rate_per_s=1e7) as venue:
            done = asyncio.Event()
            asyncio.get_running_loop().add_reader(conn.fileno(), done.set)
            conn.send(venue.port)
            await done.wait()

    asyncio.run(serve())


def t2t_loopback_run(args, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(tick-to-trade samples, order -> ack samples) against a venue in another process."""
    from microex.client import Client
    from microex.strategy.live import ClientLink
    from microex.strategy.market import book_records

    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_venue_process, args=(child,), daemon=True)
    proc.start()
    try:
        if not parent.poll(60):
            raise RuntimeError("the venue process did not start")
        port = parent.recv()
        rng = np.random.default_rng(seed)
        _, Trader = _strategies()

        async def main():
            client = await Client.connect("127.0.0.1", port, _KEY)
            rt = _runtime(args, rng, trader=Trader(), keep_raw_latency=True)
            rt.attach(ClientLink(client))
            client.on_report(rt.on_report)
            rt.start()
            n = args.loopback_events + 100
            md = book_records([(1, 10_000 + int(d), 5, 10_002 + int(d), 5) for d in rng.integers(-20, 20, n)])
            gap = 1.0 / args.loopback_rate
            loop = asyncio.get_running_loop()
            t_next = loop.time()
            for i in range(n):
                if i == 100:  # the first 100: warm-up; their acks are in before the samples start
                    async with asyncio.timeout(10):
                        while rt.slots[0].counts["acks"] < 100:
                            await asyncio.sleep(0.001)
                    rt.ttt.take_raw()
                    rt.ack.take_raw()
                    t_next = loop.time()
                rt.on_market(md[i:i + 1])
                t_next += gap
                await asyncio.sleep(max(0.0, t_next - loop.time()))
            async with asyncio.timeout(10):
                while rt.slots[0].counts["acks"] < n:
                    await asyncio.sleep(0.01)
            await client.close()
            return rt.ttt.take_raw(), rt.ack.take_raw()

        try:
            import uvloop
            return uvloop.run(main())
        except ImportError:
            return asyncio.run(main())
    finally:
        parent.send(b"stop")
        proc.join(10)
        if proc.is_alive():
            proc.kill()


def _median_latency(runs: list[np.ndarray]) -> dict:
    fields = [latency_fields(r) for r in runs]
    return {k: statistics.median(f[k] for f in fields) for k in fields[0]}


def main(args) -> int:
    console = Console(stderr=True)
    cores = os.cpu_count() or 1
    steps = 2 * args.runs + (0 if args.no_loopback else 1)
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=console, refresh_per_second=4)
    with progress:
        task = progress.add_task("strategy.dispatch", total=steps)
        dispatch = []
        for r in range(args.runs):
            dispatch.append(dispatch_run(args, args.seed + r))
            progress.advance(task)
        progress.update(task, description="strategy.tick_to_trade.in_process")
        t2t = []
        for r in range(args.runs):
            t2t.append(t2t_in_process_run(args, args.seed + r))
            progress.advance(task)
        loop_t2t = loop_ack = None
        if not args.no_loopback:
            progress.update(task, description="strategy.tick_to_trade.loopback")
            loop_t2t, loop_ack = t2t_loopback_run(args, args.seed)
            progress.advance(task)

    common = f"{cores} cores, median of {args.runs} runs"
    seconds = statistics.median(d for d, _ in dispatch)
    calls = statistics.median(c for _, c in dispatch)
    tp = throughput_fields(args.events, seconds)
    met = tp["ops_per_s"] >= TARGET_DISPATCH
    per_event = calls / args.events
    rows = [{"name": "strategy.dispatch.strategies_1000",
             "workload": f"StrategyRuntime.on_market: {args.events:,} MARKET records (90% BOOK, 10% TRADE, random "
                         f"instruments) in chunks of {args.chunk}, {args.strategies:,} strategies over "
                         f"{args.instruments} instruments, {args.subscriptions} each ({per_event:.1f} callbacks "
                         f"per record, {calls / seconds / 1e6:.2f}M callbacks/s); each on_book reads the top of "
                         f"book; ops/s = records/s; {common}; target >= {TARGET_DISPATCH / 1e3:.0f}k/s: "
                         f"{'met' if met else 'MISSED'}",
             **tp, "callbacks_per_s": calls / seconds, "strategies": args.strategies, "batch": args.chunk,
             "target_ops_per_s": TARGET_DISPATCH, "target_met": met}]
    lat = _median_latency(t2t)
    met = lat["p50_ns"] <= TARGET_T2T_P50_NS
    rows.append({"name": "strategy.tick_to_trade.in_process",
                 "workload": f"one BOOK record per on_market call -> the trading strategy's on_book (1 of "
                             f"{args.strategies:,} registered) -> place (limits: rate, position) -> EngineLink "
                             f"(COMMAND queued for the in-process engine); {args.t2t_events:,} events per run, "
                             f"{common}; target p50 <= {TARGET_T2T_P50_NS / 1e3:.0f} us: "
                             f"{'met' if met else 'MISSED'}",
                 **lat, "samples": int(np.median([len(r) for r in t2t])), "target_p50_ns": TARGET_T2T_P50_NS,
                 "target_met": met})
    if loop_t2t is not None:
        where = (f"SDK Client over TCP loopback to an InProcessVenue (gateway + engine) in another process, "
                 f"{args.loopback_events:,} events at {args.loopback_rate:,.0f}/s, one run, {cores} cores")
        rows.append({"name": "strategy.tick_to_trade.loopback",
                     "workload": f"as .in_process, the order written by the Client (place_nowait) instead; {where}",
                     **latency_fields(loop_t2t), "samples": len(loop_t2t)})
        rows.append({"name": "strategy.order_to_ack.loopback",
                     "workload": f"those orders: Client write -> EXEC_ACCEPTED back in the runtime; {where}",
                     **latency_fields(loop_ack), "samples": len(loop_ack)})
    print_rows(rows)
    out = write_results(rows, args.json, "strategy")
    console.print(f"results: {out}")
    return 0
