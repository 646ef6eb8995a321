"""`microex bench gateway`: order -> ack latency and the maximum order rate through `microex serve`.

Rows
- gateway.order_to_ack.rate_<N>      N orders/s for --seconds: latency from each order's
                                     scheduled send time to its EXEC_ACCEPTED (p50, p99,
                                     p99.9; no coordinated omission, see perf/loadgen.py),
                                     with the venue's latency setup: `colocated` (the engine
                                     process serves the binary port), busy_poll, the engine on
                                     one CPU and the load generator on the other
- gateway.order_to_ack.rate_<N>.gateway_process
                                     the same with a gateway process in front of the engine
                                     (busy_poll, engine and gateway pinned): two ring hops more
- gateway.order_to_ack.rate_<N>.fsync_batch
                                     the colocated setup at the lowest rate with the journal
                                     synced to disk before any event leaves the engine
- gateway.order_to_ack.rate_<N>.default_setup
                                     the lowest rate with `microex serve`'s defaults (a gateway
                                     process, processes sleep when idle): what an untuned venue gives
- gateway.max_rate                   orders/s acknowledged with pipelining (a window of
                                     unacknowledged orders), median of --runs, through a gateway
                                     process (engine and gateway on a core each)
- gateway.max_rate.colocated         the same through the colocated venue (one process, one core)
- gateway.cold.idle_<us>              the gateway's read path (in-process engine, no sockets) called
                                     back to back and after idling 100 µs / 1 ms
- gateway.baseline.<kind>.rate_<N>   the same load against less than a venue (perf/baseline_venues.py):
                                     `echo` (the floor of TCP + a Python event loop here) and
                                     `inprocess` (gateway + compiled core in one process)
Every row names the CPU the load generator used (cpu share of one core) and the venue's
processes used, read from /proc, so a saturated load generator shows.

Each venue is a real `microex serve` subprocess on a fresh data directory, with a bench
config (one instrument, two funded accounts, rate limit off, `expected_orders` sized for
everything the bench sends it); the load generator is another process, connected over loopback.
"""

from __future__ import annotations

import multiprocessing as mp
import statistics
import time

import numpy as np
from rich.console import Console
from rich.progress import Progress

from microex.perf.baseline_venues import baseline_main
from microex.perf.loadgen import loadgen_main
from microex.perf.serve_process import ServeProcess, free_port, tree_cpu_s
from microex.perf.results import latency_fields, plot_quantiles, print_rows, quantiles, write_results

RATES = (10_000, 50_000, 100_000)
KEYS = (b"bench-key-account-1", b"bench-key-account-2")
TARGET_P50_NS, TARGET_P99_NS, TARGET_RATE = 40_000, 100_000, 500_000
BASELINES = {
    "echo": "baseline: a uvloop server that acks each order with struct and nothing else (the machine's floor)",
    "spin_echo": "baseline: a server that acks each order with struct and nothing else, never sleeping, pinned "
                 "like the colocated engine (the floor of the latency setup)",
    "inprocess": "baseline: the gateway server over an in-process engine (no rings, engine process or journal)",
}

BENCH_CONFIG = """
[serve]
fsync = "{fsync}"
rate_per_s = 1e9
snapshot_every = 0
busy_poll = {busy_poll}
colocated = {colocated}
expected_orders = {expected_orders}
metrics_port = {metrics_port}
md_port = 0
{pinning}

[venue]
max_accounts = 10
default_max_open_orders = 0

[[instrument]]
symbol = "BENCH"
base = "B"
quote = "Q"
maker_fee_bps = 1
taker_fee_bps = 2

[[account]]
id = 1
api_key = "{k1}"
deposit = {{ B = 1000000000000000, Q = 1000000000000000 }}

[[account]]
id = 2
api_key = "{k2}"
deposit = {{ B = 1000000000000000, Q = 1000000000000000 }}
"""


