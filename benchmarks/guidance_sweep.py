"""Guidance sweep: how the guidance scale trades quality for diversity in both generators,
beside uniform random sampling in the same run, on NAS-Bench-Graph Cora (embedded data).

Fits three models with ``nag fit`` (reused from ``--run-dir`` when a finished fit with the same
config, overrides and length is there, or given with ``--gen-ckpt`` / ``--discrete-ckpt`` /
``--predictor-ckpt``): the score-diffusion generator ``configs/nbgraph/diffusion.yaml``, the
discrete generator ``configs/nbgraph/discrete_diffusion.yaml`` (conditions valid_acc, latency,
params) and a noise-aware valid_acc predictor (``configs/quickstart_predictor.yaml`` on the
generators' split and seed, so it learns from their training split only). Then, each setting
with ``--samples`` samples and the same seed, so that only the scale changes between rows:

* score diffusion, ODE and PC samplers, guided by the predictor to maximise valid_acc with
  norm-ratio guidance (a scale is a ratio to the score's norm; scale 0 runs no guidance term);
* discrete diffusion with classifier-free guidance toward valid_acc = the table's 95th
  percentile (scale 0 is the unconditional model, 1 the conditional one, above 1 extrapolates),
  alone and, where the checkpoint has a regressor of its conditions, with its regressor
  guidance added at the checkpoint's strength;
* uniform random, the baseline.

Reported per row: validity before the space's projection (raw) and after it, uniqueness by
isomorphism class, novelty against the training split, distinct architectures, true valid_acc
(mean, best, share in the table's top 5 %), the predictor's mean estimate (what guidance
climbs; its gap to the true mean shows the predictor being exploited) and seconds per sample,
also as a ratio to uniform random.

    python benchmarks/guidance_sweep.py
Writes benchmarks/results/guidance_sweep.{json,md,png}.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from common import RESULTS, ROOT, command, figure, fit, markdown_table, write_report
from matplotlib.figure import Figure

import nag
from nag.datamodules import ArchitectureDataModule
from nag.datamodules.from_config import datamodule_from_config
from nag.diffusion.guidance import check_same_state, predictor_term
from nag.generation import Generator, score_samples
from nag.generation.baseline import UniformRandom
from nag.io.checkpoints import load_module
from nag.lightning_modules.predictor import PredictorModule
from nag.spaces.base import Arch, SearchSpace

METRIC = "valid_acc"
SCORE_CONFIG = ROOT / "configs" / "nbgraph" / "diffusion.yaml"
DISCRETE_CONFIG = ROOT / "configs" / "nbgraph" / "discrete_diffusion.yaml"
PREDICTOR_CONFIG = ROOT / "configs" / "quickstart_predictor.yaml"
#: The predictor reads noisy graphs, and learns from the generators' training split.
PREDICTOR_OVERRIDES = ["--model.init_args.noise_aware=true", "--data.init_args.split=[0.5,0.1,0.4]"]


def fit_shipped(
    name: str, config: Path, overrides: list[str], epochs: int | None, max_steps: int | None, run_dir: Path
) -> dict[str, Any]:
    """``nag fit`` on a shipped config; its last checkpoint, length and seconds. A finished fit
    with the same config file, overrides and length is reused (:func:`nag.io.fit_cache.fit_cached`)."""
    epochs = epochs or int(yaml.safe_load(config.read_text())["trainer"]["max_epochs"])
    args = [
        *overrides,
        f"--trainer.max_epochs={epochs}",
        "--trainer.logger=false",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        "--trainer.accelerator=cpu",
        "--trainer.callbacks=[]",
    ]
    if max_steps:
        args.append(f"--trainer.max_steps={max_steps}")
    checkpoint, seconds = fit(config, run_dir / name, args, quiet=False)
    return {"checkpoint": str(checkpoint), "epochs": epochs, "max_steps": max_steps, "train_seconds": seconds}


def given(path: str) -> dict[str, Any]:
    """A checkpoint passed on the command line: nothing known about how it was trained."""
    return {"checkpoint": path, "epochs": None, "max_steps": None, "train_seconds": None}


def predicted_mean(predictor: PredictorModule, space: SearchSpace, archs: list[Arch]) -> float:
    """The predictor's mean valid_acc estimate on clean architectures (benchmark units)."""
    if not archs:
        return float("nan")
    x, adj, mask = space.encode_batch(archs)
    with torch.no_grad():
        y = predictor.denormalize(predictor.predict_graphs(x, adj, mask).float())
    return float(y[:, predictor.targets.index(METRIC)].mean())


