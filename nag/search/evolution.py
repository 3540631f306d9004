"""Regularized evolution (Real et al., 2019): tournament selection with ageing."""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Hashable
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
    a lucky early architecture cannot dominate forever (the "regularization").

    ``batch_size`` children are bred from as many tournaments and measured together (their
    trainings run in parallel where the evaluator can), replacing as many of the oldest; 1 is
    Real et al.'s sequential loop. The first population is one batch."""

    name = "regularized_evolution"

    def __init__(self, population_size: int = 20, sample_size: int = 5, batch_size: int = 1) -> None:
        if population_size < 1 or not 1 <= sample_size <= population_size or not 1 <= batch_size <= population_size:
            raise ConfigError(
                f"regularized evolution needs 1 <= sample_size <= population_size and 1 <= batch_size <= "
                f"population_size, got sample_size={sample_size}, batch_size={batch_size}, "
                f"population_size={population_size}"
            )
        self.population_size = population_size
        self.sample_size = sample_size
        self.batch_size = batch_size

    def run(self, oracle: QueryOracle[Any], budget: int, seed: int) -> SearchResult:
        rng = np.random.default_rng(seed)
        goal = oracle.target(budget)
        fresh = candidate_stream(oracle, rng)
        first = list(itertools.islice(fresh, min(self.population_size, goal - oracle.num_queries)))
        population: deque[tuple[Any, float]] = deque(zip(first, map(oracle.score, oracle.query_batch(first))))
        while population and oracle.num_queries < goal:
            children: list[Any] = []
            keys: set[Hashable] = set()
            while len(children) < min(self.batch_size, goal - oracle.num_queries):
                picks = rng.choice(len(population), size=min(self.sample_size, len(population)), replace=False)
                parent = max((population[i] for i in picks.tolist()), key=lambda member: member[1])[0]
                child = self._child(oracle, parent, rng, keys)
                if child is None:
                    child = next(fresh, None)
                    if child is None:  # every benchmarked architecture is queried
                        break
                keys.add(oracle.row_key(child))
                children.append(child)
            if not children:
                break
            population.extend(zip(children, map(oracle.score, oracle.query_batch(children))))
            for _ in children:
                population.popleft()
        return SearchResult.from_oracle(self.name, seed, oracle)

    @staticmethod
    def _child(oracle: QueryOracle[Any], parent: Any, rng: np.random.Generator, taken: set[Hashable]) -> Any | None:
        """A mutant of ``parent`` that is benchmarked, new and not ``taken`` by a sibling of its
        batch, or None after too many tries."""
        for _ in range(MAX_MUTATION_TRIES):
            child = oracle.space.mutate(parent, rng)
            if oracle.contains(child) and not oracle.queried(child) and oracle.row_key(child) not in taken:
                return child
        return None

    def __repr__(self) -> str:
        return (
            f"RegularizedEvolution(population_size={self.population_size}, sample_size={self.sample_size}, "
            f"batch_size={self.batch_size})"
        )
