"""A new device from a few measurements: few-shot latency prediction and generation under
that device's budget (issue 18).

Leave-one-device-family-out over every device table nag has:

* NB201 (HW-NAS-Bench): 6 devices (edgegpu, raspi4, edgetpu, pixel3, eyeriss, fpga) x 3
  datasets = 18 latency tables. One device's three tables (CIFAR-10, CIFAR-100 and
  ImageNet16-120 inputs) are near-duplicates, so a held-out device is held out with all its
  dataset variants, latency and energy: the predictor is meta-trained on the other five
  devices' 15 (or 12) latency and 6 (or 9) energy columns only.
* OFA MobileNetV3 (HELP): 4 GPUs x 3 batch sizes; a held-out GPU is held out at every batch size.
* NAS-Bench-Graph: latency of 9 datasets (one GPU, graphs of different sizes); leave one
  dataset out.

For each held-out table, K in ``--ks`` measured architectures (``--draws`` random draws):
Spearman, MAPE and 90 %-interval coverage on every other architecture of the table, for the
adapted predictor (meta-learned embedding + Bayesian linear regression, ``nag.hardware``)
and two baselines: a FLOPs-only fit on the K points and the nearest known device (the
source table that ranks the K points best, rescaled).

Generation (NB201, where accuracies exist): budget = the held-out table's 25th latency
percentile; candidates from the trained conditional generator (``runs/bench_conditional``,
NB201 discrete diffusion conditioned on CIFAR-10 accuracy and FPGA latency; its FPGA
condition is set from the budget through the K points, except when FPGA is the held-out
device, where it is conditioned on accuracy only), kept when ``P(latency <= budget) >= 0.9``
and ranked by an accuracy ridge fitted on the generator's own training split; 100 distinct
architectures per run. Against: the same with the FLOPs fit or the nearest device as the
latency model, uniform random samples filtered by the adapted predictor (no ranking), the
whole table filtered and ranked the same way (a reference: no generator), and an active
loop (K/2 random measurements, then K/2 proposed by ``propose_measurements`` in two rounds).

    python benchmarks/new_device.py --data ../shared/data

Writes benchmarks/results/new_device.{json,md,png}; generator samples are cached under
runs/benchmarks/new_device/. The JSON keeps per-table means over the draws
(``prediction_per_table``, ``generation_per_table``) and the summaries of the Markdown.

Reading the results:

- Spearman is over all of a held-out table's other architectures (15,616 NB201 cells at K = 10),
  including thousands of near-ties; MAPE is dominated by NB201 cells whose output is cut off
  (raspi4 and pixel3 time them at ~0.01 ms against a median of ~25 ms), hence the median APE
  beside it.
- HW-NAS-Bench's EdgeTPU has no value for 4,699 cells (-1 in the table): those are not measured,
  neither as sources nor as held-out truth; a nearest device with missing values predicts nothing
  there (predicted share < 1 in the JSON).
- The generator is the NB201 discrete diffusion of benchmarks/conditional.py (trained on an 80 %
  split of the 9,445 NB201 cells with FLOPs, conditioned on CIFAR-10 accuracy and FPGA latency).
  Its FPGA condition knows the FPGA device; when FPGA is held out it is conditioned on accuracy
  only.
- Generation is scored only where the truth is known: every NB201 cell is in the held-out table,
  so within-budget shares and accuracies are exact. OFA has no accuracies and NAS-Bench-Graph's
  latency is one GPU, so generation is scored on NB201 only.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import time
import zlib
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from common import RESULTS, ROOT, command, figure, fit, markdown_table, write_report
from matplotlib.figure import Figure

from nag.benchmarks import NB201Benchmark, NBGraphBenchmark, OFALatencyBenchmark
from nag.benchmarks.base import Benchmark
from nag.benchmarks.nbgraph import DATASETS as NBGRAPH_DATASETS
from nag.diffusion.guidance import predictor_term
from nag.generation.baseline import UniformRandom
from nag.hardware import (
    ArchFeatures,
    CostFit,
    DeviceTable,
    LatencyMetaPredictor,
    LatencyModel,
    LatencyPrediction,
    NearestDevice,
    TableCosts,
    propose_measurements,
    select_for_device,
    spearman,
)
from nag.hardware.guidance import StateLatency, latency_budget_term
from nag.hardware.sources import cost_columns, device_family, source_values
from nag.io.atomic import write_text_atomically
from nag.io.checkpoints import load_module
from nag.spaces.base import Arch

CACHE = ROOT / "runs" / "benchmarks" / "new_device"
ACCURACY = {"cifar10": "cifar10_test_200ep", "cifar100": "cifar100_test_200ep", "imagenet16": "imagenet16_test_200ep"}


def is_latency(name: str) -> bool:
    """Latency (not energy) columns: the ones a held-out device is scored on."""
    return "energy" not in name


def joined_sources(
    benchmarks: dict[str, Benchmark], metric: str = "latency"
) -> tuple[list[Arch], dict[str, np.ndarray]]:
    """One ``metric`` column per benchmark (NAS-Bench-Graph's datasets), joined on the first
    benchmark's architectures (NaN where another lacks one)."""
    names = list(benchmarks)
    base = benchmarks[names[0]]
    archs = base.archs()
    columns = {}
    for name, bench in benchmarks.items():
        values = bench.column(metric)
        col = np.full(len(archs), np.nan)
        for i, a in enumerate(archs):
            if a in bench:
                col[i] = values[bench.index(a)]
        col[~(col > 0)] = np.nan
        columns[f"{name}_{metric}"] = col
    return archs, columns


def condition_for_budget(
    device: DeviceTable, benchmark: Benchmark, metric: str, budget: float
) -> tuple[float, float] | None:
    """The value of a known device's ``metric`` that corresponds to ``budget`` on the new
    device, by a log-log line through the measured architectures the benchmark also has, and
    how well that device ranks them (Spearman). None with fewer than 3 shared ones."""
    values = benchmark.column(metric)
    pairs = [(values[benchmark.index(a)], y) for a, y in zip(device.archs, device.latencies) if a in benchmark]
    pairs = [(x, y) for x, y in pairs if x > 0]
    if len(pairs) < 3:
        return None
    x, y = np.log(np.array(pairs)).T
    slope, intercept = np.polyfit(x, y, 1)
    if slope <= 0:
        return None
    return float(np.exp((math.log(budget) - intercept) / slope)), spearman(x, y)


GEN_ACC, GEN_LAT = "cifar10_test_200ep", "hwnb_cifar10_fpga_latency"
PREDICTORS = ("adapted", "flops", "nearest")
COLORS = {"adapted": "tab:blue", "flops": "tab:orange", "nearest": "tab:green"}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data"), help="the shared benchmark tables")
    p.add_argument("--ks", default="5,10,20,50", help="measured architectures per held-out device")
    p.add_argument("--draws", type=int, default=5, help="random draws of the K measured architectures")
    p.add_argument("--suites", default="nb201,ofa,nbgraph", help="which benchmarks (comma-separated)")
    p.add_argument("--generator", default="auto", help="generator checkpoint; 'auto': runs/bench_conditional; 'none'")
    p.add_argument("--num-samples", type=int, default=100, help="architectures generated per run")
    p.add_argument("--threshold", type=float, default=0.9, help="P(latency <= budget) for predicted feasibility")
    p.add_argument("--budget-quantile", type=float, default=0.25, help="budget = this quantile of the device")
    p.add_argument("--random-samples", type=int, default=3000, help="uniform random samples per run")
    p.add_argument("--steps", type=int, default=20, help="generator sampling steps")
    p.add_argument("--guided-ks", default="20", help="K values with the guided score generator ('' for none)")
    p.add_argument("--guided-samples", type=int, default=1000, help="guided score-generator samples per run")
    p.add_argument("--accuracy-guidance", type=float, default=0.5, help="accuracy guidance strength (norm ratio)")
    p.add_argument("--latency-guidance", type=float, default=2.0, help="budget hinge strength (norm ratio)")
    p.add_argument("--nbgraph-eval", type=int, default=5000, help="NAS-Bench-Graph architectures scored per table")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a shared 2-core box)")
    p.add_argument("--out", default=str(RESULTS / "new_device"), help="output stem (.json, .md, .png)")
    return p.parse_args(argv)


