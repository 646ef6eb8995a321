"""`microex bench gateway` runs end to end against a real `microex serve` and writes its rows (no timing asserted)."""

import json
import subprocess
import sys


def test_bench_gateway_writes_every_row(tmp_path):
    out = tmp_path / "gateway.json"
    cmd = [sys.executable, "-m", "microex.app.cli", "bench", "gateway", "--rates", "2000", "--seconds", "0.5",
           "--max-orders", "4000", "--runs", "1", "--json", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    rows = {r["name"]: r for r in json.loads(out.read_text())["rows"]}
    for name in ("gateway.order_to_ack.rate_2000", "gateway.order_to_ack.rate_2000.fsync_batch",
                 "gateway.baseline.echo.rate_2000", "gateway.baseline.inprocess.rate_2000"):
        row = rows[name]
        assert 0 < row["p50_ns"] <= row["p99_ns"] <= row["p999_ns"], name
        assert row["rejects"] == 0 and 0 < row["loadgen_cpu"] and row["venue_cpu"] > 0
        assert 0 < row["socket_p50_ns"] <= row["p50_ns"], name  # the ack is in the socket before it is read
    assert rows["gateway.max_rate"]["ops_per_s"] > 0
    assert rows["gateway.cold.idle_0us"]["p50_ns"] > 0
