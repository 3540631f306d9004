"""A generated set scored against a benchmark, as rows (written by :mod:`nag.io.writers`) and
as a terminal table."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

import torch
from torchmetrics import SumMetric

from nag.benchmarks.base import Benchmark
from nag.generation.generated_set import GeneratedSet
from nag.metrics.generation import BenchmarkTruth, Novelty, Uniqueness, Validity
from nag.report import tables
from nag.spaces.base import SearchSpace


def score_samples(
    result: GeneratedSet,
    space: SearchSpace,
    train_keys: set[str],
    benchmark: Benchmark | None,
    metrics: Sequence[str],
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """Validity (after the space's projection) and raw validity (before it), the share
    projection repaired and how many node labels and edges it changed in each, the share that
    the space's layout read otherwise than drawn (``read_by_layout``: ops after the end of a stop
    run, or the positions around a variable-size graph's output), uniqueness by
    isomorphism class (canonical key) and by string, novelty against the training split, and
    true benchmark metrics.

    Metrics live on ``device`` so that under DDP torchmetrics syncs them across ranks.
    """
    valid = result.valid
    keys = [space.key(a) for a in valid]
    validity, raw_validity = Validity().to(device), Validity().to(device)
    uniqueness, by_string, novelty = Uniqueness().to(device), Uniqueness().to(device), Novelty(train_keys).to(device)
    validity.update(torch.tensor([a is not None for a in result.archs], device=device))
    raw_validity.update(torch.tensor(result.raw_valid, dtype=torch.bool, device=device))
    uniqueness.update(keys)
    by_string.update([space.to_string(a) for a in valid])
    novelty.update(keys)
    changes, repaired = SumMetric().to(device), SumMetric().to(device)
    counted = [result.changed[i] for i in result.repaired if result.changed[i] >= 0]
    changes.update(torch.tensor(float(sum(counted)), device=device))
    repaired.update(torch.tensor(float(len(counted)), device=device))
    summary = {
        "samples": float(len(result.archs)),
        "validity": float(validity.compute()),
        "raw_validity": float(raw_validity.compute()),
        "repaired": float(validity.compute() - raw_validity.compute()),
        "repair_changes": float(changes.compute() / repaired.compute()) if float(repaired.compute()) else math.nan,
        "uniqueness": float(uniqueness.compute()),
        "uniqueness_string": float(by_string.compute()),
        "novelty": float(novelty.compute()),
    }
    if any(result.unread):
        summary["read_by_layout"] = result.read_by_layout
    for metric in metrics:
        truth = BenchmarkTruth(benchmark, metric).to(device)
        truth.update(valid)
        for name, value in truth.compute().items():
            summary[f"{metric}/{name}"] = float(value)
    result.summary = summary
    return summary


def rows_for(
    result: GeneratedSet, space: SearchSpace, benchmark: Benchmark | None, metrics: Sequence[str]
) -> list[dict[str, Any]]:
    rows = []
    for i, (arch, err) in enumerate(zip(result.archs, result.errors)):
        row: dict[str, Any] = {
            "sample": i,
            "valid": arch is not None,
            "raw_valid": result.raw_valid[i],
            "arch": space.to_string(arch) if arch is not None else "",
            "key": space.key(arch) if arch is not None else "",
            "error": err or "",
        }
        for m in metrics:
            row[m] = benchmark.query(arch, m) if arch is not None and arch in benchmark else math.nan
        rows.append(row)
    return rows


def add_predictions(
    rows: list[dict[str, Any]], result: GeneratedSet, space: SearchSpace, predictor: Any, batch_size: int = 1024
) -> list[str]:
    """Add ``predicted_<target>`` to every row (NaN for invalid samples) from a trained
    :class:`~nag.lightning_modules.predictor.PredictorModule`; returns the new column names."""
    names = [f"predicted_{t}" for t in predictor.targets]
    index = [i for i, a in enumerate(result.archs) if a is not None]
    values = torch.full((len(rows), len(names)), math.nan)
    with torch.no_grad():
        for start in range(0, len(index), batch_size):
            chunk = index[start : start + batch_size]
            x, adj, mask = (t.to(predictor.device) for t in space.encode_batch([result.archs[i] for i in chunk]))
            values[chunk] = predictor.denormalize(predictor.predict_graphs(x, adj, mask).float()).cpu()
    for row, value in zip(rows, values.tolist()):
        row.update(zip(names, value))
    return names


def format_table(
    rows: list[dict[str, Any]], metrics: Sequence[str], limit: int | None = 10, maximize: bool = True
) -> str:
    """The best ``limit`` distinct valid architectures (by the first metric's true value, when
    there is one; all of them for None): rank, how often it was sampled, predicted values
    where a predictor gave them, true metrics, architecture."""
    valid = [r for r in rows if r["valid"]]
    if metrics:
        sign = -1.0 if maximize else 1.0
        valid.sort(key=lambda r: math.inf if math.isnan(r[metrics[0]]) else sign * r[metrics[0]])
    counts = Counter(r["key"] for r in valid)
    best_of_key: dict[str, dict[str, Any]] = {}
    for r in valid:
        best_of_key.setdefault(r["key"], r)
    distinct = list(best_of_key.values())
    shown = [{**r, "rank": i, "n": counts[r["key"]]} for i, r in enumerate(distinct[:limit], start=1)]
    if not valid:
        return f"no valid architecture among {len(rows)} samples (--verbose lists why they failed)"
    predicted = [k for k in rows[0] if k.startswith("predicted_")]
    table = tables.format_table(shown, ["rank", "n", *predicted, *metrics, "arch"])
    if limit is not None and len(distinct) > limit:
        table += f"\n... {len(distinct) - limit} more distinct architectures in the output file"
    return table


def invalid_reasons(rows: list[dict[str, Any]], limit: int = 5) -> str:
    """The most common reasons samples failed to decode, with counts."""
    reasons = Counter(r["error"] for r in rows if not r["valid"])
    return "\n".join(f"{n:>6}x {reason}" for reason, n in reasons.most_common(limit))
