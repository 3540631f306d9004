"""GPU check (issue 19): one command, within five minutes on one CUDA GPU.

On NAS-Bench-Graph (Cora, embedded data: no files needed) it fits, in bf16-mixed for
``--steps`` optimiser steps each, the shipped score-diffusion generator, the shipped discrete
(classifier-free guided) generator and the shipped accuracy predictor (``nag fit`` with their
configs, in this process); then it generates ``--samples`` architectures with each generator on
the GPU in fp32 and under bf16 autocast, and scores them with the predictor. It records fit
time, generation throughput (valid architectures per second through ``Generator.sample``,
decoding included, and network-only samples per second) and peak GPU memory, and checks:

- no NaN or infinity in any fitted weight, raw sample or prediction;
- the GPU path has the CPU path's validity: the score generator's ODE solver (DPM-Solver++)
  starts the GPU and the CPU run from the same prior draw, so in fp32 both must decode to the
  same validity, raw validity within 0.5 points and at least 98 % identical architectures;
  the discrete generator draws its noise on the device, so there validity must agree and raw
  validity within four binomial standard errors.

Writes ``benchmarks/results/gpu.md`` and ``gpu.json``; exits 1 when a check fails (after
writing), 2 without CUDA (one line)::

    python benchmarks/gpu_check.py

``--device cpu --smoke`` runs every step on the CPU with tiny models and a few samples (the
fast test of this script).
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

from common import RESULTS, ROOT, command, fit, markdown_table, write_report

CONFIGS = {
    "score": ROOT / "configs" / "nbgraph" / "diffusion.yaml",
    "discrete": ROOT / "configs" / "nbgraph" / "discrete_diffusion.yaml",
    "predictor": ROOT / "configs" / "nbgraph" / "predictor.yaml",
}
#: Tiny models for ``--smoke``.
SMOKE_MODELS = {
    "score": ["--model.init_args.dim=16", "--model.init_args.layers=1", "--model.init_args.heads=2"],
    "discrete": [
        "--model.init_args.dim=16",
        "--model.init_args.edge_dim=4",
        "--model.init_args.layers=1",
        "--model.init_args.heads=2",
        "--model.init_args.T=20",
    ],
    "predictor": ["--model.init_args.hidden=16", "--model.init_args.num_layers=1"],
}
CONDITIONS = {"valid_acc": 0.80, "latency": 0.004}
SCORE_SAMPLER, SCORE_STEPS, DISCRETE_STEPS, GUIDANCE = "dpm", 10, 10, 2.0


def refuse_without_cuda(device: str) -> None:
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        print(
            "gpu_check: no CUDA device here (torch.cuda.is_available() is False); run it on a machine with a GPU, "
            "or pass --device cpu --smoke to exercise the CPU path",
            file=sys.stderr,
        )
        sys.exit(2)


def fit_shipped(kind: str, args: argparse.Namespace, root: Path) -> dict[str, Any]:
    """``nag fit`` of the shipped config in bf16-mixed for ``args.steps`` steps, afresh (its time
    is measured): its last checkpoint, and the seconds it took with the process's start-up."""
    overrides = [
        f"--trainer.accelerator={'gpu' if args.device == 'cuda' else 'cpu'}",
        "--trainer.devices=1",
        "--trainer.precision=bf16-mixed",
        f"--trainer.max_steps={args.steps}",
        "--trainer.max_epochs=10000",
        "--trainer.deterministic=false",
        "--trainer.logger=false",
        "--trainer.enable_model_summary=false",
        f"--trainer.limit_val_batches={1 if args.smoke else 4}",
        *(SMOKE_MODELS[kind] + ["--data.init_args.train_size=64"] if args.smoke else []),
    ]
    ckpt, seconds = fit(CONFIGS[kind], root / kind, overrides, refit=True)
    return {"checkpoint": str(ckpt), "seconds": seconds, "steps": args.steps, "steps_per_s": args.steps / seconds}


def finite_weights(path: str) -> bool:
    from nag.io.checkpoints import read_checkpoint

    state = read_checkpoint(path)["state_dict"]
    return all(bool(v.isfinite().all()) for v in state.values() if v.is_floating_point())


def sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def timed_sample(generator: Any, n: int, device: str, autocast: bool, **kwargs: Any) -> tuple[Any, dict[str, float]]:
    """``generator.sample`` and the network-only ``sample_graphs``, timed, with peak GPU memory."""
    import contextlib

    import torch

    context = torch.autocast(device_type=device, dtype=torch.bfloat16) if autocast else contextlib.nullcontext()
    model = generator.model
    with context:
        generator.sample(min(n, 64), seed=1, **kwargs)  # warm-up: kernels, allocator
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        sync(device)
        tic = time.perf_counter()
        result = generator.sample(n, seed=0, **kwargs)
        sync(device)
        total = time.perf_counter() - tic
        options = {**generator.options}
        if kwargs.get("conditions"):
            options["conditions"] = kwargs["conditions"]
        sync(device)
        tic = time.perf_counter()
        model.sample_graphs(n, steps=kwargs.get("steps"), seed=0, batch_size=generator.batch_size, **options)
        sync(device)
        network = time.perf_counter() - tic
    peak = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else math.nan
    finite = all(bool(t.float().isfinite().all()) for t in result.graphs.values() if t.is_floating_point())
    return result, {
        "samples": n,
        "seconds": total,
        "valid_per_s": len(result.valid) / total,
        "network_samples_per_s": n / network,
        "validity": result.validity,
        "raw_validity": result.raw_validity,
        "peak_gpu_mib": peak,
        "finite": finite,
    }


def score_cpu_comparison(ckpt: str, args: argparse.Namespace, batch: int) -> dict[str, Any]:
    """The score generator on the device and on the CPU from one prior draw (fp32)."""
    import torch

    import nag
    from nag.generation import decode_samples

    cpu = nag.load_generator(ckpt, device="cpu", sampler=SCORE_SAMPLER)
    dev = nag.load_generator(ckpt, device=args.device, sampler=SCORE_SAMPLER)
    model = cpu.model
    n, spec = args.samples, model.hparams.data_spec
    g = torch.Generator().manual_seed(0)
    shapes = {"x": (n, spec["max_nodes"], spec["num_ops"])}
    if not model.fixed_topology:
        shapes["adj"] = (n, spec["max_nodes"], spec["max_nodes"])
    prior = {k: model.sde.prior_sampling(s, generator=g) for k, s in shapes.items()}
    out = {}
    for name, gen, size in (("cpu", cpu, 1000), ("device", dev, batch)):
        graphs = gen.model.sample_graphs(n, steps=SCORE_STEPS, sampler=SCORE_SAMPLER, batch_size=size, prior=prior)
        out[name] = decode_samples(gen.space, graphs)
    key = cpu.space.key
    same = sum(
        a is not None and b is not None and key(a) == key(b) for a, b in zip(out["cpu"].archs, out["device"].archs)
    )
    result = {
        "samples": n,
        "cpu_validity": out["cpu"].validity,
        "device_validity": out["device"].validity,
        "cpu_raw_validity": out["cpu"].raw_validity,
        "device_raw_validity": out["device"].raw_validity,
        "same_architecture": same / n,
    }
    result["pass"] = bool(
        result["cpu_validity"] == result["device_validity"]
        and abs(result["cpu_raw_validity"] - result["device_raw_validity"]) <= 0.005
        and result["same_architecture"] >= 0.98
    )
    return result


