"""GenerationMetricsCallback's pictures reach TensorBoard: read back from the event files."""

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import (
    IMAGES,
    EventAccumulator,
)

from nag.benchmarks.base import Benchmark
from nag.callbacks import GenerationMetricsCallback
from nag.datamodules import ArchitectureDataModule
from nag.spaces import NB201Space

pytestmark = pytest.mark.usefixtures("single_thread")
PNG = b"\x89PNG"


class ConvCount(Benchmark):
    """A small table whose metric anyone can recompute: the number of conv edges of a cell."""

    def __init__(self) -> None:
        self.space = NB201Space()
        by_key = {self.space.key(a): a for a in self.space.sample(600, np.random.default_rng(0))}
        archs = list(by_key.values())
        self._set_table(archs, {"convs": [sum(op.startswith("nor_conv") for op in a) for a in archs]})


class UniformGenerator(pl.LightningModule):
    """Draws cells uniformly: every sample is valid, so the pictures have content without
    training a diffusion model first (the callback only needs ``sample_graphs``)."""

    def __init__(self, space: NB201Space) -> None:
        super().__init__()
        self.space = space
        self.w = torch.nn.Parameter(torch.zeros(1))

    def training_step(self, batch, batch_idx):
        return (self.w - 1).pow(2).sum()

    def validation_step(self, batch, batch_idx) -> None:
        pass

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def sample_graphs(self, num_samples: int, seed: int = 0, **_) -> dict[str, torch.Tensor]:
        x, adj, mask = self.space.encode_batch(self.space.sample(num_samples, np.random.default_rng(seed)))
        return {"x": x, "adj": adj, "mask": mask}


def fit(tmp_path, log_images: bool) -> EventAccumulator:
    dm = ArchitectureDataModule(benchmark=ConvCount(), targets=["convs"], split=(0.5, 0.1, 0.4), batch_size=64)
    model = UniformGenerator(dm.space)
    logger = TensorBoardLogger(tmp_path, name="tb")
    callback = GenerationMetricsCallback(every_n_epochs=1, num_samples=16, steps=2, log_images=log_images, num_drawn=4)
    pl.Trainer(
        accelerator="cpu",
        logger=logger,
        max_epochs=1,
        limit_train_batches=2,
        limit_val_batches=1,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[callback],
    ).fit(model, dm)
    events = EventAccumulator(logger.log_dir, size_guidance={IMAGES: 0})
    events.Reload()
    return events


def test_dag_grid_and_histogram_are_logged_as_images(tmp_path):
    events = fit(tmp_path, log_images=True)
    tags = events.Tags()["images"]
    assert {"gen/architectures", "gen/convs_histogram"} <= set(tags), tags
    for tag in ("gen/architectures", "gen/convs_histogram"):
        (image,) = events.Images(tag)
        assert image.step > 0 and image.width > 100 and image.height > 100
        assert image.encoded_image_string.startswith(PNG)
    assert events.Scalars("gen/validity")[0].value == 1.0
    assert "gen/validity" in events.Tags()["scalars"]


def test_images_can_be_turned_off(tmp_path):
    events = fit(tmp_path, log_images=False)
    assert events.Tags()["images"] == []
    assert "gen/validity" in events.Tags()["scalars"]
