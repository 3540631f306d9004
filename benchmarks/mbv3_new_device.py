"""Search OFA-MobileNetV3 for a GPU nag never saw, from K measured subnets: is what it returns within budget?

    python benchmarks/mbv3_new_device.py                   # ../shared/data/mbv3, Titan RTX batch 64, K = 20

The variant of ``benchmarks/mbv3_search.py`` where the device has no lookup table: the latency
bound is judged by nag's few-shot latency predictor, meta-trained on the other GPUs of
``ofa_mbv3_latency.csv`` (every batch size of the target GPU left out) and adapted on K subnets
measured on the target (rows of the CSV at the search's resolutions).

Protocol (printed at the top of the results file):
- Accuracy is once-for-all's predictor of ImageNet top-1 with inherited supernet weights (not a
  trained network); 100 accuracy queries per run, 10 seeds, the same for every row.
- **Truth** for the returned subnets: the CSV measures 5,000 subnets only, and a search returns
  others, so the device's latency of any subnet is a per-layer table (each slot's kernel x
  expansion and a skip, each also scaled by resolution squared, least squares) fitted on all
  5,000 measurements of the target column — the kind of model OFA's Note10 table is. Its
  5-fold cross-validated R² and Spearman are printed: it is a model of the device, not the device.
- Feasibility, as each search sees it (free: no accuracy query), from one of:
  **few-shot median** (nag's adapted predictor's median), **few-shot 90%** (its predictive 90th
  percentile: P(latency <= budget) >= 0.9), **FLOPs fit** (the simple baseline: latency linear in
  FLOPs, fitted on the same K measurements), and **device table** (the truth itself: what knowing
  the device fully would give, the reference).
- Methods: uniform random (filtered by the feasibility model), REA (feasible mutations), BO with
  ridge UCB maximised by evolution, and (under few-shot 90% and the device table) BO seeded by
  the cost-conditioned generator (``configs/mbv3/cost_conditioned.yaml``, asked for FLOPs 1.2x the
  90th percentile of the feasible pool's, no latency: its Note10 condition says nothing of this
  GPU), whose samples also seed the evolution.
- Reported per row: the subnet the search returns (its best top-1 among those it judged within
  budget): its top-1 and whether it is truly within budget (share of seeds); the share of all
  its proposals truly within budget; the best top-1 among its queries truly within budget.

Writes ``results/mbv3_new_device.{json,md,png}``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch
from common import RESULTS, ROOT, command, figure, markdown_table, write_report
from mbv3_search import fit_generator, random_lists, strategy
from scipy.stats import spearmanr

from nag.benchmarks import OFALatencyBenchmark, OFAMBV3Benchmark
from nag.benchmarks.base import Benchmark
from nag.hardware import ArchFeatures, LatencyMetaPredictor
from nag.hardware.sources import cost_columns, device_family, source_values
from nag.search import QueryOracle
from nag.spaces.mbv3 import EXPANDS, KERNELS, MAX_DEPTH, NUM_SLOTS, MBV3Arch

MODELS = ("few_shot_median", "few_shot_90", "flops_fit", "device_table")
METHODS = ("random", "rea", "bo_evolution", "bo_generator_evolution")
FLOPS = "flops_M"
#: The generator's rows cost ~1 min a run: run under nag's recommended model and the reference.
GENERATOR_MODELS = ("few_shot_90", "device_table")
#: What every run shares, set once before the worker processes fork (lambdas do not pickle):
#: the CSV benchmark, the device table and the meta-trained predictor.
SHARED: dict = {}
Latency = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def layer_features(ks: np.ndarray, e: np.ndarray, d: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Per slot a one-hot of its (kernel, expansion) or skip, each also times ``(r / 224)^2``
    (compute grows with the input's area), then that scale and a constant: a per-layer table."""
    n = len(r)
    active = np.arange(MAX_DEPTH)[None, None, :] < d[:, :, None]  # [n, stage, slot]
    choice = np.searchsorted(KERNELS, ks) * len(EXPANDS) + np.searchsorted(EXPANDS, e)
    choice = np.where(active.reshape(n, NUM_SLOTS), choice, len(KERNELS) * len(EXPANDS))
    onehot = np.zeros((n, NUM_SLOTS, len(KERNELS) * len(EXPANDS) + 1))
    np.put_along_axis(onehot, choice[:, :, None], 1.0, axis=2)
    scale = (np.asarray(r, dtype=np.float64) / 224.0) ** 2
    flat = onehot.reshape(n, -1)
    return np.concatenate([flat, flat * scale[:, None], scale[:, None], np.ones((n, 1))], axis=1)


