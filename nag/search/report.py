"""Summaries of search runs: best found at fixed query counts and queries to the optimum.

The optimum is read from the benchmark only here, after the searches have finished, to
score them; search loops never see it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import median
from typing import Any

import numpy as np

from nag.search.oracle import SearchResult

CHECKPOINTS = (10, 20, 50, 100)


def best_at(result: SearchResult, queries: int) -> float:
    """Best value found within the first ``queries`` queries (the last one if fewer ran)."""
    curve = result.best_curve
    return curve[min(queries, len(curve)) - 1] if curve else math.nan


def summarize(
    results: Sequence[SearchResult], optimum: float, checkpoints: Sequence[int] = CHECKPOINTS
) -> dict[str, Any]:
    """Medians over seeds (with the 25th/75th percentiles) of best found and regret at each
    checkpoint, and how many queries it took to reach ``optimum`` (None where it never did)."""
    sign = results[0].sign
    reach = [r.queries_to_reach(optimum) for r in results]
    budget = max(r.num_queries for r in results)
    out: dict[str, Any] = {
        "method": results[0].method,
        "seeds": len(results),
        "optimum": optimum,
        "reached_optimum": sum(q is not None for q in reach) / len(reach),
        # a run that never reached it counts as needing more than its budget; None
        # when the median run never did
        "median_queries_to_optimum": _finite(median(q if q is not None else math.inf for q in reach)),
        "queries_to_optimum": reach,
    }
    for q in checkpoints:
        if q > budget:
            continue
        best = np.array([best_at(r, q) for r in results])
        regret = sign * (optimum - best)
        out[f"best@{q}"] = float(np.median(best))
        out[f"best@{q}_iqr"] = [float(np.percentile(best, 25)), float(np.percentile(best, 75))]
        out[f"regret@{q}"] = float(np.median(regret))
    return out


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def format_summary(summaries: Sequence[dict[str, Any]], checkpoints: Sequence[int] = CHECKPOINTS) -> str:
    """A Markdown table: one row per method."""
    cols = [q for q in checkpoints if any(f"best@{q}" in s for s in summaries)]
    head = "| method | seeds | " + " | ".join(f"best@{q}" for q in cols) + " | reached opt. | median queries to opt. |"
    lines = [head, "|" + "---|" * (len(cols) + 4)]
    for s in summaries:
        cells = [f"{s[f'best@{q}']:.4f}" if f"best@{q}" in s else "" for q in cols]
        q_opt = s["median_queries_to_optimum"]
        lines.append(
            f"| {s['method']} | {s['seeds']} | "
            + " | ".join(cells)
            + f" | {s['reached_optimum']:.0%} | {'>budget' if q_opt is None else f'{q_opt:g}'} |"
        )
    return "\n".join(lines)
