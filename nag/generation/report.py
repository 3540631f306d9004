"""What ``nag generate`` writes and prints: every sample as a row, the best in the terminal,
and the summary beside uniform random samples drawn with the same seed."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nag.benchmarks.base import Benchmark
from nag.generation.baseline import UniformRandom, format_comparison
from nag.generation.generated_set import GeneratedSet
from nag.generation.output import add_predictions, format_table, invalid_reasons, rows_for, score_samples
from nag.hardware.selection import SELECTION_COLUMNS
from nag.io.writers import write_rows
from nag.report import tables
from nag.spaces.base import SearchSpace

#: Device-path columns shown in the terminal, in order (the file has them all).
DEVICE_COLUMNS = ("rank", "predicted_latency", "latency_std", "p_within_budget")


def report(
    result: GeneratedSet,
    space: SearchSpace,
    output: str | Path,
    *,
    benchmark: Benchmark | None,
    metrics: Sequence[str],
    train_keys: set[str],
    predictor: Any = None,
    seed: int = 0,
    show: int | None = 10,
    quiet: bool = False,
    verbose: bool = False,
    write: bool = True,
    asked: int | None = None,
) -> dict[str, float]:
    """What ``nag generate`` writes and prints for ``result``: one row per sample (or per
    selected architecture on the device path) with the true ``metrics`` and ``predictor``'s
    predictions, the best distinct ones in the terminal, and the summary beside as many
    uniform random samples with the same seed, so a mean says whether it is any good. ``asked``:
    how many architectures a device budget asked for (a shortfall is explained)."""
    if result.description:
        return _report_selection(result, space, output, benchmark, metrics, show, quiet, write, asked)
    summary = score_samples(result, space, train_keys, benchmark, metrics)
    rows = rows_for(result, space, benchmark, metrics)
    if predictor is not None:
        add_predictions(rows, result, space, predictor)
    if write:
        write_rows(rows, output)
    if quiet or not write:
        return summary
    maximize = benchmark.higher_is_better(metrics[0]) if benchmark is not None and metrics else True
    print(format_table(rows, metrics, None if verbose else show, maximize))
    if verbose and not all(r["valid"] for r in rows):
        print(f"invalid samples, by reason:\n{invalid_reasons(rows)}")
    print("  ".join(f"{k}={v:.4g}" for k, v in summary.items()))
    if benchmark is not None and metrics:
        random = UniformRandom(space).sample(len(result), seed=seed)
        summaries = {
            "generated": summary,
            "uniform random": score_samples(random, space, train_keys, benchmark, metrics),
        }
        print(f"beside {len(result)} uniform random architectures (seed {seed}):")
        print(format_comparison(summaries, metrics[:1]))
    print(f"wrote {len(rows)} rows to {output}")
    return summary


def _report_selection(
    result: GeneratedSet,
    space: SearchSpace,
    output: str | Path,
    benchmark: Benchmark | None,
    metrics: Sequence[str],
    show: int | None,
    quiet: bool,
    write: bool,
    asked: int | None,
) -> dict[str, float]:
    """The device path's rows: the selection's own columns and the benchmark's true metrics."""
    rows = result.rows
    for row, arch in zip(rows, result.archs):
        for m in metrics:
            row[m] = benchmark.query(arch, m) if benchmark is not None and arch in benchmark else math.nan
    if write:
        write_rows(rows, output, empty_columns=[*SELECTION_COLUMNS, *metrics])
    if quiet or not write:
        return result.summary
    columns = list(DEVICE_COLUMNS)
    if any("predicted_accuracy" in r for r in rows):
        columns.append("predicted_accuracy")
    columns += ["measured_latency", *metrics, "arch"]
    print(result.description)
    print(tables.format_table(rows[:show] if show is not None else rows, columns))
    print("  ".join(f"{k}={v:.4g}" for k, v in result.summary.items()))
    print(f"wrote {len(rows)} rows to {output}")
    if asked is not None and len(rows) < asked:
        print(
            f"only {len(rows)} of {asked} distinct architectures are predicted within the budget with enough "
            "probability; raise the budget, lower --feasible_prob or measure more"
        )
    return result.summary
