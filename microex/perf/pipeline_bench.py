"""`microex bench pipeline`: commands/s through inbound ring -> engine process
(sequencer, journal, core) -> outbound ring, per fsync policy.

This process is both the producer (it writes core.match_mix into the inbound
ring in chunks of 4,096) and the outbound consumer (it drains events as it
goes), so the engine process has the other core to itself. Timed from the first
write to the BATCH event of the last command; the data directory is on the
real disk. Median of --runs runs, each on a fresh data directory.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.progress import Progress

from microex.perf.results import print_rows, throughput_fields, write_results
from microex.perf.workload import match_mix
from microex.pipeline.datadir import DataDir
from microex.pipeline.local import LocalPipeline

POLICIES = ("none", "batch", "interval:5")


def add_arguments(p) -> None:
    p.add_argument("--json", help="write the results here")
    p.add_argument("--commands", type=int, default=1_000_000)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--batch", type=int, default=16384, help="engine batch: most commands per journal frame")


def _one_run(w, policy: str, batch: int) -> float:
    root = Path(tempfile.mkdtemp(prefix="mx-pipe-", dir=Path.home()))
    try:
        data = DataDir(root / "data")
        data.create(w.config(), None)
        with LocalPipeline(str(data.root), fsync=policy, batch=batch) as pipe:
            pipe.feed(w.setup)
            pipe.wait_for(len(w.setup))
            t0 = time.perf_counter()
            pipe.feed(w.cmds)
            pipe.wait_for(len(w.setup) + len(w.cmds))
            return time.perf_counter() - t0
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main(args) -> int:
    console = Console(stderr=True)
    with console.status("generating core.match_mix"):
        w = match_mix(args.commands)
    rows = []
    with Progress(console=console) as progress:
        task = progress.add_task("pipeline runs", total=len(POLICIES) * args.runs)
        times: dict[str, list[float]] = {p: [] for p in POLICIES}
        for _ in range(args.runs):
            for policy in POLICIES:
                times[policy].append(_one_run(w, policy, args.batch))
                progress.advance(task)
    for policy in POLICIES:
        rows.append({
            "name": f"pipeline.throughput.fsync_{policy.replace(':', '_')}",
            "workload": f"{len(w.cmds)} commands of core.match_mix: inbound ring -> engine process (sequencer, "
                        f"journal with fsync={policy}, core) -> outbound ring; engine batch {args.batch}; producer "
                        f"and consumer in one process; ext4 data dir; median of {args.runs}",
            **throughput_fields(len(w.cmds), statistics.median(times[policy])),
        })
    print_rows(rows)
    out = write_results(rows, args.json, "pipeline")
    console.print(f"results written to {out}")
    return 0
