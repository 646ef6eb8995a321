"""`microex bench report`: docs/BENCHMARKS.md and a plot from bench/results/*.json.

The newest row of each name is the table; every file adds a point to the history.
"""

from __future__ import annotations

import json
from pathlib import Path

from microex.perf.results import _fmt_ns, _fmt_rate, fmt_ratio

PLOT_NAME = "benchmarks.png"


def load(results_dir: str) -> list[dict]:
    runs = []
    for path in sorted(Path(results_dir).glob("*.json")):
        data = json.loads(path.read_text())
        data["file"] = path.name
        runs.append(data)
    runs.sort(key=lambda r: r["machine"].get("date", ""))
    return runs


def latest_rows(runs: list[dict]) -> dict[str, tuple[dict, dict]]:
    latest: dict[str, tuple[dict, dict]] = {}
    for run in runs:
        for row in run["rows"]:
            latest[row["name"]] = (row, run)
    return latest


def _row_md(row: dict) -> str:
    mean = row.get("mean_ns", row.get("ns_per_op"))
    extra = ""
    if "ratio" in row:
        extra = f"{fmt_ratio(row['ratio'])} vs {row['ratio_vs']}"
    elif "wall_s" in row:
        extra = f"{row['wall_s']:.2f} s wall"
    cells = [row["name"], _fmt_rate(row.get("ops_per_s")), _fmt_ns(mean)] + [
        _fmt_ns(row.get(k)) for k in ("p50_ns", "p95_ns", "p99_ns", "p999_ns", "p9999_ns")
    ] + [extra]
    return "| " + " | ".join(cells) + " |"


def plot(runs: list[dict], latest: dict[str, tuple[dict, dict]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    names = [n for n, (r, _) in latest.items() if "ops_per_s" in r]
    ax1.barh(names, [latest[n][0]["ops_per_s"] for n in names], color="tab:blue")
    ax1.set_xscale("log")
    ax1.set_xlabel("operations / s (log)")
    ax1.set_title("latest throughput")
    ax1.invert_yaxis()
    for name in ("core.match_mix", "core.match_mix.batch_1"):
        pts = [(run["machine"]["date"][:16], row["ops_per_s"]) for run in runs for row in run["rows"]
               if row["name"] == name and "ops_per_s" in row]
        if pts:
            ax2.plot([p[0] for p in pts], [p[1] / 1e6 for p in pts], marker="o", label=name)
    ax2.set_ylabel("M ops/s")
    ax2.set_title("history")
    ax2.tick_params(axis="x", rotation=30, labelsize=7)
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def render(runs: list[dict]) -> tuple[str, dict]:
    latest = latest_rows(runs)
    lines = [
        "# Benchmarks",
        "",
        "Made by `microex bench report` from `bench/results/*.json` (written by `microex bench ...`);",
        "do not edit by hand. Each row is the newest result of that name; its workload and",
        "machine follow the table. Throughput figures are medians of several runs.",
        "",
        f"![benchmarks]({PLOT_NAME})",
        "",
        "| benchmark | ops/s | mean | p50 | p95 | p99 | p99.9 | p99.99 | |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [_row_md(row) for row, _ in latest.values()]
    compared = [run for run in runs if "worse_than_previous" in run]
    if compared:
        last = compared[-1]
        lines += ["", "## Changes since the previous results", "",
                  f"`microex bench all` compared `{last['file']}` with the newest earlier result of each row "
                  "(more than 10% worse: throughput lower, p50/p99 higher):", ""]
        lines += [f"- `{w['name']}` {w['metric']}: {w['before']:,.0f} -> {w['after']:,.0f} ({w['change']:+.0%})"
                  for w in last["worse_than_previous"]] or ["- none"]
    lines += ["", "## Workloads", ""]
    for name, (row, run) in latest.items():
        lines.append(f"- `{name}` ({run['file']}): {row.get('workload', '')}")
    lines += ["", "## Machines", ""]
    seen = set()
    for run in runs:
        m = run["machine"]
        key = json.dumps(m, sort_keys=True)
        if key in seen:
            continue
        seen.add(key)
        lines.append(f"- {run['file']}: {m.get('cpu')}, {m.get('cores')} cores, {m.get('mem_gib')} GiB, "
                     f"Python {m.get('python')}, numpy {m.get('numpy')}, numba {m.get('numba')}, "
                     f"{m.get('os')}, commit {m.get('git_commit')}, {m.get('date')}")
    return "\n".join(lines) + "\n", latest


def main(args) -> int:
    runs = load(args.results)
    if not runs:
        print(f"no results in {args.results}")
        return 1
    text, latest = render(runs)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    plot(runs, latest, out.parent / PLOT_NAME)
    print(f"wrote {out} and {out.parent / PLOT_NAME}")
    return 0
