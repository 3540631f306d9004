"""Generation for a device from a few measurements: the most accurate architectures whose
latency on that device is, by the adapted predictor, within the budget.

1. The meta-learned predictor is adapted to the device's table (K ``arch,latency`` rows).
2. Candidates come from any :class:`~nag.generation.Generator` (a trained checkpoint's
   ``nag.load_generator``, or ``UniformRandom``), drawn in rounds until enough distinct ones
   are predicted feasible, plus any pool passed in (a benchmark's architectures).
3. A candidate is *predicted feasible* when ``P(latency <= budget) >= threshold`` under the
   predictive distribution; a measured one is feasible when its measurement is within the
   budget. Feasible candidates are ranked by predicted accuracy (a callable, e.g. a trained
   predictor via :func:`predictor_scores`) or, without one, by how often the generator drew
   them, and the best ``num_samples`` distinct ones are returned as rows with the predicted
   latency, its spread and interval, the feasibility probability and the measured latency
   where the table has it.

:func:`propose_measurements` is the active loop's step: which few architectures to measure
next so that the feasibility decisions that matter (promising, uncertain ones) get settled.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nag.benchmarks.base import Benchmark
from nag.diffusion.guidance import GuidanceTerm
from nag.errors import ConfigError
from nag.generation.generator import Generator
from nag.hardware.bayes import spearman
from nag.hardware.features import ArchFeatures, TableCosts
from nag.hardware.guidance import LATENCY_GUIDANCE, StateLatency, latency_budget_term
from nag.hardware.predictor import AdaptedLatency, LatencyMetaPredictor, LatencyModel
from nag.hardware.sources import cost_columns, source_values
from nag.hardware.tables import Budget, DeviceTable, parse_budget, read_device_table
from nag.io.writers import check_output, write_rows
from nag.report.tables import format_table
from nag.spaces.base import Arch, SearchSpace

Scores = Callable[[Sequence[Arch]], np.ndarray]


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

    @property
    def summary(self) -> dict[str, float]:
        return {
            "selected": float(len(self.rows)),
            "drawn": float(self.drawn),
            "distinct_candidates": float(self.distinct),
            "predicted_feasible": float(self.feasible),
            "measured_selected": float(sum(r["measured"] for r in self.rows)),
            "budget": self.budget,
            "threshold": self.threshold,
        }


def _distinct(
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
    threshold: float = 0.9,
    accuracy: Scores | None = None,
    device: DeviceTable | None = None,
    drawn: int | None = None,
    key: Callable[[Arch], str] | None = None,
    expected_share: float | None = None,
) -> DeviceSelection:
    """The best ``num_samples`` distinct predicted-feasible candidates (see the module
    docstring); ``device``'s measurements override predictions for the architectures it has.
    ``key`` (default ``space.key``) says which candidates are the same architecture.

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
    archs, counts = _distinct(space, candidates, key)
    prediction = model.predict(archs)
    p = prediction.prob_within(limit)
    low, high = prediction.interval(0.9)
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
    dof = prediction.dof
    spread = math.sqrt(dof / (dof - 2)) if dof > 2 else math.inf
    rows = []
    for rank, i in enumerate(chosen, start=1):
        median = float(prediction.median[i])
        row = {
            "rank": rank,
            "arch": space.to_string(archs[i]),
            "times_sampled": counts[i],
            "predicted_latency": median,
            "latency_std": median * float(prediction.log_scale[i]) * spread,
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
        drawn=len([a for a in candidates if a is not None]) if drawn is None else drawn,
        distinct=len(archs),
        feasible=len(feasible),
        measured_feasible=int((known & (p >= threshold)).sum()),
        model=getattr(model, "name", type(model).__name__),
        archs=[archs[i] for i in chosen],
    )


def adapt_to(predictor: LatencyMetaPredictor | LatencyModel, device: DeviceTable) -> LatencyModel:
    """``predictor`` adapted to ``device`` (an already adapted model is used as it is)."""
    if isinstance(predictor, LatencyMetaPredictor):
        return predictor.adapt(device.archs, device.latencies)
    return predictor


