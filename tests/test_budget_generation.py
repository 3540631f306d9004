"""The filter path for a new device: sample, look up the user's latency table, keep what fits."""

from __future__ import annotations

import csv
from typing import Any

import numpy as np
import pytest
import torch

from nag.benchmarks import NBGraphBenchmark
from nag.benchmarks.latency_table import LatencyTableBenchmark
from nag.errors import UnknownMetric
from nag.generation import ModelGenerator
from nag.generation.budget import generate_within_budget, true_values, within_budget
from nag.spaces.nbgraph import PROTEINS_OPS, NBGraphSpace


class RandomGraphs:
    """A stand-in generator model: uniform archs of the space per seed; every 7th sample
    invalid (an all-zero graph); records the keyword arguments it was called with."""

    condition_names = ("test_acc",)

    def __init__(self, space: Any) -> None:
        self.space, self.calls = space, []

    def archs(self, n: int, seed: int) -> list:
        return self.space.sample(n, np.random.default_rng(seed))

    def sample_graphs(self, num_samples: int, seed: int = 0, **kwargs: Any) -> dict[str, torch.Tensor]:
        self.calls.append({"num_samples": num_samples, "seed": seed, **kwargs})
        x, adj, mask = self.space.encode_batch(self.archs(num_samples, seed))
        x[::7] = 0.0
        return {"x": x, "adj": adj, "mask": mask}


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory) -> tuple[LatencyTableBenchmark, dict[str, float]]:
    """Half of NAS-Bench-Graph's proteins cells (its 5-op space) measured on a "new device"."""
    bench = NBGraphBenchmark("proteins", space=NBGraphSpace(PROTEINS_OPS))
    rng = np.random.default_rng(0)
    archs = bench.archs()
    picked = rng.choice(len(archs), size=len(archs) // 2, replace=False)
    measured = {bench.space.key(archs[i]): float(rng.uniform(1.0, 10.0)) for i in picked}
    path = tmp_path_factory.mktemp("device") / "latency.csv"
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["arch", "latency"])
        writer.writerows((bench.space.to_string(archs[i]), measured[bench.space.key(archs[i])]) for i in picked)
    return LatencyTableBenchmark(bench, str(path)), measured


def test_keeps_exactly_the_measured_samples_under_budget(table: tuple[LatencyTableBenchmark, dict[str, float]]) -> None:
    bench, measured = table
    budget = float(np.quantile(list(measured.values()), 0.25))
    model = RandomGraphs(bench.space)
    generator = ModelGenerator(model, bench.space, project=False, guidance_scale=2.0)
    result = generate_within_budget(
        generator, bench, "device_latency", budget, num_samples=40, conditions={"test_acc": 0.8}, seed=3
    )
    # replay the same seeds by hand: valid, measured by the CSV, at or under the budget
    expected, costs, seed, drawn = [], [], 3, 0
    while len(expected) < 40:
        for j, arch in enumerate(model.archs(40, seed)):
            key = bench.space.key(arch)
            if j % 7 and key in measured and measured[key] <= budget and len(expected) < 40:
                expected.append(arch)
                costs.append(measured[key])
        seed, drawn = seed + 1, drawn + 40
    assert result.archs == expected
    np.testing.assert_array_equal(result.costs, costs)
    assert result.drawn == drawn and result.acceptance == pytest.approx(40 / drawn)
    assert all(c["conditions"] == {"test_acc": 0.8} and c["guidance_scale"] == 2.0 for c in model.calls)
    assert [c["seed"] for c in model.calls] == list(range(3, seed))
    assert result.valid == sum(40 - len(range(0, 40, 7)) for _ in model.calls)


def test_stops_at_max_draws(table: tuple[LatencyTableBenchmark, dict[str, float]]) -> None:
    bench, measured = table
    impossible = min(measured.values()) / 2
    result = generate_within_budget(
        ModelGenerator(RandomGraphs(bench.space), bench.space, project=False),
        bench,
        "device_latency",
        impossible,
        num_samples=10,
        max_draws=25,
    )
    assert result.archs == [] and result.drawn == 25 and result.acceptance == 0.0
    assert 0 < result.measured < result.valid < 25


def test_true_values_and_budget_direction(table: tuple[LatencyTableBenchmark, dict[str, float]]) -> None:
    bench, measured = table
    archs = [bench.archs()[0], None, bench.archs()[1]]
    values = true_values(bench, archs, ["test_acc", "device_latency"])
    assert values[0, 0] == bench.query(archs[0], "test_acc")
    assert np.isnan(values[1]).all()
    for row, arch in ((0, archs[0]), (2, archs[2])):
        key = bench.space.key(arch)
        assert values[row, 1] == measured[key] if key in measured else np.isnan(values[row, 1])
    np.testing.assert_array_equal(within_budget(np.array([1.0, 2.0, np.nan]), 1.5), [True, False, False])
    np.testing.assert_array_equal(
        within_budget(np.array([1.0, 2.0, np.nan]), 1.5, minimize=False), [False, True, False]
    )
    with pytest.raises(UnknownMetric, match="available"):
        generate_within_budget(
            ModelGenerator(RandomGraphs(bench.space), bench.space, project=False),
            bench,
            "gpu_latency",
            1.0,
            num_samples=1,
        )
