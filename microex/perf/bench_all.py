"""`microex bench all`: every suite, one results file, the report, and what got worse.

How it works
- Runs each suite (`SUITES`, in order) with its default arguments, each writing a
  temporary JSON; their rows are merged into one file
  `bench/results/<UTC date and time>-<host>.json` with the machine described.
  A suite that fails is reported and the others still run.
- Then it compares the new rows with the newest earlier result of each row name
  (any file in bench/results): throughput (`ops_per_s`) more than 10% lower, or
  p50/p99 latency more than 10% higher, is flagged. It is a report: printed, and
  written into docs/BENCHMARKS.md's "Changes since the previous results" section;
  the command does not fail on it (machines are shared and noisy).
- Finally `microex bench report` regenerates docs/BENCHMARKS.md and the plot.
"""

from __future__ import annotations

import datetime as dt
import importlib
import json
import socket
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from microex.perf.machine import describe_machine

SUITES = ("core", "ring", "journal", "pipeline", "gateway", "md", "indicators", "strategy")
THRESHOLD = 0.10
_MODULES = {"core": "core_bench"}


def add_arguments(parser) -> None:
    parser.add_argument("--results", default="bench/results")
    parser.add_argument("--out", default="docs/BENCHMARKS.md")
    parser.add_argument("--suites", default=",".join(SUITES), help="comma-separated subset")


def compare(new_rows: list[dict], previous: dict[str, dict], threshold: float = THRESHOLD) -> list[dict]:
    """Rows that got worse than their previous result by more than `threshold`."""
    worse = []
    for row in new_rows:
        old = previous.get(row["name"])
        if old is None:
            continue
        for key, higher_is_better in (("ops_per_s", True), ("p50_ns", False), ("p99_ns", False)):
            a, b = old.get(key), row.get(key)
            if not a or b is None:
                continue
            change = (b - a) / a
            if (higher_is_better and change < -threshold) or (not higher_is_better and change > threshold):
                worse.append({"name": row["name"], "metric": key, "before": a, "after": b, "change": change})
    return worse


def previous_rows(results: Path, exclude: Path | None = None) -> dict[str, dict]:
    """The newest row of each name over the results files (by machine date), excluding one file."""
    runs = []
    for path in results.glob("*.json"):
        if exclude is not None and path.resolve() == exclude.resolve():
            continue
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        runs.append((data.get("machine", {}).get("date", ""), data.get("rows", [])))
    latest: dict[str, dict] = {}
    for _, rows in sorted(runs, key=lambda r: r[0]):
        for row in rows:
            latest[row["name"]] = row
    return latest


def _run_suite(suite: str, json_path: Path) -> None:
    from microex.app.cli import build_parser

    args = build_parser().parse_args(["bench", suite, "--json", str(json_path)])
    module = importlib.import_module(f"microex.perf.{_MODULES.get(suite, suite + '_bench')}")
    code = module.main(args)
    if code:
        raise RuntimeError(f"exit code {code}")


def main(args) -> int:
    console = Console()
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    previous = previous_rows(results)
    rows, failed = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for suite in [s for s in args.suites.split(",") if s]:
            console.rule(f"bench {suite}")
            path = Path(tmp) / f"{suite}.json"
            t0 = time.monotonic()
            try:
                _run_suite(suite, path)
                rows += json.loads(path.read_text())["rows"]
                console.print(f"{suite}: done in {time.monotonic() - t0:.0f} s")
            except (Exception, SystemExit) as e:  # one suite's failure must not lose the others' results
                failed.append((suite, f"{type(e).__name__}: {e}"))
                console.print(f"[red]{suite} failed: {e}[/]")
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = results / f"{stamp}-{socket.gethostname()}.json"
    worse = compare(rows, previous)
    doc = {"machine": describe_machine(), "rows": rows, "suites_failed": failed, "worse_than_previous": worse}
    out.write_text(json.dumps(doc, indent=1) + "\n")
    _print(console, worse)
    from microex.perf.report import main as report_main

    report_main(type("Args", (), {"results": str(results), "out": args.out})())
    console.print(f"results: {out}")
    return 1 if failed else 0


def _print(console: Console, worse: list[dict]) -> None:
    if not worse:
        console.print("no row got more than 10% worse than its previous result")
        return
    table = Table(title="rows more than 10% worse than their previous result")
    for col in ("benchmark", "metric", "before", "after", "change"):
        table.add_column(col)
    for w in worse:
        table.add_row(w["name"], w["metric"], f"{w['before']:,.0f}", f"{w['after']:,.0f}", f"{w['change']:+.0%}")
    console.print(table)
