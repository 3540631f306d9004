"""Local search (White et al., 2021: "local search is state of the art for NAS benchmarks")."""

from __future__ import annotations

from typing import Any

import numpy as np

from nag.errors import ConfigError
from nag.search.oracle import QueryOracle, SearchResult, candidate_stream
from nag.search.strategy import SearchStrategy


class LocalSearch(SearchStrategy):
    """First-improvement hill climbing with random restarts.

    Starts from the best of ``num_init`` random architectures; queries the current
    architecture's unqueried, benchmarked neighbours in random order and moves to the first
    that beats it. At a local optimum (no unqueried neighbour is better) it restarts from a
    random unqueried architecture. First improvement, not best improvement, because on these
    benchmarks most neighbours are no better, so scanning whole neighbourhoods wastes queries.
    """

    name = "local_search"

    def __init__(self, num_init: int = 10) -> None:
        if num_init < 1:
            raise ConfigError(f"local search needs num_init >= 1 random starting points, got {num_init}")
        self.num_init = num_init

    def run(self, oracle: QueryOracle[Any], budget: int, seed: int) -> SearchResult:
        rng = np.random.default_rng(seed)
        goal = oracle.target(budget)
        fresh = candidate_stream(oracle, rng)
        current: tuple[Any, float] | None = None  # (arch, score)
        for _ in range(self.num_init):
            arch = next(fresh, None) if oracle.num_queries < goal else None
            if arch is None:
                break
            score = oracle.score(oracle.query(arch))
            if current is None or score > current[1]:
                current = (arch, score)
        while current is not None and oracle.num_queries < goal:
            improved = self._climb(oracle, current, goal, rng)
            if improved is not None:
                current = improved
            elif oracle.num_queries < goal:  # a local optimum: restart at random
                restart = next(fresh, None)
                current = None if restart is None else (restart, oracle.score(oracle.query(restart)))
        return SearchResult.from_oracle(self.name, seed, oracle)

    @staticmethod
    def _climb(
        oracle: QueryOracle[Any], current: tuple[Any, float], goal: int, rng: np.random.Generator
    ) -> tuple[Any, float] | None:
        """The first unqueried neighbour that beats ``current``, or None at a local optimum."""
        arch, score = current
        neighbours = [n for n in oracle.space.neighbours(arch) if oracle.contains(n) and not oracle.queried(n)]
        for i in rng.permutation(len(neighbours)).tolist():
            if oracle.num_queries >= goal:
                return None
            value = oracle.score(oracle.query(neighbours[i]))
            if value > score:
                return neighbours[i], value
        return None

    def __repr__(self) -> str:
        return f"LocalSearch(num_init={self.num_init})"
