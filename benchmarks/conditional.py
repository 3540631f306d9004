"""Hardware-aware conditional generation (DiNAS) on NAS-Bench-201: accuracy x FPGA latency.

Trains ``DiscreteDiffusionModule`` with ``nag fit`` on ``configs/nb201/discrete_diffusion.yaml``,
conditioned on CIFAR-10 test accuracy and HW-NAS-Bench FPGA latency (reused from
``runs/bench_conditional/`` when already trained with the same epochs and seed), then reports,
for the conditional model (classifier-free guidance plus, where the config trains one, its
regressor's guidance), the same model unconditionally (guidance scale 0, no regressor) and
uniform random sampling + filtering, all in this run:

* "top accuracy": best true accuracy of ``--top-samples`` samples vs the table optimum;
* "top accuracy under an FPGA budget" (the table's 25th latency percentile): share of samples
  within the budget (satisfaction per condition; the latency asked for is the budget itself,
  which HW-NAS-Bench's discrete latency levels make a hard ceiling), mean true accuracy of those vs the best
  satisfying architecture in the table; validity, uniqueness, novelty (vs the training split);
* seconds per architecture on CPU, sampled in batches (torch threads: ``--threads``), also with
  fewer sampling steps (``--speed-steps``) to show what speed costs in quality;
* Pareto mode: hypervolume of the generated front vs the benchmark's true front.

    python benchmarks/conditional.py --nb201 ../shared/data/nb201/nb201.csv --epochs 30
Writes benchmarks/results/conditional.{json,md,png}.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from common import RESULTS, ROOT, command, figure, fit, markdown_table, write_report
from matplotlib.figure import Figure

from nag.benchmarks import NB201Benchmark
from nag.datamodules import ArchitectureDataModule
from nag.generation import GeneratedSet, Generator, ModelGenerator, score_samples
from nag.generation.baseline import UniformRandom
from nag.generation.pareto import ParetoSweep, pareto_sweep, true_values
from nag.io.checkpoints import load_module
from nag.lightning_modules.discrete_diffusion import DiscreteDiffusionModule
from nag.metrics.pareto import hypervolume

CONFIG = ROOT / "configs" / "nb201" / "discrete_diffusion.yaml"
ACC, LAT = "cifar10_test_200ep", "hwnb_cifar10_fpga_latency"
CONDITIONS = [ACC, LAT]
#: What a reused checkpoint must have been trained with: the config and the model's code.
MODEL_SOURCES = [
    CONFIG,
    *(
        ROOT / "nag" / f
        for f in (
            "lightning_modules/discrete_diffusion.py",
            "nn/graph_transformer.py",
            "nn/conditions.py",
            "diffusion/discrete.py",
        )
    ),
]


def fit_model(args: argparse.Namespace) -> tuple[Path, float]:
    """``nag fit`` on the repository config with the two conditions, and its wall-clock seconds;
    reused (with the seconds it took then) when trained with the same epochs, seed, config and
    code (:func:`nag.io.fit_cache.fit_cached`)."""
    fingerprint = hashlib.sha1(b"".join(p.read_bytes() for p in MODEL_SOURCES)).hexdigest()[:10]
    targets = json.dumps(CONDITIONS)
    overrides = [
        f"--trainer.max_epochs={args.epochs}",
        "--trainer.accelerator=cpu",
        "--trainer.enable_progress_bar=false",
        "--trainer.logger=false",
        f"--seed_everything={args.seed}",
        f"--model.init_args.conditions={targets}",
        f"--data.init_args.targets={targets}",
        f"--data.init_args.benchmark.init_args.path={args.nb201}",
    ]
    return fit(CONFIG, args.run_dir, overrides, extra={"code": fingerprint}, quiet=False, refit=args.retrain)


def data_module(bench: NB201Benchmark, seed: int) -> ArchitectureDataModule:
    """The training data as the config defines it (split, seed), for novelty and targets."""
    init = yaml.safe_load(CONFIG.read_text())["data"]["init_args"]
    return ArchitectureDataModule(bench, targets=CONDITIONS, split=tuple(init["split"]), seed=seed)


def timed(generator: Generator, n: int, **kwargs: Any) -> tuple[list, float]:
    """Decoded samples and seconds per sample (sampling + decoding)."""
    start = time.perf_counter()
    archs = generator.sample(n, **kwargs).archs
    return archs, (time.perf_counter() - start) / n


def budget_scenario(
    name: str,
    archs: list,
    seconds: float,
    bench: NB201Benchmark,
    dm: ArchitectureDataModule,
    budget: float,
    acc_top5: float,
    best_in_budget: float,
) -> dict[str, Any]:
    values = true_values(bench, archs, [ACC, LAT])
    with np.errstate(invalid="ignore"):
        lat_ok = values[:, 1] <= budget  # NaN (unknown latency) never fits
    acc_ok = values[:, 0] >= acc_top5
    summary = score_samples(GeneratedSet(archs, [None] * len(archs)), bench.space, dm.train_keys(), bench, [])
    mean_ok = float(np.mean(values[lat_ok, 0])) if lat_ok.any() else math.nan
    return {
        "method": name,
        "samples": len(archs),
        "seconds_per_arch": seconds,
        "validity": summary["validity"],
        "uniqueness": summary["uniqueness"],
        "novelty": summary["novelty"],
        "latency_satisfied": float(lat_ok.mean()),
        "accuracy_top5_satisfied": float(acc_ok.mean()),
        "both_satisfied": float((lat_ok & acc_ok).mean()),
        "mean_acc_satisfying": mean_ok,
        "best_acc_satisfying": float(np.max(values[lat_ok, 0])) if lat_ok.any() else math.nan,
        "gap_to_best_in_budget_pp": best_in_budget - mean_ok,
    }


def top_scenario(name: str, archs: list, bench: NB201Benchmark, optimum: float, train_keys: set) -> dict[str, Any]:
    """Best and mean true accuracy of the samples, and the best of the *novel* ones (not in the
    training split): an optimum the model was trained on is recalled, not found."""
    acc = true_values(bench, archs, [ACC])[:, 0]
    novel = np.array([a is not None and bench.space.key(a) not in train_keys for a in archs])
    best = float(np.nanmax(acc)) if not np.isnan(acc).all() else math.nan
    best_novel = float(np.nanmax(acc[novel])) if (novel & ~np.isnan(acc)).any() else math.nan
    reached = best >= optimum - 1e-9
    return {
        "method": name,
        "samples": len(archs),
        "best_acc": best,
        "mean_acc": float(np.nanmean(acc)),
        "novelty": float(novel.mean()),
        "best_novel_acc": best_novel,
        "optimum": optimum,
        "reached_optimum": ("found" if best_novel >= optimum - 1e-9 else "recalled (in training split)")
        if reached
        else "no",
    }


def pareto_row(name: str, sweep: ParetoSweep, median_ref: np.ndarray) -> dict[str, Any]:
    tight_true = hypervolume(sweep.true_front.points, median_ref, [True, False])
    tight = hypervolume(sweep.front.points, median_ref, [True, False]) if len(sweep.front.points) else 0.0
    return {
        "method": name,
        "samples": len(sweep.archs),
        "front_size": len(sweep.front.archs),
        "hypervolume": sweep.hypervolume,
        "true_hypervolume": sweep.true_hypervolume,
        "hv_ratio": sweep.hypervolume_ratio,
        "hv_ratio_median_box": tight / tight_true,
        "front": sweep.front.points.tolist(),
    }


def plot(sweeps: dict[str, ParetoSweep], budget: float) -> Figure:
    fig, ax = figure(figsize=(6.4, 4.6))
    truth = next(iter(sweeps.values())).true_front.points
    ax.step(truth[::-1, 1], truth[::-1, 0], where="post", color="black", lw=2, label="true front (table)")
    for (name, sweep), color in zip(sweeps.items(), ("tab:red", "tab:blue", "tab:gray")):
        ok = ~np.isnan(sweep.values).any(1)
        ax.scatter(sweep.values[ok, 1], sweep.values[ok, 0], s=6, alpha=0.25, color=color)
        front = sweep.front.points
        ax.step(
            front[::-1, 1],
            front[::-1, 0],
            where="post",
            color=color,
            lw=1.3,
            label=f"{name} (HV ratio {sweep.hypervolume_ratio:.3f})",
        )
    ax.axvline(budget, color="k", ls=":", lw=1, label="FPGA budget (25th pct.)")
    ax.set_xlabel("FPGA latency (ms, HW-NAS-Bench)")
    ax.set_ylabel("CIFAR-10 test accuracy (%)")
    ax.set_ylim(80, 95)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title("NB201: generated vs true Pareto fronts")
    fig.tight_layout()
    return fig


def fmt(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "yes" if value else "no"
    return f"{value:.4g}"


def table(rows: list[dict[str, Any]], cols: list[str]) -> list[str]:
    return markdown_table(cols, ([fmt(r[c]) for c in cols] for r in rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nb201", default="../shared/data/nb201/nb201.csv")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--steps", type=int, default=50, help="ancestral sampling steps (of T=500)")
    parser.add_argument("--guidance", type=float, default=2.0, help="classifier-free guidance scale")
    parser.add_argument(
        "--mode",
        choices=("joint", "compositional"),
        default="joint",
        help="guidance mode (joint: one pass with all conditions)",
    )
    parser.add_argument("--samples", type=int, default=500, help="samples under the latency budget")
    parser.add_argument("--top-samples", type=int, default=100)
    parser.add_argument("--latency-quantile", type=float, default=0.25, help="the budget, as a table quantile")
    parser.add_argument(
        "--latency-target-quantile",
        type=float,
        default=None,
        help="latency asked for in the budget scenario, as a table quantile (default: the budget)",
    )
    parser.add_argument(
        "--speed-steps",
        type=int,
        nargs="*",
        default=(5, 10, 25),
        help="also time the budget scenario with these step counts (speed vs quality)",
    )
    parser.add_argument("--pareto-grid", type=int, nargs=2, default=(3, 8), metavar=("ACC", "LAT"))
    parser.add_argument("--pareto-per-target", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a busy 2-core box)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--run-dir", default=str(ROOT / "runs" / "bench_conditional"))
    parser.add_argument("--retrain", action="store_true")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    if not Path(args.nb201).is_file():
        sys.exit(f"skipped: NB201 table not found at {args.nb201} (pass --nb201)")
    args.nb201 = str(Path(args.nb201).resolve())
    torch.set_num_threads(args.threads)

    ckpt, train_seconds = fit_model(args)
    bench = NB201Benchmark(args.nb201)
    dm = data_module(bench, args.seed)
    model = load_module(DiscreteDiffusionModule, ckpt, bench.space, "--ckpt")
    space = bench.space
    acc, lat = bench.column(ACC), bench.column(LAT)
    best_arch, optimum = bench.best(ACC)
    train_acc = np.array([bench.query(a, ACC) for a in dm.archs("train")])
    train_keys = {space.key(a) for a in dm.archs("train")}
    top_target = float(train_acc.max())  # the best accuracy the model was shown
    budget = float(np.quantile(lat, args.latency_quantile))
    target_q = args.latency_quantile if args.latency_target_quantile is None else args.latency_target_quantile
    lat_target = float(np.quantile(lat, target_q))
    best_in_budget = float(acc[lat <= budget].max())
    acc_top5 = float(np.quantile(acc, 0.95))
    w = args.guidance
    # the Pareto grid spans the table's range, a little beyond the training split's
    conditional = ModelGenerator(
        model, space, batch_size=args.batch_size, guidance_scale=w, mode=args.mode, extrapolate=True
    )
    unconditional = ModelGenerator(
        model,
        space,
        batch_size=args.batch_size,
        guidance_scale=0.0,  # null tokens only
        regressor_scale=0.0,
        extrapolate=True,
    )

    def methods(conditions: dict[str, float] | None, random_name: str) -> list[tuple[str, Generator, dict[str, Any]]]:
        """The same question to the three generators (random ignores it)."""
        asked = {"steps": args.steps, **({"conditions": conditions} if conditions else {})}
        return [
            ("conditional", conditional, asked),
            ("unconditional (w=0)", unconditional, asked),
            (random_name, UniformRandom(space), asked),
        ]

    top_rows = [
        top_scenario(name, timed(gen, args.top_samples, seed=args.seed, **kw)[0], bench, optimum, train_keys)
        for name, gen, kw in methods({ACC: top_target}, "random")
    ]
    budget_rows = []
    for name, gen, kw in methods({ACC: top_target, LAT: lat_target}, "random + filter"):
        archs, secs = timed(gen, args.samples, seed=args.seed + 1, **kw)
        budget_rows.append(budget_scenario(name, archs, secs, bench, dm, budget, acc_top5, best_in_budget))
    for steps in args.speed_steps:
        kw = {**methods({ACC: top_target, LAT: lat_target}, "")[0][2], "steps": steps}
        archs, secs = timed(conditional, args.samples, seed=args.seed + 1, **kw)
        row = budget_scenario(f"conditional, {steps} steps", archs, secs, bench, dm, budget, acc_top5, best_in_budget)
        budget_rows.insert(len(budget_rows) - 2, row)
    base = budget_rows[-1]["latency_satisfied"]
    for r in budget_rows:
        r["satisfaction_vs_random"] = r["latency_satisfied"] / base if base else math.nan

    # Pareto mode
    sweeps = {
        name: pareto_sweep(
            gen,
            bench,
            (ACC, LAT),
            points=tuple(args.pareto_grid),
            samples_per_target=args.pareto_per_target,
            seed=args.seed + 2,
            steps=args.steps,
        )
        for name, gen, _ in methods(None, "random")
    }
    median_ref = np.array([np.median(acc), np.median(lat)])
    pareto_rows = [pareto_row(n, s, median_ref) for n, s in sweeps.items()]

    report = {
        "command": command(__file__),
        "benchmark": "nb201 conditional generation (accuracy x FPGA latency)",
        "checkpoint": str(ckpt),
        "epochs": args.epochs,
        "train_seconds": train_seconds,
        "torch_threads": torch.get_num_threads(),
        "steps": args.steps,
        "guidance_scale": w,
        "regressor_scale": model.hparams.get("regressor_scale", 0.0),
        "guidance_mode": args.mode,
        "table_optimum": optimum,
        "top_accuracy_target": top_target,
        "optimum_in_training_split": space.key(best_arch) in train_keys,
        "latency_budget": budget,
        "latency_target": lat_target,
        "best_acc_within_budget_in_table": best_in_budget,
        "acc_top5_threshold": acc_top5,
        "pareto_reference": sweeps["conditional"].reference.tolist(),
        "pareto_median_reference": median_ref.tolist(),
        "pareto_targets": sweeps["conditional"].targets.tolist(),
        "top_accuracy": top_rows,
        "budget": budget_rows,
        "pareto": pareto_rows,
    }
    lines = [
        (
            f"NB201, conditions {ACC} + {LAT}; DiscreteDiffusionModule from `{CONFIG.relative_to(ROOT)}`, "
            f"{args.epochs} epochs ({train_seconds:.0f} s) on CPU; ancestral sampling, {args.steps} steps, "
            f"guidance scale {w} ({args.mode}), regressor guidance {model.hparams.get('regressor_scale', 0.0):g}, "
            f"torch threads {torch.get_num_threads()}."
        ),
        "",
        (
            f"## Top accuracy (condition {ACC} = {top_target:.2f}, the training split's best; "
            f"table optimum {optimum:.2f}, "
            f"{'in' if report['optimum_in_training_split'] else 'not in'} the training split)"
        ),
        "",
        *table(
            top_rows,
            ["method", "samples", "best_acc", "mean_acc", "novelty", "best_novel_acc", "optimum", "reached_optimum"],
        ),
        "",
        (
            f"## Top accuracy under an FPGA budget of {budget:.3f} ms (25th percentile; asked for latency "
            f"{lat_target:.3f} ms = {target_q:.0%} quantile); best architecture within budget in "
            f"the table: {best_in_budget:.2f}; accuracy 'top 5%' means >= {acc_top5:.2f}"
        ),
        "",
        *table(
            budget_rows,
            [
                "method",
                "samples",
                "latency_satisfied",
                "satisfaction_vs_random",
                "accuracy_top5_satisfied",
                "both_satisfied",
                "mean_acc_satisfying",
                "gap_to_best_in_budget_pp",
                "best_acc_satisfying",
                "validity",
                "uniqueness",
                "novelty",
                "seconds_per_arch",
            ],
        ),
        "",
        (
            f"## Pareto mode ({args.pareto_grid[0]} x {args.pareto_grid[1]} targets "
            f"x {args.pareto_per_target} samples); "
            f"reference = table nadir {np.round(report['pareto_reference'], 3).tolist()}, "
            f"median box = {np.round(median_ref, 3).tolist()}"
        ),
        "",
        *table(
            pareto_rows,
            ["method", "samples", "front_size", "hypervolume", "true_hypervolume", "hv_ratio", "hv_ratio_median_box"],
        ),
        "",
        "![Pareto fronts](conditional.png)",
    ]
    write_report(Path(args.out) / "conditional", report["command"], report, "\n".join(lines), plot(sweeps, budget), 130)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
