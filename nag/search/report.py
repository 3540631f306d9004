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
    """Medians over seeds, each with its 25th/75th percentiles, of best found and regret at
    each checkpoint and of the queries it took to reach ``optimum`` (a run that never did
    counts as needing more than its budget). ``distinct_runs`` counts runs that queried a
    different sequence: seeds of a deterministic method are one run, however many there are."""
    sign = results[0].sign
    reach = [r.queries_to_reach(optimum) for r in results]
    budget = max(r.num_queries for r in results)
    to_opt = np.array([q if q is not None else math.inf for q in reach], dtype=np.float64)
    out: dict[str, Any] = {
        "method": results[0].method,
        "seeds": len(results),
        "distinct_runs": len({tuple(a for a, _ in r.history) for r in results}),
        "budget": budget,
        "optimum": optimum,
        "reached_optimum": sum(q is not None for q in reach) / len(reach),
        "median_queries_to_optimum": _finite(median(to_opt.tolist())),
        "queries_to_optimum_iqr": [_finite(float(np.percentile(to_opt, p, method="nearest"))) for p in (25, 75)],
        "queries_to_optimum": reach,
    }
    if math.isnan(optimum):  # no table to take the optimum from: nothing to reach or regret
        out.update(reached_optimum=None, median_queries_to_optimum=None, queries_to_optimum_iqr=None)
    for q in checkpoints:
        if q > budget:
            continue
        best = np.array([best_at(r, q) for r in results])
        regret = sign * (optimum - best)
        out[f"best@{q}"] = float(np.median(best))
        out[f"best@{q}_iqr"] = [float(np.percentile(best, 25)), float(np.percentile(best, 75))]
        if math.isnan(optimum):
            continue
        out[f"regret@{q}"] = float(np.median(regret))
        out[f"regret@{q}_iqr"] = [float(np.percentile(regret, 25)), float(np.percentile(regret, 75))]
    return out


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def format_summary(summaries: Sequence[dict[str, Any]], checkpoints: Sequence[int] = CHECKPOINTS) -> str:
    """A Markdown table: one row per method, each median with its interquartile range."""
    cols = [q for q in checkpoints if any(f"best@{q}" in s for s in summaries)]
    names = ["method", "budget", "runs (distinct)", *(f"best@{q}" for q in cols), "regret@10", "reached opt."]
    lines = ["| " + " | ".join([*names, "queries to opt."]) + " |", "|" + "---|" * (len(names) + 1)]
    for s in summaries:
        cells = [_spread(s.get(f"best@{q}"), s.get(f"best@{q}_iqr")) for q in cols]
        runs = f"{s['seeds']} ({s['distinct_runs']})" if "distinct_runs" in s else f"{s['seeds']}"
        q_iqr = s.get("queries_to_optimum_iqr")
        q_opt = _queries(s["median_queries_to_optimum"])
        if q_iqr is not None:
            q_opt += f" [{_queries(q_iqr[0])}, {_queries(q_iqr[1])}]"
        reached = "unknown" if s["reached_optimum"] is None else f"{s['reached_optimum']:.0%}"
        if s["reached_optimum"] is None:
            q_opt = "unknown"
        regret = _spread(s.get("regret@10"), s.get("regret@10_iqr"))
        row = [s["method"], str(s.get("budget", "")), runs, *cells, regret, reached, q_opt]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def format_proposals(summaries: Sequence[dict[str, Any]]) -> str:
    """A Markdown table of what each generative method's samples yielded (``proposals`` of a
    summary: a :class:`~nag.search.proposals.ProposalStats` as a dict); empty if none generated."""
    rows = [s for s in summaries if s.get("proposals", {}).get("sampled")]
    if not rows:
        return ""
    lines = ["| method | sampled | valid | in the table | new (distinct, unqueried) |", "|---|---|---|---|---|"]
    for s in rows:
        p = s["proposals"]
        share = [f"{p[k]:,} ({p[k] / p['sampled']:.1%})" for k in ("valid", "in_table", "new")]
        lines.append(f"| {s['method']} | {p['sampled']:,} | " + " | ".join(share) + " |")
    return "\n".join(lines)


def _spread(median_value: float | None, iqr: Sequence[float] | None) -> str:
    if median_value is None:
        return ""
    return f"{median_value:.4g}" + (f" [{iqr[0]:.4g}, {iqr[1]:.4g}]" if iqr else "")


def _queries(q: float | None) -> str:
    return ">budget" if q is None else f"{q:g}"
