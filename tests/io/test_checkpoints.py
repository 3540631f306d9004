"""A checkpoint never runs code when it is loaded: every read is weights-only.

A file carrying a pickled object whose ``__reduce__`` calls ``os.system`` goes through every
way nag reads checkpoints; each fails with one line naming the file, and the command the
object carries never ran (its marker file does not exist).
"""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path

import pytest
import torch

from nag.benchmarks.nbgraph import _TableUnpickler, read_table
from nag.cli import main
from nag.errors import ConfigError
from nag.io.checkpoints import load_checkpoint, load_module
from nag.lightning_modules.predictor import PredictorModule
from nag.plugins import AtomicCheckpointIO
from nag.spaces import NBGraphSpace

pytestmark = pytest.mark.usefixtures("single_thread")

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = str(ROOT / "configs" / "quickstart_predictor.yaml")
DIFFUSION = str(ROOT / "configs" / "nbgraph" / "diffusion.yaml")
TRANSFER = str(ROOT / "configs" / "nbgraph" / "search_transfer.yaml")
REFUSED = "holds objects nag does not load"


class Payload:
    """Unpickling this runs ``touch <marker>``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def plain_hparams() -> dict:
    return {"data_spec": {"space": NBGraphSpace().identity}, "lr": 1e-3}


WHERE = {  # the payload hidden in each part of a Lightning checkpoint
    "hyper_parameters": lambda p: {"state_dict": {}, "hyper_parameters": {"x": p}},
    "callbacks": lambda p: {
        "state_dict": {},
        "hyper_parameters": plain_hparams(),
        "callbacks": {"ModelCheckpoint": {"best_model_path": p}},
    },
    "optimizer_states": lambda p: {
        "state_dict": {},
        "hyper_parameters": plain_hparams(),
        "optimizer_states": [{"state": {0: {"exp_avg": p}}, "param_groups": []}],
    },
}


@pytest.fixture(params=list(WHERE))
def evil(request, tmp_path) -> tuple[Path, Path]:
    """(checkpoint with the payload, the marker file the payload would create)."""
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    torch.save(WHERE[request.param](Payload(marker)), path)
    return path, marker


def refused(args: list[str], path: Path, marker: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2, err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert REFUSED in lines[0] and str(path) in lines[0], lines[0]
    assert not marker.exists(), "the checkpoint ran code"


def test_generate_refuses(evil, capsys, tmp_path):
    path, marker = evil
    refused(
        [
            "generate",
            "--config",
            DIFFUSION,
            "--ckpt_path",
            str(path),
            "--num_samples",
            "2",
            "--output",
            str(tmp_path / "out.csv"),
        ],
        path,
        marker,
        capsys,
    )
    assert not (tmp_path / "out.csv").exists()


def test_validate_refuses(evil, capsys):
    path, marker = evil
    refused(["validate", "--config", QUICKSTART, "--ckpt_path", str(path)], path, marker, capsys)


def test_fit_ckpt_path_refuses(evil, capsys, tmp_path):
    path, marker = evil
    refused(
        ["fit", "--config", QUICKSTART, "--ckpt_path", str(path), "--trainer.default_root_dir", str(tmp_path / "run")],
        path,
        marker,
        capsys,
    )


def test_fit_resume_from_last_refuses(evil, capsys, tmp_path):
    """``--ckpt_path last`` finds a planted ``last.ckpt`` in an earlier run's folder."""
    path, marker = evil
    folder = tmp_path / "run" / "lightning_logs" / "version_0" / "checkpoints"
    folder.mkdir(parents=True)
    last = folder / "last.ckpt"
    last.write_bytes(path.read_bytes())
    refused(
        ["fit", "--config", QUICKSTART, "--ckpt_path", "last", "--trainer.default_root_dir", str(tmp_path / "run")],
        last,
        marker,
        capsys,
    )


def test_search_strategy_checkpoint_refuses(evil, capsys, tmp_path):
    path, marker = evil
    out = tmp_path / "search.json"
    refused(
        [
            "search",
            "--config",
            TRANSFER,
            "--strategy.init_args.predictor_ckpt",
            str(path),
            "--budget",
            "3",
            "--seeds",
            "[0]",
            "--output",
            str(out),
        ],
        path,
        marker,
        capsys,
    )
    assert not out.exists()


def test_python_loaders_refuse(evil):
    path, marker = evil
    with pytest.raises(ConfigError, match=REFUSED):
        load_checkpoint(path)
    with pytest.raises(ConfigError, match=REFUSED):
        load_module(PredictorModule, path, NBGraphSpace(), "--predictor_ckpt")
    with pytest.raises(ConfigError, match=REFUSED):  # what Lightning's Trainer reads resumes with
        AtomicCheckpointIO().load_checkpoint(path)
    assert not marker.exists()


def test_trainer_refuses_without_the_cli(evil, tmp_path):
    """Lightning's own ``ckpt_path`` read (no CLI pre-check) goes through the plugin."""
    from nag.benchmarks import NBGraphBenchmark
    from nag.datamodules import ArchitectureDataModule
    from nag.trainer import NagTrainer

    path, marker = evil
    dm = ArchitectureDataModule(NBGraphBenchmark("cora"), targets=["valid_acc"], batch_size=64)
    model = PredictorModule(dm.spec())
    trainer = NagTrainer(max_epochs=1, default_root_dir=tmp_path, logger=False, enable_progress_bar=False)
    with pytest.raises(ConfigError, match=REFUSED):
        trainer.fit(model, datamodule=dm, ckpt_path=str(path))
    assert not marker.exists()


@pytest.mark.parametrize(
    "config",
    [
        "quickstart_predictor.yaml",
        "nbgraph/diffusion.yaml",
        "nbgraph/discrete_diffusion.yaml",
        "nbgraph/meta_predictor.yaml",
    ],
)
def test_checkpoints_nag_writes_are_weights_only(config, tmp_path):
    """What `nag fit` writes (model, optimizer, loops, callbacks, RNG states) needs no type
    beyond torch's weights-only set, and resumes through the strict reader."""
    run = [
        "fit",
        "--config",
        str(ROOT / "configs" / config),
        "--trainer.max_epochs=1",
        "--trainer.limit_train_batches=2",
        "--trainer.limit_val_batches=1",
        "--test_after_fit=false",
        "--trainer.enable_progress_bar=false",
        "--trainer.default_root_dir",
        str(tmp_path),
    ]
    main(run)
    last = next(tmp_path.rglob("last.ckpt"))
    assert torch.serialization.get_unsafe_globals_in_checkpoint(last) == []
    main([*run[:3], "--trainer.max_epochs=2", *run[4:], "--ckpt_path", str(last)])


def test_truncated_file_is_still_called_corrupt(tmp_path):
    path = tmp_path / "half.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(100)}, "hyper_parameters": {}}, path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ConfigError, match="not a readable checkpoint"):
        load_checkpoint(path)


def test_benchmark_tables_refuse_code(tmp_path):
    """NAS-Bench-Graph's tables are pickles; ours are read with an unpickler that knows only
    the numpy scalars they hold."""
    marker = tmp_path / "pwned"
    with pytest.raises(pickle.UnpicklingError, match="posix.system|nt.system"):
        _TableUnpickler(io.BytesIO(pickle.dumps({"x": Payload(marker)}))).load()
    assert not marker.exists()
    record = next(iter(read_table("cora").values()))
    assert set(record) >= {"valid_perf", "perf", "latency", "para"}
