"""Regularized evolution (Real et al., 2019): tournament selection with ageing."""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

from nag.errors import ConfigError
from nag.search.oracle import QueryOracle, SearchResult, candidate_stream
from nag.search.strategy import SearchStrategy

#: Mutations tried before giving up on a parent whose children are all unbenchmarked or queried.
MAX_MUTATION_TRIES = 100


class RegularizedEvolution(SearchStrategy):
    """A population of the ``population_size`` most recent architectures; each step mutates the
    best of ``sample_size`` random members and replaces the *oldest* member, not the worst, so
    a lucky early architecture cannot dominate forever (the "regularization")."""

    name = "regularized_evolution"

    def __init__(self, population_size: int = 20, sample_size: int = 5) -> None:
        if population_size < 1 or not 1 <= sample_size <= population_size:
            raise ConfigError(
                f"regularized evolution needs 1 <= sample_size <= population_size, "
                f"got sample_size={sample_size}, population_size={population_size}"
            )
        self.population_size = population_size
        self.sample_size = sample_size

    def run(self, oracle: QueryOracle[Any], budget: int, seed: int) -> SearchResult:
        rng = np.random.default_rng(seed)
        goal = oracle.target(budget)
        fresh = candidate_stream(oracle, rng)
        population: deque[tuple[Any, float]] = deque()
        while len(population) < self.population_size and oracle.num_queries < goal:
            arch = next(fresh, None)
            if arch is None:
                break
            population.append((arch, oracle.score(oracle.query(arch))))
        while population and oracle.num_queries < goal:
            picks = rng.choice(len(population), size=min(self.sample_size, len(population)), replace=False)
            parent = max((population[i] for i in picks.tolist()), key=lambda member: member[1])[0]
            child = self._child(oracle, parent, rng)
            if child is None:
                child = next(fresh, None)
                if child is None:  # every benchmarked architecture is queried
                    break
            population.append((child, oracle.score(oracle.query(child))))
            population.popleft()
        return SearchResult.from_oracle(self.name, seed, oracle)

    @staticmethod
    def _child(oracle: QueryOracle[Any], parent: Any, rng: np.random.Generator) -> Any | None:
        """A mutant of ``parent`` that is benchmarked and new, or None after too many tries."""
        for _ in range(MAX_MUTATION_TRIES):
            child = oracle.space.mutate(parent, rng)
            if oracle.contains(child) and not oracle.queried(child):
                return child
        return None

    def __repr__(self) -> str:
        return f"RegularizedEvolution(population_size={self.population_size}, sample_size={self.sample_size})"
