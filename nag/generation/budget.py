"""Generation under a hard cost budget: sample, look the cost up in a table, keep what fits.

This is how a device the generator was never conditioned on is served (a bring-your-own
latency table, :class:`nag.benchmarks.latency_table.LatencyTableBenchmark`): the model is
steered by the conditions it knows, and the table is the judge. Works for any benchmark
metric, so the same filter scores HW-NAS-Bench devices and random-sampling baselines.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from nag.benchmarks.base import Benchmark
from nag.errors import ConfigError
from nag.generation.generator import Generator
from nag.nn.conditions import Conditions
from nag.spaces.base import Arch


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


def within_budget(values: np.ndarray, budget: float, minimize: bool = True) -> np.ndarray:
    """Mask of values meeting the budget (``<=``, or ``>=`` for a metric to maximise); NaN
    (unknown cost) never does."""
    values = np.asarray(values, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return values <= budget if minimize else values >= budget


@dataclass
class BudgetResult:
    """Kept samples (in sampling order) with their costs, and how many draws it took."""

    metric: str
    budget: float
    archs: list[Arch]
    costs: np.ndarray
    drawn: int
    valid: int
    measured: int

    @property
    def acceptance(self) -> float:
        """Kept per drawn sample: how much over-sampling the budget costs."""
        return len(self.archs) / self.drawn if self.drawn else math.nan


def generate_within_budget(
    generator: Generator,
    benchmark: Benchmark,
    metric: str,
    budget: float,
    num_samples: int,
    conditions: Conditions | None = None,
    seed: int = 0,
    max_draws: int | None = None,
    steps: int | None = None,
) -> BudgetResult:
    """Draw batches of ``num_samples`` (seeds ``seed, seed + 1, ...``) until ``num_samples``
    samples have ``metric <= budget`` in ``benchmark`` (``>=`` for a maximised metric) or
    ``max_draws`` (default ``20 * num_samples``) were drawn. Samples whose cost the table does
    not hold are not kept. ``conditions`` (raw units) go to the generator."""
    if num_samples < 1:
        raise ConfigError(f"num_samples={num_samples}: ask for at least one architecture")
    benchmark.column(metric)  # UnknownMetric naming the available ones
    minimize = not benchmark.higher_is_better(metric)
    max_draws = max_draws or 20 * num_samples
    kept: list[Arch] = []
    costs: list[float] = []
    drawn = valid = measured = 0
    round_seed = seed
    while len(kept) < num_samples and drawn < max_draws:
        n = min(num_samples, max_draws - drawn)
        result = generator.sample(n, seed=round_seed, steps=steps, conditions=conditions)
        values = true_values(benchmark, result.archs, [metric])[:, 0]
        ok = within_budget(values, budget, minimize)
        drawn += n
        valid += len(result.valid)
        measured += int((~np.isnan(values)).sum())
        for j in np.flatnonzero(ok)[: num_samples - len(kept)]:
            kept.append(result.archs[j])
            costs.append(float(values[j]))
        round_seed += 1
    return BudgetResult(metric, budget, kept, np.array(costs), drawn, valid, measured)
