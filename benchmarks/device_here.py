"""This machine is a device too (issue 18, item 5): end to end with no latency table from anywhere.

1. Time K random NB201 cells on this CPU (``nag.hardware.measure_latency``: batch 1, torch
   pinned to ``--threads``, median of ``--repeats`` timed passes after ``--warmup``, in
   ``--rounds`` interleaved passes over all the cells) and write them as the ``arch,latency``
   table ``nag generate --device_table`` takes; read it back with ``read_device_table``.
   Both clocks are read around every pass, and the whole flow runs once per clock: the wall
   clock (what a user waits) and the timing thread's CPU time (not inflated by the time other
   jobs hold the core on a shared machine).
2. Meta-train the few-shot latency predictor on NB201's HW-NAS-Bench latency and energy tables
   (``nag.hardware.meta_train``) and adapt it to the K timings.
3. Budget: the median of the K measured latencies.
4. 100 distinct architectures predicted within the budget (P(latency <= budget) >= 0.9 under
   the adapted predictor), ranked by NB201's tabulated CIFAR-10 accuracy (a look-up standing in
   for an accuracy predictor; it pushes the choice towards slow, accurate cells near the
   budget, where latency errors show), from (a) uniform random samples (the baseline:
   ``generate_for_device`` with ``UniformRandom``, at most 20 x 100 draws) and (b) the trained
   NB201 discrete diffusion checkpoint, if ``runs/`` has one, with the same number of draws
   conditioned on top accuracy and on FPGA latencies that 0.6-0.9 x the budget map to through
   the K cells (``condition_for_budget``: the closest known device as a condition), and (c) the
   NB201 score diffusion of ``new_device.py`` guided toward accuracy by a noise-aware predictor
   and by the adapted predictor's budget hinge (``generate_for_device(..., latency_guidance=2)``;
   both models fitted once and cached, as in ``new_device.py``).
5. Time every selected architecture and the K cells again, in one measurement in shuffled order
   and interleaved rounds, so load changes on a shared machine hit every method alike.
6. Per clock and method: the share of the selected truly within the budget, and within the
   budget taken again from the K cells' second timing (same measurement: a ratio immune to
   drift between the two); Spearman and MAPE of predicted vs measured latency on the selected
   ones; the noise (relative IQR of the repeats, and the K cells' test-retest).

    python benchmarks/device_here.py

Writes benchmarks/results/device_here.{json,md} and the K-cell tables under runs/benchmarks/device_here/.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from common import RESULTS, ROOT, command, generation_checkpoint, markdown_table, write_report
from new_device import condition_for_budget

from nag.benchmarks import NB201Benchmark
from nag.generation import generate_for_device
from nag.generation.baseline import UniformRandom
from nag.hardware import (
    DeviceSelection,
    DeviceTable,
    LatencyModel,
    Measurement,
    measure_latency,
    meta_train,
    read_device_table,
    select_for_device,
    spearman,
    write_latency_table,
)
from nag.hardware.measure import CLOCKS
from nag.report.tables import format_table
from nag.spaces.base import SearchSpace

TABLES = ROOT / "runs" / "benchmarks" / "device_here"
ACCURACY, FPGA = "cifar10_test_200ep", "hwnb_cifar10_fpga_latency"
#: Fractions of the budget whose FPGA equivalents condition the generator (one pool each).
LEVELS = (0.6, 0.7, 0.8, 0.9)
RANDOM, NAG = "random + adapted filter", "nag discrete diffusion + adapted filter"
GUIDED = "nag score diffusion + latency guidance"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data"), help="the shared benchmark tables")
    p.add_argument("--k", type=int, default=20, help="random cells timed to adapt the predictor")
    p.add_argument("--num-samples", type=int, default=100, help="distinct architectures generated per method")
    p.add_argument("--repeats", type=int, default=40, help="timed forward passes per architecture")
    p.add_argument("--rounds", type=int, default=4, help="interleaved passes over all architectures")
    p.add_argument("--warmup", type=int, default=5, help="untimed forward passes first")
    p.add_argument("--threads", type=int, default=1, help="torch threads while timing and training")
    p.add_argument("--threshold", type=float, default=0.9, help="P(latency <= budget) for predicted feasibility")
    p.add_argument("--guidance", type=float, default=2.0, help="the generator's classifier-free guidance scale")
    p.add_argument("--seed", type=int, default=0, help="seeds the K cells, the samples and the weights")
    p.add_argument(
        "--generator",
        default="auto",
        help="NB201 discrete diffusion checkpoint; 'auto': benchmarks/generation.py's fit; 'none': skip",
    )
    p.add_argument(
        "--score-generator",
        default="auto",
        help="'auto': the NB201 score diffusion and noise-aware accuracy predictor of new_device.py; 'none': skip",
    )
    p.add_argument("--accuracy-guidance", type=float, default=0.5, help="accuracy guidance strength (norm ratio)")
    p.add_argument("--latency-guidance", type=float, default=2.0, help="budget hinge strength (norm ratio)")
    p.add_argument("--out", default=str(RESULTS / "device_here"), help="output stem (.json, .md)")
    return p.parse_args(argv)


class Methods:
    """The candidate sources: uniform random, and the trained generator if there is one."""

    def __init__(self, args: argparse.Namespace, bench: NB201Benchmark) -> None:
        self.args, self.bench = args, bench
        self.draws = 20 * args.num_samples
        accuracy = bench.column(ACCURACY)
        self.accuracy = lambda archs: np.array([accuracy[bench.index(a)] for a in archs])
        self.top = float(np.nanquantile(accuracy, 0.95))
        found = generation_checkpoint("nb201", "discrete") if args.generator == "auto" else None
        path = found or Path(args.generator)
        self.generator = None
        if args.generator != "none" and path.is_file():
            import nag

            self.generator = nag.load_generator(path, guidance_scale=args.guidance, mode="joint")
            self.path = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
        else:
            print(f"  no generator checkpoint at {path}: the uniform random baseline only (none is trained here)")
        self.guided = None
        if args.score_generator == "auto":
            from new_device import guided_models

            from nag.diffusion.guidance import predictor_term

            generator, predictor, self.guided_info = guided_models(Path(args.data))
            self.guided = (generator, predictor_term(predictor, ACCURACY, scale=args.accuracy_guidance))

    def select(self, device: DeviceTable, model: LatencyModel, budget: float) -> dict[str, tuple[DeviceSelection, str]]:
        args = self.args

        def draw(generator: Any, **steering: Any) -> DeviceSelection:
            return generate_for_device(
                generator,
                device,
                budget,
                args.num_samples,
                predictor=model,
                accuracy=self.accuracy,
                threshold=args.threshold,
                seed=args.seed,
                max_draws=self.draws,
                **steering,
            )

        out = {RANDOM: (draw(UniformRandom(self.bench.space)), f"uniform random samples (at most {self.draws})")}
        if self.guided is not None:
            generator, accuracy_term = self.guided
            selection = draw(generator, guidance=[accuracy_term], latency_guidance=args.latency_guidance)
            note = (
                f"`{Path(self.guided_info['guided_generator']).relative_to(ROOT)}` guided toward CIFAR-10 accuracy "
                f"(noise-aware predictor, strength {args.accuracy_guidance}) and by the adapted predictor's budget "
                f"hinge (strength {args.latency_guidance}), {selection.drawn} samples"
            )
            out[GUIDED] = (selection, note)
        if self.generator is None:
            return out
        conditions, notes = [], []
        for fraction in LEVELS:
            mapped = condition_for_budget(device, self.bench, FPGA, fraction * budget)
            if mapped is not None:
                conditions.append({ACCURACY: self.top, FPGA: mapped[0]})
                notes.append(f"{mapped[0]:.3g}")
        if not conditions:
            conditions, notes = [{ACCURACY: self.top}], ["none (no FPGA mapping through the K cells)"]
        pool: list = []
        for i, condition in enumerate(conditions):
            result = self.generator.sample(self.draws // len(conditions), seed=args.seed + i, conditions=condition)
            pool += result.archs
        selection = select_for_device(
            pool,
            model,
            budget,
            args.num_samples,
            self.bench.space,
            threshold=args.threshold,
            accuracy=self.accuracy,
            device=device,
        )
        note = (
            f"`{self.path}`, {selection.drawn} samples, {ACCURACY}={self.top:.2f} (table 95th percentile) and "
            f"{FPGA} = {', '.join(notes)} (budget x {', '.join(map(str, LEVELS[: len(notes)]))} mapped through the "
            "K cells)"
        )
        out[NAG] = (selection, note)
        return out


def method_report(
    selection: DeviceSelection, timed: dict[str, float], noise: dict[str, float], budget: float, retimed: float
) -> dict[str, Any]:
    """What the selected architectures measured against what was predicted (counts only when
    none was selected)."""
    rows = selection.rows
    counts = {
        "selected": len(rows),
        "drawn": selection.drawn,
        "distinct_candidates": selection.distinct,
        "predicted_feasible": selection.feasible,
        "already_measured": int(sum(r["measured"] for r in rows)),
    }
    if not rows:
        return {**counts, "rows": []}
    measured = np.array([timed[r["arch"]] for r in rows])
    predicted = np.array([r["predicted_latency"] for r in rows])
    spread = np.array([noise[r["arch"]] for r in rows])
    accuracy = np.array([r["predicted_accuracy"] for r in rows])
    within = measured <= budget
    return {
        **counts,
        "share_within_budget": float(within.mean()),
        "share_within_retimed_budget": float((measured <= retimed).mean()),
        "expected_share": float(np.mean([r["p_within_budget"] for r in rows])),
        "spearman_predicted_measured": spearman(predicted, measured),
        "mape": float(np.mean(np.abs(predicted - measured) / measured)),
        "median_measured_over_budget": float(np.median(measured / budget)),
        "max_measured_over_budget": float(measured.max() / budget),
        "noise_median": float(np.median(spread)),
        "noise_p90": float(np.quantile(spread, 0.9)),
        "accuracy_mean": float(accuracy.mean()),
        "accuracy_best": float(accuracy.max()),
        "accuracy_mean_within": float(accuracy[within].mean()) if within.any() else float("nan"),
        "rows": [{**r, "timed_latency": timed[r["arch"]], "timed_noise": noise[r["arch"]]} for r in rows],
    }


def by_clock(
    measurements: Sequence[Measurement], space: SearchSpace, clock: str
) -> tuple[dict[str, float], dict[str, float]]:
    """``arch string -> latency`` and ``-> noise`` at batch 1 by ``clock``."""
    pairs = [(space.to_string(m.arch), m.by(clock)) for m in measurements]
    return {a: lat[1] for a, (lat, _) in pairs}, {a: spread[1] for a, (_, spread) in pairs}


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    table = Path(args.data) / "nb201" / "nb201.csv"
    if not table.is_file():
        print(f"skipped: {table} not found (the HW-NAS-Bench tables the predictor is meta-trained on); pass --data")
        sys.exit(0)
    torch.set_num_threads(args.threads)
    start, load_start = time.perf_counter(), os.getloadavg()
    timing = {
        "warmup": args.warmup,
        "repeats": args.repeats,
        "rounds": args.rounds,
        "threads": args.threads,
        "seed": args.seed,
    }
    bench = NB201Benchmark(str(table))
    space = bench.space

    print(f"1. timing {args.k} random NB201 cells on this CPU ({args.repeats} repeats, {args.threads} thread)")
    k_archs = list(dict.fromkeys(space.sample(4 * args.k, np.random.default_rng(args.seed))))[: args.k]
    first = measure_latency(space, k_archs, **timing)

    print("2. meta-training on the HW-NAS-Bench tables")
    t = time.perf_counter()
    meta = meta_train(bench, seed=args.seed)
    meta_seconds = time.perf_counter() - t
    methods = Methods(args, bench)
    runs: dict[str, dict[str, Any]] = {}
    for clock in CLOCKS:
        path = write_latency_table(space, first, TABLES / f"k{args.k}_{clock}.csv", clock=clock)
        device = read_device_table(path, space, min_rows=args.k)
        budget = float(np.median(device.latencies))
        model = meta.adapt(device.archs, device.latencies)
        print(f"3-4. {clock} clock: budget latency <= {budget:.3f} ms (median of the K cells); generating")
        runs[clock] = {
            "table": path,
            "device": device,
            "budget": budget,
            "selected": methods.select(device, model, budget),
        }

    chosen = [a for run in runs.values() for selection, _ in run["selected"].values() for a in selection.archs]
    to_time = list(dict.fromkeys([*k_archs, *chosen]))
    order = np.random.default_rng(args.seed + 1).permutation(len(to_time))
    print(f"5. timing {len(to_time)} architectures (every selected one and the K cells again), shuffled")
    second = measure_latency(space, [to_time[i] for i in order], progress=True, **timing)

    clocks = {}
    for clock, run in runs.items():
        timed, noise = by_clock(second, space, clock)
        device = run["device"]
        before = device.latencies
        again = np.array([timed[space.to_string(a)] for a in device.archs])
        retimed = float(np.median(again))
        clocks[clock] = {
            "budget_ms": run["budget"],
            "retimed_budget_ms": retimed,
            "table": str(run["table"].relative_to(ROOT)),
            "k_latency_ms": before.tolist(),
            "k_retimed_ms": again.tolist(),
            "k_noise": [by_clock(first, space, clock)[1][space.to_string(a)] for a in device.archs],
            "retest_spearman": spearman(before, again),
            "retest_median_ratio": float(np.median(again / before)),
            "retest_median_abs_log_ratio": float(np.median(np.abs(np.log(again / before)))),
            "methods": {
                name: {**method_report(selection, timed, noise, run["budget"], retimed), "candidates": note}
                for name, (selection, note) in run["selected"].items()
            },
        }

    report = {
        "command": command(__file__, argv),
        "args": vars(args),
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "torch": torch.__version__,
            "load_average_start": load_start,
            "load_average_end": os.getloadavg(),
        },
        "k": args.k,
        "meta_sources": len(meta.sources),
        "meta_seconds": meta_seconds,
        "timed_second": len(to_time),
        "clocks": clocks,
    }
    report["seconds"] = time.perf_counter() - start
    text = markdown(report)
    write_report(args.out, report["command"], report, text)
    print(text)
    return report


COLUMNS = [
    ("selected", "d", "selected"),
    ("share_within_budget", ".0%", "within budget"),
    ("share_within_retimed_budget", ".0%", "within re-timed budget"),
    ("expected_share", ".0%", "expected share"),
    ("spearman_predicted_measured", ".3f", "Spearman pred. vs measured"),
    ("mape", ".1%", "MAPE"),
    ("median_measured_over_budget", ".3f", "median measured/budget"),
    ("max_measured_over_budget", ".3f", "max measured/budget"),
    ("noise_median", ".1%", "noise (median rel. IQR)"),
    ("accuracy_mean", ".2f", "mean CIFAR-10 acc."),
    ("accuracy_best", ".2f", "best acc."),
    ("drawn", "d", "drawn"),
]
CLOCK_NAMES = {"wall": "wall clock (what a user waits)", "cpu": "CPU time of the timing thread"}


def markdown(report: dict[str, Any]) -> str:
    m, a = report["machine"], report["args"]
    lines = [
        "# This machine as a device: time K cells, adapt, generate under the budget, time what was generated",
        "",
        f"Command: `{report['command']}` ({report['seconds']:.0f} s on {m['cores']} cores, {m['cpu']}, torch "
        f"{m['torch']}, {a['threads']} torch thread; load average {m['load_average_start'][0]:.1f} at the start "
        f"and {m['load_average_end'][0]:.1f} at the end: a machine shared with other jobs, so the milliseconds "
        "are this run's only and the figures below are ratios within it).",
        "",
        f"- **Measured here**: K = {report['k']} random NB201 cells (the CIFAR-10 network, batch 1, 3x32x32), "
        f"each the median of {a['repeats']} timed forward passes after {a['warmup']} untimed ones, in "
        f"{a['rounds']} interleaved rounds over all cells; both clocks read around every pass.",
        f"- **Adapted**: the few-shot latency predictor meta-trained on NB201's {report['meta_sources']} "
        f"HW-NAS-Bench latency/energy tables ({report['meta_seconds']:.0f} s), adapted to the K timings.",
        "- **Budget**: the median of the K timed cells.",
        f"- **Selected**: {a['num_samples']} distinct architectures (isomorphism classes) per method with "
        f"P(latency <= budget) >= {a['threshold']} under the adapted predictor, ranked by NB201's CIFAR-10 "
        f"accuracy (table look-up); then every selected architecture (of both clocks) and the K cells, "
        f"{report['timed_second']} in all, timed again in one shuffled, interleaved measurement.",
        "",
        "**Target** (issue 18, item 5): >= 90 % of the generated distinct architectures truly within the budget "
        "when measured. Share within the budget (within the budget re-timed in the same measurement):",
        "",
    ]
    for clock, c in report["clocks"].items():
        shares = [
            f"{name} {r['share_within_budget']:.0%} ({r['share_within_retimed_budget']:.0%})"
            for name, r in c["methods"].items()
            if r["selected"]
        ]
        lines.append(
            f"- {CLOCK_NAMES[clock]}: {'; '.join(shares)}; the K cells' second timing / first: median "
            f"{c['retest_median_ratio']:.2f}, Spearman {c['retest_spearman']:.2f}."
        )
    lines.append("")
    for clock, c in report["clocks"].items():
        lines += [
            f"## {CLOCK_NAMES[clock]}",
            "",
            f"Table `{c['table']}`; budget latency <= {c['budget_ms']:.3f} ms; re-timed with the selected: "
            f"{c['retimed_budget_ms']:.3f} ms. Noise: relative IQR of the repeats, median "
            f"{np.median(c['k_noise']):.1%} over the K cells; the K cells timed twice: Spearman "
            f"{c['retest_spearman']:.3f}, median second/first {c['retest_median_ratio']:.3f}, median |log ratio| "
            f"{c['retest_median_abs_log_ratio']:.3f}.",
            "",
            *markdown_table(
                ["method", *(title for _, _, title in COLUMNS)],
                (
                    [name, *(format(r[k], spec) if k in r else "-" for k, spec, _ in COLUMNS)]
                    for name, r in c["methods"].items()
                ),
            ),
        ]
        lines += ["", "Candidates:", ""]
        lines += [f"- {name}: {r['candidates']}" for name, r in c["methods"].items()]
        lines += ["", "The three slowest selected architectures per method (timed latency in ms):", "", "```text"]
        for name, r in c["methods"].items():
            slow = sorted(r["rows"], key=lambda row: -row["timed_latency"])[:3]
            shown = ["rank", "predicted_latency", "latency_high90", "p_within_budget", "timed_latency", "arch"]
            lines += [f"{name}:", format_table(slow, shown), ""] if slow else []
        lines += ["```", ""]
    lines += [
        "Notes: 'within budget' compares the second measurement with the budget from the first; 'within re-timed "
        "budget' with the K cells' median in the same measurement as the selected, so load that changed between "
        "the two cancels. 'expected share' is the mean P(latency <= budget) the predictor gave the selected. "
        "Spearman over the selected alone is over a narrow latency band (all predicted under the budget), so it is "
        "lower than over a whole table. The CPU time of the timing thread leaves out the time the scheduler gave "
        "the core to other jobs, not their effect on caches and memory bandwidth. The JSON has every selected row "
        "with its prediction, interval and timing.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
