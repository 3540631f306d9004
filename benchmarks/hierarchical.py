"""Hierarchical generative NAS end to end vs random networks of the same budgets, on MNIST-5k.

Runs ``nag search-hierarchical`` with ``configs/hierarchical/pipeline.yaml`` (task: 10 classes,
16x16x1 MNIST, <= 40k params, <= 4 MFLOPs): the cell ZC table, the cell encoder, the CCNF and
the macro transformer are computed/fitted when not cached yet (``runs/hierarchical``); then,
per seed, 64 macro samples get CCNF cells (conditioned on synflow/nwot at the 0.9 quantile and
on the slot's planned cost), networks outside the exact budgets are dropped, the rest ranked
by synflow+nwot, and the top 3 are trained for 2 epochs on the fixed 4000/1000 split -- next
to 3 random networks (random macro, random cells) within the same budgets, trained the same
way. Accuracy is each seed's mean over its 3 networks; mean ± std over seeds.

    python benchmarks/hierarchical.py                      # the config's seeds [0, 1, 2]
    python benchmarks/hierarchical.py --seeds [0,1,2,3,4] --training.epochs 3   # any pipeline flag
Writes benchmarks/results/hierarchical.json and .md.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

from nag import tables
from nag.cli import search_hierarchical_main
from nag.search.hierarchical import format_report

RESULTS = Path(__file__).parent / "results"
CONFIG = "configs/hierarchical/pipeline.yaml"


def main(argv: list[str]) -> None:
    torch.set_num_threads(1)  # tiny convolutions: one thread is faster than two on a shared 2-core box
    args = argv if "--config" in argv else ["--config", CONFIG, *argv]
    wall, cpu = time.perf_counter(), time.process_time()
    report = search_hierarchical_main([*args, "--output", "runs/hierarchical/benchmark_search.csv", "--quiet", "true"])
    report["benchmark"] = {"command": " ".join(["python benchmarks/hierarchical.py", *argv]),
                           "wall_seconds": time.perf_counter() - wall, "cpu_seconds": time.process_time() - cpu,
                           "threads": torch.get_num_threads()}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "hierarchical.json").write_text(json.dumps(report, indent=1, default=float))
    s, b = report["summary"], report["benchmark"]
    per_seed = [{"seed": run["seed"],
                 "generated": sum(r["accuracy"] for r in run["generated"]) / max(len(run["generated"]), 1),
                 "random": sum(r["accuracy"] for r in run["random"]) / len(run["random"]),
                 "kept": f"{run['satisfiers']}/{run['built']}", "invalid cells": f"{run['invalid_cells']}/{run['cell_draws']}",
                 "seconds": run["seconds"]} for run in report["runs"]]
    lines = [
        "# Hierarchical generative NAS on MNIST-5k",
        "",
        (f"`{b['command']}` -- {b['wall_seconds']:.0f} s wall, {b['cpu_seconds']:.0f} s CPU on {b['threads']} "
         f"thread(s) (models {report['seconds']['models']:.0f} s, of which cached ones are free; search "
         f"{report['seconds']['search']:.0f} s)."),
        "",
        (f"Generated top-{report['training']['top_k']} accuracy {s['generated_accuracy']['mean']:.4f} ± "
         f"{s['generated_accuracy']['std']:.4f} vs random {s['random_accuracy']['mean']:.4f} ± "
         f"{s['random_accuracy']['std']:.4f} (ratio {s['accuracy_ratio']:.3f}; mean ± std over seeds of each "
         f"seed's mean); within budget before the exact check {s['share_before_check']['mean']:.3f} (after: "
         f"{s['share_after_check']:.0%})."),
        "",
        "```",
        format_report(report),
        "",
        tables.format_table(per_seed, ["seed", "generated", "random", "kept", "invalid cells", "seconds"]),
        "```",
    ]
    (RESULTS / "hierarchical.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1:])
