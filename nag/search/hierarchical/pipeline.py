"""The hierarchical search end to end: its models (given, or fitted by ``nag fit`` and
cached), generation, ZC ranking and brief training beside random networks of the same budgets."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from nag.errors import ConfigError
from nag.io.checkpoints import load_checkpoint, load_module
from nag.io.fit_cache import fit_cached
from nag.io.writers import write_rows
from nag.lightning_modules.cell_flow import CellFlowModule
from nag.lightning_modules.macro_transformer import MacroTransformerModule
from nag.search.hierarchical.cell_table import CellProxies, build_cell_table
from nag.search.hierarchical.config import (
    DEFAULT_ENCODER,
    DEFAULT_FLOW,
    DEFAULT_GENERATION,
    DEFAULT_MACRO,
    DEFAULT_TABLE,
    DEFAULT_TASK,
    DEFAULT_TRAINING,
    MNIST,
    CellTable,
    Generation,
    ModelFit,
    Task,
    Training,
    shown_proxies,
)
from nag.search.hierarchical.generator import HierarchicalGenerator, random_satisfiers
from nag.search.hierarchical.report import format_report
from nag.search.training_benchmark import TrainingBenchmark
from nag.spaces.macro import MacroArch, MacroSpace
from nag.zc import compute_proxies, image_batch

#: The trained arms of each seed: the generator's top-k, and random networks within the same
#: budgets, unscreened and screened by the generator's proxies from as many candidates.
ARMS = ("generated", "random", "random_screened")


def fit_model(
    name: str,
    fit: ModelFit,
    cache_dir: str | Path,
    overrides: Mapping[str, Any] | None = None,
    upstream: Any = None,
    quiet: bool = False,
) -> Path:
    """The checkpoint of ``fit``: its ``ckpt`` when given, else the ``last.ckpt`` of ``nag fit``
    on the YAML (``overrides``: dotted keys set on the command line, ``--key=value``, JSON but for strings;
    ``epochs`` as ``--trainer.max_epochs``), cached under ``cache_dir/name`` by a digest of
    the YAML's text, those arguments and ``upstream`` (:func:`nag.io.fit_cache.fit_cached`)."""
    if fit.ckpt is not None:
        load_checkpoint(fit.ckpt, f"{name}.ckpt")
        return Path(fit.ckpt)
    source = Path(fit.config)
    if not source.is_file():
        raise ConfigError(f"{name}.config {str(source)!r}: no such YAML; give the model's `nag fit` config")
    config = yaml.safe_load(source.read_text())
    if not isinstance(config, dict) or not {"model", "data"} <= set(config):
        raise ConfigError(f"{name}.config {str(source)!r}: expected a `nag fit` YAML with model and data sections")
    args = [
        f"--{key}={value if isinstance(value, str) else json.dumps(value)}" for key, value in (overrides or {}).items()
    ]
    if fit.epochs is not None:
        args.append(f"--trainer.max_epochs={fit.epochs}")
    return fit_cached(source, Path(cache_dir) / name, args, extra=upstream, quiet=quiet)


def prepare_models(
    table: CellTable,
    macro: ModelFit,
    cell_encoder: ModelFit,
    cell_flow: ModelFit,
    cache_dir: str | Path,
    quiet: bool = False,
) -> tuple[MacroTransformerModule, CellFlowModule]:
    """The macro transformer and the CCNF (with its encoder), fitted where needed; the cell
    models read ``table.path``, which is computed first when missing. A given flow checkpoint
    carries its encoder, so ``cell_encoder`` is then unused."""
    if cell_flow.ckpt is None:
        build_cell_table(table, None if quiet else _progress("cell ZC table"))
        table_settings = json.loads(Path(table.path).with_suffix(".json").read_text())
        data = {"data.init_args.path": table.path}
        encoder = fit_model("cell_encoder", cell_encoder, cache_dir, data, table_settings, quiet)
        flow_path = fit_model(
            "cell_flow",
            cell_flow,
            cache_dir,
            {**data, "model.init_args.encoder_ckpt": str(encoder)},
            table_settings,
            quiet,
        )
    else:
        flow_path = fit_model("cell_flow", cell_flow, cache_dir)
    macro_path = fit_model("macro", macro, cache_dir, quiet=quiet)
    return (
        load_module(MacroTransformerModule, macro_path, None, "macro.ckpt"),
        load_module(CellFlowModule, flow_path, None, "cell_flow.ckpt"),
    )