def as_lists(space, archs: Sequence[MBV3Arch]) -> tuple[np.ndarray, ...]:
    return tuple(np.array(v) for v in zip(*(space.to_ofa(a) for a in archs)))


def device_table(csv: OFALatencyBenchmark, column: str) -> tuple[Latency, dict]:
    """The truth: a per-layer table fitted on every measured subnet of ``column``, and its
    5-fold cross-validated fidelity."""
    x = layer_features(*as_lists(csv.space, csv.archs()))
    y = csv.column(column)

    def solve(rows: np.ndarray) -> np.ndarray:
        return np.linalg.solve(x[rows].T @ x[rows] + 1e-3 * np.eye(x.shape[1]), x[rows].T @ y[rows])

    folds = np.array_split(np.random.default_rng(0).permutation(len(y)), 5)
    predicted = np.zeros_like(y)
    for k, held in enumerate(folds):
        predicted[held] = x[held] @ solve(np.concatenate([f for j, f in enumerate(folds) if j != k]))
    r2 = 1 - ((predicted - y) ** 2).sum() / ((y - y.mean()) ** 2).sum()
    weights = solve(np.arange(len(y)))
    fidelity = {"cv_r2": float(r2), "cv_spearman": float(spearmanr(predicted, y)[0]), "rows": len(y)}
    return (lambda ks, e, d, r: layer_features(ks, e, d, r) @ weights), fidelity


class DeviceBenchmark(Benchmark[MBV3Arch]):
    """OFA's top-1 and FLOPs of any subnet, with one latency model per name beside them."""

    tabular = False

    def __init__(self, base: OFAMBV3Benchmark, latency: dict[str, Latency]) -> None:
        self.space, self.base, self.latency = base.space, base, latency
        self.minimize = frozenset({FLOPS, *latency})

    @property
    def metrics(self) -> tuple[str, ...]:
        return ("top1", FLOPS, *self.latency)

    def __contains__(self, arch: MBV3Arch) -> bool:
        return arch in self.base

    def query(self, arch: MBV3Arch, metric: str) -> float:
        return float(self.values([arch], metric)[0])

    def values(self, archs: Sequence[MBV3Arch], metric: str) -> np.ndarray:
        if metric in self.latency:
            return self.latency[metric](*as_lists(self.space, archs)) if len(archs) else np.zeros(0)
        return self.base.values(archs, metric)


def models_for(args: argparse.Namespace, csv: OFALatencyBenchmark, base: OFAMBV3Benchmark, seed: int) -> dict:
    """The feasibility models of one seed: K measured subnets (the seed's draw), nag's predictor
    adapted on them, the FLOPs fit on them, and the device table."""
    rows = np.flatnonzero(np.isin(csv.column("resolution"), base.space.resolutions))
    measured = np.random.default_rng([seed, 11]).choice(rows, args.k, replace=False)
    archs = [csv.archs()[i] for i in measured]
    latency = csv.column(args.device)[measured]
    adapted = SHARED["meta"].adapt(archs, latency)
    flops = base.values(archs, FLOPS)
    slope, intercept = np.polyfit(flops, latency, 1)
    space = base.space

    def few_shot(quantile: float) -> Latency:
        def predict(ks, e, d, r):
            lists = zip(ks.tolist(), e.tolist(), d.tolist(), r.tolist())
            subnets = [space.from_ofa(k_, e_, d_, int(r_)) for k_, e_, d_, r_ in lists]
            out = []
            for start in range(0, len(subnets), 2048):  # the features of 50,000 subnets at once take ~12 GB
                prediction = adapted.predict(subnets[start : start + 2048])
                out.append(prediction.median if quantile == 0.5 else prediction.interval(2 * quantile - 1)[1])
            return np.concatenate(out) if out else np.zeros(0)

        return predict

    return {
        "few_shot_median": few_shot(0.5),
        "few_shot_90": few_shot(0.9),
        "flops_fit": lambda ks, e, d, r: slope * base.flops_of_lists(ks, e, d, r) + intercept,
        "device_table": SHARED["truth"],
    }


