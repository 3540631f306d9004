"""Macro transformer benchmark: budget satisfaction before the exact check, vs random macros.

Builds the datamodule of a macro-transformer config (its cached evolution data), trains the
transformer on the train settings with ``nag fit`` (a finished fit of the same config and
arguments in ``--run-dir`` is reused: :func:`nag.io.fit_cache.fit_cached`), then for every
held-out test setting (task + params/FLOPs budgets never seen in training) samples
``--samples`` macro architectures and measures the share within both exact budgets -- what
the hierarchical pipeline gets before it filters -- next to uniform random macro
architectures of the same space (the baseline, same process). For ``--zc-settings`` settings
it also scores satisfying samples with the data's ZC fitness (synflow) against random
satisfiers and the evolution's best.

    python benchmarks/macro_transformer.py --config configs/hierarchical/macro_transformer.yaml --epochs 60
Writes benchmarks/results/macro_transformer.json and .md.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from common import RESULTS, command, fit, markdown_table, write_report

from nag.datamodules.from_config import datamodule_from_config
from nag.datamodules.macro import MacroDataModule
from nag.datamodules.macro_evolution import ZCFitness
from nag.io.checkpoints import load_module
from nag.lightning_modules.macro_transformer import MacroTransformerModule
from nag.spaces.macro import MacroConstraints


def shares(space, archs, c: MacroConstraints) -> dict[str, float]:
    costs = [space.cost(a, c) for a in archs]
    ok_p = [p <= c.max_params for p, _ in costs]
    ok_f = [f <= c.max_flops for _, f in costs]
    both = [a and b for a, b in zip(ok_p, ok_f)]
    use = [p / c.max_params for (p, _), ok in zip(costs, both) if ok]
    return {
        "params_ok": float(np.mean(ok_p)),
        "flops_ok": float(np.mean(ok_f)),
        "both_ok": float(np.mean(both)),
        "params_use": float(np.median(use)) if use else float("nan"),
    }


def summarise(rows: list[dict], key: str) -> dict[str, float]:
    values = np.array([r[key] for r in rows], dtype=float)
    values = values[~np.isnan(values)]
    return {"mean": float(values.mean()), "std": float(values.std()), "n": len(values)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/hierarchical/macro_transformer.yaml")
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--temperatures", type=float, nargs="+", default=[1.0, 0.7])
    parser.add_argument("--zc-settings", type=int, default=10)
    parser.add_argument("--zc-samples", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--run-dir", default="runs/benchmarks/macro_transformer", help="fits, reused by digest")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    torch.set_num_threads(1)

    dm = datamodule_from_config(args.config, MacroDataModule)
    space = dm.space

    os.environ.setdefault("OMP_NUM_THREADS", "1")  # the fit runs in `nag fit`, one thread like this process
    overrides = [
        f"--trainer.max_epochs={args.epochs}",
        f"--seed_everything={args.seed}",
        "--trainer.accelerator=cpu",
        "--trainer.logger=false",
        "--trainer.enable_model_summary=false",
    ]
    ckpt, train_seconds = fit(args.config, args.run_dir, overrides)
    model = load_module(MacroTransformerModule, ckpt, None, "--config")
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    val = trainer.validate(model, dm, verbose=False)[0]
    model.eval()

    settings = dm.constraints("test")
    rng = np.random.default_rng(args.seed)
    per_method: dict[str, list[dict]] = {"random (baseline)": []}
    samples: dict[str, list] = {"random (baseline)": []}
    start = time.perf_counter()
    for t in args.temperatures:
        per_method[f"transformer T={t}"], samples[f"transformer T={t}"] = [], []
    for i, c in enumerate(settings):
        randoms = space.sample(args.samples, rng)
        per_method["random (baseline)"].append(shares(space, randoms, c))
        samples["random (baseline)"].append(randoms)
        for t in args.temperatures:
            archs = model.sample(c, args.samples, temperature=t, seed=args.seed + i)
            per_method[f"transformer T={t}"].append(shares(space, archs, c))
            samples[f"transformer T={t}"].append(archs)
    sample_seconds = time.perf_counter() - start

    fitness = ZCFitness(dm.images, dm.proxy, dm.proxy_batch_size, dm.seed)
    zc: dict[str, list[float]] = {name: [] for name in samples}
    zc["evolution best (data)"] = []
    for i, c in enumerate(settings[: args.zc_settings]):
        best = [r["fitness"] for r in dm.records if MacroConstraints(*(r[f] for f in MacroConstraints._fields)) == c]
        zc["evolution best (data)"].append(max(best))
        for name, per_setting in samples.items():
            pool = per_setting[i]
            if name.startswith("random"):  # rejection sampling: random satisfiers
                pool = [a for a in space.sample(4000, np.random.default_rng([args.seed, i])) if space.satisfies(a, c)]
            ok = [a for a in pool if space.satisfies(a, c)][: args.zc_samples]
            if ok:
                zc[name].append(float(np.mean([fitness(space, a, c) for a in ok])))

    result = {
        "config": args.config,
        "records": len(dm.records),
        "train_settings": len(dm.constraints("train")),
        "test_settings": len(settings),
        "epochs": args.epochs,
        "train_seconds": train_seconds,
        "sample_seconds": sample_seconds,
        "samples_per_setting": args.samples,
        "val": {k: float(v) for k, v in val.items()},
        "methods": {
            name: {key: summarise(rows, key) for key in ("params_ok", "flops_ok", "both_ok", "params_use")}
            for name, rows in per_method.items()
        },
        "zc_fitness": {name: summarise([{"v": v} for v in values], "v") for name, values in zc.items() if values},
        "proxy": dm.proxy,
    }
    base = result["methods"]["random (baseline)"]["both_ok"]["mean"]
    for stats in result["methods"].values():
        stats["both_ok_vs_random"] = stats["both_ok"]["mean"] / base if base else float("inf")

    lines = [
        (
            f"Macro transformer: {result['records']} evolved architectures from {result['train_settings']} train "
            f"settings; {len(settings)} held-out test settings x {args.samples} samples; {args.epochs} epochs "
            f"({train_seconds:.0f} s) on CPU. Shares are before any exact check (mean ± std over settings)."
        ),
        "",
        *markdown_table(
            ["method", "params ok", "FLOPs ok", "both ok", "both ok vs random", "median params / budget (satisfiers)"],
            (
                [
                    name,
                    *(f"{s[k]['mean']:.3f} ± {s[k]['std']:.3f}" for k in ("params_ok", "flops_ok", "both_ok")),
                    f"{s['both_ok_vs_random']:.2f}",
                    f"{s['params_use']['mean']:.3f}",
                ]
                for name, s in result["methods"].items()
            ),
        ),
        "",
        (
            f"ZC fitness ({dm.proxy}) of up to {args.zc_samples} satisfiers per setting, first "
            f"{args.zc_settings} test settings (mean ± std over settings):"
        ),
        "",
        *markdown_table(
            ["source", "mean fitness", "settings"],
            ([name, f"{s['mean']:.2f} ± {s['std']:.2f}", s["n"]] for name, s in result["zc_fitness"].items()),
        ),
    ]
    write_report(Path(args.out) / "macro_transformer", command(__file__), result, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