def _progress(what: str) -> Callable[[int, int], None]:
    def show(i: int, n: int) -> None:
        if i == n or i % max(n // 10, 1) == 0:
            print(f"  {what}: {i}/{n}", flush=True)

    return show


def build(space: MacroSpace, arch: MacroArch, task: Task, seed: int) -> torch.nn.Module:
    """``arch``'s network with weights drawn from ``seed``."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return space.to_module(arch, task.num_classes, task.in_channels)


def network_proxies(
    space: MacroSpace,
    archs: Sequence[MacroArch],
    task: Task,
    names: Sequence[str],
    images: str,
    batch_size: int = 32,
    seed: int = 0,
) -> np.ndarray:
    """``[len(archs), len(names)]`` ZC proxies of the freshly built networks on a seeded batch
    of task images."""
    x, y = image_batch(images, batch_size, seed, task.input_size, task.in_channels)
    return np.array(
        [
            list(compute_proxies(build(space, a, task, seed), x, y % task.num_classes, names, seed).values())
            for a in archs
        ]
    ).reshape(len(archs), len(names))


def rank_score(values: np.ndarray) -> np.ndarray:
    """Mean over proxies (columns) of each row's rank (0 = worst; NaN ranks lowest)."""
    filled = np.where(np.isnan(values), -np.inf, values)
    return np.mean([np.argsort(np.argsort(col, kind="stable"), kind="stable") for col in filled.T], axis=0)


def _mean_std(values: Sequence[float]) -> dict[str, float]:
    v = np.asarray(values, dtype=float)
    return {"mean": float(v.mean()) if len(v) else math.nan, "std": float(v.std()) if len(v) else math.nan, "n": len(v)}


def evaluate(
    space: MacroSpace,
    archs: Sequence[MacroArch],
    task: Task,
    bench: TrainingBenchmark,
    training: Training,
    images: str,
    seed: int,
) -> list[dict[str, Any]]:
    """Each network's cost, ranking proxies and test accuracy after brief training (through the
    training oracle: stored trainings are read, not repeated)."""
    constraints, names = task.constraints, shown_proxies(training)
    zc = network_proxies(space, archs, task, names, images, training.proxy_batch_size, seed)
    accuracies = bench.values(list(archs), "val_accuracy") if archs else []
    rows = []
    for arch, values, accuracy in zip(archs, zc, accuracies):
        params, flops = space.cost(arch, constraints)
        rows.append(
            {
                "arch": space.to_string(arch),
                "params": params,
                "flops": flops,
                **dict(zip(names, values.tolist())),
                "accuracy": float(accuracy),
            }
        )
    return rows


def training_seeds(training: Training, seed: int, skip: int = 0) -> list[int]:
    """The training seeds averaged for the networks of run ``seed``: ``training.repeats`` of them,
    after the first ``skip`` repeats (a retest takes seeds a run never used)."""
    return [seed + 1000 * r for r in range(skip, skip + training.repeats)]


def training_benchmark(
    space: MacroSpace, task: Task, training: Training, images: str, seeds: Sequence[int]
) -> TrainingBenchmark:
    """The oracle networks are trained through: the task's images and the training recipe,
    each network's accuracy the mean over ``seeds`` (each draws the weights and the batches)."""
    return TrainingBenchmark(
        space,
        images,
        classes=list(range(task.num_classes)),
        size=task.input_size,
        channels=task.in_channels,
        val_size=training.test_size,
        train_size=training.train_size,
        split_seed=training.split_seed,
        epochs=training.epochs,
        batch_size=training.batch_size,
        lr=training.lr,
        schedule=training.schedule,
        seeds=list(seeds),
        store=training.store,
        accelerator=training.accelerator,
    )


def search(
    generator: HierarchicalGenerator,
    task: Task,
    training: Training,
    seeds: Sequence[int],
    images: str = MNIST,
    quiet: bool = True,
) -> dict[str, Any]:
    """Per seed: generate, keep exact satisfiers, rank by ZC, train the top-k. Beside it, two
    random arms within the same budgets: ``random_screened`` draws as many random networks as
    the generator kept, ranks them by the same proxies and trains the same top-k (the
    generator's gain over screening alone), ``random`` trains ``top_k`` of those draws
    unscreened. Accuracies summarised over seeds (each seed's mean over its networks)."""
    constraints, space = task.constraints, generator.space
    runs = []
    for seed in seeds:
        start = time.perf_counter()
        bench = training_benchmark(space, task, training, images, training_seeds(training, seed))
        generated = generator.generate(constraints, seed)
        ranked = []
        if generated.satisfiers:
            zc = network_proxies(
                space, generated.satisfiers, task, training.rank_by, images, training.proxy_batch_size, seed
            )
            order = np.argsort(-rank_score(zc), kind="stable")[: training.top_k]
            ranked = [generated.satisfiers[i] for i in order]
        generated_seconds = time.perf_counter() - start
        top = evaluate(space, ranked, task, bench, training, images, seed)
        candidates = max(len(generated.satisfiers), training.top_k)
        randoms, random_share = random_satisfiers(space, constraints, candidates, np.random.default_rng([seed, 1]))
        zc = network_proxies(space, randoms, task, training.rank_by, images, training.proxy_batch_size, seed)
        screened = [randoms[i] for i in np.argsort(-rank_score(zc), kind="stable")[: training.top_k]]
        baseline = evaluate(space, randoms[: training.top_k], task, bench, training, images, seed)
        screened_rows = evaluate(space, screened, task, bench, training, images, seed)
        runs.append(
            {
                "seed": seed,
                **generated.summary(),
                "random_share": random_share,
                "generation_seconds": generated_seconds,
                "seconds": time.perf_counter() - start,
                "random_candidates": candidates,
                "generated": top,
                "random": baseline,
                "random_screened": screened_rows,
            }
        )
        if not quiet:
            print(
                f"  seed {seed}: {len(generated.satisfiers)}/{len(generated.built)} generated networks within "
                f"budget; top-{len(top)} accuracy {_mean_std([r['accuracy'] for r in top])['mean']:.4f}, random "
                f"{_mean_std([r['accuracy'] for r in baseline])['mean']:.4f}, random screened "
                f"{_mean_std([r['accuracy'] for r in screened_rows])['mean']:.4f}",
                flush=True,
            )
    per_seed = {kind: [_mean_std([r["accuracy"] for r in run[kind]])["mean"] for run in runs] for kind in ARMS}
    summary = {
        f"{kind}_accuracy": _mean_std([v for v in values if not math.isnan(v)]) for kind, values in per_seed.items()
    }
    for key in ("share_before_check", "macro_share", "invalid_share", "random_share"):
        summary[key] = _mean_std([run[key] for run in runs])
    summary["share_after_check"] = 1.0 if all(run["satisfiers"] for run in runs) else math.nan
    gen, rnd = summary["generated_accuracy"]["mean"], summary["random_accuracy"]["mean"]
    summary["accuracy_ratio"] = gen / rnd if rnd else math.nan
    gains = [g - r for g, r in zip(per_seed["generated"], per_seed["random"]) if not math.isnan(g)]
    summary["accuracy_gain"] = _mean_std(gains)  # paired by seed: same split, seed and budgets
    summary["seeds_won"] = sum(g > 0 for g in gains)
    screened_gains = [g - r for g, r in zip(per_seed["generated"], per_seed["random_screened"]) if not math.isnan(g)]
    summary["gain_vs_screened"] = _mean_std(screened_gains)
    summary["seeds_won_vs_screened"] = sum(g > 0 for g in screened_gains)
    return {
        "task": asdict(task),
        "training": asdict(training),
        "generation": asdict(generator.generation),
        "seeds": list(seeds),
        "summary": summary,
        "runs": runs,
    }


def run_hierarchical_search(
    task: Task = DEFAULT_TASK,
    cell_table: CellTable = DEFAULT_TABLE,
    macro: ModelFit = DEFAULT_MACRO,
    cell_encoder: ModelFit = DEFAULT_ENCODER,
    cell_flow: ModelFit = DEFAULT_FLOW,
    generation: Generation = DEFAULT_GENERATION,
    training: Training = DEFAULT_TRAINING,
    seeds: Sequence[int] = (0, 1, 2, 3, 4),
    images: str = MNIST,
    cache_dir: str = "runs/hierarchical/models",
    output: str = "runs/hierarchical/search.json",
    quiet: bool = False,
) -> dict[str, Any]:
    """Hierarchical generative NAS for ``task``: the macro transformer's networks with CCNF
    cells, kept when within both budgets (exact check), ranked by ZC proxies; the top
    ``training.top_k`` trained briefly on ``images`` next to as many random networks within
    the same budgets, for every seed. Models are fitted (and cached in ``cache_dir``) unless
    their ``ckpt`` is given. Writes ``output`` (``.json`` report or ``.csv`` of networks)."""
    if not seeds:
        raise ConfigError("--seeds is empty; give at least one seed, e.g. --seeds [0,1,2]")
    if Path(output).suffix not in (".json", ".csv"):
        raise ConfigError(f"--output {output!r}: expected a .json or .csv file name")
    if training.top_k < 1 or training.repeats < 1:
        raise ConfigError(
            f"training.top_k={training.top_k}, training.repeats={training.repeats}: expected at least 1 each"
        )
    start = time.perf_counter()
    macro_model, flow = prepare_models(cell_table, macro, cell_encoder, cell_flow, cache_dir, quiet)
    prepared = time.perf_counter() - start
    generator = HierarchicalGenerator(macro_model, flow, CellProxies(cell_table), generation)
    report = search(generator, task, training, seeds, images, quiet)
    report["seconds"] = {"models": prepared, "search": time.perf_counter() - start - prepared}
    rows = [{"seed": run["seed"], "source": kind, **r} for run in report["runs"] for kind in ARMS for r in run[kind]]
    write_rows(report if output.endswith(".json") else rows, output)
    if not quiet:
        print(format_report(report))
        print(f"wrote {output}")
    return report
