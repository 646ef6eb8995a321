"""`microex bench strategy` runs end to end at tiny sizes and writes every row (no timing asserted)."""

import json
import subprocess
import sys


def test_bench_strategy_writes_every_row(tmp_path):
    out = tmp_path / "strategy.json"
    cmd = [sys.executable, "-m", "microex.app.cli", "bench", "strategy", "--strategies", "50", "--instruments", "10",
           "--events", "5000", "--chunk", "64", "--t2t-events", "300", "--loopback-events", "200",
           "--loopback-rate", "2000", "--runs", "1", "--json", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    rows = {r["name"]: r for r in json.loads(out.read_text())["rows"]}
    assert set(rows) == {"strategy.dispatch.strategies_1000", "strategy.tick_to_trade.in_process",
                         "strategy.tick_to_trade.loopback", "strategy.order_to_ack.loopback"}
    d = rows["strategy.dispatch.strategies_1000"]
    assert d["ops_per_s"] > 0 and d["strategies"] == 50 and d["callbacks_per_s"] > d["ops_per_s"]
    assert isinstance(d["target_met"], bool) and "target" in d["workload"]
    t = rows["strategy.tick_to_trade.in_process"]
    assert 0 < t["p50_ns"] <= t["p99_ns"] and t["samples"] == 300 and isinstance(t["target_met"], bool)
    for name in ("strategy.tick_to_trade.loopback", "strategy.order_to_ack.loopback"):
        assert 0 < rows[name]["p50_ns"] <= rows[name]["p99_ns"] and rows[name]["samples"] == 200
