"""Training inside a loop: a fit that is one step of something larger (a BO round's ensemble, a
conditional-generation refit, latency meta-training, a brief evaluation), not a run of its own.

Such a fit has nag's settings, in one place: CPU unless the caller asks for another
accelerator, no logger, progress bar, model summary or checkpoint (nothing to keep or read
per fit), none of Lightning's start-up lines, tips or per-fit warnings (they would repeat
every round), and, given a ``seed``, the global RNG forked and seeded so the fit is
reproducible and the caller's random stream is left as it was. Without a seed the fit
continues the caller's stream (the caller seeded the module it built).

Two shapes of the same scope: :func:`in_loop_trainer` when the module's own ``training_step``
is the loop (Lightning runs it), :func:`in_loop_fabric` when the caller's loop is (explicit
generator draws, an EMA after each step): Fabric does the backward pass and the optimiser step
and leaves the loop, hence its numerics, as written.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator

import pytorch_lightning as pl
import torch
from lightning_fabric import Fabric
from pytorch_lightning.utilities.warnings import PossibleUserWarning


@contextlib.contextmanager
def quiet_lightning() -> Iterator[None]:
    """Many short fits: no start-up banners ("GPU available ...") or per-fit warnings."""
    loggers = [logging.getLogger(name) for name in ("pytorch_lightning", "lightning_fabric")]
    levels = [log.level for log in loggers]
    for log in loggers:
        log.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=PossibleUserWarning)
            # pytorch-lightning 2.6 builds torch's deprecated LeafSpec on every batch
            warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)`", category=FutureWarning)
            yield
    finally:
        for log, level in zip(loggers, levels):
            log.setLevel(level)


@contextlib.contextmanager
def _scope(accelerator: str, seed: int | None) -> Iterator[None]:
    """Quiet, and with a ``seed`` the RNG forked (CUDA's too unless the fit is on the CPU) and seeded."""
    with quiet_lightning():
        if seed is None:
            yield
            return
        with torch.random.fork_rng(devices=[] if accelerator == "cpu" else None):
            torch.manual_seed(seed)
            yield


@contextlib.contextmanager
def in_loop_trainer(max_epochs: int = 1, accelerator: str = "cpu", seed: int | None = None) -> Iterator[pl.Trainer]:
    """A ``pl.Trainer`` with nag's in-loop settings, for ``fit`` (and ``test``) inside the block."""
    with _scope(accelerator, seed):
        yield pl.Trainer(
            max_epochs=max_epochs,
            accelerator=accelerator,
            devices=1,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
        )


@contextlib.contextmanager
def in_loop_fabric(accelerator: str = "cpu", seed: int | None = None) -> Iterator[Fabric]:
    """A one-device ``Fabric`` (full precision) for a hand-written loop inside the block."""
    with _scope(accelerator, seed):
        yield Fabric(accelerator=accelerator, devices=1, precision="32-true")
