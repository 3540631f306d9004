"""``nag search``: one strategy, one benchmark metric, several seeds, one report."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tqdm.auto import tqdm

from nag.benchmarks.base import Benchmark
from nag.errors import ConfigError
from nag.generation import write_rows
from nag.search.oracle import QueryOracle, SearchResult
from nag.search.report import format_summary, summarize
from nag.search.strategy import SearchStrategy


def run_search(
    benchmark: Benchmark,
    metric: str,
    strategy: SearchStrategy,
    budget: int = 100,
    seeds: Sequence[int] = (0,),
    output: str = "search.json",
    show: int = 5,
    quiet: bool = False,
) -> dict[str, Any]:
    """Run ``strategy`` once per seed, each with a fresh oracle holding ``budget`` queries,
    then score the runs against the table's optimum and write ``output`` (.json)."""
    if budget < 1:
        raise ConfigError(f"--budget={budget}: a search needs at least one query")
    if not seeds:
        raise ConfigError("--seeds is empty; give at least one seed, e.g. --seeds [0,1,2]")
    benchmark.column(metric)
    results: list[SearchResult] = []
    for seed in tqdm(list(seeds), desc=f"{strategy.name} seeds", disable=quiet):
        results.append(strategy.run(QueryOracle(benchmark, metric, budget=budget), budget, seed))
    opt_arch, optimum = benchmark.best(metric)
    summary = summarize(results, optimum)
    report = {"benchmark": repr(benchmark), "metric": metric, "strategy": repr(strategy), "budget": budget,
              "optimum_arch": benchmark.space.to_string(opt_arch), "summary": summary,
              "runs": [r.to_dict() for r in results]}
    write_rows(report, output)
    if not quiet:
        print(_runs_table(results, optimum, show))
        print(format_summary([summary]))
        print(f"wrote {len(results)} runs to {output}")
    return report


def _runs_table(results: Sequence[SearchResult], optimum: float, show: int) -> str:
    lines = [f"{'seed':>4}  {'best':>10}  {'regret':>8}  {'queries':>7}  {'to opt.':>7}  arch"]
    for r in results[:show] if show else results:
        reach = r.queries_to_reach(optimum)
        regret = r.sign * (optimum - r.best_value)
        lines.append(f"{r.seed:>4}  {r.best_value:>10.4f}  {regret:>8.4f}  {r.num_queries:>7}  "
                     f"{'-' if reach is None else reach:>7}  {r.best_arch}")
    if show and len(results) > show:
        lines.append(f"... {len(results) - show} more seeds in the output file")
    return "\n".join(lines)
