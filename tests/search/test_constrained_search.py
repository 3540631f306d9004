"""Searches under a free cost constraint (a latency table): only architectures within the bound
are candidates and count as found; BO with the ridge surrogate proposes from a pool or by
evolution on the acquisition (NB-Graph, embedded data)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from nag.benchmarks.nbgraph import NBGraphBenchmark
from nag.errors import ConfigError
from nag.search import QueryOracle, RandomSearch, RegularizedEvolution
from nag.search.acquisition_evolution import evolve
from nag.search.bo import BayesianOptimization
from nag.search.oracle import candidate_stream
from nag.search.ridge_ensemble import RidgeEnsemble

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def cora() -> NBGraphBenchmark:
    return NBGraphBenchmark("cora")


@pytest.fixture(scope="module")
def bound(cora: NBGraphBenchmark) -> float:
    """Cora's median latency: half the table is feasible."""
    return float(np.median(cora.column("latency")))


def test_only_architectures_within_the_bound_are_candidates_and_found(cora, bound) -> None:
    oracle = QueryOracle(cora, "valid_acc", budget=40, constraints={"latency": bound})
    drawn = list(itertools.islice(candidate_stream(oracle, np.random.default_rng(0)), 200))
    assert all(cora.query(a, "latency") <= bound for a in drawn)
    slow = next(a for a in cora.archs() if cora.query(a, "latency") > bound)
    assert not oracle.contains(slow) and not oracle.feasible(slow)
    oracle.query(slow)  # an infeasible query is paid for but never the best
    assert oracle.num_queries == 1 and oracle.best is None and np.isnan(oracle.best_curve()[0])
    checked, feasible = oracle.feasibility
    assert checked >= 201 and feasible >= 200


@pytest.mark.parametrize(
    "strategy", [RandomSearch(), RegularizedEvolution(population_size=10, sample_size=3)], ids=repr
)
def test_baselines_return_the_best_within_the_bound(cora, bound, strategy) -> None:
    oracle = QueryOracle(cora, "valid_acc", budget=30, constraints={"latency": bound})
    result = strategy.run(oracle, 30, seed=0)
    best = cora.space.from_string(result.best_arch)
    assert result.num_queries == 30 and cora.query(best, "latency") <= bound
    feasible = [v for a, v in oracle.history if cora.query(a, "latency") <= bound]
    assert result.best_value == max(feasible)


def test_a_constraint_must_bound_another_known_metric(cora) -> None:
    with pytest.raises(ConfigError, match="other than 'valid_acc'"):
        QueryOracle(cora, "valid_acc", constraints={"valid_acc": 0.8})
    with pytest.raises(ConfigError, match="finite"):
        QueryOracle(cora, "valid_acc", constraints={"latency": float("nan")})


def test_ridge_ensemble_learns_an_additive_metric_and_reads_noisy_states(cora) -> None:
    archs = cora.archs()[:400]
    x, adj, mask = cora.space.encode_batch(archs)
    weights = torch.randn(x.shape[1] * x.shape[2], generator=torch.Generator().manual_seed(0))
    y = (RidgeEnsemble.features(x, mask) @ weights).double().numpy()
    ridge = RidgeEnsemble(x[:300], mask[:300], y[:300], members=3, alpha=1e-3, seed=0)
    predicted = ridge.predict_graphs(x[300:], adj[300:], mask[300:])
    assert predicted.shape == (3, 100)
    assert np.corrcoef(predicted.mean(0).numpy(), y[300:])[0, 1] > 0.9
    signed = {"x": x[:5] * 2 - 1, "adj": adj[:5] * 2 - 1, "mask": mask[:5]}
    torch.testing.assert_close(
        ridge.predict_state(signed, torch.zeros(5)), ridge.predict_graphs(x[:5], adj[:5], mask[:5])
    )


def test_evolution_on_the_acquisition_climbs_and_proposes_only_new_feasible_archs(cora, bound) -> None:
    oracle = QueryOracle(cora, "valid_acc", constraints={"latency": bound})
    start = list(itertools.islice(candidate_stream(oracle, np.random.default_rng(0)), 20))
    oracle.query(start[0])

    def score(archs):  # a free stand-in acquisition: the table's own accuracy
        return cora.values(archs, "valid_acc")

    out = evolve(oracle, score, start, np.random.default_rng(0), population=20, generations=5)
    values = score(out)
    assert not oracle.queried(out[0]) and all(oracle.contains(a) for a in out)
    assert (np.diff(values) <= 0).all() and values[0] >= score(start[1:]).max()


@pytest.mark.parametrize("optimizer", ["pool", "evolution"])
def test_ridge_bo_spends_its_budget_within_the_bound_and_repeats_by_seed(cora, bound, optimizer) -> None:
    def run(seed: int):
        bo = BayesianOptimization(surrogate="ridge", optimizer=optimizer, pool_size=500, generations=3, population=20)
        oracle = QueryOracle(cora, "valid_acc", budget=25, constraints={"latency": bound})
        return bo.run(oracle, 25, seed), oracle

    (a, oracle), (b, _) = run(0), run(0)
    assert a.num_queries == 25 and a.history == b.history
    assert all(cora.query(arch, "latency") <= bound for arch, _ in oracle.history)
    assert a.method == ("bo" if optimizer == "pool" else "bo+evolution")


def test_bo_refuses_unknown_surrogates_and_optimizers() -> None:
    with pytest.raises(ConfigError, match="surrogate='gp'"):
        BayesianOptimization(surrogate="gp")
    with pytest.raises(ConfigError, match="optimizer='anneal'"):
        BayesianOptimization(optimizer="anneal")
