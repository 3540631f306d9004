"""Tasks for meta-learning: episodes of (context set, queries) drawn from several benchmarks."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from nag.benchmarks.base import Benchmark
from nag.datamodules.architecture import SPLITS, space_spec, split_by_key
from nag.datamodules.resumable_loader import seeded_loader
from nag.errors import ConfigError


@dataclass
class Task:
    """One (benchmark, metric) pair with its architectures pre-encoded and scores z-scored
    per task, since tasks differ in scale (Cora accuracy vs. ImageNet16 accuracy)."""

    name: str
    x: torch.Tensor
    adj: torch.Tensor
    mask: torch.Tensor
    y: torch.Tensor
    splits: dict[str, np.ndarray]
    mean: float
    std: float


class EpisodeDataset(Dataset):
    """Episode ``i`` is drawn with its own seeded generator, so epochs and runs repeat exactly."""

    def __init__(
        self,
        tasks: list[Task],
        task_ids: list[int],
        split: str,
        context_size: int,
        query_size: int,
        length: int,
        seed: int,
    ) -> None:
        self.tasks, self.task_ids, self.split = tasks, task_ids, split
        self.context_size, self.query_size, self.length, self.seed = context_size, query_size, length, seed

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, i])
        tid = self.task_ids[i % len(self.task_ids)]
        task = self.tasks[tid]
        pool = task.splits[self.split]
        ctx_pool = task.splits["train"] if self.split != "train" else pool
        query = rng.choice(pool, self.query_size, replace=False)
        ctx = rng.choice(np.setdiff1d(ctx_pool, query), self.context_size, replace=False)
        item = {"task": torch.tensor(tid)}
        for prefix, idx in (("ctx_", ctx), ("", query)):
            idx = torch.as_tensor(idx)
            item |= {
                prefix + "x": task.x[idx],
                prefix + "adj": task.adj[idx],
                prefix + "mask": task.mask[idx],
                prefix + "y": task.y[idx],
            }
        return item


class TaskDataModule(pl.LightningDataModule):
    """Leave-one-task-out meta-learning over benchmarks sharing one search space.

    Tasks are every (benchmark, metric) pair: NB-Graph's 9 datasets with ``test_acc``, or
    NB201's table with its 3 datasets' accuracies. Meta-training draws episodes from all
    tasks but ``held_out`` on the train architectures; validation uses the same tasks on
    held-out architectures; test episodes come from the held-out task only.
    Each episode: ``context_size`` measured (arch, score) pairs and ``query_size`` queries.
    """

    def __init__(
        self,
        benchmarks: Sequence[Benchmark],
        metrics: Sequence[str],
        held_out: str,
        context_size: int = 16,
        query_size: int = 16,
        train_episodes: int = 2000,
        eval_episodes: int = 200,
        split: tuple[float, float, float] = (0.8, 0.1, 0.1),
        seed: int = 0,
        batch_size: int = 8,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        if not benchmarks or not metrics:
            raise ConfigError("data: TaskDataModule needs at least one benchmark and one metric")
        spaces = {repr(b.space.identity) for b in benchmarks}
        if len(spaces) != 1:
            raise ConfigError("data.benchmarks must share one search space to form tasks of one model")
        self.benchmarks, self.metrics = list(benchmarks), list(metrics)
        self.space = benchmarks[0].space
        self.held_out = held_out
        if len(set(self.task_names)) != len(self.task_names):
            raise ConfigError(f"data: tasks must be distinct, got {self.task_names}; list each benchmark once")
        if held_out not in self.task_names:
            raise ConfigError(f"data.held_out={held_out!r} is not a task; tasks: {', '.join(self.task_names)}")
        self.context_size, self.query_size = context_size, query_size
        self.train_episodes, self.eval_episodes = train_episodes, eval_episodes
        self.split, self.seed, self.batch_size, self.num_workers = tuple(split), seed, batch_size, num_workers

    @property
    def task_names(self) -> list[str]:
        names = []
        for b in self.benchmarks:
            for m in self.metrics:
                if len(self.metrics) == 1:
                    names.append(b.name)
                elif len(self.benchmarks) == 1:
                    names.append(m)
                else:
                    names.append(f"{b.name}/{m}")
        return names

    @cached_property
    def tasks(self) -> list[Task]:
        tasks = []
        names = iter(self.task_names)
        encoded: dict[tuple, tuple] = {}
        for b in self.benchmarks:
            archs = tuple(b.archs())
            if archs not in encoded:  # NB-Graph's 8 full datasets share one architecture list
                encoded[archs] = (*self.space.encode_batch(archs), [self.space.key(a) for a in archs])
            x, adj, mask, keys = encoded[archs]
            for m in self.metrics:
                y = b.column(m)
                keep = np.flatnonzero(~np.isnan(y))
                parts = split_by_key([keys[i] for i in keep], self.split, self.seed)
                splits = dict(zip(SPLITS, (keep[p] for p in parts)))
                need = self.context_size + self.query_size
                if min(len(v) for v in splits.values()) < need:
                    raise ConfigError(
                        f"data: task {b.name}/{m} has a split smaller than context_size+query_size={need}"
                    )
                mean, std = float(np.nanmean(y[splits["train"]])), float(np.nanstd(y[splits["train"]])) or 1.0
                y_norm = torch.as_tensor(np.nan_to_num((y - mean) / std), dtype=torch.float32)
                tasks.append(Task(next(names), x, adj, mask, y_norm, splits, mean, std))
        return tasks

    def spec(self) -> dict:
        """As :meth:`ArchitectureDataModule.spec`, with statistics per task (scores are
        z-scored per task) and the task names, for checkpoints of meta-learned models.

        The held-out task has no statistics here: they come from its labels, which must not
        reach a meta-trained checkpoint; only its test episodes are normalised with them."""
        return {
            **space_spec(self.space),
            "targets": list(self.metrics),
            "target_stats": {t.name: {"mean": t.mean, "std": t.std} for t in self.tasks if t.name != self.held_out},
            "tasks": self.task_names,
            "task_datasets": self.task_datasets,
            "held_out": self.held_out,
            "context_size": self.context_size,
        }

    @property
    def task_datasets(self) -> list[str]:
        """Each task's dataset (``Benchmark.dataset_of``), in task order: what a transfer search
        compares to refuse targets whose data the model learned under another name."""
        return [b.dataset_of(m) for b in self.benchmarks for m in self.metrics]

    @property
    def train_task_ids(self) -> list[int]:
        return [i for i, n in enumerate(self.task_names) if n != self.held_out]

    def _episodes(self, task_ids: list[int], split: str, length: int, seed: int) -> EpisodeDataset:
        """The episodes of one loader; subclasses add to what an episode holds."""
        return EpisodeDataset(self.tasks, task_ids, split, self.context_size, self.query_size, length, seed)

    def _loader(self, task_ids: list[int], split: str, length: int, shuffle: bool, seed: int) -> DataLoader:
        ds = self._episodes(task_ids, split, length, seed)
        return seeded_loader(ds, self.batch_size, shuffle, self.seed, self.num_workers, self.trainer)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_task_ids, "train", self.train_episodes, True, self.seed)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.train_task_ids, "val", self.eval_episodes, False, self.seed + 1)

    def test_dataloader(self) -> DataLoader:
        held = [self.task_names.index(self.held_out)]
        return self._loader(held, "test", self.eval_episodes, False, self.seed + 2)
