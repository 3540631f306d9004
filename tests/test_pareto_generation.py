"""Pareto mode: one call sweeps a grid of (accuracy, latency) targets and scores the front."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest
import torch

from nag.benchmarks import NBGraphBenchmark
from nag.errors import ConfigError
from nag.generation import ModelGenerator
from nag.generation.pareto import pareto_sweep, target_grid
from nag.metrics.pareto import hypervolume
from nag.spaces.nbgraph import PROTEINS_OPS, NBGraphSpace

METRICS = ("test_acc", "latency")


@pytest.fixture(scope="module")
def bench() -> NBGraphBenchmark:
    return NBGraphBenchmark("proteins", space=NBGraphSpace(PROTEINS_OPS))


class Fixed:
    """A stand-in generator model returning the given archs in turn, whatever it is asked;
    records calls."""

    condition_names = tuple(METRICS)

    def __init__(self, space: Any, archs: list) -> None:
        self.space, self.archs, self.calls = space, archs, []

    def sample_graphs(self, num_samples: int, seed: int = 0, **kwargs: Any) -> dict[str, torch.Tensor]:
        self.calls.append({"num_samples": num_samples, "seed": seed, **kwargs})
        picked = [self.archs[i % len(self.archs)] for i in range(num_samples)]
        x, adj, mask = self.space.encode_batch(picked)
        return {"x": x, "adj": adj, "mask": mask}


def test_grid_spans_quantiles_in_the_good_direction(bench: NBGraphBenchmark) -> None:
    grid = target_grid(bench, METRICS, points=(2, 3), quantiles=((0.5, 1.0), (0.0, 1.0)))
    acc, lat = bench.column("test_acc"), bench.column("latency")
    accs = [np.quantile(acc, 0.5), acc.max()]
    lats = [lat.max(), np.quantile(lat, 0.5), lat.min()]  # quantile 1 of "good" = the fastest
    np.testing.assert_allclose(grid, list(itertools.product(accs, lats)))
    with pytest.raises(ConfigError, match="lo <= hi"):
        target_grid(bench, METRICS, points=(2, 2), quantiles=((0.9, 0.1), (0.0, 1.0)))


def test_reaching_the_true_front_gives_ratio_one(bench: NBGraphBenchmark) -> None:
    acc, lat = bench.column("test_acc"), bench.column("latency")
    # the true front by brute force: no other row at least as good in both, better in one
    front = [
        a for a, x, y in zip(bench.archs(), acc, lat) if not (((acc >= x) & (lat <= y) & ((acc > x) | (lat < y))).any())
    ]
    model = Fixed(bench.space, [bench.archs()[0]] * 3 + front)
    generator = ModelGenerator(
        model, bench.space, guidance_scale={"test_acc": 2.0, "latency": 1.0}, sampler="ancestral"
    )
    sweep = pareto_sweep(generator, bench, METRICS, points=(2, 3), samples_per_target=4, seed=5)
    assert len(front) + 3 <= 24
    assert sweep.hypervolume_ratio == pytest.approx(1.0)
    assert {bench.space.key(a) for a in sweep.front.archs} == {bench.space.key(a) for a in front}
    assert len(sweep.archs) == 24 and len(sweep.targets) == 6
    # one call; every sample conditioned on both metrics of its grid cell, in raw units
    (call,) = model.calls
    assert call["num_samples"] == 24 and call["seed"] == 5 and call["sampler"] == "ancestral"
    assert call["guidance_scale"] == {"test_acc": 2.0, "latency": 1.0}
    for j, m in enumerate(METRICS):
        assert call["conditions"][m] == [t[j] for t in sweep.targets for _ in range(4)]
    np.testing.assert_array_equal(sweep.target_index, np.repeat(np.arange(6), 4))


def test_random_samples_score_their_own_hypervolume(bench: NBGraphBenchmark) -> None:
    archs = bench.space.sample(60, np.random.default_rng(0))
    sweep = pareto_sweep(
        ModelGenerator(Fixed(bench.space, archs), bench.space),
        bench,
        METRICS,
        targets=np.array([[0.7, 0.01], [0.8, 0.02]]),
        samples_per_target=30,
    )
    points = np.array([[bench.query(a, m) for m in METRICS] for a in archs])
    ref = np.array([bench.column("test_acc").min(), bench.column("latency").max()])
    np.testing.assert_allclose(sweep.reference, ref)
    expected = hypervolume(points, ref, [True, False])
    assert sweep.hypervolume == pytest.approx(expected)
    assert 0 < sweep.hypervolume_ratio < 1
    np.testing.assert_allclose(sweep.values, points)
    rows = sweep.rows(bench.space)
    assert rows[0]["target_test_acc"] == 0.7 and rows[30]["target_latency"] == 0.02
    assert rows[0]["arch"] == bench.space.to_string(sweep.archs[0])