# --- predictions over a table, reused by every pool ------------------------------------------


class TablePredictions(LatencyModel):
    """A model's predictions over a table, computed once and looked up per architecture
    (NB201's pools are all inside its table)."""

    def __init__(self, name: str, num_measured: int, prediction: LatencyPrediction, index: dict[Any, int]) -> None:
        self.name, self.num_measured = name, num_measured
        self.full, self.index = prediction, index

    def predict(self, archs: Sequence[Any]) -> LatencyPrediction:
        rows = np.array([self.index[a] for a in archs], dtype=np.int64)
        return LatencyPrediction(self.full.mean[rows], self.full.scale[rows], self.full.dof, self.full.power)


def prediction_scores(prediction: LatencyPrediction, truth: np.ndarray) -> dict[str, float]:
    """Spearman, MAPE, 90 % coverage over the architectures the model predicts."""
    ok = np.isfinite(prediction.mean) & np.isfinite(truth)
    if ok.sum() < 3:
        return {"spearman": math.nan, "mape": math.nan, "coverage90": math.nan, "predicted_share": 0.0}
    low, high = prediction.interval(0.9)
    median = prediction.median
    return {
        "spearman": spearman(prediction.mean[ok], truth[ok]),
        "mape": float(np.mean(np.abs(median[ok] - truth[ok]) / truth[ok])),
        "median_ape": float(np.median(np.abs(median[ok] - truth[ok]) / truth[ok])),
        "coverage90": float(np.mean((truth[ok] >= low[ok]) & (truth[ok] <= high[ok]))),
        "predicted_share": float(ok.mean()),
    }


def draw_rows(valid: np.ndarray, k: int, draw: int, table: str) -> np.ndarray:
    rng = np.random.default_rng([draw, k, zlib.crc32(table.encode())])
    return rng.choice(valid, size=k, replace=False)


# --- suites -------------------------------------------------------------------------------


class Suite:
    """One benchmark's device tables: architectures, source columns and their families."""

    def __init__(
        self,
        name: str,
        space: Any,
        archs: list,
        columns: dict[str, np.ndarray],
        costs: Callable | None,
        cost_name: str | None,
        family: Callable[[str], str],
        eval_rows: int | None = None,
    ) -> None:
        self.name, self.space, self.archs, self.columns = name, space, archs, columns
        self.costs, self.cost_name, self.family = costs, cost_name, family
        self.index = {a: i for i, a in enumerate(archs)}
        self.keys = {a: space.key(a) for a in archs}
        self.eval_rows = eval_rows

    @property
    def families(self) -> list[str]:
        return list(dict.fromkeys(self.family(c) for c in self.columns))

    def targets(self, family: str) -> list[str]:
        return [c for c in self.columns if self.family(c) == family and is_latency(c)]


def nb201_suite(data: Path) -> tuple[Suite, NB201Benchmark]:
    bench = NB201Benchmark(str(data / "nb201" / "nb201.csv"))
    columns = source_values(bench, cost_columns(bench))
    costs = TableCosts(bench, ["cifar10_flops_M", "cifar10_params_M"])
    return Suite(
        "NB201 (HW-NAS-Bench)", bench.space, bench.archs(), columns, costs, "cifar10 FLOPs", device_family
    ), bench


def ofa_suite(data: Path) -> Suite:
    bench = OFALatencyBenchmark(data / "mbv3" / "ofa_mbv3_latency.csv")
    columns = source_values(bench, cost_columns(bench))
    costs = TableCosts(bench, ["resolution"])
    return Suite("OFA MobileNetV3 (HELP GPUs)", bench.space, bench.archs(), columns, costs, None, device_family)


