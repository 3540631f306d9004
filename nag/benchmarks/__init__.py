"""Tabular benchmarks: measured metrics of a space's architectures, read from real tables."""

from nag.benchmarks.base import Benchmark
from nag.benchmarks.nb101 import NB101Benchmark
from nag.benchmarks.nb201 import NB201Benchmark
from nag.benchmarks.nbgraph import NBGraphBenchmark
from nag.benchmarks.ofa_latency import OFALatencyBenchmark

__all__ = [
    "Benchmark",
    "NB101Benchmark",
    "NB201Benchmark",
    "NBGraphBenchmark",
    "OFALatencyBenchmark",
]
