"""Reading checkpoints back: one-line errors for missing, corrupt or wrong-space files."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import pytorch_lightning as pl
import torch

from nag.errors import ConfigError
from nag.spaces.base import SearchSpace

M = TypeVar("M", bound=pl.LightningModule)


def load_checkpoint(path: str | Path, flag: str = "--ckpt_path") -> dict:
    """Read a checkpoint, turning a missing, truncated or corrupt file into one line."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{flag} {str(p)!r}: no such checkpoint; pass the .ckpt written by `nag fit`")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means the same thing to the user
        raise ConfigError(f"{flag} {str(p)!r}: not a readable checkpoint (truncated or corrupt: {type(e).__name__})") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "hyper_parameters" not in ckpt:
        raise ConfigError(f"{flag} {str(p)!r}: not a Lightning checkpoint of a nag model")
    return ckpt


def check_space(ckpt: dict, space: SearchSpace, path: str | Path, flag: str = "--ckpt_path") -> None:
    """A model only reads graphs of the space it was trained on."""
    trained_on = ckpt["hyper_parameters"].get("data_spec", {}).get("space")
    if trained_on != space.identity:
        name = trained_on["name"] if isinstance(trained_on, dict) else trained_on
        raise ConfigError(
            f"{flag} {str(path)!r} was trained on search space {name!r} "
            f"but the config's data uses {space.name!r} ({space!r}); use the config it was trained with"
        )


def load_module(cls: type[M], path: str | Path, space: SearchSpace, flag: str,
                device: torch.device | str = "cpu") -> M:
    """``cls`` from ``path``, checked against ``space``, in eval mode on ``device``."""
    ckpt = load_checkpoint(path, flag)
    check_space(ckpt, space, path, flag)
    try:
        module = cls.load_from_checkpoint(path, map_location=device)
    except (KeyError, RuntimeError, TypeError) as e:
        raise ConfigError(f"{flag} {str(path)!r} is not a {cls.__name__} checkpoint ({type(e).__name__}); "
                          f"pass one written by `nag fit` with that model") from None
    return module.eval()
