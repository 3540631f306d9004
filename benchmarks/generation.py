"""Generation benchmark: every shipped generator config, through the one Generator interface,
beside uniform random sampling in the same run.

For each space (NB-Graph Cora from the embedded data; NB201 and NB101 from ``../shared/data``;
CellSpace, the hierarchical pipeline's cells, and OFA-MobileNetV3, with no benchmark: their
generators learn the space's own random members) it fits the shipped score-diffusion and discrete-diffusion configs
with ``nag fit`` (their own epochs unless ``--max-epochs``; a finished fit of the same config
and epochs is reused), loads each with ``nag.load_generator`` and samples ``--samples``
architectures: score diffusion with the config's own sampler (``shipped``: what ``nag generate``
uses when told nothing), the ODE (50 Heun steps) and the PC sampler, discrete diffusion
unconditioned and conditioned on the config's first target (accuracy) at the table's 95th
percentile at each ``--guidance`` scale, with classifier-free guidance alone and, where the
checkpoint has a regressor of its conditions, with regressor guidance added (its own scale);
each conditioned setting on ``--condition-seeds`` seeds of 100 samples, each beside 100
uniform random ones of the same seed (median, range, and on how many seeds it beats random).
Reported per row: validity before the space's projection (raw) and after it,
uniqueness by isomorphism class and by string, novelty against the training split, KL of op
marginals to the training split, true accuracy (mean, best, share in the table's top 5 %),
distinct architectures and samples per second. Speed is a ratio to uniform random in the
same run. Beside them, two references for the conditioned rows: the mean true accuracy of
the 100 held-out table architectures that the device flow's ranker (``RidgeRanker``: a ridge
model of the encoded graph's entries and their pairwise products) fitted on the training
split's labels puts first (what a model of these
labels reaches on *novel* architectures), and the training split's own top 100 (what
memorising reaches).

    python benchmarks/generation.py --spaces nbgraph nb201 nb101 cell mbv3
Writes benchmarks/results/generation.json and .md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from common import RESULTS, ROOT, command, fit, markdown_table, write_report

import nag
from nag.datamodules import ArchitectureDataModule
from nag.datamodules.from_config import datamodule_from_config
from nag.generation import GeneratedSet, Generator, score_samples
from nag.generation.accuracy_ranker import RidgeRanker
from nag.generation.baseline import UniformRandom
from nag.lightning_modules.score_diffusion import DEFAULT_STEPS
from nag.metrics.generation import op_kl_divergence

#: Shipped configs per space: (score diffusion, discrete diffusion).
SPACES = {
    name: (ROOT / "configs" / name / "diffusion.yaml", ROOT / "configs" / name / "discrete_diffusion.yaml")
    for name in ("nbgraph", "nb201", "nb101", "mbv3")
}
SPACES["cell"] = (
    ROOT / "configs" / "hierarchical" / "cell_diffusion.yaml",
    ROOT / "configs" / "hierarchical" / "cell_discrete_diffusion.yaml",
)
DATA = {"nb201": "../shared/data/nb201/nb201.csv", "nb101": "../shared/data/nb101/nb101_1k.json"}


def fit_shipped(config: Path, run_dir: Path, max_epochs: int | None) -> tuple[Path, float]:
    """``nag fit`` on a shipped config (its own epochs unless ``max_epochs``) on the CPU; the last
    checkpoint and the seconds it took."""
    overrides = [
        "--trainer.logger=false",
        "--trainer.enable_model_summary=false",
        "--trainer.callbacks=[]",
        "--trainer.accelerator=cpu",
        *([f"--trainer.max_epochs={max_epochs}"] if max_epochs is not None else []),
    ]
    return fit(config, run_dir, overrides)


def row(
    name: str, generator: Generator, n: int, seed: int, train: dict[str, Any], metric: str | None, **sample: Any
) -> dict[str, Any]:
    """One setting: samples, their scores and the seconds they took."""
    start = time.perf_counter()
    result: GeneratedSet = generator.sample(n, seed=seed, **sample)
    seconds = time.perf_counter() - start
    space = generator.space
    summary = score_samples(result, space, train["keys"], train["bench"], [metric] if metric else [])
    valid = result.valid
    x, _, mask = space.encode_batch(valid) if valid else (torch.zeros(0, space.max_nodes, space.num_ops), None, None)
    return {
        "method": name,
        "samples": n,
        "distinct": len({space.key(a) for a in valid}),
        "op_kl": op_kl_divergence(x, train["x"], mask, train["mask"]) if valid else float("nan"),
        "samples_per_s": n / seconds,
        **summary,
    }


def evaluate_space(label: str, args: argparse.Namespace) -> dict[str, Any]:
    configs = dict(zip(("score", "discrete"), SPACES[label]))
    fits = {}
    for kind, config in configs.items():
        ckpt, seconds = fit_shipped(config, Path(args.run_dir) / label / kind, args.max_epochs)
        fits[kind] = {
            "config": str(config.relative_to(ROOT)),
            "checkpoint": str(ckpt),
            "train_seconds": seconds,
            "epochs": args.max_epochs or yaml.safe_load(config.read_text())["trainer"]["max_epochs"],
        }
    score = nag.load_generator(fits["score"]["checkpoint"])
    discrete = nag.load_generator(fits["discrete"]["checkpoint"])
    space = score.space
    # each generator against its own training split (the configs' splits differ)
    dms = {kind: datamodule_from_config(config, ArchitectureDataModule, space) for kind, config in configs.items()}
    train = {
        kind: {
            "keys": dm.train_keys(),
            "bench": dm.benchmark,
            "x": dm.datasets["train"].x,
            "mask": dm.datasets["train"].mask,
        }
        for kind, dm in dms.items()
    }
    bench = dms["score"].benchmark
    metric = dms["score"].targets[0] if dms["score"].targets else None
    n, seed = args.samples, args.seed
    hp = score.model.hparams
    shipped = (hp.sampler, hp.steps or DEFAULT_STEPS[hp.sampler])
    samplers = dict.fromkeys([shipped, ("ode", DEFAULT_STEPS["ode"]), ("pc", args.pc_steps)])
    rows = [
        row("uniform random (vs the score split)", UniformRandom(space), n, seed, train["score"], metric),
        *(
            row(
                f"score, {sampler} ({steps} steps{', shipped' if (sampler, steps) == shipped else ''})",
                nag.load_generator(fits["score"]["checkpoint"], sampler=sampler),
                n,
                seed,
                train["score"],
                metric,
                steps=steps,
            )
            for sampler, steps in samplers
        ),
        row("uniform random (vs the discrete split)", UniformRandom(space), n, seed, train["discrete"], metric),
        row("discrete (50 steps)", discrete, n, seed, train["discrete"], metric),
    ]
    report: dict[str, Any] = {"space": label, "metric": metric, "fits": fits}
    if metric is not None:
        column = bench.column(metric)
        top = float(np.quantile(column, 0.95))
        for kind, dm in dms.items():
            fits[kind]["train_mean"] = float(np.mean(column[[bench.index(a) for a in dm.archs("train")]]))
        report.update(table_mean=float(column.mean()), table_p95=top)
        if metric in discrete.condition_names:
            report["references"] = references(bench, metric, dms["discrete"])
            regressor = discrete.model.hparams.get("regressor_scale", 0.0)
            settings = [(w, r) for w in args.guidance for r in dict.fromkeys([0.0, regressor])]
            report["conditioned"] = [
                conditioned(fits["discrete"]["checkpoint"], w, r, args.condition_seeds, train["discrete"], metric, top)
                for w, r in settings
            ]
    base = rows[0]["samples_per_s"]
    for r in rows:
        r["speed_vs_random"] = r["samples_per_s"] / base
    return {**report, "rows": rows}


def conditioned(
    checkpoint: str, w: float, regressor: float, seeds: int, train: dict[str, Any], metric: str, value: float
) -> dict[str, Any]:
    """One conditioned setting on ``seeds`` seeds of 100 samples, each beside 100 uniform random
    architectures of the same seed: medians, the range of the mean, and the seeds it wins."""
    generator = nag.load_generator(checkpoint, guidance_scale=w, regressor_scale=regressor)
    random = UniformRandom(generator.space)
    runs = [row("", generator, 100, s, train, metric, conditions={metric: value}) for s in range(seeds)]
    baselines = [row("", random, 100, s, train, metric) for s in range(seeds)]
    means = [r[f"{metric}/mean"] for r in runs]
    pairs = [(r[f"{metric}/mean"], b[f"{metric}/mean"]) for r, b in zip(runs, baselines)]
    scored = [(g, u) for g, u in pairs if np.isfinite(g) and np.isfinite(u)]  # NaN: no sample in the table
    return {
        "method": f"discrete, {metric}={value:.4g}, w={w:g}, regressor {regressor:g}",
        "seeds": seeds,
        **{
            name: float(np.median([r[key.format(m=metric)] for r in runs])) for name, key in CONDITIONED_MEDIANS.items()
        },
        "mean_range": f"{min(means):.4g}-{max(means):.4g}",
        "random_mean": float(np.median([b[f"{metric}/mean"] for b in baselines])),
        "beats_random": f"{sum(g > u for g, u in scored)}/{len(scored)}",
    }


def references(bench: Any, metric: str, dm: Any, k: int = 100) -> dict[str, float]:
    """Mean true ``metric`` of the ``k`` held-out table architectures that the device flow's
    ranker (:class:`~nag.generation.accuracy_ranker.RidgeRanker`, fitted on the training split's
    labels) puts first, and of the training split's own top ``k``."""
    trained, labels = dm.archs("train"), dm.labels("train", metric)
    ranker = RidgeRanker(dm.space, trained, labels, metric)
    keys = dm.train_keys()
    held_out = [a for a in bench.archs() if dm.space.key(a) not in keys]
    ranked = np.argsort(-ranker.predict(held_out))[:k]
    return {
        "ranker_top_mean": float(np.mean([bench.query(held_out[i], metric) for i in ranked])),
        "memorised_top_mean": float(np.sort(labels)[-k:].mean()),
        "training_labels": ranker.labels,
    }