def add_arguments(parser) -> None:
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--rates", default=",".join(str(r) for r in RATES), help="orders/s, comma-separated")
    parser.add_argument("--seconds", type=float, default=5.0, help="how long each fixed rate runs")
    parser.add_argument("--max-orders", type=int, default=1_000_000, help="orders per max-rate run")
    parser.add_argument("--runs", type=int, default=3, help="max-rate runs (median)")
    parser.add_argument("--no-fsync-row", action="store_true", help="skip the fsync=batch latency row")
    parser.add_argument("--no-baselines", action="store_true", help="skip the echo and in-process baselines")
    parser.add_argument("--port", type=int, default=0, help="binary port (default: a free one)")
    parser.add_argument("--colocated-cpu", type=int, default=0, help="the colocated latency setup's engine CPU")
    parser.add_argument("--engine-cpu", type=int, default=1, help="the gateway-process latency setup's engine CPU")
    parser.add_argument("--gateway-cpu", type=int, default=0, help="the gateway-process latency setup's gateway CPU")
    parser.add_argument("--loadgen-cpu", type=int, default=1, help="the load generator's CPU")


def _pinning(engine_cpu: int | None, gateway_cpu: int | None) -> str:
    lines = []
    if engine_cpu is not None:
        lines.append(f"engine_cpu = {engine_cpu}")
    if gateway_cpu is not None:
        lines.append(f"gateway_cpus = [{gateway_cpu}]")
    return "\n".join(lines)


class BenchVenue(ServeProcess):
    """`microex serve` with the bench config, in a subprocess; its Prometheus metrics on a free port."""

    def __init__(self, fsync: str, port: int, busy_poll: bool, engine_cpu: int | None = None,
                 gateway_cpu: int | None = None, colocated: bool = False, expected_orders: int = 1 << 16) -> None:
        self.busy_poll = busy_poll
        self.port = port or free_port()
        self.metrics_port = free_port()
        config = BENCH_CONFIG.format(fsync=fsync, k1=KEYS[0].decode(), k2=KEYS[1].decode(),
                                     busy_poll=str(busy_poll).lower(), colocated=str(colocated).lower(), expected_orders=expected_orders, pinning=_pinning(engine_cpu, gateway_cpu),
                                     metrics_port=self.metrics_port)
        super().__init__(config, [self.port, self.metrics_port], ["--bin-port", str(self.port), "--http-port", "0"],
                         "mx-gwbench-")

    def histograms(self) -> dict[str, dict[float, float]]:
        """The venue's latency histograms now: name -> {upper bound in s: cumulative count}."""
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10) as r:
            return parse_histograms(r.read().decode())


class BaselineVenue:
    """A perf/baseline_venues.py server in its own process (same interface as BenchVenue)."""

    def __init__(self, kind: str, cpu: int | None = None) -> None:
        ctx = mp.get_context("spawn")
        here, there = ctx.Pipe()
        self.stop = ctx.Event()
        self.proc = ctx.Process(target=baseline_main, args=(kind, KEYS, there, self.stop, cpu), name=f"baseline-{kind}")
        self.proc.start()
        if not here.poll(120):
            raise TimeoutError(f"the {kind} baseline did not start")
        self.port = here.recv()

    def cpu_s(self) -> float:
        return tree_cpu_s(self.proc.pid)

    def close(self) -> None:
        self.stop.set()
        self.proc.join(10)
        if self.proc.is_alive():
            self.proc.kill()


VENUE_HISTOGRAMS = {  # the venue's own metrics (pipeline/metrics.py): where the time goes inside it
    "microex_gateway_order_to_ack_seconds": "venue_order_to_ack",
    "microex_gateway_read_seconds": "gateway_read",
    "microex_engine_batch_seconds": "engine_batch",
    "microex_journal_append_seconds": "journal_append",
}


def parse_histograms(text: str) -> dict[str, dict[float, float]]:
    """Prometheus text -> {histogram name: {le: cumulative count}}, summed over labels other than le."""
    out: dict[str, dict[float, float]] = {}
    for line in text.splitlines():
        name, sep, rest = line.partition("_bucket{")
        if not sep or name not in VENUE_HISTOGRAMS:
            continue
        labels, _, value = rest.rpartition("} ")
        le = labels.split('le="')[1].split('"')[0]
        bounds = out.setdefault(name, {})
        key = float("inf") if le == "+Inf" else float(le)
        bounds[key] = bounds.get(key, 0.0) + float(value)
    return out


def histogram_quantile(before: dict[float, float], after: dict[float, float], q: float) -> float | None:
    """The upper bound (ns) of the bucket holding quantile q of what was counted between two scrapes
    (0.0: nothing counted; None: above the largest finite bucket)."""
    delta = sorted((le, after[le] - before.get(le, 0.0)) for le in after)
    total = delta[-1][1] if delta else 0.0
    for le, count in delta:
        if total and count >= q * total:
            return None if le == float("inf") else le * 1e9
    return 0.0


