"""Image tasks with measured NB201 scores, and a meta-predictor that reads the task's images.

    python benchmarks/image_tasks.py measure --out runs/image_tasks/scores.csv
    python benchmarks/image_tasks.py retest --tasks mnist_0to4 digits_all
    python benchmarks/image_tasks.py meta --scores runs/image_tasks/scores.csv --seeds 0 1

No benchmark scores architectures on the offline image sets, so ``measure`` trains them:
the same seeded NB201 cells (tiny networks) are trained through nag's training oracle
(:class:`~nag.search.TrainingBenchmark`, the recipe of ``configs/images/search_nb201_mnist.yaml``:
cosine learning rate, 8x8 input) on each of several class subsets of MNIST-5k and UCI digits
(``TASKS``) and their held-out accuracies written to one CSV (``arch_str`` + one column per task). The summary holds
the cross-task Spearman matrix: a task encoder can only help where the rankings differ.
``retest`` trains the same cells on a task again from another seed: the noise floor that
cross-task correlations are to be read against.

``meta`` meta-trains ``configs/images/meta_predictor.yaml`` (dataset encoder: the task is
read from a sample of its images) leaving each task out in turn and tests on the held-out
task's test cells; the baseline in the same run is the same model with the task vector
zeroed (``task_encoder: none``, a plain predictor trained on the pooled other tasks).
Each writes its section of ``results/image_tasks.{json,md}`` (the Markdown is re-rendered from the JSON).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import resource
import time
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
import yaml
from common import RESULTS, ROOT, command, distinct_samples, markdown_table, spearman, write_json, write_markdown

from nag.datamodules.image_task import ImageTaskDataModule
from nag.io.atomic import atomic_write
from nag.io.checkpoints import load_module, read_checkpoint
from nag.io.fit_cache import fit_cached
from nag.lightning_modules import MetaPredictorModule
from nag.lightning_modules.in_loop import quiet_lightning
from nag.search.training_benchmark import METRIC, TrainingBenchmark
from nag.spaces import NB201Space
from nag.zc import load_images

#: task name -> (image file, classes); the same names are the columns of the scores CSV
TASKS = {
    f"{file}_{part}": (file, classes)
    for file in ("mnist", "digits")
    for part, classes in (
        ("0to4", [0, 1, 2, 3, 4]),
        ("5to9", [5, 6, 7, 8, 9]),
        ("even", [0, 2, 4, 6, 8]),
        ("odd", [1, 3, 5, 7, 9]),
        ("all", list(range(10))),
    )
}
FILES = {"mnist": "mnist_5k.csv.gz", "digits": "digits.csv.gz"}


def spearman_matrix(table: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    names = list(table)
    return {a: {b: spearman(table[a], table[b]) for b in names} for a in names}


PROTOCOL = ("width", "size", "images_seen", "batch_size", "lr", "schedule", "max_train", "test_share")


def task_benchmark(space: NB201Space, name: str, args: argparse.Namespace, train_seed: int) -> TrainingBenchmark:
    """Task ``name`` as a training oracle (the one searches query): the split is fixed by
    ``args.seed``, ``train_seed`` draws the initial weights and batch order. Small tasks train
    for more epochs, so every task sees about ``args.images_seen`` images."""
    file, classes = TASKS[name]
    path = Path(args.images) / FILES[file]
    n = int(np.isin(load_images(str(path))[1], classes).sum())
    test = round(n * args.test_share)
    train = min(n - test, args.max_train)
    return TrainingBenchmark(
        space,
        path,
        classes,
        size=args.size,
        val_size=test,
        train_size=train,
        split_seed=args.seed,
        epochs=math.ceil(args.images_seen / train),
        batch_size=args.batch_size,
        lr=args.lr,
        schedule=args.schedule,
        network={"C": args.width, "N": 1},
        seeds=[train_seed],
        store=args.store,
    )


def measure_task(
    space: NB201Space, cells: list[tuple[str, ...]], name: str, args: argparse.Namespace, train_seed: int
) -> tuple[np.ndarray, int]:
    """Held-out accuracies of ``cells`` trained on task ``name`` (stored trainings are reused), and the epochs used."""
    bench = task_benchmark(space, name, args, train_seed)
    accs = bench.values(cells, METRIC)
    if bench.failures:
        raise SystemExit(f"{name}: {len(bench.failures)} trainings failed twice, e.g. {bench.failures[0]}")
    epochs = bench.recipe["epochs"]
    print(
        f"{name}: {len(bench.task.train)} train / {len(bench.task.test)} test images x {epochs} epochs, "
        f"mean acc {np.mean(accs):.3f}",
        flush=True,
    )
    return accs, epochs


def measure(args: argparse.Namespace) -> dict:
    torch.set_num_threads(1)
    space = NB201Space()
    cells = distinct_samples(space, args.cells, args.seed)
    start, columns, task_cpu, task_epochs = time.process_time(), {}, {}, {}
    for name in TASKS:
        t0 = time.process_time()
        columns[name], task_epochs[name] = measure_task(space, cells, name, args, args.seed)
        task_cpu[name] = time.process_time() - t0
    with atomic_write(args.out, newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["arch_str", *columns])
        for i, cell in enumerate(cells):
            writer.writerow([space.to_string(cell), *(f"{columns[t][i]:.4f}" for t in columns)])
    return {
        "command": command(__file__),
        "cells": args.cells,
        "width_C": args.width,
        "cells_per_stage_N": 1,
        "input_size": args.size,
        "images_seen": args.images_seen,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "schedule": args.schedule,
        "max_train": args.max_train,
        "test_share": args.test_share,
        "seed": args.seed,
        "protocol": {k: getattr(args, k) for k in PROTOCOL},
        "tasks": {t: {"images": FILES[f], "classes": c, "epochs": task_epochs[t]} for t, (f, c) in TASKS.items()},
        "accuracy": {
            t: {"mean": float(v.mean()), "std": float(v.std()), "min": float(v.min()), "max": float(v.max())}
            for t, v in columns.items()
        },
        "spearman": spearman_matrix(columns),
        "cpu_s": time.process_time() - start,
        "cpu_s_per_task": task_cpu,
    }


def retest(args: argparse.Namespace) -> dict:
    """The noise floor of the cross-task matrix: the same cells, task and split, trained again
    from another seed. Cross-task correlations near this value are noise, not task differences."""
    torch.set_num_threads(1)
    done = json.loads((RESULTS / "image_tasks.json").read_text())["measure"]
    if done["protocol"] != {k: getattr(args, k) for k in PROTOCOL} or done["seed"] == args.train_seed:
        raise SystemExit(
            f"retest: use the protocol of the measurement ({done['protocol']}) and a --train-seed "
            f"other than its seed {done['seed']}"
        )
    args.seed = done["seed"]
    space = NB201Space()
    with open(args.scores, newline="") as f:
        rows = list(csv.DictReader(f))
    cells = [space.from_string(r["arch_str"]) for r in rows]
    start, result = time.process_time(), {}
    for name in args.tasks:
        again, _ = measure_task(space, cells, name, args, args.train_seed)
        first = np.array([float(r[name]) for r in rows])
        result[name] = {
            "spearman": spearman(first, again),
            "mean_abs_diff": float(np.abs(first - again).mean()),
        }
    return {
        "command": command(__file__),
        "train_seed": args.train_seed,
        "tasks": result,
        "cpu_s": time.process_time() - start,
    }


def meta_run(config: Path, scores: str, held_out: str, encoder: str, seed: int, root: Path) -> dict:
    """One leave-one-task-out meta-training by ``nag fit --config`` (reused when it finished
    with the same arguments and scores file: :func:`nag.io.fit_cache.fit_cached`): the
    checkpoint with the best validation Spearman (other tasks' val cells, the config's
    ModelCheckpoint) is tested on the held-out task. ``cpu_s`` counts the fit's process too."""
    overrides = [
        f"--data.init_args.scores={scores}",
        f"--data.init_args.held_out={held_out}",
        f"--data.init_args.seed={seed}",
        f"--seed_everything={seed}",
        f"--model.init_args.task_encoder={encoder}",
        "--trainer.accelerator=cpu",
        "--trainer.deterministic=true",
        "--trainer.logger=false",
        "--trainer.enable_model_summary=false",
    ]
    t0 = time.process_time() + _children_cpu()
    scores_digest = hashlib.sha1(Path(scores).read_bytes()).hexdigest()
    last = fit_cached(config, root / held_out / encoder / str(seed), overrides, extra={"scores": scores_digest})
    state = next(v for k, v in read_checkpoint(last)["callbacks"].items() if k.startswith("ModelCheckpoint"))
    dm = ImageTaskDataModule(
        **(
            yaml.safe_load(config.read_text())["data"]["init_args"]
            | {"scores": scores, "held_out": held_out, "seed": seed}
        )
    )
    model = load_module(MetaPredictorModule, state["best_model_path"], None, "--config")
    with quiet_lightning():
        trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
        test = trainer.test(model, dm, verbose=False)[0]
    return {
        "test_spearman": test["test/spearman"],
        "test_kendall": test["test/kendall"],
        "val_spearman": float(state["best_model_score"]),
        "cpu_s": time.process_time() + _children_cpu() - t0,
    }


