"""Conditional generation as search: exact budgets, labels only from queries, seeds, the
proposal counts, starting from an unconditional checkpoint (tiny models, synthetic tables)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl

from nag.benchmarks.base import Benchmark
from nag.benchmarks.nbgraph import NBGraphBenchmark
from nag.datamodules import ArchitectureDataModule
from nag.errors import ConfigError
from nag.generation import ModelGenerator
from nag.lightning_modules.discrete_diffusion import DiscreteDiffusionModule
from nag.lightning_modules.score_diffusion import ScoreDiffusionModule
from nag.search import ConditionalGenerationSearch, QueryOracle, RandomSearch
from nag.spaces import NB201Space

pytestmark = pytest.mark.usefixtures("single_thread")

#: Small and fast: a handful of rounds costs a few seconds on one thread.
TINY = {"dim": 16, "edge_dim": 4, "layers": 1, "heads": 2, "T": 50, "num_samples": 64, "steps": 4}


class AdditiveCells(Benchmark):
    """Every NB201 cell once per space key (6,466 rows) scored by a seeded additive table of
    (edge, op) weights, plus its count of non-zero ops as a latency to minimise: a landscape a
    conditional model can learn from a few dozen points."""

    minimize = frozenset({"latency"})

    def __init__(self) -> None:
        self.space = NB201Space()
        by_key = {self.space.key(a): a for a in self.space.enumerate()}
        archs = list(by_key.values())
        weights = np.random.default_rng(0).normal(size=(6, len(self.space.ops)))
        index = {op: i for i, op in enumerate(self.space.ops)}
        self._set_table(
            archs,
            {
                "score": [float(sum(weights[e, index[op]] for e, op in enumerate(a))) for a in archs],
                "latency": [float(sum(op != "none" for op in a)) for a in archs],
            },
            keys=list(by_key),
        )


@pytest.fixture(scope="module")
def cells() -> AdditiveCells:
    return AdditiveCells()


def run(strategy, bench, budget: int, seed: int = 0, metric: str = "score"):
    oracle = QueryOracle(bench, metric, budget=budget)
    return strategy.run(oracle, budget, seed), oracle


def save(module: pl.LightningModule, dm: pl.LightningDataModule, path: Path, steps: int = 3) -> str:
    trainer = pl.Trainer(
        max_steps=steps,
        limit_val_batches=0,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=path.parent,
    )
    trainer.fit(module, dm)
    trainer.save_checkpoint(path)
    return str(path)


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory, nb201_table) -> dict[str, str]:
    """Unconditional discrete diffusion on NB201 cells (no labels), a conditional one and a
    score-diffusion model (both refused)."""
    from nag.benchmarks import NB201Benchmark

    root = tmp_path_factory.mktemp("cg_ckpt")
    pl.seed_everything(0)
    cells = ArchitectureDataModule(space=NB201Space(), num_archs=300, batch_size=64)
    small = {"dim": 16, "edge_dim": 4, "layers": 1, "heads": 2}
    labelled = ArchitectureDataModule(NB201Benchmark(nb201_table), targets=["cifar10_test_200ep"], batch_size=64)
    return {
        "plain": save(DiscreteDiffusionModule(cells.spec(), T=50, **small), cells, root / "plain.ckpt"),
        "conditional": save(
            DiscreteDiffusionModule(labelled.spec(), conditions=["cifar10_test_200ep"], T=50, **small),
            labelled,
            root / "conditional.ckpt",
        ),
        "score": save(ScoreDiffusionModule(cells.spec(), dim=16, layers=1, heads=2), cells, root / "score.ckpt"),
    }


def test_spends_exactly_its_budget_and_says_where_each_query_came_from(cells):
    strategy = ConditionalGenerationSearch(num_init=6, batch_size=5, train_steps=20, finetune_steps=5, **TINY)
    result, oracle = run(strategy, cells, 21)
    stats = strategy.runs[0]
    assert result.num_queries == oracle.num_queries == 21
    assert len(stats.sources) == 21 and stats.sources[:6] == ["init"] * 6 and "init" not in stats.sources[6:]
    assert stats.rounds == 3 and stats.sampled == 3 * TINY["num_samples"]
    assert stats.sampled >= stats.raw_valid and stats.sampled >= stats.valid >= stats.in_table
    assert stats.in_table >= stats.new >= stats.distinct_new >= stats.generated_queries > 0
    keys = [cells.space.key(cells.space.from_string(a)) for a, _ in result.history]
    assert len(set(keys)) == len(keys)  # never an isomorph of a queried cell
    assert strategy.stats.sampled == stats.sampled and strategy.stats.new == stats.distinct_new
    assert stats.to_dict()["generated_queries"] == stats.generated_queries


def test_every_training_label_is_a_query_already_paid_for(cells, monkeypatch):
    """The model of each round learns from exactly the oracle's history at that moment."""
    seen = []
    original = ConditionalGenerationSearch._fit

    def spy(self, oracle, history, *args):
        seen.append(([cells.space.to_string(a) for a, _ in history], [v for _, v in history], oracle.history))
        return original(self, oracle, history, *args)

    monkeypatch.setattr(ConditionalGenerationSearch, "_fit", spy)
    strategy = ConditionalGenerationSearch(num_init=4, batch_size=3, train_steps=10, finetune_steps=5, **TINY)
    result, _ = run(strategy, cells, 10)
    assert [len(archs) for archs, _, _ in seen] == [4, 7]
    for archs, values, paid in seen:
        assert list(zip(archs, values)) == [(cells.space.to_string(a), v) for a, v in paid]
        assert list(zip(archs, values)) == result.history[: len(archs)]


