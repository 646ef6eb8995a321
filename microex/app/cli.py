"""The `microex` command: one subcommand per job."""

from __future__ import annotations

import argparse
import sys

from microex.core.config import EngineConfig

_DEFAULTS = EngineConfig()


def _capacity_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-instruments", type=int, default=_DEFAULTS.max_instruments)
    p.add_argument("--max-orders", type=int, default=_DEFAULTS.max_orders,
                   help="resting orders across all books")
    p.add_argument("--max-levels", type=int, default=_DEFAULTS.max_levels, help="price levels per book side")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="microex", description="microex: exchange and trading stack")
    sub = parser.add_subparsers(dest="command", required=True)

    m = sub.add_parser("match", help="conformance CSV commands in (stdin or --input), events CSV out")
    m.add_argument("--input", help="command CSV file (default: stdin)")
    m.add_argument("--engine", choices=("numba", "reference"), default="numba")
    m.add_argument("--config", help="venue TOML: instruments, accounts, limits (turns risk checks on)")
    m.add_argument("--balances-out", help="write final balances as CSV account,asset,available,held")
    m.add_argument("--positions-out", help="write final positions as CSV (average cost, realized PnL)")
    _capacity_args(m)

    i = sub.add_parser("ingest", help="a conformance CSV through the real pipeline (rings, journal, engine process)")
    i.add_argument("--data", required=True, help="data directory (journal, snapshots)")
    i.add_argument("--input", required=True, help="command CSV file")
    i.add_argument("--fsync", default="batch", help="none | batch | interval:N (ms)")
    i.add_argument("--config", help="venue TOML (risk mode), as for `microex match`")
    i.add_argument("--quiet", action="store_true", help="no progress bar")
    _capacity_args(i)

    rp = sub.add_parser("replay", help="replay the journal from an empty state: `commands N digest HEX`")
    rp.add_argument("--data", required=True)
    rp.add_argument("--events-out", help="write the regenerated events (conformance events CSV)")
    rc = sub.add_parser("recover", help="newest snapshot + journal tail: `commands N digest HEX`")
    rc.add_argument("--data", required=True)

    sv = sub.add_parser("serve", help="the venue: engine process + gateway processes (binary order entry)")
    sv.add_argument("--config", help="TOML venue and serve config (default: the demo venue)")
    sv.add_argument("--data", help="data directory (default: [serve] data, or microex-data)")
    sv.add_argument("--host", help="listen address (default 127.0.0.1)")
    sv.add_argument("--bin-port", type=int, help="binary order-entry port (default 9001)")
    sv.add_argument("--http-port", type=int, help="HTTP and WebSocket port (default 8080)")
    sv.add_argument("--gateways", type=int, help="gateway processes sharing the ports (SO_REUSEPORT)")
    sv.add_argument("--colocated", action="store_true", default=None,
                    help="serve the binary port from the engine process (no gateway process: lowest latency)")
    sv.add_argument("--fsync", help="journal fsync policy: none, batch, interval:N (default batch)")
    sv.add_argument("--md-port", type=int, help="binary market-data feed port (default 9002, 0: none)")
    sv.add_argument("--md-record", help="record the market-data feed into files in this directory")
    sv.add_argument("--md-multicast", metavar="GROUP:PORT",
                    help="also publish the feed by UDP multicast, instrument i to GROUP+i (e.g. 239.77.0.0:9003)")
    sv.add_argument("--grpc-port", type=int, help="market-data feed over gRPC streaming (default 0: off)")
    sv.add_argument("--metrics-port", type=int, help="Prometheus /metrics port (default 9100, 0: off)")

    from microex.perf import loadtest

    loadtest.add_arguments(sub.add_parser("loadtest", help="load profiles (smoke, load, stress, soak, spike) "
                                                            "against a running venue"))

    from microex.app import live_demo

    live_demo.add_arguments(sub.add_parser("demo", help="the demo venue with simulated traders and the web "
                                                        "dashboard (make run)"))

    r = sub.add_parser("run", help="demo: generate an order stream, run it, print the book and trades")
    r.add_argument("--commands", type=int, default=1_000_000)
    r.add_argument("--seed", type=int, default=1)

    from microex.app import sim as sim_cmd

    sim_cmd.add_arguments(sub.add_parser("sim", help="a strategy file or example in simulation: report, JSON, PNG"))

    md = sub.add_parser("md", help="market data: replay a recording (serve --md-record DIR makes them)")
    msub = md.add_subparsers(dest="md_command", required=True)
    mr = msub.add_parser("replay", help="serve a recorded feed to subscribers, at its pace or faster")
    mr.add_argument("file", help="a .mdrec recording")
    mr.add_argument("--speed", type=float, default=1.0, help="1: original pace, 10: ten times faster, 0: at once")
    mr.add_argument("--host", default="127.0.0.1")
    mr.add_argument("--port", type=int, default=9002)
    mr.add_argument("--wait-subscribers", type=int, default=0, help="start once this many are connected")
    mr.add_argument("--linger", type=float, default=1.0, help="seconds to keep serving after the end")

    b = sub.add_parser("bench", help="benchmarks (results as JSON under bench/results/)")
    bsub = b.add_subparsers(dest="suite", required=True)
    bc = bsub.add_parser("core", help="core.match_mix: the matching engine against the reference")
    bc.add_argument("--json", help="write the results here")
    bc.add_argument("--commands", type=int, default=5_000_000)
    bc.add_argument("--reference-commands", type=int, default=1_000_000,
                    help="how much of the stream the reference matcher runs (it is ~50x slower)")
    bc.add_argument("--latency-commands", type=int, default=1_000_000,
                    help="commands timed one by one for the batch-1 latency percentiles")
    bc.add_argument("--runs", type=int, default=3, help="runs per variant; the median is reported")
    bc.add_argument("--seed", type=int, default=1)
    bc.add_argument("--input", help="also time a conformance-format CSV stream")
    bc.add_argument("--no-startup", action="store_true", help="skip the `microex match` start-up timing")
    from microex.perf import gateway_bench, indicators_bench, journal_bench, pipeline_bench, ring_bench

    ring_bench.add_arguments(bsub.add_parser("ring", help="ring.transfer and ring.pingpong vs multiprocessing"))
    indicators_bench.add_arguments(bsub.add_parser("indicators", help="indicators.<name>.stream and .batch "
                                                                    "beside TA-Lib"))
    journal_bench.add_arguments(bsub.add_parser("journal", help="journal.append per fsync policy, journal.replay"))
    pipeline_bench.add_arguments(bsub.add_parser("pipeline", help="pipeline.throughput per fsync policy"))
    gateway_bench.add_arguments(bsub.add_parser("gateway", help="gateway.order_to_ack latency at fixed rates, "
                                                            "gateway.max_rate, through microex serve"))
    from microex.perf import strategy_bench

    strategy_bench.add_arguments(bsub.add_parser("strategy", help="strategy.dispatch (1,000 strategies) and "
                                                              "strategy.tick_to_trade in process and over loopback"))
    from microex.perf import bench_all, md_bench

    md_bench.add_arguments(bsub.add_parser("md", help="md.fanout to N subscribers, md.idle_connections"))

    bench_all.add_arguments(bsub.add_parser("all", help="every suite into one bench/results/<date>-<host>.json, "
                                                        "the report, and rows more than 10% worse"))
    br = bsub.add_parser("report", help="docs/BENCHMARKS.md and a plot from bench/results/*.json")
    br.add_argument("--results", default="bench/results")
    br.add_argument("--out", default="docs/BENCHMARKS.md")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "match":
        from microex.app.match import main as match_main

        return match_main(args)
    if args.command == "ingest":
        from microex.app.ingest import main as ingest_main

        return ingest_main(args)
    if args.command in ("replay", "recover"):
        from microex.app.journal_cmds import main as journal_main

        return journal_main(args)
    if args.command == "loadtest":
        from microex.perf.loadtest import main as loadtest_main

        return loadtest_main(args)
    if args.command == "md":
        from microex.marketdata.replay import main as md_main

        return md_main(args)
    if args.command == "demo":
        from microex.app.live_demo import main as live_demo_main

        return live_demo_main(args)
    if args.command == "serve":
        from microex.app.serve import main as serve_main

        return serve_main(args)
    if args.command == "sim":
        from microex.app.sim import main as sim_main

        return sim_main(args)
    if args.command == "run":
        from microex.app.demo import main as demo_main

        return demo_main(args)
    if args.command == "bench" and args.suite == "core":
        from microex.perf.core_bench import main as bench_main

        return bench_main(args)
    if args.command == "bench" and args.suite in ("ring", "journal", "pipeline", "gateway", "indicators",
                                                  "strategy", "md"):
        import importlib

        return importlib.import_module(f"microex.perf.{args.suite}_bench").main(args)
    if args.command == "bench" and args.suite == "all":
        from microex.perf.bench_all import main as bench_all_main

        return bench_all_main(args)
    if args.command == "bench" and args.suite == "report":
        from microex.perf.report import main as report_main

        return report_main(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
