"""Search quality under one protocol for every method: best found vs queries.

    python benchmarks/search.py --space nbgraph                    # embedded, no files
    python benchmarks/search.py --space nb201 --data ../shared/data/nb201/nb201.csv
    python benchmarks/search.py --space nb201 --tasks cifar10_1seed --name search_nb201_fidelity   # another fidelity

Protocol (printed at the top of each results file):
- Every label of the target task that any part of a method uses is a query, counted by one
  QueryOracle per run; meta-predictors learn from the *other* tasks only (leave-one-task-out,
  refused by dataset, not name).
- Every method gets the same budget and the same seeds. A method containing a trained model
  gets one independently trained model per seed (``--meta-seeds`` defaults to ``--seeds``);
  the table's "runs (distinct)" counts runs that queried a different sequence, so a
  deterministic method shows its true number of runs.
- The naive baselines run beside it: uniform random, and ``OtherTasksRanking``, the order of
  the source tasks' own labels (no learning). ``transfer+sources`` starts from that order and
  corrects it from the target's measurements with the meta-predictor's embedding.
- Each median stands beside its interquartile range; the optimum is the table's best.

Models are trained by ``nag fit`` from the repository's configs through the one fit-and-cache
helper (reused only for the same config and overrides). Writes
``results/search_<space>.{json,md,png}`` (``--name``: another stem).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from pathlib import Path

import torch
from common import RESULTS, ROOT, command, figure, fit, write_report
from matplotlib.figure import Figure

from nag.benchmarks import NB201Benchmark, NBGraphBenchmark
from nag.benchmarks.nbgraph import DATASETS
from nag.search import LocalSearch, OtherTasksRanking, QueryOracle, RandomSearch, RegularizedEvolution, SourceTask
from nag.search.bo import BayesianOptimization
from nag.search.proposals import ProposalStats
from nag.search.report import format_proposals, format_summary, summarize
from nag.search.transfer import TransferSearch

NB201_TASKS = {
    "cifar10": "cifar10_test_200ep",
    "cifar100": "cifar100_test_200ep",
    "imagenet16": "imagenet16_test_200ep",
}
#: Tasks of another fidelity: one seed's validation accuracy, a noisier label of the same
#: trainings. The meta-predictor and the sources leave the target's whole dataset out, so
#: nothing learns from CIFAR-10's 200-epoch test accuracy when the target is its one-seed
#: validation accuracy.
NB201_OTHER_FIDELITY = {"cifar10_1seed": "cifar10_valid_200ep_1seed"}


def fit_config(config: str, root: Path, *overrides: str) -> Path:
    """``nag fit`` with the repository's config, cached under ``root`` by config and overrides."""
    return fit(
        ROOT / config,
        root,
        ["--trainer.enable_progress_bar=false", "--trainer.logger=false", "--test_after_fit=false", *overrides],
    )[0]


def tasks(args: argparse.Namespace) -> list[tuple[str, object, str, list[str], list[SourceTask]]]:
    """``(task name, benchmark, metric, meta-fit overrides, source tasks)`` per held-out task."""
    if args.space == "nb201":
        bench = NB201Benchmark(args.data)
        data = [
            "--data.init_args.benchmarks",
            json.dumps([{"class_path": "nag.benchmarks.NB201Benchmark", "init_args": {"path": args.data}}]),
        ]

        def same_data(metric: str) -> str:
            return next(m for m in NB201_TASKS.values() if bench.dataset_of(m) == bench.dataset_of(metric))

        return [
            (
                name,
                bench,
                metric,
                [*data, "--data.init_args.held_out", same_data(metric)],
                [SourceTask(bench, m) for m in NB201_TASKS.values() if bench.dataset_of(m) != bench.dataset_of(metric)],
            )
            for name, metric in {**NB201_TASKS, **NB201_OTHER_FIDELITY}.items()
            if name in args.tasks
        ]
    benches = {d: NBGraphBenchmark(d) for d in DATASETS}
    return [
        (
            d,
            benches[d],
            "valid_acc",
            ["--data.init_args.held_out", d],
            [SourceTask(b, "valid_acc") for o, b in benches.items() if o != d],
        )
        for d in DATASETS
        if d in args.tasks
    ]


METHODS = (
    "random",
    "rea",
    "local",
    "other_tasks",
    "transfer",
    "transfer+sources",
    "transfer+generator",
    "bo",
    "bo+generator",
)


def strategies(args: argparse.Namespace, metas: list[Path], generator: Path | None, sources: list) -> list[list]:
    """Per method, the strategies its seeds run: seed ``s`` runs ``strategies[s % len]``, so
    transfer's seeds each get their own meta-predictor when ``--meta-seeds`` = ``--seeds``."""
    make = {
        "random": lambda: [RandomSearch()],
        "rea": lambda: [RegularizedEvolution()],
        "local": lambda: [LocalSearch()],
        "other_tasks": lambda: [OtherTasksRanking(sources)],
        "transfer": lambda: [TransferSearch(str(m), batch_size=1) for m in metas],
        "transfer+sources": lambda: [TransferSearch(str(m), batch_size=1, sources=sources) for m in metas],
        "transfer+generator": lambda: [
            TransferSearch(
                str(m), str(generator), batch_size=1, num_samples=args.samples, regenerate_every=args.regenerate
            )
            for m in metas
        ],
        "bo": lambda: [BayesianOptimization(ensemble_size=3, train_steps=150, batch_size=10, hidden=32)],
        "bo+generator": lambda: [
            BayesianOptimization(
                str(generator), ensemble_size=3, train_steps=150, batch_size=10, hidden=32, num_samples=args.samples
            )
        ],
    }
    return [make[m]() for m in args.methods]


