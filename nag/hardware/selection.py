"""Which architectures a device gets: the best distinct candidates its adapted latency
predictor says are within the budget.

A candidate is *predicted feasible* when ``P(latency <= budget) >= threshold`` under the
predictive distribution; a measured one is feasible when its measurement is within the budget.
Feasible candidates are ranked by predicted accuracy (a callable, e.g. a trained predictor via
:func:`predictor_scores`) or, without one, by how often the generator drew them.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from nag.errors import ConfigError
from nag.hardware.predictor import LatencyModel
from nag.hardware.tables import Budget, DeviceTable
from nag.spaces.base import Arch, SearchSpace

Scores = Callable[[Sequence[Arch]], np.ndarray]
#: The columns of a selected row, in order (``predicted_accuracy`` after ``p_within_budget``
#: when an accuracy ranked them): what an empty selection's file still names.
SELECTION_COLUMNS = (
    "rank",
    "arch",
    "times_sampled",
    "predicted_latency",
    "latency_std",
    "latency_low90",
    "latency_high90",
    "p_within_budget",
    "measured_latency",
    "measured",
)


@dataclass
class DeviceSelection:
    """Rows of the selected architectures (best first) and what it took to find them."""

    rows: list[dict[str, Any]]
    budget: float
    threshold: float
    drawn: int = 0
    distinct: int = 0
    feasible: int = 0
    measured_feasible: int = 0
    model: str = ""
    archs: list[Arch] = field(default_factory=list)
    #: Where fewer than asked came back: the unmeasured candidates whose measurement would most
    #: change what is returned (:func:`~nag.hardware.active.propose_measurements`).
    measure_next: list[Arch] = field(default_factory=list)

    @property
    def summary(self) -> dict[str, float]:
        return {
            "selected": float(len(self.rows)),
            "drawn": float(self.drawn),
            "distinct_candidates": float(self.distinct),
            "predicted_feasible": float(self.feasible),
            "measured_selected": float(sum(r["measured"] for r in self.rows)),
            "generated_selected": float(sum(r["times_sampled"] > 0 for r in self.rows)),
            "budget": self.budget,
            "threshold": self.threshold,
        }


def distinct_archs(
    space: SearchSpace, candidates: Sequence[Arch | None], key: Callable[[Arch], str] | None = None
) -> tuple[list[Arch], list[int]]:
    """First occurrence of each isomorphism class (canonical key) and how often it came."""
    key_of = key or space.key
    counts: Counter[str] = Counter()
    first: dict[str, Arch] = {}
    for arch in candidates:
        if arch is None:
            continue
        key = key_of(arch)
        counts[key] += 1
        first.setdefault(key, arch)
    return list(first.values()), [counts[k] for k in first]


def select_for_device(
    candidates: Sequence[Arch | None],
    model: LatencyModel,
    budget: float | Budget,
    num_samples: int,
    space: SearchSpace,
    *,
    threshold: float,
    accuracy: Scores | None = None,
    device: DeviceTable | None = None,
    drawn: int | None = None,
    key: Callable[[Arch], str] | None = None,
    expected_share: float | None = None,
    pool: Sequence[Arch] = (),
) -> DeviceSelection:
    """The best ``num_samples`` distinct predicted-feasible candidates (see the module
    docstring); ``device``'s measurements override predictions for the architectures it has.
    ``key`` (default ``space.key``) says which candidates are the same architecture.
    ``pool``: known architectures that compete beside the drawn ``candidates`` (their rows'
    ``times_sampled`` counts draws only, so 0 says an architecture came from the pool alone).

    With ``expected_share`` the guarantee is about the set, not each member: candidates with
    ``P(latency <= budget) >= threshold`` (then a floor, e.g. 0.5) are taken in ranking order
    as long as the mean probability of the selected set stays at least ``expected_share``, so
    a promising candidate near the budget can join when surer ones balance it: the expected
    share of the returned architectures within the budget is ``expected_share``."""
    if num_samples < 1:
        raise ConfigError(f"num_samples={num_samples}: ask for at least one architecture")
    if not 0.0 < threshold < 1.0:
        raise ConfigError(f"threshold={threshold}: the feasibility probability must be in (0, 1), e.g. 0.9")
    limit = budget.value if isinstance(budget, Budget) else float(budget)
    key_of = key or space.key
    sampled = [a for a in candidates if a is not None]
    drawn_keys = [key_of(a) for a in sampled]  # canonical keys are costly: one per architecture
    first: dict[str, Arch] = {}
    for k, arch in zip([*drawn_keys, *map(key_of, pool)], [*sampled, *pool]):
        first.setdefault(k, arch)
    drawn_counts = Counter(drawn_keys)
    archs, counts = list(first.values()), [drawn_counts[k] for k in first]
    prediction = model.predict(archs)
    p = prediction.prob_within(limit)
    low, high = prediction.interval(0.9)
    std = prediction.std
    measured = np.array([device.measured(a) if device is not None else math.nan for a in archs])
    known = np.isfinite(measured)
    p = np.where(known, (measured <= limit).astype(float), p)
    feasible = np.flatnonzero(p >= threshold)
    scores = None
    if accuracy is not None and len(feasible):
        scores = np.full(len(archs), -np.inf)
        scores[feasible] = np.nan_to_num(np.asarray(accuracy([archs[i] for i in feasible]), float), nan=-np.inf)
        order = sorted(feasible, key=lambda i: (-scores[i], -counts[i], i))
    else:
        order = sorted(feasible, key=lambda i: (-counts[i], i))
    if expected_share is None:
        chosen = order[:num_samples]
    else:
        if not 0.0 < expected_share <= 1.0:
            raise ConfigError(f"expected_share={expected_share}: a share in (0, 1], e.g. 0.9")
        chosen, total = [], 0.0
        for i in order:
            if (total + p[i]) / (len(chosen) + 1) >= expected_share:
                chosen.append(i)
                total += p[i]
                if len(chosen) == num_samples:
                    break
    rows = []
    for rank, i in enumerate(chosen, start=1):
        median = float(prediction.median[i])
        row = {
            "rank": rank,
            "arch": space.to_string(archs[i]),
            "times_sampled": counts[i],
            "predicted_latency": median,
            "latency_std": float(std[i]),
            "latency_low90": float(low[i]),
            "latency_high90": float(high[i]),
            "p_within_budget": float(p[i]),
        }
        if scores is not None:
            row["predicted_accuracy"] = float(scores[i])
        row["measured_latency"] = float(measured[i])
        row["measured"] = bool(known[i])
        rows.append(row)
    return DeviceSelection(
        rows,
        limit,
        threshold,
        drawn=len(drawn_keys) if drawn is None else drawn,
        distinct=len(archs),
        feasible=len(feasible),
        measured_feasible=int((known & (p >= threshold)).sum()),
        model=getattr(model, "name", type(model).__name__),
        archs=[archs[i] for i in chosen],
    )


def predictor_scores(predictor: Any, space: SearchSpace, target: str | None = None, batch_size: int = 1024) -> Scores:
    """Predicted ``target`` (default: its first) of a trained predictor module (anything with
    ``targets``, ``predict_graphs`` and ``denormalize``, e.g. ``PredictorModule``), as a
    scoring function for :func:`select_for_device`."""
    targets = list(predictor.targets)
    column = targets.index(target) if target is not None else 0

    def scores(archs: Sequence[Arch]) -> np.ndarray:
        out = []
        with torch.no_grad():
            for start in range(0, len(archs), batch_size):
                x, adj, mask = (t.to(predictor.device) for t in space.encode_batch(archs[start : start + batch_size]))
                out.append(predictor.denormalize(predictor.predict_graphs(x, adj, mask).float()).cpu()[:, column])
        values = torch.cat(out).numpy() if out else np.zeros(0)
        return values if predictor_higher_is_better(targets[column]) else -values

    return scores


def predictor_higher_is_better(target: str) -> bool:
    return not any(word in target for word in ("latency", "energy", "params", "flops"))
