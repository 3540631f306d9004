"""Benchmarks: measured metrics of a space's architectures, read from real tables, or computed for
any architecture from a released predictor and device table (OFA MobileNetV3)."""

from nag.benchmarks.base import Benchmark
from nag.benchmarks.nb101 import NB101Benchmark
from nag.benchmarks.nb201 import NB201Benchmark
from nag.benchmarks.nbgraph import NBGraphBenchmark
from nag.benchmarks.ofa_latency import OFALatencyBenchmark
from nag.benchmarks.ofa_mbv3 import OFAMBV3Benchmark

__all__ = [
    "Benchmark",
    "NB101Benchmark",
    "NB201Benchmark",
    "NBGraphBenchmark",
    "OFALatencyBenchmark",
    "OFAMBV3Benchmark",
]
