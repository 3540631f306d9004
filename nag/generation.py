"""From sampled graphs to a scored, written set of architectures (shared by all generators)."""

from __future__ import annotations

import csv
import json
import math
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from nag.benchmarks.base import Benchmark
from nag.errors import ConfigError, InvalidArchitecture
from nag.metrics.generation import BenchmarkTruth, Novelty, Uniqueness, Validity
from nag.spaces.base import Arch, SearchSpace


@dataclass
class GeneratedSet:
    """Decoded samples in sampling order; invalid ones are kept as ``None`` with the reason,
    so they are counted, never silently dropped or replaced."""

    archs: list[Arch | None]
    errors: list[str | None]
    summary: dict[str, float] = field(default_factory=dict)

    @property
    def valid(self) -> list[Arch]:
        return [a for a in self.archs if a is not None]


def decode_samples(space: SearchSpace, graphs: dict[str, torch.Tensor]) -> GeneratedSet:
    archs: list[Arch | None] = []
    errors: list[str | None] = []
    for x, adj, mask in zip(graphs["x"], graphs["adj"], graphs["mask"]):
        try:
            archs.append(space.decode(x, adj, mask))
            errors.append(None)
        except InvalidArchitecture as e:
            archs.append(None)
            errors.append(str(e))
    return GeneratedSet(archs, errors)


def score_samples(result: GeneratedSet, space: SearchSpace, train_keys: set[str],
                  benchmark: Benchmark | None, metrics: Sequence[str],
                  device: torch.device | str = "cpu") -> dict[str, float]:
    """Validity, uniqueness, novelty against the training split, and true benchmark metrics.

    Metrics live on ``device`` so that under DDP torchmetrics syncs them across ranks.
    """
    valid = result.valid
    keys = [space.key(a) for a in valid]
    validity, uniqueness, novelty = Validity().to(device), Uniqueness().to(device), Novelty(train_keys).to(device)
    validity.update(torch.tensor([a is not None for a in result.archs], device=device))
    uniqueness.update(keys)
    novelty.update(keys)
    summary = {"samples": float(len(result.archs)), "validity": float(validity.compute()),
               "uniqueness": float(uniqueness.compute()), "novelty": float(novelty.compute())}
    for metric in metrics:
        truth = BenchmarkTruth(benchmark, metric).to(device)
        truth.update(valid)
        for name, value in truth.compute().items():
            summary[f"{metric}/{name}"] = float(value)
    result.summary = summary
    return summary


def rows_for(result: GeneratedSet, space: SearchSpace, benchmark: Benchmark | None,
             metrics: Sequence[str]) -> list[dict[str, Any]]:
    rows = []
    for i, (arch, err) in enumerate(zip(result.archs, result.errors)):
        row: dict[str, Any] = {"sample": i, "valid": arch is not None,
                               "arch": space.to_string(arch) if arch is not None else "",
                               "key": space.key(arch) if arch is not None else "", "error": err or ""}
        for m in metrics:
            row[m] = benchmark.query(arch, m) if arch is not None and arch in benchmark else math.nan
        rows.append(row)
    return rows


def write_rows(rows: list[dict[str, Any]], path: str | Path) -> Path:
    """CSV or JSON by suffix, written to a temporary file and renamed, so a killed run never
    leaves a half-written output behind."""
    path = Path(path)
    if path.suffix not in (".csv", ".json"):
        raise ConfigError(f"--output {str(path)!r}: expected a .csv or .json file name")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", newline="") as f:
            if path.suffix == ".json":
                json.dump(rows, f, indent=1, default=float)
            else:
                writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["sample"])
                writer.writeheader()
                writer.writerows(rows)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def format_table(rows: list[dict[str, Any]], metrics: Sequence[str], limit: int = 10) -> str:
    """The best ``limit`` valid samples (by the first metric, when there is one) as text."""
    valid = [r for r in rows if r["valid"]]
    if metrics:
        valid.sort(key=lambda r: math.inf if math.isnan(r[metrics[0]]) else -r[metrics[0]])
    lines = ["rank  " + "  ".join(f"{m:>14.14}" for m in metrics) + "  arch"]
    for rank, r in enumerate(valid[:limit], start=1):
        lines.append(f"{rank:>4}  " + "  ".join(f"{r[m]:>14.4f}" for m in metrics) + f"  {r['arch']}")
    return "\n".join(lines)
