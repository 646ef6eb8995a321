"""`microex bench md` runs end to end against a real `microex serve` and writes its rows (no timing asserted)."""

import json
import subprocess
import sys


def test_bench_md_writes_every_row(tmp_path):
    out = tmp_path / "md.json"
    cmd = [sys.executable, "-m", "microex.app.cli", "bench", "md", "--subs", "20", "--rate", "2000", "--seconds",
           "1", "--idle", "60", "--json", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    rows = {r["name"]: r for r in json.loads(out.read_text())["rows"]}
    for name in ("md.fanout.subs_20", "md.fanout.subs_20.multicast", "md.baseline.floor_subs_20"):
        row = rows[name]
        assert row["delivered_fraction"] > 0.99, name  # every update reached every subscriber of it
        assert 0 < row["p50_ns"] <= row["p99_ns"] and row["ops_per_s"] > 0 and row["subscriber_cpu"] > 0, name
    assert rows["md.fanout.subs_20"]["conflated"] == 0 and rows["md.baseline.floor_subs_20"]["short_sends"] == 0
    assert rows["md.idle_connections"]["connections"] == 60 and rows["md.idle_connections"]["synced"] == 60
    q = rows["md.fanout.subs_20"]["latency_quantiles_ns"]
    assert q == sorted(q) and q[4] == rows["md.fanout.subs_20"]["p50_ns"]
    assert (tmp_path / "md.png").stat().st_size > 10_000  # the latency plot beside the JSON
