"""Brief real training of a built network on a small image set: the ground truth that ranks
generated networks against baselines (proxies only predict it).

MNIST-5k is split once by ``split_seed`` into a fixed train and test part (by default 4,000 /
1,000 images), standardised with the train part's statistics, resized bilinearly to the
task's input size and the grey channel repeated to ``channels``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torchmetrics.classification import MulticlassAccuracy

from nag.errors import ConfigError
from nag.lightning_modules.in_loop import in_loop_trainer
from nag.zc import load_images

Schedule = Literal["constant", "cosine"]


class ImageTask:
    """A fixed train/test split of an image file (``nag.zc.load_images`` layouts).

    Args:
        path: image CSV, e.g. ``../shared/data/images/mnist_5k.csv.gz``.
        size: side the images are resized to.
        channels: the grey channel repeated this many times.
        num_classes: labels are folded onto ``label % num_classes``.
        test_size: images held out for testing; ``train_size`` (default: all the rest) for training.
        split_seed: fixes which images land in which part.
        classes: keep only images of these labels, renumbered ``0..len(classes)-1`` in this
            order (a class-subset task such as MNIST digits 0-4); ``num_classes`` must then
            be ``len(classes)``.
    """

    def __init__(
        self,
        path: str | Path,
        size: int = 16,
        channels: int = 1,
        num_classes: int = 10,
        test_size: int = 1000,
        train_size: int | None = None,
        split_seed: int = 0,
        classes: Sequence[int] | None = None,
    ) -> None:
        pixels, labels = load_images(str(path))
        if classes is not None:
            if len(classes) != num_classes or len(set(classes)) != len(classes):
                raise ConfigError(f"classes={list(classes)}: expected num_classes={num_classes} distinct labels")
            keep = np.isin(labels, classes)
            position = {c: i for i, c in enumerate(classes)}
            pixels, labels = pixels[keep], np.array([position[c] for c in labels[keep].tolist()], dtype=np.int64)
        n = len(labels)
        train_size = n - test_size if train_size is None else train_size
        if test_size < 1 or train_size < 1 or test_size + train_size > n:
            raise ConfigError(
                f"training.test_size={test_size}, train_size={train_size}: need both >= 1 and at most "
                f"the {n} images of {path} together"
            )
        order = np.random.default_rng(split_seed).permutation(n)
        test, train = order[:test_size], order[test_size : test_size + train_size]
        mean, std = float(pixels[train].mean()), float(pixels[train].std())
        x = torch.from_numpy((pixels - mean) / std).unsqueeze(1)
        if x.shape[-1] != size:
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
        x = x.expand(-1, channels, -1, -1).contiguous()
        y = torch.from_numpy(labels % num_classes)
        self.size, self.channels, self.num_classes = size, channels, num_classes
        self.train = TensorDataset(x[train], y[train])
        self.test = TensorDataset(x[test], y[test])


class ImageClassifier(pl.LightningModule):
    """Cross-entropy training of ``network`` with Adam; test accuracy from torchmetrics.
    ``schedule="cosine"`` anneals the learning rate to 0 over the whole fit: the last steps
    then barely move the weights, so the final accuracy is less a draw of the last batches."""

    def __init__(self, network: nn.Module, num_classes: int, lr: float = 3e-3, schedule: Schedule = "constant") -> None:
        super().__init__()
        if schedule not in ("constant", "cosine"):
            raise ConfigError(f"training schedule={schedule!r}; expected 'constant' or 'cosine'")
        self.network, self.lr, self.schedule = network, lr, schedule
        self.accuracy = MulticlassAccuracy(num_classes, average="micro")

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = F.cross_entropy(self.network(x), y)
        self.log("train/loss", loss, batch_size=len(y))
        return loss

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        self.accuracy.update(self.network(x), y)
        self.log("test/accuracy", self.accuracy, batch_size=len(y))

    def configure_optimizers(self) -> Any:
        optimizer = torch.optim.Adam(self.network.parameters(), lr=self.lr)
        if self.schedule == "constant":
            return optimizer
        steps = max(int(self.trainer.estimated_stepping_batches), 1)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def train_briefly(
    network: nn.Module,
    task: ImageTask,
    epochs: int = 2,
    batch_size: int = 64,
    lr: float = 3e-3,
    seed: int = 0,
    accelerator: str = "auto",
    schedule: Schedule = "constant",
) -> float:
    """Train ``network`` (in place) on ``task.train`` for ``epochs`` and return its test
    accuracy. ``seed`` fixes the batch order and anything random in the network's forward
    pass; the caller seeds the weights when building the network."""
    if epochs < 1:
        raise ConfigError(f"training.epochs={epochs}: expected at least 1")
    model = ImageClassifier(network, task.num_classes, lr, schedule)
    loader = DataLoader(task.train, batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed))
    with in_loop_trainer(epochs, accelerator, seed) as trainer:
        trainer.fit(model, loader)
        result = trainer.test(model, DataLoader(task.test, batch_size=500), verbose=False)
    return float(result[0]["test/accuracy"])
