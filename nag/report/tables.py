"""Plain-text tables for the terminal: what ``nag generate`` and ``nag search`` print.

Numbers are right-aligned with a few significant digits, text left-aligned, and a missing
value (NaN) prints as ``-``; the files written next to them keep full precision.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from nag.benchmarks.base import Benchmark


def cell(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if math.isnan(value):
        return "-"
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.2f}" if abs(value) >= 100 else f"{value:.4g}"


def format_table(
    rows: Sequence[Mapping[str, Any]], columns: Sequence[str], headers: Mapping[str, str] | None = None
) -> str:
    """``rows`` as aligned text under ``columns`` (renamed by ``headers``); the last column may
    run long (architecture strings), so it is never padded."""
    headers = headers or {}
    grid = [[headers.get(c, c) for c in columns]] + [[cell(r.get(c, math.nan)) for c in columns] for r in rows]
    numeric = [
        all(isinstance(r.get(c), (int, float)) and not isinstance(r.get(c), bool) for r in rows) for c in columns
    ]
    widths = [max(len(line[j]) for line in grid) for j in range(len(columns))]
    lines = []
    for line in grid:
        cells = [text.rjust(w) if num else text.ljust(w) for text, w, num in zip(line[:-1], widths, numeric)]
        lines.append("  ".join([*cells, line[-1]]).rstrip())
    return "\n".join(lines)


def latency_metric(benchmark: Benchmark | None, metrics: Sequence[str]) -> str | None:
    """The benchmark's latency column to show beside ``metrics``: its only one, or the only one
    of the first metric's dataset (``cifar10_*`` -> ``*_cifar10_*_latency``). None where none
    is shown already and the choice would be a guess (e.g. six devices); ask with --metrics."""
    if benchmark is None or any("latency" in m for m in metrics):
        return None
    found = [m for m in benchmark.metrics if m == "latency" or m.endswith("_latency")]
    if len(found) > 1 and metrics:
        dataset = metrics[0].split("_")[0]
        found = [m for m in found if f"_{dataset}_" in f"_{m}"]
    return found[0] if len(found) == 1 else None
