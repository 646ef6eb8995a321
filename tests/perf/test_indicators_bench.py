"""`microex bench indicators` runs end to end at tiny sizes and writes every row (no timing asserted)."""

import json
import subprocess
import sys

from microex.perf.indicators_bench import NAMES


def test_bench_indicators_writes_every_row(tmp_path):
    out = tmp_path / "indicators.json"
    cmd = [sys.executable, "-m", "microex.app.cli", "bench", "indicators", "--instruments", "50",
           "--updates", "20000", "--per-call", "1000", "--length", "5000", "--batch-reps", "2", "--runs", "1",
           "--json", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    data = json.loads(out.read_text())
    assert data["machine"]["cores"] >= 1
    rows = {r["name"]: r for r in data["rows"]}
    for name in NAMES:
        stream = rows[f"indicators.{name}.stream"]
        assert stream["ops_per_s"] > 0 and stream["target_ops_per_s"] == 10e6
        assert isinstance(stream["target_met"], bool) and "target" in stream["workload"]
        batch = rows[f"indicators.{name}.batch"]
        vs = "numpy" if name in ("vwap", "book_imbalance") else "talib"
        assert batch["ratio_vs"] == vs and batch["ratio"] > 0 and isinstance(batch["target_met"], bool)
        assert rows[f"indicators.{name}.batch.{vs}"]["ops_per_s"] > 0
    assert len(rows) == 3 * len(NAMES)
