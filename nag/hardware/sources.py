"""The device tables nag has, as meta-training sources, and which of them are one device.

A *source* is one column of measured cost (latency, energy) over a benchmark's
architectures. Columns of one *family* come from the same physical device (HW-NAS-Bench's
FPGA on CIFAR-10, CIFAR-100 and ImageNet16-120 inputs; one OFA GPU at batch 1, 32 and 64):
they are near-duplicates, so a held-out evaluation holds out a whole family.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import numpy as np

from nag.benchmarks.base import Benchmark

#: Column-name patterns of device costs, and how to read the device family from a match.
_PATTERNS = (
    re.compile(r"^hwnb_(?P<task>[^_]+)_(?P<family>[a-z0-9]+)_(?P<kind>latency|energy)$"),  # HW-NAS-Bench
    re.compile(r"^help_lat_(?P<family>.+)_(?P<task>\d+)$"),  # OFA/HELP GPUs x batch sizes
)


def device_family(name: str) -> str:
    """The device a source column was measured on: ``hwnb_cifar10_fpga_latency`` -> ``fpga``,
    ``help_lat_titan_rtx_32`` -> ``titan_rtx``; any other name is its own family."""
    for pattern in _PATTERNS:
        m = pattern.match(name)
        if m:
            return m.group("family")
    return name


def cost_columns(benchmark: Benchmark, kinds: Iterable[str] = ("latency", "energy")) -> list[str]:
    """The benchmark's device-cost columns: minimised metrics whose name says latency or
    energy (HW-NAS-Bench, NAS-Bench-Graph's ``latency``) or an OFA ``help_lat_*`` column;
    FLOPs and parameter counts are features, not devices."""
    kinds = tuple(kinds)
    out = []
    for m in benchmark.metrics:
        if m not in benchmark.minimize:
            continue
        if m.startswith("help_lat_") or any(k in m for k in kinds):
            values = benchmark.column(m)
            if np.isfinite(values).any() and (values > 0).any():
                out.append(m)
    return out


def source_values(benchmark: Benchmark, columns: Sequence[str]) -> dict[str, np.ndarray]:
    """``name -> values`` in table order, non-positive entries (HW-NAS-Bench's -1 for "not
    measured") as NaN."""
    out = {}
    for c in columns:
        v = np.array(benchmark.column(c), dtype=np.float64)
        v[~(v > 0)] = np.nan
        out[c] = v
    return out
