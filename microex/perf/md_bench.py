"""`microex bench md`: market-data fan-out to many subscribers, and idle subscribed connections.

Rows
- md.fanout.subs_<N>   N subscribers (in --procs load processes, perf/md_load.py), each on one
                       of --instruments instruments, while a driver publishes --rate level
                       updates/s through the order entry of a real `microex serve`:
                       ops_per_s = increments delivered per second over all subscribers;
                       p50/p99 = order entry -> subscriber receive of sampled increments;
                       plus the share of the expected deliveries that arrived, what conflation
                       did (CONFLATED statuses, RESYNCs, connections dropped), the CPU of the
                       subscribers' processes and of the venue's, and venue memory per subscriber
- md.fanout.subs_<N>.multicast  the same, each subscriber a UDP receiver of its instrument's
                       multicast group (serve --md-multicast; marketdata/multicast.py): one
                       datagram per instrument reaches all of its subscribers
- md.idle_connections  --idle connections subscribed and held (no updates): how many stayed,
                       and venue memory per connection
- md.baseline.floor_subs_<N>  the same subscribers fed by md_floor.py: one process that makes the
                       updates itself and sends them as the stage does, with no venue behind it:
                       the floor of this fan-out design on this machine (like bench gateway's echo)
Targets (issue #7): 1,000 subscribers over 10 instruments at 10k updates/s (1M delivered/s),
p99 <= 5 ms; 10,000 idle subscribed connections. On a 2-core machine the subscribers' side,
the driver and the venue share the cores: the rows say how much each used.
"""

from __future__ import annotations

import multiprocessing as mp
import socket
import time

import numpy as np
from rich.console import Console
from rich.progress import Progress

from microex.perf.md_floor import FloorServer
from microex.perf.md_load import C_CONFLATED, C_INCREMENTS, C_RESYNC, driver_main, raise_fd_limit, subscribers_main
from microex.perf.results import plot_quantiles, print_rows, quantiles, write_results
from microex.perf.serve_process import ServeProcess, free_port

KEY = "md-bench-driver-key-1"


def add_arguments(parser) -> None:
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--subs", default="100,1000", help="subscriber counts, comma-separated")
    parser.add_argument("--rate", type=float, default=10_000.0, help="published level updates per second")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--instruments", type=int, default=10)
    parser.add_argument("--procs", type=int, default=2, help="subscriber load processes")
    parser.add_argument("--idle", type=int, default=10_000, help="idle subscribed connections (0: skip)")
    parser.add_argument("--no-floor", dest="floor", action="store_false",
                        help="skip the md.baseline.floor_subs_<N> rows (the fan-out with no venue)")
    parser.add_argument("--no-multicast", dest="multicast", action="store_false",
                        help="skip the md.fanout.subs_<N>.multicast rows")
    parser.add_argument("--no-tcp", dest="tcp", action="store_false",
                        help="skip the md.fanout.subs_<N> rows (subscribers over TCP)")


def _config(instruments: int) -> str:
    # engine_spin_us = 0: the engine sleeps between batches instead of polling, which leaves the
    # second core to the market-data stage and the subscribers (the order path is not measured here)
    lines = ["[serve]", 'fsync = "none"', "rate_per_s = 1e9", "metrics_port = 0", "http_port = 0",
             "engine_spin_us = 0", "", "[venue]", "max_accounts = 4", "default_max_open_orders = 0", ""]
    for i in range(1, instruments + 1):
        lines += ["[[instrument]]", f'symbol = "MD{i}"', f'base = "B{i}"', 'quote = "Q"', ""]
    lines += ["[[account]]", "id = 1", f'api_key = "{KEY}"', "deposit = { Q = 1000000000000000 }", ""]
    return "\n".join(lines)


class MdVenue(ServeProcess):
    def __init__(self, instruments: int, multicast: bool = True) -> None:
        self.bin_port, self.md_port = free_port(), free_port()
        flags = ["--bin-port", str(self.bin_port), "--md-port", str(self.md_port)]
        self.multicast = None
        if multicast:  # a free UDP port: concurrent runs on one host do not hear each other
            self.multicast = ("239.77.0.0", free_port(socket.SOCK_DGRAM))
            flags += ["--md-multicast", f"{self.multicast[0]}:{self.multicast[1]}"]
        super().__init__(_config(instruments), [self.md_port, self.bin_port], flags, "mx-mdbench-")


