"""Predictor guidance: exact on an analytic case, and it moves real samples where asked."""

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from nag.benchmarks import Benchmark
from nag.datamodules import ArchitectureDataModule
from nag.diffusion.guidance import GuidanceTerm, check_same_sde, guided_score, predictor_term
from nag.diffusion.sde import VESDE, VPSDE
from nag.errors import ConfigError
from nag.generation import decode_samples
from nag.lightning_modules import PredictorModule
from nag.lightning_modules.score_diffusion import ScoreDiffusionModule
from nag.spaces import NB201Space


class OpCountTable(Benchmark):
    """A made-up table over NB201 cells whose truth is exact: conv and pool edge counts."""

    def __init__(self, n: int = 3000) -> None:
        self.space = NB201Space()
        archs = list(dict.fromkeys(self.space.sample(n, np.random.default_rng(0))))
        self._set_table(archs, {"convs": np.array([count(a, "conv") for a in archs], dtype=float),
                                "pools": np.array([count(a, "pool") for a in archs], dtype=float)}, keys=archs)


def count(arch, word: str) -> int:
    return sum(word in op for op in arch)


def test_guided_score_adds_the_weighted_gradient():
    target = torch.tensor([1.0, -2.0, 0.5])
    term = GuidanceTerm(lambda s, t: (s["x"] * target).sum(-1), scale=3.0, schedule="late")
    score = guided_score(lambda s, t: {"x": -s["x"]}, [term], horizon=1.0)
    x = torch.randn(4, 3)
    t = torch.tensor([0.0, 0.25, 0.5, 1.0])
    out = score({"x": x}, t)["x"]
    expected = -x + 3.0 * (1 - t).unsqueeze(-1) * target
    assert torch.allclose(out, expected)


def test_guidance_differs_only_in_the_gradient_of_unused_parts():
    term = GuidanceTerm(lambda s, t: s["x"].sum(-1))
    out = guided_score(lambda s, t: {k: torch.zeros_like(v) for k, v in s.items()}, [term])(
        {"x": torch.zeros(2, 3), "adj": torch.zeros(2, 3, 3)}, torch.ones(2))
    assert torch.equal(out["adj"], torch.zeros(2, 3, 3)) and torch.equal(out["x"], torch.ones(2, 3))


def test_predictor_and_generator_must_share_the_sde():
    check_same_sde(VPSDE(0.1, 20.0), VPSDE(0.1, 20.0))
    with pytest.raises(ConfigError, match="sde"):
        check_same_sde(VPSDE(0.1, 20.0), VESDE(0.01, 5.0))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small generator and a noise-aware two-target predictor, trained on one SDE."""
    pl.seed_everything(0)
    dm = ArchitectureDataModule(OpCountTable(), targets=["convs", "pools"], batch_size=128, seed=0)
    gen = ScoreDiffusionModule(dm.spec(), dim=32, layers=2, heads=2, warmup_steps=5, ema_decay=0.99, lr=3e-3)
    pred = PredictorModule(dm.spec(), hidden=32, num_layers=2, lr=5e-3, noise_aware=True)
    for module, epochs in ((gen, 12), (pred, 12)):
        pl.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
                   enable_progress_bar=False, enable_model_summary=False,
                   default_root_dir=tmp_path_factory.mktemp("fit")).fit(module, dm)
    return dm.space, gen.eval(), pred.eval()


def true_counts(space, graphs, word: str) -> np.ndarray:
    result = decode_samples(space, graphs)
    return np.array([count(a, word) for a in result.archs if a is not None])


def test_guidance_raises_the_metric_of_samples(trained):
    space, gen, pred = trained
    unguided = gen.sample_graphs(200, steps=20, seed=0)
    guided = gen.sample_graphs(200, steps=20, seed=0, guidance=[predictor_term(pred, "convs", scale=5.0)])
    before, after = true_counts(space, unguided, "conv"), true_counts(space, guided, "conv")
    assert after.mean() > before.mean() + 1.0, (before.mean(), after.mean())


def test_budget_is_respected_while_maximising_another_metric(trained):
    space, gen, pred = trained
    terms = [predictor_term(pred, "convs", scale=2.0),
             predictor_term(pred, "pools", direction="min", limit=0.5, scale=5.0)]
    guided = gen.sample_graphs(200, steps=20, seed=1, guidance=terms)
    unguided = gen.sample_graphs(200, steps=20, seed=1)
    pools, base_pools = true_counts(space, guided, "pool"), true_counts(space, unguided, "pool")
    assert (pools <= 0).mean() >= 0.7, (pools <= 0).mean()
    assert (base_pools <= 0).mean() < 0.5
    assert true_counts(space, guided, "conv").mean() > true_counts(space, unguided, "conv").mean()


def test_unknown_target_is_named(trained):
    _, _, pred = trained
    with pytest.raises(ConfigError, match="latency"):
        predictor_term(pred, "latency")