#: Conditioned-table header -> row key (medians over seeds).
CONDITIONED_MEDIANS = {
    "raw_validity": "raw_validity",
    "distinct": "distinct",
    "novelty": "novelty",
    "mean": "{m}/mean",
    "best": "{m}/best",
    "top_share": "{m}/top_share",
}
CONDITIONED_COLUMNS = ["method", *CONDITIONED_MEDIANS, "mean_range", "random_mean", "beats_random"]
COLUMNS = ["method", "raw_validity", "validity", "uniqueness", "uniqueness_string", "novelty", "op_kl", "distinct"]
METRIC_COLUMNS = ["{m}/in_table", "{m}/mean", "{m}/best", "{m}/top_share"]


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Generation: shipped configs through `nag.load_generator`",
        "",
        f"{report['samples']} samples per row, seed {report['seed']} (conditioned rows: 100 samples on each of "
        f"{report['condition_seeds']} seeds, medians), torch threads "
        f"{report['torch_threads']}; each generator's novelty and op KL against its own config's training "
        "split, uniform random against each; validity after the space's projection, raw validity before it; "
        "speed as a "
        "ratio to uniform random in the same run; in_table: share of valid samples the table measured "
        "(NB101 holds 1k cells, so most samples there have no accuracy); read_by_layout: share of samples "
        "with a position the space's layout read otherwise than drawn (OFA-MobileNetV3: a layer drawn after a "
        "stage's first skip, read as the stage's end; NB101 and CellSpace, score diffusion: the graph ends at its "
        "first output, so nodes drawn after it are padding and padding drawn before it is a node).",
        "",
    ]
    for space in report["spaces"]:
        m = space["metric"]
        fits = ", ".join(
            f"{k}: `{v['config']}`, {v['epochs']} epochs, {v['train_seconds']:.0f} s"
            + (f", training-split mean {m} {v['train_mean']:.4g}" if "train_mean" in v else "")
            for k, v in space["fits"].items()
        )
        title = f"## {space['space']}"
        if m is not None:
            title += f" ({m}: table mean {space['table_mean']:.4g}, 95th percentile {space['table_p95']:.4g})"
        lines += [title, "", f"Fits: {fits}.", ""]
        if "references" in space:
            ref = space["references"]
            lines += [
                f"References for the conditioned rows: a ridge ranker fitted on the discrete split's "
                f"{ref['training_labels']} labels, its top 100 held-out architectures: mean "
                f"{ref['ranker_top_mean']:.4g} (a model of these labels on novel architectures); the training "
                f"split's own top 100: mean {ref['memorised_top_mean']:.4g} (memorisation).",
                "",
            ]
        stops = ["read_by_layout"] if any("read_by_layout" in r for r in space["rows"]) else []
        cols = COLUMNS[:2] + stops + COLUMNS[2:] + ([c.format(m=m) for c in METRIC_COLUMNS] if m else [])
        cols.append("speed_vs_random")
        lines += markdown_table(
            [c.replace(f"{m}/", "") for c in cols],
            ([r.get(c, "") if isinstance(r.get(c, ""), str) else f"{r[c]:.4g}" for c in cols] for r in space["rows"]),
        )
        lines.append("")
        if space.get("conditioned"):
            lines += [
                "Conditioned on the 95th percentile, 100 samples per seed; mean_range over the seeds; random_mean: "
                "uniform random's median mean over the same seeds; beats_random: seeds where the mean of the "
                "generated samples is above uniform random's, of the seeds where both have samples in the table.",
                "",
                *markdown_table(
                    CONDITIONED_COLUMNS,
                    (
                        [r[c] if isinstance(r[c], str) else f"{r[c]:.4g}" for c in CONDITIONED_COLUMNS]
                        for r in space["conditioned"]
                    ),
                ),
                "",
            ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--spaces", nargs="+", default=["nbgraph", "nb201", "nb101", "cell", "mbv3"], choices=list(SPACES)
    )
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--pc-steps", type=int, default=100)
    parser.add_argument(
        "--guidance", type=float, nargs="+", default=[2.0, 3.0], help="classifier-free guidance scales, one row each"
    )
    parser.add_argument("--condition-seeds", type=int, default=5, help="seeds of each conditioned setting")
    parser.add_argument("--max-epochs", type=int, default=None, help="override the configs' epochs (a smoke run)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--run-dir", default="runs/benchmarks/generation")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    missing = [s for s in args.spaces if s in DATA and not Path(DATA[s]).is_file()]
    if missing:
        print(f"skipped {missing}: their tables are not under ../shared/data", file=sys.stderr)
    torch.set_num_threads(1)
    report = {
        "command": command(__file__),
        "samples": args.samples,
        "seed": args.seed,
        "condition_seeds": args.condition_seeds,
        "torch_threads": torch.get_num_threads(),
        "spaces": [],
    }
    for label in (s for s in args.spaces if s not in missing):
        report["spaces"].append(evaluate_space(label, args))
        write_report(Path(args.out) / "generation", report["command"], report, markdown(report))  # after every space
    print(markdown(report))


if __name__ == "__main__":
    main()
