import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from nag.benchmarks import Benchmark
from nag.datamodules import ArchitectureDataModule
from nag.errors import NagError
from nag.lightning_modules import PredictorModule
from nag.spaces import NB201Space


class ConvCountTable(Benchmark):
    """A made-up table over NB201 cells: score = number of conv edges (a learnable truth)."""

    def __init__(self, n: int = 400) -> None:
        self.space = NB201Space()
        archs = list(dict.fromkeys(self.space.sample(n, np.random.default_rng(0))))
        score = np.array([sum("conv" in op for op in a) for a in archs], dtype=float)
        self._set_table(archs, {"convs": score}, keys=archs)


def make(n=400, seed=0, **model_kwargs):
    dm = ArchitectureDataModule(ConvCountTable(n), targets=["convs"], seed=seed, batch_size=32)
    model = PredictorModule(dm.spec(), hidden=32, num_layers=2, lr=5e-3, **model_kwargs)
    return dm, model


def test_training_learns_a_learnable_target(tmp_path):
    pl.seed_everything(0)
    dm, model = make()
    trainer = pl.Trainer(
        max_epochs=15,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(model, dm)
    metrics = trainer.validate(model, dm, verbose=False)[0]
    assert metrics["val/convs_spearman"] > 0.9


def test_predictions_are_in_benchmark_units():
    dm, model = make()
    dm.setup()
    batch = next(iter(dm.predict_dataloader()))
    model.eval()
    pred = model.predict_step(batch, 0)
    assert pred.shape == (batch["x"].shape[0], 1)
    raw = model.denormalize(batch["y"])
    assert raw.min() >= 0 and raw.max() <= 6


def test_checkpoint_keeps_space_and_target_statistics(tmp_path):
    dm, model = make()
    trainer = pl.Trainer(
        fast_dev_run=True,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(model, dm)
    path = tmp_path / "m.ckpt"
    trainer.save_checkpoint(path)
    loaded = PredictorModule.load_from_checkpoint(path)
    assert loaded.hparams.data_spec["space"] == NB201Space().identity
    assert loaded.hparams.data_spec["target_stats"] == dm.target_stats
    assert torch.equal(loaded.mean, model.mean)


def test_non_finite_loss_stops_with_the_step(tmp_path):
    dm = ArchitectureDataModule(ConvCountTable(), targets=["convs"], batch_size=32)
    model = PredictorModule(dm.spec(), lr=1e30)
    trainer = pl.Trainer(
        max_epochs=3,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    with pytest.raises(NagError, match=r"at global step \d+"):
        trainer.fit(model, dm)


def test_needs_a_target():
    with pytest.raises(NagError, match="data.targets"):
        PredictorModule(
            {"space": NB201Space().identity, "num_ops": 7, "max_nodes": 8, "targets": [], "target_stats": {}}
        )


def test_bf16_mixed_precision_trains_on_cpu(tmp_path):
    dm, model = make(n=200)
    trainer = pl.Trainer(
        max_epochs=1,
        precision="bf16-mixed",
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(model, dm)
    assert all(torch.isfinite(p).all() for p in model.parameters())
