"""Conditional generation as search (DiNAS's scenario) beside random search, every label counted.

    python benchmarks/conditional_search.py --data ../shared/data/nb201/nb201.csv --seeds 5

Protocol (printed at the top of the results file):
- ``ConditionalGenerationSearch`` starts from ``--num-init`` random queries; each round it fits
  (warm-starts) a classifier-free-guidance discrete diffusion model on every (architecture,
  value) pair queried on the target task so far, samples at the best value found and queries
  the ``--batch-size`` most often sampled distinct new cells. Its training labels come from the
  oracle only, so the query count is everything it cost (a DiNAS model trained on N labels
  has spent N queries).
- ``+init`` starts every run from one unconditional model pre-trained by ``nag fit`` on the
  table's architectures with no labels (``configs/nb201/discrete_diffusion.yaml`` with
  ``conditions: []``, cached by config and overrides).
- Random search runs with the same seeds and budget. Medians with [25th, 75th] percentiles.
- Held-out top: the top 1% of the table's cells (and the optimum) are never in the model's
  training data unless already queried, since training data = queried cells; so a top cell
  is reached either by a random query (the start, or a fill-in when generation fell short)
  or by generation. The table says how often and how fast, and which of the two found it.

Writes ``results/conditional_search.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from statistics import median
from typing import Any

import numpy as np
import torch
from common import RESULTS, ROOT, command, fit, markdown_table, write_report

from nag.benchmarks import NB201Benchmark
from nag.search import ConditionalGenerationSearch, QueryOracle, RandomSearch, SearchResult
from nag.search.report import format_summary, summarize

CONFIG = ROOT / "configs" / "nb201" / "discrete_diffusion.yaml"
METHODS = ("random", "conditional-generation", "conditional-generation+init")


def pretrain(args: argparse.Namespace) -> tuple[Path, float]:
    """An unconditional discrete diffusion model on the table's architectures (no labels), with
    the strategy's network, fitted by ``nag fit`` and reused for the same config and overrides;
    and the seconds its fit took (when it was made)."""
    overrides = [
        "--trainer.enable_progress_bar=false",
        "--trainer.logger=false",
        "--trainer.accelerator=cpu",
        f"--trainer.max_epochs={args.init_epochs}",
        "--seed_everything=0",
        "--model.init_args.conditions=[]",
        "--model.init_args.regressor_scale=0",
        "--data.init_args.targets=[]",
        "--data.init_args.split=[0.9, 0.05, 0.05]",
        f"--data.init_args.benchmark.init_args.path={args.data}",
        "--model.init_args.dim=32",
        "--model.init_args.edge_dim=8",
        "--model.init_args.layers=1",
        "--model.init_args.heads=2",
    ]
    return fit(CONFIG, Path(args.work), overrides)


def top_cells(bench: NB201Benchmark, metric: str, fraction: float) -> tuple[float, int]:
    """The value a cell needs to be in the table's top ``fraction`` (sign-aware) and how many are."""
    col = bench.column(metric)
    col = col[~np.isnan(col)]
    sign = 1 if bench.higher_is_better(metric) else -1
    ranked = np.sort(sign * col)[::-1]
    count = max(1, math.ceil(fraction * len(ranked)))
    return float(sign * ranked[count - 1]), count


def held_out_top(
    runs: list[SearchResult], sources: list[list[str]], threshold: float, optimum: float
) -> dict[str, Any]:
    """Per method: how often and after how many queries a top cell (and the optimum) was first
    queried, and whether generation proposed it."""

    def first(result: SearchResult, value: float) -> int | None:
        sign = result.sign
        return next((q for q, (_, v) in enumerate(result.history, 1) if sign * v >= sign * value - 1e-9), None)

    out: dict[str, Any] = {}
    for name, value in (("top1%", threshold), ("optimum", optimum)):
        hits = [first(r, value) for r in runs]
        reached = [q for q in hits if q is not None]
        by = [src[q - 1] for q, src in zip(hits, sources) if q is not None]
        padded = np.array([q if q is not None else math.inf for q in hits])
        out[name] = {
            "reached": len(reached) / len(runs),
            "first_query": hits,
            "median_first_query": None if not math.isfinite(median(padded)) else float(median(padded)),
            "iqr": [_finite(float(np.percentile(padded, p, method="nearest"))) for p in (25, 75)],
            "found_by": {s: by.count(s) for s in sorted(set(by))},
        }
    return out


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def run_method(
    name: str, args: argparse.Namespace, bench: NB201Benchmark, init_ckpt: Path | None
) -> tuple[list[SearchResult], list[list[str]], list[dict[str, Any]]]:
    if name == "random":
        strategy: Any = RandomSearch()
    else:
        strategy = ConditionalGenerationSearch(
            str(init_ckpt) if name.endswith("+init") else None,
            num_init=args.num_init,
            batch_size=args.batch_size,
            num_samples=args.samples,
            steps=args.steps,
            guidance_scale=args.guidance,
            condition_margin=args.margin,
            train_steps=args.train_steps,
            finetune_steps=args.finetune_steps,
        )
    runs, sources, stats = [], [], []
    for seed in range(args.seeds):
        start = time.perf_counter()
        result = strategy.run(QueryOracle(bench, args.metric, budget=args.budget), args.budget, seed)
        seconds = time.perf_counter() - start
        runs.append(result)
        if isinstance(strategy, RandomSearch):
            sources.append(["random"] * result.num_queries)
            stats.append({"seed": seed, "seconds": seconds})
        else:
            record = strategy.runs[seed].to_dict()
            sources.append(record.pop("sources"))
            stats.append(record)
        print(
            f"{name:>28} seed {seed}: best {result.best_value:.3f}, {seconds:.1f}s, "
            f"to opt. {result.queries_to_reach(bench.best(args.metric)[1])}",
            flush=True,
        )
    return runs, sources, stats


