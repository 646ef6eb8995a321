"""`microex bench journal`: appending to the journal and replaying it, on a real disk.

Rows:
- journal.append.<policy>.batch_<N>  policy none / batch / interval_5 (fsync none, batch,
                                     interval:5), N = 4,096 and 256 records per append:
                                     commands/s appending --commands records to a fresh
                                     journal, median of --runs
- journal.commit.batch_<N>           latency of one append with fsync=batch (writev +
                                     fdatasync: what a group commit waits for), all runs
- journal.replay                     commands/s of replay_batches over a whole journal
                                     (read + CRC checks), median of --runs
The records are generated (and their bytes touched) before any timing. Journals go in
temp dirs on a real filesystem, not tmpfs, where fdatasync would cost nothing; the
filesystem is named in every row's workload. Replay reads from a warm page cache (the
journal was just written): it measures the reader's CPU cost, not the disk's.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from microex.core.records import COMMAND, Action, OrdType, Side, Tif
from microex.perf.results import latency_fields, print_rows, throughput_fields, write_results
from microex.pipeline.journal import DEFAULT_SEGMENT_BYTES, Journal, replay_batches

POLICIES = ("none", "batch", "interval:5")
BATCHES = (4096, 256)
_RAM_FILESYSTEMS = {"tmpfs", "ramfs", "devtmpfs"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--commands", type=int, default=2_000_000, help="COMMAND records appended per run")
    parser.add_argument("--runs", type=int, default=3, help="runs per variant; the median is reported")
    parser.add_argument("--dir", help="where the temp journals go (default: the temp dir, or the current "
                        "directory if that is tmpfs)")
    parser.add_argument("--segment-mib", type=int, default=DEFAULT_SEGMENT_BYTES >> 20)
    parser.add_argument("--seed", type=int, default=1)


def filesystem_of(path: str | Path) -> tuple[str, str, str]:
    """(fstype, device, mount point) of the mount that holds path, from /proc/self/mounts."""
    real = os.path.realpath(path)
    best = ("unknown", "unknown", "/")
    best_len = -1
    try:
        with open("/proc/self/mounts", encoding="utf-8") as f:
            for line in f:
                device, mount, fstype = line.split()[:3]
                mount = mount.replace("\\040", " ")
                inside = real == mount or real.startswith(mount.rstrip("/") + "/")
                if inside and len(mount) >= best_len:  # the last of equal mounts is the visible one
                    best, best_len = (fstype, device, mount), len(mount)
    except OSError:
        pass
    return best


def bench_directory(requested: str | None) -> Path:
    if requested:
        return Path(requested)
    for candidate in (tempfile.gettempdir(), os.getcwd()):
        if filesystem_of(candidate)[0] not in _RAM_FILESYSTEMS:
            return Path(candidate)
    return Path(tempfile.gettempdir())  # only RAM filesystems: the workload text says so


def make_records(n: int, seed: int) -> np.ndarray:
    """n synthetic commands, seqs 1..n, the other fields random (their bytes feed the CRCs)."""
    rng = np.random.default_rng(seed)
    r = np.zeros(n, dtype=COMMAND)
    r["seq"] = np.arange(1, n + 1)
    r["ts_ns"] = time.time_ns() + np.cumsum(rng.integers(100, 2_000, n))
    r["order_id"] = rng.integers(1, 1 << 40, n)
    r["account"] = rng.integers(1, 10_000, n)
    r["price_ticks"] = rng.integers(90_000, 110_000, n)
    r["qty_lots"] = rng.integers(1, 1_000, n)
    r["instrument"] = rng.integers(1, 64, n)
    r["session"] = rng.integers(1, 1_000, n)
    r["action"] = rng.choice([Action.NEW, Action.CANCEL, Action.MODIFY], n, p=[0.6, 0.35, 0.05])
    r["side"] = rng.choice([Side.BUY, Side.SELL], n)
    r["ord_type"] = OrdType.LIMIT
    r["tif"] = Tif.GTC
    return r


def time_append(directory: Path, records: np.ndarray, policy: str, batch: int, segment_bytes: int,
                latencies: np.ndarray) -> float:
    """Seconds to append all records in `batch`-sized calls to a fresh journal (open and close
    excluded); latencies[i] gets the ns of append call i."""
    clock = time.perf_counter_ns
    with Journal.open(directory, policy, segment_bytes=segment_bytes) as journal:
        t0 = time.perf_counter()
        for k, i in enumerate(range(0, len(records), batch)):
            c0 = clock()
            journal.append(records[i:i + batch])
            latencies[k] = clock() - c0
        seconds = time.perf_counter() - t0
    return seconds


def time_replay(directory: Path) -> tuple[float, int]:
    t0 = time.perf_counter()
    n = 0
    for batch in replay_batches(directory):
        n += len(batch)
    return time.perf_counter() - t0, n


def _policy_label(policy: str) -> str:
    return policy.replace(":", "_")


def main(args) -> int:
    console = Console(stderr=True)
    base = bench_directory(args.dir)
    base.mkdir(parents=True, exist_ok=True)
    fstype, device, mount = filesystem_of(base)
    on_disk = f"{base} on {fstype} ({device} at {mount})"
    if fstype in _RAM_FILESYSTEMS:
        on_disk += ": a RAM filesystem, fdatasync costs nothing here; pass --dir on a real disk"
        console.print(f"[yellow]warning: {on_disk}[/yellow]")
    segment_bytes = args.segment_mib << 20
    n = args.commands
    rows: list[dict] = []
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=console)
    with progress, tempfile.TemporaryDirectory(prefix="microex-journal-bench-", dir=base) as tmp:
        records = make_records(n, args.seed)
        medians: dict[tuple[str, int], float] = {}
        commit_lat: dict[int, np.ndarray] = {}
        replay_dir = None
        task = progress.add_task(f"appending {n:,} commands", total=len(POLICIES) * len(BATCHES) * args.runs)
        for policy in POLICIES:
            for batch in BATCHES:
                calls = -(-n // batch)
                lat = np.zeros(calls * args.runs, dtype=np.int64)
                times = []
                for run in range(args.runs):
                    directory = Path(tmp) / f"{_policy_label(policy)}-{batch}-{run}"
                    times.append(time_append(directory, records, policy, batch, segment_bytes,
                                             lat[run * calls:(run + 1) * calls]))
                    if replay_dir is None and policy == "none" and batch == 256:
                        replay_dir = directory  # kept for the replay rows
                    else:
                        for seg in directory.iterdir():  # keep the disk footprint to one journal or two
                            seg.unlink()
                        directory.rmdir()
                    progress.advance(task)
                medians[policy, batch] = statistics.median(times)
                if policy == "batch":
                    commit_lat[batch] = lat
        task = progress.add_task("replaying", total=args.runs)
        replay_times = []
        for _ in range(args.runs):
            seconds, got = time_replay(replay_dir)
            if got != n:
                raise RuntimeError(f"replay read {got} records of {n}")
            replay_times.append(seconds)
            progress.advance(task)
        segments = len(list(replay_dir.iterdir()))

    record_text = f"{n:,} COMMAND records (64 B), {segment_bytes >> 20} MiB segments, {on_disk}"
    for policy in POLICIES:
        for batch in BATCHES:
            rows.append({"name": f"journal.append.{_policy_label(policy)}.batch_{batch}",
                         "workload": f"append {record_text}; {batch} records per append (one frame), "
                         f"fsync={policy}; open/close not timed; median of {args.runs} fresh journals",
                         **throughput_fields(n, medians[policy, batch])})
    for batch in BATCHES:
        rows.append({"name": f"journal.commit.batch_{batch}",
                     "workload": f"latency of one append of {batch} records with fsync=batch (writev + "
                     f"fdatasync), every call of {args.runs} runs of {record_text}",
                     **latency_fields(commit_lat[batch])})
    rows.append({"name": "journal.replay",
                 "workload": f"replay_batches over a journal of {record_text}, written 256 records per frame "
                 f"({segments} segment(s)): whole-segment reads, header and body CRC32 per frame, one "
                 f"np.frombuffer view per frame; warm page cache; median of {args.runs}",
                 **throughput_fields(n, statistics.median(replay_times))})
    print_rows(rows)
    out = write_results(rows, args.json, "journal")
    console.print(f"results written to {out}")
    return 0


if __name__ == "__main__":
    _parser = argparse.ArgumentParser(prog="microex bench journal")
    add_arguments(_parser)
    raise SystemExit(main(_parser.parse_args()))