class Subscribers:
    """--procs load processes holding `n` subscribers round-robin over the instruments."""

    def __init__(self, venue: MdVenue, n: int, instruments: int, procs: int, multicast: bool = False) -> None:
        ctx = mp.get_context("spawn")
        self.pipes, self.procs = [], []
        for p in range(procs):
            mine = [(j % instruments) + 1 for j in range(p, n, procs)]
            here, there = ctx.Pipe()
            proc = ctx.Process(target=subscribers_main, args=(there, "127.0.0.1", venue.md_port, mine),
                               kwargs={"multicast": venue.multicast if multicast else None},
                               name=f"md-subscribers-{p}")
            proc.start()
            self.pipes.append(here)
            self.procs.append(proc)
        self.connected = sum(self._recv(pipe, 120)["connected"] for pipe in self.pipes)

    @staticmethod
    def _recv(pipe, timeout: float):
        if not pipe.poll(timeout):
            raise TimeoutError("a subscriber process did not answer")
        return pipe.recv()

    def report(self) -> list[dict]:
        for pipe in self.pipes:
            pipe.send("report")
        return [self._recv(pipe, 60) for pipe in self.pipes]

    def wait_synced(self, n: int, timeout: float = 120) -> int:
        deadline = time.monotonic() + timeout
        while True:
            synced = sum(r["synced"] for r in self.report())
            if synced >= n or time.monotonic() > deadline:
                return synced
            time.sleep(0.5)

    def count(self) -> None:
        for pipe in self.pipes:
            pipe.send("count")

    def stop(self) -> None:
        for pipe in self.pipes:
            pipe.send("stop")
        for proc in self.procs:
            proc.join(30)
            if proc.is_alive():
                proc.kill()


def _fanout_row(args, venue: MdVenue, n: int, multicast: bool = False) -> dict:
    rss0 = venue.rss()
    subs = Subscribers(venue, n, args.instruments, args.procs, multicast)
    try:
        synced = subs.wait_synced(n)
        rss1 = venue.rss()
        ctx = mp.get_context("spawn")
        here, there = ctx.Pipe()
        driver = ctx.Process(target=driver_main, args=(there, "127.0.0.1", venue.bin_port, KEY.encode(), args.rate,
                                                       args.seconds, args.instruments), name="md-driver")
        driver.start()
        assert here.recv() == "ready"
        subs.count()
        cpu0, udp0 = venue.cpu_s(), udp_receive_drops()
        here.send("go")
        done = here.recv()
        time.sleep(1.0)  # what was published reaches the subscribers
        venue_cpu = venue.cpu_s() - cpu0
        udp_drops = udp_receive_drops() - udp0
        reports = subs.report()
        driver.join(10)
    finally:
        subs.stop()
    wall = done["wall_s"]
    delivered, expected, samples, p50, p99, sub_cpu = _delivery(reports, done["commands"] * n / args.instruments, wall)
    per_sub = np.concatenate([r["per_sub"] for r in reports]) / wall
    conflated = sum(r["counters"][C_CONFLATED] for r in reports)
    resyncs = sum(r["counters"][C_RESYNC] for r in reports)
    dropped = sum(r["closed"] for r in reports)
    how = "UDP multicast receivers ({} joined; they count, they do not recover)" if multicast else "TCP subscribers ({} synced)"
    return {
        "name": f"md.fanout.subs_{n}" + (".multicast" if multicast else ""),
        "workload": f"{n} {how.format(synced)} in {args.procs} processes, each on one of {args.instruments} "
                    f"instruments; {done['commands']:,} level updates published at {args.rate:,.0f}/s through order "
                    f"entry; delivered {delivered:,} of {expected:,.0f} expected ({delivered / expected:.1%}); "
                    f"conflation: {conflated} CONFLATED, {resyncs} RESYNC, {dropped} dropped; "
                    + (f"{udp_drops} datagrams dropped by full receive buffers (host-wide); " if multicast else "")
                    + "latency = order entry "
                    f"-> subscriber receive (sampled); subscribers' CPU {sub_cpu:.0%} of a core, venue processes "
                    f"{venue_cpu / (wall + 1.0):.0%}; venue memory {(rss1 - rss0) / max(n, 1) / 1024:.0f} KiB per "
                    f"subscriber; targets (1,000 subs): 1M/s delivered, p99 <= 5 ms",
        "ops_per_s": delivered / wall, "p50_ns": p50, "p99_ns": p99, "mean_ns": float(samples.mean()) if len(samples)
        else 0.0, "delivered_fraction": delivered / expected, "published_per_s": done["commands"] / wall,
        "subscriber_min_per_s": float(per_sub.min()) if len(per_sub) else 0.0, "conflated": conflated,
        "resyncs": resyncs, "dropped": dropped, "subscriber_cpu": sub_cpu,
        **({"udp_receive_drops": udp_drops} if multicast else {}), "venue_cpu": venue_cpu / (wall + 1.0),
        "venue_bytes_per_subscriber": (rss1 - rss0) / max(n, 1), "latency_quantiles_ns": quantiles(samples),
    }


def udp_receive_drops() -> int:
    """The kernel's count of UDP datagrams dropped for a full receive buffer (RcvbufErrors, host-wide)."""
    try:
        lines = [ln.split() for ln in open("/proc/net/snmp") if ln.startswith("Udp:")]
        return int(lines[1][lines[0].index("RcvbufErrors")])
    except (OSError, ValueError, IndexError):
        return 0


