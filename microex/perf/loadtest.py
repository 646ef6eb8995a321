"""`microex loadtest PROFILE`: load profiles against a running venue's binary port.

How it works
- The load is perf/loadgen.py's: two sessions (the first two keys of a keys file,
  e.g. the demo venue's demo-keys.json) sending buy/sell pairs that trade, each
  order scheduled in advance; latency runs from an order's *scheduled* time to
  its ack (no coordinated omission), so a stalled venue shows in every order
  that should have gone out meanwhile.
- A profile is a schedule of rates:
    smoke   1,000/s for 5 s; passes if every order is acknowledged without reject
    load    --rate for --duration
    stress  from --rate, x1.5 every --step-s, until a step breaks the budget
            (p99 above --budget-p99-ms, or errors above 1%); reports the knee: the
            highest rate that kept it
    soak    --rate for --duration; latency per 10 s window and its drift, and the
            venue's memory (RSS of --venue-pid and its children) over time
    spike   --rate for 5/12 of --duration (default 12 s), 10x --rate for 2/12, --rate
            for 5/12; latency per phase and how long after the spike p99 took to come back
- Errors are rejects (the venue refused the order: its reason is in the venue's
  reports) plus orders never acknowledged.
- Output: a table, JSON (summary + 100 ms windows) and a PNG of latency over time.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from microex.perf.loadgen import OrderSpec, run_schedule
from microex.perf.machine import describe_machine
from microex.perf.serve_process import tree_rss

PROFILES = ("smoke", "load", "stress", "soak", "spike")
WINDOW_NS = 100_000_000


def add_arguments(parser) -> None:
    parser.add_argument("profile", choices=PROFILES)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9001, help="the venue's binary port")
    parser.add_argument("--keys", default="microex-data/demo-keys.json",
                        help="a keys file like demo-keys.json; its first two accounts trade")
    parser.add_argument("--instrument", type=int, default=1)
    parser.add_argument("--price", type=int, default=6_000_000, help="ticks (default: the demo BTCUSDT reference)")
    parser.add_argument("--qty", type=int, default=1, help="lots per order")
    parser.add_argument("--rate", type=float, help="orders/s (load, soak, spike base, stress start)")
    parser.add_argument("--duration", type=float, help="seconds (load, soak)")
    parser.add_argument("--step-s", type=float, default=5.0, help="stress: seconds per rate step")
    parser.add_argument("--budget-p99-ms", type=float, default=10.0, help="stress: the p99 that breaks the budget")
    parser.add_argument("--venue-pid", type=int, help="soak: sample this process's (and its children's) memory")
    parser.add_argument("--out", default="bench/loadtest", help="where the JSON and PNG go")


def _keys(path: str) -> tuple[bytes, bytes]:
    doc = json.loads(Path(path).read_text())
    if len(doc) < 2:
        raise ValueError(f"{path}: needs at least two accounts' keys")
    return doc[0]["api_key"].encode(), doc[1]["api_key"].encode()


def _offsets(phases: list[tuple[float, float]]) -> tuple[np.ndarray, list[tuple[float, float, float]]]:
    """(rate, seconds) phases -> send offsets (ns) and (start_s, end_s, rate) per phase."""
    parts, spans, t = [], [], 0.0
    for rate, secs in phases:
        n = int(rate * secs)
        parts.append(((t + np.arange(n) / rate) * 1e9).astype(np.int64))
        spans.append((t, t + secs, rate))
        t += secs
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64), spans


def summarize(res: dict) -> dict:
    lat = res["latency_ns"]
    ok = lat >= 0
    n = len(lat)
    out = {"orders": n, "acked": int(ok.sum()), "rejects": int(res["rejects"]), "unacked": int(res["unacked"]),
           "errors": int(res["rejects"] + res["unacked"]), "wall_s": res["wall_s"],
           "throughput_per_s": float(ok.sum() / res["wall_s"]) if res["wall_s"] else 0.0,
           "loadgen_cpu": res["cpu_s"] / res["wall_s"] if res["wall_s"] else 0.0}
    if ok.any():
        p = np.percentile(lat[ok], [50, 95, 99, 99.9])
        out.update({"p50_ns": float(p[0]), "p95_ns": float(p[1]), "p99_ns": float(p[2]), "p999_ns": float(p[3])})
    return out


def windows(res: dict, width_ns: int = WINDOW_NS) -> list[dict]:
    """Latency percentiles per window of scheduled time."""
    lat, sched = res["latency_ns"], res["sched_ns"]
    if not len(lat):
        return []
    idx = sched // width_ns
    out = []
    for w in range(int(idx.max()) + 1):
        sel = lat[(idx == w) & (lat >= 0)]
        lost = int(((idx == w) & (lat < 0)).sum())
        row = {"t_s": w * width_ns / 1e9, "orders": int((idx == w).sum()), "lost": lost}
        if len(sel):
            p50, p99 = np.percentile(sel, [50, 99])
            row.update({"p50_ns": float(p50), "p99_ns": float(p99)})
        out.append(row)
    return out


class _MemorySampler(threading.Thread):
    def __init__(self, pid: int, every_s: float = 1.0) -> None:
        super().__init__(daemon=True)
        self.pid, self.every_s, self.samples, self.stop = pid, every_s, [], threading.Event()

    def run(self) -> None:
        t0 = time.monotonic()
        while not self.stop.wait(self.every_s):
            self.samples.append((time.monotonic() - t0, tree_rss(self.pid)))


def _plot(path: Path, title: str, wins: list[dict], spans: list[tuple[float, float, float]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [w["t_s"] for w in wins if "p50_ns" in w]
    fig, ax = plt.subplots(figsize=(10, 4.5))
    ax.plot(t, [w["p50_ns"] / 1e3 for w in wins if "p50_ns" in w], label="p50")
    ax.plot(t, [w["p99_ns"] / 1e3 for w in wins if "p50_ns" in w], label="p99")
    ax.set_yscale("log")
    ax.set_xlabel("scheduled time (s)")
    ax.set_ylabel("order -> ack latency (µs)")
    rate_ax = ax.twinx()
    rate_ax.step([s for s, _, _ in spans] + [spans[-1][1]] if spans else [],
                 [r for _, _, r in spans] + [spans[-1][2]] if spans else [], where="post", color="grey",
                 alpha=0.5, label="offered rate")
    rate_ax.set_ylabel("offered orders/s")
    ax.set_title(title)
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _run(args, keys, phases, first_cid: int) -> tuple[dict, list]:
    offsets, spans = _offsets(phases)
    order = OrderSpec(args.instrument, args.price, args.qty)
    res = run_schedule(args.host, args.port, keys, offsets, first_cid, order=order, tolerate_loss=True)
    return res, spans


def main(args) -> int:
    console = Console(width=130)
    keys = _keys(args.keys)
    rate = args.rate
    report: dict = {"profile": args.profile, "machine": describe_machine(), "target": f"{args.host}:{args.port}"}
    cid = time.time_ns() // 1000  # fresh client ids per run (sessions are new anyway)
    sampler = None
    if args.profile == "soak" and args.venue_pid:
        sampler = _MemorySampler(args.venue_pid)
        sampler.start()
    steps = []
    if args.profile == "stress":
        rate = rate or 5_000.0
        knee = None
        for step in range(12):
            console.print(f"stress step {step + 1}: {rate:,.0f} orders/s for {args.step_s:g} s")
            res, spans = _run(args, keys, [(rate, args.step_s)], cid)
            cid += len(res["latency_ns"])
            summary = summarize(res)
            summary["rate"] = rate
            steps.append(summary)
            broken = (summary["errors"] > 0.01 * summary["orders"]
                      or summary.get("p99_ns", float("inf")) > args.budget_p99_ms * 1e6)
            if broken:
                break
            knee = rate
            rate *= 1.5
        report.update({"steps": steps, "knee_orders_per_s": knee, "budget_p99_ms": args.budget_p99_ms})
        res, spans = None, []
    else:
        spike_unit = (args.duration or 12.0) / 12
        phases = {
            "smoke": [(rate or 1_000.0, args.duration or 5.0)],
            "load": [(rate or 20_000.0, args.duration or 30.0)],
            "soak": [(rate or 5_000.0, args.duration or 600.0)],
            "spike": [(rate or 5_000.0, 5 * spike_unit), (10 * (rate or 5_000.0), 2 * spike_unit),
                      (rate or 5_000.0, 5 * spike_unit)],
        }[args.profile]
        res, spans = _run(args, keys, phases, cid)
        report["summary"] = summarize(res)
        report["windows"] = windows(res)
        report["phases"] = [{"start_s": a, "end_s": b, "rate": r} for a, b, r in spans]
        if args.profile == "soak":
            wins = [w for w in report["windows"] if "p99_ns" in w]
            tenth = max(1, len(wins) // 10)
            first = np.median([w["p99_ns"] for w in wins[:tenth]]) if wins else 0
            last = np.median([w["p99_ns"] for w in wins[-tenth:]]) if wins else 0
            report["p99_drift"] = float(last / first) if first else None
        if args.profile == "spike":
            report["phase_summaries"] = [summarize(_slice(res, a, b)) for a, b, _ in spans]
            report["recovery_s"] = _recovery_s(report["windows"], spans)
    if sampler is not None:
        sampler.stop.set()
        report["venue_rss_bytes"] = sampler.samples
    out = _write(args, report, spans)
    _print(console, report)
    console.print(f"written: {out}.json and {out}.png")
    if args.profile == "smoke":
        s = report["summary"]
        return 0 if s["errors"] == 0 and s["acked"] == s["orders"] else 1
    return 0


def _slice(res: dict, a_s: float, b_s: float) -> dict:
    sel = (res["sched_ns"] >= a_s * 1e9) & (res["sched_ns"] < b_s * 1e9)
    lat = res["latency_ns"][sel]
    frac = sel.mean() if len(sel) else 0
    return {"latency_ns": lat, "rejects": 0, "unacked": int((lat < 0).sum()), "wall_s": b_s - a_s,
            "cpu_s": res["cpu_s"] * frac}


def _recovery_s(wins: list[dict], spans) -> float | None:
    """Seconds after the spike's end until a window's p99 is back under twice the base phase's p99."""
    base = [w["p99_ns"] for w in wins if "p99_ns" in w and w["t_s"] < spans[0][1]]
    if not base:
        return None
    limit = 2 * float(np.median(base))
    end = spans[1][1]
    for w in wins:
        if w["t_s"] >= end and w.get("p99_ns", float("inf")) <= limit:
            return w["t_s"] - end
    return None


