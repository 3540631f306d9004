"""bf16-mixed on CPU: the networks run in bf16, the SDE and transition arithmetic stays fp32,
and neither training nor sampling produces a NaN."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import pytorch_lightning as pl
import torch

from nag.benchmarks import NBGraphBenchmark
from nag.datamodules import ArchitectureDataModule
from nag.lightning_modules.discrete_diffusion import DiscreteDiffusionModule
from nag.lightning_modules.predictor import PredictorModule
from nag.lightning_modules.score_diffusion import ScoreDiffusionModule
from nag.trainer import NagTrainer

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def dm() -> ArchitectureDataModule:
    data = ArchitectureDataModule(
        NBGraphBenchmark("cora"), targets=["valid_acc"], split=(0.8, 0.1, 0.1), train_size=64, batch_size=16
    )
    data.setup()
    return data


def dtypes(out: Any) -> list[torch.dtype]:
    if isinstance(out, torch.Tensor):
        return [out.dtype] if out.is_floating_point() else []
    if isinstance(out, dict):
        out = list(out.values())
    return [d for o in out for d in dtypes(o)] if isinstance(out, (list, tuple)) else []


def spy(obj: Any, names: list[str], seen: list[torch.dtype]) -> None:
    """Record the floating dtypes that ``obj.<name>(...)`` returns."""
    for name in names:
        original: Callable = getattr(obj, name)

        def wrapped(*args, _original=original, **kwargs):
            out = _original(*args, **kwargs)
            seen.extend(dtypes(out))
            return out

        setattr(obj, name, wrapped)


def bf16_trainer(tmp_path, **kwargs) -> NagTrainer:
    return NagTrainer(
        accelerator="cpu",
        precision="bf16-mixed",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        **kwargs,
    )


MODULES = {
    # module, the object holding its noise arithmetic, the methods of it to watch
    "score_diffusion": (
        lambda spec: ScoreDiffusionModule(spec, dim=16, layers=1, heads=2, warmup_steps=2),
        "sde",
        ["marginal_prob", "perturb", "sde", "reverse_drift"],
    ),
    "predictor": (
        lambda spec: PredictorModule(spec, hidden=16, num_layers=2, noise_aware=True),
        "sde",
        ["marginal_prob", "perturb"],
    ),
    "discrete_diffusion": (
        lambda spec: DiscreteDiffusionModule(spec, T=20, dim=16, edge_dim=8, layers=1, heads=2, warmup_steps=2),
        "diffusion",
        ["q_probs", "reverse_probs"],
    ),
}


@pytest.mark.parametrize("name", MODULES)
def test_bf16_mixed_keeps_noise_math_fp32_and_stays_finite(name, dm, tmp_path):
    pl.seed_everything(0)
    build, holder, methods = MODULES[name]
    model = build(dm.spec())
    math_dtypes: list[torch.dtype] = []
    net_dtypes: list[torch.dtype] = []
    spy(getattr(model, holder), methods, math_dtypes)
    net = model.net if hasattr(model, "net") else model.encoder
    net.register_forward_hook(lambda module, args, out: net_dtypes.extend(dtypes(out)))

    trainer = bf16_trainer(tmp_path, max_steps=3, limit_val_batches=1, num_sanity_val_steps=0)
    trainer.fit(model, dm)
    assert torch.isfinite(trainer.callback_metrics["train/loss"])
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert torch.bfloat16 in net_dtypes, "autocast did not reach the network: the test would prove nothing"
    assert math_dtypes and set(math_dtypes) == {torch.float32}

    if hasattr(model, "sample_graphs"):
        math_dtypes.clear()
        model.eval()
        with trainer.precision_plugin.forward_context():
            graphs = model.sample_graphs(6, steps=3, seed=0)
        assert math_dtypes and set(math_dtypes) == {torch.float32}
        assert all(torch.isfinite(v.float()).all() for v in graphs.values())


def test_generate_samples_under_the_trainer_precision(dm, tmp_path, monkeypatch):
    model = ScoreDiffusionModule(dm.spec(), dim=16, layers=1, heads=2)
    trainer = bf16_trainer(tmp_path, max_steps=1)
    ckpt = tmp_path / "model.ckpt"
    trainer.strategy.connect(model)
    trainer.save_checkpoint(ckpt)
    seen: list[torch.dtype] = []
    original = ScoreDiffusionModule.predict_noise

    def predict_noise(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        seen.extend(dtypes(out))
        return out

    monkeypatch.setattr(ScoreDiffusionModule, "predict_noise", predict_noise)
    summary = trainer.generate(model, dm, ckpt_path=str(ckpt), num_samples=8, steps=3, output=str(tmp_path / "g.csv"))
    assert set(seen) == {torch.bfloat16}
    assert summary["samples"] == 8 and 0.0 <= summary["validity"] <= 1.0
    assert (tmp_path / "g.csv").read_text().count("\n") == 9
