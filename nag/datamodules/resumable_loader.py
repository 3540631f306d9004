"""Data loaders whose order is a function of (seed, epoch), so a killed run resumes exactly."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler


class ResumableDataLoader(DataLoader):
    """A DataLoader Lightning can checkpoint mid-epoch (``state_dict``/``load_state_dict``).

    The state is the sampler's epoch and how many batches of it were handed out; after a
    restore, the next pass over the same epoch skips that many. This is exact because the
    sampler's order depends on its epoch alone (:func:`seeded_loader`); a plain
    ``shuffle=True`` loader draws each epoch from a generator's history, which a restarted
    process no longer has. Without it Lightning restarts the epoch's data from the top.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._handed_out = 0
        self._resume: dict[str, int] | None = None

    def _epoch(self) -> int:
        return int(getattr(self.sampler, "epoch", 0))

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self._epoch(), "batches": self._handed_out}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        self._resume = dict(state_dict)

    def __iter__(self) -> Iterator[Any]:
        # A generator: this runs at the first ``next``, after Lightning's ``set_epoch``.
        resume, self._resume = self._resume, None
        skip = resume["batches"] if resume is not None and resume["epoch"] == self._epoch() else 0
        self._handed_out = 0
        for i, batch in enumerate(super().__iter__()):
            self._handed_out = i + 1
            if i >= skip:
                yield batch


def seeded_loader(
    dataset: Dataset, batch_size: int, shuffle: bool, seed: int, num_workers: int = 0, trainer: pl.Trainer | None = None
) -> DataLoader:
    """The loader every nag datamodule uses.

    Training (``shuffle``) draws a permutation from ``seed + epoch`` and gives this process
    its ``rank::world_size`` share: one process with batch ``2B`` and two DDP processes with
    batch ``B`` each see the same global batches. Evaluation keeps the dataset order (under
    DDP Lightning shards it). Every loader has its own generator, so loading never draws
    from the global RNG that model noise and dropout use.
    """
    generator = torch.Generator().manual_seed(seed)
    if not shuffle:
        return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers, generator=generator)
    world, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
    sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=seed)
    return ResumableDataLoader(
        dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers, generator=generator
    )
