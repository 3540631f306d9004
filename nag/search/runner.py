"""``nag search``: one strategy, one benchmark metric, several seeds, one report."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from nag.benchmarks.base import Benchmark
from nag.errors import ConfigError
from nag.io.writers import write_rows
from nag.report import tables
from nag.search.evaluators import Evaluator
from nag.search.oracle import QueryOracle, SearchResult
from nag.search.report import format_proposals, format_summary, summarize
from nag.search.strategy import SearchStrategy
from nag.search.training_benchmark import TrainingBenchmark


class _ProgressOracle(QueryOracle):
    """A :class:`QueryOracle` that ticks a progress bar for every paid (new) query."""

    def __init__(self, *args: Any, bar: tqdm, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._bar = bar

    def query_batch(self, archs: Sequence[Any]) -> list[float]:
        paid = self.num_queries
        values = super().query_batch(archs)
        if self.num_queries > paid:
            self._bar.update(self.num_queries - paid)
            self._bar.set_postfix(best=tables.cell(self.best[1]), refresh=False)
        return values


def run_search(
    benchmark: Benchmark,
    metric: str,
    strategy: SearchStrategy,
    budget: int = 100,
    seeds: Sequence[int] = (0,),
    output: str = "search.json",
    show: int = 5,
    quiet: bool = False,
    verbose: bool = False,
    constraints: dict[str, float] | None = None,
    evaluator: Evaluator | None = None,
) -> dict[str, Any]:
    """Run ``strategy`` once per seed, each with a fresh oracle holding ``budget`` queries,
    then score the runs against the table's optimum and write ``output``: ``.json`` the whole
    report, ``.csv`` one row per query (seed, query, arch, value, best so far).

    ``constraints`` bound free cost metrics of the benchmark (a device's latency table), e.g.
    ``{"note10_latency": 25}``: only architectures within them are searched and count as found,
    and the optimum is the best within them (unknown where the benchmark has no table).

    The terminal shows a progress bar over queries, the ``show`` best distinct architectures
    found (with the benchmark's latency where it has one), each seed's result and the summary;
    ``verbose`` shows every architecture found and every seed, ``quiet`` nothing.

    ``evaluator`` runs the trainings of a :class:`~nag.search.training_benchmark.TrainingBenchmark`
    (``InProcess`` by default, ``ProcessPool``, ``Ray``: :mod:`nag.search.evaluators`), each
    finished one stored so that a rerun trains nothing twice; tables answer at once and take none.

    Every finished seed is saved at once to ``<output>.partial.json``; run the same command
    again after a crash or kill and the seeds it holds are not searched again.
    """
    if budget < 1:
        raise ConfigError(f"--budget={budget}: a search needs at least one query")
    if not seeds:
        raise ConfigError("--seeds is empty; give at least one seed, e.g. --seeds [0,1,2]")
    if Path(output).suffix not in (".csv", ".json"):
        raise ConfigError(f"--output {output!r}: expected a .csv or .json file name")
    benchmark.check_metric(metric)
    if evaluator is not None:
        if not isinstance(benchmark, TrainingBenchmark):
            raise ConfigError(
                f"--evaluator: {type(benchmark).__name__} answers at once; an evaluator runs the trainings "
                "of a TrainingBenchmark, so leave it out here"
            )
        benchmark = benchmark.evaluated_by(evaluator)
    partial = Path(f"{output}.partial.json")
    settings = {
        "benchmark": repr(benchmark),
        "metric": metric,
        "strategy": repr(strategy),
        "budget": budget,
        "constraints": dict(constraints or {}),
    }
    QueryOracle(benchmark, metric, budget, constraints)  # a bad constraint fails before any search
    done = _finished_runs(partial, settings)
    if done and not quiet:
        print(f"resuming: seeds {sorted(done)} were finished before, read from {partial}")
    results: list[SearchResult] = []
    try:
        with tqdm(total=budget * len(seeds), desc=f"{strategy.name} queries", unit="q", disable=quiet) as bar:
            for seed in seeds:
                bar.set_description(f"{strategy.name} seed {seed}")
                if seed in done:
                    results.append(done[seed])
                else:
                    oracle = _ProgressOracle(benchmark, metric, budget=budget, constraints=constraints, bar=bar)
                    results.append(strategy.run(oracle, budget, seed))
                    write_rows({**settings, "runs": [r.to_dict() for r in results]}, partial)
                bar.update(budget * (len(results)) - bar.n)  # a run may stop short of its budget
    finally:
        if evaluator is not None:
            evaluator.close()
    opt_arch, optimum = _optimum(benchmark, metric, constraints or {})
    summary = summarize(results, optimum)
    if strategy.stats is not None:  # the seeds searched in this call, not resumed ones
        summary["proposals"] = asdict(strategy.stats)
    report = {
        **settings,
        "optimum_arch": None if opt_arch is None else benchmark.space.to_string(opt_arch),
        "summary": summary,
        "runs": [r.to_dict() for r in results],
    }
    write_rows(report if output.endswith(".json") else query_rows(results), output)
    partial.unlink(missing_ok=True)
    if not quiet:
        print(found_table(results, benchmark, None if verbose else show))
        print(_runs_table(results, optimum, 0 if verbose else show))
        print(format_summary([summary]))
        if strategy.stats is not None:
            print(format_proposals([summary]))
        print(f"wrote {len(results)} runs to {output}")
    return report


def _optimum(benchmark: Benchmark, metric: str, constraints: dict[str, float]) -> tuple[Any, float]:
    """The table's best within ``constraints`` (read only to score finished runs), or
    ``(None, nan)`` where there is no table to take it from."""
    if not benchmark.tabular:
        return None, math.nan
    if not constraints:
        return benchmark.best(metric)
    oracle = QueryOracle(benchmark, metric, constraints=constraints)
    sign = 1 if benchmark.higher_is_better(metric) else -1
    column = benchmark.column(metric)
    order = [i for i in sorted(range(len(column)), key=lambda i: -sign * column[i]) if not math.isnan(column[i])]
    archs = benchmark.archs()
    best = next((i for i in order if oracle.feasible(archs[i])), None)
    return (None, math.nan) if best is None else (archs[best], float(column[best]))


def _finished_runs(partial: Path, settings: dict[str, Any]) -> dict[int, SearchResult]:
    """Seeds a killed run of the same search finished (none if the file is from another one)."""
    try:
        saved = json.loads(partial.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(saved, dict) or any(saved.get(k) != v for k, v in settings.items()):
        return {}
    return {r["seed"]: SearchResult.from_dict(r) for r in saved.get("runs", [])}


def query_rows(results: Sequence[SearchResult]) -> list[dict[str, Any]]:
    """One row per paid query of every run: the tidy form for plotting best-so-far curves."""
    return [
        {"method": r.method, "seed": r.seed, "query": q, "arch": arch, r.metric: value, "best_so_far": best}
        for r in results
        for q, ((arch, value), best) in enumerate(zip(r.history, r.best_curve), start=1)
    ]


def found_table(results: Sequence[SearchResult], benchmark: Benchmark, limit: int | None) -> str:
    """The best distinct architectures any seed queried, ranked by their true value; with the
    benchmark's latency beside it (read after the searches, for the user, not the strategy)."""
    metric, sign = results[0].metric, results[0].sign
    found: dict[str, dict[str, Any]] = {}
    for r in results:
        for q, (arch, value) in enumerate(r.history, start=1):
            row = found.setdefault(arch, {"arch": arch, metric: value, "seeds": 0, "first_query": q})
            row["seeds"] += 1
            row["first_query"] = min(row["first_query"], q)
    ranked = sorted(found.values(), key=lambda row: math.inf if math.isnan(row[metric]) else -sign * row[metric])
    latency = tables.latency_metric(benchmark, [metric])
    for i, row in enumerate(ranked[:limit], start=1):
        row["rank"] = i
        if latency is not None:
            row[latency] = benchmark.query(benchmark.space.from_string(row["arch"]), latency)
    columns = ["rank", metric, *([latency] if latency else []), "seeds", "first_query", "arch"]
    table = tables.format_table(ranked[:limit], columns)
    if limit is not None and len(ranked) > limit:
        table += f"\n... {len(ranked) - limit} more architectures in the output file"
    return table


def _runs_table(results: Sequence[SearchResult], optimum: float, show: int) -> str:
    rows = []
    for r in results[:show] if show else results:
        reach = None if math.isnan(optimum) else r.queries_to_reach(optimum)
        rows.append(
            {
                "seed": r.seed,
                "best": r.best_value,
                "regret": r.sign * (optimum - r.best_value),
                "queries": r.num_queries,
                "to opt.": "-" if reach is None else reach,
                "arch": r.best_arch,
            }
        )
    table = tables.format_table(rows, ["seed", "best", "regret", "queries", "to opt.", "arch"])
    if show and len(results) > show:
        table += f"\n... {len(results) - show} more seeds in the output file"
    return table
