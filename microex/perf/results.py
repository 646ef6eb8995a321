"""Benchmark rows: the JSON shape of SPEC.md, and the table printed for people."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from microex.perf.machine import describe_machine

PERCENTILES = {"p50_ns": 50, "p95_ns": 95, "p99_ns": 99, "p999_ns": 99.9, "p9999_ns": 99.99}


def latency_fields(samples_ns: np.ndarray) -> dict:
    """Mean and percentiles of latency samples (ns), as row fields."""
    pct = np.percentile(samples_ns, list(PERCENTILES.values()))
    out = {"mean_ns": float(samples_ns.mean())}
    out.update({k: float(v) for k, v in zip(PERCENTILES, pct)})
    return out


def throughput_fields(n_ops: int, seconds: float) -> dict:
    return {"ops_per_s": n_ops / seconds, "ns_per_op": seconds * 1e9 / n_ops}


def write_results(rows: list[dict], path: str | None, suite: str) -> Path:
    if path is None:
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        path = os.path.join("bench", "results", f"{suite}-{stamp}.json")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": describe_machine(), "rows": rows}, indent=1) + "\n")
    return out


def fmt_ratio(v: float) -> str:
    return f"{v:.2f}x" if v < 10 else f"{v:.0f}x"


def _fmt_rate(v) -> str:
    if v is None:
        return ""
    return f"{v / 1e6:.2f}M" if v >= 1e6 else f"{v / 1e3:.1f}k"


def _fmt_ns(v) -> str:
    if v is None:
        return ""
    return f"{v / 1000:.2f}µs" if v >= 1000 else f"{v:.0f}ns"


def print_rows(rows: list[dict], console: Console | None = None) -> None:
    table = Table(title="microex benchmarks")
    for col in ("benchmark", "ops/s", "mean", "p50", "p95", "p99", "p99.9", "p99.99", "ratio"):
        table.add_column(col, justify="left" if col == "benchmark" else "right")
    for r in rows:
        mean = r.get("mean_ns", r.get("ns_per_op"))
        ratio = f"{fmt_ratio(r['ratio'])} vs {r['ratio_vs']}" if "ratio" in r else ""
        if "wall_s" in r:
            ratio = f"{r['wall_s']:.2f} s wall"
        table.add_row(
            r["name"], _fmt_rate(r.get("ops_per_s")), _fmt_ns(mean), _fmt_ns(r.get("p50_ns")),
            _fmt_ns(r.get("p95_ns")), _fmt_ns(r.get("p99_ns")), _fmt_ns(r.get("p999_ns")),
            _fmt_ns(r.get("p9999_ns")), ratio,
        )
    (console or Console(width=150)).print(table)


QUANTILES = (1, 5, 10, 25, 50, 75, 90, 95, 99, 99.5, 99.9)  # percent, for latency_quantiles_ns and the plots


def quantiles(samples) -> list[float]:
    """The latency at each of QUANTILES (percent): a row's `latency_quantiles_ns`."""
    import numpy as np

    return [float(v) for v in np.percentile(samples, QUANTILES)] if len(samples) else []


def plot_quantiles(rows: list[dict], out, *, title: str, ylabel: str, scale_ns: float,
                   targets: tuple[tuple[float, str], ...] = (), log_y: bool = False) -> None:
    """Each row's latency_quantiles_ns as one curve over a logit quantile axis (the tail gets room);
    baselines dashed; `targets` as grey lines (value in the plot's unit, label); `log_y` for tails that
    span decades. A PNG at `out`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for r in rows:
        q = r.get("latency_quantiles_ns")
        if q:
            ax.plot([x / 100 for x in QUANTILES], [v / scale_ns for v in q], marker="o", label=r["name"],
                    linestyle="--" if ".baseline." in r["name"] else "-")
    for value, label in targets:
        ax.axhline(value, color="grey", linewidth=0.8)
        ax.text(0.01, value * 1.02, label, fontsize=8, color="grey")
    ax.set_xscale("logit")
    if log_y:
        ax.set_yscale("log")
    ax.set_xticks([x / 100 for x in QUANTILES], [f"p{x:g}" for x in QUANTILES], fontsize=7)
    ax.minorticks_off()
    ax.set_xlabel("quantile")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
