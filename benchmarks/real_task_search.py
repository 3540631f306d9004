"""Searches whose every query is a real training, on a task whose measured ranking can be trusted.

    python benchmarks/real_task_search.py                  # retest, search, throughput
    python benchmarks/real_task_search.py --phases retest  # one phase (results merge into the file)

The task is the shipped config's (``configs/images/search_nb201_mnist.yaml``): NB201 cells built
into small networks, trained on MNIST-5k digits and scored on held-out images, each query the
mean of the config's training seeds. Three phases, each its section of
``results/real_task_search.{json,md,png}``:

- ``retest``: ``--cells`` seeded NB201 cells of distinct isomorphism classes measured as a search
  measures them, then again from other training seeds (the retest): the Spearman of the two is
  the noise floor a search's ranking stands on.
- ``search``: random, REA, local search, BO, BO with the score-diffusion generator's proposals,
  and the naive transfer that queries cells in the order of their NB201 CIFAR-10 accuracy (no
  MNIST label), each ``--seeds`` runs of ``--budget`` trained candidates through one oracle per
  run and a process pool of ``--workers``. Every run's best cell is measured again from the
  retest seeds, so the reported value is not the maximum of the noise it was chosen by.
- ``throughput``: the same fresh cells trained by Ray with 1 worker and with ``--workers``, in
  one run: candidates per minute and their ratio.

Trainings are stored under ``--store`` (the same store as the config's, so a rerun trains
nothing twice and an interrupted run resumes).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from common import (
    RESULTS,
    ROOT,
    command,
    distinct_samples,
    figure,
    generation_checkpoint,
    markdown_table,
    spearman,
    write_report,
)
from matplotlib.figure import Figure

from nag.benchmarks import NB201Benchmark
from nag.search import (
    LocalSearch,
    OtherTasksRanking,
    ProcessPool,
    QueryOracle,
    RandomSearch,
    Ray,
    RegularizedEvolution,
    SourceTask,
    TrainingBenchmark,
)
from nag.search.bo import BayesianOptimization
from nag.spaces import NB201Space

CONFIG = ROOT / "configs" / "images" / "search_nb201_mnist.yaml"
METHODS = ("random", "rea", "local", "bo", "bo+generator", "nb201_transfer")
STEM = "real_task_search"


def task_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The shipped config's benchmark arguments (the task a user searches first)."""
    settings = dict(yaml.safe_load(CONFIG.read_text())["benchmark"]["init_args"])
    settings.pop("space")
    settings["images"] = args.images
    settings["store"] = args.store
    return settings


def benchmark(args: argparse.Namespace, seeds: list[int]) -> TrainingBenchmark:
    return TrainingBenchmark(NB201Space(), **{**task_settings(args), "seeds": seeds})


def retest_seeds(seeds: list[int]) -> list[int]:
    """As many training seeds as the config's, none of them: independent repeats."""
    return [max(seeds) + 1 + i for i in range(len(seeds))]


def training_seconds(bench: TrainingBenchmark, archs: list) -> float:
    """Mean seconds of one stored training of ``archs`` (each ran with the config's threads)."""
    seconds = [
        record["seconds"] for arch in archs for seed in bench.seeds if (record := bench.stored(arch, seed)) is not None
    ]
    return float(np.mean(seconds))


def retest(args: argparse.Namespace, pool: ProcessPool) -> dict[str, Any]:
    space = NB201Space()
    cells = distinct_samples(space, args.cells, args.cell_seed)
    seeds = task_settings(args)["seeds"]
    first, second = benchmark(args, seeds), benchmark(args, retest_seeds(seeds))
    start = time.perf_counter()
    a = first.evaluated_by(pool).values(cells, "val_accuracy")
    b = second.evaluated_by(pool).values(cells, "val_accuracy")
    single = [benchmark(args, [s]).values(cells, "val_accuracy") for s in (seeds[0], retest_seeds(seeds)[0])]
    per_training = training_seconds(first, cells)
    return {
        "command": command(__file__),
        "cells": len(cells),
        "seeds": seeds,
        "retest_seeds": retest_seeds(seeds),
        "spearman": spearman(a, b),
        "spearman_one_seed": spearman(*single),
        "mean": float(a.mean()),
        "std": float(a.std()),
        "min": float(a.min()),
        "max": float(a.max()),
        "seconds_per_training": per_training,
        "seconds_per_query": per_training * len(seeds),
        "wall_seconds": time.perf_counter() - start,
        "values": a.tolist(),
        "retest_values": b.tolist(),
    }


def strategies(args: argparse.Namespace) -> dict[str, Any]:
    q = args.batch
    source = SourceTask(NB201Benchmark(args.nb201), "cifar10_test_200ep")
    bo = {"ensemble_size": 3, "train_steps": 150, "hidden": 32, "batch_size": q, "num_init": 10, "pool_size": 3000}
    generator = generation_checkpoint("nb201", "score")
    made = {
        "random": RandomSearch(batch_size=q),
        "rea": RegularizedEvolution(population_size=10, sample_size=3, batch_size=q),
        "local": LocalSearch(num_init=10, batch_size=q),
        "bo": BayesianOptimization(**bo),
        "nb201_transfer": OtherTasksRanking([source], batch_size=q),
    }
    if generator is not None:
        made["bo+generator"] = BayesianOptimization(str(generator), num_samples=500, **bo)
    return {m: made[m] for m in args.methods if m in made}


