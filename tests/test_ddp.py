"""`nag fit` under DDP (2 CPU processes, gloo) equals the single-process run on the same global
batch, and writes exactly the files that run writes, once."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nag.benchmarks import NB201Benchmark
from nag.cli import main
from nag.datamodules import ArchitectureDataModule
from nag.io.checkpoints import load_checkpoint

pytestmark = pytest.mark.usefixtures("single_thread")

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = str(ROOT / "configs" / "quickstart_predictor.yaml")
PREDICTOR = str(ROOT / "configs" / "nb201" / "predictor.yaml")
GLOBAL_BATCH = 32
SPLIT = [0.6, 0.2, 0.2]

# The pairwise ranking loss pairs architectures within one process's batch, so it is off
# here: with plain MSE, the mean of the two ranks' gradients is the global batch's gradient.
TINY = """
seed_everything: 0
test_after_fit: false
trainer:
  max_epochs: 2
  accelerator: cpu
  deterministic: true
  num_sanity_val_steps: 0
  enable_progress_bar: false
  enable_model_summary: false
  log_every_n_steps: 1
  default_root_dir: {root}
  logger:
    class_path: pytorch_lightning.loggers.CSVLogger
    init_args: {{save_dir: {root}}}
model:
  init_args: {{hidden: 16, num_layers: 2, rank_weight: 0.0}}
data:
  init_args:
    benchmark: {{init_args: {{path: {table}}}}}
    train_size: 128
    batch_size: {batch}
    split: {split}
"""


def config(path: Path, root: Path, batch: int, table: Path) -> str:
    path.write_text(TINY.format(root=root, batch=batch, split=SPLIT, table=table))
    return str(path)


def val_metrics(root: Path) -> list[dict[str, float]]:
    with next(root.rglob("metrics.csv")).open() as f:
        rows = [r for r in csv.DictReader(f) if r.get("val/loss")]
    return [{k: float(v) for k, v in r.items() if k.startswith("val/")} for r in rows]


def files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and "events.out" not in p.name}


def test_val_split_divides_evenly_between_two_ranks(nb201_table):
    """Otherwise DistributedSampler pads the val split with repeats and the metrics differ."""
    dm = ArchitectureDataModule(
        NB201Benchmark(str(nb201_table)), targets=["cifar10_test_200ep"], split=SPLIT, train_size=128
    )
    assert len(dm.archs("val")) % 2 == 0 and 128 % GLOBAL_BATCH == 0


def test_ddp_fit_matches_single_process_and_rank_zero_writes(nb201_table, tmp_path):
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    main(
        ["fit", "--config", PREDICTOR, "--config", config(tmp_path / "single.yaml", single, GLOBAL_BATCH, nb201_table)]
    )

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "nag.cli",
            "fit",
            "--config",
            PREDICTOR,
            "--config",
            config(tmp_path / "ddp.yaml", ddp, GLOBAL_BATCH // 2, nb201_table),
            "--trainer.devices=2",
            "--trainer.strategy=ddp",
        ],
        check=False,
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Traceback" not in out.stderr

    # one checkpoint set, one log folder: the same files as the single-process run
    assert files(ddp) == files(single)
    ckpts = sorted(p.name for p in ddp.rglob("*.ckpt"))
    assert len(ckpts) == 2 and "last.ckpt" in ckpts  # the best (by val Spearman) and the last

    got, expected = val_metrics(ddp), val_metrics(single)
    assert len(got) == len(expected) == 2 and got[0].keys() == expected[0].keys()
    for g, e in zip(got, expected):
        for name in e:
            assert g[name] == pytest.approx(e[name], rel=1e-5, abs=1e-6), name  # seen: 1e-7
    final, reference = (load_checkpoint(next(r.rglob("last.ckpt"))) for r in (ddp, single))
    assert final["global_step"] == reference["global_step"] == 8
    for name, value in reference["state_dict"].items():
        torch.testing.assert_close(final["state_dict"][name], value, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "overlay, expected",
    [
        ("ddp_gpu.yaml", ["accelerator: gpu", "devices: -1", "strategy: ddp"]),
        ("ddp_multinode.yaml", ["devices: 4", "num_nodes: 2", "strategy: ddp"]),
        ("bf16.yaml", ["precision: bf16-mixed"]),
    ],
)
def test_overlays_compose_after_a_config(overlay, expected, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(
            ["fit", "--config", QUICKSTART, "--config", str(ROOT / "configs" / "overlays" / overlay), "--print_config"]
        )
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert all(f"  {line}\n" in out for line in expected), out
    assert "PredictorModule" in out  # the base config is still there