def nbgraph_suite(eval_rows: int) -> Suite:
    benches = {d: NBGraphBenchmark(d) for d in NBGRAPH_DATASETS}
    archs, columns = joined_sources(benches, "latency")
    costs = TableCosts(benches["cora"], ["params"])
    return Suite(
        "NAS-Bench-Graph (datasets)",
        benches["cora"].space,
        archs,
        columns,
        costs,
        "params",
        lambda c: c.removesuffix("_latency"),
        eval_rows=eval_rows,
    )


# --- generation (NB201) ----------------------------------------------------------------------


def fpga_levels(bench: NB201Benchmark) -> list[float]:
    column = bench.column(GEN_LAT)
    return sorted({float(np.quantile(column, q)) for q in (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5)})


def generator_pools(path: Path, bench: NB201Benchmark, steps: int) -> tuple[dict[str, list], dict[str, Any]]:
    """Samples of the conditional generator: accuracy-conditioned, and accuracy + FPGA latency
    at several levels; cached by the checkpoint's bytes and the settings."""
    import nag

    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    generator = nag.load_generator(path, guidance_scale=2.0, mode="joint")
    trained = generator.model.hparams["data_spec"]["target_stats"][GEN_ACC]["max"]
    top = min(float(np.nanmax(bench.column(GEN_ACC))), float(trained))  # asked within its training range
    plan = {"acc": ({GEN_ACC: top}, 600), "acc93": ({GEN_ACC: 93.0}, 400), "uncond": (None, 1500)}
    for level in fpga_levels(bench):
        plan[f"fpga:{level:.4f}"] = ({GEN_ACC: top, GEN_LAT: level}, 300)
    settings = {"digest": digest, "steps": steps, "plan": {k: [v[0], v[1]] for k, v in plan.items()}, "v": 1}
    cache = CACHE / f"pools_{hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]}.json"
    space = bench.space
    if cache.is_file():
        stored = json.loads(cache.read_text())
        pools = {k: [space.from_string(s) for s in v] for k, v in stored["pools"].items()}
        return pools, stored["info"]
    pools, start = {}, time.perf_counter()
    for i, (name, (conditions, n)) in enumerate(plan.items()):
        result = generator.sample(n, seed=1000 + i, steps=steps, conditions=conditions)
        pools[name] = [a for a in result.archs if a is not None]
        print(f"  generator pool {name}: {n} samples, {len({space.key(a) for a in pools[name]})} distinct", flush=True)
    info = {
        "checkpoint": str(path),
        "steps": steps,
        "seconds": time.perf_counter() - start,
        "samples": sum(n for _, n in plan.values()),
    }
    CACHE.mkdir(parents=True, exist_ok=True)
    write_text_atomically(
        cache, json.dumps({"pools": {k: [space.to_string(a) for a in v] for k, v in pools.items()}, "info": info})
    )
    return pools, info


def guided_models(data: Path) -> tuple[Any, Any, dict[str, Any]]:
    """The NB201 score generator of benchmarks/search.py (90 % split, 30 epochs) and a
    noise-aware CIFAR-10 accuracy predictor on the same split and SDE, for guided sampling
    (fitted once, cached by :func:`~nag.io.fit_cache.fit_cached`; the predictor is read back
    weights-only, :func:`~nag.io.checkpoints.load_module`)."""
    import nag
    from nag.lightning_modules import PredictorModule

    common = ["--trainer.enable_progress_bar=false", "--trainer.logger=false", "--test_after_fit=false"]
    table = ["--data.init_args.benchmark.init_args.path", str((data / "nb201" / "nb201.csv").resolve())]
    split = "--data.init_args.split=[0.9, 0.05, 0.05]"
    gen_ckpt, _ = fit(
        ROOT / "configs/nb201/diffusion.yaml",
        ROOT / "runs" / "bench_search" / "nb201_generator",
        [*common, "--trainer.max_epochs", "30", split, *table],
    )
    pred_ckpt, _ = fit(
        ROOT / "configs/nb201/predictor.yaml",
        CACHE / "accuracy_predictor",
        [
            *common[:2],
            "--trainer.max_epochs=30",
            "--trainer.log_every_n_steps=50",
            "--model.init_args.noise_aware=true",
            "--data.init_args.train_size=null",
            split,
            "--data.init_args.batch_size=256",
            *table,
        ],
    )
    generator = nag.load_generator(gen_ckpt, normalize_guidance=True, sampler="ode")
    predictor = load_module(PredictorModule, pred_ckpt, None, "--accuracy-predictor")
    return generator, predictor, {"guided_generator": str(gen_ckpt), "accuracy_predictor": str(pred_ckpt)}


def accuracy_rankers(bench: NB201Benchmark, features: ArchFeatures, train_keys: set[str]) -> dict[str, np.ndarray]:
    """Per dataset: the measured accuracy of the generator's training-split cells (what nag was
    trained on) and, elsewhere, a ridge on architecture features and pairwise products of the
    live one-hot ops fitted on them (``ridge:<dataset>``: the ridge everywhere)."""
    archs = bench.archs()
    x = features.transform(archs)
    live = x[:, features.groups["live"]] if "live" in features.groups else x
    i, j = np.triu_indices(live.shape[1], 1)
    design = np.concatenate([x, live[:, i] * live[:, j], np.ones((len(x), 1))], axis=1)
    trained = np.array([bench.space.key(a) in train_keys for a in archs])
    out = {}
    for dataset, metric in ACCURACY.items():
        y = bench.column(metric)
        rows = trained & np.isfinite(y)
        f = design[rows]
        w = np.linalg.solve(f.T @ f + 1.0 * np.eye(f.shape[1]), f.T @ y[rows])
        out[f"ridge:{dataset}"] = design @ w
        out[dataset] = np.where(rows, y, design @ w)  # the training labels where known
    return out


