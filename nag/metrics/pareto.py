"""Pareto fronts and exact hypervolume for mixed max/min objectives (accuracy × latency).

Hand-written rather than taken from pymoo/botorch: the exact 2-D sweep and the slicing
recursion for more objectives are a few lines each, exact (no Monte Carlo), and do not pull
a multi-objective optimisation framework into the dependencies for one number.

Conventions: ``points`` is ``[n, d]``; ``maximize`` says per objective whether larger is
better. ``p`` dominates ``q`` when it is no worse in every objective and strictly better in
one, so identical points do not dominate each other and are all kept on the front.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from nag.benchmarks.base import Benchmark
from nag.errors import ConfigError
from nag.spaces.base import Arch

_CHUNK = 512


def _as_minimization(points: ArrayLike, maximize: bool | Sequence[bool]) -> np.ndarray:
    """``points`` with maximised objectives negated, so that smaller is better everywhere."""
    p = np.asarray(points, dtype=np.float64)
    if p.ndim != 2:
        raise ValueError(f"pareto: expected points of shape [n, d], got {p.shape}")
    flags = np.broadcast_to(np.asarray(maximize, dtype=bool), (p.shape[1],))
    if np.isnan(p).any():
        raise ValueError("pareto: points contain NaN; drop architectures without a measured value first")
    return np.where(flags, -p, p)


def _non_dominated_min(p: np.ndarray) -> np.ndarray:
    """Mask of the non-dominated rows of a minimisation problem."""
    n, d = p.shape
    if n == 0:
        return np.zeros(0, dtype=bool)
    if d == 1:
        return p[:, 0] == p[:, 0].min()
    unique, inverse = np.unique(p, axis=0, return_inverse=True)
    if d == 2:
        # unique rows are sorted by (f1, f2): a row survives iff its f2 beats every row before it
        # (rows before it have a smaller f1, or the same f1 and a smaller f2)
        f2 = unique[:, 1]
        best_before = np.concatenate([[np.inf], np.minimum.accumulate(f2)[:-1]])
        keep = f2 < best_before
    else:
        keep = np.ones(len(unique), dtype=bool)
        for start in range(0, len(unique), _CHUNK):
            q = unique[start : start + _CHUNK, None, :]
            dominated = ((unique[None] <= q).all(-1) & (unique[None] < q).any(-1)).any(-1)
            keep[start : start + _CHUNK] = ~dominated
    return keep[inverse.reshape(-1)]


def non_dominated(points: ArrayLike, maximize: bool | Sequence[bool]) -> np.ndarray:
    """Boolean mask of the points no other point dominates (duplicates of a front point stay)."""
    return _non_dominated_min(_as_minimization(points, maximize))


def pareto_front(points: ArrayLike, maximize: bool | Sequence[bool]) -> np.ndarray:
    """Indices of the non-dominated points, sorted by the first objective (best first)."""
    p = _as_minimization(points, maximize)
    idx = np.flatnonzero(_non_dominated_min(p))
    return idx[np.lexsort(p[idx].T[::-1])]


def _hypervolume_min(p: np.ndarray, ref: np.ndarray) -> float:
    """Volume dominated by ``p`` (all strictly better than ``ref``) inside the box up to ``ref``."""
    if len(p) == 0:
        return 0.0
    d = p.shape[1]
    if d == 1:
        return float(ref[0] - p[:, 0].min())
    p = np.unique(p[_non_dominated_min(p)], axis=0)
    if d == 2:
        # sorted by f1 ascending, so f2 descends along the front: a staircase of rectangles
        widths = np.diff(np.append(p[:, 0], ref[0]))
        return float((widths * (ref[1] - p[:, 1])).sum())
    # slice along the last objective: between two consecutive levels the dominated region is
    # the (d-1)-dimensional volume of the points at or below the lower level
    p = p[np.argsort(p[:, -1], kind="stable")]
    levels = np.append(p[:, -1], ref[-1])
    total = 0.0
    for i in range(len(p)):
        height = levels[i + 1] - levels[i]
        if height > 0:
            total += height * _hypervolume_min(p[: i + 1, :-1], ref[:-1])
    return total


def hypervolume(points: ArrayLike, reference: ArrayLike, maximize: bool | Sequence[bool]) -> float:
    """Exact hypervolume of ``points`` relative to ``reference`` (a point worse than all of interest).

    Points not strictly better than ``reference`` in every objective add nothing. Exact in any
    dimension; the 2-D case is an ``O(n log n)`` sweep, more objectives slice recursively
    (fine for fronts of a few hundred points in 3-D).
    """
    p = _as_minimization(points, maximize)
    ref = _as_minimization(np.asarray(reference, dtype=np.float64).reshape(1, -1), maximize)[0]
    if ref.shape[0] != p.shape[1]:
        raise ValueError(f"hypervolume: reference has {ref.shape[0]} objectives, points have {p.shape[1]}")
    return _hypervolume_min(p[(p < ref).all(1)], ref)


@dataclass
class ParetoFront:
    """Non-dominated architectures of a set, with their objective values ``[k, d]`` (best first)."""

    metrics: tuple[str, ...]
    maximize: tuple[bool, ...]
    archs: list[Arch]
    points: np.ndarray

    def hypervolume(self, reference: ArrayLike) -> float:
        return hypervolume(self.points, reference, self.maximize)


def directions(benchmark: Benchmark, metrics: Sequence[str]) -> tuple[bool, ...]:
    """Per metric, whether the benchmark maximises it (accuracies) or minimises it (costs)."""
    for m in metrics:
        benchmark.column(m)  # UnknownMetric naming the available ones
    return tuple(benchmark.higher_is_better(m) for m in metrics)


def front_of(archs: Sequence[Arch], points: ArrayLike, metrics: Sequence[str], maximize: Sequence[bool]) -> ParetoFront:
    """The Pareto front of ``archs`` scored by ``points``; rows with a NaN are left out."""
    p = np.asarray(points, dtype=np.float64).reshape(len(archs), len(metrics))
    measured = np.flatnonzero(~np.isnan(p).any(1))
    idx = measured[pareto_front(p[measured], maximize)] if len(measured) else measured
    return ParetoFront(tuple(metrics), tuple(maximize), [archs[i] for i in idx], p[idx])


def true_front(benchmark: Benchmark, metrics: Sequence[str]) -> ParetoFront:
    """The benchmark's own Pareto front over ``metrics`` (e.g. accuracy max, latency min),
    with directions from the benchmark; rows missing a value are left out."""
    if len(metrics) < 2:
        raise ConfigError(f"true_front: give at least two metrics, got {list(metrics)}")
    points = np.stack([benchmark.column(m) for m in metrics], 1)
    return front_of(benchmark.archs(), points, metrics, directions(benchmark, metrics))


def reference_point(benchmark: Benchmark, metrics: Sequence[str]) -> np.ndarray:
    """The table's worst value of each metric (its nadir over all rows): a reference every
    benchmarked architecture weakly dominates, so hypervolumes of any generated set and of the
    true front are measured in the same box."""
    worst = []
    for m, maximize in zip(metrics, directions(benchmark, metrics)):
        col = benchmark.column(m)
        worst.append(np.nanmin(col) if maximize else np.nanmax(col))
    return np.array(worst, dtype=np.float64)
