"""The active loop's step: which few architectures to measure next on the device, so that the
feasibility decisions that matter (promising, uncertain ones) get settled."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from nag.hardware.predictor import LatencyModel
from nag.hardware.selection import Scores, distinct_archs
from nag.hardware.tables import DeviceTable
from nag.spaces.base import Arch, SearchSpace


def propose_measurements(
    model: LatencyModel,
    candidates: Sequence[Arch | None],
    budget: float,
    k: int,
    space: SearchSpace,
    *,
    accuracy: Scores | None = None,
    device: DeviceTable | None = None,
    key: Callable[[Arch], str] | None = None,
) -> list[Arch]:
    """The ``k`` unmeasured candidates most worth measuring: feasibility uncertainty
    ``p (1 - p)`` weighted by how promising a candidate is (its predicted-accuracy percentile,
    or how often it was drawn). Measuring them settles the decisions that change what
    :func:`select_for_device` returns."""
    archs, counts = distinct_archs(space, candidates, key)
    archs_counts = [(a, c) for a, c in zip(archs, counts) if device is None or a not in device]
    if not archs_counts or k < 1:
        return []
    archs = [a for a, _ in archs_counts]
    p = model.predict(archs).prob_within(budget)
    promise = np.asarray(accuracy(archs), float) if accuracy is not None else np.array([c for _, c in archs_counts])
    percentile = (np.argsort(np.argsort(np.nan_to_num(promise, nan=-np.inf))) + 1) / len(archs)
    utility = p * (1 - p) * percentile**2
    order = np.argsort(-utility, kind="stable")[:k]
    return [archs[i] for i in order]