def feasible_pool(bench: DeviceBenchmark, model: str, budget: float, size: int, seed: int) -> list:
    """``size`` uniform random subnets the model judges within ``budget``, drawn as OFA's arrays."""
    rng, kept, space = np.random.default_rng([seed, 7]), [], bench.space
    for _ in range(20):
        ks, e, d, r = random_lists(rng, 50_000, space.resolutions)
        fits = np.flatnonzero(bench.latency[model](ks, e, d, r) <= budget)[: size - len(kept)]
        kept.extend(space.from_ofa(ks[i].tolist(), e[i].tolist(), d[i].tolist(), int(r[i])) for i in fits)
        if len(kept) >= size:
            break
    return kept


def run_seed(args: argparse.Namespace, budget: float, seed: int, generator: str | None) -> dict:
    base = OFAMBV3Benchmark(args.data / "ofa_acc_predictor.pth", args.data / "note10_lut")
    bench = DeviceBenchmark(base, models_for(args, SHARED["csv"], base, seed))
    out: dict = {}
    for model in args.models:
        pool = feasible_pool(bench, model, budget, args.pool_size, seed)
        flops = base.values(pool, FLOPS)
        asked = {FLOPS: 1.2 * float(np.percentile(flops, 90))} if len(pool) else {}
        for method in args.methods:
            if method == "bo_generator_evolution" and model not in GENERATOR_MODELS:
                continue
            oracle = QueryOracle(bench, "top1", budget=args.queries, constraints={model: budget})
            strategy(method, generator, asked, pool).run(oracle, args.queries, seed)
            proposals = [a for a, _ in oracle.history]
            values = np.array([v for _, v in oracle.history])
            truly = bench.values(proposals, "device_table") <= budget
            picked = oracle.best  # what the search returns: its best among those it judged within budget
            out[f"{model}/{method}"] = {
                "returned_top1": picked[1] if picked else float("nan"),
                "returned_within": bool(picked and bench.values([picked[0]], "device_table")[0] <= budget),
                "proposals_within": float(truly.mean()) if len(truly) else float("nan"),
                "best_truly_within": float(values[truly].max()) if truly.any() else float("nan"),
            }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "mbv3")
    parser.add_argument("--device", default="help_lat_titan_rtx_64", help="the held-out GPU column")
    parser.add_argument("--k", type=int, default=20, help="subnets measured on the device")
    parser.add_argument("--budgets", type=float, nargs="+", default=None, help="ms (default: percentiles 10, 30)")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--pool-size", type=int, default=10_000)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--workers", type=int, default=2, help="runs in parallel, one process (one thread) each")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    start = time.perf_counter()
    csv = SHARED["csv"] = OFALatencyBenchmark(args.data / "ofa_mbv3_latency.csv")
    SHARED["truth"], fidelity = device_table(csv, args.device)
    target = device_family(args.device)
    sources = [c for c in cost_columns(csv) if device_family(c) != target]
    SHARED["meta"] = LatencyMetaPredictor(ArchFeatures(csv.space, None), seed=0).fit(
        csv.archs(), source_values(csv, sources)
    )
    base = OFAMBV3Benchmark(args.data / "ofa_acc_predictor.pth", args.data / "note10_lut")
    truth = SHARED["truth"](*random_lists(np.random.default_rng(0), 100_000, base.space.resolutions))
    budgets = args.budgets or [float(np.round(np.percentile(truth, p), 1)) for p in (10, 30)]
    generator = fit_generator(args.data)[0] if "bo_generator_evolution" in args.methods else None
    results = {
        "device": args.device,
        "sources": sources,
        "truth_fidelity": fidelity,
        "budgets": {},
    }
    with ProcessPoolExecutor(args.workers, mp_context=get_context("fork")) as workers:
        jobs = {b: [workers.submit(run_seed, args, b, s, generator) for s in range(args.seeds)] for b in budgets}
        done = {b: [job.result() for job in seeds] for b, seeds in jobs.items()}
    for budget in budgets:
        runs = done[budget]
        rows = {}
        for key in runs[0]:
            per = [r[key] for r in runs]
            top1 = np.array([p["returned_top1"] if p["returned_within"] else np.nan for p in per])
            rows[key] = {
                "returned_within": float(np.mean([p["returned_within"] for p in per])),
                "returned_top1_if_within": float(np.nanmedian(top1)) if np.isfinite(top1).any() else float("nan"),
                "returned_top1": float(np.nanmedian([p["returned_top1"] for p in per])),
                "proposals_within": float(np.nanmedian([p["proposals_within"] for p in per])),
                "best_truly_within": float(np.nanmedian([p["best_truly_within"] for p in per])),
                "best_truly_within_iqr": [
                    float(np.nanpercentile([p["best_truly_within"] for p in per], q)) for q in (25, 75)
                ],
                "seeds": per,
            }
            print(
                f"{budget} ms {key:>40}: {rows[key]['returned_within']:.2f} within, "
                f"best truly within {rows[key]['best_truly_within']:.4f}",
                flush=True,
            )
        results["budgets"][f"{budget:g}"] = {"share_random_within": float((truth <= budget).mean()), "rows": rows}
    results["seconds"] = time.perf_counter() - start
    write(results, args)


