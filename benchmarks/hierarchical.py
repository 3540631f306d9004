"""Hierarchical generative NAS end to end vs random networks of the same budgets, on MNIST-5k.

Runs ``nag search-hierarchical`` with ``configs/hierarchical/pipeline.yaml`` (task: 10 classes,
16x16x1 MNIST, <= 40k params, <= 4 MFLOPs): the cell ZC table, the cell encoder, the CCNF and
the macro transformer are computed/fitted when not cached yet (``runs/hierarchical``); then,
per seed, 64 macro samples get CCNF cells (4 drawn per slot, conditioned on synflow/nwot at the
0.9 quantile and on the planned cell's cost; the best predicted one that keeps the network
within budget is kept), networks outside the exact budgets are dropped, the rest ranked by
nwot, and the top 3 are trained (4 epochs, cosine learning rate, fixed 2000/3000 split, each
network's accuracy the mean of 2 trainings; every training stored in runs/trainings) -- next
to two random arms within the same budgets (random macro, random cells), trained the same
way: 3 unscreened random networks, and the top 3 by the same proxy among as many random
networks as the generator kept (so the gain over screening alone shows). Accuracy is each
seed's mean over its 3 networks; mean ± std over seeds. Every trained network is then trained
again from seeds no run used: the Spearman of the two measurements says how far the arms'
comparison stands above training noise.

    python benchmarks/hierarchical.py                      # the config's seeds [0, 1, 2, 3, 4]
    python benchmarks/hierarchical.py --seeds [0,1,2] --training.epochs 3   # any pipeline flag
Writes benchmarks/results/hierarchical.json and .md.
"""

from __future__ import annotations

import sys
import time
from dataclasses import replace

import numpy as np
import torch
from common import RESULTS, command, markdown_table, spearman, write_report
from jsonargparse import ActionConfigFile, ArgumentParser

from nag.report import tables
from nag.search.hierarchical import (
    CellProxies,
    HierarchicalGenerator,
    format_report,
    prepare_models,
    run_hierarchical_search,
)
from nag.search.hierarchical.pipeline import ARMS, training_benchmark, training_seeds

CONFIG = "configs/hierarchical/pipeline.yaml"


def models(settings: dict) -> tuple:
    """The pipeline's macro transformer and cell flow (cached by the search that just ran)."""
    return prepare_models(
        settings["cell_table"],
        settings["macro"],
        settings["cell_encoder"],
        settings["cell_flow"],
        settings["cache_dir"],
        quiet=True,
    )


def ablation(settings: dict) -> dict[str, dict[str, float]]:
    """Share of generated networks within budget before the exact check (generation only, no
    training) with one part of the cell generation switched off, same seeds and models."""
    macro, flow = models(settings)
    base, proxies = settings["generation"], CellProxies(settings["cell_table"])
    variants = {
        "as configured": base,
        "1 cell candidate per slot": replace(base, cell_candidates=1),
        "no ZC condition": replace(base, condition={}),
        "no cost match": replace(base, match=[]),
    }
    out = {}
    for name, generation in variants.items():
        generator = HierarchicalGenerator(macro, flow, proxies, generation)
        shares = [
            generator.generate(settings["task"].constraints, seed).share_before_check for seed in settings["seeds"]
        ]
        out[name] = {"mean": float(np.mean(shares)), "std": float(np.std(shares))}
    return out


def retest(settings: dict, report: dict) -> dict[str, float]:
    """Every trained network of every seed trained again from seeds no run used: the Spearman of
    the two measurements is the noise floor the arms' comparison stands on."""
    macro, flow = models(settings)
    space = HierarchicalGenerator(macro, flow, CellProxies(settings["cell_table"]), settings["generation"]).space
    training = settings["training"]
    first, again = [], []
    for run in report["runs"]:
        rows = [r for kind in ARMS for r in run[kind]]
        seeds = training_seeds(training, run["seed"], skip=training.repeats)
        bench = training_benchmark(space, settings["task"], training, settings["images"], seeds)
        first += [r["accuracy"] for r in rows]
        again += bench.values([space.from_string(r["arch"]) for r in rows], "val_accuracy").tolist()
    return {"networks": len(first), "spearman": spearman(first, again)}


