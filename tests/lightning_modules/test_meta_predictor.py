"""MetaPredictorModule: meta-trained on all tasks but one, it ranks archs of the held-out task
from a context of archs measured on it, without ever training on that task."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from torchmetrics.functional import spearman_corrcoef

from nag.benchmarks import Benchmark
from nag.benchmarks.nbgraph import NBGraphBenchmark
from nag.cli import main
from nag.datamodules.task import TaskDataModule
from nag.diffusion.graph_state import clean_state, perturb_state
from nag.errors import ConfigError, NagError
from nag.lightning_modules import MetaPredictorModule
from nag.nn.context_encoder import ContextSetEncoder, context_zscore
from nag.spaces import NB201Space

ROOT = Path(__file__).resolve().parents[2]
# training_step is called directly (no Trainer) to test what it accepts
NO_TRAINER = pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")
DATASETS = ("cora", "citeseer", "pubmed")  # cora held out; citeseer and pubmed correlate with it
K, Q = 8, 12
HELD = DATASETS.index("cora")


pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def benches() -> list[NBGraphBenchmark]:
    return [NBGraphBenchmark(d) for d in DATASETS]


def make_dm(benches: list[NBGraphBenchmark], **kwargs) -> TaskDataModule:
    args = {
        "context_size": K,
        "query_size": Q,
        "train_episodes": 16,
        "eval_episodes": 8,
        "batch_size": 4,
        "seed": 0,
    } | kwargs
    return TaskDataModule(benches, ["valid_acc"], held_out="cora", **args)


@pytest.fixture(scope="module")
def dm(benches: list[NBGraphBenchmark]) -> TaskDataModule:
    return make_dm(benches)


def make_model(dm: TaskDataModule, seed: int = 0, **kwargs) -> MetaPredictorModule:
    torch.manual_seed(seed)
    return MetaPredictorModule(dm.spec(), hidden=32, num_layers=2, **kwargs)


def make_trainer(root: Path, **kwargs) -> pl.Trainer:
    return pl.Trainer(
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=root,
        **kwargs,
    )


def episode_predictions(
    model: MetaPredictorModule, batch: dict[str, torch.Tensor], task_vec: torch.Tensor | None = None
) -> torch.Tensor:
    """``[B, Q]`` predictions through the public API (what a search loop calls)."""
    if task_vec is None:
        task_vec = model.encode_context(batch["ctx_x"], batch["ctx_adj"], batch["ctx_mask"], batch["ctx_y"])
    b, q = batch["y"].shape
    x, adj, mask = (batch[k].flatten(0, 1) for k in ("x", "adj", "mask"))
    return model.predict_graphs(x, adj, mask, task_vec.repeat_interleave(q, dim=0)).view(b, q)


# --- a short real meta-training, shared by the transfer tests ------------------------------


@pytest.fixture(scope="module")
def trained(benches: list[NBGraphBenchmark], tmp_path_factory: pytest.TempPathFactory):
    """~125 steps on citeseer + pubmed episodes; every training batch's task ids recorded."""
    pl.seed_everything(0)
    dm = make_dm(benches, context_size=16, query_size=32, train_episodes=1000, eval_episodes=32, batch_size=8)
    model = make_model(dm, lr=3e-3)
    seen: list[torch.Tensor] = []
    step = model.training_step

    def spy(batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        seen.append(batch["task"].clone())
        return step(batch, batch_idx)

    model.training_step = spy
    trainer = make_trainer(
        tmp_path_factory.mktemp("meta"),
        max_epochs=1,
        enable_checkpointing=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
    )
    trainer.fit(model, dm)
    metrics = trainer.test(model, dm, verbose=False)[0]
    model.eval()
    return dm, model, torch.cat(seen), metrics


def test_held_out_task_never_reaches_training(trained) -> None:
    dm, _, seen, _ = trained
    assert len(seen) == dm.train_episodes
    assert HELD not in seen.tolist()
    assert set(seen.tolist()) == set(dm.train_task_ids) == {1, 2}


def test_meta_training_transfers_to_the_held_out_task(trained) -> None:
    # observed: test/spearman 0.52, test/kendall 0.38 on held-out cora (0.51-0.53 over seeds 0-3)
    _, _, _, metrics = trained
    assert metrics["test/spearman"] > 0.3, metrics
    assert metrics["test/kendall"] > 0.2, metrics


def test_logged_test_metric_is_what_the_public_api_predicts(trained) -> None:
    dm, model, _, metrics = trained
    with torch.no_grad():
        rho = torch.cat([spearman_corrcoef(episode_predictions(model, b).T, b["y"].T) for b in dm.test_dataloader()])
    assert rho.mean().item() == pytest.approx(metrics["test/spearman"], abs=1e-4)


class MirrorTable(Benchmark):
    """Made-up NB201 table whose tasks rank cells in opposite orders ("up": conv count,
    "down": minus it): without a context no model can rank both, so it must read one."""

    def __init__(self, n: int = 1200) -> None:
        self.space = NB201Space()
        archs = list(dict.fromkeys(self.space.sample(n, np.random.default_rng(0))))
        convs = np.array([sum("conv" in op for op in a) for a in archs], dtype=float)
        noise = np.random.default_rng(1).normal(scale=0.3, size=(3, len(archs)))
        self._set_table(archs, {"up": convs + noise[0], "down": noise[1] - convs, "held": convs + noise[2]}, keys=archs)


def test_the_context_decides_between_opposite_tasks(tmp_path: Path) -> None:
    dm = TaskDataModule(
        [MirrorTable()],
        ["up", "down", "held"],
        held_out="held",
        context_size=8,
        query_size=16,
        train_episodes=1200,
        eval_episodes=16,
        batch_size=8,
        seed=0,
    )
    pl.seed_everything(0)
    model = make_model(dm)
    make_trainer(tmp_path, max_epochs=1, enable_checkpointing=False, limit_val_batches=0, num_sanity_val_steps=0).fit(
        model, dm
    )
    model.eval()
    batch = next(iter(dm.val_dataloader()))  # held-out archs of both tasks, alternating
    up, down = (batch["task"] == 0).nonzero()[:, 0], (batch["task"] == 1).nonzero()[:, 0]
    with torch.no_grad():
        ctx = [batch[k] for k in ("ctx_x", "ctx_adj", "ctx_mask", "ctx_y")]
        own = model.encode_context(*ctx)
        rho_own = spearman_corrcoef(episode_predictions(model, batch, own).T, batch["y"].T)
        none = model.encode_context(*ctx, torch.zeros_like(batch["ctx_y"], dtype=torch.bool))
        rho_none = spearman_corrcoef(episode_predictions(model, batch, none).T, batch["y"].T)
        # the same queries, read with an "up" context and with a "down" one
        swapped = own.clone()
        swapped[up] = own[down]
        pred_up, pred_down = episode_predictions(model, batch, own), episode_predictions(model, batch, swapped)
    # observed (seeds 0-2): own context 0.87-0.93 on each task, none ~0.0, swapped contexts -0.97..-0.99
    assert rho_own[up].mean() > 0.7 and rho_own[down].mean() > 0.7, rho_own
    assert rho_own.mean() > rho_none.mean() + 0.5, (rho_own, rho_none)
    flipped = spearman_corrcoef(pred_up[up].T, pred_down[up].T)
    assert flipped.mean() < -0.5, flipped


# --- fit, checkpoints and the leak guard --------------------------------------------------


def test_fast_dev_run_fit_and_checkpoint_keep_data_spec(dm: TaskDataModule, tmp_path: Path) -> None:
    model = make_model(dm, noise_aware=True)
    trainer = make_trainer(tmp_path, fast_dev_run=True)
    trainer.fit(model, dm)
    path = tmp_path / "meta.ckpt"
    trainer.save_checkpoint(path)
    loaded = MetaPredictorModule.load_from_checkpoint(path).eval()
    assert loaded.hparams.data_spec == dm.spec()
    assert "cora" not in loaded.hparams.data_spec["target_stats"]
    batch = next(iter(dm.test_dataloader()))
    model.eval()
    with torch.no_grad():
        assert torch.allclose(episode_predictions(loaded, batch), episode_predictions(model, batch))


@NO_TRAINER
def test_training_step_rejects_held_out_episodes(dm: TaskDataModule) -> None:
    model = make_model(dm)
    batch = next(iter(dm.train_dataloader()))
    model.training_step(batch, 0)  # the other tasks train
    with pytest.raises(NagError, match="held-out task 'cora'"):
        model.training_step(next(iter(dm.test_dataloader())), 0)
    batch["task"][1] = HELD  # one leaked episode is enough
    with pytest.raises(NagError, match="held-out task 'cora'"):
        model.training_step(batch, 0)


@NO_TRAINER
def test_training_keeps_a_random_number_of_context_items(dm: TaskDataModule) -> None:
    model = make_model(dm, min_context=3)
    sizes: list[int] = []
    encode = model.encode_context

    def spy(*args: torch.Tensor) -> torch.Tensor:
        sizes.extend(args[4].sum(1).tolist())
        return encode(*args)

    model.encode_context = spy
    torch.manual_seed(0)
    for i, batch in enumerate(dm.train_dataloader()):
        model.training_step(batch, i)
    assert len(sizes) == dm.train_episodes
    assert min(sizes) >= 3 and max(sizes) <= K and len(set(sizes)) > 2


@NO_TRAINER
def test_min_context_above_the_context_size(dm: TaskDataModule) -> None:
    model = make_model(dm, min_context=K + 1)
    with pytest.raises(ConfigError, match=f"min_context={K + 1}"):
        model.training_step(next(iter(dm.train_dataloader())), 0)


def test_needs_a_task_datamodule(dm: TaskDataModule) -> None:
    spec = {k: v for k, v in dm.spec().items() if k not in ("tasks", "held_out")}
    with pytest.raises(NagError, match="TaskDataModule"):
        MetaPredictorModule(spec)


# --- the context encoder ------------------------------------------------------------------


def test_context_encoder_is_permutation_invariant_and_ignores_invalid_items() -> None:
    torch.manual_seed(0)
    enc = ContextSetEncoder(arch_dim=10, hidden=16).eval()
    arch, y = torch.randn(3, 6, 10), torch.randn(3, 6)
    valid = torch.rand(3, 6) > 0.3
    valid[:, 0] = True
    out = enc(arch, y, valid)
    perm = torch.randperm(6)
    assert torch.allclose(enc(arch[:, perm], y[:, perm], valid[:, perm]), out, atol=1e-5)
    junk = torch.where(valid.unsqueeze(-1), arch, torch.randn_like(arch))
    assert torch.allclose(enc(junk, torch.where(valid, y, 1e3), valid), out, atol=1e-5)


def test_module_context_is_permutation_invariant(dm: TaskDataModule) -> None:
    model = make_model(dm).eval()
    b = next(iter(dm.val_dataloader()))
    perm = torch.randperm(K)
    with torch.no_grad():
        vec = model.encode_context(b["ctx_x"], b["ctx_adj"], b["ctx_mask"], b["ctx_y"])
        permuted = model.encode_context(*(b[k][:, perm] for k in ("ctx_x", "ctx_adj", "ctx_mask", "ctx_y")))
    assert torch.allclose(vec, permuted, atol=1e-5)


def test_scores_are_read_relative_to_the_context(dm: TaskDataModule) -> None:
    model = make_model(dm).eval()
    b = next(iter(dm.val_dataloader()))
    ctx = (b["ctx_x"], b["ctx_adj"], b["ctx_mask"])
    with torch.no_grad():
        # raw accuracies (an affine map of the normalised ones) give the same task vector
        assert torch.allclose(
            model.encode_context(*ctx, b["ctx_y"]), model.encode_context(*ctx, 0.02 * b["ctx_y"] + 0.8), atol=1e-4
        )
    one = torch.zeros(2, 4, dtype=torch.bool)
    one[:, 0] = True
    assert torch.equal(context_zscore(torch.randn(2, 4), one), torch.zeros(2, 4))


def test_empty_context_gives_the_learned_unknown_task_vector(dm: TaskDataModule) -> None:
    model = make_model(dm)
    batch = next(iter(dm.val_dataloader()))
    ctx = [batch[k] for k in ("ctx_x", "ctx_adj", "ctx_mask", "ctx_y")]
    unknown = model.context.unknown
    # the transfer search starts with no measured arch at all: K = 0
    none = model.encode_context(*(c[:1, :0] for c in ctx))
    assert none.shape == (1, 32) and torch.equal(none[0], unknown)
    valid = torch.ones(4, K, dtype=torch.bool)
    valid[0] = False
    vec = model.encode_context(*ctx, valid)
    assert torch.equal(vec[0], unknown) and not torch.allclose(vec[1], unknown)
    # the unknown vector is learned, and a batch mixing empty and full contexts trains cleanly
    x, adj, mask = (batch[k].flatten(0, 1) for k in ("x", "adj", "mask"))
    model.predict_graphs(x, adj, mask, vec.repeat_interleave(Q, dim=0)).square().mean().backward()
    assert unknown.grad is not None and unknown.grad.abs().sum() > 0
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    # one task vector broadcasts against a batch of queries
    assert model.predict_graphs(x, adj, mask, none).shape == (4 * Q,)


# --- guidance ------------------------------------------------------------------------------


def test_noise_aware_predict_state_has_finite_gradients(dm: TaskDataModule) -> None:
    model = make_model(dm, noise_aware=True).eval()
    b = next(iter(dm.test_dataloader()))
    with torch.no_grad():
        task_vec = model.encode_context(b["ctx_x"][:1], b["ctx_adj"][:1], b["ctx_mask"][:1], b["ctx_y"][:1])
    state, masks = clean_state({"x": b["x"][0], "adj": b["adj"][0]}, model.entries)
    t = torch.full((Q,), 0.5)
    state, _ = perturb_state(state, masks, model.sde, t, torch.Generator().manual_seed(0))
    state = {k: v.requires_grad_() for k, v in state.items()}
    score = model.predict_state(state, t, task_vec)
    assert score.shape == (Q,)
    score.sum().backward()
    for part in ("x", "adj"):
        grad = state[part].grad
        assert torch.isfinite(grad).all() and grad.abs().sum() > 0, part


# --- configs -------------------------------------------------------------------------------


@pytest.mark.parametrize("space", ["nbgraph", "nb201"])
def test_configs_parse(space: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(ROOT / "configs" / space / "meta_predictor.yaml"), "--print_config"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "MetaPredictorModule" in out and "TaskDataModule" in out and "noise_aware: true" in out


@NO_TRAINER
@pytest.mark.parametrize("fraction", [0.0, 0.5, 1.0])
def test_noise_aware_training_keeps_a_clean_share_of_queries(dm: TaskDataModule, fraction: float) -> None:
    """Pool ranking reads clean archs: ``clean_fraction`` of the training queries are scored at t = eps."""
    model = make_model(dm, noise_aware=True, clean_fraction=fraction)
    times: list[torch.Tensor] = []
    predict = model.predict_state

    def spy(state, t, task_vec):
        times.append(t)
        return predict(state, t, task_vec)

    model.predict_state = spy
    torch.manual_seed(0)
    for i, batch in enumerate(dm.train_dataloader()):
        model.training_step(batch, i)
    share = float((torch.cat(times) == model.hparams.eps).float().mean())
    assert share == pytest.approx(fraction, abs=0.1)


def test_clean_fraction_outside_0_1(dm: TaskDataModule) -> None:
    with pytest.raises(ConfigError, match="clean_fraction=1.5"):
        make_model(dm, noise_aware=True, clean_fraction=1.5)