def plot(results: dict) -> Figure:
    names = list(results)
    fig, axes = figure(1, len(names), figsize=(4.5 * len(names), 3.6), squeeze=False)
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
    return fig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", choices=["nb201", "nbgraph"], default="nbgraph")
    parser.add_argument("--data", default=str(ROOT.parent / "shared/data/nb201/nb201.csv"))
    parser.add_argument("--tasks", nargs="*", default=None, help="held-out tasks (default: all)")
    parser.add_argument("--seeds", type=int, default=10, help="runs per method, the same for every method")
    parser.add_argument("--budget", type=int, default=100, help="queries per run, the same for every method")
    parser.add_argument("--meta-epochs", type=int, default=10)
    parser.add_argument(
        "--meta-seeds", type=int, default=None, help="independently meta-trained predictors per task (default: --seeds)"
    )
    parser.add_argument(
        "--methods",
        nargs="*",
        choices=METHODS,
        default=["random", "rea", "local", "other_tasks", "transfer", "transfer+sources"],
    )
    parser.add_argument("--generator-epochs", type=int, default=30)
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--regenerate", type=int, default=25)
    parser.add_argument("--work", default=str(ROOT / "runs/bench_search"))
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--name", default=None, help="results file stem (default: search_<space>)")
    args = parser.parse_args()
    args.tasks = args.tasks or (
        list(NB201_TASKS) + list(NB201_OTHER_FIDELITY) if args.space == "nb201" else list(DATASETS)
    )
    args.meta_seeds = args.meta_seeds or args.seeds
    torch.set_num_threads(1)  # tiny models: a second thread only adds contention on small machines
    work, out = Path(args.work), Path(args.out)

    generator = None
    if {"transfer+generator", "bo+generator"} & set(args.methods):
        # architectures need no labels: train on 90% of the table (val/test must not be empty); the
        # candidates are what it generates, so the held-back 10% stay reachable
        generator = fit_config(
            f"configs/{args.space}/diffusion.yaml",
            work / f"{args.space}_generator",
            "--trainer.max_epochs",
            str(args.generator_epochs),
            "--data.init_args.split=[0.9, 0.05, 0.05]",
            *(["--data.init_args.benchmark.init_args.path", args.data] if args.space == "nb201" else []),
        )

    results = {}
    for name, bench, metric, overrides, sources in tasks(args):
        metas = []
        if any(m.startswith("transfer") for m in args.methods):
            metas = [
                fit_config(
                    f"configs/{args.space}/meta_predictor.yaml",
                    work / f"{args.space}_meta_{name}_s{k}",
                    "--trainer.max_epochs",
                    str(args.meta_epochs),
                    "--seed_everything",
                    str(k),
                    "--data.init_args.seed",
                    str(k),
                    *overrides,
                )
                for k in range(args.meta_seeds)
            ]
        _, optimum = bench.best(metric)
        task = results[name] = {"metric": metric, "optimum": optimum, "methods": {}, "curves": {}}
        for options in strategies(args, metas, generator, sources):
            start, strategy = time.perf_counter(), options[0]
            runs = [
                options[s % len(options)].run(QueryOracle(bench, metric, budget=args.budget), args.budget, s)
                for s in range(args.seeds)
            ]
            summary = summarize(runs, optimum) | {
                "task": name,
                "models": len(options),
                "seconds_per_run": (time.perf_counter() - start) / args.seeds,
            }
            stats = [o.stats for o in options if o.stats is not None]
            if stats:
                summary["proposals"] = asdict(sum(stats, ProposalStats()))
            task["methods"][strategy.name] = summary
            task["curves"][strategy.name] = [r.best_curve for r in runs]
            print(
                f"{name:>10} {strategy.name:>22}: best@10={summary['best@10']:.4f} "
                f"reached={summary['reached_optimum']:.0%} q_opt={summary['median_queries_to_optimum']}",
                flush=True,
            )
            write(results, args, out)  # after every method: a long run stopped midway keeps what it measured


PROTOCOL = (
    "Protocol: every label of the target task any part of a method uses is a query; every method has the "
    "same budget and seeds; a method with a trained model gets {models} independently trained model(s) "
    "per task, one per seed modulo that number; 'runs (distinct)' counts runs that queried a different "
    "sequence; medians with [25th, 75th] percentiles; other_tasks_ranking orders candidates by the "
    "source tasks' own labels (no learning); transfer+sources takes that order as the prior its residual GP on "
    "the meta-predictor's embeddings corrects from the target's queries. Optimum = the table's best."
)


def write(results: dict, args: argparse.Namespace, out: Path) -> None:
    ran = command(__file__)
    lines = [
        f"# Search on {args.space}: best found vs queries",
        "",
        PROTOCOL.format(models=args.meta_seeds),
        "",
    ]
    for name, task in results.items():
        lines += [
            f"## held-out {name}: {task['metric']} (optimum {task['optimum']:.4f})",
            "",
            format_summary(list(task["methods"].values())),
            "",
        ]
        proposals = format_proposals(list(task["methods"].values()))
        if proposals:
            lines += ["What the generative methods' samples yielded, over all runs:", "", proposals, ""]
    report = {"command": ran, "args": vars(args), "results": results}
    write_report(out / (args.name or f"search_{args.space}"), ran, report, "\n".join(lines), plot(results))
    print("\n".join(lines), flush=True)


if __name__ == "__main__":
    main()
