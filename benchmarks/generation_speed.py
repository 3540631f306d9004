"""Generation speed: valid and distinct valid architectures per second at batch 1,000, for every
generator and step count, beside uniform random sampling and beside today's sampler in the same
run, with the quality of each setting and its peak memory.

For each space (NB201 from ``../shared/data``, NB-Graph Cora from the embedded data) it loads
the cached fits of the shipped configs (``runs/benchmarks/generation/<space>/{score,discrete}``,
written by ``benchmarks/generation.py``; fitted here with ``nag fit`` when missing) through
``nag.load_generator`` and samples ``--samples`` architectures in batches of 1,000 with
``--threads`` torch threads:

- score diffusion (the shipped configs use the VP SDE): today's path (the original
  per-layer ``nn.MultiheadAttention`` forward, ``ode`` Heun at 50 steps, the default, and at 20)
  and the new one: the lean forward with ``ode``, DPM-Solver++(2M) (``dpm``, one network
  evaluation per step) and EDM Heun (``edm``, ``2 steps - 1`` evaluations) at several step counts;
- discrete diffusion, unconditioned and with classifier-free guidance on two conditions
  (accuracy at the table's 95th percentile and latency at the median of the training
  split's architectures that reach it; compositional mode, scale ``--guidance``: three passes
  per step in one batched forward): today's path (dense ``[B, N, N, K, K]`` posteriors, every
  sample through the network, 50 steps) and the new one (closed-form posterior, conditions
  embedded once per call, the network run once per distinct input) at several step counts,
  evenly spaced in time and, with ``--discrete-alpha-steps``, in ``abar_t`` (``spacing="alpha"``);
  the same with CFG in joint mode (one conditioned pass on both conditions: two passes per step);
- the network through ``torch.compile`` (``compile=True``; ``--compile-steps``, ``--compile-dpm-steps``),
  its one-off compilation timed apart and given in the row's name.

Reported per row: seconds, network evaluations, valid architectures/s, distinct valid
architectures/s (distinct within each batch of 1,000, per second), validity after the space's
projection and before it (raw), uniqueness, novelty, KL of op marginals to the training split,
true accuracy (mean with its standard error, best), for conditioned rows the mean true value
of the second condition, and the peak resident memory the row added. Parity (the issue's
definition): validity >= 99 %, op KL <= 0.001 or no worse than today's sampler's, mean true
accuracy within 0.2 pp of today's sampler's. A last section samples 10,000 architectures with
the fastest setting at parity of each generator in a fresh process and reports its peak
resident memory. Speeds on a shared machine move with its load: read the ratios to today's
sampler and to uniform random, measured in the same run (the report gives the load average
at the start and the end of the run). On a machine other jobs load, run it with
``OMP_WAIT_POLICY=passive`` (recorded in the report): spinning OpenMP threads then cost more
than a second thread gains. On the 2-core machine the results were measured on, threads that
spun at barriers made 2 threads about 7x slower than 1; with passive waits 2 threads ran about
as fast as 1 (valid/CPU-s close to valid/s), so its speeds are about one core's.

    python benchmarks/generation_speed.py
Writes benchmarks/results/generation_speed.json, .md and .png.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from common import RESULTS, ROOT, command, figure, fit, generation_checkpoint, markdown_table, write_report
from matplotlib.figure import Figure

import nag
from nag.datamodules import ArchitectureDataModule
from nag.datamodules.from_config import datamodule_from_config
from nag.diffusion.discrete import CategoricalDiffusion
from nag.generation import GeneratedSet, Generator, score_samples
from nag.generation.baseline import UniformRandom
from nag.lightning_modules.discrete_diffusion import DiscreteDiffusionModule
from nag.metrics.generation import op_kl_divergence
from nag.nn.dag_transformer import DagTransformer
from nag.nn.graph_transformer import GraphTransformer

SPACES = ("nb201", "nbgraph")
CONFIGS = {"score": "diffusion.yaml", "discrete": "discrete_diffusion.yaml"}
#: (condition to maximise, condition set to a typical value among architectures that reach it)
CONDITIONS = {"nb201": ("cifar10_test_200ep", "hwnb_cifar10_fpga_latency"), "nbgraph": ("valid_acc", "latency")}
BATCH = 1000


# --- measuring ------------------------------------------------------------------------------
def rss_bytes() -> int:
    """Resident memory of this process now (Linux ``/proc/self/statm``)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@contextlib.contextmanager
def peak_rss() -> Iterator[dict[str, float]]:
    """Peak resident memory above the level at entry, polled every 5 ms (torch allocates outside
    Python's allocator, so ``tracemalloc`` would not see it)."""
    out = {"peak_mib": 0.0}
    base, peak, done = rss_bytes(), [0], threading.Event()

    def poll() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss_bytes())
            done.wait(0.005)

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    try:
        yield out
    finally:
        done.set()
        thread.join()
        peak[0] = max(peak[0], rss_bytes())
        out["peak_mib"] = max(0, peak[0] - base) / 2**20