def search(args: argparse.Namespace, pool: ProcessPool) -> dict[str, Any]:
    seeds = task_settings(args)["seeds"]
    bench, check = benchmark(args, seeds).evaluated_by(pool), benchmark(args, retest_seeds(seeds)).evaluated_by(pool)
    space = bench.space
    runs: dict[str, list[dict[str, Any]]] = {}
    start = time.perf_counter()
    for name, strategy in strategies(args).items():
        for seed in range(args.seeds):
            t0 = time.perf_counter()
            result = strategy.run(QueryOracle(bench, "val_accuracy", budget=args.budget), args.budget, seed)
            best = space.from_string(result.best_arch)
            runs.setdefault(name, []).append(
                {
                    "seed": seed,
                    "queries": result.num_queries,
                    "best_found": result.best_value,
                    "best_retested": float(check.values([best], "val_accuracy")[0]),
                    "best_arch": result.best_arch,
                    "curve": result.best_curve,
                    "seconds": time.perf_counter() - t0,
                }
            )
            print(f"{name} seed {seed}: best {result.best_value:.4f} (retest {runs[name][-1]['best_retested']:.4f})")
    summary = {}
    random = {r["seed"]: r["best_retested"] for r in runs.get("random", [])}
    for name, method_runs in runs.items():
        retested = np.array([r["best_retested"] for r in method_runs])
        found = np.array([r["best_found"] for r in method_runs])
        summary[name] = {
            "runs": len(method_runs),
            "distinct_bests": len({r["best_arch"] for r in method_runs}),
            "found_median": float(np.median(found)),
            "retested_median": float(np.median(retested)),
            "retested_q25": float(np.quantile(retested, 0.25)),
            "retested_q75": float(np.quantile(retested, 0.75)),
            "beats_random": sum(r["best_retested"] > random[r["seed"]] for r in method_runs if r["seed"] in random),
        }
    return {
        "command": command(__file__),
        "budget": args.budget,
        "seeds": args.seeds,
        "batch": args.batch,
        "workers": args.workers,
        "wall_seconds": time.perf_counter() - start,
        "summary": summary,
        "runs": runs,
    }


def throughput(args: argparse.Namespace) -> dict[str, Any]:
    """Fresh cells (no store) trained by Ray with 1 worker, then ``--workers``; each instance is
    warmed by one training per worker first, so worker start-up is not counted."""
    space = NB201Space()
    cells = distinct_samples(space, args.throughput_cells + 2 * args.workers, args.cell_seed + 1)
    rates = {}
    for workers in (1, args.workers):
        ray = Ray(workers=workers)
        bench = TrainingBenchmark(space, **{**task_settings(args), "store": None, "seeds": [0]}).evaluated_by(ray)
        try:
            bench.values(cells[-workers:], "val_accuracy")
            start = time.perf_counter()
            bench.values(cells[: args.throughput_cells], "val_accuracy")
            rates[workers] = args.throughput_cells / (time.perf_counter() - start) * 60
        finally:
            ray.close()
    return {
        "command": command(__file__),
        "cells": args.throughput_cells,
        "candidates_per_minute": {str(k): v for k, v in rates.items()},
        "ratio": rates[args.workers] / rates[1],
    }


