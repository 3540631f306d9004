"""docs/new_search_space.md's claim: one space class and one YAML, no edit to nag, and the CLI
trains and generates on it. ``examples/`` goes on ``sys.path`` as ``PYTHONPATH=examples`` would."""

import csv
from pathlib import Path

import pytest
import torch

from nag.cli import main

pytestmark = pytest.mark.usefixtures("single_thread")

ROOT = Path(__file__).resolve().parents[2]
CONFIG = str(ROOT / "examples" / "chain.yaml")
TINY = ["--model.init_args.dim=16", "--model.init_args.layers=1", "--trainer.enable_progress_bar=false"]


@pytest.fixture(autouse=True)
def examples_on_path(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "examples"))


def test_the_space_meets_the_contract():
    from chain_space import LAYER_OPS, ChainSpace

    space = ChainSpace()
    archs = list(space.enumerate())
    assert len(archs) == sum(4**k for k in range(1, 5))  # one per skip-free chain of 1..4 ops
    for arch in archs[::7]:
        assert space.decode(*space.encode(arch)) == arch
        assert space.from_string(space.to_string(arch)) == arch
    assert space.key(("conv3x3", "skip", "skip", "maxpool3x3")) == space.key(("skip", "conv3x3", "maxpool3x3", "skip"))
    arch = ("conv1x1", "avgpool3x3", "skip", "conv3x3")
    assert all(sum(a != b for a, b in zip(arch, n)) == 1 for n in space.neighbours(arch))
    assert len(space.neighbours(arch)) == 4 * (len(LAYER_OPS) - 1)


def test_benchmark_values_match_closed_forms():
    from chain_space import ChainBenchmark, ChainSpace

    bench = ChainBenchmark(ChainSpace(channels=8))
    c = 8
    per_op = {"conv3x3": 9 * c * c + 2 * c, "conv1x1": c * c + 2 * c}  # conv without bias, BN scale+shift
    for arch in bench.archs()[::11]:
        expected = 27 * c + 2 * c + sum(per_op.get(op, 0) for op in arch) + c * 10 + 10
        assert bench.query(arch, "params") == expected
        assert bench.query(arch, "receptive_field") == 3 + 2 * sum(op[-3:] == "3x3" for op in arch)
        net = bench.space.to_module(arch)
        assert net(torch.zeros(1, 3, 8, 8)).shape == (1, 10)


def test_fit_then_generate_through_the_cli(tmp_path, capsys):
    from chain_space import ChainSpace

    main(
        [
            "fit",
            "--config",
            CONFIG,
            *TINY,
            "--trainer.max_steps=3",
            "--trainer.limit_val_batches=1",
            f"--trainer.default_root_dir={tmp_path}",
        ]
    )
    ckpt = next(tmp_path.rglob("last.ckpt"))
    out = tmp_path / "chain.csv"
    main(
        [
            "generate",
            "--config",
            CONFIG,
            "--ckpt_path",
            str(ckpt),
            "--num_samples=24",
            "--steps=3",
            f"--output={out}",
            "--trainer.enable_progress_bar=false",
            "--verbose",
        ]
    )
    printed = capsys.readouterr().out
    assert "validity=" in printed
    rows = list(csv.DictReader(out.open()))
    if not all(row["valid"] == "True" for row in rows):
        assert "invalid samples, by reason:" in printed
    main(
        [
            "generate",
            "--config",
            CONFIG,
            "--ckpt_path",
            str(ckpt),
            "--num_samples=4",
            "--steps=2",
            f"--output={tmp_path / 'quiet.json'}",
            "--quiet",
        ]
    )
    assert capsys.readouterr().out == "" and (tmp_path / "quiet.json").is_file()
    assert len(rows) == 24 and {"receptive_field", "params"} <= set(rows[0])
    space = ChainSpace()
    for row in rows:
        if row["valid"] == "True":
            arch = space.from_string(row["arch"])
            assert row["key"] == space.key(arch)
            assert float(row["receptive_field"]) == space.receptive_field(arch)
        else:
            assert row["error"].startswith("chain:")


def test_the_space_alone_is_enough_to_train(tmp_path):
    """No benchmark: the generator learns the space's architectures themselves."""
    main(
        [
            "fit",
            "--config",
            CONFIG,
            *TINY,
            "--data.init_args.benchmark=null",
            "--data.init_args.targets=[]",
            "--data.init_args.space=chain_space.ChainSpace",
            "--trainer.max_steps=1",
            "--trainer.limit_val_batches=1",
            f"--trainer.default_root_dir={tmp_path}",
        ]
    )
    ckpt = torch.load(next(tmp_path.rglob("last.ckpt")), map_location="cpu", weights_only=True)
    assert ckpt["hyper_parameters"]["data_spec"]["space"]["name"] == "chain"