def use_todays_path(generator: Generator) -> None:
    """``generator``'s model switched to the original forward passes, dense posteriors and every
    sample through the discrete denoiser (what sampled before issue 19): the ``reference`` of
    each of its parts that has one."""
    for part in generator.model.modules():
        if isinstance(part, (DagTransformer, GraphTransformer, CategoricalDiffusion, DiscreteDiffusionModule)):
            part.reference = True


class Counter:
    """Counts network evaluations (forward calls of the sampling network)."""

    def __init__(self, module: torch.nn.Module | None) -> None:
        self.calls = 0
        self.handle = module.register_forward_pre_hook(self._hook) if module is not None else None

    def _hook(self, *_: Any) -> None:
        self.calls += 1

    def close(self) -> None:
        if self.handle is not None:
            self.handle.remove()


def network(generator: Generator) -> torch.nn.Module | None:
    model = getattr(generator, "model", None)
    return None if model is None else model.ema.module


def sample(
    generator: Generator, args: argparse.Namespace, steps: int | None, conditions: dict[str, float] | None
) -> dict[str, Any]:
    """``args.samples`` samples in batches of 1,000 (seed ``args.seed + batch``), each batch timed."""
    space = generator.space
    out: dict[str, Any] = {"archs": [], "raw_valid": [], "errors": [], "seconds": [], "distinct": []}
    compiled = getattr(generator, "options", {}).get("compile", False)
    if compiled:  # compilation is a one-off cost: timed apart
        tic = time.perf_counter()
        generator.sample(64, seed=10_000, steps=steps, conditions=conditions)
        out["compile_seconds"] = time.perf_counter() - tic
    counter = Counter(None if compiled else network(generator))  # a hook would make dynamo recompile
    cpu = time.process_time()
    with peak_rss() as mem:
        for i, start in enumerate(range(0, args.samples, BATCH)):
            n = min(BATCH, args.samples - start)
            tic = time.perf_counter()
            result: GeneratedSet = generator.sample(n, seed=args.seed + i, steps=steps, conditions=conditions)
            out["seconds"].append(time.perf_counter() - tic)
            out["archs"] += result.archs
            out["raw_valid"] += result.raw_valid
            out["errors"] += result.errors
            out["distinct"].append(len({space.key(a) for a in result.valid}))
    counter.close()
    out["cpu_seconds"] = time.process_time() - cpu
    out["nfe_per_batch"] = counter.calls / len(out["seconds"]) if counter.handle is not None else 0
    out["peak_mib"] = mem["peak_mib"]
    return out


def todays_sample(
    checkpoint: Path, options: dict[str, Any], args: argparse.Namespace, steps: int, conditions: Any, space: Any
) -> dict[str, Any]:
    """Today's sampler in a fresh process with the allocator as it was (``NAG_MALLOC_TUNING=0``)
    and the original forward passes and posteriors: the sampler as it ran before issue 19."""
    spec = {
        "checkpoint": str(checkpoint),
        "options": options,
        "steps": steps,
        "conditions": conditions,
        "samples": args.samples,
        "seed": args.seed,
        "threads": args.threads,
    }
    env = {**os.environ, "NAG_MALLOC_TUNING": "0"}
    done = subprocess.run(
        [sys.executable, __file__, "--today-child", json.dumps(spec)], capture_output=True, text=True, cwd=ROOT, env=env
    )
    if done.returncode != 0:
        raise SystemExit(f"today's sampler failed: {done.stderr.strip().splitlines()[-1:]}")
    out = json.loads(done.stdout.strip().splitlines()[-1])
    out["archs"] = [None if a is None else space.from_string(a) for a in out["archs"]]
    return out


def todays_child_main(spec: dict[str, Any]) -> None:
    torch.set_num_threads(spec["threads"])
    gen = nag.load_generator(spec["checkpoint"], **spec["options"])
    args = argparse.Namespace(samples=spec["samples"], seed=spec["seed"])
    use_todays_path(gen)
    out = sample(gen, args, spec["steps"], spec["conditions"])
    out["archs"] = [None if a is None else gen.space.to_string(a) for a in out["archs"]]
    print(json.dumps(out))


def timing_child_main(spec: dict[str, Any]) -> None:
    """Child process: one setting timed on ``repeats`` batches of 1,000 after a warm-up batch."""
    torch.set_num_threads(spec["threads"])
    gen = nag.load_generator(spec["checkpoint"], **spec["options"])
    seconds, valid = [], []
    if spec["legacy"]:
        use_todays_path(gen)
    gen.sample(64, seed=10_000, steps=spec["steps"], conditions=spec["conditions"])
    for i in range(spec["repeats"]):
        tic = time.perf_counter()
        result = gen.sample(BATCH, seed=spec["seed"] + i, steps=spec["steps"], conditions=spec["conditions"])
        seconds.append(time.perf_counter() - tic)
        valid.append(len(result.valid))
    print(json.dumps({"seconds": seconds, "valid": valid}))


