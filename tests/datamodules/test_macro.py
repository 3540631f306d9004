"""Macro datamodule: cached generation, refusal of a stale cache, held-out settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from nag.datamodules.macro import MacroDataModule
from nag.errors import DataFileError
from nag.spaces.macro import MacroSpace
from nag.spaces.macro_tokens import PREFIX_LENGTH, MacroTokenizer

pytestmark = pytest.mark.usefixtures("single_thread")


def tiny(path: Path, images: Path, **kwargs) -> MacroDataModule:
    space = MacroSpace(num_cells=6, stem_channels=(4,), channels=(4, 8), repeats=(1, 2), max_stages=2)
    tokenizer = MacroTokenizer(
        space,
        num_classes=(2, 3),
        input_sizes=(8,),
        in_channels=1,
        params_range=(1e2, 1e5),
        flops_range=(1e4, 1e8),
        num_bins=8,
    )
    args = {
        "num_settings": 6,
        "population_size": 3,
        "sample_size": 2,
        "cycles": 2,
        "top_k": 2,
        "batch_size": 4,
        "proxy_batch_size": 4,
        "split": (0.5, 0.25, 0.25),
        **kwargs,
    }
    return MacroDataModule(tokenizer, str(path), images=str(images), **args)


def test_generates_once_then_reads_the_cache(tmp_path: Path, shared_data: Path, monkeypatch) -> None:
    images = shared_data / "images" / "digits.csv.gz"
    dm = tiny(tmp_path / "data.json", images)
    dm.setup()
    assert (tmp_path / "data.json").is_file()
    batch = next(iter(dm.train_dataloader()))["tokens"]
    assert batch.shape[1] == dm.tokenizer.max_length
    for row in batch.tolist():
        constraints, arch = dm.tokenizer.decode(row)
        assert dm.space.satisfies(arch, constraints)
    train = set(dm.constraints("train"))
    assert train and dm.constraints("val") and not train & set(dm.constraints("val"))

    monkeypatch.setattr("nag.datamodules.macro.generate_records", lambda *a, **k: pytest.fail("regenerated"))
    again = tiny(tmp_path / "data.json", images)
    assert again.records == dm.records
    with pytest.raises(DataFileError, match="other settings \\(cycles\\)"):
        _ = tiny(tmp_path / "data.json", images, cycles=3).records
    assert dm.spec()["prefix_length"] == PREFIX_LENGTH
