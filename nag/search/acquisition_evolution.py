"""Evolution on a surrogate's acquisition: how BO proposes where no pool holds the good architectures.

In a space of 10^20 subnets, ranking a random pool caps what BO can find at the pool's best;
evolving a population on the acquisition (free to evaluate, no query spent) walks to
architectures no pool holds. Children are mutations (:meth:`SearchSpace.mutate`) and, where the
space defines it, crossovers (:meth:`SearchSpace.crossover`) of the best quarter; only
architectures the oracle could answer within its constraints enter the population.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from nag.search.oracle import QueryOracle
from nag.spaces.base import Arch, SearchSpace

#: Share of the population kept as parents each generation (OFA's ``parent_ratio``).
PARENT_SHARE = 0.25


def evolve(
    oracle: QueryOracle[Any],
    score: Callable[[Sequence[Arch]], np.ndarray],
    start: Sequence[Arch],
    rng: np.random.Generator,
    population: int = 100,
    generations: int = 20,
) -> list[Arch]:
    """Every unqueried architecture the evolution scored, best acquisition first.

    ``start`` seeds the population (queried ones may be parents, never proposals); each
    generation adds ``population`` children, half mutants and half crossovers, and keeps the
    ``population`` best by ``score`` (higher is better)."""
    space = oracle.space
    can_cross = type(space).crossover is not SearchSpace.crossover
    scored: dict[str, tuple[Arch, float]] = {}

    def add(archs: Sequence[Arch]) -> None:
        fresh = {}
        for arch in archs:
            key = space.key(arch)
            if key not in scored and key not in fresh and oracle.contains(arch):
                fresh[key] = arch
        if fresh:
            for (key, arch), value in zip(fresh.items(), score(list(fresh.values()))):
                scored[key] = (arch, float(value))

    add(start)
    for _ in range(generations):
        ranked = sorted(scored.values(), key=lambda item: -item[1])[:population]
        if not ranked:
            break
        parents = [arch for arch, _ in ranked[: max(2, int(PARENT_SHARE * len(ranked)))]]
        children = []
        for i in range(population):
            a = parents[int(rng.integers(len(parents)))]
            if can_cross and i % 2:
                children.append(space.crossover(a, parents[int(rng.integers(len(parents)))], rng))
            else:
                children.append(space.mutate(a, rng))
        add(children)
    ranked = sorted(scored.values(), key=lambda item: -item[1])
    return [arch for arch, _ in ranked if not oracle.queried(arch)]
