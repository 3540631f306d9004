"""Random search: the baseline every NAS method must beat (Li & Talwalkar, 2019)."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from nag.errors import ConfigError
from nag.search.oracle import QueryOracle, SearchResult, candidate_stream
from nag.search.strategy import SearchStrategy


class RandomSearch(SearchStrategy):
    """Query benchmarked architectures in a uniformly random order, never the same key twice,
    ``batch_size`` at a time (trainings of a batch run in parallel where the evaluator can; the
    order, hence the result, does not depend on it)."""

    name = "random_search"

    def __init__(self, batch_size: int = 10) -> None:
        if batch_size < 1:
            raise ConfigError(f"strategy.init_args.batch_size={batch_size}: expected at least 1")
        self.batch_size = batch_size

    def run(self, oracle: QueryOracle[Any], budget: int, seed: int) -> SearchResult:
        goal = oracle.target(budget)
        stream = candidate_stream(oracle, np.random.default_rng(seed))
        while oracle.num_queries < goal:
            batch = list(itertools.islice(stream, min(self.batch_size, goal - oracle.num_queries)))
            if not batch:
                break
            oracle.query_batch(batch)
        return SearchResult.from_oracle(self.name, seed, oracle)

    def __repr__(self) -> str:
        return f"RandomSearch(batch_size={self.batch_size})"