def _write(args, report: dict, spans) -> Path:
    outdir = Path(args.out)
    outdir.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    base = outdir / f"loadtest-{args.profile}-{stamp}"
    base.with_suffix(".json").write_text(json.dumps(report, indent=1, default=float) + "\n")
    title = f"microex loadtest {args.profile} ({report['target']})"
    if report.get("windows"):
        _plot(base.with_suffix(".png"), title, report["windows"], spans)
    elif report.get("steps"):
        _plot_steps(base.with_suffix(".png"), title, report)
    return base


def _plot_steps(path: Path, title: str, report: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [s for s in report["steps"] if "p50_ns" in s]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for key, label in (("p50_ns", "p50"), ("p99_ns", "p99"), ("p999_ns", "p99.9")):
        ax.plot([s["rate"] for s in steps], [s[key] / 1e3 for s in steps], marker="o", label=label)
    ax.axhline(report["budget_p99_ms"] * 1e3, color="red", linestyle="--", label="p99 budget")
    if report.get("knee_orders_per_s"):
        ax.axvline(report["knee_orders_per_s"], color="grey", linestyle=":", label="knee")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("offered orders/s")
    ax.set_ylabel("order -> ack latency (µs)")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _print(console: Console, report: dict) -> None:
    table = Table(title=f"loadtest {report['profile']}")
    for col in ("phase", "orders", "acked/s", "p50", "p95", "p99", "p99.9", "errors", "loadgen cpu"):
        table.add_column(col, justify="right")
    rows = report.get("steps") or [report["summary"]]
    names = ([f"{s['rate']:,.0f}/s" for s in report["steps"]] if report.get("steps") else ["all"])
    if report.get("phase_summaries"):
        rows = rows + report["phase_summaries"]
        names = names + ["base", "spike", "after"]
    for name, s in zip(names, rows):
        table.add_row(name, f"{s['orders']:,}", f"{s['throughput_per_s']:,.0f}",
                      *(f"{s[k] / 1e3:,.1f}µs" if k in s else "" for k in ("p50_ns", "p95_ns", "p99_ns", "p999_ns")),
                      str(s["errors"]), f"{s['loadgen_cpu']:.0%}")
    console.print(table)
    if "knee_orders_per_s" in report:
        console.print(f"knee: {report['knee_orders_per_s'] or 0:,.0f} orders/s within p99 <= "
                      f"{report['budget_p99_ms']} ms and errors <= 1%")
    if report.get("p99_drift") is not None:
        console.print(f"p99 drift (last tenth / first tenth): {report['p99_drift']:.2f}x")
    if report.get("recovery_s") is not None:
        console.print(f"recovered {report['recovery_s']:.1f} s after the spike")
