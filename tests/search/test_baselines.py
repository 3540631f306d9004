"""Baseline strategies on embedded NAS-Bench-Graph (cora): exact budgets, seeded runs, real
table values, and the search behaviour each strategy is named for."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nag.benchmarks.base import Benchmark
from nag.benchmarks.nb101 import NB101Benchmark
from nag.benchmarks.nb201 import NB201Benchmark
from nag.benchmarks.nbgraph import NBGraphBenchmark
from nag.benchmarks.ofa_latency import OFALatencyBenchmark
from nag.errors import ConfigError
from nag.search import (
    LocalSearch,
    QueryOracle,
    RandomSearch,
    RegularizedEvolution,
    SearchResult,
)
from nag.spaces.nbgraph import NBGraphSpace

SPACE = NBGraphSpace()
STRATEGIES = {
    "random_search": RandomSearch,
    "regularized_evolution": RegularizedEvolution,
    "local_search": LocalSearch,
}
BUDGET = 30


@pytest.fixture(scope="module")
def cora() -> NBGraphBenchmark:
    return NBGraphBenchmark("cora", SPACE)


def run(bench: NBGraphBenchmark, name: str, seed: int, budget: int = BUDGET, metric: str = "valid_acc") -> SearchResult:
    return STRATEGIES[name]().run(QueryOracle(bench, metric), budget, seed)


@pytest.mark.parametrize("name", STRATEGIES)
def test_exact_budget_of_distinct_real_queries(cora: NBGraphBenchmark, name: str) -> None:
    result = run(cora, name, seed=0)
    assert result.method == name and result.metric == "valid_acc" and result.seed == 0
    assert result.num_queries == len(result.history) == len(result.best_curve) == BUDGET
    archs = [SPACE.from_string(text) for text, _ in result.history]
    assert len({SPACE.key(a) for a in archs}) == BUDGET
    assert all(value == cora.query(a, "valid_acc") for a, (_, value) in zip(archs, result.history))
    assert result.best_value == cora.query(SPACE.from_string(result.best_arch), "valid_acc")
    assert result.best_value == max(v for _, v in result.history) == result.best_curve[-1]


@pytest.mark.parametrize("name", STRATEGIES)
def test_reproducible_by_seed(cora: NBGraphBenchmark, name: str) -> None:
    first = run(cora, name, seed=1)
    assert run(cora, name, seed=1).history == first.history
    assert run(cora, name, seed=2).history != first.history


@pytest.mark.parametrize("name", STRATEGIES)
def test_minimised_metric(cora: NBGraphBenchmark, name: str) -> None:
    result = run(cora, name, seed=0, metric="latency")
    assert result.sign == -1
    assert result.best_value == min(v for _, v in result.history) == result.best_curve[-1]
    assert np.all(np.diff(result.best_curve) <= 0)


@pytest.mark.parametrize("name", STRATEGIES)
def test_stops_at_the_oracle_budget_and_when_the_pool_runs_out(cora: NBGraphBenchmark, name: str) -> None:
    capped = QueryOracle(cora, "valid_acc", budget=12)
    assert STRATEGIES[name]().run(capped, BUDGET, seed=0).num_queries == 12
    tiny = NBGraphBenchmark("cora", NBGraphSpace(["gcn", "skip"]))  # 26 architectures
    result = STRATEGIES[name]().run(QueryOracle(tiny, "valid_acc"), 1000, seed=0)
    assert result.num_queries == len(tiny)
    assert result.best_value == tiny.best("valid_acc")[1]


def test_runs_continue_an_oracle(cora: NBGraphBenchmark) -> None:
    oracle = QueryOracle(cora, "valid_acc")
    RandomSearch().run(oracle, 5, seed=0)
    result = LocalSearch().run(oracle, 5, seed=0)
    assert result.num_queries == 10


def test_random_search_is_a_permutation_of_the_pool(cora: NBGraphBenchmark) -> None:
    """Uniform over the table: early picks of many seeds spread over the whole table."""
    index = {SPACE.key(a): i for i, a in enumerate(cora.archs())}
    firsts = [
        index[SPACE.key(SPACE.from_string(run(cora, "random_search", seed=s, budget=1).best_arch))] for s in range(20)
    ]
    assert len(set(firsts)) == 20 and min(firsts) < len(cora) / 4 and max(firsts) > 3 * len(cora) / 4


def neighbour_keys(text: str) -> set[str]:
    return {SPACE.key(n) for n in SPACE.neighbours(SPACE.from_string(text))}


def test_evolution_queries_mutants(cora: NBGraphBenchmark) -> None:
    result = run(cora, "regularized_evolution", seed=0, budget=80)
    keys = [SPACE.key(SPACE.from_string(text)) for text, _ in result.history]
    nbrs = [neighbour_keys(text) for text, _ in result.history]
    mutants = sum(any(keys[j] in nbrs[i] for i in range(j)) for j in range(20, len(keys)))
    assert mutants >= 0.9 * (len(keys) - 20)


def test_local_search_climbs_a_chain_of_improving_neighbours(cora: NBGraphBenchmark) -> None:
    result = run(cora, "local_search", seed=0, budget=150)
    history = result.history
    keys = [SPACE.key(SPACE.from_string(text)) for text, _ in history]
    nbrs = [neighbour_keys(text) for text, _ in history]
    # longest chain a_1 -> a_2 -> ... of later-queried, strictly better neighbours
    chain = [1] * len(history)
    for j in range(len(history)):
        for i in range(j):
            if keys[j] in nbrs[i] and history[j][1] > history[i][1]:
                chain[j] = max(chain[j], chain[i] + 1)
    assert max(chain) >= 4
    # and every query after the random start is a neighbour of an earlier one or a restart
    # from a local optimum, whose whole in-table neighbourhood was queried by then
    queried: set[str] = set(keys[:10])
    for j in range(10, len(history)):
        if not any(keys[j] in nbrs[i] for i in range(j)):
            assert any(nbrs[i] <= queried for i in range(j)), j
        queried.add(keys[j])


@pytest.mark.parametrize("name", STRATEGIES)
def test_batches_reach_the_oracle_whole_and_spend_the_exact_budget(cora: NBGraphBenchmark, name: str) -> None:
    """With ``batch_size`` 4 a strategy hands the oracle batches (trained in parallel where the
    evaluator can) of distinct new architectures and still spends exactly its budget."""

    class Recording(QueryOracle):
        def query_batch(self, archs):
            new = len({self.row_key(a) for a in archs if not self.queried(a)})
            self.sizes.append(new)
            return super().query_batch(archs)

    oracle = Recording(cora, "valid_acc")
    oracle.sizes = []
    result = STRATEGIES[name](batch_size=4).run(oracle, BUDGET, seed=0)
    assert result.num_queries == BUDGET and len({SPACE.key(SPACE.from_string(a)) for a, _ in result.history}) == BUDGET
    first = {"random_search": 4, "regularized_evolution": 20, "local_search": 10}[name]  # the random start
    assert oracle.sizes[0] == first and sum(oracle.sizes) == BUDGET
    assert oracle.sizes[1:3] == [4, 4] and max(oracle.sizes[1:]) == 4


def test_hyper_parameters_are_checked() -> None:
    with pytest.raises(ConfigError, match="sample_size"):
        RegularizedEvolution(population_size=3, sample_size=5)
    with pytest.raises(ConfigError, match="num_init"):
        LocalSearch(num_init=0)
    with pytest.raises(ConfigError, match="batch_size=0"):
        RandomSearch(batch_size=0)
    with pytest.raises(ConfigError, match="batch_size=21"):
        RegularizedEvolution(batch_size=21)


@pytest.fixture(scope="module")
def real_tables(shared_data: Path) -> dict[str, Benchmark]:
    """Loaded on first use, once per module: each table takes about a second to parse."""

    class Tables(dict):
        def __missing__(self, table: str) -> Benchmark:
            self[table] = {
                "nb201": lambda: NB201Benchmark(str(shared_data / "nb201" / "nb201.csv")),
                "nb101": lambda: NB101Benchmark(shared_data / "nb101" / "nb101_1k.json"),
                "mbv3": lambda: OFALatencyBenchmark(shared_data / "mbv3" / "ofa_mbv3_latency.csv"),
            }[table]()
            return self[table]

    return Tables()


@pytest.mark.parametrize("name", STRATEGIES)
@pytest.mark.parametrize(
    ("table", "metric"),
    [("nb201", "cifar10_valid_200ep_1seed"), ("nb101", "val_acc_108ep"), ("mbv3", "help_lat_v100_1")],
)
def test_every_space_with_real_tables(real_tables: dict[str, Benchmark], name: str, table: str, metric: str) -> None:
    """Smoke run on the file-backed tables: NB101's 1k subset and the OFA sample hold few
    neighbours, so evolution and local search fall back to random candidates there."""
    bench = real_tables[table]
    result = STRATEGIES[name]().run(QueryOracle(bench, metric), 25, seed=0)
    assert result.num_queries == 25
    assert result.best_value == bench.query(bench.space.from_string(result.best_arch), metric)
