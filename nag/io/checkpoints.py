"""Reading checkpoints back, and nothing else: every checkpoint nag opens goes through
:func:`read_checkpoint`, which unpickles with ``weights_only=True`` so that a shared file can
hold tensors and plain values but never code that runs when it is loaded."""

from __future__ import annotations

import pickle
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytorch_lightning as pl
import torch

from nag.errors import ConfigError
from nag.spaces.base import SearchSpace

M = TypeVar("M", bound=pl.LightningModule)

#: Types beyond torch's weights-only set (tensors, dicts, lists, tuples, sets, str, numbers,
#: ``OrderedDict``, ...) that nag writes into checkpoints. Empty: hyper-parameters are plain
#: values and RNG states tensors and tuples (``tests/io/test_checkpoints.py`` checks every
#: checkpoint a shipped config writes). Add a type only together with such a test.
SAFE_GLOBALS: tuple[type, ...] = ()


def read_checkpoint(
    path: str | Path, flag: str = "--ckpt_path", map_location: str | torch.device | Callable | None = "cpu"
) -> Any:
    """The object saved at ``path``, unpickled weights-only with :data:`SAFE_GLOBALS`.

    A missing, truncated or corrupt file, and one that holds any other pickled object (which
    could run code), each fail with one line naming ``flag`` and the file; nothing in it runs.
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{flag} {str(p)!r}: no such checkpoint; pass the .ckpt written by `nag fit`")
    try:
        with torch.serialization.safe_globals(list(SAFE_GLOBALS)):
            return torch.load(p, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"GLOBAL ([\w.]+)", str(e))
        if found:
            raise ConfigError(
                f"{flag} {str(p)!r} holds objects nag does not load ({found.group(1)}); a nag "
                "checkpoint holds only tensors and plain values: use one written by `nag fit`"
            ) from None
        raise ConfigError(
            f"{flag} {str(p)!r}: not a readable checkpoint (truncated or corrupt: {type(e).__name__})"
        ) from None
    except Exception as e:
        raise ConfigError(
            f"{flag} {str(p)!r}: not a readable checkpoint (truncated or corrupt: {type(e).__name__})"
        ) from None


def load_checkpoint(path: str | Path, flag: str = "--ckpt_path") -> dict:
    """A Lightning checkpoint of a nag model, read by :func:`read_checkpoint`."""
    ckpt = read_checkpoint(path, flag)
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "hyper_parameters" not in ckpt:
        raise ConfigError(f"{flag} {str(path)!r}: not a Lightning checkpoint of a nag model")
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


def load_module(
    cls: type[M], path: str | Path, space: SearchSpace | None, flag: str, device: torch.device | str = "cpu"
) -> M:
    """``cls`` from ``path`` (checked against ``space`` when given), in eval mode on ``device``.

    The file is vetted by :func:`load_checkpoint` first, and Lightning then rebuilds the module
    under the same weights-only rule."""
    ckpt = load_checkpoint(path, flag)
    if space is not None:
        check_space(ckpt, space, path, flag)
    try:
        with torch.serialization.safe_globals(list(SAFE_GLOBALS)):
            module = cls.load_from_checkpoint(path, map_location=device, weights_only=True)
    except (KeyError, RuntimeError, TypeError) as e:
        raise ConfigError(
            f"{flag} {str(path)!r} is not a {cls.__name__} checkpoint ({type(e).__name__}); "
            f"pass one written by `nag fit` with that model"
        ) from None
    return module.eval()