def plot_latency(rows: list[dict], out) -> None:
    """Latency quantiles of the fan-out rows, venue and floor side by side (a PNG)."""
    plot_quantiles(rows, out, title="microex bench md: the venue's fan-out and the floor (no venue)",
                   ylabel="publish -> subscriber receive (ms)", scale_ns=1e6,
                   targets=((5.0, "target p99 5 ms (1,000 subscribers)"),))


def _delivery(reports: list[dict], expected: float, wall: float):
    """(delivered, expected, latency samples, p50, p99, subscribers' CPU share) of a window's reports."""
    delivered = sum(r["counters"][C_INCREMENTS] for r in reports)
    samples = np.concatenate([r["samples"] for r in reports]) if reports else np.zeros(0)
    p50, p99 = (float(v) for v in np.percentile(samples, [50, 99])) if len(samples) else (0.0, 0.0)
    sub_cpu = sum(r["cpu_s"] for r in reports) / (wall + 1.0)  # + the 1 s the last updates get to arrive
    return delivered, expected, samples, p50, p99, sub_cpu


def _floor_row(args, floor: FloorServer, n: int) -> dict:
    subs = Subscribers(floor, n, args.instruments, args.procs)
    try:
        synced = subs.wait_synced(n)
        subs.count()
        done = floor.run(args.rate, args.seconds)
        time.sleep(1.0)
        reports = subs.report()
    finally:
        subs.stop()
    wall = done["wall_s"]
    delivered, expected, samples, p50, p99, sub_cpu = _delivery(reports, done["made"] * n / args.instruments, wall)
    return {
        "name": f"md.baseline.floor_subs_{n}",
        "workload": f"the floor: no venue, one process making {args.rate:,.0f} level updates/s itself and "
                    f"sending them as the stage does (per instrument, one send_each per step) to {n} subscribers "
                    f"({synced} synced) in {args.procs} processes; delivered {delivered:,} of {expected:,.0f} "
                    f"expected ({delivered / expected:.1%}); {done['short']} short sends; latency = made -> "
                    f"subscriber receive (sampled); subscribers' CPU {sub_cpu:.0%} of a core",
        "ops_per_s": delivered / wall, "p50_ns": p50, "p99_ns": p99,
        "mean_ns": float(samples.mean()) if len(samples) else 0.0, "delivered_fraction": delivered / expected,
        "subscriber_cpu": sub_cpu, "short_sends": done["short"], "latency_quantiles_ns": quantiles(samples),
    }


def _idle_row(args, venue: MdVenue) -> dict:
    rss0 = venue.rss()
    subs = Subscribers(venue, args.idle, args.instruments, args.procs)
    try:
        synced = subs.wait_synced(args.idle, timeout=300)
        time.sleep(5.0)
        reports = subs.report()
        rss1 = venue.rss()
    finally:
        subs.stop()
    held = subs.connected - sum(r["closed"] for r in reports)
    return {"name": "md.idle_connections",
            "workload": f"{args.idle:,} connections opened and subscribed (book) over {args.procs} processes; "
                        f"{synced:,} got their snapshot; {held:,} still open after 5 s idle; venue memory "
                        f"{(rss1 - rss0) / max(args.idle, 1) / 1024:.1f} KiB per connection; target 10,000",
            "connections": held, "synced": synced, "venue_bytes_per_connection": (rss1 - rss0) / max(args.idle, 1)}


def main(args) -> int:
    console = Console(stderr=True)
    raise_fd_limit()
    counts = [int(x) for x in args.subs.split(",") if x]
    rows = []
    with Progress(console=console) as progress:
        kinds = [m for m, on in ((False, args.tcp), (True, args.multicast)) if on]
        task = progress.add_task("md bench", total=len(counts) * (len(kinds) + args.floor) + (1 if args.idle else 0))
        for multicast in kinds:  # a venue each: the TCP rows run without a multicast publisher
            venue = MdVenue(args.instruments, multicast)
            try:
                for n in counts:
                    rows.append(_fanout_row(args, venue, n, multicast))
                    progress.advance(task)
                if args.idle and not multicast:
                    rows.append(_idle_row(args, venue))
                    progress.advance(task)
            finally:
                venue.close()
        if args.idle and not args.tcp:
            venue = MdVenue(args.instruments, False)
            try:
                rows.append(_idle_row(args, venue))
                progress.advance(task)
            finally:
                venue.close()
        if args.floor:
            floor = FloorServer(args.instruments)
            try:
                for n in counts:
                    rows.append(_floor_row(args, floor, n))
                    progress.advance(task)
            finally:
                floor.close()
    print_rows(rows)
    for r in rows:
        console.print(f"{r['name']}: {r['workload']}")
    out = write_results(rows, args.json, "md")
    console.print(f"results written to {out}")
    try:
        plot_latency(rows, out.with_suffix(".png"))
        console.print(f"latency plot: {out.with_suffix('.png')}")
    except ImportError:  # matplotlib is the bench extra's
        pass
    return 0
