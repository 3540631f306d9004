"""Few-shot latency prediction for a device nag has no table for.

Meta-training (:meth:`LatencyMetaPredictor.fit`): a small MLP maps architecture features
(:class:`~nag.hardware.features.ArchFeatures`) to a shared embedding ``phi``, with one linear
head per source table (every device/task latency and energy column nag has: HW-NAS-Bench's
devices x datasets, OFA's GPUs x batch sizes, NAS-Bench-Graph's datasets), trained on
standardised log values. The heads are a sample of "what a device looks like" in that
embedding: their second moment is the prior covariance of a new device's head.

Adaptation (:meth:`LatencyMetaPredictor.adapt`): from K measured ``(architecture, latency)``
pairs, closed-form Bayesian linear regression in transformed latency on ``[phi, raw
features]``: the ``phi`` block with the heads' prior, the raw blocks (op counts, occupied
positions and log FLOPs/params; declared op counts; one-hot ops and live ops) with isotropic
priors for what the source devices do not explain; the prior scales by empirical Bayes, the
noise level integrated out (Student-t predictive, :mod:`nag.hardware.bayes`). No gradient
steps at adaptation, so K = 5 cannot overfit and the interval widens as it should.

The transform is a Box-Cox power chosen by the same evidence (:data:`POWERS`; log unless
another is clearly better), because runtimes differ in how latency composes. Where ops cost a
time each that adds up (a GPU launching one kernel per op: HW-NAS-Bench's EdgeGPU is 0.87 R^2
linear in the one-hot ops, 0.81 in log space), a log-space fit bends the sum and underestimates
the large cells near a budget; where costs scale together (resolution, width), log space is
right.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from nag.errors import ConfigError
from nag.hardware.bayes import BayesLinear, Block, fit_bayes_linear, student_t_cdf, student_t_quantile
from nag.hardware.features import ArchFeatures
from nag.io.atomic import atomic_write
from nag.io.checkpoints import read_checkpoint
from nag.lightning_modules.in_loop import in_loop_fabric
from nag.spaces.base import Arch

#: Scale grids searched by empirical Bayes for the meta block and the raw-feature block.
META_SCALES = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)
RAW_SCALES = (0.0, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0)
#: Fewest measured architectures an adaptation takes.
MIN_MEASUREMENTS = 3
#: Box-Cox powers an adaptation chooses from by evidence: log (0), square root, linear (1).
POWERS = (0.0, 0.5, 1.0)
#: Log evidence (nats) another power needs over log latency, the meta-training's space, to
#: replace it: "positive" evidence by Kass & Raftery's scale. With K = 5 the powers' evidence
#: differs by noise; picking the largest anyway narrowed NB201 intervals below 0.65 coverage.
POWER_EVIDENCE = 1.0


def box_cox(y: np.ndarray | float, power: float) -> np.ndarray:
    """``log y`` at power 0, else ``(y^power - 1) / power``: monotone in ``y > 0``."""
    y = np.asarray(y, dtype=np.float64)
    return np.log(y) if power == 0 else (y**power - 1.0) / power


def inverse_box_cox(z: np.ndarray, power: float) -> np.ndarray:
    """Latency of transformed values ``z`` (0 below the transform's range: no negative latency)."""
    z = np.asarray(z, dtype=np.float64)
    return np.exp(z) if power == 0 else np.maximum(power * z + 1.0, 0.0) ** (1.0 / power)


@dataclass
class LatencyPrediction:
    """Predictive distribution of latency per architecture: ``box_cox(latency, power) ~ mean +
    scale * t`` with a Student-t of ``dof`` degrees of freedom (power 0: log latency). NaN mean:
    no prediction (e.g. a nearest device that has no value for the architecture)."""

    mean: np.ndarray
    scale: np.ndarray
    dof: float
    power: float = 0.0

    @property
    def median(self) -> np.ndarray:
        """Predicted latency (the predictive median, in the table's unit)."""
        return inverse_box_cox(self.mean, self.power)

    @property
    def std(self) -> np.ndarray:
        """Standard deviation of the latency to first order (the transform's slope at the
        median times the Student-t's spread; infinite at 2 degrees of freedom or fewer)."""
        spread = math.sqrt(self.dof / (self.dof - 2)) if self.dof > 2 else math.inf
        return self.median ** (1.0 - self.power) * self.scale * spread

    def interval(self, level: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
        """Central ``level`` predictive interval of the latency."""
        q = student_t_quantile(0.5 + level / 2, self.dof)
        return (
            inverse_box_cox(self.mean - q * self.scale, self.power),
            inverse_box_cox(self.mean + q * self.scale, self.power),
        )

    def prob_within(self, budget: float) -> np.ndarray:
        """P(latency <= budget) per architecture (0 where there is no prediction)."""
        if budget <= 0:
            return np.zeros(len(self.mean))
        with np.errstate(invalid="ignore", divide="ignore"):
            t = (float(box_cox(budget, self.power)) - self.mean) / self.scale
        p = student_t_cdf(np.nan_to_num(t, nan=-np.inf), self.dof)
        return np.where(np.isfinite(self.mean), p, 0.0)

    def __len__(self) -> int:
        return len(self.mean)


class LatencyModel(ABC):
    """What generation needs of an adapted predictor (or a baseline): predictions for any
    architectures, and how many measurements it was adapted on."""

    name: str = "latency model"
    num_measured: int = 0

    @abstractmethod
    def predict(self, archs: Sequence[Arch]) -> LatencyPrediction:
        """Predictive distribution of each architecture's latency on the device."""

    def prob_within(self, archs: Sequence[Arch], budget: float) -> np.ndarray:
        return self.predict(archs).prob_within(budget)


def check_measurements(
    archs: Sequence[Arch], latencies: Sequence[float], minimum: int = MIN_MEASUREMENTS
) -> np.ndarray:
    """Latencies as a float array, refusing too few, mismatched or non-positive values."""
    y = np.asarray(latencies, dtype=np.float64)
    if len(archs) != len(y):
        raise ConfigError(f"adapt: {len(archs)} architectures but {len(y)} latencies; pass one latency each")
    if len(y) < minimum:
        raise ConfigError(f"adapt: {len(y)} measured architectures; measure at least {minimum}")
    if not np.all(np.isfinite(y) & (y > 0)):
        raise ConfigError("adapt: latencies must be positive finite numbers")
    return y


class AdaptedLatency(LatencyModel):
    """A meta-learned predictor adapted to one device (see :meth:`LatencyMetaPredictor.adapt`)."""

    name = "adapted"

    def __init__(
        self, meta: LatencyMetaPredictor, model: BayesLinear, num_measured: int, raw: bool, power: float = 0.0
    ) -> None:
        self.meta, self.model, self.num_measured, self.raw, self.power = meta, model, num_measured, raw, power

    def predict(self, archs: Sequence[Arch]) -> LatencyPrediction:
        if not len(archs):
            return LatencyPrediction(np.zeros(0), np.zeros(0), self.model.dof, self.power)
        mean, scale = self.model.predict(self.meta.design(archs, self.raw))
        return LatencyPrediction(mean, scale, self.model.dof, self.power)

    def __repr__(self) -> str:
        return f"AdaptedLatency(K={self.num_measured}, power={self.power:g}, prior scales={self.model.scales})"


class _Net(nn.Module):
    def __init__(self, inputs: int, hidden: int, dim: int, heads: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Linear(inputs, hidden),
            nn.SiLU(),
            nn.Linear(hidden, hidden),
            nn.SiLU(),
            nn.Linear(hidden, dim),
            nn.SiLU(),
        )
        self.heads = nn.Linear(dim, heads)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.heads(self.body(x))


class LatencyMetaPredictor:
    """Meta-learned latency feature map over source tables; :meth:`adapt` to a new device.

    ``features`` describes architectures (fitted on the meta-training pool); the MLP has two
    hidden layers of ``hidden`` units and a ``dim``-wide embedding; training runs ``steps``
    AdamW steps on batches of ``batch_size`` rows from at most ``max_rows`` architectures
    (seeded, single process, CPU).
    """

    def __init__(
        self,
        features: ArchFeatures,
        hidden: int = 128,
        dim: int = 32,
        steps: int = 360,
        batch_size: int = 1024,
        lr: float = 3e-3,
        weight_decay: float = 1e-4,
        max_rows: int = 6000,
        seed: int = 0,
    ) -> None:
        self.features = features
        self.space = features.space
        self.hidden, self.dim, self.steps, self.batch_size = hidden, dim, steps, batch_size
        self.lr, self.weight_decay, self.max_rows, self.seed = lr, weight_decay, max_rows, seed
        self.net: _Net | None = None
        self.sources: list[str] = []
        self.train_loss = math.nan

    # --- meta-training --------------------------------------------------------------
    def fit(self, archs: Sequence[Arch], sources: Mapping[str, np.ndarray]) -> LatencyMetaPredictor:
        """Train on ``sources``: name -> values aligned with ``archs`` (positive; NaN, zero or
        negative = not measured)."""
        if not sources:
            raise ConfigError("LatencyMetaPredictor.fit: no source tables; pass at least one latency column")
        archs = list(archs)
        values = np.stack([np.asarray(v, dtype=np.float64) for v in sources.values()], axis=1)
        if values.shape[0] != len(archs):
            raise ConfigError(f"LatencyMetaPredictor.fit: {len(archs)} architectures but {values.shape[0]} rows")
        with np.errstate(invalid="ignore", divide="ignore"):
            logs = np.where(values > 0, np.log(np.where(values > 0, values, 1.0)), np.nan)
        rng = np.random.default_rng(self.seed)
        rows = rng.permutation(len(archs))[: self.max_rows]
        pool = [archs[i] for i in rows]
        self.features.fit(pool)
        x = self.features.transform(pool)
        y = logs[rows]
        mean, std = np.nanmean(y, axis=0), np.nanstd(y, axis=0)
        std = np.where(std > 1e-9, std, 1.0)
        target = (y - mean) / std
        self.sources = list(sources)
        self._train(x, target)
        self._prepare_prior(x)
        return self

    def _train(self, x: np.ndarray, y: np.ndarray) -> None:
        xt = torch.as_tensor(x, dtype=torch.float32)
        yt = torch.as_tensor(y, dtype=torch.float32)
        mask = ~torch.isnan(yt)
        yt = torch.nan_to_num(yt)
        threads = torch.get_num_threads()
        # a model this small runs fastest on one thread; more only add synchronisation (and on a
        # busy machine, waiting): 360 steps take seconds on one core
        torch.set_num_threads(1)
        try:
            self._steps(xt, yt, mask)
        finally:
            torch.set_num_threads(threads)

    def _steps(self, xt: torch.Tensor, yt: torch.Tensor, mask: torch.Tensor) -> None:
        with in_loop_fabric(seed=self.seed) as fabric:
            net = _Net(xt.shape[1], self.hidden, self.dim, yt.shape[1])
            gen = torch.Generator().manual_seed(self.seed)
            opt = torch.optim.AdamW(net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
            sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=self.lr, total_steps=self.steps)
            model, opt = fabric.setup(net, opt)
            n = len(xt)
            perm, at = torch.randperm(n, generator=gen), 0
            for _ in range(self.steps):
                if at >= n:
                    perm, at = torch.randperm(n, generator=gen), 0
                idx = perm[at : at + self.batch_size]
                at += self.batch_size
                m = mask[idx]
                loss = (((model(xt[idx]) - yt[idx]) ** 2) * m).sum() / m.sum().clamp(min=1)
                opt.zero_grad()
                fabric.backward(loss)
                opt.step()
                sched.step()
        net.eval()
        self.net = net
        self.train_loss = float(loss.detach())

    def _prepare_prior(self, x: np.ndarray) -> None:
        """Centre the embedding on the pool and scale the heads' second moment so that a
        typical head explains unit variance (the adaptation's standardised units)."""
        phi = self._phi(x)
        self.phi_mean = phi.mean(axis=0)
        centred = phi - self.phi_mean
        w = self.net.heads.weight.detach().double().numpy()
        cov = w.T @ w / len(w)
        explained = float(np.einsum("ij,jk,ik->i", centred, cov, centred).mean())
        self.head_cov = cov / max(explained, 1e-12)

    def _phi(self, x: np.ndarray) -> np.ndarray:
        if self.net is None:
            raise ConfigError("LatencyMetaPredictor: fit (or load) it before use")
        with torch.no_grad():
            return self.net.body(torch.as_tensor(x, dtype=torch.float32)).double().numpy()

    def embed(self, archs: Sequence[Arch]) -> np.ndarray:
        """Centred embedding ``phi`` ``[n, dim]``."""
        return self._phi(self.features.transform(archs)) - self.phi_mean

    def design(self, archs: Sequence[Arch], raw: bool = True) -> np.ndarray:
        """Regression features: ``[phi, raw features]`` (``phi`` only without ``raw``)."""
        x = self.features.transform(archs)
        phi = self._phi(x) - self.phi_mean
        return np.concatenate([phi, x], axis=1) if raw else phi

    def predict_sources(self, archs: Sequence[Arch]) -> dict[str, np.ndarray]:
        """The heads' predictions of each source table (standardised log units)."""
        with torch.no_grad():
            out = self.net(torch.as_tensor(self.features.transform(archs), dtype=torch.float32)).numpy()
        return {name: out[:, j] for j, name in enumerate(self.sources)}

    # --- adaptation -----------------------------------------------------------------
    def blocks(self, raw: bool = True) -> list[Block]:
        """Prior blocks: the embedding with the heads' covariance; with ``raw``, the op counts,
        costs and occupied positions (few, physical: latency grows with FLOPs and conv counts),
        the declared op counts (devices that run dead ops too) and the one-hot encodings, each
        isotropic with its own scale."""
        blocks = [Block(np.arange(self.dim), self.head_cov, META_SCALES)]
        if raw:
            groups = self.features.groups
            physical = np.concatenate([groups.get(g, []) for g in ("counts", "costs", "present")]).astype(np.int64)
            declared = np.asarray(groups.get("declared", []), dtype=np.int64)
            rest = np.setdiff1d(np.arange(self.features.dim), np.concatenate([physical, declared]))
            blocks += [
                Block(self.dim + cols, np.eye(len(cols)) / len(cols), RAW_SCALES)
                for cols in (physical, declared, rest)
                if len(cols)
            ]
        return blocks

    def adapt(
        self, archs: Sequence[Arch], latencies: Sequence[float], raw: bool = True, powers: Sequence[float] = POWERS
    ) -> AdaptedLatency:
        """The predictor for a device from its measured ``(archs, latencies)`` (any unit; the
        predictions come back in it). ``raw=False`` restricts the fit to the meta-learned
        embedding. The Box-Cox power of ``powers`` whose fit has the highest marginal
        likelihood of the latencies themselves (the transform's Jacobian included) is kept
        where it beats log latency's by :data:`POWER_EVIDENCE`."""
        y = check_measurements(archs, latencies)
        design, blocks = self.design(archs, raw), self.blocks(raw)
        fits = {p: fit_bayes_linear(design, box_cox(y, p), blocks) for p in powers}

        def evidence(p: float) -> float:  # of y, not of its transform: comparable across powers
            fit = fits[p]
            return fit.evidence - len(y) * math.log(fit.y_scale) + (p - 1.0) * float(np.log(y).sum())

        power = max(fits, key=evidence)
        if 0.0 in fits and evidence(power) - evidence(0.0) <= POWER_EVIDENCE:
            power = 0.0
        return AdaptedLatency(self, fits[power], len(y), raw, power)

    # --- files ----------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Weights and settings in a weights-only torch file (tensors, numbers, strings)."""
        if self.net is None:
            raise ConfigError("LatencyMetaPredictor.save: nothing trained yet")
        state = {
            "kind": "nag.hardware.LatencyMetaPredictor",
            "space": self.space.identity,
            "settings": {
                "hidden": self.hidden,
                "dim": self.dim,
                "steps": self.steps,
                "batch_size": self.batch_size,
                "lr": self.lr,
                "weight_decay": self.weight_decay,
                "max_rows": self.max_rows,
                "seed": self.seed,
            },
            "sources": list(self.sources),
            "features": self.features.state(),
            "net": self.net.state_dict(),
            "phi_mean": torch.as_tensor(self.phi_mean),
            "head_cov": torch.as_tensor(self.head_cov),
        }
        path = Path(path)
        with atomic_write(path, "wb") as f:
            torch.save(state, f)
        return path

    @classmethod
    def load(cls, path: str | Path, features: ArchFeatures) -> LatencyMetaPredictor:
        """A predictor saved by :meth:`save`; ``features`` must describe the same space (and
        give the same cost columns) as when it was trained."""
        state = read_checkpoint(path)
        if not isinstance(state, dict) or state.get("kind") != "nag.hardware.LatencyMetaPredictor":
            raise ConfigError(f"{path}: not a latency meta-predictor file (written by LatencyMetaPredictor.save)")
        if state["space"] != features.space.identity:
            raise ConfigError(
                f"{path}: trained on space {state['space']}, not {features.space.identity}; "
                "meta-train one on this space's tables"
            )
        expected = state["features"].get("costs")
        given = getattr(features.costs, "columns", None) if features.costs is not None else None
        if expected != given:
            raise ConfigError(f"{path}: trained with cost columns {expected}, got {given}; pass the same costs")
        meta = cls(features, **state["settings"])
        features.load_state(state["features"])
        meta.net = _Net(features.dim, meta.hidden, meta.dim, len(state["sources"]))
        meta.net.load_state_dict(state["net"])
        meta.net.eval()
        meta.sources = list(state["sources"])
        meta.phi_mean = state["phi_mean"].numpy()
        meta.head_cov = state["head_cov"].numpy()
        return meta

    def __repr__(self) -> str:
        return f"LatencyMetaPredictor({self.space!r}, {len(self.sources)} source tables, dim={self.dim})"
