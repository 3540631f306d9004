"""A datamodule over fixed train/val/test datasets, so every such datamodule loads alike."""

from __future__ import annotations

import pytorch_lightning as pl
from torch.utils.data import DataLoader, Dataset

from nag.datamodules.resumable_loader import seeded_loader
from nag.errors import ConfigError


class SplitDataModule(pl.LightningDataModule):
    """Train/val/test loaders over ``self.datasets`` (built in ``setup``): training shuffled by
    :func:`~nag.datamodules.resumable_loader.seeded_loader` from ``seed``, evaluation in order.

    A subclass sets ``split`` (the fractions, named in the empty-split error), ``batch_size``,
    ``seed`` and ``num_workers`` in ``__init__`` and fills ``datasets`` in ``setup``.
    """

    datasets: dict[str, Dataset]
    split: tuple[float, ...]
    batch_size: int
    seed: int
    num_workers: int

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        if len(self.datasets[split]) == 0:
            raise ConfigError(f"data.split {self.split} leaves the {split} split empty; raise its fraction")
        return seeded_loader(self.datasets[split], self.batch_size, shuffle, self.seed, self.num_workers, self.trainer)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