def markdown(report: dict[str, Any]) -> str:
    lines = ["# Real-task search: every query a training", ""]
    settings = report.get("task", {})
    lines += [
        f"Task (`{CONFIG.relative_to(ROOT)}`): NB201 cells as networks with {settings.get('network')}, trained "
        f"{settings.get('epochs')} epochs ({settings.get('schedule')} learning rate) on {settings.get('train_size')} "
        f"MNIST-5k digits at {settings.get('size')}x{settings.get('size')}, scored on {settings.get('val_size')} "
        f"held-out ones; a query is the mean over training seeds {settings.get('seeds')}.",
        "",
    ]
    if "retest" in report:
        r = report["retest"]
        lines += [
            "## Test-retest: can a search trust the measured ranking?",
            "",
            f"`{r['command']}`",
            "",
            f"{r['cells']} seeded NB201 cells (distinct isomorphism classes), measured from training seeds "
            f"{r['seeds']} and again from {r['retest_seeds']}.",
            "",
            *markdown_table(
                ["Spearman (query vs retest)", "one seed each", "mean acc", "std", "min", "max", "s/query, 1 core"],
                [
                    [
                        f"**{r['spearman']:.3f}**",
                        f"{r['spearman_one_seed']:.3f}",
                        f"{r['mean']:.4f}",
                        f"{r['std']:.4f}",
                        f"{r['min']:.4f}",
                        f"{r['max']:.4f}",
                        f"{r['seconds_per_query']:.1f}",
                    ]
                ],
            ),
            "",
        ]
    if "search" in report:
        s = report["search"]
        lines += [
            "## Searches at equal trained candidates",
            "",
            f"`{s['command']}`",
            "",
            f"{s['budget']} trained candidates per run, {s['seeds']} seeds per method, batches of {s['batch']} on a "
            f"pool of {s['workers']} processes ({s['wall_seconds'] / 60:.0f} min in all). *best (retested)*: each "
            "run's best cell measured again from the retest seeds (the value a user would get training it again; "
            "*found* is the maximum of the noisy measurements it was chosen by); median and interquartile range "
            "over the seeds; *beats random*: seeds whose retested best is above random search's of the same seed. "
            "*nb201_transfer* queries cells in the order of their NB201 CIFAR-10 accuracy (no MNIST label).",
            "",
            *markdown_table(
                ["method", "best (retested), median", "IQR", "found, median", "distinct bests", "beats random"],
                [
                    [
                        name,
                        f"{m['retested_median']:.4f}",
                        f"{m['retested_q25']:.4f}-{m['retested_q75']:.4f}",
                        f"{m['found_median']:.4f}",
                        f"{m['distinct_bests']}/{m['runs']}",
                        "-" if name == "random" else f"{m['beats_random']}/{m['runs']}",
                    ]
                    for name, m in s["summary"].items()
                ],
            ),
            "",
        ]
    if "throughput" in report:
        t = report["throughput"]
        rates = t["candidates_per_minute"]
        lines += [
            "## Parallel trainings on Ray",
            "",
            f"`{t['command']}`",
            "",
            f"{t['cells']} fresh cells (nothing stored), one Ray task each (1 CPU, 1 torch thread), after one "
            "warm-up training per worker.",
            "",
            *markdown_table(["Ray workers", "candidates per minute"], [[k, f"{v:.1f}"] for k, v in rates.items()]),
            "",
            f"Ratio {max(rates, key=int)} workers / 1 worker: **{t['ratio']:.2f}**.",
            "",
        ]
    return "\n".join(lines)


def plot(report: dict[str, Any]) -> Figure:
    fig, axes = figure(1, 2, figsize=(10, 3.8))
    if "retest" in report:
        r = report["retest"]
        axes[0].scatter(r["values"], r["retest_values"], s=8)
        axes[0].set_xlabel("val accuracy (query seeds)")
        axes[0].set_ylabel("val accuracy (retest seeds)")
        axes[0].set_title(f"test-retest, Spearman {r['spearman']:.2f}")
    if "search" in report:
        for name, runs in report["search"]["runs"].items():
            curves = np.array([r["curve"] for r in runs if len(r["curve"]) == report["search"]["budget"]])
            if len(curves):
                axes[1].plot(range(1, curves.shape[1] + 1), np.median(curves, 0), label=name)
        axes[1].set_xlabel("trained candidates")
        axes[1].set_ylabel("best found (median over seeds)")
        axes[1].legend(fontsize=7)
    fig.tight_layout()
    return fig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phases", nargs="*", choices=["retest", "search", "throughput"], default=None)
    parser.add_argument("--images", default=str(ROOT.parent / "shared/data/images/mnist_5k.csv.gz"))
    parser.add_argument("--nb201", default=str(ROOT.parent / "shared/data/nb201/nb201.csv"))
    parser.add_argument("--store", default=str(ROOT / "runs/trainings"))
    parser.add_argument("--cells", type=int, default=100)
    parser.add_argument("--cell-seed", type=int, default=0)
    parser.add_argument("--methods", nargs="*", choices=METHODS, default=list(METHODS))
    parser.add_argument("--budget", type=int, default=30, help="trained candidates per run, the same for every method")
    parser.add_argument("--seeds", type=int, default=5, help="runs per method")
    parser.add_argument("--batch", type=int, default=2, help="candidates each strategy proposes at a time")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--throughput-cells", type=int, default=16)
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    phases = args.phases or ["retest", "search", "throughput"]
    torch.set_num_threads(1)
    path = Path(args.out) / f"{STEM}.json"
    report = json.loads(path.read_text()) if path.is_file() else {}
    report["task"] = {k: v for k, v in task_settings(args).items() if k not in ("images", "store")}
    report["task"].setdefault("schedule", "cosine")
    pool = ProcessPool(args.workers)
    try:
        if "retest" in phases:
            report["retest"] = retest(args, pool)
        if "search" in phases:
            report["search"] = search(args, pool)
    finally:
        pool.close()
    if "throughput" in phases:
        report["throughput"] = throughput(args)
    phases_run = ("retest", "search", "throughput")
    commands = " && ".join(dict.fromkeys(report[p]["command"] for p in phases_run if p in report))
    print(write_report(Path(args.out) / STEM, commands, report, markdown(report), plot(report)))


if __name__ == "__main__":
    main()
