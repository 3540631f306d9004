"""Training data of the macro transformer: macro architectures found by constrained
regularized evolution under a zero-cost-proxy fitness, for many random task/budget settings.

Nothing here is trained: the fitness is a ZC proxy of the freshly initialised network on a
fixed batch of real images, and feasibility is the exact closed-form budget check, so the
data is reproducible from its seed alone (setting ``i`` uses ``default_rng([seed, i])``).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from nag.spaces.macro import MacroArch, MacroConstraints, MacroSpace
from nag.spaces.macro_tokens import MacroTokenizer
from nag.zc import compute_proxies, image_batch

#: Random draws tried for each initial population member, and mutations per child.
SAMPLE_TRIES = 50
MUTATION_TRIES = 30


class ZCFitness:
    """One zero-cost proxy of ``space.to_module(arch)`` on a seeded image batch resized to the
    task's input size (labels folded onto the task's classes), cached per canonical key."""

    def __init__(self, images: str | Path, proxy: str = "synflow", batch_size: int = 16, seed: int = 0) -> None:
        self.images, self.proxy, self.batch_size, self.seed = str(images), proxy, batch_size, seed
        self._cache: dict[tuple, float] = {}
        self._batches: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = {}

    def __call__(self, space: MacroSpace, arch: MacroArch, constraints: MacroConstraints) -> float:
        nc, size, _, _, channels = constraints
        key = (space.key(arch), nc, size, channels)
        if key not in self._cache:
            if (size, channels) not in self._batches:
                self._batches[size, channels] = image_batch(self.images, self.batch_size, self.seed, size, channels)
            x, y = self._batches[size, channels]
            with torch.random.fork_rng():
                torch.manual_seed(self.seed)
                module = space.to_module(arch, num_classes=nc, in_channels=channels)
            value = compute_proxies(module, x, y % nc, names=[self.proxy], seed=self.seed)[self.proxy]
            self._cache[key] = value if math.isfinite(value) else -math.inf
        return self._cache[key]


Fitness = Callable[[MacroSpace, MacroArch, MacroConstraints], float]


def draw_constraints(tokenizer: MacroTokenizer, rng: np.random.Generator) -> MacroConstraints:
    """A random task with budgets at the bin values just above the cost of two random
    architectures (one for params, one for FLOPs): realistic budgets, often both binding."""
    space = tokenizer.space
    nc = tokenizer.num_classes[int(rng.integers(len(tokenizer.num_classes)))]
    size = tokenizer.input_sizes[int(rng.integers(len(tokenizer.input_sizes)))]
    a, b = space.sample(2, rng)
    p = space.params(a, nc, tokenizer.in_channels)
    f = space.flops(b, nc, tokenizer.in_channels, size)
    pe, fe = tokenizer.params_edges, tokenizer.flops_edges
    return MacroConstraints(
        nc,
        size,
        pe[min(int(np.searchsorted(pe, p)), len(pe) - 1)],
        fe[min(int(np.searchsorted(fe, f)), len(fe) - 1)],
        tokenizer.in_channels,
    )


def evolve(
    space: MacroSpace,
    constraints: MacroConstraints,
    fitness: Fitness,
    rng: np.random.Generator,
    population_size: int = 8,
    sample_size: int = 3,
    cycles: int = 16,
) -> list[tuple[MacroArch, float]]:
    """Regularized evolution (tournament of ``sample_size``, oldest dies) restricted to
    architectures within both budgets; every distinct evaluated architecture with its
    fitness, best first. Empty when random sampling finds nothing feasible."""
    history: dict[str, tuple[MacroArch, float]] = {}

    def evaluate(arch: MacroArch) -> tuple[MacroArch, float]:
        history[space.key(arch)] = (arch, fitness(space, arch, constraints))
        return history[space.key(arch)]

    population: deque[tuple[MacroArch, float]] = deque()
    for arch in space.sample(population_size * SAMPLE_TRIES, rng):
        if len(population) == population_size:
            break
        if space.key(arch) not in history and space.satisfies(arch, constraints):
            population.append(evaluate(arch))
    for _ in range(cycles if population else 0):
        picks = rng.choice(len(population), size=min(sample_size, len(population)), replace=False)
        parent = max((population[i] for i in picks.tolist()), key=lambda member: member[1])[0]
        for _ in range(MUTATION_TRIES):
            child = space.mutate(parent, rng)
            if space.key(child) not in history and space.satisfies(child, constraints):
                population.append(evaluate(child))
                if len(population) > population_size:
                    population.popleft()
                break
    return sorted(history.values(), key=lambda member: -member[1])


def generate_records(
    tokenizer: MacroTokenizer,
    fitness: Fitness,
    num_settings: int,
    population_size: int = 8,
    sample_size: int = 3,
    cycles: int = 16,
    top_k: int = 6,
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
) -> list[dict]:
    """The ``top_k`` fittest distinct architectures of an evolution per random setting, as
    rows ``setting, num_classes, input_size, in_channels, max_params, max_flops, arch,
    fitness, params, flops`` (``arch`` in string form); ``progress(i)`` after each setting."""
    space, records = tokenizer.space, []
    for i in range(num_settings):
        rng = np.random.default_rng([seed, i])
        constraints = draw_constraints(tokenizer, rng)
        for arch, value in evolve(space, constraints, fitness, rng, population_size, sample_size, cycles)[:top_k]:
            p, f = space.cost(arch, constraints)
            records.append(
                {
                    "setting": i,
                    **constraints._asdict(),
                    "arch": space.to_string(arch),
                    "fitness": value,
                    "params": p,
                    "flops": f,
                }
            )
        if progress is not None:
            progress(i)
    return records
