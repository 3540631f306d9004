"""Local search (White et al., 2021: "local search is state of the art for NAS benchmarks")."""

from __future__ import annotations

import itertools
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
    ``batch_size`` neighbours are measured together (in parallel where the evaluator can) and
    the best improving one of them is taken; 1 is plain first improvement.
    """

    name = "local_search"

    def __init__(self, num_init: int = 10, batch_size: int = 1) -> None:
        if num_init < 1 or batch_size < 1:
            raise ConfigError(
                f"local search needs num_init >= 1 random starting points and batch_size >= 1, "
                f"got num_init={num_init}, batch_size={batch_size}"
            )
        self.num_init = num_init
        self.batch_size = batch_size

    def run(self, oracle: QueryOracle[Any], budget: int, seed: int) -> SearchResult:
        rng = np.random.default_rng(seed)
        goal = oracle.target(budget)
        fresh = candidate_stream(oracle, rng)
        first = list(itertools.islice(fresh, min(self.num_init, goal - oracle.num_queries)))
        scored = list(zip(first, map(oracle.score, oracle.query_batch(first))))
        current = max(scored, key=lambda member: member[1]) if scored else None  # (arch, score), first of ties
        while current is not None and oracle.num_queries < goal:
            improved = self._climb(oracle, current, goal, rng, self.batch_size)
            if improved is not None:
                current = improved
            elif oracle.num_queries < goal:  # a local optimum: restart at random
                restart = next(fresh, None)
                current = None if restart is None else (restart, oracle.score(oracle.query(restart)))
        return SearchResult.from_oracle(self.name, seed, oracle)

    @staticmethod
    def _climb(
        oracle: QueryOracle[Any], current: tuple[Any, float], goal: int, rng: np.random.Generator, batch_size: int
    ) -> tuple[Any, float] | None:
        """The best improving neighbour of the first batch of unqueried neighbours that holds one,
        or None at a local optimum."""
        arch, score = current
        neighbours = [n for n in oracle.space.neighbours(arch) if oracle.contains(n) and not oracle.queried(n)]
        order = [neighbours[i] for i in rng.permutation(len(neighbours)).tolist()]
        for start in range(0, len(order), batch_size):
            if oracle.num_queries >= goal:
                return None
            batch = order[start : start + min(batch_size, goal - oracle.num_queries)]
            best = max(zip(batch, map(oracle.score, oracle.query_batch(batch))), key=lambda member: member[1])
            if best[1] > score:
                return best
        return None

    def __repr__(self) -> str:
        return f"LocalSearch(num_init={self.num_init}, batch_size={self.batch_size})"
