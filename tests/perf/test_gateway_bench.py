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
    for name in ("gateway.order_to_ack.rate_2000", "gateway.order_to_ack.rate_2000.gateway_process",
                 "gateway.order_to_ack.rate_2000.fsync_batch", "gateway.order_to_ack.rate_2000.default_setup",
                 "gateway.baseline.echo.rate_2000", "gateway.baseline.spin_echo.rate_2000",
                 "gateway.baseline.inprocess.rate_2000"):
        row = rows[name]
        assert 0 < row["p50_ns"] <= row["p99_ns"] <= row["p999_ns"], name
        assert row["rejects"] == 0 and 0 < row["loadgen_cpu"] and row["venue_cpu"] > 0
        assert 0 < row["socket_p50_ns"] <= row["p50_ns"], name  # the ack is in the socket before it is read
    for name in ("gateway.order_to_ack.rate_2000", "gateway.order_to_ack.rate_2000.gateway_process"):
        inside = rows[name]  # the venue's own histograms, scraped around the run (colocated: gateway 0's too)
        assert 0 < inside["gateway_read_p50_le_ns"] <= inside["venue_order_to_ack_p50_le_ns"], name
        assert 0 < inside["journal_append_p50_le_ns"] <= inside["engine_batch_p50_le_ns"], name
    assert "colocated" in rows["gateway.order_to_ack.rate_2000"]["workload"]
    assert not [k for k in rows["gateway.baseline.echo.rate_2000"] if k.endswith("_le_ns")]  # no venue metrics there
    assert rows["gateway.max_rate"]["ops_per_s"] > 0 and rows["gateway.max_rate.colocated"]["ops_per_s"] > 0
    assert rows["gateway.cold.idle_0us"]["p50_ns"] > 0
    q = rows["gateway.order_to_ack.rate_2000"]["latency_quantiles_ns"]
    assert len(q) == 11 and q == sorted(q) and q[4] == rows["gateway.order_to_ack.rate_2000"]["p50_ns"]
    assert out.with_suffix(".png").stat().st_size > 10_000  # the quantile plot


def test_histogram_quantile_between_two_scrapes():
    from microex.perf.gateway_bench import histogram_quantile, parse_histograms

    def text(counts):
        return "\n".join(
            [f'microex_engine_batch_seconds_bucket{{le="{le}"}} {c}' for le, c in counts]
            + [f'microex_gateway_read_seconds_bucket{{gateway="{g}",le="1e-05"}} 3.0' for g in (0, 1)]
            + ["microex_engine_batch_seconds_count 9.0", "# HELP something else"])

    before = parse_histograms(text([("1e-05", 5.0), ("2e-05", 5.0), ("+Inf", 5.0)]))
    after = parse_histograms(text([("1e-05", 6.0), ("2e-05", 14.0), ("+Inf", 15.0)]))
    assert after["microex_gateway_read_seconds"][1e-05] == 6.0  # summed over gateways
    b, a = before["microex_engine_batch_seconds"], after["microex_engine_batch_seconds"]
    # 10 new: 1 at <= 10 us, 8 more at <= 20 us, 1 above
    assert histogram_quantile(b, a, 0.1) == 10_000
    assert histogram_quantile(b, a, 0.5) == 20_000 and histogram_quantile(b, a, 0.9) == 20_000
    assert histogram_quantile(b, a, 0.99) is None  # in the +Inf bucket: no upper bound (JSON null)
    assert histogram_quantile({}, {}, 0.5) == 0.0
