"""Search a space too large to enumerate: OFA-MobileNetV3 under Note10 latency budgets, beside OFA.

    python benchmarks/mbv3_search.py                       # ../shared/data/mbv3, 4 budgets, 10 seeds

Accuracy is once-for-all's predictor of ImageNet top-1 with weights inherited from the w1.2
supernet (not a trained network); latency is OFA's Samsung Note10 lookup table. The space
holds about 10^20 subnets (resolution included), so no method can rank them all.

Protocol (printed at the top of the results file):
- Every call of the accuracy predictor by any method is a query, counted once per distinct
  subnet (nag's ``QueryOracle``; the peer through the same counting); 100 per run. The Note10
  table is a known device model and free: every method may filter by it.
- Every method has the same budgets and seeds; medians over seeds with [25th, 75th] percentiles
  of the best top-1 within the budget after 10/25/50/100 queries.
- The BO rows share one surrogate (UCB over five bootstrap ridge models of the op one-hots,
  10 random feasible subnets to start, 10 queries a round) and differ only in where candidates
  come from: a random pool of 10,000 feasible subnets (drawn per seed), evolution on the
  acquisition seeded by that pool, or the cost-conditioned generator's samples (ranked, or
  seeding the same evolution; its samples are also the generator rows' first 10 queries).
- The generator (``configs/mbv3/cost_conditioned.yaml``) learned random subnets with their
  Note10 latency and FLOPs only: no accuracy label. It is asked for 90% of the budget and for
  FLOPs 1.2x the 90th percentile of random subnets just under the budget (both free cost
  models); its raw samples are reported before any filter.
- The peer is once-for-all's own ``EvolutionFinder`` (``benchmarks/ofa_peer.py``): at its
  default settings cut at 100 queries (its first population), scaled to the budget
  (population 20, run until 100 distinct queries), and at its defaults run to its own end,
  whose query count is reported.

Writes ``results/mbv3_search.{json,md,png}``.
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch
from common import RESULTS, ROOT, command, figure, fit, markdown_table, write_report
from ofa_peer import run_evolution_finder

from nag.benchmarks import OFAMBV3Benchmark
from nag.generation import Conditioning, GenerationRequest, Sampling, generate, load_generator
from nag.search import QueryOracle, RandomSearch, RegularizedEvolution
from nag.search.bo import BayesianOptimization
from nag.spaces.mbv3 import DEPTHS, EXPANDS, KERNELS, NUM_SLOTS, NUM_STAGES

CHECKPOINTS = (10, 25, 50, 100)
LATENCY = "note10_latency"
FLOPS = "flops_M"
METHODS = (
    "random",
    "rea",
    "bo_pool",
    "bo_evolution",
    "bo_generator",
    "bo_generator_evolution",
    "ofa_evolution@100",
    "ofa_evolution_pop20@100",
)
#: OFA's finder scaled to the query budget: a population of 20 (its default 100 spends the whole
#: budget on its random first generation), run until 100 distinct queries.
SMALL_PEER = {"population_size": 20, "max_time_budget": 100}


def random_lists(rng: np.random.Generator, n: int, resolutions) -> tuple[np.ndarray, ...]:
    """``n`` uniform random subnets as OFA's arrays ``(ks, e, d, r)``: free to score by table."""
    ks, e = rng.choice(KERNELS, (n, NUM_SLOTS)), rng.choice(EXPANDS, (n, NUM_SLOTS))
    return ks, e, rng.choice(DEPTHS, (n, NUM_STAGES)), rng.choice(resolutions, n)


