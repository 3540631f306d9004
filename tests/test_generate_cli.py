"""``nag generate`` end to end: fit a tiny generator, sample, write, and refuse bad input."""

from pathlib import Path

import pytest

from nag.cli import main

ROOT = Path(__file__).resolve().parents[1]
CONFIG = str(ROOT / "configs" / "nbgraph" / "diffusion.yaml")
TINY = ["--model.init_args.dim=16", "--model.init_args.layers=1", "--model.init_args.heads=2"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fit")
    main(
        [
            "fit",
            "--config",
            CONFIG,
            *TINY,
            "--trainer.max_steps=2",
            "--trainer.limit_val_batches=1",
            "--trainer.enable_progress_bar=false",
            "--test_after_fit=false",
            f"--trainer.default_root_dir={root}",
        ]
    )
    return next(root.rglob("last.ckpt"))


def generate(ckpt, out, *extra):
    main(
        [
            "generate",
            "--config",
            CONFIG,
            "--ckpt_path",
            str(ckpt),
            "--num_samples=12",
            "--steps=3",
            f"--output={out}",
            "--trainer.enable_progress_bar=false",
            *extra,
        ]
    )


def test_generate_writes_every_sample_and_is_deterministic(checkpoint, tmp_path, capsys):
    generate(checkpoint, tmp_path / "a.csv")
    generate(checkpoint, tmp_path / "b.csv")
    a = (tmp_path / "a.csv").read_bytes()
    assert a == (tmp_path / "b.csv").read_bytes()
    lines = a.decode().splitlines()
    assert lines[0].startswith("sample,valid,raw_valid,arch,key,error,valid_acc") and len(lines) == 13
    assert "validity=" in capsys.readouterr().out
    generate(checkpoint, tmp_path / "c.json", "--seed=1")
    assert (tmp_path / "c.json").read_text().startswith("[")


def run_expecting_error(args, capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def test_checkpoint_of_another_space_fails_in_one_line(checkpoint, tmp_path, capsys):
    overlay = tmp_path / "nb201.yaml"
    overlay.write_text(
        "data:\n  class_path: nag.datamodules.ArchitectureDataModule\n  init_args:\n"
        "    benchmark: null\n    targets: []\n    space:\n      class_path: nag.spaces.NB201Space\n"
    )
    err = run_expecting_error(
        [
            "generate",
            "--config",
            CONFIG,
            "--config",
            str(overlay),
            "--ckpt_path",
            str(checkpoint),
            f"--output={tmp_path / 'x.csv'}",
        ],
        capsys,
    )
    assert "was trained on search space 'nbgraph' but the config's data uses 'nb201'" in err
    assert not (tmp_path / "x.csv").exists()


def test_corrupt_checkpoint_fails_in_one_line(checkpoint, tmp_path, capsys):
    broken = tmp_path / "broken.ckpt"
    broken.write_bytes(checkpoint.read_bytes()[:1000])
    err = run_expecting_error(
        ["generate", "--config", CONFIG, "--ckpt_path", str(broken), f"--output={tmp_path / 'x.csv'}"], capsys
    )
    assert "not a readable checkpoint" in err


def test_generate_needs_a_checkpoint(tmp_path, capsys):
    err = run_expecting_error(["generate", "--config", CONFIG, f"--output={tmp_path / 'x.csv'}"], capsys)
    assert "generate needs --ckpt_path" in err
