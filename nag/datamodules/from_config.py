"""The datamodule a ``nag fit`` YAML describes, outside the CLI: benchmarks measure novelty and
op marginals against a generator's own training split, so they rebuild its data exactly."""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
import yaml
from jsonargparse import ArgumentParser

from nag.errors import ConfigError
from nag.spaces.base import SearchSpace


def datamodule_from_config(
    config: str | Path, cls: type[pl.LightningDataModule], space: SearchSpace | None = None, setup: bool = True
) -> pl.LightningDataModule:
    """The ``data`` section of ``config`` instantiated as ``cls`` (its split and seed, as
    LightningCLI would build it), set up unless told otherwise; refused when ``space`` is given
    and the data's space is another."""
    parser = ArgumentParser()
    parser.add_argument("--data", type=cls)
    data = yaml.safe_load(Path(config).read_text())["data"]
    dm = parser.instantiate_classes(parser.parse_object({"data": data})).data
    if space is not None and dm.space.identity != space.identity:
        raise ConfigError(f"{config}: its data's space is not the checkpoint's")
    if setup:
        dm.setup()
    return dm
