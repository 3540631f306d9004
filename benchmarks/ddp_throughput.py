"""DDP throughput on one machine: `nag fit` with 2 CPU processes (gloo) vs 1, same global batch.

Runs the quickstart predictor (NAS-Bench-Graph Cora) in subprocesses: one process with batch
``B`` (with 1 and with all-CPU intra-op threads), then ``--trainer.devices 2 --trainer.strategy
ddp`` with ``B/2`` per rank and one thread each. A
callback times the training steps after a warm-up on rank 0, so start-up (imports, process
launch, data loading) is excluded and reported separately; so is the one checkpoint each run
writes after its last step (the fit goes through :func:`nag.io.fit_cache.fit_cached`, afresh
every time, which needs that ``last.ckpt``). Throughput is architectures per
second over the timed steps; the ratio is DDP / the faster single-process run, from the same
invocation.

    python benchmarks/ddp_throughput.py --steps 60 --batch 256
Writes benchmarks/results/ddp_throughput.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import pytorch_lightning as pl
from common import RESULTS, ROOT, command, fit, markdown_table, write_report


class StepTimer(pl.Callback):
    """Wall time of training steps ``warmup+1 .. max_steps`` on rank 0, written to ``out``. The
    clock stops at the end of the last step, before the checkpoint callback (Lightning runs
    those last) saves."""

    def __init__(self, out: str, warmup: int = 10) -> None:
        self.out, self.warmup, self.start, self.end = out, warmup, None, None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.warmup:
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.end = time.perf_counter()

    def on_train_end(self, trainer, pl_module) -> None:
        if trainer.is_global_zero and self.start is not None:
            steps = trainer.global_step - self.warmup
            Path(self.out).write_text(json.dumps({"steps": steps, "seconds": self.end - self.start}))


def run(devices: int, threads: int, batch: int, steps: int, warmup: int, work: Path) -> dict:
    name = f"{'single' if devices == 1 else f'ddp{devices}'}_{threads}thread"
    timing = work / f"{name}.json"
    overlay = work / f"{name}.yaml"
    overlay.write_text(
        "seed_everything: 0\ntest_after_fit: false\n"
        f"trainer:\n  max_steps: {steps + warmup}\n  max_epochs: -1\n  accelerator: cpu\n  devices: {devices}\n"
        f"  strategy: {'ddp' if devices > 1 else 'auto'}\n  limit_val_batches: 0\n  num_sanity_val_steps: 0\n"
        f"  enable_progress_bar: false\n  logger: false\n"
        f"  callbacks:\n    - class_path: ddp_throughput.StepTimer\n"
        f"      init_args: {{out: {timing}, warmup: {warmup}}}\n"
        f"    - class_path: pytorch_lightning.callbacks.ModelCheckpoint\n"
        f"      init_args: {{save_last: true, save_top_k: 0, every_n_train_steps: {steps + warmup}}}\n"
        f"data:\n  init_args:\n    batch_size: {batch}\n    num_workers: 0\n"
    )
    saved, os.environ["OMP_NUM_THREADS"] = os.environ.get("OMP_NUM_THREADS"), str(threads)  # the fit's threads
    try:
        _, total = fit(
            ROOT / "configs" / "quickstart_predictor.yaml", work / name, ["--config", str(overlay)], refit=True
        )
    finally:
        if saved is None:
            del os.environ["OMP_NUM_THREADS"]
        else:
            os.environ["OMP_NUM_THREADS"] = saved
    t = json.loads(timing.read_text())
    global_batch = batch * devices
    return {
        "run": name,
        "processes": devices,
        "threads_per_process": threads,
        "batch_per_process": batch,
        "global_batch": global_batch,
        "timed_steps": t["steps"],
        "step_seconds": t["seconds"] / t["steps"],
        "archs_per_s": global_batch * t["steps"] / t["seconds"],
        "total_wall_s": total,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60, help="timed training steps")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--batch", type=int, default=256, help="global batch")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()

    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        singles = [run(1, t, args.batch, args.steps, args.warmup, Path(tmp)) for t in sorted({1, os.cpu_count() or 1})]
        ddp = run(2, 1, args.batch // 2, args.steps, args.warmup, Path(tmp))
    single = max(singles, key=lambda r: r["archs_per_s"])
    ratio = ddp["archs_per_s"] / single["archs_per_s"]
    result = {
        "cpus": os.cpu_count(),
        "load_average_at_start": load,
        "runs": [*singles, ddp],
        "baseline": single["run"],
        "ddp_speedup": ratio,
    }
    header = (
        f"Quickstart predictor (NB-Graph Cora), global batch {args.batch}, {args.steps} timed steps after "
        f"{args.warmup} warm-up; {os.cpu_count()} CPUs, load average {load:.1f} at start."
    )
    lines = [
        header,
        "",
        *markdown_table(
            ["run", "processes", "threads/process", "batch/process", "s/step", "archs/s", "total wall s"],
            (
                [
                    r["run"],
                    r["processes"],
                    r["threads_per_process"],
                    r["batch_per_process"],
                    f"{r['step_seconds']:.4f}",
                    f"{r['archs_per_s']:.0f}",
                    f"{r['total_wall_s']:.1f}",
                ]
                for r in (*singles, ddp)
            ),
        ),
        "",
        f"DDP throughput ratio (2 processes / the faster single process, {single['run']}): **{ratio:.2f}**",
    ]
    write_report(Path(args.out) / "ddp_throughput", command(__file__), result, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
