"""`microex bench all`'s comparison: which rows got more than 10% worse than their previous result."""

import json

from microex.perf.bench_all import compare, previous_rows


def test_compare_flags_lower_throughput_and_higher_latency_only_past_the_threshold():
    before = {"a": {"name": "a", "ops_per_s": 100.0}, "b": {"name": "b", "p50_ns": 100.0, "p99_ns": 200.0},
              "c": {"name": "c", "ops_per_s": 100.0}}
    after = [{"name": "a", "ops_per_s": 89.0}, {"name": "b", "p50_ns": 109.0, "p99_ns": 221.0},
             {"name": "c", "ops_per_s": 150.0}, {"name": "new", "ops_per_s": 1.0}]
    worse = compare(after, before)
    assert [(w["name"], w["metric"]) for w in worse] == [("a", "ops_per_s"), ("b", "p99_ns")]
    assert round(worse[0]["change"], 2) == -0.11


def test_previous_rows_takes_the_newest_by_machine_date(tmp_path):
    for name, date, value in (("x.json", "2026-01-02", 2.0), ("y.json", "2026-01-01", 1.0), ("z.json", "2026-01-03", 3.0)):
        (tmp_path / name).write_text(json.dumps({"machine": {"date": date},
                                                 "rows": [{"name": "r", "ops_per_s": value}]}))
    assert previous_rows(tmp_path)["r"]["ops_per_s"] == 3.0
    assert previous_rows(tmp_path, exclude=tmp_path / "z.json")["r"]["ops_per_s"] == 2.0