def timing_child(spec: dict[str, Any]) -> dict[str, Any]:
    env = {**os.environ, "NAG_MALLOC_TUNING": "0" if spec["legacy"] else "1"}
    done = subprocess.run(
        [sys.executable, __file__, "--timing-child", json.dumps(spec)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
    )
    if done.returncode != 0:
        raise SystemExit(f"timing child failed: {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def head_to_head(report: dict[str, Any], args: argparse.Namespace) -> None:
    """Today's sampler against the fastest setting at parity of each generator, in fresh processes
    that alternate (today, new, today, new, ...), each timing ``--h2h-repeats`` batches of 1,000.
    The best batch of each is the least disturbed by other load on the machine, and alternating
    exposes both to the same load; their ratio is the speed-up."""
    for sp in report["spaces"]:
        sp["head_to_head"] = []
        for sec in sp["sections"]:
            rows = sec["rows"]
            today = next(r for r in rows if r["kind"] == "today")
            fast = [r for r in rows if r.get("parity") and not r["kind"].startswith(("random", "today"))]
            if not fast:
                continue
            new = max(fast, key=lambda r: r["valid_per_s"])
            base = {
                "checkpoint": sec["checkpoint"],
                "conditions": sec.get("conditions"),
                "threads": args.threads,
                "repeats": args.h2h_repeats,
                "seed": args.seed,
            }
            specs = {
                "today": {**base, "options": {**sec.get("options", {})}, "steps": today["steps"], "legacy": True},
                "new": {
                    **base,
                    "options": {**sec.get("options", {}), **row_options(new)},
                    "steps": new["steps"],
                    "legacy": False,
                },
            }
            times: dict[str, list[float]] = {"today": [], "new": []}
            for _ in range(args.h2h_rounds):
                for who in ("today", "new"):
                    out = timing_child(specs[who])
                    times[who] += [v / t for v, t in zip(out["valid"], out["seconds"])]
            entry = {
                "generator": sec["generator"],
                "today": today["method"],
                "new": new["method"],
                "today_best_valid_per_s": max(times["today"]),
                "new_best_valid_per_s": max(times["new"]),
                "today_median_valid_per_s": float(np.median(times["today"])),
                "new_median_valid_per_s": float(np.median(times["new"])),
                "batches": len(times["new"]),
            }
            entry["speedup_best"] = entry["new_best_valid_per_s"] / entry["today_best_valid_per_s"]
            entry["speedup_median"] = entry["new_median_valid_per_s"] / entry["today_median_valid_per_s"]
            print(
                f"  head to head, {sp['space']} {sec['generator']}: {entry['new']} {entry['new_best_valid_per_s']:.0f} "
                f"valid/s vs {entry['today']} {entry['today_best_valid_per_s']:.0f} (x{entry['speedup_best']:.1f})",
                flush=True,
            )
            sp["head_to_head"].append(entry)


def score_row(
    name: str, measured: dict[str, Any], space: Any, ctx: dict[str, Any], today: dict[str, Any] | None, **meta: Any
) -> dict[str, Any]:
    """Speed and quality of one setting; beside ``today`` (the measured reference sampler, same
    seeds) the accuracy gap is paired sample by sample, and the share of samples that decode to
    the same architecture is given (an ODE solver from the same prior draw should agree)."""
    archs, seconds = measured["archs"], measured["seconds"]
    whole = GeneratedSet(archs, measured["errors"], measured["raw_valid"])
    summary = score_samples(whole, space, ctx["train_keys"], None, [])
    valid = whole.valid
    x, _, mask = space.encode_batch(valid) if valid else (None, None, None)
    total = sum(seconds)
    row = {
        "method": name,
        "samples": len(archs),
        "seconds": total,
        "nfe_per_batch": measured["nfe_per_batch"],
        "valid_per_s": len(valid) / total,
        "cpu_seconds": measured["cpu_seconds"],
        "valid_per_cpu_s": len(valid) / measured["cpu_seconds"],
        "distinct_valid_per_s": float(np.mean([d / s for d, s in zip(measured["distinct"], seconds)])),
        "distinct_per_batch": float(np.mean(measured["distinct"])),
        "op_kl": op_kl_divergence(x, ctx["train_x"], mask, ctx["train_mask"]) if valid else math.nan,
        "peak_mib": measured["peak_mib"],
        **{k: measured[k] for k in ("compile_seconds",) if k in measured},
        **{k: summary[k] for k in ("validity", "raw_validity", "uniqueness", "novelty")},
        **meta,
    }
    for j, metric in enumerate(ctx["metrics"]):
        values = true_values(ctx["bench"], metric, archs)
        if j == 0:
            row.update(
                acc_mean=float(np.nanmean(values)),
                acc_se=standard_error(values),
                acc_best=best(ctx["bench"], metric, values),
            )
            row["_acc"] = values
        else:
            row[f"{metric}/mean"] = float(np.nanmean(values))
    row["_x"] = (x, mask)
    if today is not None:
        tx, tmask = today["_x"]
        row["op_kl_to_today"] = op_kl_divergence(x, tx, mask, tmask) if valid else math.nan
        gap = row["_acc"] - today["_acc"]
        row["acc_gap"] = float(np.nanmean(gap))
        row["acc_gap_se"] = standard_error(gap)
        key = space.key
        row["same_as_today"] = float(
            np.mean([a is not None and b is not None and key(a) == key(b) for a, b in zip(archs, today["_archs"])])
        )
    row["_archs"] = archs
    print(
        f"  {name}: {row['valid_per_s']:.0f} valid/s, nfe {row['nfe_per_batch']:.0f}, validity "
        f"{row['validity']:.3f} (raw {row['raw_validity']:.3f}), op KL {row['op_kl']:.4g}, acc "
        f"{row.get('acc_mean', math.nan):.4g}",
        flush=True,
    )
    return row


def true_values(bench: Any, metric: str, archs: list[Any]) -> np.ndarray:
    """The table's ``metric`` per sample (NaN: invalid or not in the table)."""
    column = bench.column(metric)
    return np.asarray(
        [float(column[bench.index(a)]) if a is not None and a in bench else math.nan for a in archs], dtype=float
    )


def standard_error(values: np.ndarray) -> float:
    v = values[~np.isnan(values)]
    return float(v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else math.nan


def best(bench: Any, metric: str, values: np.ndarray) -> float:
    v = values[~np.isnan(values)]
    if not len(v):
        return math.nan
    return float(v.max() if bench.higher_is_better(metric) else v.min())


# --- set-up ---------------------------------------------------------------------------------
def checkpoint(space: str, kind: str, args: argparse.Namespace) -> tuple[Path, str]:
    """The cached fit of the shipped config, or a fit made now (``--max-epochs`` of it)."""
    cached = generation_checkpoint(space, kind)
    if cached is not None:
        return cached, "cached fit of benchmarks/generation.py (shipped config, its epochs)"
    config = ROOT / "configs" / space / CONFIGS[kind]
    overrides = ["--trainer.accelerator=cpu", "--trainer.logger=false", f"--trainer.max_epochs={args.max_epochs}"]
    print(f"fitting {config} for {args.max_epochs} epochs (benchmarks/generation.py fitted none)", flush=True)
    ckpt, _ = fit(config, Path(args.run_dir) / space / kind, overrides)
    return ckpt, f"fitted here: {config.relative_to(ROOT)}, {args.max_epochs} epochs"


def context(dm: Any, metrics: list[str]) -> dict[str, Any]:
    return {
        "train_keys": dm.train_keys(),
        "train_x": dm.datasets["train"].x,
        "train_mask": dm.datasets["train"].mask,
        "bench": dm.benchmark,
        "metrics": metrics,
    }


def two_conditions(space: str, dm: Any) -> dict[str, float]:
    """Accuracy at the table's 95th percentile; latency at the median of the training-split
    architectures that reach it (a combination the data holds)."""
    acc, lat = CONDITIONS[space]
    bench = dm.benchmark
    a, lt = bench.column(acc), bench.column(lat)
    target = float(np.nanquantile(a, 0.95))
    idx = np.asarray([bench.index(x) for x in dm.archs("train")])
    top = idx[(a[idx] >= target) & ~np.isnan(lt[idx])]
    return {acc: target, lat: float(np.median(lt[top]))}


# --- parity ---------------------------------------------------------------------------------
def pp(space: str) -> float:
    """Accuracy units per percentage point (NB-Graph's accuracies are fractions)."""
    return 0.01 if space == "nbgraph" else 1.0


def mark_parity(rows: list[dict[str, Any]], today: dict[str, Any], space: str) -> None:
    """The issue's parity: validity >= 99 % (and raw validity no more than 1 point below
    today's or 99 %), op KL to the training split <= 0.001 or <= today's (or, where conditioning
    moves the op marginals away from the training split, op KL to today's samples <= 0.001), mean
    true accuracy within 0.2 pp of today's."""
    for r in rows:
        if r["kind"] == "random":
            continue
        raw_floor = min(0.99, today["raw_validity"]) - 0.01
        kl_ok = r["op_kl"] <= max(0.001, today["op_kl"]) or r.get("op_kl_to_today", math.inf) <= 0.001
        gap = r.get("acc_gap", 0.0) / pp(space)
        r["acc_gap_pp"], r["acc_gap_se_pp"] = gap, r.get("acc_gap_se", 0.0) / pp(space)
        r["parity"] = bool(r["validity"] >= 0.99 and r["raw_validity"] >= raw_floor and kl_ok and abs(gap) <= 0.2)
        r["reference"] = today["method"]


def evaluate_space(space_name: str, args: argparse.Namespace) -> dict[str, Any]:
    report: dict[str, Any] = {"space": space_name, "fits": {}, "sections": []}
    ckpts = {}
    for kind in CONFIGS:
        ckpt, how = checkpoint(space_name, kind, args)
        report["fits"][kind] = {
            "checkpoint": str(ckpt.relative_to(ROOT) if ckpt.is_relative_to(ROOT) else ckpt),
            "how": how,
        }
        ckpts[kind] = ckpt
    base = nag.load_generator(ckpts["score"])
    space = base.space
    dms = {
        kind: datamodule_from_config(ROOT / "configs" / space_name / CONFIGS[kind], ArchitectureDataModule, space)
        for kind in CONFIGS
    }
    conds = two_conditions(space_name, dms["discrete"])
    report.update(conditions=conds, sde=base.model.sde.config())

    def run(
        name: str,
        gen: Generator,
        ctx: dict,
        today: dict | None,
        steps: int | None = None,
        conditions: Any = None,
        **meta: Any,
    ) -> dict[str, Any]:
        return score_row(name, sample(gen, args, steps, conditions), space, ctx, today, steps=steps, **meta)

    if "score" in args.generators:
        score_section(report, base, ckpts, dms, space_name, args, run)
    if "discrete" in args.generators:
        discrete_section(report, ckpts, dms, space_name, conds, args, run)

    # peak memory of 10,000 samples at the fastest setting at parity, in a fresh process
    report["memory"] = []
    for section in report["sections"]:
        fast = [r for r in section["rows"] if r.get("parity") and not r["kind"].startswith(("random", "today"))]
        if fast and args.memory_samples:
            row = max(fast, key=lambda r: r["valid_per_s"])
            report["memory"].append(
                {"generator": section["generator"], "setting": row["method"], **memory_child(section, row, args)}
            )
    for section in report["sections"]:
        for r in section["rows"]:
            for k in [k for k in r if k.startswith("_")]:
                del r[k]
    return report


def score_section(report: dict, base: Any, ckpts: dict, dms: dict, space_name: str, args: Any, run: Any) -> None:
    space = base.space
    print(f"{space_name}: score diffusion ({base.model.hparams.sde})", flush=True)
    ctx = context(dms["score"], [CONDITIONS[space_name][0]])
    random_row = run("uniform random", UniformRandom(space), ctx, None, kind="random")
    today = score_row(
        "today: ode 50 (Heun; original forward, allocator)",
        todays_sample(ckpts["score"], {}, args, 50, None, space),
        space,
        ctx,
        None,
        steps=50,
        kind="today",
        sampler="ode",
    )
    today.update(acc_gap=0.0, acc_gap_se=0.0, same_as_today=1.0, op_kl_to_today=0.0)
    rows = [random_row, today]
    if not args.quick:
        rows.append(
            score_row(
                "today: ode 20 (Heun; original forward, allocator)",
                todays_sample(ckpts["score"], {}, args, 20, None, space),
                space,
                ctx,
                today,
                steps=20,
                kind="today 20",
                sampler="ode",
            )
        )
        rows.append(run("ode 50 (Heun, lean)", base, ctx, today, steps=50, kind="ode", sampler="ode"))
    for sampler, steps_list in (("dpm", args.dpm_steps), ("edm", args.edm_steps)):
        gen = nag.load_generator(ckpts["score"], sampler=sampler)
        rows += [run(f"{sampler} {k}", gen, ctx, today, steps=k, kind=sampler, sampler=sampler) for k in steps_list]
    compiled = nag.load_generator(ckpts["score"], sampler="dpm", compile=True)
    rows += [
        compiled_row(
            run(f"dpm {k}, compiled", compiled, ctx, today, steps=k, kind="compiled", sampler="dpm", compile=True)
        )
        for k in args.compile_dpm_steps
    ]
    mark_parity(rows, today, space_name)
    report["sections"].append(
        {
            "generator": f"score ({base.model.hparams.sde.upper()})",
            "metric": ctx["metrics"],
            "checkpoint": str(ckpts["score"]),
            "options": {},
            "rows": rows,
        }
    )


def discrete_section(report: dict, ckpts: dict, dms: dict, space_name: str, conds: dict, args: Any, run: Any) -> None:
    """Discrete diffusion, unconditioned and with CFG on two conditions."""
    space = dms["discrete"].space
    ctx = context(dms["discrete"], list(CONDITIONS[space_name]))
    for label, conditions, options in (
        ("discrete, unconditioned", None, {}),
        (
            f"discrete, CFG on {' and '.join(conds)} (w={args.guidance:g}, compositional)",
            conds,
            {"guidance_scale": args.guidance},
        ),
        (
            f"discrete, CFG on {' and '.join(conds)} (w={args.guidance:g}, joint)",
            conds,
            {"guidance_scale": args.guidance, "mode": "joint"},
        ),
    ):
        print(f"{space_name}: {label}", flush=True)
        gen = nag.load_generator(ckpts["discrete"], **options)
        random_row = run("uniform random", UniformRandom(space), ctx, None, kind="random")
        today = score_row(
            "today: 50 steps (dense posterior; original forward, allocator)",
            todays_sample(ckpts["discrete"], options, args, 50, conditions, space),
            space,
            ctx,
            None,
            steps=50,
            kind="today",
        )
        today.update(acc_gap=0.0, acc_gap_se=0.0, same_as_today=1.0, op_kl_to_today=0.0)
        rows = [random_row, today]
        rows += [
            run(f"{k} steps", gen, ctx, today, steps=k, conditions=conditions, kind="ancestral")
            for k in args.discrete_steps
        ]
        alpha = nag.load_generator(ckpts["discrete"], **options, spacing="alpha")
        rows += [
            run(
                f"{k} steps, abar-spaced",
                alpha,
                ctx,
                today,
                steps=k,
                conditions=conditions,
                kind="abar",
                spacing="alpha",
            )
            for k in args.discrete_alpha_steps
        ]
        for spacing, label_end in (("time", ""), ("alpha", ", abar-spaced")):
            compiled = nag.load_generator(ckpts["discrete"], **options, spacing=spacing, compile=True)
            rows += [
                compiled_row(
                    run(
                        f"{k} steps{label_end}, compiled",
                        compiled,
                        ctx,
                        today,
                        steps=k,
                        conditions=conditions,
                        kind="compiled",
                        spacing=spacing,
                        compile=True,
                    )
                )
                for k in args.compile_steps
            ]
        mark_parity(rows, today, space_name)
        report["sections"].append(
            {
                "generator": label,
                "metric": ctx["metrics"],
                "checkpoint": str(ckpts["discrete"]),
                "conditions": conditions,
                "options": options,
                "rows": rows,
            }
        )


def row_options(row: dict[str, Any]) -> dict[str, Any]:
    """The generator options a row was sampled with beyond its section's (score sampler, step spacing)."""
    return {k: row[k] for k in ("sampler", "spacing", "compile") if k in row}


def compiled_row(row: dict[str, Any]) -> dict[str, Any]:
    """A row sampled through ``torch.compile``: its one-off compilation (timed apart) in its name."""
    row["method"] += f" (compiling: {row['compile_seconds']:.0f} s once)"
    row["nfe_per_batch"] = None  # not counted: the counting hook would be compiled in
    return row


def memory_child(section: dict[str, Any], row: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    spec = {
        "checkpoint": section["checkpoint"],
        "steps": row["steps"],
        "conditions": section.get("conditions"),
        "options": {**section.get("options", {}), **row_options(row)},
        "samples": args.memory_samples,
        "threads": args.threads,
    }
    out = subprocess.run(
        [sys.executable, __file__, "--memory-child", json.dumps(spec)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def memory_child_main(spec: dict[str, Any]) -> None:
    """Child process: load one generator, sample, print the peak resident memory as JSON."""
    torch.set_num_threads(spec["threads"])
    gen = nag.load_generator(spec["checkpoint"], **spec["options"])
    gen.sample(10, seed=0, steps=spec["steps"], conditions=spec["conditions"])  # warm: lazy imports, allocator
    loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    before = rss_bytes()
    tic = time.perf_counter()
    result = gen.sample(spec["samples"], seed=0, steps=spec["steps"], conditions=spec["conditions"])
    seconds = time.perf_counter() - tic
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(
        json.dumps(
            {
                "samples": spec["samples"],
                "seconds": seconds,
                "valid": len(result.valid),
                "peak_rss_mib": peak / 2**20,
                "rss_before_mib": before / 2**20,
                "peak_after_load_mib": loaded / 2**20,
                "added_mib": max(0, peak - before) / 2**20,
            }
        )
    )


# --- output ---------------------------------------------------------------------------------
def fmt(v: Any, spec: str = ".4g") -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else format(v, spec)
    return str(v)


def fmt_load(load: Any) -> str:
    return "?" if not load else "/".join(f"{v:.1f}" for v in load)


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Generation speed (issue 19)",
        "",
        "```",
        report["command"],
        *([report["head_to_head_command"]] if report.get("head_to_head_command") else []),
        "```",
        "",
        f"{report['samples']} samples per row in batches of {BATCH}, torch threads {report['threads']}, seed "
        f"{report['seed']}, on {report['machine']}; load average (1, 5, 15 min) "
        f"{fmt_load(report.get('load_start'))} at the start, {fmt_load(report.get('load_end'))} at the end. "
        "valid/s: valid architectures (after the space's projection) per "
        "second, decoding included; distinct/s: distinct architectures within each batch of 1,000 per second; "
        "nfe: network evaluations per batch; op KL against the generator's own training split; acc: mean true "
        "accuracy of the valid samples ± its standard error; gap: mean of the per-sample accuracy differences to "
        "today's sampler from the same seeds (± its standard error: from the same prior draw an ODE solver that "
        "reaches the same architectures has a small one); same arch: share of samples that decode to the "
        "architecture today's sampler made from the same seed; peak MiB: resident memory the row added. Parity: "
        "validity ≥ 99 % and raw validity at most 1 point under min(99 %, today's), op KL ≤ 0.001 or ≤ "
        "today's (or op KL to today's samples ≤ 0.001: conditioning moves op marginals away from the training "
        "split on purpose), |acc gap| ≤ 0.2 pp. Today's rows run in a fresh process with the original forward "
        "passes, the "
        "dense posteriors, every sample through the discrete denoiser and the C allocator untuned "
        "(NAG_MALLOC_TUNING=0): the code before issue 19. abar-spaced: steps evenly spaced in abar_t instead of t. "
        "compiled: the network through torch.compile (dynamic shapes), timed after its compilation, which the "
        "row's name gives; nfe is not counted there. joint: one conditioned pass on both conditions beside the "
        "unconditioned one (compositional: one pass per condition). "
        "×today, ×random: valid/s as a ratio to today's sampler and to uniform "
        "random in the same run (the machine is shared; ratios are what carry over); valid/CPU-s: valid "
        "architectures per second of this process's CPU time (all threads), which other processes on the machine "
        "disturb less than wall time.",
        "",
    ]
    for sp in report["spaces"]:
        lines += [f"## {sp['space']}", ""]
        lines += [f"- {k}: `{v['checkpoint']}` ({v['how']})" for k, v in sp["fits"].items()]
        lines += [f"- conditions of the CFG rows: {sp['conditions']}", f"- SDE: {sp['sde']}", ""]
        if sp.get("head_to_head"):
            lines += [
                "### Head to head: today's sampler against the fastest setting at parity",
                "",
                "Fresh processes alternating today / new, each timing batches of 1,000 after a warm-up; best "
                "and median batch (valid architectures/s, decoding included). The best batch is the least "
                "disturbed by other load on this shared machine.",
                "",
                *markdown_table(
                    [
                        "generator",
                        "today",
                        "valid/s best (median)",
                        "new",
                        "valid/s best (median)",
                        "speed-up best (median)",
                    ],
                    (
                        [
                            h["generator"],
                            h["today"],
                            f"{h['today_best_valid_per_s']:.0f} ({h['today_median_valid_per_s']:.0f})",
                            h["new"],
                            f"{h['new_best_valid_per_s']:.0f} ({h['new_median_valid_per_s']:.0f})",
                            f"×{h['speedup_best']:.1f} (×{h['speedup_median']:.1f})",
                        ]
                        for h in sp["head_to_head"]
                    ),
                ),
                "",
            ]
        for sec in sp["sections"]:
            metric = sec["metric"][0]
            second = sec["metric"][1] if len(sec["metric"]) > 1 and sec.get("conditions") else None
            rows = sec["rows"]
            today = next(r for r in rows if r["kind"] == "today")
            random_row = next(r for r in rows if r["kind"] == "random")
            cols = [
                "method",
                "nfe",
                "s",
                "valid/s",
                "distinct/s",
                "×today",
                "valid/CPU-s",
                "×today (CPU)",
                "×random",
                "validity",
                "raw",
                "unique",
                "op KL",
                "op KL to today",
                f"acc ({metric})",
                "gap pp (paired)",
                "same arch",
                "best",
            ]
            cols += [f"mean {second}"] if second else []
            cols += ["peak MiB", "parity"]
            table = []
            for r in rows:
                cells = [
                    r["method"],
                    fmt(r["nfe_per_batch"], ".0f"),
                    fmt(r["seconds"], ".1f"),
                    fmt(r["valid_per_s"], ".0f"),
                    fmt(r["distinct_valid_per_s"], ".0f"),
                    fmt(r["valid_per_s"] / today["valid_per_s"], ".2f"),
                    fmt(r["valid_per_cpu_s"], ".0f"),
                    fmt(r["valid_per_cpu_s"] / today["valid_per_cpu_s"], ".2f"),
                    fmt(r["valid_per_s"] / random_row["valid_per_s"], ".3g"),
                    fmt(r["validity"], ".3f"),
                    fmt(r["raw_validity"], ".3f"),
                    fmt(r["uniqueness"], ".3f"),
                    fmt(r["op_kl"]),
                    fmt(r.get("op_kl_to_today")),
                    f"{fmt(r['acc_mean'])} ± {fmt(r['acc_se'], '.2g')}",
                    "" if "acc_gap_pp" not in r else f"{r['acc_gap_pp']:+.2f} ± {r['acc_gap_se_pp']:.2f}",
                    fmt(r.get("same_as_today"), ".3f"),
                    fmt(r["acc_best"]),
                ]
                cells += [fmt(r.get(f"{second}/mean"))] if second else []
                cells += [fmt(r["peak_mib"], ".0f"), fmt(r.get("parity"))]
                table.append(cells)
            lines += [f"### {sec['generator']}", "", *markdown_table(cols, table), ""]
        if sp.get("memory"):
            lines += [
                "### Peak memory of sampling 10,000 architectures (fresh process, fastest setting at parity)",
                "",
                *markdown_table(
                    ["generator", "setting", "seconds", "valid", "peak RSS MiB", "added by sampling MiB"],
                    (
                        [
                            m["generator"],
                            m["setting"],
                            f"{m['seconds']:.1f}",
                            m["valid"],
                            f"{m['peak_rss_mib']:.0f}",
                            f"{m['added_mib']:.0f}",
                        ]
                        for m in sp["memory"]
                    ),
                ),
                "",
            ]
    return "\n".join(lines)


def plot(report: dict[str, Any]) -> Figure:
    """Mean true accuracy against valid architectures/s: one row per space, one panel per generator."""
    spaces = [sp for sp in report["spaces"] if sp["sections"]]
    cols = max((len(sp["sections"]) for sp in spaces), default=1)
    fig, axes = figure(max(len(spaces), 1), cols, figsize=(4.6 * cols, 3.8 * max(len(spaces), 1)), squeeze=False)
    for ax in axes.flat:
        ax.set_visible(False)
    for i, sp in enumerate(spaces):
        for ax, sec in zip(axes[i], sp["sections"]):
            ax.set_visible(True)
            for kind in sorted({r["kind"] for r in sec["rows"]}):
                rows = [r for r in sec["rows"] if r["kind"] == kind]
                xs, ys = [r["valid_per_s"] for r in rows], [r["acc_mean"] for r in rows]
                ax.plot(xs, ys, "o-" if len(rows) > 1 else "o", label=kind)
                for r in rows:
                    if r["steps"] is not None:
                        ax.annotate(
                            str(r["steps"]),
                            (r["valid_per_s"], r["acc_mean"]),
                            fontsize=7,
                            textcoords="offset points",
                            xytext=(3, 3),
                        )
            ax.set_xscale("log")
            ax.set_xlabel("valid architectures / s (batch 1,000)")
            ax.set_ylabel(f"mean true {sec['metric'][0]}")
            ax.set_title(f"{sp['space']}: {sec['generator'][:45]}", fontsize=8)
            ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spaces", nargs="+", default=list(SPACES), choices=SPACES)
    parser.add_argument("--samples", type=int, default=3000, help="samples per row, drawn in batches of 1,000")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dpm-steps", type=int, nargs="*", default=[5, 6, 8, 10, 12])
    parser.add_argument("--edm-steps", type=int, nargs="*", default=[4, 5])
    parser.add_argument("--discrete-steps", type=int, nargs="*", default=[3, 5, 10, 12, 20])
    parser.add_argument("--discrete-alpha-steps", type=int, nargs="*", default=[8, 10, 12], help="abar-spaced")
    parser.add_argument("--guidance", type=float, default=2.0, help="classifier-free guidance scale")
    parser.add_argument("--compile-steps", type=int, nargs="*", default=[10, 12], help="discrete, torch.compile")
    parser.add_argument("--compile-dpm-steps", type=int, nargs="*", default=[6], help="score dpm, torch.compile")
    parser.add_argument("--memory-samples", type=int, default=10_000)
    parser.add_argument("--generators", nargs="+", default=["score", "discrete"], choices=["score", "discrete"])
    parser.add_argument("--quick", action="store_true", help="skip the extra reference rows (ode 20, lean ode 50)")
    parser.add_argument("--max-epochs", type=int, default=5, help="epochs of a fit made here when none is cached")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--run-dir", default="runs/benchmarks/generation_speed")
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--h2h-rounds", type=int, default=2, help="alternations of the head-to-head timing")
    parser.add_argument("--h2h-repeats", type=int, default=2, help="batches of 1,000 per head-to-head process")
    parser.add_argument(
        "--head-to-head-only",
        action="store_true",
        help="rerun only the head-to-head timing on the settings of an existing generation_speed.json in --out",
    )
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    parser.add_argument("--today-child", help=argparse.SUPPRESS)
    parser.add_argument("--timing-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child_main(json.loads(args.memory_child))
        return
    if args.today_child:
        todays_child_main(json.loads(args.today_child))
        return
    if args.timing_child:
        timing_child_main(json.loads(args.timing_child))
        return
    out = Path(args.out)
    if args.head_to_head_only:
        torch.set_num_threads(args.threads)
        report = json.loads((out / "generation_speed.json").read_text())
        head_to_head(report, args)
        report["head_to_head_command"] = command(__file__)
        write(report, out)
        return
    torch.set_num_threads(args.threads)
    report = {
        "command": command(__file__),
        "samples": args.samples,
        "threads": torch.get_num_threads(),
        "seed": args.seed,
        "machine": f"{os.cpu_count()} CPU cores, torch {torch.__version__}, "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}",
        "load_start": os.getloadavg(),
        "spaces": [],
    }
    for space in args.spaces:
        report["spaces"].append(evaluate_space(space, args))
        write_report(out / "generation_speed", report["command"], report, markdown(report))  # after every space
    if args.h2h_rounds > 0:
        head_to_head(report, args)
    report["load_end"] = os.getloadavg()
    write(report, out)


def write(report: dict[str, Any], out: Path) -> None:
    """The report's three files: headed by the command of the whole run (the head-to-head rerun's
    command is in the text)."""
    text = markdown(report)
    write_report(out / "generation_speed", report["command"], report, text, plot(report), dpi=110)
    print(text)


if __name__ == "__main__":
    main()
