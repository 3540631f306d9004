"""Zero-cost proxies of built NB201 networks vs the published NAS-Bench-Suite-Zero scores.

    python benchmarks/zc_validation.py --data ../shared/data --cells 200 --seed 0

For a seeded sample of the 9,445 cells in ``zc_proxies_cifar10.csv``, each cell is built with
``NB201Space.to_module`` (seeded init), and every proxy of ``nag.zc`` is computed on a seeded
batch of real images and compared to the published CIFAR-10 value by Spearman rank
correlation. No CIFAR-10 images exist offline: the batch is MNIST (``mnist_5k.csv.gz``)
resized to 32x32 with the grey channel replicated, so data-dependent proxies see other data
than the published ones did. Baselines in the same run: the same proxies on Gaussian-noise
inputs, and the published ``params`` alone as a predictor of each published proxy. The
published ``net`` tuples (their own op codes and edge order) are checked against ``net_str``.
Writes ``results/zc_validation.{json,md}``.
"""

from __future__ import annotations

import argparse
import csv
import math
import time
from pathlib import Path

import numpy as np
import torch
from common import RESULTS, ROOT, command, markdown_table, write_report
from torchmetrics.functional import spearman_corrcoef

from nag.nn.flops import count_flops, count_params
from nag.spaces import NB201Space
from nag.zc import PROXIES, compute_proxies, image_batch

#: ``net`` tuples of NAS-Bench-Suite-Zero: op codes and the edge order they are listed in.
ZC_OPS = ("skip_connect", "none", "nor_conv_3x3", "nor_conv_1x1", "avg_pool_3x3")
ZC_EDGES = ((0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3))
SPACE_EDGES = ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))
DATA_PROXIES = ("snip", "grad_norm", "fisher", "jacov", "nwot")


def arch_from_net(net: str) -> tuple[str, ...]:
    """Decode a ``net`` tuple such as ``"(4, 0, 3, 1, 4, 3)"`` into string-order edge ops."""
    codes = [int(c) for c in net.strip("()").split(",")]
    by_edge = dict(zip(ZC_EDGES, (ZC_OPS[c] for c in codes)))
    return tuple(by_edge[e] for e in SPACE_EDGES)