def fit_generator(data: Path) -> tuple[str, float]:
    """The cost-conditioned generator (``configs/mbv3/cost_conditioned.yaml``), fitted once and cached."""
    checkpoint, seconds = fit(
        ROOT / "configs" / "mbv3" / "cost_conditioned.yaml",
        ROOT / "runs" / "benchmarks" / "mbv3_search" / "generator",
        [
            "--trainer.enable_progress_bar=false",
            "--trainer.logger=false",
            f"--data.init_args.benchmark.init_args.predictor_path={data / 'ofa_acc_predictor.pth'}",
            f"--data.init_args.benchmark.init_args.lut_dir={data / 'note10_lut'}",
        ],
    )
    return str(checkpoint), seconds


def feasible_pool(bench: OFAMBV3Benchmark, budget: float, size: int, seed: int) -> list:
    """``size`` uniform random subnets within ``budget`` ms: drawn as OFA's arrays and filtered
    by the vectorised Note10 table, so only the kept ones are built (1 in 700 fits 15 ms)."""
    rng, kept = np.random.default_rng([seed, 7]), []
    space = bench.space
    while len(kept) < size:
        ks, e, d, r = random_lists(rng, 500_000, space.resolutions)
        fits = np.flatnonzero(bench.latency_of_lists(ks, e, d, r) <= budget)[: size - len(kept)]
        kept.extend(space.from_ofa(ks[i].tolist(), e[i].tolist(), d[i].tolist(), int(r[i])) for i in fits)
    return kept


def asked_conditions(generator: str, bench: OFAMBV3Benchmark, budget: float) -> dict[str, float]:
    """What the generator is asked for at ``budget``, from free cost models only: a latency of 90%
    of the budget (its samples spread about 2 ms around what is asked; never below the lowest
    it saw in training) and FLOPs 1.2x the 90th percentile of random subnets within 15% under
    the budget: big for their latency, which is where the accurate subnets are."""
    lowest = load_generator(generator).model.hparams["data_spec"]["target_stats"][LATENCY]["min"]
    ks, e, d, r = random_lists(np.random.default_rng(0), 200_000, bench.space.resolutions)
    latency = bench.latency_of_lists(ks, e, d, r)
    near = (latency <= budget) & (latency > 0.85 * budget)
    return {
        LATENCY: max(0.9 * budget, lowest),
        FLOPS: 1.2 * float(np.percentile(bench.flops_of_lists(ks, e, d, r)[near], 90)),
    }


def strategy(
    method: str, generator: str | None, asked: dict[str, float], pool: list
) -> BayesianOptimization | RandomSearch:
    if method == "random":
        return RandomSearch()
    if method == "rea":
        return RegularizedEvolution(population_size=20, sample_size=5)
    bo = {"surrogate": "ridge", "num_init": 10, "batch_size": 10, "ensemble_size": 5, "acquisition": "ucb"}
    if method.startswith("bo_generator"):
        bo |= {"generator_ckpt": generator, "conditions": asked, "num_samples": 200, "steps": 20}
    else:
        bo |= {"candidates": pool}
    return BayesianOptimization(**bo, optimizer="evolution" if method.endswith("evolution") else "pool")


def run_peer(bench: OFAMBV3Benchmark, budget: float, seed: int, max_queries: int | None, **settings) -> dict:
    """OFA's ``EvolutionFinder`` (its defaults unless ``settings``) scored by the same predictor and table."""
    space = bench.space

    def arch(sample: dict):
        return space.from_ofa(sample["ks"], sample["e"], sample["d"], sample["r"])

    start = time.perf_counter()
    run = run_evolution_finder(
        lambda samples: bench.values([arch(s) for s in samples], "top1"),
        lambda sample: float(bench.values([arch(sample)], LATENCY)[0]),
        budget,
        seed,
        max_queries,
        **settings,
    )
    return {
        "best_curve": run.best_curve,
        "num_queries": run.num_queries,
        "feasible": [bench.values([arch(s)], LATENCY)[0] <= budget for s, _ in run.history].count(True),
        "distinct": len({space.key(arch(s)) for s, _ in run.history}),
        "seconds": time.perf_counter() - start,
        "best_arch": space.to_string(arch(run.best[0])) if run.best else None,
    }


