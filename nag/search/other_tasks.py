"""The naive transfer baseline: query in the order the *other* tasks' own labels rank.

No learning at all: each source task's column is z-scored over the candidates, the scores
are averaged, and the candidates are queried best first. It is what a transfer method must
beat to claim it learned anything about the target task beyond "good cells are good
everywhere". It reads no label of the target task; the oracle counts every query.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from nag.benchmarks.base import Benchmark
from nag.errors import ConfigError
from nag.search.oracle import QueryOracle, SearchResult, distinct_new
from nag.search.strategy import SearchStrategy


@dataclass(frozen=True)
class SourceTask:
    """A task whose labels the baseline may read: a benchmark and one of its metrics."""

    benchmark: Benchmark
    metric: str


def checked_sources(sources: Sequence[SourceTask]) -> list[SourceTask]:
    """``sources`` as a list, each metric known to its benchmark (else the error names the available ones)."""
    for s in sources:
        s.benchmark.column(s.metric)
    return list(sources)


def check_sources(sources: Sequence[SourceTask], oracle: QueryOracle[Any]) -> None:
    """Refuse sources on the target's own data: they would be its labels under another name."""
    leaked = [s.metric for s in sources if s.benchmark.dataset_of(s.metric) == oracle.dataset]
    if leaked:
        raise ConfigError(
            f"strategy.init_args.sources: {leaked} were measured on {oracle.dataset!r}, the target's data; "
            "use tasks on other data"
        )


def source_scores(sources: Sequence[SourceTask], archs: Sequence[Any]) -> np.ndarray:
    """Mean z-score of ``archs`` over the source tasks (each sign-adjusted, so higher is
    better; z-scored over ``archs``); archs no source measured get ``-inf``."""
    columns = []
    for s in sources:
        sign = 1.0 if s.benchmark.higher_is_better(s.metric) else -1.0
        values = s.benchmark.values(archs, s.metric)
        std = np.nanstd(values)
        columns.append(sign * (values - np.nanmean(values)) / (std if std > 0 else 1.0))
    stacked = np.stack(columns)
    measured = ~np.isnan(stacked)
    total = np.where(measured, stacked, 0.0).sum(0)
    count = measured.sum(0)
    return np.where(count > 0, total / np.maximum(count, 1), -np.inf)


class OtherTasksRanking(SearchStrategy):
    """Candidates ranked by their mean z-scored value on ``sources`` (missing values skipped;
    ties broken at random by the seed, so seeds differ only where the sources do not decide).

    Sources on the target's own data are refused: they would be the target's labels under
    another name (``Benchmark.dataset_of``).
    """

    name = "other_tasks_ranking"

    def __init__(self, sources: Sequence[SourceTask], batch_size: int = 10) -> None:
        if not sources:
            raise ConfigError("strategy.init_args.sources: give at least one source task (benchmark and metric)")
        if batch_size < 1:
            raise ConfigError(f"strategy.init_args.batch_size={batch_size}: expected at least 1")
        self.sources = checked_sources(sources)
        self.batch_size = batch_size

    def run(self, oracle: QueryOracle[Any], budget: int, seed: int) -> SearchResult:
        check_sources(self.sources, oracle)
        archs = oracle.candidates()
        score = source_scores(self.sources, archs)
        tiebreak = np.random.default_rng(seed).random(len(archs))
        order = np.lexsort((tiebreak, -score))  # best mean z-score first, random among ties
        goal = oracle.target(budget)
        ranked = (archs[i] for i in order.tolist())
        while oracle.num_queries < goal:
            batch = distinct_new(oracle, ranked, min(self.batch_size, goal - oracle.num_queries))
            if not batch:
                break
            oracle.query_batch(batch)
        return SearchResult.from_oracle(self.name, seed, oracle)

    def __repr__(self) -> str:
        sources = ", ".join(f"{s.benchmark.name}/{s.metric}" for s in self.sources)
        return f"OtherTasksRanking([{sources}])"
