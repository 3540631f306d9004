"""The meta-trained latency predictor is trained once per set of device tables and read back
from its cache (weights-only, through nag.io), predicting exactly what it did when trained."""

import numpy as np

from nag.benchmarks import NBGraphBenchmark
from nag.hardware import meta_trained

SMALL = {"hidden": 16, "dim": 8, "steps": 5, "max_rows": 300}


def test_a_second_call_reads_the_cached_predictor(tmp_path):
    bench = NBGraphBenchmark("cora")
    first, cached = meta_trained(bench, seed=0, cache_dir=tmp_path, **SMALL)
    assert not cached and len(list(tmp_path.glob("latency-*.pt"))) == 1
    again, cached = meta_trained(bench, seed=0, cache_dir=tmp_path, **SMALL)
    assert cached and again.sources == first.sources
    archs = bench.archs()[:50]
    latencies = bench.column("latency")[:20]
    a = first.adapt(archs[:20], latencies).predict(archs)
    b = again.adapt(archs[:20], latencies).predict(archs)
    np.testing.assert_array_equal(a.mean, b.mean)
    _, cached = meta_trained(bench, seed=1, cache_dir=tmp_path, **SMALL)
    assert not cached, "another seed is another predictor"
    assert len(list(tmp_path.glob("latency-*.pt"))) == 2
