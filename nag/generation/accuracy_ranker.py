"""What ranks a device's feasible architectures when no trained predictor is given: a ridge
model of the config's accuracy target, fitted in a second on the labels the generator was
trained on.

The device flow promises the most accurate architectures within a budget. Without a ranker it
could only order them by how often the generator drew them, which returns feasible cells no
better than uniform random ones. The labels are the training split's (already the
generator's), so the ranker adds no query of the task; the features are the encoded graph's
entries and their pairwise products (an op's effect depends on where it sits and what it
reads), which is what a ridge needs to rank NB201 and NB-Graph cells well.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from nag.datamodules.architecture import ArchitectureDataModule
from nag.errors import ConfigError
from nag.spaces.base import Arch, SearchSpace


class RidgeRanker:
    """Ridge regression of ``values`` on the pairwise features of ``archs``; calling it on
    architectures returns their values, measured where labelled and predicted elsewhere
    (larger: better when ``higher_is_better``).

    Args:
        space: the space the architectures belong to.
        archs: labelled architectures.
        values: their measured metric (NaN rows are left out).
        metric: the metric's name, for descriptions.
        higher_is_better: False for a cost, so scores are negated and larger is still better.
        alpha: ridge penalty on the binary features.
    """

    def __init__(
        self,
        space: SearchSpace,
        archs: Sequence[Arch],
        values: np.ndarray,
        metric: str,
        higher_is_better: bool = True,
        alpha: float = 1.0,
    ) -> None:
        values = np.asarray(values, dtype=np.float64)
        known = np.isfinite(values)
        if known.sum() < 2:
            raise ConfigError(f"{metric}: fewer than 2 labelled architectures to fit an accuracy ranker on")
        self.space, self.metric, self.sign = space, metric, 1.0 if higher_is_better else -1.0
        self.labels = int(known.sum())
        self.measured = {space.key(a): float(v) for a, v, k in zip(archs, values, known) if k}
        flat = self._flat([a for a, k in zip(archs, known) if k])
        self.columns = np.flatnonzero(flat.std(0) > 0)
        design = self._design(flat)
        mean_f, mean_y = design.mean(0), values[known].mean()
        centred = design - mean_f
        self.weights = np.linalg.solve(
            centred.T @ centred + alpha * np.eye(design.shape[1]), centred.T @ (values[known] - mean_y)
        )
        self.bias = mean_y - mean_f @ self.weights

    def _flat(self, archs: Sequence[Arch]) -> np.ndarray:
        x, adj, _ = self.space.encode_batch(list(archs))
        return torch.cat([x.flatten(1), adj.flatten(1)], 1).double().numpy()

    def _design(self, flat: np.ndarray) -> np.ndarray:
        f = flat[:, self.columns]
        i, j = np.triu_indices(f.shape[1], 1)
        return np.concatenate([f, f[:, i] * f[:, j]], axis=1)

    def predict(self, archs: Sequence[Arch]) -> np.ndarray:
        """The metric in its own units: measured for the labelled architectures (their label is
        exact), predicted for the rest."""
        if not archs:
            return np.zeros(0)
        predicted = self._design(self._flat(archs)) @ self.weights + self.bias
        known = [self.measured.get(self.space.key(a)) for a in archs]
        return np.array([p if k is None else k for p, k in zip(predicted, known)])

    def __call__(self, archs: Sequence[Arch]) -> np.ndarray:
        return self.sign * self.predict(archs)

    @property
    def description(self) -> str:
        return f"ranked by a ridge model of {self.metric} fitted on the config's {self.labels} training-split labels"


def default_ranker(datamodule: ArchitectureDataModule) -> RidgeRanker | None:
    """A :class:`RidgeRanker` of the datamodule's first maximised target (an accuracy) on its
    training split, or None where it has no benchmark or no such target (then the device flow
    orders by draw counts, and says so)."""
    benchmark = datamodule.benchmark
    if benchmark is None or not benchmark.tabular:
        return None
    wanted = [t for t in datamodule.targets if benchmark.higher_is_better(t)]
    if not wanted:
        return None
    archs = datamodule.archs("train")
    return RidgeRanker(datamodule.space, archs, datamodule.labels("train", wanted[0]), wanted[0])
