"""Generation under a hard cost budget: sample, look the cost up in a table, keep what fits.

This is how a device the generator was never conditioned on is served (a bring-your-own
latency table, :class:`nag.benchmarks.latency_table.LatencyTableBenchmark`): the model is
steered by the conditions it knows, and the table is the judge. Works for any benchmark
metric, so the same filter scores HW-NAS-Bench devices and random-sampling baselines.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

from nag.benchmarks.base import Benchmark
from nag.errors import ConfigError
from nag.generation import decode_samples
from nag.spaces.base import Arch


class GraphSampler(Protocol):
    """Anything with the generators' ``sample_graphs`` (a trained module, or a baseline)."""

    def sample_graphs(self, num_samples: int, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor]: ...


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


def generate_within_budget(model: GraphSampler, benchmark: Benchmark, metric: str, budget: float,
                           num_samples: int, conditions: Mapping[str, float] | None = None,
                           guidance_scale: float | Mapping[str, float] | None = None, seed: int = 0,
                           max_draws: int | None = None, **sample_kwargs: Any) -> BudgetResult:
    """Draw batches of ``num_samples`` (seeds ``seed, seed + 1, ...``) until ``num_samples``
    samples have ``metric <= budget`` in ``benchmark`` (``>=`` for a maximised metric) or
    ``max_draws`` (default ``20 * num_samples``) were drawn. Samples whose cost the table does
    not hold are not kept. ``conditions``/``guidance_scale`` go to ``sample_graphs`` (raw units)."""
    if num_samples < 1:
        raise ConfigError(f"num_samples={num_samples}: ask for at least one architecture")
    benchmark.column(metric)  # UnknownMetric naming the available ones
    minimize = not benchmark.higher_is_better(metric)
    max_draws = max_draws or 20 * num_samples
    kwargs = dict(sample_kwargs)
    if conditions is not None:
        kwargs["conditions"] = dict(conditions)
    if guidance_scale is not None:
        kwargs["guidance_scale"] = guidance_scale
    kept: list[Arch] = []
    costs: list[float] = []
    drawn = valid = measured = 0
    round_seed = seed
    while len(kept) < num_samples and drawn < max_draws:
        n = min(num_samples, max_draws - drawn)
        result = decode_samples(benchmark.space, model.sample_graphs(n, seed=round_seed, **kwargs))
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
