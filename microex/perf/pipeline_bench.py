"""`microex bench pipeline`: commands/s through inbound ring -> engine process
(sequencer, journal, core) -> outbound ring, per fsync policy.

This process is both the producer (it writes core.match_mix into the inbound
ring in chunks of 4,096) and the outbound consumer (it drains events as it
goes), so the engine process has the other core to itself. Timed from the first
write to the BATCH event of the last command; the data directory is on the
real disk. Median of --runs runs, each on a fresh data directory.
"""

from __future__ import annotations

import os
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
# tuning knobs, each measured with fsync=batch: (row suffix, LocalPipeline options, what it is)
KNOBS = (
    ("pinned", {"cpu": 1}, "engine pinned to core 1 (os.sched_setaffinity), this process to core 0"),
    ("gc_unfrozen", {"gc_freeze": False}, "engine without gc.freeze() after start-up"),
)


def add_arguments(p) -> None:
    p.add_argument("--json", help="write the results here")
    p.add_argument("--commands", type=int, default=1_000_000)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--batch", type=int, default=16384, help="engine batch: most commands per journal frame")


def _one_run(w, policy: str, batch: int, **knobs) -> float:
    root = Path(tempfile.mkdtemp(prefix="mx-pipe-", dir=Path.home()))
    mine = os.sched_getaffinity(0)
    try:
        data = DataDir(root / "data")
        data.create(w.config(), None)
        if "cpu" in knobs:
            os.sched_setaffinity(0, {0})
        with LocalPipeline(str(data.root), fsync=policy, batch=batch, **knobs) as pipe:
            pipe.feed(w.setup)
            pipe.wait_for(len(w.setup))
            t0 = time.perf_counter()
            pipe.feed(w.cmds)
            pipe.wait_for(len(w.setup) + len(w.cmds))
            return time.perf_counter() - t0
    finally:
        os.sched_setaffinity(0, mine)
        shutil.rmtree(root, ignore_errors=True)


def main(args) -> int:
    console = Console(stderr=True)
    with console.status("generating core.match_mix"):
        w = match_mix(args.commands)
    rows = []
    with Progress(console=console) as progress:
        task = progress.add_task("pipeline runs", total=(len(POLICIES) + len(KNOBS)) * args.runs)
        times: dict[str, list[float]] = {p: [] for p in POLICIES}
        knob_times: dict[str, list[float]] = {k[0]: [] for k in KNOBS}
        for _ in range(args.runs):
            for policy in POLICIES:
                times[policy].append(_one_run(w, policy, args.batch))
                progress.advance(task)
            for name, options, _ in KNOBS:
                knob_times[name].append(_one_run(w, "batch", args.batch, **options))
                progress.advance(task)
    for policy in POLICIES:
        rows.append({
            "name": f"pipeline.throughput.fsync_{policy.replace(':', '_')}",
            "workload": f"{len(w.cmds)} commands of core.match_mix: inbound ring -> engine process (sequencer, "
                        f"journal with fsync={policy}, core) -> outbound ring; engine batch {args.batch}; producer "
                        f"and consumer in one process; ext4 data dir; median of {args.runs}",
            **throughput_fields(len(w.cmds), statistics.median(times[policy])),
        })
    base = statistics.median(times["batch"])
    for name, _, what in KNOBS:
        t = statistics.median(knob_times[name])
        rows.append({
            "name": f"pipeline.throughput.fsync_batch.{name}",
            "workload": f"as pipeline.throughput.fsync_batch, with the {what}; ratio = its rate / the default's; "
                        f"median of {args.runs}",
            **throughput_fields(len(w.cmds), t), "ratio": base / t, "ratio_vs": "default settings",
        })
    print_rows(rows)
    out = write_results(rows, args.json, "pipeline")
    console.print(f"results written to {out}")
    return 0
