"""What a few-shot latency predictor must beat, with the same predictive interface.

* :class:`CostFit` -- log latency linear in log FLOPs (or any one cost), fitted on the K
  measured points: "latency is proportional to FLOPs", the usual proxy;
* :class:`NearestDevice` -- the known device whose latencies rank the K measured points best,
  mapped to the new device by a linear fit in log space (HELP's "closest device" baseline).
  It predicts only architectures the known tables hold.

Both fit the same Bayesian linear model as the adapted predictor, so their intervals are
comparable.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from nag.errors import ConfigError
from nag.hardware.bayes import Block, fit_bayes_linear, spearman
from nag.hardware.predictor import LatencyModel, LatencyPrediction, check_measurements
from nag.spaces.base import Arch

_SCALES = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0)


def _log_positive(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(values > 0, np.log(np.where(values > 0, values, 1.0)), np.nan)


class _OneFeatureFit(LatencyModel):
    """Bayesian linear fit of log latency on one standardised log feature."""

    def __init__(self, feature: Callable[[Sequence[Arch]], np.ndarray], archs: Sequence[Arch], y: np.ndarray) -> None:
        x = _log_positive(feature(archs))
        keep = np.isfinite(x)
        if keep.sum() < 2:
            raise ConfigError(f"{self.name}: fewer than 2 measured architectures have the feature")
        self.feature, self.center, self.spread = feature, float(x[keep].mean()), float(x[keep].std() or 1.0)
        z = ((x[keep] - self.center) / self.spread)[:, None]
        self.model = fit_bayes_linear(z, np.log(y[keep]), [Block(np.array([0]), np.eye(1), _SCALES)])
        self.num_measured = len(y)

    def predict(self, archs: Sequence[Arch]) -> LatencyPrediction:
        x = _log_positive(self.feature(archs)) if len(archs) else np.zeros(0)
        z = ((np.nan_to_num(x) - self.center) / self.spread)[:, None]
        mean, scale = self.model.predict(z)
        mean = np.where(np.isfinite(x), mean, np.nan)
        return LatencyPrediction(mean, scale, self.model.dof)


class CostFit:
    """Latency from one cost (FLOPs by default): ``cost(archs) -> [n]`` positive values."""

    def __init__(self, cost: Callable[[Sequence[Arch]], np.ndarray], name: str = "flops") -> None:
        self.cost, self.name = cost, name

    def adapt(self, archs: Sequence[Arch], latencies: Sequence[float]) -> LatencyModel:
        y = check_measurements(archs, latencies)
        model = _OneFeatureFit(self.cost, archs, y)
        model.name = self.name
        return model


class NearestDevice:
    """The known device closest to the new one on the K measured points.

    ``lookup(archs) -> [n, S]`` gives the known devices' latencies (NaN where a table lacks
    an architecture); ``names`` labels its columns. :meth:`adapt` picks the column with the
    highest Spearman correlation to the measurements and fits ``log y = a + b log x``.
    """

    name = "nearest device"

    def __init__(self, lookup: Callable[[Sequence[Arch]], np.ndarray], names: Sequence[str]) -> None:
        self.lookup, self.names = lookup, list(names)

    @classmethod
    def from_columns(cls, archs: Sequence[Arch], columns: Mapping[str, np.ndarray], key=None) -> NearestDevice:
        """Over a table: ``columns`` name -> values aligned with ``archs`` (``key`` maps an
        architecture to its row identity; the architecture itself by default)."""
        key = key or (lambda a: a)
        index = {key(a): i for i, a in enumerate(archs)}
        matrix = np.stack([np.asarray(v, dtype=np.float64) for v in columns.values()], axis=1)

        def lookup(query: Sequence[Arch]) -> np.ndarray:
            rows = [index.get(key(a), -1) for a in query]
            out = np.full((len(rows), matrix.shape[1]), np.nan)
            found = np.asarray(rows) >= 0
            if found.any():
                out[found] = matrix[np.asarray(rows)[found]]
            return out

        return cls(lookup, list(columns))

    def adapt(self, archs: Sequence[Arch], latencies: Sequence[float]) -> LatencyModel:
        y = check_measurements(archs, latencies)
        logs = _log_positive(self.lookup(archs))
        scores = [spearman(logs[:, j], y) for j in range(logs.shape[1])]
        if all(np.isnan(s) for s in scores):
            raise ConfigError("nearest device: no known device measured enough of these architectures")
        best = int(np.nanargmax(scores))
        model = _OneFeatureFit(lambda a: self.lookup(a)[:, best], archs, y)
        model.name = self.name
        model.device, model.device_spearman = self.names[best], scores[best]
        return model
