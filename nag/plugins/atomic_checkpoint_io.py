"""Checkpoint files that are either complete or absent, whenever the job dies, and read back
without running code."""

from __future__ import annotations

from typing import Any

import torch
from fsspec.implementations.local import LocalFileSystem
from lightning_fabric.utilities.cloud_io import get_filesystem
from lightning_fabric.utilities.types import _PATH
from pytorch_lightning.plugins.io import TorchCheckpointIO
from typing_extensions import override

from nag.io.atomic import atomic_write
from nag.io.checkpoints import SAFE_GLOBALS, read_checkpoint


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes a local checkpoint to a temporary file beside it, fsyncs it and renames it over
    the target with ``os.replace`` (:func:`nag.io.atomic.atomic_write`).

    Lightning's own save goes through an fsspec transaction whose temporary file lives in
    the system temp folder; where that is another file system the final move is a copy, so a
    SIGKILL during it leaves a truncated ``last.ckpt`` that ``--ckpt_path last`` then picks.
    A rename within one folder is atomic. Remote paths keep Lightning's behaviour.

    Reading (``--ckpt_path`` of fit/validate/test/predict, resume) is always weights-only,
    whatever Lightning asks for: a local file goes through :func:`nag.io.checkpoints.read_checkpoint`,
    a remote one through Lightning's reader with the same allow-list.
    """

    @override
    def save_checkpoint(self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None) -> None:
        if storage_options is not None or not isinstance(get_filesystem(path), LocalFileSystem):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        with atomic_write(path, "wb") as f:
            torch.save(checkpoint, f)

    @override
    def load_checkpoint(
        self, path: _PATH, map_location: Any = "cpu", weights_only: bool | None = None
    ) -> dict[str, Any]:
        if isinstance(get_filesystem(path), LocalFileSystem):
            return read_checkpoint(path, "--ckpt_path", map_location)
        with torch.serialization.safe_globals(list(SAFE_GLOBALS)):
            return super().load_checkpoint(path, map_location=map_location, weights_only=True)