def discrete_cpu_comparison(ckpt: str, device_result: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """The discrete generator on the CPU (its own draws): validity equal, raw validity within 4 SE."""
    import nag

    n = min(args.samples, 2000)
    cpu = nag.load_generator(ckpt, device="cpu", guidance_scale=GUIDANCE)
    result = cpu.sample(n, seed=0, steps=DISCRETE_STEPS, conditions=CONDITIONS)
    p, q = result.raw_validity, device_result["raw_validity"]
    se = math.sqrt(max(p * (1 - p), 1e-4) / n + max(q * (1 - q), 1e-4) / device_result["samples"])
    out = {
        "cpu_samples": n,
        "cpu_validity": result.validity,
        "device_validity": device_result["validity"],
        "cpu_raw_validity": p,
        "device_raw_validity": q,
        "raw_difference_se": (q - p) / se,
    }
    out["pass"] = bool(out["cpu_validity"] == out["device_validity"] and abs(out["raw_difference_se"]) <= 4.0)
    return out


def predict(ckpt: str, result: Any, space: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Predictions for every valid generated architecture, timed."""
    import torch

    from nag.io.checkpoints import load_module
    from nag.lightning_modules.predictor import PredictorModule

    model = load_module(PredictorModule, ckpt, space, "--predictor", args.device)
    valid = result.valid
    sync(args.device)
    tic = time.perf_counter()
    outs = []
    with torch.no_grad():
        for start in range(0, len(valid), 4096):
            x, adj, mask = (t.to(model.device) for t in space.encode_batch(valid[start : start + 4096]))
            outs.append(model.denormalize(model.predict_graphs(x, adj, mask).float()).cpu())
    sync(args.device)
    seconds = time.perf_counter() - tic
    values = torch.cat(outs) if outs else torch.zeros(0)
    return {
        "architectures": len(valid),
        "seconds": seconds,
        "per_s": len(valid) / seconds,
        "finite": bool(values.isfinite().all()),
        "mean": float(values.mean()),
    }


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# GPU check (issue 19)",
        "",
        "```",
        report["command"],
        "```",
        "",
        f"{report['device_name']}; torch {report['torch']}; {report['when']}; total {report['total_seconds']:.0f} s. "
        f"NAS-Bench-Graph (Cora). Result: **{'PASS' if report['pass'] else 'FAIL'}**.",
        "",
        "## Fits (bf16-mixed)",
        "",
        *markdown_table(
            ["model", "config", "steps", "seconds (start-up included)", "steps/s", "finite weights"],
            (
                [
                    kind,
                    f"`{Path(f['config']).relative_to(ROOT)}`",
                    f["steps"],
                    f"{f['seconds']:.1f}",
                    f"{f['steps_per_s']:.1f}",
                    "yes" if f["finite"] else "NO",
                ]
                for kind, f in report["fits"].items()
            ),
        ),
        "",
        f"## Generation ({report['samples']} architectures, batch {report['batch']})",
        "",
        *markdown_table(
            [
                "generator",
                "precision",
                "seconds",
                "valid/s (decoding included)",
                "network samples/s",
                "validity",
                "raw validity",
                "peak GPU MiB",
                "finite",
            ],
            (
                [
                    g["generator"],
                    g["precision"],
                    f"{g['seconds']:.2f}",
                    f"{g['valid_per_s']:.0f}",
                    f"{g['network_samples_per_s']:.0f}",
                    f"{g['validity']:.3f}",
                    f"{g['raw_validity']:.3f}",
                    f"{g['peak_gpu_mib']:.0f}",
                    "yes" if g["finite"] else "NO",
                ]
                for g in report["generation"]
            ),
        ),
    ]
    s, d, p = report["score_vs_cpu"], report["discrete_vs_cpu"], report["predictor"]
    lines += [
        "",
        "## Same validity as the CPU path",
        "",
        f"- score ({SCORE_SAMPLER}, {SCORE_STEPS} steps, fp32, one prior draw for both): validity CPU "
        f"{s['cpu_validity']:.4f} vs device {s['device_validity']:.4f}; raw {s['cpu_raw_validity']:.4f} vs "
        f"{s['device_raw_validity']:.4f}; identical architectures {s['same_architecture']:.4f} — "
        f"**{'pass' if s['pass'] else 'FAIL'}**",
        f"- discrete (CFG on {CONDITIONS}, w={GUIDANCE:g}, {DISCRETE_STEPS} steps; own draws per device): validity "
        f"CPU {d['cpu_validity']:.4f} ({d['cpu_samples']} samples) vs device {d['device_validity']:.4f}; raw "
        f"{d['cpu_raw_validity']:.4f} vs {d['device_raw_validity']:.4f} ({d['raw_difference_se']:+.1f} SE) — "
        f"**{'pass' if d['pass'] else 'FAIL'}**",
        "",
        "## Predictor",
        "",
        f"{p['architectures']} generated architectures scored in {p['seconds']:.3f} s ({p['per_s']:.0f}/s); mean "
        f"predicted valid_acc {p['mean']:.4f}; finite: {'yes' if p['finite'] else 'NO'}. Peak resident memory of "
        f"the whole check: {report['peak_rss_mib']:.0f} MiB.",
        "",
    ]
    if report["failures"]:
        lines += ["## Failures", "", *[f"- {f}" for f in report["failures"]], ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--smoke", action="store_true", help="tiny models, few steps and samples (tests)")
    parser.add_argument("--steps", type=int, default=None, help="optimiser steps per fit (default 300; smoke 2)")
    parser.add_argument("--samples", type=int, default=None, help="architectures per generator (10,000; smoke 40)")
    parser.add_argument("--batch", type=int, default=None, help="sampling batch (10,000 on a GPU, 1,000 on a CPU)")
    parser.add_argument("--run-dir", default=str(ROOT / "runs" / "gpu_check"))
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)
    refuse_without_cuda(args.device)
    args.steps = args.steps or (2 if args.smoke else 300)
    args.samples = args.samples or (40 if args.smoke else 10_000)
    batch = args.batch or (10_000 if args.device == "cuda" else 1000)

    import torch

    import nag

    start = time.perf_counter()
    root = Path(args.run_dir) / time.strftime("%Y%m%d-%H%M%S")
    report: dict[str, Any] = {
        "command": command(__file__, argv),
        "device_name": torch.cuda.get_device_name() if args.device == "cuda" else f"CPU ({os.cpu_count()} cores)",
        "torch": torch.__version__,
        "when": time.strftime("%Y-%m-%d %H:%M"),
        "samples": args.samples,
        "batch": batch,
        "fits": {},
        "generation": [],
        "failures": [],
    }
    for kind in CONFIGS:
        record = fit_shipped(kind, args, root)
        record.update(config=str(CONFIGS[kind]), finite=finite_weights(record["checkpoint"]))
        report["fits"][kind] = record
        if not record["finite"]:
            report["failures"].append(f"{kind}: non-finite weights after the fit")
    ckpt = {k: f["checkpoint"] for k, f in report["fits"].items()}

    last = {}
    for label, kwargs, options in (
        (f"score ({SCORE_SAMPLER}, {SCORE_STEPS} steps)", {"steps": SCORE_STEPS}, {"sampler": SCORE_SAMPLER}),
        (
            f"discrete (CFG on 2 conditions, w={GUIDANCE:g}, {DISCRETE_STEPS} steps)",
            {"steps": DISCRETE_STEPS, "conditions": CONDITIONS},
            {"guidance_scale": GUIDANCE},
        ),
    ):
        kind = "score" if label.startswith("score") else "discrete"
        generator = nag.load_generator(ckpt[kind], device=args.device, batch_size=batch, **options)
        for precision, autocast in (("fp32", False), ("bf16 autocast", True)):
            result, row = timed_sample(generator, args.samples, args.device, autocast, **kwargs)
            report["generation"].append({"generator": label, "precision": precision, **row})
            if not row["finite"]:
                report["failures"].append(f"{label}, {precision}: NaN or infinity in the raw samples")
            if row["validity"] < 0.99:
                report["failures"].append(f"{label}, {precision}: validity {row['validity']:.3f} < 0.99")
            if precision == "fp32":
                last[kind] = (result, row, generator.space)

    report["score_vs_cpu"] = score_cpu_comparison(ckpt["score"], args, batch)
    if not report["score_vs_cpu"]["pass"]:
        report["failures"].append("score: the device path does not give the CPU path's validity")
    report["discrete_vs_cpu"] = discrete_cpu_comparison(ckpt["discrete"], last["discrete"][1], args)
    if not report["discrete_vs_cpu"]["pass"]:
        report["failures"].append("discrete: the device path does not give the CPU path's validity")
    report["predictor"] = predict(ckpt["predictor"], last["score"][0], last["score"][2], args)
    if not report["predictor"]["finite"]:
        report["failures"].append("predictor: NaN or infinity in its predictions")

    report["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    report["total_seconds"] = time.perf_counter() - start
    report["pass"] = not report["failures"]
    text = markdown(report)
    write_report(Path(args.out) / "gpu", report["command"], report, text)
    print(text)
    return 0 if report["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
