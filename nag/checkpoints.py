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


def last_checkpoint(trainer: pl.Trainer) -> Path | None:
    """The newest ``last*.ckpt`` that an earlier run with this trainer's settings wrote.

    Looked for where ModelCheckpoint writes: its ``dirpath`` when set, else
    ``<logger save_dir>/<name>/<any version>/checkpoints`` (``<default_root_dir>/checkpoints``
    without a logger). A restarted job gets a new logger version, so the previous run's
    ``last.ckpt`` sits in a sibling version folder.
    """
    folders = [Path(cb.dirpath) for cb in trainer.checkpoint_callbacks if getattr(cb, "dirpath", None)]
    if trainer.loggers:
        logger = trainer.loggers[0]
        root = Path(logger.save_dir or trainer.default_root_dir) / str(logger.name or "")
        folders += list(root.glob("*/checkpoints"))
    else:
        folders.append(Path(trainer.default_root_dir) / "checkpoints")
    found = [p for folder in folders for p in folder.glob("last*.ckpt") if p.is_file()]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


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
