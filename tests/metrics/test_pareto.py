"""Pareto front and hypervolume against brute force on random points (with ties and duplicates)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from nag.benchmarks import NBGraphBenchmark
from nag.metrics.pareto import (
    hypervolume,
    non_dominated,
    pareto_front,
    reference_point,
    true_front,
)


def brute_force_front(points: np.ndarray, maximize: list[bool]) -> np.ndarray:
    """A point is on the front unless some other point is at least as good everywhere and
    strictly better somewhere."""
    sign = np.where(maximize, 1.0, -1.0)  # larger is better after this
    q = points * sign
    keep = []
    for i in range(len(q)):
        dominated = any((q[j] >= q[i]).all() and (q[j] > q[i]).any() for j in range(len(q)) if j != i)
        keep.append(not dominated)
    return np.array(keep)


def brute_force_hypervolume(points: np.ndarray, ref: np.ndarray, maximize: list[bool]) -> float:
    """Union of the boxes [point, ref], by cutting space at every coordinate and summing the
    cells whose better corner some point reaches."""
    sign = np.where(maximize, -1.0, 1.0)  # smaller is better after this
    p, r = points * sign, ref * sign
    p = p[(p < r).all(1)]
    if len(p) == 0:
        return 0.0
    cuts = [np.unique(np.append(p[:, k], r[k])) for k in range(p.shape[1])]
    total = 0.0
    for cell in itertools.product(*[range(len(c) - 1) for c in cuts]):
        lower = np.array([cuts[k][i] for k, i in enumerate(cell)])
        upper = np.array([cuts[k][i + 1] for k, i in enumerate(cell)])
        if (p <= lower).all(1).any():
            total += float(np.prod(upper - lower))
    return total


def random_points(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    """Small integer grids give many ties and exact duplicates; the rest are continuous."""
    if rng.random() < 0.5:
        return rng.integers(0, 6, size=(n, d)).astype(float)
    return rng.normal(size=(n, d))


@pytest.mark.parametrize("d", [2, 3])
def test_front_matches_brute_force(d: int) -> None:
    rng = np.random.default_rng(d)
    for _ in range(60):
        points = random_points(rng, int(rng.integers(1, 40)), d)
        maximize = list(rng.random(d) < 0.5)
        expected = brute_force_front(points, maximize)
        np.testing.assert_array_equal(non_dominated(points, maximize), expected)
        assert sorted(pareto_front(points, maximize)) == list(np.flatnonzero(expected))


@pytest.mark.parametrize("d", [2, 3])
def test_hypervolume_matches_brute_force(d: int) -> None:
    rng = np.random.default_rng(10 + d)
    for _ in range(40):
        points = random_points(rng, int(rng.integers(1, 15 if d == 3 else 30)), d)
        maximize = list(rng.random(d) < 0.5)
        # a reference that some points fail to beat, so clipping is exercised too
        worst = np.where(maximize, points.min(0), points.max(0))
        ref = worst + np.where(maximize, -1.0, 1.0) * rng.uniform(-0.5, 1.0, size=d)
        assert hypervolume(points, ref, maximize) == pytest.approx(brute_force_hypervolume(points, ref, maximize))


def test_mixed_directions_are_negation() -> None:
    rng = np.random.default_rng(0)
    points = rng.normal(size=(50, 2))
    flipped = points * [1.0, -1.0]
    np.testing.assert_array_equal(non_dominated(points, [False, True]), non_dominated(flipped, [False, False]))
    assert hypervolume(points, [3.0, -3.0], [False, True]) == pytest.approx(
        hypervolume(flipped, [3.0, 3.0], [False, False])
    )


def test_front_is_sorted_best_first_and_staircase() -> None:
    points = np.array([[90.0, 3.0], [94.0, 8.0], [80.0, 1.0], [85.0, 5.0], [94.0, 8.0]])
    idx = pareto_front(points, [True, False])
    assert list(idx) == [1, 4, 0, 2]  # (85, 5) is dominated by (90, 3); duplicates both stay
    # rectangles by hand: accuracy above 70 x latency below 10
    expected = (94 - 90) * (10 - 8) + (90 - 80) * (10 - 3) + (80 - 70) * (10 - 1)
    assert hypervolume(points, [70.0, 10.0], [True, False]) == pytest.approx(expected)


def test_nan_is_rejected() -> None:
    with pytest.raises(ValueError, match="NaN"):
        non_dominated(np.array([[1.0, np.nan]]), [True, False])


def test_true_front_of_a_benchmark() -> None:
    bench = NBGraphBenchmark("proteins")
    metrics = ("test_acc", "latency")
    front = true_front(bench, metrics)
    points = np.stack([bench.column(m) for m in metrics], 1)
    assert front.maximize == (True, False)
    on_front = np.isin([bench.space.key(a) for a in bench.archs()], [bench.space.key(a) for a in front.archs])
    # exact front of a finite set: no row dominates a member, and every other row is dominated
    # by a member (dominance is transitive, so checking against the members is enough)
    for acc, lat in front.points:
        assert not dominates(points, acc, lat).any()
    members = front.points
    for acc, lat in points[~on_front]:
        assert dominates(members, acc, lat).any()
    ref = reference_point(bench, metrics)
    np.testing.assert_allclose(ref, [np.nanmin(points[:, 0]), np.nanmax(points[:, 1])])
    assert front.hypervolume(ref) == pytest.approx(hypervolume(points, ref, [True, False]))


def dominates(rows: np.ndarray, acc: float, lat: float) -> np.ndarray:
    """Which rows dominate (acc, lat) for accuracy max, latency min."""
    no_worse = (rows[:, 0] >= acc) & (rows[:, 1] <= lat)
    return no_worse & ((rows[:, 0] > acc) | (rows[:, 1] < lat))