def main(argv: list[str]) -> None:
    torch.set_num_threads(1)  # tiny convolutions: one thread is faster than two on a shared 2-core box
    parser = ArgumentParser(prog="benchmarks/hierarchical.py", exit_on_error=False)
    parser.add_argument("--config", action=ActionConfigFile)
    parser.add_function_arguments(run_hierarchical_search)
    args = argv if "--config" in argv else ["--config", CONFIG, *argv]
    settings = {k: v for k, v in parser.instantiate(parser.parse_args(args)).items() if k not in ("config", "__path__")}
    settings.update(output="runs/hierarchical/benchmark_search.csv", quiet=True)
    wall, cpu = time.perf_counter(), time.process_time()
    report = run_hierarchical_search(**settings)
    report["benchmark"] = {
        "command": command(__file__, argv),
        "wall_seconds": time.perf_counter() - wall,
        "cpu_seconds": time.process_time() - cpu,
        "threads": torch.get_num_threads(),
    }
    report["ablation_share_before_check"] = ablation(settings)
    report["retest"] = retest(settings, report)
    s, b = report["summary"], report["benchmark"]
    per_seed = [
        {
            "seed": run["seed"],
            "generated": sum(r["accuracy"] for r in run["generated"]) / max(len(run["generated"]), 1),
            "random": sum(r["accuracy"] for r in run["random"]) / len(run["random"]),
            "screened": sum(r["accuracy"] for r in run["random_screened"]) / len(run["random_screened"]),
            "candidates": run["random_candidates"],
            "kept": f"{run['satisfiers']}/{run['built']}",
            "invalid cells": f"{run['invalid_cells']}/{run['cell_draws']}",
            "seconds": run["seconds"],
        }
        for run in report["runs"]
    ]
    lines = [
        "# Hierarchical generative NAS on MNIST-5k",
        "",
        (
            f"`{b['command']}` -- {b['wall_seconds']:.0f} s wall, {b['cpu_seconds']:.0f} s CPU on {b['threads']} "
            f"thread(s) (models {report['seconds']['models']:.0f} s, of which cached ones are free; search "
            f"{report['seconds']['search']:.0f} s)."
        ),
        "",
        (
            f"Generated top-{report['training']['top_k']} accuracy {s['generated_accuracy']['mean']:.4f} ± "
            f"{s['generated_accuracy']['std']:.4f} vs random {s['random_accuracy']['mean']:.4f} ± "
            f"{s['random_accuracy']['std']:.4f} (ratio {s['accuracy_ratio']:.3f}; mean ± std over seeds of each "
            f"seed's mean); paired by seed, generated - random = {s['accuracy_gain']['mean']:+.4f} ± "
            f"{s['accuracy_gain']['std']:.4f}, generated ahead on {s['seeds_won']} of {len(report['seeds'])} seeds. "
            f"Random networks screened by the same proxy from as many candidates: "
            f"{s['random_screened_accuracy']['mean']:.4f} ± {s['random_screened_accuracy']['std']:.4f}; generated - "
            f"screened = {s['gain_vs_screened']['mean']:+.4f} ± {s['gain_vs_screened']['std']:.4f}, generated "
            f"ahead on {s['seeds_won_vs_screened']} of {len(report['seeds'])} seeds. "
            f"Within budget before the exact check {s['share_before_check']['mean']:.3f} (after: "
            f"{s['share_after_check']:.0%})."
        ),
        "",
        (
            f"Test-retest: the {report['retest']['networks']} trained networks trained again from seeds no run used "
            f"(each measurement the mean of {report['training']['repeats']} trainings): Spearman "
            f"**{report['retest']['spearman']:.3f}**."
        ),
        "",
        "```",
        format_report(report),
        "",
        tables.format_table(
            per_seed, ["seed", "generated", "random", "screened", "candidates", "kept", "invalid cells", "seconds"]
        ),
        "```",
        "",
        "Share within budget before the exact check, generation only (same models and seeds):",
        "",
        *markdown_table(
            ["cell generation", "share (mean ± std over seeds)"],
            ([name, f"{v['mean']:.3f} ± {v['std']:.3f}"] for name, v in report["ablation_share_before_check"].items()),
        ),
    ]
    write_report(RESULTS / "hierarchical", b["command"], report, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1:])
