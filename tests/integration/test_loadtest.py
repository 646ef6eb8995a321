"""`microex loadtest` against a running `microex serve`: every profile's outputs, smoke's verdict."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.integration.test_serve import Serve, _free_port


def _loadtest(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "microex.app.cli", "loadtest", *args], capture_output=True,
                          text=True, timeout=300)


def test_loadtest_profiles_write_json_and_plots(tmp_path):
    data, out = tmp_path / "data", tmp_path / "out"
    port = _free_port()
    venue = Serve(data, port)
    try:
        common = ["--port", str(port), "--keys", str(data / "demo-keys.json"), "--out", str(out)]
        smoke = _loadtest("smoke", "--duration", "1", *common)
        assert smoke.returncode == 0, smoke.stdout + smoke.stderr
        spike = _loadtest("spike", "--rate", "500", "--duration", "2.4", *common)
        assert spike.returncode == 0, spike.stderr
        stress = _loadtest("stress", "--rate", "500", "--step-s", "0.5", "--budget-p99-ms", "0.001", *common)
        assert stress.returncode == 0, stress.stderr
        bad = _loadtest("smoke", "--duration", "1", "--price", "1", *common)  # outside the price band
        assert bad.returncode == 1
    finally:
        assert venue.stop() == 0
    reports = {}
    for path in sorted(out.glob("loadtest-*.json")):
        doc = json.loads(path.read_text())
        reports.setdefault(doc["profile"], []).append(doc)
        assert path.with_suffix(".png").stat().st_size > 1000
    ok, rejected = reports["smoke"]
    assert ok["summary"]["orders"] == ok["summary"]["acked"] == 1000 and ok["summary"]["errors"] == 0
    assert rejected["summary"]["rejects"] == rejected["summary"]["orders"]  # every order refused, counted
    [spike] = reports["spike"]
    assert [p["rate"] for p in spike["phases"]] == [500, 5000, 500]
    assert len(spike["phase_summaries"]) == 3 and spike["summary"]["errors"] == 0
    [stress] = reports["stress"]
    # a 1 µs p99 budget breaks at the first step: no knee, one step
    assert stress["knee_orders_per_s"] is None and len(stress["steps"]) == 1