def _run_plan(venue: BenchVenue, plan: list[dict], progress: Progress, task, cpu: int | None) -> list[dict]:
    ctx = mp.get_context("spawn")
    here, there = ctx.Pipe()
    proc = ctx.Process(target=loadgen_main, args=(there, "127.0.0.1", venue.port, KEYS, plan, cpu),
                       name="microex-loadgen")
    proc.start()
    there.close()  # ours closed: a load generator that dies ends recv() with EOFError instead of a hang

    def recv() -> dict:
        try:
            return here.recv()
        except EOFError:
            proc.join(5)
            raise RuntimeError(f"the load generator died (exit code {proc.exitcode})") from None

    hists = getattr(venue, "histograms", None)
    results = []
    for _ in plan:
        res = recv()
        if res.get("starting"):  # the load generator's clock starts: so does the venue's CPU count
            cpu0, h0 = venue.cpu_s(), hists() if hists else None
            res = recv()
        else:
            cpu0, h0 = venue.cpu_s(), hists() if hists else None
        res["venue_cpu_s"] = venue.cpu_s() - cpu0
        if h0 is not None:
            h1 = hists()
            res["venue_hist"] = {f"{short}_{tag}_le_ns": histogram_quantile(h0.get(name, {}), h1.get(name, {}), q)
                                 for name, short in VENUE_HISTOGRAMS.items() for tag, q in (("p50", 0.5), ("p99", 0.99))}
        if "error" in res:
            proc.join(5)
            raise RuntimeError(f"load generator: {res['error']}")
        results.append(res)
        progress.advance(task)
    proc.join(30)
    return results


