"""Generation benchmark (DiffusionNAG on NAS-Bench-201 with 50% of cells held out).

Trains the score model on the train split, then samples ``--samples`` architectures with the
probability-flow ODE and the predictor-corrector sampler, and reports validity, uniqueness,
novelty (vs. the training split), KL of op marginals to the training split, true CIFAR-10
accuracy, and valid-unique architectures per second. Uniform random sampling from the space
runs in the same process as the baseline, so speed is reported as ratios.

    python benchmarks/generation.py --data ../shared/data/nb201/nb201.csv --epochs 30
Writes benchmarks/results/generation.json and .md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch

from nag.benchmarks import NB201Benchmark
from nag.datamodules import ArchitectureDataModule
from nag.generation import decode_samples, score_samples
from nag.lightning_modules.score_diffusion import ScoreDiffusionModule
from nag.metrics.generation import op_kl_divergence

METRIC = "cifar10_test_200ep"


def evaluate(name: str, make_graphs, dm: ArchitectureDataModule, bench: NB201Benchmark, train_x: torch.Tensor) -> dict:
    start = time.perf_counter()
    graphs = make_graphs()
    result = decode_samples(dm.space, graphs)
    seconds = time.perf_counter() - start
    summary = score_samples(result, dm.space, dm.train_keys(), bench, [METRIC])
    unique_valid = len({dm.space.key(a) for a in result.valid})
    return {"method": name, "seconds": seconds, "valid_unique_per_s": unique_valid / seconds,
            "op_kl": op_kl_divergence(graphs["x"], train_x), **summary}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/nb201/nb201.csv")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--ode-steps", type=int, default=50)
    parser.add_argument("--pc-steps", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()
    if not Path(args.data).is_file():
        sys.exit(f"skipped: NB201 table not found at {args.data} (pass --data)")

    pl.seed_everything(args.seed)
    bench = NB201Benchmark(args.data)
    dm = ArchitectureDataModule(bench, split=(0.5, 0.1, 0.4), seed=args.seed, batch_size=256)
    model = ScoreDiffusionModule(dm.spec(), dim=64, layers=3, heads=4, attention="adjacency",
                                 lr=2e-3, warmup_steps=50, ema_decay=0.995)
    trainer = pl.Trainer(max_epochs=args.epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, gradient_clip_val=1.0)
    start = time.perf_counter()
    trainer.fit(model, dm)
    train_seconds = time.perf_counter() - start
    model.eval()
    dm.setup()
    train_x = dm.datasets["train"].x

    space = dm.space
    rng = np.random.default_rng(args.seed)
    rows = [
        evaluate("random (baseline)", lambda: dict(zip(("x", "adj", "mask"), space.encode_batch(space.sample(args.samples, rng)))),
                 dm, bench, train_x),
        evaluate(f"ode ({args.ode_steps} Heun steps)",
                 lambda: model.sample_graphs(args.samples, "ode", args.ode_steps, args.seed), dm, bench, train_x),
        evaluate(f"pc ({args.pc_steps} steps)",
                 lambda: model.sample_graphs(args.samples, "pc", args.pc_steps, args.seed), dm, bench, train_x),
    ]
    base = rows[0]["valid_unique_per_s"]
    for r in rows:
        r["speed_vs_random"] = r["valid_unique_per_s"] / base
    _, best = bench.best(METRIC)
    report = {"benchmark": "nb201 generation, 50% held out", "epochs": args.epochs, "train_seconds": train_seconds,
              "samples": args.samples, "table_best": best, "torch_threads": torch.get_num_threads(), "rows": rows}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "generation.json").write_text(json.dumps(report, indent=1))
    cols = ["method", "validity", "uniqueness", "novelty", "op_kl", f"{METRIC}/mean", f"{METRIC}/best",
            f"{METRIC}/top_share", "valid_unique_per_s", "speed_vs_random"]
    lines = [f"NB201, 50% of cells held out; {args.epochs} epochs ({train_seconds:.0f} s) on CPU; "
             f"{args.samples} samples; table best {best:.2f}", "",
             "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join(r[c] if isinstance(r[c], str) else f"{r[c]:.4g}" for c in cols) + " |")
    (out / "generation.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