def test_the_same_seed_searches_the_same_way(cells):
    def search(seed: int):
        strategy = ConditionalGenerationSearch(num_init=4, batch_size=4, train_steps=15, finetune_steps=5, **TINY)
        return run(strategy, cells, 12, seed)[0].history

    assert search(0) == search(0)
    assert search(0) != search(1)


def test_generated_queries_beat_the_random_start_on_a_learnable_table(cells):
    """An additive landscape: after one short fit on 20 random cells, the cells asked for at
    the best value are better than those 20 and than 20 random ones more."""
    strategy = ConditionalGenerationSearch(
        num_init=20, batch_size=20, train_steps=50, num_samples=200, steps=10, dim=32, layers=1, heads=2, T=100
    )
    result, _ = run(strategy, cells, 40)
    values = np.array([v for _, v in result.history])
    generated = np.array([s == "generated" for s in strategy.runs[0].sources])
    assert generated.sum() == 20
    baseline = np.array([v for _, v in run(RandomSearch(), cells, 40)[0].history])
    assert values[generated].mean() > values[:20].mean() + 0.5 * values[:20].std()
    assert values[generated].mean() > baseline[20:].mean()


def test_a_minimised_metric_is_asked_for_at_its_lowest_value(cells, monkeypatch):
    asked = []
    original = ModelGenerator.sample

    def record(self, n, **kwargs):
        asked.append(kwargs["conditions"]["latency"])
        return original(self, n, **kwargs)

    monkeypatch.setattr(ModelGenerator, "sample", record)
    strategy = ConditionalGenerationSearch(num_init=8, batch_size=4, train_steps=5, finetune_steps=2, **TINY)
    result, _ = run(strategy, cells, 12, metric="latency")
    assert asked[0] == min(v for _, v in result.history[:8])
    margin = ConditionalGenerationSearch(
        num_init=8, batch_size=4, train_steps=5, condition_margin=1.0, **TINY
    )  # beyond the training range: asked with extrapolate
    result, _ = run(margin, cells, 12, metric="latency")
    first = np.array([v for _, v in result.history[:8]])
    assert len(asked) == 2 and asked[-1] == pytest.approx(first.min() - first.std())


def test_topology_is_generated_too_on_nbgraph():
    strategy = ConditionalGenerationSearch(num_init=5, batch_size=5, train_steps=10, finetune_steps=5, **TINY)
    result, _ = run(strategy, NBGraphBenchmark("cora"), 10, metric="valid_acc")
    assert result.num_queries == 10 and strategy.runs[0].rounds == 1 and strategy.runs[0].valid > 0


def test_starts_from_an_unconditional_checkpoint_and_refuses_labelled_ones(cells, ckpts):
    strategy = ConditionalGenerationSearch(
        ckpts["plain"], num_init=4, batch_size=4, train_steps=5, finetune_steps=2, num_samples=32, steps=3
    )
    result, _ = run(strategy, cells, 12)
    assert result.num_queries == 12 and strategy.name == "conditional-generation+init"
    assert strategy._init[0]["T"] == 50 and strategy._init[0]["dim"] == 16  # the checkpoint's network
    with pytest.raises(ConfigError, match="trained with conditions"):
        run(ConditionalGenerationSearch(ckpts["conditional"]), cells, 5)
    with pytest.raises(ConfigError, match="fine-tunes a DiscreteDiffusionModule"):
        run(ConditionalGenerationSearch(ckpts["score"]), cells, 5)


@pytest.mark.parametrize(
    "kwargs",
    [{"num_init": 1}, {"batch_size": 0}, {"rank": "best"}, {"condition_margin": -1.0}, {"train_steps": 0}],
)
def test_rejects_bad_settings(kwargs):
    with pytest.raises(ConfigError):
        ConditionalGenerationSearch(**kwargs)
