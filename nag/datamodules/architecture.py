"""Architectures of one search space as dense padded graph batches with measured targets."""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import cached_property

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from nag.benchmarks.base import Benchmark
from nag.datamodules.split_datamodule import SplitDataModule
from nag.errors import ConfigError, NagError, UnknownMetric
from nag.spaces.base import Arch, SearchSpace

SPLITS = ("train", "val", "test")


class GraphDataset(Dataset):
    """Pre-encoded architectures; items are dicts ``x, adj, mask, y`` (y normalised)."""

    def __init__(self, x: torch.Tensor, adj: torch.Tensor, mask: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.adj, self.mask, self.y = x, adj, mask, y

    def __len__(self) -> int:
        return self.x.shape[0]

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"x": self.x[i], "adj": self.adj[i], "mask": self.mask[i], "y": self.y[i]}


def space_spec(space: SearchSpace) -> dict:
    """The search-space part of a datamodule's ``spec()``: identity, sizes and fixed graph."""
    fixed = space.fixed_adjacency()
    try:
        config = space.build_config
    except NagError:  # a space built from non-plain values: loading its models needs space=
        config = None
    return {
        "space": space.identity,
        "space_config": config,
        "num_ops": space.num_ops,
        "max_nodes": space.max_nodes,
        "fixed_topology": space.fixed_topology,
        "single_input": space.single_input,
        "fixed_adjacency": None if fixed is None else fixed.tolist(),
        "allowed_ops": space.allowed_ops().tolist(),
        "min_nodes": space.min_nodes,
        "stop_op": None if space.stop_op is None else space.op_index(space.stop_op),
        "stop_runs": [list(run) for run in space.stop_runs()],
        "max_edges": space.max_edges,
    }


def split_by_key(keys: Sequence[str], fractions: Sequence[float], seed: int) -> list[np.ndarray]:
    """Row indices per split; all rows sharing a canonical key land in the same split, so
    isomorphic copies never leak from train into val/test."""
    groups: dict[str, list[int]] = {}
    for i, k in enumerate(keys):
        groups.setdefault(k, []).append(i)
    order = list(groups)
    np.random.default_rng(seed).shuffle(order)
    bounds = np.floor(np.cumsum(fractions) / sum(fractions) * len(order) + 0.5).astype(int)
    starts = np.concatenate([[0], bounds[:-1]])
    return [np.array(sorted(i for k in order[s:e] for i in groups[k]), dtype=np.int64) for s, e in zip(starts, bounds)]