def _children_cpu() -> float:
    """CPU seconds of finished child processes (the fits)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def meta(args: argparse.Namespace) -> dict:
    torch.set_num_threads(1)
    config = yaml.safe_load(Path(args.config).read_text())
    held_outs = args.held_out or list(config["data"]["init_args"]["tasks"])
    start, runs = time.process_time(), {}
    for held in held_outs:
        runs[held] = {}
        for encoder in ("dataset", "none"):
            rhos = [
                meta_run(Path(args.config), args.scores, held, encoder, seed, Path(args.runs)) for seed in args.seeds
            ]
            runs[held][encoder] = {
                "seeds": rhos,
                "test_spearman_mean": float(np.mean([r["test_spearman"] for r in rhos])),
            }
            print(
                f"held out {held}, task encoder {encoder}: test Spearman "
                f"{[round(r['test_spearman'], 3) for r in rhos]}",
                flush=True,
            )
    return {
        "command": command(__file__),
        "config": str(Path(args.config).resolve().relative_to(ROOT)),
        "seeds": args.seeds,
        "runs": runs,
        "cpu_s": time.process_time() - start,
    }


def render(result: dict) -> str:
    """The Markdown summary of whatever sections the JSON holds."""
    lines = ["# Image tasks: measured NB201 scores and a dataset-encoder meta-predictor", ""]
    m = result.get("measure")
    if m:
        lines += [
            "## Measured scores",
            "",
            f"`{m['command']}`",
            "",
            f"{m['cells']} seeded NB201 cells (distinct isomorphism classes), network C={m['width_C']}, "
            f"N={m['cells_per_stage_N']}, {m['input_size']}x{m['input_size']} grey input, trained through nag's "
            f"training oracle (`TrainingBenchmark`) with Adam (lr {m['lr']}, {m.get('schedule', 'constant')} "
            f"schedule, batch {m['batch_size']}) on at most {m['max_train']} images for "
            f"ceil({m['images_seen']} / training images) epochs (so every task gets about as many steps); "
            f"test accuracy on {m['test_share']:.0%} of the task's images. Cell i starts from the same "
            "initial weights, and sees its batches in the same seeded order, on every task. "
            f"Total {m['cpu_s'] / 60:.1f} min CPU (1 thread).",
            "",
            *markdown_table(
                ["task", "images", "classes", "epochs", "mean acc", "std", "min", "max"],
                (
                    [
                        t,
                        m["tasks"][t]["images"],
                        m["tasks"][t]["classes"],
                        m["tasks"][t]["epochs"],
                        *(f"{a[k]:.3f}" for k in ("mean", "std", "min", "max")),
                    ]
                    for t, a in m["accuracy"].items()
                ),
            ),
        ]
        names = list(m["spearman"])
        lines += [
            "",
            "Cross-task Spearman of the cells' accuracies:",
            "",
            *markdown_table(["", *names], ([a, *(f"{m['spearman'][a][b]:.2f}" for b in names)] for a in names)),
        ]
        off = [m["spearman"][a][b] for a in names for b in names if a != b]
        lines += ["", f"Off-diagonal mean {np.mean(off):.2f}, min {min(off):.2f}, max {max(off):.2f}.", ""]
    r = result.get("retest")
    if r:
        lines += [
            "## Test-retest: the noise floor",
            "",
            f"`{r['command']}`",
            "",
            f"The same cells, task and split trained again with initial weights and batch order from seed "
            f"{r['train_seed']} ({r['cpu_s'] / 60:.1f} min CPU). Two identical tasks would correlate at this "
            "level, so cross-task correlations near it cannot tell whether the tasks differ; the retest changes "
            "the seed, whereas the tasks of the table share theirs per cell, so part of the cross-task "
            "correlation is shared seed noise.",
            "",
            *markdown_table(
                ["task", "Spearman (seed 0 vs retest)", "mean abs. accuracy change"],
                ([t, f"{v['spearman']:.2f}", f"{v['mean_abs_diff']:.3f}"] for t, v in r["tasks"].items()),
            ),
        ]
        if m:
            off = [m["spearman"][a][b] for a in m["spearman"] for b in m["spearman"] if a != b]
            lines += [
                "",
                f"Cross-task off-diagonal mean {np.mean(off):.2f} against a test-retest Spearman of "
                f"{min(v['spearman'] for v in r['tasks'].values()):.2f}-"
                f"{max(v['spearman'] for v in r['tasks'].values()):.2f}: a task pair correlating near the "
                "retest level ranks the cells as alike as a rerun of one task does. What bounds the retest "
                "here is one training seed per cell on tasks whose accuracies crowd near the ceiling (the "
                "std column above); the searched task averages two seeds over ten classes and 3,000 held-out "
                "images (`benchmarks/results/real_task_search.md`).",
            ]
        lines.append("")
    r = result.get("meta")
    if r:
        lines += [
            "## Meta-predictor on a held-out image task",
            "",
            f"`{r['command']}`",
            "",
            f"Config `{r['config']}`; seeds {r['seeds']}; {r['cpu_s'] / 60:.1f} min CPU. For each held-out task "
            "the meta-predictor is meta-trained on the other tasks' train cells, the checkpoint with the best "
            "validation Spearman (other tasks, val cells) is kept, and its Spearman is averaged over the "
            "held-out task's test episodes (test cells only: no cell of the test split is trained on, for any "
            "task). *dataset*: the task vector comes from images of the task (DatasetEncoder); *none*: the same "
            "model with the task vector zeroed, i.e. a predictor trained on the pooled other tasks.",
            "",
        ]
        means = {
            held: (by["dataset"]["test_spearman_mean"], by["none"]["test_spearman_mean"])
            for held, by in r["runs"].items()
        }
        d, z = (float(np.mean(v)) for v in zip(*means.values()))
        lines += markdown_table(
            ["held-out task", "dataset encoder", "no task vector", "difference"],
            [
                *([held, f"{a:.3f}", f"{b:.3f}", f"{a - b:+.3f}"] for held, (a, b) in means.items()),
                ["**mean**", f"**{d:.3f}**", f"**{z:.3f}**", f"**{d - z:+.3f}**"],
            ],
        )
        lines.append("")
        pairs = np.array(
            [
                a["test_spearman"] - b["test_spearman"]
                for by in r["runs"].values()
                for a, b in zip(by["dataset"]["seeds"], by["none"]["seeds"])
            ]
        )
        lines += [
            f"Paired over {len(pairs)} (held-out task, seed) runs: dataset encoder minus no task vector "
            f"{pairs.mean():+.3f} (standard error {pairs.std(ddof=1) / np.sqrt(len(pairs)):.3f}), "
            f"the dataset encoder ahead in {(pairs > 0).sum()} of them.",
            "",
        ]
    return "\n".join(lines) + "\n"


def save(section: str, value: dict) -> None:
    """``section`` of the JSON replaced by ``value``; the Markdown, rendered from every section, is
    headed by the commands of all of them (each section is one stage's command)."""
    path = RESULTS / "image_tasks.json"
    result = json.loads(path.read_text()) if path.is_file() else {}
    result[section] = value
    write_json(path, result, allow_nan=False)
    ran = " && ".join(result[s]["command"] for s in ("measure", "retest", "meta") if s in result)
    write_markdown(RESULTS / "image_tasks.md", ran, render(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="stage", required=True)
    protocol = argparse.ArgumentParser(add_help=False)
    protocol.add_argument("--images", default=str(ROOT.parent / "shared" / "data" / "images"))
    protocol.add_argument("--width", type=int, default=8, help="NB201 channel width C")
    protocol.add_argument("--size", type=int, default=8, help="input side")
    protocol.add_argument(
        "--images-seen",
        type=int,
        default=8000,
        help="training images per cell and task: epochs = ceil(this / the task's training images)",
    )
    protocol.add_argument("--batch-size", type=int, default=64)
    protocol.add_argument("--lr", type=float, default=3e-3)
    protocol.add_argument("--schedule", choices=["cosine", "constant"], default="cosine", help="learning rate")
    protocol.add_argument("--store", default=str(ROOT / "runs" / "trainings"), help="finished trainings (reused)")
    protocol.add_argument("--max-train", type=int, default=2000, help="training images per task at most")
    protocol.add_argument("--test-share", type=float, default=0.4)
    m = sub.add_parser("measure", parents=[protocol], help="train the seeded cells on every task; write the scores CSV")
    m.add_argument("--out", default=str(ROOT / "runs" / "image_tasks" / "scores.csv"))
    m.add_argument("--cells", type=int, default=100)
    m.add_argument("--seed", type=int, default=0, help="cells, splits, initial weights and batch order")
    r = sub.add_parser("retest", parents=[protocol], help="train the measured cells again from another seed")
    r.add_argument("--scores", default=str(ROOT / "runs" / "image_tasks" / "scores.csv"))
    r.add_argument("--tasks", nargs="+", choices=list(TASKS), default=["mnist_0to4", "digits_all"])
    r.add_argument("--train-seed", type=int, default=1)
    t = sub.add_parser("meta", help="leave each task out: meta-train with and without the dataset encoder")
    t.add_argument("--scores", default=str(ROOT / "runs" / "image_tasks" / "scores.csv"))
    t.add_argument("--config", default=str(ROOT / "configs" / "images" / "meta_predictor.yaml"))
    t.add_argument("--held-out", nargs="*", help="tasks to hold out in turn (default: every task of the config)")
    t.add_argument("--seeds", type=int, nargs="+", default=[0])
    t.add_argument("--runs", default=str(ROOT / "runs" / "image_tasks" / "meta"), help="checkpoints go here")
    args = parser.parse_args()
    save(args.stage, {"measure": measure, "retest": retest, "meta": meta}[args.stage](args))


if __name__ == "__main__":
    main()
