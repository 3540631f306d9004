"""The datamodule a fit config describes, rebuilt outside the CLI with its split and seed."""

from __future__ import annotations

from pathlib import Path

import pytest

from nag.datamodules import ArchitectureDataModule
from nag.datamodules.from_config import datamodule_from_config
from nag.errors import ConfigError
from nag.spaces.nb201 import NB201Space

CONFIG = Path(__file__).parents[2] / "configs" / "nbgraph" / "diffusion.yaml"


def test_the_config_split_is_rebuilt_exactly():
    first = datamodule_from_config(CONFIG, ArchitectureDataModule)
    again = datamodule_from_config(CONFIG, ArchitectureDataModule, first.space)
    assert first.train_keys() == again.train_keys() and len(first.train_keys()) > 0


def test_another_space_is_refused_in_one_line():
    with pytest.raises(ConfigError, match="its data's space is not the checkpoint's"):
        datamodule_from_config(CONFIG, ArchitectureDataModule, NB201Space(), setup=False)