class ArchitectureDataModule(SplitDataModule):
    """Train/val/test architecture splits of a benchmark (or of a bare search space).

    Args:
        benchmark: table giving architectures and their metrics; its space is used.
        space: used when there is no benchmark (architectures are enumerated, or
            ``num_archs`` are sampled); must match the benchmark's space if both are given.
            A benchmark without a table (``tabular`` False, e.g. OFA-MobileNetV3) scores
            ``num_archs`` architectures sampled from its space: use it only for metrics that are
            free to compute (latency from a device model), never for the labels a search pays for.
        targets: metric names to predict/condition on, normalised by train-split statistics.
        split: fractions of canonical keys for train/val/test.
        train_size: keep only this many training architectures (few-shot predictors).
        num_archs: sample this many architectures from an infinite space without benchmark.
        seed: fixes the split, the subsample and any sampling.
    """

    def __init__(
        self,
        benchmark: Benchmark | None = None,
        space: SearchSpace | None = None,
        targets: Sequence[str] = (),
        split: tuple[float, float, float] = (0.8, 0.1, 0.1),
        train_size: int | None = None,
        num_archs: int | None = None,
        seed: int = 0,
        batch_size: int = 128,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        if benchmark is None and space is None:
            raise ConfigError("data: give a benchmark (architectures with metrics) or a space")
        if benchmark is not None and space is not None and benchmark.space.identity != space.identity:
            raise ConfigError(
                f"data.space {space!r} differs from the benchmark's space {benchmark.space!r}; drop data.space"
            )
        if targets and benchmark is None:
            raise ConfigError(f"data.targets {list(targets)} need a data.benchmark to read them from")
        if len(split) != 3 or any(f < 0 for f in split) or sum(split) <= 0:
            raise ConfigError(f"data.split must be three non-negative fractions (train, val, test), got {split}")
        self.benchmark = benchmark
        self.space: SearchSpace = benchmark.space if benchmark is not None else space
        self.targets = list(targets)
        if benchmark is not None and not benchmark.tabular and num_archs is None:
            raise ConfigError(
                f"data.num_archs: {type(benchmark).__name__} has no table; "
                "say how many architectures to sample and score"
            )
        for t in self.targets:
            try:
                benchmark.check_metric(t)
                column = benchmark.column(t) if benchmark.tabular else np.zeros(1)
            except UnknownMetric as e:
                raise UnknownMetric(f"data.targets: {e}") from None
            if np.isnan(column).all():
                raise ConfigError(
                    f"data.targets: {t!r} has no values in {type(benchmark).__name__}; pick a measured metric"
                )
        self.split, self.train_size, self.num_archs = tuple(split), train_size, num_archs
        self.seed, self.batch_size, self.num_workers = seed, batch_size, num_workers

    # --- populations -----------------------------------------------------------------
    @cached_property
    def _rows(self) -> tuple[list[Arch], np.ndarray]:
        """All usable architectures and their raw targets ``[n, T]`` (rows with NaN dropped)."""
        if self.benchmark is not None and not self.benchmark.tabular:
            archs = self.space.sample(self.num_archs, np.random.default_rng(self.seed))
            y = np.stack([self.benchmark.values(archs, t) for t in self.targets], 1) if self.targets else None
            return archs, np.zeros((len(archs), 0)) if y is None else y
        if self.benchmark is not None:
            archs = self.benchmark.archs()
            y = (
                np.stack([self.benchmark.column(t) for t in self.targets], 1)
                if self.targets
                else np.zeros((len(archs), 0))
            )
            keep = ~np.isnan(y).any(1)
            return [a for a, k in zip(archs, keep) if k], y[keep]
        if self.num_archs is None:
            if not self.space.is_finite:
                raise ConfigError(f"data.num_archs: {self.space.name} is infinite; say how many to sample")
            archs = list(self.space.enumerate())
        else:
            archs = self.space.sample(self.num_archs, np.random.default_rng(self.seed))
        return archs, np.zeros((len(archs), 0))

    @cached_property
    def split_indices(self) -> dict[str, np.ndarray]:
        archs, _ = self._rows
        parts = dict(zip(SPLITS, split_by_key([self.space.key(a) for a in archs], self.split, self.seed)))
        for name in ("train", "val"):
            if len(parts[name]) == 0:
                raise ConfigError(
                    f"data.split {self.split} leaves the {name} split empty ({len(archs)} architectures); "
                    "raise its fraction"
                )
        if self.train_size is not None:
            if not 0 < self.train_size <= len(parts["train"]):
                raise ConfigError(
                    f"data.train_size={self.train_size} must be between 1 and the "
                    f"{len(parts['train'])} training architectures"
                )
            rng = np.random.default_rng(self.seed + 1)
            parts["train"] = np.sort(rng.choice(parts["train"], self.train_size, replace=False))
        return parts

    def archs(self, split: str) -> list[Arch]:
        archs, _ = self._rows
        return [archs[i] for i in self.split_indices[split]]

    def labels(self, split: str, target: str) -> np.ndarray:
        """Raw values of ``target`` for :meth:`archs` of ``split``, in the same order."""
        if target not in self.targets:
            raise ConfigError(f"{target!r} is not one of data.targets {list(self.targets)}")
        _, y = self._rows
        return y[self.split_indices[split], list(self.targets).index(target)]

    def train_keys(self) -> set[str]:
        """Canonical keys of the training split: the reference for novelty."""
        return self._train_keys

    @cached_property
    def _train_keys(self) -> set[str]:
        """Hashed once: the sampling callback asks for it every few epochs."""
        return {self.space.key(a) for a in self.archs("train")}

    @cached_property
    def target_stats(self) -> dict[str, dict[str, float]]:
        """Mean/std of each target over the training split, stored in checkpoints so that
        predictions and conditions are (de)normalised exactly as in training; min/max so that
        a condition outside what the model saw is refused rather than silently extrapolated."""
        _, y = self._rows
        train = y[self.split_indices["train"]]
        stats = {}
        for j, t in enumerate(self.targets):
            std = float(train[:, j].std())
            stats[t] = {
                "mean": float(train[:, j].mean()),
                "std": std if std > 0 and math.isfinite(std) else 1.0,
                "min": float(train[:, j].min()),
                "max": float(train[:, j].max()),
            }
        return stats

    def spec(self) -> dict:
        """What a model must know of its data, stored in its checkpoint: the search space and
        the targets with their training-split statistics."""
        return {**space_spec(self.space), "targets": list(self.targets), "target_stats": self.target_stats}

    def normalize(self, y: np.ndarray) -> np.ndarray:
        mean = np.array([self.target_stats[t]["mean"] for t in self.targets])
        std = np.array([self.target_stats[t]["std"] for t in self.targets])
        return (y - mean) / std if self.targets else y

    # --- Lightning hooks -------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if hasattr(self, "datasets"):
            return
        archs, y = self._rows
        y = torch.as_tensor(self.normalize(y), dtype=torch.float32)
        self.datasets = {}
        for name, idx in self.split_indices.items():
            x, adj, mask = self.space.encode_batch([archs[i] for i in idx])
            self.datasets[name] = GraphDataset(x, adj, mask, y[idx])

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
