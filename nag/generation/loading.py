"""A trained generator, with its search space, from its checkpoint alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from nag.errors import ConfigError
from nag.generation.generator import ModelGenerator
from nag.io.checkpoints import load_checkpoint, load_module
from nag.lightning_modules.cell_flow import CellFlowModule
from nag.lightning_modules.discrete_diffusion import DiscreteDiffusionModule
from nag.lightning_modules.score_diffusion import ScoreDiffusionModule
from nag.spaces import build_space
from nag.spaces.base import SearchSpace


def generator_class(hparams: dict[str, Any]) -> type[torch.nn.Module] | None:
    """Which generator a checkpoint holds, told by hyper-parameters only that one has."""
    if "encoder_hparams" in hparams:
        return CellFlowModule
    if "sde" in hparams and "attention" in hparams:
        return ScoreDiffusionModule
    if "T" in hparams and "conditions" in hparams:
        return DiscreteDiffusionModule
    return None


def load_generator(
    path: str | Path,
    space: SearchSpace | None = None,
    device: torch.device | str = "cpu",
    flag: str = "checkpoint",
    **options: Any,
) -> ModelGenerator:
    """The generator saved at ``path`` (score diffusion, discrete diffusion or cell flow), as a
    :class:`~nag.generation.Generator` on the space it was trained on.

    The space is rebuilt from the checkpoint (its registered name and constructor arguments,
    checked against the stored identity); pass ``space`` for one that is not registered.
    ``options`` are the model's sampling settings (``sampler="pc"``, ``guidance_scale``,
    ``mode``, ``batch_size``). The file is read weights-only, like every checkpoint in nag, and
    :func:`~nag.io.checkpoints.load_module` checks it against the space.
    """
    ckpt = load_checkpoint(path, flag)
    hparams = ckpt["hyper_parameters"]
    cls = generator_class(hparams)
    if cls is None:
        raise ConfigError(
            f"{flag} {str(path)!r} holds no generator (score diffusion, discrete diffusion or cell "
            "flow); pass a checkpoint written by `nag fit` with one of those models"
        )
    spec = hparams.get("data_spec", {})
    if space is None:
        config = spec.get("space_config")
        if config is None:
            raise ConfigError(
                f"{flag} {str(path)!r} does not record how to rebuild its search space "
                f"({spec.get('space', {}).get('name')!r}); pass space="
            )
        space = build_space(config)
    batch_size = options.pop("batch_size", 1000)
    return ModelGenerator(load_module(cls, path, space, flag, device), space, batch_size=batch_size, **options)
