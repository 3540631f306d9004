"""Search quality: best found vs queries for transfer, BO and the baselines, same harness.

    python benchmarks/search.py --space nbgraph                    # embedded, no files
    python benchmarks/search.py --space nb201 --data ../shared/data/nb201/nb201.csv

Per task (NB201: each dataset's test accuracy with the meta-predictor trained on the other
two; NB-Graph: leave-one-dataset-out), every method runs under the same budget and seeds
through a counting QueryOracle. Meta-predictors (and the generator) are trained first by
``nag fit`` from the repository's configs (reused when their checkpoints exist), ``--meta-seeds``
of them per task, so transfer's seeds measure meta-training variance too. Random
search is the baseline every other method is compared to, as a ratio of queries.
Writes ``results/search_<space>.{json,md,png}``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import torch

from nag.benchmarks import NB201Benchmark, NBGraphBenchmark
from nag.benchmarks.nbgraph import DATASETS
from nag.cli import main as nag_main
from nag.generation import write_rows
from nag.search import LocalSearch, QueryOracle, RandomSearch, RegularizedEvolution
from nag.search.bo import BayesianOptimization
from nag.search.report import format_summary, summarize
from nag.search.transfer import TransferSearch

ROOT = Path(__file__).resolve().parents[1]
NB201_TASKS = {
    "cifar10": "cifar10_test_200ep",
    "cifar100": "cifar100_test_200ep",
    "imagenet16": "imagenet16_test_200ep",
}


def fit(config: str, root: Path, *overrides: str) -> Path:
    """``nag fit`` with the repository's config under ``root`` (one per task); later runs
    reuse its ``last.ckpt`` only if that fit finished (``last.ckpt`` is rewritten every
    epoch, so an interrupted run's would be a half-trained model)."""
    done = root / "fit_finished"
    if not done.exists():
        shutil.rmtree(root, ignore_errors=True)
        nag_main(
            [
                "fit",
                "--config",
                str(ROOT / config),
                "--trainer.default_root_dir",
                str(root),
                "--trainer.enable_progress_bar",
                "false",
                "--test_after_fit",
                "false",
                *overrides,
            ]
        )
        done.touch()
    return sorted(root.glob("**/last.ckpt"))[-1]


def tasks(args: argparse.Namespace) -> list[tuple[str, object, str, list[str]]]:
    """``(task name, benchmark, metric, meta-fit overrides)`` per held-out task."""
    if args.space == "nb201":
        bench = NB201Benchmark(args.data)
        data = [
            "--data.init_args.benchmarks",
            json.dumps([{"class_path": "nag.benchmarks.NB201Benchmark", "init_args": {"path": args.data}}]),
        ]
        return [
            (name, bench, metric, [*data, "--data.init_args.held_out", metric])
            for name, metric in NB201_TASKS.items()
            if name in args.tasks
        ]
    return [
        (d, NBGraphBenchmark(d), "valid_acc", ["--data.init_args.held_out", d]) for d in DATASETS if d in args.tasks
    ]


METHODS = ("random", "rea", "local", "transfer", "transfer+generator", "bo")


def strategies(args: argparse.Namespace, metas: list[Path], generator: Path | None) -> list[tuple[list, int, int]]:
    """``(strategies, seeds, budget)``: search seed ``s`` runs ``strategies[s % len]``, so
    transfer's seeds spread over independently meta-trained predictors. Model-free methods
    get every seed; costly ones fewer."""
    make = {
        "random": lambda: ([RandomSearch()], args.seeds, args.budget),
        "rea": lambda: ([RegularizedEvolution()], args.seeds, args.budget),
        "local": lambda: ([LocalSearch()], args.seeds, args.budget),
        "transfer": lambda: ([TransferSearch(str(m), batch_size=1) for m in metas], args.seeds, args.budget),
        "transfer+generator": lambda: (
            [
                TransferSearch(
                    str(m), str(generator), batch_size=1, num_samples=args.samples, regenerate_every=args.regenerate
                )
                for m in metas
            ],
            args.model_seeds,
            args.model_budget,
        ),
        "bo": lambda: (
            [BayesianOptimization(ensemble_size=3, train_steps=150, batch_size=10, hidden=32)],
            args.model_seeds,
            args.model_budget,
        ),
    }
    return [make[m]() for m in args.methods]


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    fig, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 3.6), squeeze=False)
    for ax, name in zip(axes[0], names):
        task = results[name]
        for method, runs in task["curves"].items():
            length = min(len(c) for c in runs)
            regret = torch.tensor([[task["optimum"] - v for v in c[:length]] for c in runs])
            ax.plot(range(1, length + 1), regret.median(0).values.clamp_min(1e-3).tolist(), label=method)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(name)
        ax.set_xlabel("queries")
        ax.set_ylabel("regret (median over seeds)")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", choices=["nb201", "nbgraph"], default="nbgraph")
    parser.add_argument("--data", default=str(ROOT.parent / "shared/data/nb201/nb201.csv"))
    parser.add_argument("--tasks", nargs="*", default=None, help="held-out tasks (default: all)")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--budget", type=int, default=100)
    parser.add_argument("--model-seeds", type=int, default=3, help="seeds for transfer+generator and BO")
    parser.add_argument("--model-budget", type=int, default=50)
    parser.add_argument("--meta-epochs", type=int, default=10)
    parser.add_argument("--meta-seeds", type=int, default=3, help="independently meta-trained predictors per task")
    parser.add_argument("--methods", nargs="*", choices=METHODS, default=["random", "rea", "local", "transfer"])
    parser.add_argument("--generator-epochs", type=int, default=30)
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--regenerate", type=int, default=25)
    parser.add_argument("--work", default=str(ROOT / "runs/bench_search"))
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()
    args.tasks = args.tasks or (list(NB201_TASKS) if args.space == "nb201" else list(DATASETS))
    torch.set_num_threads(1)  # tiny models: a second thread only adds contention on small machines
    work, out = Path(args.work), Path(args.out)

    generator = None
    if "transfer+generator" in args.methods:
        generator = fit(
            f"configs/{args.space}/diffusion.yaml",
            work / f"{args.space}_generator",
            "--trainer.max_epochs",
            str(args.generator_epochs),
            *(["--data.init_args.benchmark.init_args.path", args.data] if args.space == "nb201" else []),
        )

    results = {}
    for name, bench, metric, overrides in tasks(args):
        metas = []
        if any(m.startswith("transfer") for m in args.methods):
            metas = [
                fit(
                    f"configs/{args.space}/meta_predictor.yaml",
                    work / (f"{args.space}_meta_{name}" + (f"_s{k}" if k else "")),
                    "--trainer.max_epochs",
                    str(args.meta_epochs),
                    "--seed_everything",
                    str(k),
                    *overrides,
                )
                for k in range(args.meta_seeds)
            ]
        _, optimum = bench.best(metric)
        task = results[name] = {"metric": metric, "optimum": optimum, "methods": {}, "curves": {}}
        for options, seeds, budget in strategies(args, metas, generator):
            start, strategy = time.perf_counter(), options[0]
            runs = [
                options[s % len(options)].run(QueryOracle(bench, metric, budget=budget), budget, s)
                for s in range(seeds)
            ]
            summary = summarize(runs, optimum) | {
                "task": name,
                "seconds_per_run": (time.perf_counter() - start) / seeds,
            }
            task["methods"][strategy.name] = summary
            task["curves"][strategy.name] = [r.best_curve for r in runs]
            print(
                f"{name:>10} {strategy.name:>22}: best={runs[0].sign * max(r.sign * r.best_value for r in runs):.4f} "
                f"reached={summary['reached_optimum']:.0%} q_opt={summary['median_queries_to_optimum']}",
                flush=True,
            )
        base = task["methods"]["random_search"]["median_queries_to_optimum"]
        for summary in task["methods"].values():
            q = summary["median_queries_to_optimum"]
            summary["queries_vs_random"] = q / base if q is not None and base is not None else None
        write(results, args, out)  # after every task: a long run stopped midway keeps what it measured


def write(results: dict, args: argparse.Namespace, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"search_{args.space}"
    write_rows({"args": vars(args), "results": results}, stem.with_suffix(".json"))
    lines = [f"# Search on {args.space} (best found vs queries; optimum = table's best)", ""]
    for name, task in results.items():
        lines += [
            f"## held-out {name}: {task['metric']} (optimum {task['optimum']:.4f})",
            "",
            format_summary(list(task["methods"].values())),
            "",
        ]
    stem.with_suffix(".md").write_text("\n".join(lines))
    plot(results, stem.with_suffix(".png"))
    print("\n".join(lines), flush=True)


if __name__ == "__main__":
    main()