def spearman(a: list[float], b: list[float]) -> tuple[float, int]:
    """Spearman over the pairs where both values are finite, and how many pairs that is."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    keep = np.isfinite(x) & np.isfinite(y)
    if keep.sum() < 3:
        return math.nan, int(keep.sum())
    return float(spearman_corrcoef(torch.from_numpy(x[keep]), torch.from_numpy(y[keep]))), int(keep.sum())


def finite_or_none(value: object) -> object:
    """Strict JSON has no NaN/inf: write them as null."""
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finite_or_none(v) for v in value]
    return None if isinstance(value, float) and not math.isfinite(value) else value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"), help="the shared data folder")
    parser.add_argument("--cells", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=64, help="images per proxy batch (NASLib: 64)")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = Path(args.data)
    space = NB201Space()

    with open(data / "nb201" / "zc_proxies_cifar10.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    with open(data / "nb201" / "nb201.csv", newline="") as f:
        accuracy = {r["arch_str"]: float(r["cifar10_test_200ep"]) for r in csv.DictReader(f)}
    net_agrees = sum(arch_from_net(r["net"]) == space.from_string(r["net_str"]) for r in rows)

    rng = np.random.default_rng(args.seed)
    sample = [rows[i] for i in rng.choice(len(rows), size=args.cells, replace=False)]
    images, labels = image_batch(data / "images" / "mnist_5k.csv.gz", args.batch_size, args.seed)
    g = torch.Generator().manual_seed(args.seed)
    noise, noise_labels = torch.randn(images.shape, generator=g), torch.randint(0, 10, labels.shape, generator=g)

    ours, noise_values, exact, seconds = [], [], {"params": 0, "flops": 0}, []
    for i, row in enumerate(sample):
        arch = space.from_string(row["net_str"])
        torch.manual_seed(args.seed)
        module = space.to_module(arch)
        start = time.perf_counter()
        ours.append(compute_proxies(module, images, labels, seed=args.seed))
        seconds.append(time.perf_counter() - start)
        noise_values.append(compute_proxies(module, noise, noise_labels, names=DATA_PROXIES, seed=args.seed))
        exact["params"] += count_params(module) == round(float(row["params"]) * 1e6)
        exact["flops"] += count_flops(module, (3, 32, 32)) == round(float(row["flops"]) * 1e6)
        if (i + 1) % 20 == 0:
            print(f"{i + 1}/{len(sample)} cells, {np.mean(seconds):.2f} s/cell", flush=True)

    acc = [accuracy[r["net_str"]] for r in sample]
    published_params = [float(r["params"]) for r in sample]
    table = {}
    for name in PROXIES:
        published = [float(r[name]) for r in sample]
        mine = [v[name] for v in ours]
        rho, n = spearman(mine, published)
        table[name] = {
            "spearman_vs_published": rho,
            "pairs": n,
            "spearman_noise_inputs_vs_published": spearman([v[name] for v in noise_values], published)[0]
            if name in DATA_PROXIES
            else rho,
            "spearman_published_params_vs_published": spearman(published_params, published)[0],
            "spearman_ours_vs_cifar10_acc": spearman(mine, acc)[0],
            "spearman_published_vs_cifar10_acc": spearman(published, acc)[0],
        }
    result = {
        "command": command(__file__),
        "images": (
            f"MNIST ({args.batch_size} images, seed {args.seed}) resized to 3x32x32; published scores used CIFAR-10"
        ),
        "cells": args.cells,
        "net_tuple_matches_net_str": f"{net_agrees}/{len(rows)}",
        "exact_params_vs_published": f"{exact['params']}/{args.cells}",
        "exact_flops_vs_published": f"{exact['flops']}/{args.cells}",
        "seconds_per_cell_mean": float(np.mean(seconds)),
        "torch_threads": torch.get_num_threads(),
        "proxies": table,
        "per_cell": [{"net_str": r["net_str"], **v} for r, v in zip(sample, ours)],
    }
    lines = [
        "# Zero-cost proxies vs NAS-Bench-Suite-Zero (NB201, CIFAR-10 scores)",
        "",
        (
            f"{args.cells} seeded cells; ours computed on {result['images']}. "
            f"Params exact on {result['exact_params_vs_published']} cells, FLOPs exact on "
            f"{result['exact_flops_vs_published']}; `net` tuples decode to `net_str` on "
            f"{result['net_tuple_matches_net_str']} rows. {result['seconds_per_cell_mean']:.2f} s per cell "
            f"for all {len(PROXIES)} proxies ({result['torch_threads']} CPU thread)."
        ),
        "",
        *markdown_table(
            [
                "proxy",
                "ρ ours vs published",
                "ρ Gaussian-input baseline",
                "ρ published params vs published",
                "ρ ours vs C10 acc",
                "ρ published vs C10 acc",
            ],
            (
                [
                    name,
                    f"{t['spearman_vs_published']:.3f} (n={t['pairs']})",
                    f"{t['spearman_noise_inputs_vs_published']:.3f}",
                    f"{t['spearman_published_params_vs_published']:.3f}",
                    f"{t['spearman_ours_vs_cifar10_acc']:.3f}",
                    f"{t['spearman_published_vs_cifar10_acc']:.3f}",
                ]
                for name, t in table.items()
            ),
        ),
        "",
        (
            "ρ = Spearman rank correlation over the sampled cells (NaN values dropped; n = pairs kept). "
            "synflow, params and flops do not depend on the data, so their baseline column repeats the "
            "first. C10 acc = `cifar10_test_200ep` of `nb201.csv`."
        ),
    ]
    write_report(Path(args.out) / "zc_validation", result["command"], finite_or_none(result), "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