def generate_for_device(
    generator: Generator,
    device: DeviceTable,
    budget: float | str | Budget,
    num_samples: int = 100,
    *,
    predictor: LatencyMetaPredictor | LatencyModel,
    accuracy: Scores | None = None,
    threshold: float = 0.9,
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
    """Draw from ``generator`` (seeds ``seed, seed + 1, ...``, ``batch`` samples a round)
    until ``oversample * num_samples`` distinct candidates are predicted feasible or
    ``max_draws`` (default ``20 * num_samples``) were drawn; then :func:`select_for_device`
    over them and ``pool``. ``predictor`` is a meta-predictor (adapted here to ``device``) or
    an adapted model.

    A generator that takes predictor guidance is steered by ``guidance`` (e.g. an accuracy
    objective) and, with ``latency_guidance > 0``, by the budget itself: the adapted model's
    hinge (:func:`~nag.hardware.guidance.latency_budget_term`) of that strength at every
    sampling step (norm ratio when the generator normalises its guidance)."""
    limit = budget if isinstance(budget, Budget) else parse_budget(budget)
    if num_samples < 1:
        raise ConfigError(f"num_samples={num_samples}: ask for at least one architecture")
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
    batch = batch or max(num_samples, 200)
    max_draws = max_draws or 20 * num_samples
    candidates: list[Arch | None] = list(pool)
    drawn, round_seed = 0, seed
    while drawn < max_draws:
        n = min(batch, max_draws - drawn)
        result = generator.sample(
            n, seed=round_seed, steps=steps, conditions=conditions, guidance=terms or None, progress=progress
        )
        candidates += result.archs
        drawn += n
        round_seed += 1
        archs, _ = _distinct(generator.space, [a for a in candidates if a is not None])
        if (model.predict(archs).prob_within(limit.value) >= threshold).sum() >= oversample * num_samples:
            break
    return select_for_device(
        candidates,
        model,
        limit,
        num_samples,
        generator.space,
        threshold=threshold,
        accuracy=accuracy,
        device=device,
        drawn=drawn,
    )


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
    archs, counts = _distinct(space, candidates, key)
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


# --- conditions from a known device ------------------------------------------------------


def condition_for_budget(
    device: DeviceTable, benchmark: Benchmark, metric: str, budget: float
) -> tuple[float, float] | None:
    """The value of a known device's ``metric`` that corresponds to ``budget`` on the new
    device, by a log-log line through the measured architectures the benchmark also has, and
    how well that device ranks them (Spearman). None with fewer than 3 shared ones."""
    values = benchmark.column(metric)
    pairs = [(values[benchmark.index(a)], y) for a, y in zip(device.archs, device.latencies) if a in benchmark]
    pairs = [(x, y) for x, y in pairs if x > 0]
    if len(pairs) < 3:
        return None
    x, y = np.log(np.array(pairs)).T
    slope, intercept = np.polyfit(x, y, 1)
    if slope <= 0:
        return None
    return float(np.exp((math.log(budget) - intercept) / slope)), spearman(x, y)


# --- predicted accuracy from a trained predictor --------------------------------------------


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


# --- meta-training on a benchmark's device tables -------------------------------------------


def default_costs(benchmark: Benchmark) -> TableCosts | None:
    """FLOPs and parameter columns of ``benchmark`` (the first of each), as cost features."""
    flops = [m for m in benchmark.metrics if "flops" in m.lower()]
    params = [m for m in benchmark.metrics if "params" in m.lower() or m == "para"]
    columns = [c for c in (flops[:1] + params[:1]) if np.isfinite(benchmark.column(c)).any()]
    return TableCosts(benchmark, columns) if columns else None


def meta_train(
    benchmark: Benchmark,
    sources: Sequence[str] | None = None,
    costs: TableCosts | str | None = "default",
    seed: int = 0,
    **settings: Any,
) -> LatencyMetaPredictor:
    """A :class:`LatencyMetaPredictor` meta-trained on ``benchmark``'s device-cost columns
    (``sources``, default all of :func:`~nag.hardware.sources.cost_columns`)."""
    sources = list(sources) if sources is not None else cost_columns(benchmark)
    if not sources:
        raise ConfigError(
            f"{type(benchmark).__name__} has no latency or energy columns to meta-train a device predictor on; "
            "use a benchmark with device tables (NB201's HW-NAS-Bench columns, OFA latency, NAS-Bench-Graph)"
        )
    costs = default_costs(benchmark) if costs == "default" else costs
    meta = LatencyMetaPredictor(ArchFeatures(benchmark.space, costs), seed=seed, **settings)
    return meta.fit(benchmark.archs(), source_values(benchmark, sources))


# --- `nag generate --device_table ... --budget ...` ------------------------------------------

SHOWN = ("rank", "predicted_latency", "latency_std", "p_within_budget", "measured_latency")


def generate_for_device_table(
    generator: Generator,
    benchmark: Benchmark | None,
    device_table: str | Path | None,
    budget: str | None,
    num_samples: int,
    output: str,
    *,
    seed: int = 0,
    steps: int | None = None,
    conditions: Mapping[str, Any] | None = None,
    predictor: Any = None,
    threshold: float = 0.9,
    metrics: Sequence[str] = (),
    min_rows: int = 10,
    guidance: Sequence[GuidanceTerm] = (),
    latency_guidance: float | None = None,
    show: int | None = 10,
    quiet: bool = False,
    write: bool = True,
) -> dict[str, float]:
    """What ``nag generate --device_table T --budget "latency<=B"`` runs: meta-train on the
    config's benchmark device tables, adapt to ``T``, generate ``num_samples`` distinct
    predicted-feasible architectures ranked by ``predictor``'s first target (a trained
    predictor module; without one, by how often they were drawn), write ``output`` with the
    predicted latency, its uncertainty and the measured value where ``T`` has it, and the true
    ``metrics`` where the benchmark has them. A generator that takes predictor guidance follows
    ``guidance`` and the budget's hinge of strength ``latency_guidance`` (default
    :data:`~nag.hardware.guidance.LATENCY_GUIDANCE` for such a generator, 0 for others)."""
    if device_table is None or budget is None:
        raise ConfigError(
            "--device_table and --budget go together: pass the CSV measured on your device and a budget "
            "such as --budget 'latency<=5.0'"
        )
    check_output(output)
    limit = parse_budget(budget)
    if benchmark is None:
        raise ConfigError("--device_table: the config's data has no benchmark with device tables to meta-train on")
    space = generator.space
    device = read_device_table(device_table, space, min_rows=min_rows)
    meta = meta_train(benchmark, seed=seed)
    model = meta.adapt(device.archs, device.latencies)
    accuracy = predictor_scores(predictor, space) if predictor is not None else None
    if latency_guidance is None:
        latency_guidance = LATENCY_GUIDANCE if generator.supports_guidance and space.fixed_topology else 0.0
    selection = generate_for_device(
        generator,
        device,
        limit,
        num_samples,
        predictor=model,
        accuracy=accuracy,
        threshold=threshold,
        conditions=conditions,
        seed=seed,
        steps=steps,
        guidance=guidance,
        latency_guidance=latency_guidance,
    )
    for row, arch in zip(selection.rows, selection.archs):
        for m in metrics:
            row[m] = benchmark.query(arch, m) if arch in benchmark else math.nan
    if write:
        write_rows(selection.rows or [{"rank": math.nan}], output)
    if not quiet:
        columns = [*SHOWN[:2], "latency_std", "p_within_budget"]
        if accuracy is not None:
            columns.append("predicted_accuracy")
        columns += ["measured_latency", *metrics, "arch"]
        print(
            f"device table {device.path} ({len(device)} measured); meta-trained on "
            f"{len(meta.sources)} {type(benchmark).__name__} device tables; budget {limit}; "
            f"feasible = P(latency <= {limit.value:g}) >= {threshold:g}"
            + (f"; the budget guides sampling (strength {latency_guidance:g})" if latency_guidance > 0 else "")
        )
        print(format_table(selection.rows[:show] if show is not None else selection.rows, columns))
        summary = selection.summary
        print("  ".join(f"{k}={v:.4g}" for k, v in summary.items()))
        if write:
            print(f"wrote {len(selection.rows)} rows to {output}")
    if len(selection.rows) < num_samples and not quiet:
        print(
            f"only {len(selection.rows)} of {num_samples} distinct architectures are predicted within "
            f"{limit} with probability >= {threshold:g}; raise the budget, lower the threshold or measure more"
        )
    return selection.summary