def raw_samples(generator: str, bench: OFAMBV3Benchmark, budget: float, asked: dict[str, float], n: int = 500) -> dict:
    """What the generator yields asked for ``budget`` (:func:`asked_conditions`), before any filter:
    valid as sampled, within the budget, distinct, mean latency and mean top-1 (the top-1 is read
    for this report only)."""
    result = generate(
        load_generator(generator, bench.space),
        GenerationRequest(Sampling(n, seed=0), conditioning=Conditioning(asked)),
    )
    valid = result.valid
    lat = bench.values(valid, LATENCY) if valid else np.zeros(0)
    return {
        "asked": asked,
        "samples": n,
        "raw_valid": result.raw_validity,
        "within_budget": float((lat <= budget).sum() / n),
        "distinct": len({bench.space.key(a) for a in valid}),
        "mean_latency": float(lat.mean()) if valid else float("nan"),
        "mean_top1_within_budget": float(bench.values([a for a, t in zip(valid, lat) if t <= budget], "top1").mean())
        if (lat <= budget).any()
        else float("nan"),
    }


def summary(curves: list[list[float]]) -> dict:
    out = {}
    for q in CHECKPOINTS:
        best = np.array([c[min(q, len(c)) - 1] for c in curves])
        out[f"best@{q}"] = float(np.nanmedian(best))
        out[f"best@{q}_iqr"] = [float(np.nanpercentile(best, 25)), float(np.nanpercentile(best, 75))]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "mbv3")
    parser.add_argument("--budgets", type=float, nargs="+", default=[15, 20, 25, 30])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--pool-size", type=int, default=10_000)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--peer-full-seeds", type=int, default=1, help="runs of OFA's search to its own end")
    parser.add_argument("--workers", type=int, default=2, help="budgets searched in parallel, one process each")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    generator = None
    if any(m.startswith("bo_generator") for m in args.methods):
        generator, seconds = fit_generator(args.data)
        print(f"generator: {generator} (fit {seconds:.0f} s)", flush=True)
    results: dict = {"budgets": {}}
    with ProcessPoolExecutor(args.workers, mp_context=get_context("fork")) as workers:
        jobs = {budget: workers.submit(run_budget, args, budget, generator) for budget in args.budgets}
        for budget, job in jobs.items():
            results["budgets"][f"{budget:g}"] = job.result()
            write(results, args)  # each budget as it finishes: a run stopped midway keeps what it measured


def run_budget(args: argparse.Namespace, budget: float, generator: str | None) -> dict:
    """Every method on every seed under one latency budget (one worker process, one thread)."""
    torch.set_num_threads(1)
    bench = OFAMBV3Benchmark(args.data / "ofa_acc_predictor.pth", args.data / "note10_lut")
    entry: dict = {"methods": {}}
    asked = asked_conditions(generator, bench, budget) if generator else {}
    if generator:
        entry["generator_raw"] = raw_samples(generator, bench, budget, asked)
    pools = {s: feasible_pool(bench, budget, args.pool_size, s) for s in range(args.seeds)}
    for method in args.methods:
        start, curves, shares, queried = time.perf_counter(), [], [], set()
        for seed in range(args.seeds):
            if method.startswith("ofa_evolution"):
                peer = run_peer(bench, budget, seed, args.queries, **(SMALL_PEER if "pop20" in method else {}))
                curves.append(peer["best_curve"])
                shares.append(peer["feasible"] / max(peer["num_queries"], 1))
                continue
            oracle = QueryOracle(bench, "top1", budget=args.queries, constraints={LATENCY: budget})
            result = strategy(method, generator, asked, pools[seed]).run(oracle, args.queries, seed)
            curves.append(result.best_curve)
            checked, feasible = oracle.feasibility
            shares.append(feasible / max(checked, 1))
            queried |= {a for a, _ in result.history}
        entry["methods"][method] = summary(curves) | {
            "proposals_within_budget": float(np.median(shares)),
            "distinct_queried": len(queried) if queried else None,
            "seconds_per_run": (time.perf_counter() - start) / args.seeds,
            "curves": curves,
        }
        row = entry["methods"][method]
        print(f"{budget:>4} ms {method:>24}: best@100 {row['best@100']:.4f} {row['best@100_iqr']}", flush=True)
    entry["ofa_evolution_full"] = [run_peer(bench, budget, s, None) for s in range(args.peer_full_seeds)]
    return entry


