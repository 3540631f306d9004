"""A device family whose runtime charges dead ops: NB201 cells timed here in eager PyTorch.

    python benchmarks/dead_op_latency.py        # 3,000 cells, ~6 minutes on one core

HW-NAS-Bench's NB201 tables come from runtimes that mostly drop what cannot reach the output;
an exported graph run op by op (eager PyTorch, an ONNX or mobile interpreter) executes every
op a cell declares, dead or not: a convolution whose input node only receives ``none`` still
runs, on zeros. This script measures such a device: ``--cells`` random NB201 cells (seeded,
uniform over the 15,625) through ``nag.hardware.measure_latency`` (the CIFAR-10 network, batch
1, one torch thread, the median of ``--repeats`` passes after ``--warmup``, spread over
``--rounds`` interleaved passes over ``--chunk`` cells at a time; the timing thread's CPU time),
then the first ``--retest`` of them again at the end for the test-retest noise.

It writes the table ``benchmarks/results/dead_op_latency.csv`` (``arch_str,
eager_cpu_cifar10_latency`` in ms; measured cells only), which ``benchmarks/device_flow.py
--extra-table`` adds to NB201 as one more held-out device, and
``results/dead_op_latency.{json,md}`` with what shows that this runtime charges dead ops:
the share of cells that have dead ops, and how well latency is explained, on held-out
cells, by ridge fits on the ops each cell declares against the ops that run.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
from common import RESULTS, command, markdown_table, spearman, write_report

from nag.hardware import measure_latency
from nag.hardware.features import pruned
from nag.io.atomic import atomic_write
from nag.spaces.nb201 import NB201Space

COLUMN = "eager_cpu_cifar10_latency"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cells", type=int, default=3000)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--chunk", type=int, default=250, help="cells held in memory at once, timed in interleaved rounds")
    p.add_argument("--retest", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(RESULTS))
    return p.parse_args(argv)


def measure(space: NB201Space, cells: list, args: argparse.Namespace) -> list:
    """Timings of ``cells``, ``args.chunk`` at a time, each chunk in ``args.rounds`` interleaved passes:
    this machine slows down for seconds at a time (other jobs), and a cell's repeats spread over
    the passes keep such a stretch from setting its median."""
    out = []
    for start in range(0, len(cells), args.chunk):
        chunk = cells[start : start + args.chunk]
        out += measure_latency(
            space, chunk, warmup=args.warmup, repeats=args.repeats, rounds=args.rounds, seed=args.seed
        )
        print(f"  timed {start + len(chunk)} of {len(cells)}", flush=True)
    return out


def onehot(space: NB201Space, cells: list) -> np.ndarray:
    """Edge-by-op one-hot of each cell (the space's own encoding, flattened)."""
    return space.encode_batch(cells)[0].flatten(1).numpy()


def held_out_r2(x: np.ndarray, y: np.ndarray, seed: int, alpha: float = 1e-3) -> float:
    """R^2 of a ridge fit on half the cells, scored on the other half."""
    order = np.random.default_rng(seed).permutation(len(y))
    train, test = order[: len(y) // 2], order[len(y) // 2 :]
    design = np.c_[np.ones(len(y)), x]
    a = design[train]
    w = np.linalg.solve(a.T @ a + alpha * np.eye(a.shape[1]), a.T @ y[train])
    residual = y[test] - design[test] @ w
    return float(1.0 - residual.var() / y[test].var())


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    space = NB201Space()
    rng = np.random.default_rng(args.seed)
    cells = sorted(set(space.sample(args.cells * 3, rng)), key=space.to_string)
    cells = [cells[i] for i in rng.permutation(len(cells))[: args.cells]]
    start = time.time()
    timed = measure(space, cells, args)
    again = measure(space, cells[: args.retest], args)
    seconds = time.time() - start
    latency = np.array([m.cpu_latency[1] for m in timed])
    noise = np.array([m.cpu_noise[1] for m in timed])
    second = np.array([m.cpu_latency[1] for m in again])

    running = [pruned(space, a) for a in cells]  # dead ops set to none: what a pruning runtime runs
    dead = np.array([r != a for r, a in zip(running, cells)])
    y = np.log(latency)
    fits = {
        "ops declared (dead ones included)": held_out_r2(onehot(space, cells), y, args.seed),
        "ops that run (dead ones removed)": held_out_r2(onehot(space, running), y, args.seed),
    }
    same_live: dict[tuple, list[int]] = {}
    for i, arch in enumerate(running):
        same_live.setdefault(arch, []).append(i)
    spread = [
        float(latency[idx].max() / latency[idx].min()) for idx in same_live.values() if len(idx) > 1 and dead[idx].any()
    ]

    table = Path(args.out) / "dead_op_latency.csv"
    with atomic_write(table, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["arch_str", COLUMN])
        writer.writerows([space.to_string(arch), f"{value:.6g}"] for arch, value in zip(cells, latency))
    report = {
        "command": command(__file__, argv),
        "column": COLUMN,
        "cells": len(cells),
        "repeats": args.repeats,
        "rounds": args.rounds,
        "seconds": seconds,
        "machine": f"{os.cpu_count()} cores, {platform.machine()}, torch {torch.__version__}, 1 torch thread",
        "load_average": os.getloadavg(),
        "latency_ms": {"min": float(latency.min()), "median": float(np.median(latency)), "max": float(latency.max())},
        "median_relative_iqr": float(np.median(noise)),
        "retest_spearman": spearman(latency[: args.retest], second),
        "retest_median_ratio": float(np.median(second / latency[: args.retest])),
        "share_with_dead_ops": float(dead.mean()),
        "held_out_r2_log_latency": fits,
        "same_running_ops_spread": {"groups": len(spread), "median_max_over_min": float(np.median(spread))}
        if spread
        else None,
    }
    write_report(Path(args.out) / "dead_op_latency", report["command"], report, markdown(report))
    print(markdown(report))


def markdown(r: dict) -> str:
    lat = r["latency_ms"]
    lines = [
        "# A device that runs dead ops: NB201 cells timed in eager PyTorch on this CPU",
        "",
        f"Command: `{r['command']}` ({r['seconds']:.0f} s; {r['machine']}; load average "
        f"{r['load_average'][0]:.1f} at the end). {r['cells']} uniform random NB201 cells, the CIFAR-10 network "
        "(`NB201Space.to_module`: every declared op is a module and runs, `none` multiplies by zero), batch 1, "
        f"the median of {r['repeats']} passes spread over {r['rounds']} interleaved rounds, the timing thread's "
        "CPU time. Table: `benchmarks/results/dead_op_latency.csv`, column "
        f"`{r['column']}` (ms).",
        "",
        f"- Latency {lat['min']:.2f} / {lat['median']:.2f} / {lat['max']:.2f} ms (min / median / max); "
        f"median relative IQR of the repeats {100 * r['median_relative_iqr']:.1f} %; "
        f"test-retest on the first cells: Spearman {r['retest_spearman']:.3f}, median ratio "
        f"{r['retest_median_ratio']:.3f}.",
        f"- {100 * r['share_with_dead_ops']:.0f} % of the cells have dead ops (an op whose input never sees the "
        "cell's input or whose output never reaches its output).",
    ]
    if r["same_running_ops_spread"]:
        s = r["same_running_ops_spread"]
        lines.append(
            f"- Cells that run the same live ops but declare different dead ones ({s['groups']} groups with a dead "
            f"op): median slowest / fastest {s['median_max_over_min']:.2f}x; a runtime that pruned would time them "
            "alike."
        )
    lines += [
        "",
        "Held-out R^2 of log latency (ridge on half the cells, scored on the other half):",
        "",
        *markdown_table(["features", "R^2"], [[k, f"{v:.3f}"] for k, v in r["held_out_r2_log_latency"].items()]),
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
