"""Latency histograms: bucket bounds, percentiles within the stated 1/64 relative error."""

from __future__ import annotations

import numpy as np

from microex.strategy.latency import BUCKETS, LatencyRecorder, bucket_bounds, bucket_of


def test_buckets_cover_values_contiguously():
    idx = np.arange(BUCKETS)
    lo, hi = bucket_bounds(idx)
    assert lo[0] == 0 and np.all(lo[1:] == hi[:-1] + 1)
    for v in (0, 1, 31, 32, 63, 64, 65, 1000, 123_456, 2**39):
        b = bucket_of(v)
        assert lo[b] <= v <= hi[b]
        assert hi[b] - lo[b] <= max(1, lo[b] // 32)


def test_percentiles_close_to_exact_ones():
    rng = np.random.default_rng(2)
    v = rng.lognormal(9, 1.2, 50_000).astype(np.int64)
    r = LatencyRecorder(3)
    for x in v.tolist():
        r.record(2, x)
    p = r.percentiles(2)
    for key, q in (("p50_ns", 50), ("p90_ns", 90), ("p99_ns", 99), ("p999_ns", 99.9)):
        exact = np.percentile(v, q, method="inverted_cdf")
        assert abs(p[key] - exact) <= exact / 64 + 1, key
    assert r.samples(2) == 50_000 and r.samples(0) == 0 and r.percentiles(0) == {}
    assert r.percentiles() == p  # all slots together


def test_raw_samples_kept_on_request():
    r = LatencyRecorder(1, keep_raw=True)
    for x in (5, 7, 9):
        r.record(0, x)
    assert r.take_raw().tolist() == [5, 7, 9] and r.take_raw().tolist() == []
    r.ensure(10)
    r.record(9, 100)
    assert r.samples(9) == 1
