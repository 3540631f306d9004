"""A trained generator, with its search space, from its checkpoint alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from nag.errors import ConfigError
from nag.generation.generator import ModelGenerator
from nag.io.checkpoints import load_checkpoint, load_module
from nag.lightning_modules.generators import CHECKPOINT_KEY, generator_classes
from nag.spaces import build_space
from nag.spaces.base import SearchSpace


def load_generator(
    path: str | Path,
    space: SearchSpace | None = None,
    device: torch.device | str = "cpu",
    flag: str = "checkpoint",
    **settings: Any,
) -> ModelGenerator:
    """The generator saved at ``path`` (score diffusion, discrete diffusion or cell flow), as a
    :class:`~nag.generation.Generator` on the space it was trained on.

    The class is the one the checkpoint names (its registry name,
    :mod:`nag.lightning_modules.generators`). The space is rebuilt from the checkpoint (its
    registered name and constructor arguments, checked against the stored identity); pass
    ``space`` for one that is not registered. ``settings`` are :class:`ModelGenerator`'s
    (``sampler="pc"``, ``guidance_scale``, ``mode``, ``batch_size``, ...). The file is read
    weights-only, like every checkpoint in nag, and :func:`~nag.io.checkpoints.load_module`
    checks it against the space.
    """
    ckpt = load_checkpoint(path, flag)
    classes = generator_classes()
    name = ckpt.get(CHECKPOINT_KEY)
    if name not in classes:
        raise ConfigError(
            f"{flag} {str(path)!r} holds no generator ({', '.join(classes)}); pass a checkpoint written by "
            "`nag fit` with one of those models (a generator fitted before nag recorded its name: fit it again)"
        )
    spec = ckpt["hyper_parameters"].get("data_spec", {})
    if space is None:
        config = spec.get("space_config")
        if config is None:
            raise ConfigError(
                f"{flag} {str(path)!r} does not record how to rebuild its search space "
                f"({spec.get('space', {}).get('name')!r}); pass space="
            )
        space = build_space(config)
    batch_size = settings.pop("batch_size", 1000)
    return ModelGenerator(
        load_module(classes[name], path, space, flag, device), space, batch_size=batch_size, **settings
    )
