"""Fault tolerance: a SIGKILLed `nag fit` resumed with `--ckpt_path last` ends with the weights
of a run that was never interrupted; checkpoint files are complete or absent."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from nag.cli import main
from nag.io.checkpoints import load_checkpoint
from nag.plugins import AtomicCheckpointIO

pytestmark = pytest.mark.usefixtures("single_thread")

ROOT = Path(__file__).resolve().parents[1]
CONFIG = str(ROOT / "configs" / "nb201" / "diffusion.yaml")
EPOCH_STEPS = 8  # train_size / batch_size below
MAX_STEPS = 15  # crosses the epoch boundary after the resume; a checkpoint step, so last.ckpt is final
STALL_STEP = 5  # the killed run hangs here: mid-epoch, after its step-3 checkpoint

# Diffusion: the run draws noise and times from the global RNG, keeps an EMA and a warm-up
# schedule, so every kind of state a resume must restore is exercised.
TINY = """
seed_everything: 0
test_after_fit: false
trainer:
  max_epochs: -1
  max_steps: {max_steps}
  deterministic: true
  num_sanity_val_steps: 0
  limit_val_batches: 1
  enable_progress_bar: false
  default_root_dir: {root}
  callbacks:
    - class_path: pytorch_lightning.callbacks.ModelCheckpoint
      init_args: {{monitor: null, every_n_train_steps: 3, save_top_k: -1, save_last: true}}
{extra}
model:
  init_args: {{dim: 16, layers: 1, heads: 2, warmup_steps: 5}}
data:
  init_args:
    benchmark: {{init_args: {{path: {table}}}}}
    split: [0.6, 0.2, 0.2]
    train_size: 64
    batch_size: 8
"""


class StallAt(pl.Callback):
    """Hangs the run after global step ``step`` and says so in ``marker``: the test kills it
    there, mid-epoch, at a step that does not depend on how busy the machine is."""

    def __init__(self, step: int, marker: str) -> None:
        self.step, self.marker = step, marker

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            Path(self.marker).touch()
            while True:
                time.sleep(1)


def write_config(path: Path, root: Path, table: Path, extra: str = "") -> str:
    path.write_text(TINY.format(max_steps=MAX_STEPS, root=root, table=table, extra=extra))
    return str(path)


def steps_in(folder: Path) -> list[int]:
    return sorted(int(m.group(1)) for p in folder.glob("*.ckpt") if (m := re.search(r"step=(\d+)", p.name)))


def run_killed(tmp_path: Path, run: Path, table: Path) -> None:
    marker = tmp_path / "stalled"
    stall = f"    - class_path: test_resume.StallAt\n      init_args: {{step: {STALL_STEP}, marker: {marker}}}"
    config = write_config(tmp_path / "killed.yaml", run, table, stall)
    path = os.pathsep.join(filter(None, [str(Path(__file__).parent), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "nag.cli", "fit", "--config", CONFIG, "--config", config],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 240
        while not marker.exists():
            assert proc.poll() is None, f"nag fit ended before it was killed:\n{proc.stderr.read()[-3000:]}"
            assert time.monotonic() < deadline, "nag fit never reached the step it should be killed at"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        proc.kill()
        proc.stderr.close()


def test_killed_fit_resumes_to_the_uninterrupted_weights(nb201_table, tmp_path):
    run, reference = tmp_path / "run", tmp_path / "reference"
    run_killed(tmp_path, run, nb201_table)
    ckpts = list(run.rglob("*.ckpt"))
    assert {p.name for p in ckpts} == {"epoch=0-step=3.ckpt", "last.ckpt"}
    for p in ckpts:  # complete files only: each one loads
        assert load_checkpoint(p)["global_step"] == 3

    main(["fit", "--config", CONFIG, "--config", write_config(tmp_path / "ref.yaml", reference, nb201_table)])
    main(
        [
            "fit",
            "--config",
            CONFIG,
            "--config",
            write_config(tmp_path / "run.yaml", run, nb201_table),
            "--ckpt_path",
            "last",
        ]
    )

    resumed = run / "lightning_logs" / "version_1" / "checkpoints"
    assert steps_in(resumed) == [6, 9, 12, 15]  # counting went on from step 3
    assert steps_in(reference / "lightning_logs" / "version_0" / "checkpoints") == [3, 6, 9, 12, 15]
    final, expected = load_checkpoint(resumed / "last.ckpt"), load_checkpoint(next(reference.rglob("last.ckpt")))
    assert final["global_step"] == expected["global_step"] == MAX_STEPS
    assert final["epoch"] == expected["epoch"] == MAX_STEPS // EPOCH_STEPS
    assert final["state_dict"].keys() == expected["state_dict"].keys()
    for name, value in expected["state_dict"].items():
        assert torch.equal(final["state_dict"][name], value), name
    for a, b in zip(final["optimizer_states"][0]["state"].values(), expected["optimizer_states"][0]["state"].values()):
        assert all(torch.equal(a[k], b[k]) for k in b)


def test_last_without_an_earlier_run_starts_afresh(nb201_table, tmp_path):
    config = write_config(tmp_path / "c.yaml", tmp_path / "run", nb201_table)
    main(["fit", "--config", CONFIG, "--config", config, "--trainer.max_steps=3", "--ckpt_path", "last"])
    assert steps_in(tmp_path / "run" / "lightning_logs" / "version_0" / "checkpoints") == [3]


def test_an_interrupted_save_keeps_the_previous_file(tmp_path, monkeypatch):
    target = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"step": 1}, target)

    def dies_midway(obj, f, *args, **kwargs):
        f.write(b"half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", dies_midway)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"step": 2}, target)
    monkeypatch.undo()
    assert torch.load(target)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_trainer_defaults_add_to_the_users_callbacks_and_plugins(tmp_path):
    from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint
    from pytorch_lightning.plugins.io import TorchCheckpointIO

    from nag.callbacks import RNGStateCheckpoint
    from nag.trainer import NagTrainer

    def checkpoints(trainer):
        return [c for c in trainer.callbacks if isinstance(c, ModelCheckpoint)]

    plain = NagTrainer(default_root_dir=tmp_path, logger=False)
    [default] = checkpoints(plain)
    assert default.save_last is True
    assert isinstance(plain.strategy.checkpoint_io, AtomicCheckpointIO)
    assert sum(isinstance(c, RNGStateCheckpoint) for c in plain.callbacks) == 1

    mine, stop, io = ModelCheckpoint(monitor="val/loss"), EarlyStopping(monitor="val/loss"), TorchCheckpointIO()
    custom = NagTrainer(default_root_dir=tmp_path, logger=False, callbacks=[mine, stop], plugins=[io])
    assert checkpoints(custom) == [mine] and stop in custom.callbacks
    assert custom.strategy.checkpoint_io is io
    assert checkpoints(NagTrainer(default_root_dir=tmp_path, logger=False, enable_checkpointing=False)) == []
