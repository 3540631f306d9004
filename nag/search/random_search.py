"""Random search: the baseline every NAS method must beat (Li & Talwalkar, 2019)."""

from __future__ import annotations

from typing import Any

import numpy as np

from nag.search.oracle import QueryOracle, SearchResult, candidate_stream
from nag.search.strategy import SearchStrategy


class RandomSearch(SearchStrategy):
    """Query benchmarked architectures in a uniformly random order, never the same key twice."""

    name = "random_search"

    def run(self, oracle: QueryOracle[Any], budget: int, seed: int) -> SearchResult:
        goal = oracle.target(budget)
        for arch in candidate_stream(oracle, np.random.default_rng(seed)):
            if oracle.num_queries >= goal:
                break
            oracle.query(arch)
        return SearchResult.from_oracle(self.name, seed, oracle)

    def __repr__(self) -> str:
        return "RandomSearch()"