class _NullTransport:
    def write(self, data) -> None:
        pass

    def is_closing(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 0

    def close(self) -> None:
        pass


def _cold_rows(orders: int = 2000) -> list[dict]:
    """gateway.cold.idle_<us>: one read's work (session, codec, in-process core, reports) after idling.

    The gateway server's `_received` is called directly (no sockets) with one NEW_ORDER,
    back to back and after sleeping 100 µs and 1 ms: on a VM an idle process runs its
    first microseconds slower (cold caches, a halted vCPU), which is most of the gap
    between the back-to-back cost and the loopback latency at low rates."""
    from microex.gateway.inprocess import InProcessVenue
    from microex.protocol.binary import PROTOCOL_VERSION, FrameEncoder, MsgType

    venue = InProcessVenue({KEYS[0]: 1}, rate_per_s=1e9)
    server = venue.server
    venue.link.start(None, server.on_events)
    conn = type("Conn", (), {})()
    conn.conn_id, conn.transport = 1, _NullTransport()
    server._connected(conn)
    enc = FrameEncoder()
    server._received(conn, enc.message(MsgType.LOGIN, api_key=KEYS[0], flags=0, version=PROTOCOL_VERSION))
    rows, cid = [], 1
    for gap_us in (0, 100, 1000):
        samples = np.zeros(orders, dtype=np.int64)
        for i in range(orders):
            msg = enc.message(MsgType.NEW_ORDER, client_order_id=cid, price_ticks=1000, qty_lots=1, instrument=1,
                              side=1 + i % 2, ord_type=1, tif=1)
            cid += 1
            if gap_us:
                time.sleep(gap_us * 1e-6)
            t = time.perf_counter_ns()
            server._received(conn, msg)
            samples[i] = time.perf_counter_ns() - t
        samples = samples[orders // 10:]
        rows.append({"name": f"gateway.cold.idle_{gap_us}us",
                     "workload": f"one NEW_ORDER through the gateway server's read path with an in-process engine "
                                 f"(buy/sell alternating: every second one trades), called directly after "
                                 f"idling {gap_us} µs; {orders} calls, first 10% dropped",
                     **latency_fields(samples)})
    return rows


def _latency_row(name: str, rate: int, res: dict, fsync: str, seconds: float, what: str = "") -> dict:
    lat = res["latency_ns"]
    warm = len(lat) // 10  # the first tenth warms caches and the TCP path
    lat = lat[warm:]
    p50, p99, p999 = (float(v) for v in np.percentile(lat, [50, 99, 99.9]))
    s50, s99 = (float(v) for v in np.percentile(res["socket_latency_ns"][warm:], [50, 99]))
    inside = res.get("venue_hist", {})
    inside_text = ""
    if inside:
        def le(key: str) -> str:
            v = inside[key]
            return "> 4 s" if v is None else f"<= {v / 1e3:.0f} µs"

        inside_text = (f"; inside the venue (its metrics, power-of-two buckets: upper bounds) p50 order->ack "
                       f"{le('venue_order_to_ack_p50_le_ns')}, gateway read {le('gateway_read_p50_le_ns')}, "
                       f"engine batch {le('engine_batch_p50_le_ns')} of which journal append "
                       f"{le('journal_append_p50_le_ns')}")
    late50, late99 = (float(v) for v in np.percentile(res["send_late_ns"][warm:], [50, 99]))
    met = p50 <= TARGET_P50_NS and p99 <= TARGET_P99_NS
    return {
        "name": name,
        "workload": f"{what or 'microex serve'}: {rate:,} orders/s for {seconds:g} s over loopback (2 sessions, "
                    f"buy/sell pairs that trade), journal fsync={fsync}; latency = ack receive time - scheduled "
                    f"send time (no coordinated omission), first 10% dropped; load generator CPU {res['cpu_s'] / res['wall_s']:.0%} of a "
                    f"core, venue processes {res['venue_cpu_s'] / res['wall_s']:.0%}; sends late by "
                    f"{late50 / 1e3:.1f} µs p50, {late99 / 1e3:.1f} µs p99; to the ack's arrival in the "
                    f"client's socket (kernel timestamp, without the load generator's own wake-up): "
                    f"p50 {s50 / 1e3:.1f} µs, p99 {s99 / 1e3:.1f} µs{inside_text}; target p50 <= 40 µs and "
                    f"p99 <= 100 µs at 50k/s: {'met' if met else 'not met'} at this rate",
        "ops_per_s": float(rate), "mean_ns": float(lat.mean()), "p50_ns": p50, "p99_ns": p99, "p999_ns": p999,
        "loadgen_cpu": res["cpu_s"] / res["wall_s"], "venue_cpu": res["venue_cpu_s"] / res["wall_s"],
        "rejects": res["rejects"], "send_late_p50_ns": late50, "send_late_p99_ns": late99,
        "socket_p50_ns": s50, "socket_p99_ns": s99, "latency_quantiles_ns": quantiles(lat), **inside,
    }


LATENCY_SETUP = ("microex serve --colocated, latency setup (busy_poll: the engine process serves the binary port "
                 "itself and never sleeps, on CPU {c}; load generator on CPU {l}, polling too)")
PROCESS_SETUP = ("microex serve with a gateway process, latency setup (busy_poll: engine on CPU {e} and gateway on "
                 "CPU {g} never sleep; load generator on CPU {l}, polling too)")
DEFAULT_SETUP = "microex serve, default setup (processes sleep when idle, no pinning; load generator sleeps in select)"


def _max_row(name: str, maxed: list[dict], setup: str, args) -> dict:
    rates_s = [m["orders"] / m["wall_s"] for m in maxed]
    best = statistics.median(rates_s)
    mid = maxed[rates_s.index(sorted(rates_s)[len(rates_s) // 2])]
    return {
        "name": name,
        "workload": f"{setup}: {args.max_orders:,} orders as fast as acknowledged, pipelined (at most "
                    f"8,192 unacknowledged), 2 sessions, journal fsync=none; median of "
                    f"{args.runs}; load generator CPU {mid['cpu_s'] / mid['wall_s']:.0%} of a core, venue "
                    f"processes {mid['venue_cpu_s'] / mid['wall_s']:.0%}; target >= 500k/s: "
                    f"{'met' if best >= TARGET_RATE else 'not met'}",
        "ops_per_s": best, "ns_per_op": 1e9 / best, "runs_ops_per_s": rates_s,
        "loadgen_cpu": mid["cpu_s"] / mid["wall_s"], "venue_cpu": mid["venue_cpu_s"] / mid["wall_s"],
    }


def main(args) -> int:
    console = Console(stderr=True)
    rates = [int(r) for r in args.rates.split(",") if r]
    plan = [{"mode": "fixed", "rate": r, "count": int(r * args.seconds), "spin": True} for r in rates]
    slow_plan = [{"mode": "fixed", "rate": rates[0], "count": int(rates[0] * args.seconds)}]
    max_plan = [{"mode": "max", "count": args.max_orders} for _ in range(args.runs)]
    # the tables are sized for everything a venue is sent here (latency steps, then max-rate runs)
    expected = sum(p["count"] for p in plan) + sum(p["count"] for p in max_plan)
    colocated_setup = LATENCY_SETUP.format(c=args.colocated_cpu, l=args.loadgen_cpu)
    process_setup = PROCESS_SETUP.format(e=args.engine_cpu, g=args.gateway_cpu, l=args.loadgen_cpu)
    rows = []
    steps = 2 * (len(plan) + len(max_plan)) + 1 + (0 if args.no_fsync_row else 1)
    steps += 0 if args.no_baselines else len(rates) * len(BASELINES)
    with Progress(console=console) as progress:
        task = progress.add_task("gateway bench", total=steps)
        for colocated in (True, False):
            if colocated:
                venue = BenchVenue("none", args.port, True, args.colocated_cpu, None, colocated=True,
                                   expected_orders=expected)
            else:
                venue = BenchVenue("none", args.port, True, args.engine_cpu, args.gateway_cpu,
                                   expected_orders=expected)
            try:
                fixed = _run_plan(venue, plan, progress, task, args.loadgen_cpu)
                maxed = _run_plan(venue, max_plan, progress, task, args.loadgen_cpu)
            finally:
                venue.close()
            setup, tag = (colocated_setup, "") if colocated else (process_setup, ".gateway_process")
            for r, res in zip(rates, fixed):
                rows.append(_latency_row(f"gateway.order_to_ack.rate_{r}{tag}", r, res, "none", args.seconds, setup))
            rows.append(_max_row("gateway.max_rate" + (".colocated" if colocated else ""), maxed, setup, args))
        r = rates[0]
        if not args.no_fsync_row:
            venue = BenchVenue("batch", args.port, True, args.colocated_cpu, None, colocated=True,
                               expected_orders=expected)
            try:
                [res] = _run_plan(venue, [dict(plan[0])], progress, task, args.loadgen_cpu)
            finally:
                venue.close()
            rows.append(_latency_row(f"gateway.order_to_ack.rate_{r}.fsync_batch", r, res, "batch", args.seconds,
                                     colocated_setup))
        venue = BenchVenue("none", args.port, False)
        try:
            [res] = _run_plan(venue, slow_plan, progress, task, None)
        finally:
            venue.close()
        rows.append(_latency_row(f"gateway.order_to_ack.rate_{r}.default_setup", r, res, "none", args.seconds,
                                 DEFAULT_SETUP))
        if not args.no_baselines:
            rows.extend(_cold_rows())
            for kind, what in BASELINES.items():
                spin = kind == "spin_echo"  # set up as the colocated latency rows are
                venue = BaselineVenue(kind, args.colocated_cpu if spin else None)
                try:
                    results = _run_plan(venue, [dict(p, spin=spin) for p in plan], progress, task,
                                        args.loadgen_cpu if spin else None)
                finally:
                    venue.close()
                loadgen = (f"; load generator on CPU {args.loadgen_cpu}, polling too" if spin
                           else "; load generator sleeps in select")
                for r, res in zip(rates, results):
                    rows.append(_latency_row(f"gateway.baseline.{kind}.rate_{r}", r, res, "none (no journal)",
                                             args.seconds, what + loadgen))
    print_rows(rows)
    out = write_results(rows, args.json, "gateway")
    console.print(f"results written to {out}")
    at = 50_000 if 50_000 in rates else rates[len(rates) // 2]
    try:
        plot_quantiles([r for r in rows if r["name"].startswith(("gateway.order_to_ack.rate_", "gateway.baseline."))
                        and r["name"].split(".rate_")[1].split(".")[0] == str(at)], out.with_suffix(".png"),
                       title=f"microex bench gateway: order -> ack at {at:,} orders/s, venue setups and floors",
                       ylabel="scheduled send -> ack read (µs)", scale_ns=1e3,
                       targets=((TARGET_P50_NS / 1e3, "target p50 40 µs"), (TARGET_P99_NS / 1e3, "target p99 100 µs")),
                       log_y=True)
        console.print(f"latency plot: {out.with_suffix('.png')}")
    except ImportError:  # matplotlib is the bench extra's
        pass
    return 0