def dataset_of(table: str) -> str:
    name = table.removeprefix("hwnb_").split("_")[0].lower()
    return "imagenet16" if name.startswith("imagenet16") else name


class Generation:
    """Generation scores for NB201 held-out tables (called once per table, K and draw)."""

    def __init__(self, bench: NB201Benchmark, suite: Suite, args: argparse.Namespace) -> None:
        from nag.datamodules import ArchitectureDataModule

        self.bench, self.suite, self.args = bench, suite, args
        self.space = bench.space
        self.results: list[dict[str, Any]] = []
        path = self._generator_path(args.generator)
        self.pools, self.pool_info = generator_pools(path, bench, args.steps) if path else ({}, {})
        self.pool_info["fpga_levels"] = fpga_levels(bench)
        dm = ArchitectureDataModule(bench, targets=[GEN_ACC, GEN_LAT], split=(0.8, 0.1, 0.1), seed=0)
        self.train_keys = dm.train_keys()
        features = ArchFeatures(bench.space, suite.costs).fit(bench.archs())
        self.accuracy = accuracy_rankers(bench, features, self.train_keys)
        self.pool_info["ranker_training_cells"] = int(sum(bench.space.key(a) in self.train_keys for a in bench.archs()))
        self.guided_ks = [int(k) for k in args.guided_ks.split(",") if k]
        self.guided = None
        if self.guided_ks:
            generator, predictor, info = guided_models(Path(args.data))
            self.guided = (generator, predictor_term(predictor, GEN_ACC, scale=args.accuracy_guidance))
            self.pool_info.update(info)

    @staticmethod
    def _generator_path(option: str) -> Path | None:
        if option == "none":
            return None
        if option != "auto":
            return Path(option)
        found = sorted((ROOT / "runs" / "bench_conditional").glob("*/checkpoints/last.ckpt"))
        if not found:
            print("  no generator checkpoint under runs/bench_conditional: generation from the table and random only")
        return found[-1] if found else None

    def truth_model(self, table: str) -> LatencyModel:
        """The held-out table itself as a (certain) latency model: the ranking's ceiling."""
        truth = np.log(self.suite.columns[table])
        full = LatencyPrediction(truth, np.full(len(truth), 1e-9), 1e9)
        return TablePredictions("true latency", 0, full, self.suite.index)

    def scorer(self, dataset: str) -> Callable[[Sequence[Any]], np.ndarray]:
        """Predicted accuracy of ``dataset`` (``ridge:<dataset>``: the ridge alone)."""
        values, index = self.accuracy[dataset], self.suite.index
        return lambda archs: values[[index[a] for a in archs]]

    def candidates(self, held_out_family: str, device: DeviceTable, budget: float) -> tuple[list, str]:
        """The generator's samples for this run: accuracy-conditioned pools, plus the FPGA
        level the budget maps to through the K points (not when FPGA is the held-out device)."""
        if not self.pools:
            return [], "no generator"
        archs = self.pools["acc"] + self.pools["acc93"] + self.pools["uncond"]
        if held_out_family == "fpga":
            return archs, "accuracy only (FPGA held out)"
        mapped = condition_for_budget(device, self.bench, GEN_LAT, budget)
        levels = self.pool_info["fpga_levels"]
        if mapped is None:
            return archs, "accuracy only (no FPGA mapping)"
        below = [lv for lv in levels if lv <= mapped[0]] or levels[:1]
        chosen = below[-2:]
        for level in chosen:
            archs = archs + self.pools[f"fpga:{level:.4f}"]
        return archs, "FPGA " + "/".join(f"{lv:.3g}" for lv in chosen)

    def score(self, table: str, family: str, k: int, draw: int, rows: np.ndarray, models: dict[str, Any]) -> None:
        bench, space, args = self.bench, self.space, self.args
        truth = self.suite.columns[table]
        budget = float(np.nanquantile(truth, args.budget_quantile))
        dataset = dataset_of(table)
        acc = bench.column(ACCURACY[dataset])
        feasible_acc = acc[(truth <= budget) & np.isfinite(acc)]
        feasible_networks = len({self.suite.keys[a] for a, t in zip(self.suite.archs, truth) if t <= budget})
        best_feasible, p90 = float(feasible_acc.max()), float(np.quantile(feasible_acc, 0.9))
        index = self.suite.index

        def judged(candidates: list) -> list:  # EdgeTPU lacks 4,699 cells: those cannot be scored
            return [a for a in candidates if np.isfinite(truth[index[a]])]

        archs = judged(self.suite.archs)
        device = DeviceTable(space, [self.suite.archs[i] for i in rows], truth[rows])
        scorer = self.scorer(dataset)
        generated, pool_note = self.candidates(family, device, budget)
        generated = judged(generated)
        rng_seed = int(zlib.crc32(f"{table}/{k}/{draw}".encode()))
        random_archs = judged(UniformRandom(space).sample(args.random_samples, seed=rng_seed).archs)
        runs: dict[str, Any] = {}
        common = {"space": space, "threshold": args.threshold, "device": device, "key": self.suite.keys.__getitem__}
        if generated:
            for name in PREDICTORS:
                if name in models:
                    runs[f"{name} + generator"] = select_for_device(
                        generated, models[name], budget, args.num_samples, accuracy=scorer, **common
                    )
            runs["adapted + generator, expected share 0.9"] = select_for_device(
                generated,
                models["adapted"],
                budget,
                args.num_samples,
                accuracy=scorer,
                **{**common, "threshold": 0.5},
                expected_share=args.threshold,
            )
        runs["random + adapted filter"] = select_for_device(
            random_archs, models["adapted"], budget, args.num_samples, **common
        )
        runs["table + adapted (reference)"] = select_for_device(
            archs, models["adapted"], budget, args.num_samples, accuracy=scorer, **common
        )
        runs["table + true latency (ceiling)"] = select_for_device(
            archs, self.truth_model(table), budget, args.num_samples, accuracy=scorer, **common
        )
        if self.guided is not None and k in self.guided_ks:
            for name, model in (
                ("adapted + guided score generator", models["adapted_fit"]),
                ("adapted + score generator, accuracy guidance only", None),
            ):
                candidates = self.guided_candidates(model, budget, rng_seed, judged)
                runs[name] = select_for_device(
                    candidates, models["adapted"], budget, args.num_samples, accuracy=scorer, **common
                )
            if k >= 10:  # the hinge of the model adapted to the K/2 random measurements
                first = models["meta"].adapt([self.suite.archs[i] for i in rows[: k // 2]], truth[rows[: k // 2]])
                candidates = self.guided_candidates(first, budget, rng_seed, judged)
                model, measured = self.active(table, k, rows, candidates, budget, scorer, models)
                runs["active + guided score generator"] = select_for_device(
                    candidates, model, budget, args.num_samples, accuracy=scorer, **{**common, "device": measured}
                )
        if generated and k >= 10:
            model, measured = self.active(table, k, rows, generated, budget, scorer, models)
            active = {**common, "device": measured}
            runs["active + generator"] = select_for_device(
                generated, model, budget, args.num_samples, accuracy=scorer, **active
            )
            runs["active + generator, expected share 0.9"] = select_for_device(
                generated,
                model,
                budget,
                args.num_samples,
                accuracy=scorer,
                **{**active, "threshold": 0.5},
                expected_share=args.threshold,
            )
        for method, sel in runs.items():
            chosen = [self.suite.index[a] for a in sel.archs]
            lat, a = truth[chosen], acc[chosen]
            ok = lat <= budget
            self.results.append(
                {
                    "table": table,
                    "family": family,
                    "K": k,
                    "draw": draw,
                    "method": method,
                    "pool": pool_note if "generator" in method else "",
                    "budget": budget,
                    "selected": len(chosen),
                    "candidates": sel.distinct,
                    "predicted_feasible": sel.feasible,
                    "within_budget": float(ok.mean()) if len(chosen) else math.nan,
                    "best_acc": float(a[ok].max()) if ok.any() else math.nan,
                    "mean_acc": float(a[ok].mean()) if ok.any() else math.nan,
                    "best_feasible": best_feasible,
                    "feasible_p90": p90,
                    "feasible_networks": feasible_networks,
                    "gap_pp": best_feasible - float(a[ok].max()) if ok.any() else math.nan,
                    "measured": k,
                }
            )

    def guided_candidates(self, model: Any, budget: float, seed: int, judged: Callable) -> list:
        """Samples of the score generator guided toward accuracy and, with an adapted ``model``,
        by its budget hinge (None: accuracy guidance only; the same seed, only the hinge differs)."""
        generator, accuracy_term = self.guided
        terms = [accuracy_term]
        if model is not None:
            scale = self.args.latency_guidance
            terms.append(latency_budget_term(StateLatency(model), budget, self.args.threshold, scale=scale))
        result = generator.sample(self.args.guided_samples, seed=seed % 2**31, steps=self.args.steps, guidance=terms)
        return judged([a for a in result.archs if a is not None and a in self.suite.index])

    def active(self, table, k, rows, generated, budget, scorer, models) -> tuple[Any, DeviceTable]:
        """K/2 random measurements, then two rounds proposing K/4 each from the generator's
        candidates: the model adapted to all K and the measurements."""
        truth, archs, space = self.suite.columns[table], self.suite.archs, self.space
        first = list(rows[: k // 2])
        device = DeviceTable(space, [archs[i] for i in first], truth[first])
        meta = models["meta"]
        for r in range(2):
            model = meta.adapt(device.archs, device.latencies)
            want = (k - len(device)) if r == 1 else (k - k // 2) // 2
            proposed = propose_measurements(
                model, generated, budget, want, space, accuracy=scorer, device=device, key=self.suite.keys.__getitem__
            )
            proposed = [a for a in proposed if np.isfinite(truth[self.suite.index[a]])]
            device = device.extended(proposed, [truth[self.suite.index[a]] for a in proposed])
        return meta.adapt(device.archs, device.latencies), device


# --- the leave-one-family-out loop -------------------------------------------------------------


def evaluate(suite: Suite, ks: list[int], draws: int, generation: Generation | None = None) -> list[dict]:
    rows_out = []
    for family in suite.families:
        targets = suite.targets(family)
        if not targets:
            continue
        sources = {c: v for c, v in suite.columns.items() if suite.family(c) != family}
        start = time.perf_counter()
        meta = LatencyMetaPredictor(ArchFeatures(suite.space, suite.costs), seed=0).fit(suite.archs, sources)
        fit_seconds = time.perf_counter() - start
        design: dict[str, np.ndarray] = {}  # the adapted model's features, once per table pool
        nearest = NearestDevice.from_columns(suite.archs, sources)
        flops = CostFit(lambda a: suite.costs(a)[:, 0], "flops") if suite.cost_name else None
        print(
            f"  {suite.name}: held out {family} ({len(targets)} tables); meta-trained on {len(sources)} "
            f"source tables in {fit_seconds:.1f}s",
            flush=True,
        )
        for table in targets:
            truth = suite.columns[table]
            valid = np.flatnonzero(np.isfinite(truth))
            pool = np.arange(len(suite.archs))  # predicted: every architecture (pools look them up)
            if suite.eval_rows and len(valid) > suite.eval_rows:
                pool = np.sort(np.random.default_rng(zlib.crc32(table.encode())).choice(valid, suite.eval_rows, False))
            pool_archs = [suite.archs[i] for i in pool]
            pool_index = {a: j for j, a in enumerate(pool_archs)}
            for k in ks:
                for draw in range(draws):
                    rows = draw_rows(valid, k, draw, table)
                    measured = [suite.archs[i] for i in rows]
                    models: dict[str, Any] = {"adapted": meta.adapt(measured, truth[rows])}
                    if flops is not None:
                        models["flops"] = flops.adapt(measured, truth[rows])
                    models["nearest"] = nearest.adapt(measured, truth[rows])
                    test = ~np.isin(pool, rows) & np.isfinite(truth[pool])
                    cached = {}
                    for name, model in models.items():
                        if name == "adapted":
                            if table not in design:
                                design = {table: meta.design(pool_archs)}
                            mean, scale = model.model.predict(design[table])
                            prediction = LatencyPrediction(mean, scale, model.model.dof, model.power)
                        else:
                            prediction = model.predict(pool_archs)
                        scores = prediction_scores(
                            LatencyPrediction(
                                prediction.mean[test], prediction.scale[test], prediction.dof, prediction.power
                            ),
                            truth[pool][test],
                        )
                        extra = {"nearest_device": model.device} if name == "nearest" else {}
                        rows_out.append(
                            {
                                "suite": suite.name,
                                "table": table,
                                "family": family,
                                "K": k,
                                "draw": draw,
                                "method": name,
                                **scores,
                                **extra,
                            }
                        )
                        cached[name] = TablePredictions(model.name, model.num_measured, prediction, pool_index)
                    if generation is not None:
                        cached["meta"], cached["adapted_fit"] = meta, models["adapted"]
                        generation.score(table, family, k, draw, rows, cached)
            done = [r for r in rows_out if r["table"] == table and r["method"] == "adapted" and r["K"] == 20]
            if done:
                print(f"    {table}: adapted Spearman at K=20 {np.mean([r['spearman'] for r in done]):.3f}", flush=True)
    return rows_out


# --- report ----------------------------------------------------------------------------------


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    v = np.asarray([x for x in values if np.isfinite(x)], dtype=np.float64)
    return (float(v.mean()), float(v.std())) if len(v) else (math.nan, math.nan)


def fmt(value: float, digits: int = 3) -> str:
    return "-" if not np.isfinite(value) else f"{value:.{digits}f}"


def per_table_means(rows: list[dict], keys: Sequence[str]) -> list[dict]:
    """Mean over draws of every numeric field, per ``keys`` (the JSON keeps these, not every draw)."""
    groups = defaultdict(list)
    for r in rows:
        groups[tuple(r[k] for k in keys)].append(r)
    out = []
    for key, rs in groups.items():
        entry: dict[str, Any] = dict(zip(keys, key))
        entry["draws"] = len(rs)
        for field, value in rs[0].items():
            if field in keys or field == "draw":
                continue
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                entry[field] = round(mean_std([r[field] for r in rs])[0], 5)
            else:
                entry[field] = max({r[field] for r in rs}, key=[r[field] for r in rs].count)
        out.append(entry)
    return out


def summarize_prediction(rows: list[dict]) -> list[dict]:
    groups = defaultdict(list)
    for r in rows:
        groups[(r["suite"], r["K"], r["method"])].append(r)
    out = []
    for (suite, k, method), rs in groups.items():
        entry = {"suite": suite, "K": k, "method": method, "runs": len(rs)}
        for m in ("spearman", "mape", "median_ape", "coverage90", "predicted_share"):
            entry[m], entry[f"{m}_std"] = mean_std([r.get(m, math.nan) for r in rs])
        out.append(entry)
    return out


def summarize_generation(rows: list[dict]) -> list[dict]:
    groups = defaultdict(list)
    for r in rows:
        groups[(r["K"], r["method"])].append(r)
    out = []
    for (k, method), rs in groups.items():
        entry = {"K": k, "method": method, "runs": len(rs)}
        for m in ("within_budget", "selected", "gap_pp", "mean_acc", "best_acc", "measured"):
            entry[m], entry[f"{m}_std"] = mean_std([r[m] for r in rs])
        entry["mean_minus_p90"], _ = mean_std([r["mean_acc"] - r["feasible_p90"] for r in rs])
        entry["share_within_ge_0.9"] = float(np.mean([r["within_budget"] >= 0.9 for r in rs]))
        entry["share_selected_ge_50"] = float(np.mean([r["selected"] >= 50 for r in rs]))
        entry["share_gap_le_0.3"] = float(np.mean([np.isfinite(r["gap_pp"]) and r["gap_pp"] <= 0.3 for r in rs]))
        entry["share_mean_ge_p90"] = float(
            np.mean([np.isfinite(r["mean_acc"]) and r["mean_acc"] >= r["feasible_p90"] for r in rs])
        )
        out.append(entry)
    return out


def markdown(report: dict) -> str:
    lines = [
        "# A new device from K measurements: few-shot latency prediction and generation under its budget",
        "",
        f"Command: `{report['command']}` ({report['seconds']:.0f} s, torch threads: {report['threads']}, on a "
        f"{report['cores']}-core machine; "
        f"K in {report['ks']}, {report['draws']} draws of the K measured architectures per held-out table).",
        "",
        "Protocol: **leave-one-device-family-out**. Held out = one physical device with all its variants "
        "(NB201: its CIFAR-10, CIFAR-100 and ImageNet16-120 latency tables and its energy tables; OFA: one GPU "
        "at batch 1, 32 and 64; NAS-Bench-Graph: one dataset's latency, as its tables are one GPU on nine "
        "datasets). The predictor is meta-trained on the remaining families only, then adapted to K random "
        "measured architectures of each held-out table; scores are over every other architecture of the "
        "table (NAS-Bench-Graph: a fixed random 5,000 per table).",
        "",
        "Methods: **adapted** = meta-learned embedding (MLP with one head per source table, trained on "
        "standardised log latency) + Bayesian linear regression on [embedding, one-hot/live ops, op counts, "
        "log FLOPs/params] with the heads' second moment as the embedding's prior, prior scales by empirical "
        "Bayes and the noise integrated out (Student-t predictive); **flops** = log latency linear in log FLOPs "
        "(NAS-Bench-Graph: params; OFA has no FLOPs column) on the K points; **nearest** = the source table "
        "whose latencies rank the K points best (Spearman), rescaled by a log-log fit.",
        "",
        "## Prediction (mean over held-out tables and draws)",
        "",
        "Spearman of log latency (± its spread over tables and draws), MAPE, median APE, coverage of the 90 % "
        "predictive interval.",
        "",
    ]
    summary = report["prediction_summary"]
    for suite in dict.fromkeys(s["suite"] for s in summary):
        lines += [
            f"### {suite}",
            "",
            *markdown_table(
                ["K", "method", "Spearman", "MAPE", "median APE", "90% coverage"],
                (
                    [
                        s["K"],
                        s["method"],
                        f"{fmt(s['spearman'])} ± {fmt(s['spearman_std'], 2)}",
                        fmt(s["mape"]),
                        fmt(s["median_ape"]),
                        fmt(s["coverage90"], 2),
                    ]
                    for s in sorted(
                        (s for s in summary if s["suite"] == suite),
                        key=lambda s: (s["K"], PREDICTORS.index(s["method"])),
                    )
                ),
            ),
            "",
        ]
    per_table = report.get("per_table_k20", [])
    if per_table:
        lines += [
            "### Per held-out table at K = 20",
            "",
            "Spearman of adapted / flops / nearest, and the source table the nearest device picked most often.",
            "",
            *markdown_table(
                ["table", "adapted", "flops", "nearest", "nearest picks"],
                (
                    [r["table"], fmt(r["adapted"]), fmt(r["flops"]), fmt(r["nearest"]), r["nearest_device"]]
                    for r in per_table
                ),
            ),
            "",
        ]
    gen = report.get("generation_summary")
    if gen:
        info, args = report.get("generator", {}), report["args"]
        networks = mean_std([r["feasible_networks"] for r in report["generation_per_table"]])[0]
        lines += [
            "## Generation on NB201 held-out devices (budget = the held-out table's 25th latency percentile)",
            "",
            f"Up to {report['num_samples']} distinct architectures (isomorphism classes) per run. Predicted feasible: "
            f"P(latency <= budget) >= {report['threshold']} for each (rows without 'expected share'), or, with "
            f"'expected share {report['threshold']}', candidates with P >= 0.5 taken in accuracy order while the "
            f"selected set's mean P stays >= {report['threshold']}. Ranked by predicted accuracy: the measured "
            "test accuracy of the generator's training-split cells "
            f"({info.get('ranker_training_cells', '?')} NB201 cells) and a ridge fitted on them elsewhere. "
            f"Generator: `{info.get('checkpoint', 'none')}` ({info.get('samples', 0)} cached samples at "
            f"{info.get('steps', '?')} steps: accuracy-conditioned, unconditional, and accuracy + FPGA latency at the "
            "level the budget maps to through the K points; no FPGA condition when FPGA is the held-out device). "
            "'active' measures K/2 random cells, then K/4 + K/4 proposed by `propose_measurements` from the "
            "generator's candidates (K measurements in all). 'table + true latency (ceiling)' ranks the table's "
            "truly feasible cells with the same accuracy ranking. "
            f"'guided score generator' (K = {args['guided_ks']}): {args['guided_samples']} samples of the NB201 "
            f"score diffusion (`{info.get('guided_generator', 'none')}`) guided toward CIFAR-10 accuracy by a "
            f"noise-aware predictor (`{info.get('accuracy_predictor', 'none')}`, strength "
            f"{args['accuracy_guidance']}) and by the adapted predictor's budget hinge inside the sampler (strength "
            f"{args['latency_guidance']}); "
            "'accuracy guidance only' is the same draw (same seed) without the hinge; 'active + guided' adapts to "
            "K/2 random measurements, guides with that model, then measures K/2 proposed among its samples. "
            f"The held-out tables have on average {networks:.0f} distinct feasible networks under the budget.",
            "",
            "Within budget = share of the selected architectures whose true latency on the held-out table is within "
            "the budget; gap = best feasible cell's accuracy minus the best selected within-budget accuracy (pp); "
            "mean - p90 = mean accuracy of the selected within-budget architectures minus the feasible cells' 90th "
            "percentile (pp); the last four columns: share of (table, draw) runs meeting each target.",
            "",
            *markdown_table(
                [
                    "K",
                    "method",
                    "within budget",
                    "selected",
                    "gap pp",
                    "mean - p90 pp",
                    "runs >= 0.9 within",
                    "runs >= 50 selected",
                    "runs gap <= 0.3",
                    "runs mean >= p90",
                ],
                (
                    [
                        s["K"],
                        s["method"],
                        fmt(s["within_budget"]),
                        fmt(s["selected"], 1),
                        fmt(s["gap_pp"], 2),
                        fmt(s["mean_minus_p90"], 2),
                        fmt(s["share_within_ge_0.9"], 2),
                        fmt(s["share_selected_ge_50"], 2),
                        fmt(s["share_gap_le_0.3"], 2),
                        fmt(s["share_mean_ge_p90"], 2),
                    ]
                    for s in sorted(gen, key=lambda s: (s["K"], s["method"]))
                ),
            ),
            "",
        ]
    targets = report.get("targets")
    if targets:
        methods = list(targets[0]["measured"])
        lines += [
            "## The issue's targets at K = 20 (NB201; measured value, met or not)",
            "",
            *markdown_table(
                ["target", *methods],
                (
                    [t["target"], *(f"{t['measured'][m]} ({'yes' if t['met'][m] else 'no'})" for m in methods)]
                    for t in targets
                ),
            ),
            "",
        ]
    lines += ["![Spearman and within-budget share against K](new_device.png)", ""]
    return "\n".join(lines) + "\n"


def plot(report: dict) -> Figure:
    summary = report["prediction_summary"]
    suites = list(dict.fromkeys(s["suite"] for s in summary))
    panels = len(suites) + (1 if report.get("generation_summary") else 0)
    fig, axes = figure(1, panels, figsize=(4.2 * panels, 3.4), squeeze=False)
    for ax, suite in zip(axes[0], suites):
        for method in PREDICTORS:
            pts = sorted(
                (s["K"], s["spearman"], s["spearman_std"])
                for s in summary
                if s["suite"] == suite and s["method"] == method
            )
            if pts:
                k, m, sd = map(np.array, zip(*pts))
                ax.errorbar(k, m, yerr=sd, marker="o", capsize=3, label=method, color=COLORS[method])
        ax.set_xscale("log")
        ax.set_xticks(report["ks"], [str(k) for k in report["ks"]])
        ax.minorticks_off()
        ax.set_title(suite, fontsize=9)
        ax.set_xlabel("K measured")
        ax.set_ylabel("Spearman (held-out table)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    gen = report.get("generation_summary")
    if gen:
        ax = axes[0][-1]
        for method in sorted({s["method"] for s in gen}):
            pts = sorted((s["K"], s["within_budget"]) for s in gen if s["method"] == method)
            k, m = map(np.array, zip(*pts))
            ax.plot(k, m, marker="o", label=method)
        ax.axhline(0.9, color="grey", ls="--", lw=1)
        ax.set_xscale("log")
        ax.set_xticks(report["ks"], [str(k) for k in report["ks"]])
        ax.minorticks_off()
        ax.set_title("NB201 generation: share within budget", fontsize=9)
        ax.set_xlabel("K measured")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    fig.tight_layout()
    return fig


TARGET_METHODS = (
    "adapted + generator",
    "adapted + generator, expected share 0.9",
    "active + generator",
    "active + generator, expected share 0.9",
    "adapted + guided score generator",
    "active + guided score generator",
)


def targets_at(report: dict, k: int = 20) -> list[dict]:
    """The issue's K = 20 targets, per generation method (Spearman: the adapted predictor)."""
    gen = {s["method"]: s for s in report.get("generation_summary", []) if s["K"] == k}
    methods = [m for m in TARGET_METHODS if m in gen]
    pred = [
        s
        for s in report["prediction_summary"]
        if s["K"] == k and s["method"] == "adapted" and s["suite"].startswith("NB201")
    ]
    if not methods or not pred:
        return []
    rho = pred[0]["spearman"]
    rows = [
        ("Spearman >= 0.95 (NB201 mean over the 18 tables)", lambda g: fmt(rho), lambda g: rho >= 0.95),
        (
            ">= 90 % of the generated distinct architectures within budget",
            lambda g: fmt(g["within_budget"]),
            lambda g: g["within_budget"] >= 0.9,
        ),
        (">= 50 distinct among 100", lambda g: fmt(g["selected"], 1), lambda g: g["selected"] >= 50),
        (
            "best generated within 0.3 pp of the best feasible cell",
            lambda g: fmt(g["gap_pp"], 2) + " pp",
            lambda g: g["gap_pp"] <= 0.3,
        ),
        (
            "within-budget mean >= the feasible set's 90th percentile",
            lambda g: fmt(g["mean_minus_p90"], 2) + " pp",
            lambda g: g["mean_minus_p90"] >= 0,
        ),
    ]
    return [
        {
            "target": name,
            "measured": {m: value(gen[m]) for m in methods},
            "met": {m: bool(met(gen[m])) for m in methods},
        }
        for name, value, met in rows
    ]


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    data = Path(args.data)
    if not (data / "nb201" / "nb201.csv").is_file():
        sys.exit(f"error: {data}/nb201/nb201.csv not found; pass --data /path/to/shared/data")
    ks = [int(k) for k in args.ks.split(",")]
    suites = args.suites.split(",")
    start = time.perf_counter()
    prediction, generation_rows, generator_info = [], [], {}
    if "nb201" in suites:
        suite, bench = nb201_suite(data)
        generation = Generation(bench, suite, args)
        generator_info = generation.pool_info
        prediction += evaluate(suite, ks, args.draws, generation)
        generation_rows = generation.results
    if "ofa" in suites:
        prediction += evaluate(ofa_suite(data), ks, args.draws)
    if "nbgraph" in suites:
        prediction += evaluate(nbgraph_suite(args.nbgraph_eval), ks, args.draws)
    per_table = []
    for table in dict.fromkeys(r["table"] for r in prediction if r["suite"].startswith("NB201")):
        entry: dict[str, Any] = {"table": table}
        for method in PREDICTORS:
            entry[method] = mean_std(
                [r["spearman"] for r in prediction if r["table"] == table and r["K"] == 20 and r["method"] == method]
            )[0]
        picks = [
            r["nearest_device"] for r in prediction if r["table"] == table and r["K"] == 20 and r["method"] == "nearest"
        ]
        entry["nearest_device"] = max(set(picks), key=picks.count) if picks else "-"
        per_table.append(entry)
    report = {
        "command": command(__file__, argv),
        "cores": os.cpu_count(),
        "args": vars(args),
        "ks": ks,
        "draws": args.draws,
        "threads": args.threads,
        "num_samples": args.num_samples,
        "threshold": args.threshold,
        "generator": generator_info,
        "prediction_summary": summarize_prediction(prediction),
        "generation_summary": summarize_generation(generation_rows) if generation_rows else [],
        "per_table_k20": per_table if 20 in ks else [],
        "prediction_per_table": per_table_means(prediction, ("suite", "table", "family", "K", "method")),
        "generation_per_table": per_table_means(generation_rows, ("table", "family", "K", "method")),
    }
    report["seconds"] = time.perf_counter() - start
    report["targets"] = targets_at(report)
    written = write_report(args.out, report["command"], report, markdown(report), plot(report))
    print(f"wrote {written} ({report['seconds']:.0f} s)")
    return report


if __name__ == "__main__":
    main()