def row(
    method: str,
    scale: float | None,
    generator: Generator,
    args: argparse.Namespace,
    train_keys: set[str],
    bench: Any,
    predictor: PredictorModule,
    **sample: Any,
) -> dict[str, Any]:
    """One setting: its samples scored on the benchmark, the predictor's view and the time."""
    start = time.perf_counter()
    result = generator.sample(args.samples, seed=args.seed, **sample)
    seconds = time.perf_counter() - start
    space = generator.space
    summary = score_samples(result, space, train_keys, bench, [METRIC])
    distinct = len({space.key(a) for a in result.valid})
    return {
        "method": method,
        "scale": scale,
        **summary,
        "distinct": distinct,
        "distinct_share": distinct / args.samples,
        "predicted_mean": predicted_mean(predictor, space, result.valid),
        "seconds_per_sample": seconds / args.samples,
    }


def sweep(args: argparse.Namespace) -> dict[str, Any]:
    """Fits (or reuses) the three models and samples every setting."""
    plan = {
        "score": (args.gen_ckpt, SCORE_CONFIG, [], args.epochs),
        "discrete": (args.discrete_ckpt, DISCRETE_CONFIG, [], args.epochs),
        "predictor": (args.predictor_ckpt, PREDICTOR_CONFIG, PREDICTOR_OVERRIDES, args.predictor_epochs),
    }
    fits = {
        name: given(ckpt) if ckpt else fit_shipped(name, config, overrides, epochs, args.max_steps, Path(args.run_dir))
        for name, (ckpt, config, overrides, epochs) in plan.items()
    }
    ode = nag.load_generator(fits["score"]["checkpoint"], normalize_guidance=True)
    pc = nag.load_generator(fits["score"]["checkpoint"], normalize_guidance=True, sampler="pc")
    space = ode.space
    predictor = load_module(PredictorModule, fits["predictor"]["checkpoint"], space, "--predictor-ckpt")
    if not predictor.hparams.noise_aware:
        raise SystemExit(
            "error: --predictor-ckpt: guidance reads noisy graphs; train the predictor with "
            "--model.init_args.noise_aware=true"
        )
    check_same_state(ode.model, predictor)
    dm = datamodule_from_config(SCORE_CONFIG, ArchitectureDataModule, space, setup=False)
    bench, train_keys = dm.benchmark, dm.train_keys()
    column = bench.column(METRIC)
    p95 = float(np.nanquantile(column, 0.95))
    train_mean = float(np.mean([bench.query(a, METRIC) for a in dm.archs("train")]))

    def guided(w: float) -> dict[str, Any]:
        """Scale 0 runs no guidance term, so its time is the unguided sampler's."""
        return {"guidance": [predictor_term(predictor, METRIC, "max", scale=w)]} if w else {}

    common = (args, train_keys, bench, predictor)
    rows = [row("uniform random", None, UniformRandom(space), *common)]
    rows += [row("score, ode", w, ode, *common, **guided(w)) for w in args.score_scales]
    rows += [
        row(f"score, pc ({args.pc_steps} steps)", w, pc, *common, steps=args.pc_steps, **guided(w))
        for w in args.score_scales
    ]
    discrete = fits["discrete"]["checkpoint"]
    regressor = nag.load_generator(discrete).model.hparams.get("regressor_scale", 0.0)
    rows += [
        row(
            f"discrete, cfg {METRIC}={p95:.4g}" + (f" + regressor {r:g}" if r else ""),
            w,
            nag.load_generator(discrete, guidance_scale=w, regressor_scale=r),
            *common,
            conditions={METRIC: p95},
        )
        for r in dict.fromkeys([0.0, regressor])
        for w in args.cfg_scales
    ]
    base = rows[0]["seconds_per_sample"]
    for r in rows:
        r["time_vs_random"] = r["seconds_per_sample"] / base
    return {
        "metric": METRIC,
        "table_mean": float(np.nanmean(column)),
        "table_best": float(np.nanmax(column)),
        "table_p95": p95,
        "train_mean": train_mean,
        "fits": fits,
        "rows": rows,
    }


COLUMNS = {
    "method": "method",
    "scale": "scale",
    "raw_validity": "raw valid",
    "validity": "valid",
    "uniqueness": "unique (iso)",
    "novelty": "novel",
    "distinct": "distinct",
    f"{METRIC}/mean": "mean acc",
    f"{METRIC}/best": "best acc",
    f"{METRIC}/top_share": "top-5% share",
    "predicted_mean": "predicted mean",
    "seconds_per_sample": "s/sample",
    "time_vs_random": "time vs random",
}


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    return value if isinstance(value, str) else f"{value:.4g}"