def write(results: dict, args: argparse.Namespace) -> None:
    ran = command(__file__)
    fid = results["truth_fidelity"]
    lines = [
        f"# A GPU nag never saw: OFA-MobileNetV3 under {results['device']} budgets from K = {args.k} measurements",
        "",
        "Accuracy is **once-for-all's predictor of ImageNet top-1** with weights inherited from the w1.2 supernet, "
        "not a trained network. Latency truth is a per-layer table fitted on the CSV's "
        f"{fid['rows']:,} measured subnets of `{results['device']}` (5-fold CV R² {fid['cv_r2']:.3f}, "
        f"Spearman {fid['cv_spearman']:.3f}): a model of the device, not the device.",
        "",
        f"Meta-trained on {len(results['sources'])} columns of the other GPUs: "
        + ", ".join(f"`{s}`" for s in results["sources"])
        + ".",
        "",
        __doc__.split("Protocol (printed at the top of the results file):")[1].split("Writes")[0].strip(),
        "",
    ]
    for budget, entry in results["budgets"].items():
        lines += [
            f"## {results['device']} <= {budget} ms ({args.seeds} seeds, {args.queries} queries; "
            f"{entry['share_random_within']:.0%} of uniform random subnets are within it)",
            "",
        ]
        table = []
        for key, row in entry["rows"].items():
            model, method = key.split("/")
            lo, hi = row["best_truly_within_iqr"]
            table.append(
                [
                    model,
                    method,
                    f"{row['returned_within']:.1f}",
                    f"{row['returned_top1_if_within']:.4f}",
                    f"{row['proposals_within']:.3f}",
                    f"{row['best_truly_within']:.4f} [{lo:.4f}, {hi:.4f}]",
                ]
            )
        lines += markdown_table(
            [
                "feasibility model",
                "method",
                "returned subnet truly within (share of seeds)",
                "its top-1 (median where within)",
                "proposals truly within (median)",
                "best truly-within top-1 queried [IQR]",
            ],
            table,
        )
        lines.append("")
    lines.append(f"Run took {results['seconds']:.0f} s.")
    write_report(
        args.out / "mbv3_new_device",
        ran,
        {
            "command": ran,
            "args": {k: str(v) for k, v in vars(args).items() if k not in ("csv", "truth", "meta")},
            "results": results,
        },
        "\n".join(lines),
        plot(results),
    )
    print("\n".join(lines), flush=True)


def plot(results: dict):
    budgets = list(results["budgets"])
    fig, axes = figure(1, len(budgets), figsize=(5 * len(budgets), 3.5), squeeze=False, layout="constrained")
    for ax, budget in zip(axes[0], budgets):
        rows = results["budgets"][budget]["rows"]
        for key, row in rows.items():
            ax.scatter(row["proposals_within"], row["best_truly_within"], label=key, s=18)
        ax.set(title=f"<= {budget} ms", xlabel="proposals truly within budget", ylabel="best truly-within top-1")
    axes[0][0].legend(fontsize=6)
    return fig


if __name__ == "__main__":
    main()
