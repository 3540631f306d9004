"""Transfer and BO loops: exact query counts, seeds, leak and compatibility checks, and
guided generation as the proposal source (tiny models, NB-Graph, embedded data)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import pytorch_lightning as pl

from nag.benchmarks.nbgraph import NBGraphBenchmark
from nag.cli import main
from nag.datamodules import ArchitectureDataModule
from nag.datamodules.task import TaskDataModule
from nag.errors import ConfigError
from nag.lightning_modules import MetaPredictorModule
from nag.lightning_modules.score_diffusion import ScoreDiffusionModule
from nag.search import OtherTasksRanking, QueryOracle, SourceTask
from nag.search.bo import BayesianOptimization
from nag.search.transfer import TransferSearch

pytestmark = pytest.mark.usefixtures("single_thread")


def save(module: pl.LightningModule, dm: pl.LightningDataModule, path: Path, steps: int = 5) -> str:
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
def ckpts(tmp_path_factory) -> dict[str, str]:
    """A meta-predictor held out on cora (noise-aware, and not), and a generator."""
    root = tmp_path_factory.mktemp("ckpt")
    pl.seed_everything(0)
    benches = [NBGraphBenchmark(d) for d in ("cora", "citeseer", "pubmed")]
    tasks = TaskDataModule(
        benches,
        ["valid_acc"],
        held_out="cora",
        context_size=8,
        query_size=8,
        train_episodes=16,
        eval_episodes=4,
        batch_size=4,
    )
    out = {
        "meta": save(
            MetaPredictorModule(tasks.spec(), hidden=16, num_layers=1, noise_aware=True), tasks, root / "meta.ckpt"
        ),
        "plain_meta": save(MetaPredictorModule(tasks.spec(), hidden=16, num_layers=1), tasks, root / "plain_meta.ckpt"),
    }
    archs = ArchitectureDataModule(NBGraphBenchmark("cora"), batch_size=256, num_archs=2000)
    out["generator"] = save(ScoreDiffusionModule(archs.spec(), dim=16, layers=1, heads=2), archs, root / "gen.ckpt")
    out["ve_generator"] = save(
        ScoreDiffusionModule(archs.spec(), sde="ve", dim=16, layers=1, heads=2), archs, root / "ve.ckpt"
    )
    return out


@pytest.fixture(scope="module")
def cora() -> NBGraphBenchmark:
    return NBGraphBenchmark("cora")


def run(strategy, bench, budget: int, seed: int = 0):
    oracle = QueryOracle(bench, "valid_acc", budget=budget)
    return strategy.run(oracle, budget, seed), oracle


def test_transfer_spends_exactly_its_budget_and_repeats_by_seed(ckpts, cora):
    strategy = TransferSearch(ckpts["meta"], batch_size=3)
    a, oracle = run(strategy, cora, 10)
    b, _ = run(strategy, cora, 10)
    assert oracle.num_queries == a.num_queries == 10
    assert a.history == b.history


def test_transfer_with_guided_generation_counts_proposals(ckpts, cora):
    strategy = TransferSearch(
        ckpts["meta"], ckpts["generator"], batch_size=4, num_samples=40, steps=3, regenerate_every=4
    )
    result, oracle = run(strategy, cora, 8)
    assert result.num_queries == oracle.num_queries == 8
    stats = strategy.stats
    assert stats.sampled >= 40 and stats.new <= stats.in_table <= stats.valid <= stats.sampled


def test_transfer_refuses_a_task_it_was_meta_trained_on(ckpts):
    with pytest.raises(ConfigError, match="meta-trained on task 'citeseer'"):
        run(TransferSearch(ckpts["meta"]), NBGraphBenchmark("citeseer"), 5)


def test_transfer_refuses_a_target_whose_data_it_learned_under_another_name():
    """Meta-trained on CIFAR-10's validation accuracy, held out on CIFAR-100: searching
    CIFAR-10's test accuracy would read CIFAR-10 labels the model already learned."""
    meta = SimpleNamespace(
        hparams=SimpleNamespace(
            data_spec={
                "tasks": ["cifar10_valid_200ep_1seed", "cifar100_test_200ep"],
                "task_datasets": ["cifar10", "cifar100"],
                "held_out": "cifar100_test_200ep",
            }
        )
    )
    target = SimpleNamespace(task=("nb201", "cifar10_test_200ep"), dataset="cifar10")
    with pytest.raises(ConfigError, match="'cifar10_valid_200ep_1seed', measured on 'cifar10' like the target"):
        TransferSearch._check_unseen(meta, target)
    TransferSearch._check_unseen(meta, SimpleNamespace(task=("nb201", "cifar100_test_200ep"), dataset="cifar100"))


