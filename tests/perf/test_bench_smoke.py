"""The benchmark commands run end to end and write SPEC.md's JSON shape (no timing asserted)."""

import json
import subprocess
import sys

from microex.core.engine import MatchingEngine
from microex.perf.workload import describe, match_mix


def test_bench_core_writes_the_json_shape(tmp_path):
    out = tmp_path / "core.json"
    cmd = [sys.executable, "-m", "microex.app.cli", "bench", "core", "--commands", "20000",
           "--reference-commands", "5000", "--latency-commands", "5000", "--runs", "1",
           "--no-startup", "--json", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    data = json.loads(out.read_text())
    assert data["machine"]["cores"] >= 1 and data["machine"]["python"]
    rows = {r["name"]: r for r in data["rows"]}
    for batch in (65536, 256, 16, 1):
        assert rows[f"core.match_mix.batch_{batch}"]["ops_per_s"] > 0
    main = rows["core.match_mix"]
    assert main["ratio_vs"] == "reference" and main["ratio"] > 1
    lat = rows["core.match_mix.latency_batch_1"]
    assert lat["p50_ns"] <= lat["p99_ns"] <= lat["p999_ns"] <= lat["p9999_ns"]

    doc = tmp_path / "docs" / "BENCHMARKS.md"
    res = subprocess.run([sys.executable, "-m", "microex.app.cli", "bench", "report", "--results",
                          str(tmp_path), "--out", str(doc)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "| core.match_mix |" in doc.read_text()
    assert (tmp_path / "docs" / "benchmarks.png").stat().st_size > 1000


def test_match_mix_is_the_issue_mix():
    w = match_mix(40_000, seed=3)
    cmds = w.cmds
    new = cmds["action"] == 1
    cancel = cmds["action"] == 2
    assert abs(cancel.mean() - 0.35) < 0.02
    assert abs(((cmds["tif"] == 2) | (cmds["ord_type"] == 2)).mean() - 0.10) < 0.02
    assert abs((new & (cmds["tif"] == 1)).mean() - 0.55) < 0.02  # 50% near + 5% far
    engine = MatchingEngine(w.config())
    engine.process(w.setup)
    stats = describe(engine.process(cmds), cmds)
    assert stats["cancels_hit"] > 0.95 * stats["cancels"]  # cancels target live orders
    assert 3_000 < engine.live_orders < 7_000  # the book stays near 5,000 orders
    again = match_mix(40_000, seed=3)
    assert (again.cmds == cmds).all()  # seeded
