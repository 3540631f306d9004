"""Generation benchmark: every shipped generator config, through the one Generator interface,
beside uniform random sampling in the same run.

For each space (NB-Graph Cora from the embedded data; NB201 and NB101 from ``../shared/data``)
it fits the shipped score-diffusion and discrete-diffusion configs with ``nag fit`` (their own
epochs unless ``--max-epochs``), loads each with ``nag.load_generator`` and samples
``--samples`` architectures: score diffusion with the ODE and the PC sampler, discrete
diffusion unconditioned and conditioned on the space's accuracy at the table's 95th
percentile. Reported per row: validity before the space's projection (raw) and after it,
uniqueness by isomorphism class and by string, novelty against the training split, KL of op
marginals to the training split, true accuracy (mean, best, share in the table's top 5 %),
distinct architectures and samples per second. Speed is a ratio to uniform random in the
same run.

    python benchmarks/generation.py --spaces nbgraph nb201 nb101
Writes benchmarks/results/generation.json and .md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

import nag
from nag.cli import main as nag_main
from nag.generation import GeneratedSet, Generator, score_samples
from nag.generation.baseline import UniformRandom
from nag.metrics.generation import op_kl_divergence

ROOT = Path(__file__).resolve().parents[1]
SPACES = {"nbgraph": "valid_acc", "nb201": "cifar10_test_200ep", "nb101": "test_acc"}
DATA = {"nb201": "../shared/data/nb201/nb201.csv", "nb101": "../shared/data/nb101/nb101_1k.json"}


def fit(config: Path, run_dir: Path, max_epochs: int | None) -> tuple[Path, float]:
    """``nag fit`` on a shipped config; the last checkpoint and the seconds it took."""
    args = ["fit", "--config", str(config), "--trainer.default_root_dir", str(run_dir), "--trainer.logger=false",
            "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false", "--test_after_fit=false",
            "--generate_after_fit=0", "--trainer.callbacks=[]", "--trainer.accelerator=cpu"]
    if max_epochs is not None:
        args.append(f"--trainer.max_epochs={max_epochs}")
    start = time.perf_counter()
    nag_main(args)
    return max(run_dir.rglob("last.ckpt"), key=lambda p: p.stat().st_mtime), time.perf_counter() - start


def row(name: str, generator: Generator, n: int, seed: int, train: dict[str, Any], metric: str,
        **sample: Any) -> dict[str, Any]:
    """One setting: samples, their scores and the seconds they took."""
    start = time.perf_counter()
    result: GeneratedSet = generator.sample(n, seed=seed, **sample)
    seconds = time.perf_counter() - start
    space = generator.space
    summary = score_samples(result, space, train["keys"], train["bench"], [metric])
    valid = result.valid
    x, _, mask = space.encode_batch(valid) if valid else (torch.zeros(0, space.max_nodes, space.num_ops), None, None)
    return {"method": name, "samples": n, "distinct": len({space.key(a) for a in valid}),
            "op_kl": op_kl_divergence(x, train["x"], mask, train["mask"]) if valid else float("nan"),
            "samples_per_s": n / seconds, **summary}


def evaluate_space(label: str, args: argparse.Namespace) -> dict[str, Any]:
    metric = SPACES[label]
    configs = {"score": ROOT / "configs" / label / "diffusion.yaml", "discrete": ROOT / "configs" / label / "discrete_diffusion.yaml"}
    fits, rows = {}, []
    for kind, config in configs.items():
        ckpt, seconds = fit(config, Path(args.run_dir) / label / kind, args.max_epochs)
        fits[kind] = {"checkpoint": str(ckpt), "train_seconds": seconds,
                      "epochs": args.max_epochs or yaml.safe_load(config.read_text())["trainer"]["max_epochs"]}
    score = nag.load_generator(fits["score"]["checkpoint"])
    discrete = nag.load_generator(fits["discrete"]["checkpoint"], guidance_scale=args.guidance)
    space = score.space
    dm = _datamodule(configs["score"], space)
    bench = dm.benchmark
    train = {"keys": dm.train_keys(), "bench": bench, "x": dm.datasets["train"].x, "mask": dm.datasets["train"].mask}
    column = bench.column(metric)
    top = float(np.quantile(column, 0.95))
    n, seed = args.samples, args.seed
    rows.append(row("uniform random", UniformRandom(space), n, seed, train, metric))
    rows.append(row("score, ode (50 Heun steps)", score, n, seed, train, metric))
    pc = nag.load_generator(fits["score"]["checkpoint"], sampler="pc")
    rows.append(row(f"score, pc ({args.pc_steps} steps)", pc, n, seed, train, metric, steps=args.pc_steps))
    rows.append(row("discrete (50 steps)", discrete, n, seed, train, metric))
    if metric in discrete.condition_names:
        rows.append(row(f"discrete | {metric}={top:.4g}, w={args.guidance:g} (100 samples)", discrete, 100, seed,
                        train, metric, conditions={metric: top}))
    base = rows[0]["samples_per_s"]
    for r in rows:
        r["speed_vs_random"] = r["samples_per_s"] / base
    train_values = bench.column(metric)[[bench.index(a) for a in dm.archs("train")]]
    return {"space": label, "metric": metric, "table_mean": float(column.mean()), "table_p95": top,
            "train_mean": float(np.mean(train_values)), "fits": fits, "rows": rows}


def _datamodule(config: Path, space: Any) -> Any:
    """The config's datamodule (its split and seed), set up: novelty and op marginals are
    measured against the generator's own training split."""
    from jsonargparse import ArgumentParser

    from nag.datamodules import ArchitectureDataModule

    parser = ArgumentParser()
    parser.add_argument("--data", type=ArchitectureDataModule)
    data = yaml.safe_load(config.read_text())["data"]
    dm = parser.instantiate_classes(parser.parse_object({"data": data})).data
    assert dm.space.identity == space.identity
    dm.setup()
    return dm