def test_transfer_context_never_exceeds_the_trained_context_size(ckpts, cora, monkeypatch):
    """Meta-trained with 8 context pairs; after 12 queries it still sees at most 8."""
    sizes = []
    original = MetaPredictorModule.encode_context

    def record(self, x, *args):
        sizes.append(x.shape[1])
        return original(self, x, *args)

    monkeypatch.setattr(MetaPredictorModule, "encode_context", record)
    run(TransferSearch(ckpts["meta"], batch_size=1), cora, 12)
    assert max(sizes) == 8 and sizes[:3] == [0, 1, 2]


def test_guidance_needs_a_noise_aware_meta_predictor_on_the_same_sde(ckpts, cora):
    with pytest.raises(ConfigError, match="noise_aware"):
        run(TransferSearch(ckpts["plain_meta"], ckpts["generator"]), cora, 5)
    with pytest.raises(ConfigError, match="SDE"):
        run(TransferSearch(ckpts["meta"], ckpts["ve_generator"]), cora, 5)


def test_bo_spends_exactly_its_budget_and_repeats_by_seed(cora):
    strategy = BayesianOptimization(num_init=6, batch_size=4, ensemble_size=2, train_steps=10, hidden=8, num_layers=1)
    a, oracle = run(strategy, cora, 14)
    b, _ = run(strategy, cora, 14)
    c, _ = run(strategy, cora, 14, seed=1)
    assert oracle.num_queries == 14 and a.history == b.history and a.history != c.history


def test_bo_with_a_generator_proposes_guided_samples(ckpts, cora):
    strategy = BayesianOptimization(
        ckpts["generator"],
        num_init=4,
        batch_size=3,
        ensemble_size=2,
        train_steps=5,
        hidden=8,
        num_layers=1,
        num_samples=30,
        steps=3,
        acquisition="ei",
    )
    result, _ = run(strategy, cora, 10)
    # one generation call for the first 4 queries (samples, not random archs), then one per round
    assert result.num_queries == 10 and strategy.stats.sampled == 90


def test_bo_rejects_bad_settings():
    with pytest.raises(ConfigError, match="acquisition"):
        BayesianOptimization(acquisition="pi")


def test_transfer_with_sources_starts_from_the_naive_ranking_and_leaves_it_once_measured(ckpts, cora):
    sources = [SourceTask(NBGraphBenchmark(d), "valid_acc") for d in ("citeseer", "pubmed")]
    naive, _ = run(OtherTasksRanking(sources), cora, 30)
    plain, _ = run(TransferSearch(ckpts["meta"], sources=sources, adapt=False), cora, 30)
    adapted, _ = run(TransferSearch(ckpts["meta"], sources=sources), cora, 30)
    assert plain.history == naive.history  # no adaptation: the source labels' order itself
    assert adapted.history[:3] == naive.history[:3]  # the GP needs three measurements
    assert adapted.history != naive.history and adapted.method == "transfer+sources"


def test_transfer_with_sources_refuses_the_targets_data_and_generated_candidates(ckpts, cora):
    with pytest.raises(ConfigError, match="the target's data"):
        run(TransferSearch(ckpts["meta"], sources=[SourceTask(cora, "valid_acc")]), cora, 5)
    with pytest.raises(ConfigError, match="drop sources or generator_ckpt"):
        TransferSearch(ckpts["meta"], ckpts["generator"], sources=[SourceTask(NBGraphBenchmark("pubmed"), "valid_acc")])


def test_shipped_transfer_sources_config_runs_through_nag_search(ckpts, tmp_path):
    config = Path(__file__).resolve().parents[2] / "configs" / "nbgraph" / "search_transfer_sources.yaml"
    out = tmp_path / "s.json"
    args = ["--strategy.init_args.predictor_ckpt", ckpts["meta"], "--budget", "5", "--seeds", "[0]"]
    main(["search", "--config", str(config), *args, "--output", str(out), "--quiet"])
    summary = json.loads(out.read_text())["summary"]
    assert summary["method"] == "transfer+sources" and summary["budget"] == 5
