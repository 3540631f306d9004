"""QueryOracle: counts each distinct benchmark row once, enforces the budget, tracks the best."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from nag.benchmarks.nb201 import NB201Benchmark
from nag.benchmarks.nbgraph import NBGraphBenchmark
from nag.errors import ArchitectureNotInBenchmark, ConfigError, NagError, UnknownMetric
from nag.search import BudgetExhausted, QueryOracle, SearchResult, candidate_stream
from nag.spaces.nbgraph import NBGraphSpace

SPACE = NBGraphSpace()
A = SPACE.from_string("gcn~0|gat~0|sage~1|fc~2")
A_ISO = SPACE.from_string("gat~0|gcn~0|fc~1|sage~2")  # same benchmark row as A
B = SPACE.from_string("gcn~0|gcn~1|gcn~2|gcn~3")
C = SPACE.from_string("sage~0|fc~1|arma~2|gcn~3")


@pytest.fixture(scope="module")
def cora() -> NBGraphBenchmark:
    return NBGraphBenchmark("cora", SPACE)


def test_counts_each_distinct_architecture_once(cora: NBGraphBenchmark) -> None:
    oracle = QueryOracle(cora, "valid_acc")
    assert oracle.num_queries == 0 and oracle.history == [] and oracle.best is None
    assert oracle.query(A) == cora.query(A, "valid_acc")
    assert oracle.query(A) == oracle.query(A_ISO) == cora.query(A, "valid_acc")
    assert oracle.num_queries == 1
    assert oracle.query(B) == cora.query(B, "valid_acc")
    assert oracle.num_queries == 2
    assert oracle.history == [(A, cora.query(A, "valid_acc")), (B, cora.query(B, "valid_acc"))]
    assert oracle.queried(A) and oracle.queried(A_ISO) and not oracle.queried(C)
    assert oracle.remaining is None


def test_not_in_benchmark_raises_and_is_not_counted() -> None:
    proteins = NBGraphBenchmark("proteins", SPACE)
    oracle = QueryOracle(proteins, "test_acc")
    gat = SPACE.from_string("gat~0|gcn~1|gcn~2|gcn~3")
    assert not oracle.contains(gat)
    with pytest.raises(ArchitectureNotInBenchmark, match="only benchmarked architectures"):
        oracle.query(gat)
    assert oracle.num_queries == 0 and not oracle.queried(gat)
    oracle.query(C)
    assert oracle.num_queries == 1


def test_invalid_architectures_are_neither_members_nor_queried(cora: NBGraphBenchmark) -> None:
    oracle = QueryOracle(cora, "valid_acc")
    bad = ((0, 0, 0, 0), ("skip",) * 4)
    assert not oracle.contains(bad) and not oracle.queried(bad)
    assert oracle.contains(A)


def test_budget(cora: NBGraphBenchmark) -> None:
    oracle = QueryOracle(cora, "valid_acc", budget=2)
    oracle.query(A)
    oracle.query(B)
    assert oracle.remaining == 0
    assert oracle.query(A_ISO) == oracle.query(A)  # repeats stay free past the budget
    with pytest.raises(BudgetExhausted, match="budget of 2") as info:
        oracle.query(C)
    assert isinstance(info.value, NagError)
    assert oracle.num_queries == 2 and not oracle.queried(C)
    with pytest.raises(ConfigError, match="non-negative"):
        QueryOracle(cora, "valid_acc", budget=-1)


def test_a_batch_counts_its_new_distinct_architectures_and_is_refused_whole(cora: NBGraphBenchmark) -> None:
    oracle = QueryOracle(cora, "valid_acc", budget=3)
    oracle.query(A)
    values = oracle.query_batch([A_ISO, B, B, C])
    assert values == [cora.query(a, "valid_acc") for a in (A, B, B, C)]
    assert oracle.num_queries == 3 and [a for a, _ in oracle.history] == [A, B, C]
    assert oracle.best_curve() == [max(v for _, v in oracle.history[: i + 1]) for i in range(3)]
    extra = SPACE.from_string("gcn~0|gcn~0|gcn~0|gcn~0")
    with pytest.raises(BudgetExhausted, match="1 new"):
        oracle.query_batch([A, extra])
    assert oracle.num_queries == 3 and not oracle.queried(extra)


def test_target_caps_a_search_budget_by_the_oracle_budget(cora: NBGraphBenchmark) -> None:
    oracle = QueryOracle(cora, "valid_acc", budget=5)
    oracle.query(A)
    assert oracle.target(10) == 5
    assert oracle.target(2) == 3
    assert QueryOracle(cora, "valid_acc").target(7) == 7
    with pytest.raises(ConfigError, match="at least 1"):
        oracle.target(0)


def test_unknown_metric(cora: NBGraphBenchmark) -> None:
    with pytest.raises(UnknownMetric, match="'accuracy'.*available: valid_acc"):
        QueryOracle(cora, "accuracy")


@pytest.mark.parametrize(("metric", "sign"), [("valid_acc", 1), ("latency", -1)])
def test_best_and_best_curve(cora: NBGraphBenchmark, metric: str, sign: int) -> None:
    assert (metric in cora.minimize) == (sign == -1)
    oracle = QueryOracle(cora, metric)
    assert oracle.sign == sign
    archs = SPACE.sample(60, np.random.default_rng(0))
    for arch in archs:
        oracle.query(arch)
    values = [v for _, v in oracle.history]
    curve = oracle.best_curve()
    assert len(curve) == oracle.num_queries == len({SPACE.key(a) for a in archs})
    assert np.all(sign * np.diff(curve) >= 0)  # monotone in the right direction
    expected = max(values) if sign == 1 else min(values)
    assert curve[-1] == expected == oracle.best[1]
    assert cora.query(oracle.best[0], metric) == expected
    assert oracle.score(expected) == sign * expected
    assert oracle.score(float("nan")) == float("-inf")


def test_candidates_expose_the_table_without_labels(cora: NBGraphBenchmark) -> None:
    oracle = QueryOracle(cora, "valid_acc")
    pool = oracle.candidates()
    assert pool == cora.archs() and len(pool) == 26206
    pool.clear()  # a copy: loops cannot corrupt the oracle
    assert len(oracle.candidates()) == 26206
    assert oracle.space is SPACE
    assert oracle.num_queries == 0


def test_candidate_stream_is_seeded_and_skips_queried(cora: NBGraphBenchmark) -> None:
    oracle = QueryOracle(cora, "valid_acc")

    def first(n: int, seed: int) -> list:
        return list(itertools.islice(candidate_stream(oracle, np.random.default_rng(seed)), n))

    assert first(20, 1) == first(20, 1) != first(20, 2)
    assert len({SPACE.key(a) for a in first(20, 1)}) == 20
    before = first(20, 1)
    oracle.query(before[0])
    assert first(19, 1) == before[1:]


@pytest.mark.parametrize(("metric", "sign"), [("valid_acc", 1), ("latency", -1)])
def test_search_result(cora: NBGraphBenchmark, metric: str, sign: int) -> None:
    oracle = QueryOracle(cora, metric)
    with pytest.raises(NagError, match="no architecture was queried"):
        SearchResult.from_oracle("manual", 0, oracle)
    for arch in (A, B, C):
        oracle.query(arch)
    result = SearchResult.from_oracle("manual", 3, oracle)
    assert result.method == "manual" and result.seed == 3 and result.metric == metric and result.sign == sign
    assert result.num_queries == 3
    assert result.history == [(SPACE.to_string(a), cora.query(a, metric)) for a in (A, B, C)]
    assert result.best_curve == oracle.best_curve()
    assert (SPACE.from_string(result.best_arch), result.best_value) == oracle.best
    # queries_to_reach: the first query after which the best so far is as good as the value
    first_best = result.best_curve.index(result.best_value) + 1
    assert result.queries_to_reach(result.best_value) == first_best
    assert result.queries_to_reach(result.history[0][1]) == 1
    assert result.queries_to_reach(result.best_value + sign * 1e-3) is None
    data = json.loads(json.dumps(result.to_dict()))
    assert data["best_arch"] == result.best_arch and data["history"][0] == list(result.history[0])
    assert data["sign"] == sign


def test_nb201_counts_isomorphic_cells_separately(shared_data: Path) -> None:
    """NB201 trained every cell separately, so isomorphic cells are distinct rows and queries."""
    bench = NB201Benchmark(str(shared_data / "nb201" / "nb201.csv"))
    space = bench.space
    a = space.from_string("|none~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|")
    b = space.from_string("|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|")
    assert space.key(a) == space.key(b)
    oracle = QueryOracle(bench, "cifar10_test_200ep")
    oracle.query(a)
    oracle.query(b)
    assert oracle.num_queries == 2


def test_a_benchmark_without_a_table_is_searched_from_the_space_itself(shared_data: Path) -> None:
    """OFA-MobileNetV3 scores any of ~1e20 subnets (layers and input resolution): candidates are
    drawn from the space, at every resolution it searches, each distinct subnet costs one query,
    and a strategy that needs every candidate listed is refused in one line."""
    from nag.benchmarks import OFAMBV3Benchmark
    from nag.search import RandomSearch, RegularizedEvolution

    root = shared_data / "mbv3"
    if not (root / "ofa_acc_predictor.pth").is_file() or not (root / "note10_lut").is_dir():
        pytest.skip(f"OFA predictor and Note10 tables not found in {root}")
    bench = OFAMBV3Benchmark(root / "ofa_acc_predictor.pth", root / "note10_lut")
    with pytest.raises(UnknownMetric, match="available: top1, note10_latency"):
        QueryOracle(bench, "accuracy")
    oracle = QueryOracle(bench, "top1", budget=30)
    drawn = list(itertools.islice(candidate_stream(oracle, np.random.default_rng(0)), 500))
    assert len({bench.space.key(a) for a in drawn}) == 500 and all(a in bench for a in drawn)
    assert {a.resolution for a in drawn} == set(bench.space.resolutions)
    for strategy in (RandomSearch(), RegularizedEvolution(population_size=10, sample_size=3)):
        result = strategy.run(QueryOracle(bench, "top1", budget=30), 30, seed=0)
        assert result.num_queries == 30 and 0.7 < result.best_value < 0.85
    with pytest.raises(NagError, match="too large to enumerate"):
        oracle.candidates()