COLUMNS = ["method", "raw_validity", "validity", "uniqueness", "uniqueness_string", "novelty", "op_kl", "distinct",
           "{m}/mean", "{m}/best", "{m}/top_share", "speed_vs_random"]


def markdown(report: dict[str, Any]) -> str:
    lines = [f"<!-- {report['command']} -->", "# Generation: shipped configs through `nag.load_generator`", "",
             f"{report['samples']} samples per row (100 for the conditioned row), seed {report['seed']}, torch threads "
             f"{report['torch_threads']}; speed as a ratio to uniform random in the same run.", ""]
    for space in report["spaces"]:
        m = space["metric"]
        fits = ", ".join(f"{k}: {v['epochs']} epochs, {v['train_seconds']:.0f} s" for k, v in space["fits"].items())
        lines += [f"## {space['space']} ({m}; table mean {space['table_mean']:.4g}, training-split mean "
                  f"{space['train_mean']:.4g}, 95th percentile {space['table_p95']:.4g})", "", f"Fits: {fits}.", ""]
        cols = [c.format(m=m) for c in COLUMNS]
        lines += ["| " + " | ".join(c.replace(f"{m}/", "") for c in cols) + " |", "|" + "---|" * len(cols)]
        for r in space["rows"]:
            lines.append("| " + " | ".join(r[c] if isinstance(r[c], str) else f"{r[c]:.4g}" for c in cols) + " |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spaces", nargs="+", default=["nbgraph", "nb201", "nb101"], choices=list(SPACES))
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--pc-steps", type=int, default=100)
    parser.add_argument("--guidance", type=float, default=2.0, help="classifier-free guidance scale of the conditioned row")
    parser.add_argument("--max-epochs", type=int, default=None, help="override the configs' epochs (a smoke run)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--run-dir", default="runs/benchmarks/generation")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()
    missing = [s for s in args.spaces if s in DATA and not Path(DATA[s]).is_file()]
    if missing:
        print(f"skipped {missing}: their tables are not under ../shared/data", file=sys.stderr)
    torch.set_num_threads(1)
    report = {"command": "python benchmarks/generation.py " + " ".join(sys.argv[1:]), "samples": args.samples,
              "seed": args.seed, "torch_threads": torch.get_num_threads(),
              "spaces": [evaluate_space(s, args) for s in args.spaces if s not in missing]}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "generation.json").write_text(json.dumps(report, indent=1))
    text = markdown(report)
    (out / "generation.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