PROPOSAL_KEYS = (
    "seconds",
    "train_seconds",
    "sample_seconds",
    "rounds",
    "sampled",
    "valid",
    "in_table",
    "new",
    "distinct_new",
    "generated_queries",
)


def proposal_row(name: str, stats: list[dict[str, Any]]) -> list[str]:
    """Medians over runs of what generation yielded, and seconds per run."""

    def med(key: str) -> str:
        values = [s[key] for s in stats if key in s]
        return f"{median(values):.4g}" if values else ""

    return [name, *(med(key) for key in PROPOSAL_KEYS)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared/data/nb201/nb201.csv"))
    parser.add_argument("--metric", default="cifar10_test_200ep")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--budget", type=int, default=100)
    parser.add_argument("--methods", nargs="*", choices=METHODS, default=list(METHODS))
    parser.add_argument("--num-init", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--guidance", type=float, default=1.0)
    parser.add_argument("--margin", type=float, default=0.0)
    parser.add_argument("--train-steps", type=int, default=300)
    parser.add_argument("--finetune-steps", type=int, default=100)
    parser.add_argument("--init-epochs", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--work", default=str(ROOT / "runs/bench_conditional_search"))
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    bench = NB201Benchmark(args.data)
    opt_arch, optimum = bench.best(args.metric)
    threshold, top_count = top_cells(bench, args.metric, 0.01)
    init_ckpt, init_seconds = None, None
    if "conditional-generation+init" in args.methods:
        init_ckpt, init_seconds = pretrain(args)

    results: dict[str, Any] = {}
    for name in args.methods:
        runs, sources, stats = run_method(name, args, bench, init_ckpt)
        results[runs[0].method] = {
            "summary": summarize(runs, optimum),
            "held_out_top": held_out_top(runs, sources, threshold, optimum),
            "proposals": stats,
            "runs": [r.to_dict() | {"sources": s} for r, s in zip(runs, sources)],
        }
        write(results, args, bench, optimum, opt_arch, threshold, top_count, init_ckpt, init_seconds)


def write(
    results: dict[str, Any],
    args: argparse.Namespace,
    bench: NB201Benchmark,
    optimum: float,
    opt_arch: Any,
    threshold: float,
    top_count: int,
    init_ckpt: Path | None,
    init_seconds: float | None,
) -> None:
    ran = command(__file__)
    init_note = "" if init_seconds is None else f" of {init_seconds:.0f} s wall clock"
    report = {
        "command": ran,
        "args": vars(args),
        "optimum": optimum,
        "optimum_arch": bench.space.to_string(opt_arch),
        "top1%_threshold": threshold,
        "top1%_cells": top_count,
        "init_ckpt": None if init_ckpt is None else str(init_ckpt),
        "init_fit_seconds": init_seconds,
        "results": results,
    }
    lines = [
        f"# Conditional generation as search: NB201 {args.metric}, budget {args.budget}",
        "",
        f"Command: `{ran}` (torch threads: {args.threads}).",
        "",
        "Protocol: every label the conditional model trains on is a query on the target task (training "
        "data = the queried cells, nothing else); random search runs with the same seeds and budget; "
        "`+init` starts from an unconditional model pre-trained on the table's architectures without labels "
        f"(one fit{init_note}, reused by every run); medians "
        "with [25th, 75th] percentiles. Optimum = the table's best "
        f"({optimum:.4f}, {bench.space.to_string(opt_arch)}).",
        "",
        format_summary([r["summary"] for r in results.values()]),
        "",
        f"## Held-out top: the top 1% ({top_count} cells, value >= {threshold:.4f}) and the optimum",
        "",
        "None of them is ever in the conditional model's training data before it was queried (training "
        "data = queried cells), so each was first reached by a random query (`init`: the random start; "
        "`random`: a fill-in when generation fell short) or proposed by generation (`generated`).",
        "",
    ]
    held_out = []
    for name, r in results.items():
        for target, h in r["held_out_top"].items():
            q = "-" if h["median_first_query"] is None else f"{h['median_first_query']:g}"
            iqr = ", ".join("-" if v is None else f"{v:g}" for v in h["iqr"])
            per_run = ", ".join("-" if v is None else str(v) for v in h["first_query"])
            found = ", ".join(f"{k} {v}" for k, v in h["found_by"].items()) or "-"
            held_out.append([name, target, f"{h['reached']:.0%}", f"{q} [{iqr}]", per_run, found])
    lines += markdown_table(
        ["method", "target", "reached", "first query: median [25th, 75th]", "per run", "found by"], held_out
    )
    lines += [
        "",
        "## Proposals and time per run (medians over runs)",
        "",
        "valid: after projection; in table: valid and benchmarked; new: in the table and neither queried nor "
        "an isomorph of a queried cell (all samples); distinct new: distinct space keys among them, summed over "
        "rounds; generated: queries proposed by generation (the rest are the random start and fill-ins).",
        "",
        *markdown_table(
            [
                "method",
                "s/run",
                "train s",
                "sample s",
                "rounds",
                "sampled",
                "valid",
                "in table",
                "new",
                "distinct new",
                "generated queries",
            ],
            (proposal_row(name, r["proposals"]) for name, r in results.items()),
        ),
    ]
    write_report(Path(args.out) / "conditional_search", ran, report, "\n".join(lines))
    print(json.dumps({k: r["summary"].get("best@100") for k, r in results.items()}))
    print("\n".join(lines), flush=True)


if __name__ == "__main__":
    main()
