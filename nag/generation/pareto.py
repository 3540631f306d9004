"""Pareto mode: one call asks a conditional generator for a grid of (objective, cost) targets
and scores the set it returns against the benchmark's true Pareto front.

The generator never sees the benchmark's values here: targets are quantiles of the table's
columns (what its normalisation statistics already summarise), samples are decoded, and only
then are their true values looked up to build the generated front and its hypervolume.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from nag.benchmarks.base import Benchmark
from nag.errors import ConfigError
from nag.generation.generator import Generator
from nag.metrics.pareto import (
    ParetoFront,
    directions,
    front_of,
    reference_point,
    true_front,
)
from nag.spaces.base import Arch, SearchSpace


@dataclass
class ParetoSweep:
    """Every sample of a sweep with its requested targets and true values, the generated and
    the true fronts, and their hypervolumes in the same reference box."""

    metrics: tuple[str, ...]
    targets: np.ndarray
    archs: list[Arch | None]
    target_index: np.ndarray
    values: np.ndarray
    front: ParetoFront
    true_front: ParetoFront
    reference: np.ndarray
    hypervolume: float
    true_hypervolume: float

    @property
    def hypervolume_ratio(self) -> float:
        """Generated over true hypervolume: 1 when the samples reach the whole true front."""
        return self.hypervolume / self.true_hypervolume if self.true_hypervolume > 0 else math.nan

    def rows(self, space: SearchSpace) -> list[dict[str, Any]]:
        """One dict per sample (for CSV/JSON): requested targets, arch string and true values."""
        out = []
        for arch, g, vals in zip(self.archs, self.target_index, self.values):
            row: dict[str, Any] = {f"target_{m}": float(t) for m, t in zip(self.metrics, self.targets[g])}
            row["arch"] = space.to_string(arch) if arch is not None else ""
            row.update({m: float(v) for m, v in zip(self.metrics, vals)})
            out.append(row)
        return out


def true_values(benchmark: Benchmark, archs: Sequence[Arch | None], metrics: Sequence[str]) -> np.ndarray:
    """``[n, len(metrics)]`` measured values; NaN rows for ``None`` (invalid samples) and for
    architectures the table has no entry for."""
    columns = [benchmark.column(m) for m in metrics]
    out = np.full((len(archs), len(metrics)), math.nan)
    for j, arch in enumerate(archs):
        if arch is not None and benchmark.space.is_valid(arch) and arch in benchmark:
            i = benchmark.index(arch)
            out[j] = [c[i] for c in columns]
    return out


def target_grid(
    benchmark: Benchmark, metrics: Sequence[str], points: Sequence[int], quantiles: Sequence[tuple[float, float]]
) -> np.ndarray:
    """All combinations of ``points[i]`` evenly spaced quantiles of each metric's column.

    Quantiles count in the metric's good direction, so ``(0.5, 1.0)`` is the better half of
    the table whether the metric is maximised (accuracy) or minimised (latency).
    """
    if not (len(metrics) == len(points) == len(quantiles)):
        raise ConfigError(f"target_grid: give one point count and one quantile range per metric {list(metrics)}")
    axes = []
    for m, k, (lo, hi), maximize in zip(metrics, points, quantiles, directions(benchmark, metrics)):
        if k < 1 or not 0.0 <= lo <= hi <= 1.0:
            raise ConfigError(
                f"target_grid: {m}: need at least one point and 0 <= lo <= hi <= 1, got {k}, ({lo}, {hi})"
            )
        col = benchmark.column(m)
        q = np.linspace(lo, hi, k)
        axes.append(np.nanquantile(col, q if maximize else 1.0 - q))
    return np.array(list(itertools.product(*axes)), dtype=np.float64)


def pareto_sweep(
    generator: Generator,
    benchmark: Benchmark,
    metrics: Sequence[str] = ("cifar10_test_200ep", "hwnb_cifar10_fpga_latency"),
    targets: np.ndarray | None = None,
    points: Sequence[int] = (3, 8),
    quantiles: Sequence[tuple[float, float]] = ((0.5, 1.0), (0.0, 1.0)),
    samples_per_target: int = 25,
    reference: Sequence[float] | None = None,
    seed: int = 0,
    steps: int | None = None,
) -> ParetoSweep:
    """Sample ``samples_per_target`` architectures for every row of ``targets`` (``[G, M]`` raw
    values, one column per metric; default :func:`target_grid` over ``points``/``quantiles``),
    conditioning on all metrics at once, and score the union.

    ``reference`` defaults to the table's worst value of each metric
    (:func:`nag.metrics.pareto.reference_point`); the generated and true hypervolumes use the
    same one. All samples come from one ``generator.sample`` call with per-sample conditions,
    ``seed`` and ``steps``; the guidance scale and mode are the generator's own settings.
    """
    metrics = tuple(metrics)
    maximize = directions(benchmark, metrics)
    if targets is None:
        targets = target_grid(benchmark, metrics, points, quantiles)
    targets = np.asarray(targets, dtype=np.float64).reshape(-1, len(metrics))
    if samples_per_target < 1 or len(targets) == 0:
        raise ConfigError(
            f"pareto_sweep: need targets and samples_per_target >= 1, got {len(targets)} and {samples_per_target}"
        )
    # one call: each sample carries its own targets, so guidance passes batch across the grid
    conditions = {m: np.repeat(targets[:, j], samples_per_target).tolist() for j, m in enumerate(metrics)}
    archs = generator.sample(len(targets) * samples_per_target, seed=seed, steps=steps, conditions=conditions).archs
    values = true_values(benchmark, archs, metrics)
    ref = reference_point(benchmark, metrics) if reference is None else np.asarray(reference, dtype=np.float64)
    known = ~np.isnan(values).any(1)
    front = front_of([a for a, k in zip(archs, known) if k], values[known], metrics, maximize)
    truth = true_front(benchmark, metrics)
    return ParetoSweep(
        metrics=metrics,
        targets=targets,
        archs=archs,
        target_index=np.repeat(np.arange(len(targets)), samples_per_target),
        values=values,
        front=front,
        true_front=truth,
        reference=ref,
        hypervolume=front.hypervolume(ref),
        true_hypervolume=truth.hypervolume(ref),
    )
