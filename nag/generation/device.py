"""Generation for a device from a few measurements: the most accurate architectures whose
latency on that device is, by the adapted predictor, within the budget.

1. The meta-learned predictor (:mod:`nag.hardware.meta_training`) is adapted to the device's
   table (K ``arch,latency`` rows).
2. Candidates come from any :class:`~nag.generation.Generator`, drawn in rounds
   (:func:`~nag.generation.draw.draw_until`) until enough distinct ones are predicted
   feasible, plus any pool passed in (a benchmark's architectures).
3. :func:`~nag.hardware.selection.select_for_device` keeps the best ``select`` of them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from nag.diffusion.guidance import GuidanceTerm
from nag.errors import ConfigError
from nag.generation.draw import draw_until
from nag.generation.generator import Generator
from nag.generation.request import DRAWS_PER_SELECTED, FEASIBLE_PROB
from nag.hardware.active import propose_measurements
from nag.hardware.guidance import StateLatency, latency_budget_term
from nag.hardware.predictor import AdaptedLatency, LatencyMetaPredictor, LatencyModel
from nag.hardware.selection import DeviceSelection, Scores, distinct_archs, select_for_device
from nag.hardware.tables import Budget, DeviceTable, parse_budget
from nag.spaces.base import Arch

#: Architectures suggested for measuring when fewer than asked are predicted feasible.
MEASURE_NEXT = 5


def adapt_to(predictor: LatencyMetaPredictor | LatencyModel, device: DeviceTable) -> LatencyModel:
    """``predictor`` adapted to ``device`` (an already adapted model is used as it is)."""
    if isinstance(predictor, LatencyMetaPredictor):
        return predictor.adapt(device.archs, device.latencies)
    return predictor


def generate_for_device(
    generator: Generator,
    device: DeviceTable,
    budget: float | str | Budget,
    select: int = 100,
    *,
    predictor: LatencyMetaPredictor | LatencyModel,
    accuracy: Scores | None = None,
    threshold: float = FEASIBLE_PROB,
    conditions: Mapping[str, Any] | None = None,
    seed: int = 0,
    steps: int | None = None,
    batch: int | None = None,
    max_draws: int | None = None,
    oversample: float = 3.0,
    pool: Sequence[Arch] = (),
    guidance: Sequence[GuidanceTerm] = (),
    latency_guidance: float = 0.0,
    progress: bool = False,
) -> DeviceSelection:
    """Draw from ``generator`` (``batch`` samples a round) until ``oversample * select``
    distinct drawn candidates are predicted feasible or ``max_draws`` (default ``20 * select``)
    were drawn; then the best ``select`` of them and of ``pool`` (known architectures, e.g. the
    generator's training split, that compete beside the draws without stopping them: each
    returned row says whether the generator drew it). ``predictor`` is a meta-predictor
    (adapted here to ``device``) or an adapted model.

    A generator that takes predictor guidance is steered by ``guidance`` (e.g. an accuracy
    objective) and, with ``latency_guidance > 0``, by the budget itself: the adapted model's
    hinge (:func:`~nag.hardware.guidance.latency_budget_term`) of that strength at every
    sampling step (norm ratio when the generator normalises its guidance)."""
    limit = budget if isinstance(budget, Budget) else parse_budget(budget)
    if select < 1:
        raise ConfigError(f"select={select}: ask for at least one architecture")
    if latency_guidance < 0:
        raise ConfigError(f"latency_guidance={latency_guidance}: a strength >= 0 (0 leaves the budget to the filter)")
    model = adapt_to(predictor, device)
    terms = list(guidance)
    if latency_guidance > 0:
        if not isinstance(model, AdaptedLatency):
            raise ConfigError(
                f"latency_guidance: {model.name} is not an adapted meta-predictor; pass one or set it to 0"
            )
        terms.append(latency_budget_term(StateLatency(model), limit.value, threshold, scale=latency_guidance))
    if terms and not generator.supports_guidance:
        raise ConfigError(
            f"guidance: {generator!r} takes no predictor guidance; use a score-diffusion generator or "
            "set latency_guidance to 0 (the budget then filters the samples)"
        )

    def enough(candidates: list[Arch | None]) -> bool:
        archs, _ = distinct_archs(generator.space, candidates)
        return (model.predict(archs).prob_within(limit.value) >= threshold).sum() >= oversample * select

    draws = draw_until(
        generator,
        enough,
        max_draws or DRAWS_PER_SELECTED * select,
        batch=batch or max(select, 200),
        seed=seed,
        steps=steps,
        conditions=conditions,
        guidance=terms or None,
        progress=progress,
    )
    selection = select_for_device(
        draws.archs,
        model,
        limit,
        select,
        generator.space,
        threshold=threshold,
        accuracy=accuracy,
        device=device,
        drawn=draws.drawn,
        pool=pool,
    )
    if len(selection.rows) < select:
        candidates = [*draws.archs, *pool]
        selection.measure_next = propose_measurements(
            model, candidates, limit.value, MEASURE_NEXT, generator.space, accuracy=accuracy, device=device
        )
    return selection