def markdown(report: dict[str, Any]) -> str:
    fits = ", ".join(
        f"{k}: {v['epochs'] or '?'} epochs"
        + (f" (at most {v['max_steps']} steps)" if v["max_steps"] else "")
        + (f", {v['train_seconds']:.0f} s" if v["train_seconds"] is not None else ", given")
        for k, v in report["fits"].items()
    )
    lines = [
        "# Guidance scale: quality vs diversity on NAS-Bench-Graph Cora",
        "",
        f"{report['samples']} samples per row, seed {report['seed']} in every row (only the scale changes), "
        f"torch threads {report['torch_threads']}. valid_acc: table mean {report['table_mean']:.4g}, "
        f"training-split mean {report['train_mean']:.4g}, 95th percentile {report['table_p95']:.4g}, "
        f"best {report['table_best']:.4g}. Fits: {fits}.",
        "",
        "Score rows: predictor guidance (max valid_acc, norm ratio: the scale is a ratio to the score's norm; "
        "0 is unguided). Discrete rows: classifier-free guidance toward the 95th percentile (0 unconditional, "
        "1 conditional), alone and with the regressor's guidance toward the same value (+ regressor). "
        "Predicted mean: the noise-aware predictor's estimate on the clean samples. Time: "
        "seconds per sample, and as a ratio to uniform random in the same run.",
        "",
        *markdown_table(list(COLUMNS.values()), ([_cell(r[c]) for c in COLUMNS] for r in report["rows"])),
    ]
    return "\n".join(lines) + "\n"


def plot(report: dict[str, Any]) -> Figure:
    """Mean true accuracy against the distinct share, one line per generator and sampler
    through its scales."""
    fig, ax = figure(figsize=(6.4, 4.6))
    random, *rest = report["rows"]
    for method in dict.fromkeys(r["method"] for r in rest):
        rows = [r for r in rest if r["method"] == method]
        xs, ys = [r["distinct_share"] for r in rows], [r[f"{METRIC}/mean"] for r in rows]
        ax.plot(xs, ys, marker="o", label=method)
        for r, x, y in zip(rows, xs, ys):
            ax.annotate(f"{r['scale']:g}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.scatter(
        [random["distinct_share"]],
        [random[f"{METRIC}/mean"]],
        marker="*",
        s=160,
        color="black",
        label="uniform random",
        zorder=3,
    )
    ax.axhline(report["table_p95"], color="grey", linestyle="--", linewidth=1, label="table 95th percentile")
    ax.set_xlabel(f"distinct architectures / samples ({report['samples']} samples)")
    ax.set_ylabel(f"mean true {METRIC}")
    ax.set_title("Guidance scale (labels): quality vs diversity, NB-Graph Cora")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--score-scales",
        type=float,
        nargs="+",
        default=[0, 0.25, 0.5, 1, 2, 4],
        help="norm-ratio scales of the predictor guidance",
    )
    parser.add_argument(
        "--cfg-scales",
        type=float,
        nargs="+",
        default=[0, 1, 2, 3, 5],
        help="classifier-free guidance scales of the discrete generator",
    )
    parser.add_argument("--pc-steps", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=None, help="the generators' epochs (default: their configs')")
    parser.add_argument("--predictor-epochs", type=int, default=10)
    parser.add_argument("--max-steps", type=int, default=None, help="cap every fit's optimizer steps (a smoke run)")
    parser.add_argument("--gen-ckpt", default=None, help="a trained score-diffusion checkpoint instead of fitting one")
    parser.add_argument("--discrete-ckpt", default=None, help="a trained discrete-diffusion checkpoint")
    parser.add_argument("--predictor-ckpt", default=None, help="a noise-aware valid_acc predictor on the score SDE")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (tiny models: 1 is fastest)")
    parser.add_argument("--run-dir", default="runs/benchmarks/guidance_sweep")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    report = {
        "command": command(__file__, argv),
        "samples": args.samples,
        "seed": args.seed,
        "torch_threads": torch.get_num_threads(),
        **sweep(args),
    }
    text = markdown(report)
    write_report(Path(args.out) / "guidance_sweep", report["command"], report, text, plot(report), dpi=150)
    print(text)


if __name__ == "__main__":
    main()
