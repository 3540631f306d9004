"""The contract of every search loop, so that ``nag search`` and ``benchmarks/search.py``
run baselines and generative searches under the same budgets, seeds and oracle."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from nag.search.oracle import QueryOracle, SearchResult
from nag.search.proposals import ProposalStats


class SearchStrategy(ABC):
    """Finds good architectures spending at most ``budget`` distinct oracle queries."""

    #: Short label in result tables and plots.
    name: str = "search"
    #: What generated proposals yielded over every run, for strategies that generate them.
    stats: ProposalStats | None = None

    @abstractmethod
    def run(self, oracle: QueryOracle[Any], budget: int, seed: int) -> SearchResult:
        """Search with ``np.random.default_rng(seed)`` (and torch seeded from it) only."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