def write(results: dict, args: argparse.Namespace) -> None:
    ran = command(__file__)
    lines = [
        "# Search a space too large to enumerate: OFA-MobileNetV3 on a Samsung Note10",
        "",
        "Accuracy is **once-for-all's predictor of ImageNet top-1** with weights inherited from the w1.2 "
        "supernet, not a trained network; latency is OFA's Note10 lookup table (free to every method).",
        "",
        __doc__.split("Protocol (printed at the top of the results file):")[1].split("Writes")[0].strip(),
        "",
    ]
    for budget, entry in results["budgets"].items():
        lines += [f"## Note10 latency <= {budget} ms ({args.seeds} seeds, {args.queries} queries)", ""]
        rows = []
        for method, row in entry["methods"].items():
            cells = [
                f"{row[f'best@{q}']:.4f} [{row[f'best@{q}_iqr'][0]:.4f}, {row[f'best@{q}_iqr'][1]:.4f}]"
                for q in CHECKPOINTS
            ]
            distinct = "" if row["distinct_queried"] is None else str(row["distinct_queried"])
            rows.append([method, *cells, f"{row['proposals_within_budget']:.3f}", distinct])
        lines += markdown_table(
            ["method", *(f"best@{q}" for q in CHECKPOINTS), "proposals within budget", "distinct queried (all seeds)"],
            rows,
        )
        raw = entry.get("generator_raw")
        if raw:
            lines += [
                "",
                f"Generator asked for {raw['asked'][LATENCY]:.1f} ms and {raw['asked'][FLOPS]:.0f} MFLOPs, "
                f"{raw['samples']} raw samples before any filter: valid "
                f"{raw['raw_valid']:.3f}, within budget {raw['within_budget']:.3f}, {raw['distinct']} distinct, "
                f"mean latency {raw['mean_latency']:.1f} ms, mean top-1 of those within budget "
                f"{raw['mean_top1_within_budget']:.4f}.",
            ]
        for peer in entry.get("ofa_evolution_full", []):
            best = np.nanmax(peer["best_curve"]) if peer["best_curve"] else float("nan")
            lines += [
                "",
                f"OFA EvolutionFinder at its defaults, run to its end: best {best:.4f} after "
                f"{peer['num_queries']:,} distinct queries ({peer['seconds']:.0f} s).",
            ]
        lines.append("")
    write_report(
        args.out / "mbv3_search",
        ran,
        {"command": ran, "args": vars(args) | {"data": str(args.data), "out": str(args.out)}, "results": results},
        "\n".join(lines),
        plot(results),
    )
    print("\n".join(lines), flush=True)


def plot(results: dict):
    budgets = list(results["budgets"])
    fig, axes = figure(1, len(budgets), figsize=(4 * len(budgets), 3.5), squeeze=False, layout="constrained")
    for ax, budget in zip(axes[0], budgets):
        for method, row in results["budgets"][budget]["methods"].items():
            curves = np.array([c + [c[-1]] * (max(map(len, row["curves"])) - len(c)) for c in row["curves"]])
            ax.plot(np.arange(1, curves.shape[1] + 1), np.nanmedian(curves, 0), label=method)
        ax.set(title=f"Note10 <= {budget} ms", xlabel="queries", ylabel="best top-1 (OFA predictor)")
    axes[0][0].legend(fontsize=7)
    return fig


if __name__ == "__main__":
    main()
